#ifndef CREDAGENT_CLIBPQ_SHIM_H
#define CREDAGENT_CLIBPQ_SHIM_H
#include <libpq-fe.h>
#endif
