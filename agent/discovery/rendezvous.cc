#include "agent/discovery/rendezvous.h"

#include <algorithm>
#include <utility>

namespace sheaf::agent::discovery {
namespace {

constexpr uint64_t kFnvOffset = 14695981039346656037ull;
constexpr uint64_t kFnvPrime = 1099511628211ull;

uint64_t Fnv1a(uint64_t h, std::string_view bytes) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

// splitmix64's output function (Steele, Lea, Flood 2014).
uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t RendezvousWeight(std::string_view identity, std::string_view address) {
  uint64_t h = Fnv1a(kFnvOffset, identity);
  h = Fnv1a(h, std::string_view("\0", 1));  // "ab"+"c" and "a"+"bc" differ
  return Mix(Fnv1a(h, address));
}

std::vector<std::string> RendezvousOrder(std::string_view identity, std::vector<std::string> addresses) {
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  std::vector<std::pair<uint64_t, std::string>> weighted;
  weighted.reserve(addresses.size());
  for (auto& a : addresses) weighted.emplace_back(RendezvousWeight(identity, a), std::move(a));
  std::sort(weighted.begin(), weighted.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second < y.second;
  });
  std::vector<std::string> out;
  out.reserve(weighted.size());
  for (auto& w : weighted) out.push_back(std::move(w.second));
  return out;
}

}  // namespace sheaf::agent::discovery
