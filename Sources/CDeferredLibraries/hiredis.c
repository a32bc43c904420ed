// The hiredis functions credagent calls (the RESP encoder and reader of `credagent test` for
// Redis), loaded on first use (see deferred_library.h).
#include "deferred_library.h"

#include "../CHiredis/shim.h"

// hiredis names its shared object by its version (libhiredis.so.0.14, libhiredis.so.1.1.0), and
// Debian its package likewise: both come from the header the build was made with.
#define TEXT(value) #value
#define VERSION_TEXT(value) TEXT(value)
static struct deferred_library hiredis = {"libhiredis.so." VERSION_TEXT(HIREDIS_SONAME),
                                          "libhiredis" VERSION_TEXT(HIREDIS_SONAME)};

DEFERRED_FUNCTION(hiredis, int, redisFormatCommandArgv,
                  (char **target, int argc, const char **argv, const size_t *argvlen),
                  (target, argc, argv, argvlen))
DEFERRED_FUNCTION(hiredis, void, redisFreeCommand, (char *command), (command))
DEFERRED_FUNCTION(hiredis, redisReader *, redisReaderCreate, (void), ())
DEFERRED_FUNCTION(hiredis, void, redisReaderFree, (redisReader *reader), (reader))
DEFERRED_FUNCTION(hiredis, int, redisReaderFeed, (redisReader *reader, const char *buffer, size_t length),
                  (reader, buffer, length))
DEFERRED_FUNCTION(hiredis, int, redisReaderGetReply, (redisReader *reader, void **reply), (reader, reply))
DEFERRED_FUNCTION(hiredis, void, freeReplyObject, (void *reply), (reply))
