// Version and commit of the binary. scripts/build writes them into credagent_release_info.h in a
// directory of the build folder and passes that directory with -Xcc -I; any other build does not
// see that header and says "development". The header is included here only, so a new commit
// recompiles this file and relinks, nothing else.
#include "credagent_build_info.h"

#if __has_include(<credagent_release_info.h>)
#include <credagent_release_info.h>
#endif

#ifndef CREDAGENT_VERSION
#define CREDAGENT_VERSION "development"
#endif
#ifndef CREDAGENT_COMMIT
#define CREDAGENT_COMMIT "unknown"
#endif

const char *credagent_build_version(void) { return CREDAGENT_VERSION; }
const char *credagent_build_commit(void) { return CREDAGENT_COMMIT; }
