#include "common/flags.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "common/duration.h"
#include "sheaf_version.h"

namespace sheaf {
namespace {

std::string Normalize(std::string name) {
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

template <typename T>
absl::Status ParseNumber(const std::string& flag, const std::string& text, T* out) {
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  if (ec != std::errc() || ptr != text.data() + text.size()) {
    return absl::InvalidArgumentError("--" + flag + ": \"" + text + "\" is not a valid number");
  }
  return absl::OkStatus();
}

}  // namespace

FlagSet::FlagSet(std::string program, std::string usage) : program_(std::move(program)), usage_(std::move(usage)) {
  Bool("version", &version_requested_, "print the version and exit");
}

void FlagSet::ConfigFile(std::string* target) {
  config_file_ = target;
  String("config", target, "YAML file with any of these settings (names as here, without --)");
}

std::optional<int> FlagSet::ParseMain(int argc, char** argv, std::vector<std::string>* positional) {
  if (auto s = Parse(argc, argv, positional); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", program_.c_str(), std::string(s.message()).c_str());
    return 2;
  }
  if (help_requested_) {
    std::fputs(Usage().c_str(), stdout);
    return 0;
  }
  if (version_requested_) {
    std::printf("%s %s\n", program_.c_str(), SHEAF_VERSION);
    return 0;
  }
  if (config_file_ != nullptr && !config_file_->empty()) {
    if (auto s = ApplyYamlFile(*config_file_); !s.ok()) {
      std::fprintf(stderr, "%s: %s\n", program_.c_str(), std::string(s.message()).c_str());
      return 2;
    }
  }
  return std::nullopt;
}

void FlagSet::Add(Flag flag) { flags_.push_back(std::move(flag)); }

FlagSet::Flag* FlagSet::Find(std::string name) {
  name = Normalize(std::move(name));
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

void FlagSet::String(const std::string& name, std::string* target, const std::string& help) {
  Add({name, help, *target, false, false, [target](const std::string& v) {
         *target = v;
         return absl::OkStatus();
       }});
}

void FlagSet::Int(const std::string& name, int64_t* target, const std::string& help) {
  Add({name, help, std::to_string(*target), false, false,
       [name, target](const std::string& v) { return ParseNumber(name, v, target); }});
}

void FlagSet::Uint(const std::string& name, uint64_t* target, const std::string& help) {
  Add({name, help, std::to_string(*target), false, false,
       [name, target](const std::string& v) { return ParseNumber(name, v, target); }});
}

void FlagSet::Double(const std::string& name, double* target, const std::string& help) {
  std::string def = std::to_string(*target);
  Add({name, help, def, false, false, [name, target](const std::string& v) {
         char* end = nullptr;
         double d = std::strtod(v.c_str(), &end);
         if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(d)) {
           return absl::InvalidArgumentError("--" + name + ": \"" + v + "\" is not a valid number");
         }
         *target = d;
         return absl::OkStatus();
       }});
}

void FlagSet::Bool(const std::string& name, bool* target, const std::string& help) {
  Add({name, help, *target ? "true" : "false", true, false, [name, target](const std::string& v) {
         if (v == "true" || v == "1" || v == "yes")
           *target = true;
         else if (v == "false" || v == "0" || v == "no")
           *target = false;
         else
           return absl::InvalidArgumentError("--" + name + ": \"" + v + "\" is not true or false");
         return absl::OkStatus();
       }});
}

void FlagSet::Duration(const std::string& name, std::chrono::milliseconds* target, const std::string& help) {
  Add({name, help, FormatDuration(*target), false, false, [name, target](const std::string& v) {
         auto d = ParseDuration(v);
         if (!d.ok()) return absl::InvalidArgumentError("--" + name + ": " + std::string(d.status().message()));
         *target = *d;
         return absl::OkStatus();
       }});
}

void FlagSet::Duration(const std::string& name, int64_t* target_ms, const std::string& help) {
  Add({name, help, FormatDuration(std::chrono::milliseconds(*target_ms)), false, false,
       [name, target_ms](const std::string& v) {
         auto d = ParseDuration(v);
         if (!d.ok()) return absl::InvalidArgumentError("--" + name + ": " + std::string(d.status().message()));
         *target_ms = d->count();
         return absl::OkStatus();
       }});
}

void FlagSet::StringList(const std::string& name, std::vector<std::string>* target, const std::string& help) {
  std::string def;
  for (const auto& s : *target) def += (def.empty() ? "" : ",") + s;
  // The first value given replaces the defaults; later ones append.
  auto fresh = std::make_shared<bool>(true);
  Add({name, help, def, false, true, [target, fresh](const std::string& v) {
         if (*fresh) target->clear();
         *fresh = false;
         target->push_back(v);
         return absl::OkStatus();
       }});
}

absl::Status FlagSet::Parse(int argc, char** argv, std::vector<std::string>* positional) {
  bool flags_done = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-' || arg == "-") {
      if (positional == nullptr) return absl::InvalidArgumentError("unexpected argument \"" + arg + "\"");
      positional->push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    std::string body = arg.substr(arg.starts_with("--") ? 2 : 1);
    if (body == "help" || body == "h") {
      help_requested_ = true;
      continue;
    }
    std::string value;
    bool has_value = false;
    if (auto eq = body.find('='); eq != std::string::npos) {
      value = body.substr(eq + 1);
      body = body.substr(0, eq);
      has_value = true;
    }
    Flag* flag = Find(body);
    if (flag == nullptr) {
      return absl::InvalidArgumentError("unknown flag --" + body + " (see " + program_ + " --help)");
    }
    if (!has_value) {
      if (flag->is_bool) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError("flag --" + flag->name + " needs a value");
      }
    }
    if (auto s = flag->set(value); !s.ok()) return s;
    set_on_command_line_.insert(flag->name);
  }
  return absl::OkStatus();
}

absl::Status FlagSet::ApplyYamlFile(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError("config file " + path + ": " + e.what());
  }
  if (root.IsNull()) return absl::OkStatus();
  if (!root.IsMap()) return absl::InvalidArgumentError("config file " + path + ": expected a mapping of settings");
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>();
    if (sections_.contains(key)) continue;
    Flag* flag = Find(key);
    if (flag == nullptr || flag->name == "config") {
      return absl::InvalidArgumentError("config file " + path + ": unknown setting \"" + key + "\" (see " + program_ +
                                        " --help for the names)");
    }
    if (set_on_command_line_.contains(flag->name)) continue;
    try {
      std::vector<std::string> values;
      if (kv.second.IsSequence()) {
        if (!flag->is_list) {
          return absl::InvalidArgumentError("config file " + path + ": \"" + key + "\" takes one value, not a list");
        }
        for (const auto& v : kv.second) values.push_back(v.as<std::string>());
      } else {
        values.push_back(kv.second.as<std::string>());
      }
      for (const auto& v : values) {
        if (auto s = flag->set(v); !s.ok()) {
          return absl::InvalidArgumentError("config file " + path + ": " + std::string(s.message()));
        }
      }
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError("config file " + path + ": \"" + key + "\": " + e.what());
    }
  }
  return absl::OkStatus();
}

std::string FlagSet::Usage() const {
  std::string out = "usage: " + usage_ + "\n\nflags:\n";
  for (const Flag& f : flags_) {
    out += "  --" + f.name + (f.is_bool ? "" : " VALUE") + "\n      " + f.help;
    if (!f.default_text.empty()) out += " (default: " + f.default_text + ")";
    out += "\n";
  }
  return out;
}

}  // namespace sheaf
