// Durable file replacement for small state files (the agent's identity and
// sequence mark, the spool's acknowledged set): a reader after a crash or a
// power loss sees either the old contents or the new, never a mix.
#ifndef SHEAF_COMMON_ATOMIC_FILE_H_
#define SHEAF_COMMON_ATOMIC_FILE_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace sheaf {

// Writes `contents` to dir/name atomically and durably (dir/name.tmp written
// and fsynced, renamed over dir/name, then the directory fsynced). Errors
// (FAILED_PRECONDITION) name the file.
absl::Status WriteFileAtomically(const std::string& dir, const std::string& name, std::string_view contents);

// fsyncs a directory, so that files created, renamed or removed in it stay
// so after a power loss. Errors (FAILED_PRECONDITION) name the directory.
absl::Status SyncDirectory(const std::string& dir);

}  // namespace sheaf

#endif  // SHEAF_COMMON_ATOMIC_FILE_H_
