// `sheafctl import FILE|-`: Prometheus text exposition (with timestamps in
// ms, as `sheaf-loadgen --export` and VictoriaMetrics' import use) or
// OpenMetrics into sheafd, in gzip batches over IngestService.Push.
//
// The file is read 1 MiB at a time and parsed as it streams
// (model/exposition_parser.h), so memory stays bounded whatever its size.
// Batches carry the import's own agent id (--import-id) and sequences 1,
// 2, 3, ... in file order, so running the same import again under the same
// id stores nothing twice and resumes an import that was cut short (the
// same file and --batch-size give the same batches). With --backfill every
// batch asks for backfill (MetricBatch.backfill): history older than
// sheafd's --accept-past window is stored, back to its longest retention.
//
// Exit codes: 0 everything was stored (or already was); 1 the import did
// not finish (the daemon failed the stream or went away, or the input
// could not be read): run it again with the same --import-id; 2 usage (bad
// flags, unreadable file); 3 the import finished but some samples were
// rejected by sheafd or some lines could not be parsed.
#ifndef SHEAF_TOOLS_SHEAFCTL_IMPORT_H_
#define SHEAF_TOOLS_SHEAFCTL_IMPORT_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace grpc {
class Channel;
}

namespace sheaf {
class FlagSet;
}

namespace sheaf::ctl {

struct ImportFlags {
  bool backfill = false;
  uint64_t batch_size = 5000;  // samples per batch
  std::string import_id;       // empty: "import-<file name>-<random>"
  bool progress = false;       // a progress line even when stderr is not a terminal
};

// Registers --backfill, --batch-size, --import-id and --progress.
void RegisterImportFlags(FlagSet& flags, ImportFlags* out);

// Runs `import FILE|-` (args[0] is "import"). `format` is sheafctl's
// --format: auto, prometheus or openmetrics (its default, "table", means
// auto). `timeout` bounds the acknowledgement of each Push stream. Returns
// the exit code.
int RunImport(const std::vector<std::string>& args, const std::shared_ptr<grpc::Channel>& channel,
              const std::string& format,
              std::chrono::milliseconds timeout, const ImportFlags& flags);

}  // namespace sheaf::ctl

#endif  // SHEAF_TOOLS_SHEAFCTL_IMPORT_H_
