#include "connection.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace cairn::client {

namespace {

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace

int Connection::wait(short events) {
  for (;;) {
    int timeout = -1;
    if (deadline_ms_ > 0) {
      int64_t left = deadline_ms_ - mono_ms();
      if (left <= 0) return -ETIMEDOUT;
      timeout = static_cast<int>(std::min<int64_t>(left, 60'000));
    }
    pollfd p{fd_, events, 0};
    int n = poll(&p, 1, timeout);
    if (n > 0) return 0;  // ready, or an error/hangup the next send/recv will report
    if (n < 0 && errno != EINTR) return -errno;
  }
}

int Connection::connect(const std::string& path) {
  close();
  sockaddr_un sa{};
  if (path.size() >= sizeof sa.sun_path) return -ENAMETOOLONG;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    ::close(fd);
    return -e;
  }
  fd_ = fd;
  buf_.clear();
  start_ = 0;
  return 0;
}

void Connection::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  buf_.clear();
  start_ = 0;
}

int Connection::write_all(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (int w = wait(POLLOUT); w < 0) return w;
        continue;
      }
      return -errno;
    }
    off += static_cast<size_t>(n);
  }
  return 0;
}

int Connection::read_frame(std::string& payload, uint32_t max_frame, uint32_t* length) {
  for (;;) {
    size_t have = buf_.size() - start_;
    if (have >= 4) {
      const auto* p = reinterpret_cast<const uint8_t*>(buf_.data() + start_);
      uint32_t n = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
      if (length) *length = n;
      if (n == 0 || n > max_frame) {
        // The header goes, so that the next read starts at the payload (or, for an empty
        // frame, at the next header): a refused frame costs only itself.
        start_ += 4;
        return n == 0 ? -EPROTO : -EMSGSIZE;
      }
      if (have >= 4 + static_cast<size_t>(n)) {
        payload.assign(buf_, start_ + 4, n);
        start_ += 4 + n;
        if (start_ == buf_.size()) {
          buf_.clear();
          start_ = 0;
        }
        return 0;
      }
    }
    if (start_ > 0 && start_ > buf_.size() / 2) {
      buf_.erase(0, start_);
      start_ = 0;
    }
    char tmp[64 * 1024];
    ssize_t got = recv(fd_, tmp, sizeof tmp, 0);
    if (got == 0) return -ECONNRESET;
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (int w = wait(POLLIN); w < 0) return w;
        continue;
      }
      return -errno;
    }
    buf_.append(tmp, static_cast<size_t>(got));
  }
}

int Connection::discard(uint64_t n) {
  size_t have = buf_.size() - start_;
  size_t from_buf = static_cast<size_t>(std::min<uint64_t>(n, have));
  start_ += from_buf;
  n -= from_buf;
  if (start_ == buf_.size()) {
    buf_.clear();
    start_ = 0;
  }
  char tmp[64 * 1024];
  while (n > 0) {
    ssize_t got = recv(fd_, tmp, static_cast<size_t>(std::min<uint64_t>(n, sizeof tmp)), 0);
    if (got == 0) return -ECONNRESET;
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (int w = wait(POLLIN); w < 0) return w;
        continue;
      }
      return -errno;
    }
    n -= static_cast<uint64_t>(got);
  }
  return 0;
}

}  // namespace cairn::client
