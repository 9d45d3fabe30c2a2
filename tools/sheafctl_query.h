// sheafctl query: PromQL instant and range queries, and raw reads of a
// bare selector, printed as a table, JSON or CSV.
#ifndef SHEAF_TOOLS_SHEAFCTL_QUERY_H_
#define SHEAF_TOOLS_SHEAFCTL_QUERY_H_

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace grpc {
class Channel;
class ClientContext;
}  // namespace grpc

namespace sheaf::ctl {

struct QueryOptions {
  std::string expr;
  std::string format = "table";  // table, json or csv
  std::string time;              // instant query time; "" = now
  std::string start, end;        // range; "" = end - since, now
  std::chrono::milliseconds since{3'600'000};
  std::chrono::milliseconds step{0};  // > 0: a range query
  uint32_t chunk = 0;                 // points per streamed message; 0: the daemon's default
};

// Runs the query and prints the answer on stdout (a summary on stderr for
// the table format). Exit code: 0, 1 for a failed call, 2 for bad options.
int RunQuery(const QueryOptions& options, const std::shared_ptr<grpc::Channel>& channel, grpc::ClientContext* context);

}  // namespace sheaf::ctl

#endif  // SHEAF_TOOLS_SHEAFCTL_QUERY_H_
