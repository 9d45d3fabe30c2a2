// `sheafctl tail SELECTOR...`: the samples sheafd stores that match, live,
// over QueryService.Tail (one subscription per selector on one stream).
//
// Prints one line per sample as it arrives: `TIME  SERIES  VALUE` (table,
// the value as Prometheus formats it), `"SERIES",TIMESTAMP_MS,VALUE` (csv)
// or one JSON object per line (json). When sheafd had to drop samples for
// this client (it read too slowly), a line on stderr says how many.
//
// Runs until Ctrl-C or SIGTERM (the call is cancelled; exit 0) or until the
// stream ends: 0 if sheafd ended it without an error, 1 with its status on
// stderr otherwise (e.g. UNAVAILABLE when sheafd shuts down), 2 for a usage
// error or a selector sheafd refused.
#ifndef SHEAF_TOOLS_SHEAFCTL_TAIL_H_
#define SHEAF_TOOLS_SHEAFCTL_TAIL_H_

#include <memory>
#include <string>
#include <vector>

namespace grpc {
class Channel;
}

namespace sheaf::ctl {

// Runs `tail SELECTOR...` (args[0] is "tail") against sheafd over
// `channel`. `format`: table, json or csv. Returns the exit code.
int RunTail(const std::vector<std::string>& args, const std::shared_ptr<grpc::Channel>& channel,
            const std::string& format);

}  // namespace sheaf::ctl

#endif  // SHEAF_TOOLS_SHEAFCTL_TAIL_H_
