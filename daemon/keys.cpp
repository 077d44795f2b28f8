#include "keys.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cairn::daemon {

struct KeyFile::Secrets {
  uint8_t cur_seed[32];
  uint8_t next_seed[32];
  uint8_t cur_sk[64];
  uint8_t next_sk[64];
  uint8_t slot[512];  // staging buffer for a slot being written or read
};

namespace {
constexpr size_t kSlot = 512;
constexpr size_t kSumAt = kSlot - 32;
constexpr char kMagic[8] = {'C', 'A', 'I', 'R', 'N', 'K', 'Y', '1'};

void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}
std::string err(const std::string& path, const std::string& what) {
  return "key file " + path + ": " + what + (errno ? std::string(": ") + strerror(errno) : "");
}
}  // namespace

// Test hook: the crash suite's VFS shim defines it to log key file I/O beside SQLite's
// (tests/crash/vfs_shim.cpp); in cairnd it is null. op 1 = write, 2 = sync.
extern "C" void cairn_keyfile_io(int op, int64_t offset, const void* data, size_t len) __attribute__((weak));

namespace {

void note_io(int op, off_t at, const uint8_t* p, size_t n) {
  if (cairn_keyfile_io != nullptr) cairn_keyfile_io(op, at, p, n);
}

bool sync_fd(int fd) {
  note_io(2, 0, nullptr, 0);
  return fdatasync(fd) == 0;
}

bool full_write(int fd, const uint8_t* p, size_t n, off_t at) {
  note_io(1, at, p, n);
  while (n > 0) {
    ssize_t w = pwrite(fd, p, n, at);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
    at += w;
  }
  return true;
}
}  // namespace

KeyFile::~KeyFile() {
  if (sec_ != nullptr) sodium_free(sec_);  // wipes before freeing
  if (fd_ >= 0) ::close(fd_);
}

const uint8_t* KeyFile::secret() const { return sec_->cur_sk; }

bool KeyFile::exists(const std::string& path) {
  struct stat sb {};
  return lstat(path.c_str(), &sb) == 0;
}

void KeyFile::derive() {
  crypto_sign_seed_keypair(pub_.current.data(), sec_->cur_sk, sec_->cur_seed);
  if (pub_.pending) crypto_sign_seed_keypair(pub_.next.data(), sec_->next_sk, sec_->next_seed);
  else sodium_memzero(sec_->next_sk, sizeof sec_->next_sk);
}

Result<Ok, std::string> KeyFile::write_state() {
  uint8_t* s = sec_->slot;
  sodium_memzero(s, kSlot);
  ++counter_;
  std::memcpy(s, kMagic, 8);
  put64(s + 8, counter_);
  put64(s + 16, pub_.epoch);
  put64(s + 24, pub_.pending ? 1 : 0);
  put64(s + 32, pub_.sealed_size);
  put64(s + 40, pub_.sealed_seq);
  put64(s + 48, static_cast<uint64_t>(pub_.window_start));
  std::memcpy(s + 56, pub_.first.data(), 32);
  std::memcpy(s + 88, sec_->cur_seed, 32);
  if (pub_.pending) std::memcpy(s + 120, sec_->next_seed, 32);
  s[152] = static_cast<uint8_t>(pub_.origin.size());
  std::memcpy(s + 153, pub_.origin.data(), pub_.origin.size());
  crypto_hash_sha256(s + kSumAt, s, kSumAt);
  // Newest slot first, then the other: after both, no slot holds an older secret.
  off_t first = static_cast<off_t>((counter_ & 1) * kSlot);
  off_t second = static_cast<off_t>(kSlot) - first;
  errno = 0;
  if (!full_write(fd_, s, kSlot, first) || !sync_fd(fd_) || !full_write(fd_, s, kSlot, second) ||
      !sync_fd(fd_)) {
    sodium_memzero(s, kSlot);
    return Err{err(path_, "write failed")};
  }
  sodium_memzero(s, kSlot);
  return Ok{};
}

Result<std::unique_ptr<KeyFile>, std::string> KeyFile::make(const std::string& path) {
  if (sodium_init() < 0) return Err{std::string("libsodium failed to initialise")};
  std::unique_ptr<KeyFile> k(new KeyFile());
  k->path_ = path;
  k->sec_ = static_cast<Secrets*>(sodium_malloc(sizeof(Secrets)));
  if (k->sec_ == nullptr) return Err{std::string("cannot allocate locked memory for the key")};
  errno = 0;
  return k;
}

