#include "deferred_library.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

// dlopen is thread-safe and returns the same handle for a library already open, so two threads
// that race here both get it; the lock only keeps the failure message from being printed twice.
static pthread_mutex_t opening = PTHREAD_MUTEX_INITIALIZER;

static _Noreturn void fail(const struct deferred_library *library, const char *what) {
    fprintf(stderr,
            "credagent: this command needs %s, which could not be loaded (%s). "
            "Install the Debian package %s (or your distribution's equivalent); "
            "the README, \"Use\", lists the libraries credagent needs at run time.\n",
            library->soname, what, library->debian_package);
    exit(127);
}

void *deferred_library_symbol(struct deferred_library *library, const char *symbol) {
    void *handle = atomic_load_explicit(&library->handle, memory_order_acquire);
    if (handle == NULL) {
        pthread_mutex_lock(&opening);
        handle = atomic_load_explicit(&library->handle, memory_order_acquire);
        if (handle == NULL) {
            handle = dlopen(library->soname, RTLD_NOW | RTLD_LOCAL);
            if (handle == NULL) fail(library, dlerror());
            atomic_store_explicit(&library->handle, handle, memory_order_release);
        }
        pthread_mutex_unlock(&opening);
    }
    void *address = dlsym(handle, symbol);
    if (address == NULL) fail(library, dlerror());
    return address;
}

void *deferred_function(struct deferred_library *library, const char *symbol, _Atomic(void *) *address) {
    void *function = atomic_load_explicit(address, memory_order_acquire);
    if (function == NULL) {
        function = deferred_library_symbol(library, symbol);
        atomic_store_explicit(address, function, memory_order_release);
    }
    return function;
}
