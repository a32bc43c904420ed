#ifndef CREDAGENT_BUILD_INFO_H
#define CREDAGENT_BUILD_INFO_H

/// The version the binary was built as: what scripts/build wrote, else "development".
const char *credagent_build_version(void);

/// The git commit the binary was built from ("-dirty" when the tree had changes), else "unknown".
const char *credagent_build_commit(void);

#endif
