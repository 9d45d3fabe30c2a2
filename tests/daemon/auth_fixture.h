// An in-process sheafd with --auth-tokens, and clients that send tokens:
// gRPC calls with `authorization` metadata (typed, and raw for any method)
// and HTTP requests with an Authorization header (libcurl). Shared by
// auth_test.cc and tenant_isolation_test.cc.
#ifndef SHEAF_TESTS_DAEMON_AUTH_FIXTURE_H_
#define SHEAF_TESTS_DAEMON_AUTH_FIXTURE_H_

#include <curl/curl.h>

#include <fstream>
#include <string>
#include <vector>

#include "tests/daemon/daemon_fixture.h"

namespace sheaf::daemon {

inline void WriteTextFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

struct HttpAnswer {
  long status = 0;  // 0: the request failed
  std::string body;
  std::string headers;  // as received, lines joined
};

// One HTTP request to 127.0.0.1:port (10 s bound), with `token` as a
// bearer token unless empty.
inline HttpAnswer HttpCall(int port, const std::string& method, const std::string& path, const std::string& token,
                           const std::string& body = "", std::vector<std::string> headers = {}) {
  HttpAnswer answer;
  CURL* curl = curl_easy_init();
  if (curl == nullptr) return answer;
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + path;
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10'000L);
  if (!token.empty()) headers.push_back("Authorization: Bearer " + token);
  curl_slist* list = nullptr;
  for (const std::string& h : headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  if (method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  auto append = +[](char* data, size_t size, size_t n, void* out) {
    static_cast<std::string*>(out)->append(data, size * n);
    return size * n;
  };
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &answer.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, append);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &answer.headers);
  if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &answer.status);
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return answer;
}

class AuthDaemonTest : public DaemonTest {
 protected:
  // Tokens file first, then the daemon (tests call StartWithTokens).
  void SetUp() override {}

  void StartWithTokens(const std::string& yaml, DaemonConfig config = {}) {
    tokens_path_ = dir_.Sub("tokens.yaml");
    WriteTextFile(tokens_path_, yaml);
    config.auth_tokens = tokens_path_;
    if (config.store.path == DaemonConfig().store.path) config.store.path = dir_.Sub("data");
    Start(std::move(config));
  }

  static void AddToken(grpc::ClientContext* ctx, const std::string& token) {
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  }

  grpc::Status PushAs(const std::string& token, const std::vector<v1::MetricBatch>& batches, v1::PushAck* ack) {
    grpc::ClientContext ctx;
    AddToken(&ctx, token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    auto writer = ingest_->Push(&ctx, ack);
    for (const auto& b : batches) {
      if (!writer->Write(b)) break;
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // Any method, with one hand-made request message (empty: the default
  // message), as `token`.
  grpc::Status RawCallAs(const std::string& method, const std::string& token, const std::string& message = "") {
    return RawCall(method, {message}, nullptr, token);
  }

  // A raw read (selector) as `token`: series key -> samples.
  QueryResult QueryAs(const std::string& token, const std::string& selector, const std::string& expr = "") {
    QueryResult r;
    grpc::ClientContext ctx;
    AddToken(&ctx, token);
    v1::QueryRequest req;
    if (expr.empty()) {
      req.set_selector(selector);
      req.set_start_ms(kNow - 3'600'000);
      req.set_end_ms(kNow + 3'600'000);
    } else {
      req.set_expr(expr);
      req.set_time_ms(kNow);
    }
    ReadAll(query_->Query(&ctx, req).get(), &r);
    return r;
  }

  std::string tokens_path_;
};

}  // namespace sheaf::daemon

#endif  // SHEAF_TESTS_DAEMON_AUTH_FIXTURE_H_
