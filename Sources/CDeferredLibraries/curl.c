// The libcurl functions credagent calls, loaded on first use (see deferred_library.h).
#include "deferred_library.h"

#include "../CCurl/shim.h"
#include <stdarg.h>

static struct deferred_library curl = {"libcurl.so.4", "libcurl4"};

DEFERRED_FUNCTION(curl, CURLcode, curl_global_init, (long flags), (flags))
DEFERRED_FUNCTION(curl, CURL *, curl_easy_init, (void), ())
DEFERRED_FUNCTION(curl, void, curl_easy_cleanup, (CURL *handle), (handle))
DEFERRED_FUNCTION(curl, CURLcode, curl_easy_perform, (CURL *handle), (handle))
DEFERRED_FUNCTION(curl, const char *, curl_easy_strerror, (CURLcode code), (code))
DEFERRED_FUNCTION(curl, struct curl_slist *, curl_slist_append, (struct curl_slist *list, const char *string),
                  (list, string))
DEFERRED_FUNCTION(curl, void, curl_slist_free_all, (struct curl_slist *list), (list))

typedef CURLcode (*variadic_call)(CURL *, int, ...);

// The option's number says the type of its one argument (curl.h, CURLOPTTYPE_*): it is passed on
// as that type.
CURLcode curl_easy_setopt(CURL *handle, CURLoption option, ...) {
    static _Atomic(void *) address;
    variadic_call setopt = (variadic_call)deferred_function(&curl, "curl_easy_setopt", &address);
    va_list arguments;
    va_start(arguments, option);
    CURLcode result;
    if (option < CURLOPTTYPE_OBJECTPOINT) {
        result = setopt(handle, option, va_arg(arguments, long));
    } else if (option >= CURLOPTTYPE_OFF_T && option < CURLOPTTYPE_BLOB) {
        result = setopt(handle, option, va_arg(arguments, curl_off_t));
    } else {  // object, string, list, function and blob options all take a pointer
        result = setopt(handle, option, va_arg(arguments, void *));
    }
    va_end(arguments);
    return result;
}

// Every curl_easy_getinfo takes one pointer to where the answer goes.
CURLcode curl_easy_getinfo(CURL *handle, CURLINFO info, ...) {
    static _Atomic(void *) address;
    variadic_call getinfo = (variadic_call)deferred_function(&curl, "curl_easy_getinfo", &address);
    va_list arguments;
    va_start(arguments, info);
    CURLcode result = getinfo(handle, info, va_arg(arguments, void *));
    va_end(arguments);
    return result;
}