Result<std::unique_ptr<KeyFile>, std::string> KeyFile::open(const std::string& path, bool create,
                                                            const std::string& origin, int64_t now_ns) {
  auto made = make(path);
  if (!made) return Err{made.error()};
  std::unique_ptr<KeyFile> k = std::move(made.value());
  bool fresh = false;
  k->fd_ = ::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (k->fd_ < 0 && errno == ENOENT && create) {
    k->fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    fresh = k->fd_ >= 0;
  }
  if (k->fd_ < 0)
    return Err{err(path, errno == ELOOP ? "is a symbolic link (refused)" : "cannot open")};
  struct stat sb {};
  if (fstat(k->fd_, &sb) != 0) return Err{err(path, "stat")};
  if (!S_ISREG(sb.st_mode)) return Err{"key file " + path + ": not a regular file"};
  if (sb.st_uid != geteuid())
    return Err{"key file " + path + " is owned by uid " + std::to_string(sb.st_uid) +
               ", not by cairnd's uid " + std::to_string(geteuid()) + " (chown it, or remove it if it is not yours)"};
  if ((sb.st_mode & 077) != 0) {
    if (fchmod(k->fd_, 0600) != 0) return Err{err(path, "chmod 0600")};
  }
  if (!fresh && create && sb.st_size > 0 && !k->load()) {
    // The database has never named a key (create), and no slot of this file is whole:
    // a power cut between creating the file and its first sync. Nothing was ever signed
    // with it, so start it over.
    fresh = ftruncate(k->fd_, 0) == 0;
    if (!fresh) return Err{err(path, "truncate")};
  } else if (!fresh && create && sb.st_size == 0) {
    fresh = true;
  }
  if (fresh) {
    if (origin.size() > 255) return Err{std::string("origin longer than 255 bytes")};
    k->pub_.origin = origin;
    k->pub_.window_start = now_ns;
    randombytes_buf(k->sec_->cur_seed, 32);
    k->derive();
    k->pub_.first = k->pub_.current;
    auto w = k->write_state();
    if (!w) return Err{w.error()};
    // The file's directory entry must be durable before anything refers to the key.
    std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
    int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      fsync(dfd);
      ::close(dfd);
    }
    return k;
  }
  auto l = k->load();
  if (!l) return Err{l.error()};
  if (k->slots_differ_) {
    // A write was cut between the slots: finish it, so the older slot's secret is gone.
    --k->counter_;
    auto w = k->write_state();
    if (!w) return Err{w.error()};
  }
  return k;
}

Result<KeyPublic, std::string> KeyFile::read_public(const std::string& path) {
  auto made = make(path);
  if (!made) return Err{made.error()};
  std::unique_ptr<KeyFile> k = std::move(made.value());
  k->fd_ = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (k->fd_ < 0) return Err{err(path, "cannot open")};
  auto l = k->load();
  if (!l) return Err{l.error()};
  return k->pub_;  // ~KeyFile wipes the seeds
}

Result<Ok, std::string> KeyFile::load() {
  // The valid slot with the highest counter wins.
  uint8_t* s = sec_->slot;
  uint64_t best = 0;
  bool found = false, both_same = true;
  uint8_t sum[32];
  for (int i = 0; i < 2; ++i) {
    ssize_t n = pread(fd_, s, kSlot, static_cast<off_t>(i * kSlot));
    crypto_hash_sha256(sum, s, kSumAt);
    bool ok = n == static_cast<ssize_t>(kSlot) && std::memcmp(s, kMagic, 8) == 0 &&
              std::memcmp(sum, s + kSumAt, 32) == 0;
    if (!ok) {
      both_same = false;
      continue;
    }
    uint64_t c = get64(s + 8);
    if (found && c != best) both_same = false;
    if (found && c <= best) continue;
    found = true;
    best = c;
    counter_ = c;
    pub_.epoch = get64(s + 16);
    pub_.pending = get64(s + 24) & 1;
    pub_.sealed_size = get64(s + 32);
    pub_.sealed_seq = get64(s + 40);
    pub_.window_start = static_cast<int64_t>(get64(s + 48));
    std::memcpy(pub_.first.data(), s + 56, 32);
    std::memcpy(sec_->cur_seed, s + 88, 32);
    std::memcpy(sec_->next_seed, s + 120, 32);
    pub_.origin.assign(reinterpret_cast<const char*>(s + 153), s[152]);
  }
  sodium_memzero(s, kSlot);
  if (!found) return Err{"key file " + path_ + " holds no valid key slot (damaged or not a cairn key file)"};
  slots_differ_ = !both_same;
  derive();
  return Ok{};
}
Result<Ok, std::string> KeyFile::prepare_next() {
  if (pub_.pending) return Ok{};
  randombytes_buf(sec_->next_seed, 32);
  pub_.pending = true;
  derive();
  auto w = write_state();
  if (!w) {
    pub_.pending = false;
    sodium_memzero(sec_->next_seed, 32);
    derive();
  }
  return w;
}

Result<Ok, std::string> KeyFile::advance(uint64_t sealed_size, uint64_t sealed_seq, int64_t sealed_time) {
  if (!pub_.pending) return Err{std::string("advance without a prepared next key")};
  std::memcpy(sec_->cur_seed, sec_->next_seed, 32);
  sodium_memzero(sec_->next_seed, 32);
  pub_.pending = false;
  pub_.epoch += 1;
  pub_.sealed_size = sealed_size;
  pub_.sealed_seq = sealed_seq;
  pub_.window_start = sealed_time;
  derive();
  return write_state();
}

}  // namespace cairn::daemon
