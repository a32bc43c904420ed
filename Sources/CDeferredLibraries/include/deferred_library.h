// Loading a C library on its first use instead of at start-up.
//
// The executable does not link libcurl, libpq, hiredis or OpenSSL: each of the functions credagent
// calls is defined in this target with the library's own prototype (the library's header is
// included, so the compiler checks that the two agree) and forwards to the library's function,
// found with dlopen and dlsym the first time any of them is called. A command that never makes an
// outbound HTTP request, opens a Postgres connection, reads a Redis reply or hashes anything
// therefore never loads those libraries, nor the thirty-odd libraries they depend on, which was
// most of the start-up time of `credagent health`, `get` and `token`. The libraries are still needed at run time by the commands that use them; when
// one cannot be loaded, the process says which one and which Debian package provides it, and exits.
#ifndef CREDAGENT_DEFERRED_LIBRARY_H
#define CREDAGENT_DEFERRED_LIBRARY_H

#include <stdatomic.h>

/// A shared library opened on first use.
struct deferred_library {
    const char *soname;          // what dlopen is given, e.g. "libcurl.so.4"
    const char *debian_package;  // named when the library cannot be loaded
    _Atomic(void *) handle;
};

/// The address of `symbol` in `library`, opening the library first if needed. Exits the process
/// with status 127 and a message on standard error when the library or the symbol is missing.
void *deferred_library_symbol(struct deferred_library *library, const char *symbol);

/// ``deferred_library_symbol``, looked up once: `address` keeps it for the calls after the first.
void *deferred_function(struct deferred_library *library, const char *symbol, _Atomic(void *) *address);

/// Defines `name` with the parameters `params` (in parentheses) to call the library's own `name`
/// with `args` (in parentheses), looked up once and kept.
#define DEFERRED_FUNCTION(library, result, name, params, args)                              \
    result name params {                                                                   \
        static _Atomic(void *) address;                                                    \
        return ((result(*) params)deferred_function(&library, #name, &address)) args;     \
    }

#endif
