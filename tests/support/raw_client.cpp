#include "raw_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "harness.hpp"

namespace cairn::test {

RawClient::RawClient(const std::string& socket_path) {
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, socket_path.c_str(), sizeof sa.sun_path - 1);
  if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

RawClient::~RawClient() { close_now(); }

void RawClient::close_now() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawClient::half_close() { return fd_ >= 0 && ::shutdown(fd_, SHUT_WR) == 0; }

bool RawClient::send_bytes(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    off += static_cast<size_t>(n);
  }
  return true;
}

std::optional<std::string> RawClient::read_frame(int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    if (buf_.size() >= 4) {
      uint32_t n = (static_cast<uint32_t>(static_cast<uint8_t>(buf_[0])) << 24) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(buf_[1])) << 16) |
                   (static_cast<uint32_t>(static_cast<uint8_t>(buf_[2])) << 8) |
                   static_cast<uint32_t>(static_cast<uint8_t>(buf_[3]));
      if (buf_.size() >= 4 + static_cast<size_t>(n)) {
        std::string payload = buf_.substr(4, n);
        buf_.erase(0, 4 + static_cast<size_t>(n));
        return payload;
      }
    }
    int64_t left = deadline - now_ms();
    if (left <= 0 || fd_ < 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) return std::nullopt;
    char tmp[65536];
    ssize_t got = recv(fd_, tmp, sizeof tmp, 0);
    if (got <= 0) return std::nullopt;
    buf_.append(tmp, static_cast<size_t>(got));
  }
}

bool RawClient::closed_by_peer(int timeout_ms) {
  int64_t deadline = now_ms() + timeout_ms;
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char tmp[4096];
    ssize_t got = recv(fd_, tmp, sizeof tmp, 0);
    if (got == 0) return true;
    if (got < 0) return errno == ECONNRESET;
    buf_.append(tmp, static_cast<size_t>(got));
  }
}

std::optional<ReplyView> decode_reply(const std::string& payload) {
  auto d = proto::Decoded::parse(
      {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, 16);
  if (!d) return std::nullopt;
  auto r = proto::reply_from(d.value());
  if (!r) return std::nullopt;
  ReplyView v;
  v.ok = r.value().ok;
  v.id = r.value().id;
  v.error = r.value().error_name;
  v.field = r.value().field;
  v.rule = r.value().rule;
  v.message = r.value().message;
  if (v.ok) {
    auto a = proto::ack_from(r.value());
    if (a) {
      v.seq = a.value().seq;
      v.durable = a.value().durable;
      v.duplicate = a.value().duplicate;
    }
  }
  return v;
}

std::string append_frame(uint64_t id, const std::string& type, const std::string& actor) {
  proto::EventView ev;
  ev.type = type;
  if (!actor.empty()) ev.actor = actor;
  std::string out;
  proto::encode_append(out, id, ev);
  return out;
}

}  // namespace cairn::test
