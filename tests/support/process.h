// Child processes for end-to-end tests: start a binary with its output in a
// log file, signal it, wait for it with a bound, and never leave it behind.
#ifndef SHEAF_TESTS_SUPPORT_PROCESS_H_
#define SHEAF_TESTS_SUPPORT_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sheaf::testing {

class Process {
 public:
  // argv[0] is the program path. stdout and stderr go to `log_path`.
  static std::unique_ptr<Process> Start(const std::vector<std::string>& argv, const std::string& log_path);
  ~Process();  // SIGKILLs and reaps the child if it still runs

  pid_t pid() const { return pid_; }
  void Signal(int sig) const;
  // The exit code (or 128 + signal) once it exits; nullopt on timeout.
  std::optional<int> Wait(std::chrono::milliseconds timeout);
  bool running();
  const std::string& log_path() const { return log_path_; }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string log_path_;
};

struct CommandResult {
  int exit_code = -1;  // -1: could not run, or timed out (then killed)
  std::string output;  // stdout
};

// Runs a command to completion (killed after `timeout`); stderr is inherited.
CommandResult RunCommand(const std::vector<std::string>& argv,
                         std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Polls `condition` every 50 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

// A TCP port on 127.0.0.1 that was free a moment ago (for servers that
// cannot report the port they bound).
int FreePort();

std::string ReadFile(const std::string& path);

}  // namespace sheaf::testing

#endif  // SHEAF_TESTS_SUPPORT_PROCESS_H_
