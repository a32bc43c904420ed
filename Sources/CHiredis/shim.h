#ifndef CREDAGENT_CHIREDIS_SHIM_H
#define CREDAGENT_CHIREDIS_SHIM_H
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#endif
