// Command-line flags, shared by every sheaf binary, with an optional YAML
// config file holding the same names. `--name value`, `--name=value`, and
// `--name` alone for booleans. Flags given on the command line win over the
// config file. Config keys may use '_' or '-' (grpc_listen == grpc-listen).
#ifndef SHEAF_COMMON_FLAGS_H_
#define SHEAF_COMMON_FLAGS_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace sheaf {

class FlagSet {
 public:
  // `usage` is the line after "usage: ", e.g. "sheafd [flags]".
  FlagSet(std::string program, std::string usage);

  // Registers a flag bound to `target`; its current value is the default.
  void String(const std::string& name, std::string* target, const std::string& help);
  void Int(const std::string& name, int64_t* target, const std::string& help);
  void Uint(const std::string& name, uint64_t* target, const std::string& help);
  void Double(const std::string& name, double* target, const std::string& help);
  void Bool(const std::string& name, bool* target, const std::string& help);
  void Duration(const std::string& name, std::chrono::milliseconds* target, const std::string& help);
  void Duration(const std::string& name, int64_t* target_ms, const std::string& help);
  void StringList(const std::string& name, std::vector<std::string>* target, const std::string& help);

  // Parses argv[1..]; arguments that are not flags go to *positional (if
  // null, they are an error). "--" ends the flags. INVALID_ARGUMENT with a
  // message naming the flag on any problem. `--help` sets help_requested().
  absl::Status Parse(int argc, char** argv, std::vector<std::string>* positional = nullptr);

  // Registers --config FILE: a YAML file applied by ParseMain.
  void ConfigFile(std::string* target);
  // A top-level key of the config file that is not a flag but a structured
  // section the program reads itself (e.g. the agent's `scrape:` list):
  // ApplyYamlFile leaves it alone instead of calling it unknown.
  void ConfigSection(const std::string& key) { sections_.insert(key); }

  // What every main() does with its flags: parses (with --help and
  // --version built in) and applies --config. Returns the exit code when the
  // program should stop now (0 after --help/--version, 2 with a message on
  // stderr for bad flags or a bad config file), nullopt to go on.
  std::optional<int> ParseMain(int argc, char** argv, std::vector<std::string>* positional = nullptr);

  // Applies a YAML mapping of flag names to scalars (or sequences, for list
  // flags). Keys given on the command line are skipped; unknown keys are an
  // error naming the key, so typos don't pass silently.
  absl::Status ApplyYamlFile(const std::string& path);

  bool help_requested() const { return help_requested_; }
  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string help;
    std::string default_text;
    bool is_bool = false;
    bool is_list = false;
    std::function<absl::Status(const std::string&)> set;
  };
  void Add(Flag flag);
  Flag* Find(std::string name);

  std::string program_;
  std::string usage_;
  std::set<std::string> sections_;
  std::vector<Flag> flags_;
  std::set<std::string> set_on_command_line_;
  bool help_requested_ = false;
  bool version_requested_ = false;
  std::string* config_file_ = nullptr;
};

}  // namespace sheaf

#endif  // SHEAF_COMMON_FLAGS_H_
