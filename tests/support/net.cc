#include "tests/support/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>

namespace sheaf::testing {

int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

HttpResponse HttpGet(int port, const std::string& path) {
  HttpResponse out;
  int fd = ConnectLoopback(port);
  if (fd < 0) return out;
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return out;
  }
  std::string raw;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof(buf))) > 0;) raw.append(buf, static_cast<size_t>(n));
  close(fd);
  auto sp = raw.find(' ');
  auto hdr_end = raw.find("\r\n\r\n");
  if (sp == std::string::npos || hdr_end == std::string::npos) return out;
  out.status = std::atoi(raw.c_str() + sp + 1);
  out.body = raw.substr(hdr_end + 4);
  return out;
}

namespace {

// Connects to 127.0.0.1:port with a 10 s bound on each read and sends
// `request`; the socket, or -1 if either failed.
int SendLoopback(int port, const std::string& request) {
  int fd = ConnectLoopback(port);
  if (fd < 0) return -1;
  const timeval bound{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof(bound));
  if (send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

RawHttpReply RawHttpExchange(int port, const std::string& request) {
  RawHttpReply out;
  int fd = SendLoopback(port, request);
  if (fd < 0) return out;
  std::string raw;
  char buf[65536];
  for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) raw.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t space = raw.find(' '), end = raw.find("\r\n\r\n");
  if (space == std::string::npos || end == std::string::npos) return out;
  out.status = std::atoi(raw.c_str() + space + 1);
  out.head = raw.substr(0, end);
  out.body = raw.substr(end + 4);
  return out;
}

std::string RawPostRequest(const std::string& path, const std::vector<std::string>& headers, const std::string& body) {
  std::string request = "POST ";
  request.append(path).append(" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
  for (const auto& h : headers) request.append(h).append("\r\n");
  request.append("Content-Length: ").append(std::to_string(body.size())).append("\r\n\r\n");
  return request.append(body);
}

RawHttpStream::RawHttpStream(int port, const std::string& request) : fd_(SendLoopback(port, request)) {
  sent_ = fd_ >= 0;
}

RawHttpStream::~RawHttpStream() { Close(); }

void RawHttpStream::Close() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool RawHttpStream::ReadUntil(const std::string& what) {
  if (fd_ < 0) return false;
  char buf[4096];
  while (received_.find(what) == std::string::npos) {
    ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    received_.append(buf, static_cast<size_t>(n));
  }
  return true;
}

namespace {

// A listening socket on 127.0.0.1 at a port the kernel chooses (*port).
int ListenLoopback(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  listen(fd, 16);
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  *port = ntohs(addr.sin_port);
  return fd;
}

// The next connection accepted on `listen_fd`, or -1 once `stop` is set
// (looked at every 100 ms).
int AcceptUntil(int listen_fd, const std::atomic<bool>& stop) {
  while (!stop) {
    pollfd p{listen_fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    int client = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (client >= 0) return client;
  }
  return -1;
}

}  // namespace

CountingRelay::CountingRelay(int target_port) : target_port_(target_port) {
  listen_fd_ = ListenLoopback(&port_);
  acceptor_ = std::thread([this] { AcceptLoop(); });
}

CountingRelay::~CountingRelay() {
  stop_ = true;
  shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  for (auto& t : pumps_) t.join();
  close(listen_fd_);
}

void CountingRelay::AcceptLoop() {
  for (int client; (client = AcceptUntil(listen_fd_, stop_)) >= 0;) {
    int server = ConnectLoopback(target_port_);
    if (server < 0) {
      close(client);
      continue;
    }
    pumps_.emplace_back([this, client, server] {
      pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
      char buf[65536];
      while (!stop_) {
        if (poll(fds, 2, 100) <= 0) continue;
        bool closed = false;
        for (int i = 0; i < 2; ++i) {
          if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          ssize_t n = read(fds[i].fd, buf, sizeof(buf));
          if (n <= 0) {
            closed = true;
            break;
          }
          if (i == 0) up_ += static_cast<uint64_t>(n);
          for (ssize_t off = 0; off < n;) {
            ssize_t w = write(fds[1 - i].fd, buf + off, static_cast<size_t>(n - off));
            if (w <= 0) {
              closed = true;
              break;
            }
            off += w;
          }
        }
        if (closed) break;
      }
      close(client);
      close(server);
    });
  }
}

StaticHttpServer::StaticHttpServer(std::string body)
    : response_("HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: " +
                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body) {
  listen_fd_ = ListenLoopback(&port_);
  server_ = std::thread([this] { Serve(); });
}

StaticHttpServer::~StaticHttpServer() {
  stop_ = true;
  shutdown(listen_fd_, SHUT_RDWR);
  server_.join();
  close(listen_fd_);
}

void StaticHttpServer::Serve() {
  for (int client; (client = AcceptUntil(listen_fd_, stop_)) >= 0;) {
    timeval send_bound{5, 0};  // a client that stops reading cannot hold the server
    setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &send_bound, sizeof(send_bound));
    // The request is read up to its blank line (a GET has no body), so
    // closing after the answer does not reset the connection under it.
    std::string request;
    char buf[4096];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (request.find("\r\n\r\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd c{client, POLLIN, 0};
      if (poll(&c, 1, 100) <= 0) continue;
      ssize_t n = read(client, buf, sizeof(buf));
      if (n <= 0) break;
      request.append(buf, static_cast<size_t>(n));
    }
    for (size_t off = 0; off < response_.size() && !stop_;) {
      ssize_t n = send(client, response_.data() + off, response_.size() - off, MSG_NOSIGNAL);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ++requests_;
    close(client);
  }
}

}  // namespace sheaf::testing
