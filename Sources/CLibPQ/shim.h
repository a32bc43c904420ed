#ifndef CREDAGENT_CLIBPQ_SHIM_H
#define CREDAGENT_CLIBPQ_SHIM_H
// Debian installs libpq's header under postgresql/, other distributions in the search path itself.
#if __has_include(<libpq-fe.h>)
#include <libpq-fe.h>
#else
#include <postgresql/libpq-fe.h>
#endif
#endif
