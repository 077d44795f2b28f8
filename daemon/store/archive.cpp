// archive.cpp — writing, reading and listing archive segments (archive.hpp).
//
// Layout of a segment (PROTOCOL.md §11): a text header, one field a line, ending with an
// empty line, then one zstd frame. The frame decompresses to the records in seq order,
// each a u32 little-endian length and the canonical body.
//
//   cairn archive v1
//   first <seq>
//   last <seq>
//   received <min ns> <max ns>
//   raw <decompressed bytes>
//   payload <compressed bytes> <sha256 hex of them>
//   <empty line>
//   <zstd frame>
#include "archive.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

namespace cairn::store {
namespace {

constexpr mode_t kSegmentMode = 0600;  // as the database: audit records are not for everyone
constexpr mode_t kDirMode = 0700;
constexpr size_t kMaxHeader = 512;
// A segment is read whole into memory; this bounds what a planted file can make us allocate.
constexpr uint64_t kMaxRaw = uint64_t{1} << 32;

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

// Parses the 20-digit "<first>-<last>.cairnar".
bool parse_name(std::string_view name, uint64_t& first, uint64_t& last) {
  if (name.size() != 41 + kArchiveSuffix.size() || name.substr(41) != kArchiveSuffix || name[20] != '-')
    return false;
  auto num = [](std::string_view s, uint64_t& out) {
    out = 0;
    for (char c : s) {
      if (c < '0' || c > '9' || out > (UINT64_MAX - 9) / 10) return false;
      out = out * 10 + static_cast<uint64_t>(c - '0');
    }
    return true;
  };
  return num(name.substr(0, 20), first) && num(name.substr(21, 20), last) && first >= 1 && first <= last;
}

std::string segment_name(uint64_t first, uint64_t last) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%020" PRIu64 "-%020" PRIu64, first, last);
  return std::string(buf) + std::string(kArchiveSuffix);
}

bool write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

Result<Ok, std::string> fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return Err{errno_text("open directory", dir)};
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  errno = e;
  if (rc != 0) return Err{errno_text("fsync directory", dir)};
  return Ok{};
}

// Creates dir 0700 if missing; refuses a symlink or a directory another uid owns.
Result<Ok, std::string> ensure_dir(const std::string& dir) {
  if (::mkdir(dir.c_str(), kDirMode) == 0) {
    if (::chmod(dir.c_str(), kDirMode) != 0) return Err{errno_text("chmod", dir)};  // the umask narrowed it
    size_t slash = dir.rfind('/');
    return fsync_dir(slash == std::string::npos ? "." : slash == 0 ? "/" : dir.substr(0, slash));
  }
  if (errno != EEXIST) return Err{errno_text("create", dir)};
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return Err{errno_text("stat", dir)};
  if (!S_ISDIR(st.st_mode)) return Err{"refusing " + dir + ": it is not a directory (a symbolic link?)"};
  if (st.st_uid != ::geteuid()) return Err{"refusing " + dir + ": it is owned by uid " + std::to_string(st.st_uid)};
  return Ok{};
}

bool read_whole(const std::string& path, std::string& out, std::string& err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    err = errno_text("open", path);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxRaw) {
    ::close(fd);
    err = path + ": not a regular file of a segment's size";
    return false;
  }
  out.resize(static_cast<size_t>(st.st_size));
  size_t got = 0;
  while (got < out.size()) {
    ssize_t r = ::read(fd, out.data() + got, out.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  if (got != out.size()) {
    err = path + ": short read";
    return false;
  }
  return true;
}

struct Header {
  uint64_t first = 0, last = 0, raw = 0, payload = 0;
  int64_t min_received = 0, max_received = 0;
  seal::Hash sum{};
  size_t length = 0;  // bytes up to and including the empty line
};

std::optional<Header> parse_header(std::string_view file) {
  size_t end = file.substr(0, kMaxHeader).find("\n\n");
  if (end == std::string_view::npos) return std::nullopt;
  std::string text(file.substr(0, end + 1));
  Header h;
  char sum[65] = {};
  unsigned long long first = 0, last = 0, raw = 0, payload = 0;
  long long lo = 0, hi = 0;
  int n = std::sscanf(text.c_str(),
                      "cairn archive v1\nfirst %llu\nlast %llu\nreceived %lld %lld\nraw %llu\npayload %llu %64[0-9a-f]\n",
                      &first, &last, &lo, &hi, &raw, &payload, sum);
  if (n != 7) return std::nullopt;
  auto bytes = seal::unhex(sum);
  if (!bytes || bytes->size() != 32) return std::nullopt;
  std::memcpy(h.sum.data(), bytes->data(), 32);
  h.first = first, h.last = last, h.raw = raw, h.payload = payload;
  h.min_received = lo, h.max_received = hi;
  h.length = end + 2;
  if (h.first == 0 || h.last < h.first || h.raw > kMaxRaw) return std::nullopt;
  return h;
}

Result<Segment, std::string> read_impl(const std::string& path, bool whole) {
  std::string file, err;
  if (!read_whole(path, file, err)) return Err{err};
  auto h = parse_header(file);
  if (!h) return Err{path + ": not a cairn archive segment (header unreadable or cut)"};
  Segment s;
  s.first = h->first;
  s.last = h->last;
  s.min_received = h->min_received;
  s.max_received = h->max_received;
  s.file_bytes = file.size();
  uint64_t want_first = 0, want_last = 0;
  size_t slash = path.rfind('/');
  if (!parse_name(slash == std::string::npos ? path : path.substr(slash + 1), want_first, want_last) ||
      want_first != s.first || want_last != s.last)
    return Err{path + ": the header says records " + std::to_string(s.first) + ".." + std::to_string(s.last) +
               ", not what the file name says (renamed?)"};
  if (!whole) return s;
  std::string_view payload = std::string_view(file).substr(h->length);
  if (payload.size() != h->payload)
    return Err{path + ": payload is " + std::to_string(payload.size()) + " bytes, the header says " +
               std::to_string(h->payload) + " (truncated or extended)"};
  if (seal::sha256(payload) != h->sum) return Err{path + ": payload checksum mismatch (the file was altered)"};
  s.sha256 = seal::sha256(file);
  s.raw.resize(h->raw);
  size_t got = ZSTD_decompress(s.raw.data(), s.raw.size(), payload.data(), payload.size());
  if (ZSTD_isError(got) || got != h->raw) return Err{path + ": payload does not decompress to its stated size"};
  uint64_t count = s.last - s.first + 1;
  s.offsets.reserve(count);
  size_t off = 0;
  while (off < s.raw.size()) {
    if (s.raw.size() - off < 4) return Err{path + ": a record's length is cut"};
    uint32_t len = 0;
    for (int i = 3; i >= 0; --i) len = (len << 8) | static_cast<uint8_t>(s.raw[off + static_cast<size_t>(i)]);
    off += 4;
    if (len == 0 || s.raw.size() - off < len) return Err{path + ": a record's body is cut"};
    s.offsets.push_back(static_cast<uint32_t>(off));
    off += len;
    if (s.offsets.size() > count) break;
  }
  if (s.offsets.size() != count)
    return Err{path + ": holds " + std::to_string(s.offsets.size()) + " records, the header says " +
               std::to_string(count)};
  return s;
}

}  // namespace

std::string_view Segment::body(uint64_t seq) const {
  size_t i = static_cast<size_t>(seq - first);
  uint32_t start = offsets[i];
  size_t len = 0;
  for (int k = 3; k >= 0; --k) len = (len << 8) | static_cast<uint8_t>(raw[start - 4 + static_cast<size_t>(k)]);
  return std::string_view(raw).substr(start, len);
}

std::string archive_dir(const std::string& db_path) { return db_path + ".archive"; }

Result<std::vector<SegmentFile>, std::string> list_segments(const std::string& dir) {
  std::vector<SegmentFile> out;
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return out;
    return Err{errno_text("open", dir)};
  }
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return Err{errno_text("read", dir)};
  }
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.size() < kArchiveSuffix.size() || name.substr(name.size() - kArchiveSuffix.size()) != kArchiveSuffix)
      continue;  // temporary files (".tmp-...") and anything else
    SegmentFile f;
    if (!parse_name(name, f.first, f.last)) {
      ::closedir(d);
      return Err{dir + "/" + std::string(name) + ": not a segment name (<first>-<last>" +
                 std::string(kArchiveSuffix) + ", 20 digits each)"};
    }
    f.path = dir + "/" + std::string(name);
    out.push_back(std::move(f));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const SegmentFile& a, const SegmentFile& b) {
    return a.first != b.first ? a.first < b.first : a.last < b.last;
  });
  return out;
}

Result<Segment, std::string> read_segment(const std::string& path) { return read_impl(path, true); }
Result<Segment, std::string> read_segment_header(const std::string& path) { return read_impl(path, false); }

Result<WrittenSegment, std::string> write_segment(const std::string& dir, uint64_t first,
                                                  const std::vector<std::string>& bodies,
                                                  int64_t min_received, int64_t max_received, int level) {
  if (bodies.empty() || first == 0) return Err{std::string("write segment: no records")};
  auto d = ensure_dir(dir);
  if (!d) return Err{d.error()};
  std::string raw;
  size_t total = 0;
  for (const auto& b : bodies) total += 4 + b.size();
  raw.reserve(total);
  for (const auto& b : bodies) {
    uint32_t n = static_cast<uint32_t>(b.size());
    for (int i = 0; i < 4; ++i) raw.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
    raw += b;
  }
  std::string z(ZSTD_compressBound(raw.size()), '\0');
  size_t zn = ZSTD_compress(z.data(), z.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(zn)) return Err{std::string("zstd: ") + ZSTD_getErrorName(zn)};
  z.resize(zn);
  uint64_t last = first + bodies.size() - 1;
  char head[kMaxHeader];
  int hn = std::snprintf(head, sizeof head,
                         "cairn archive v1\nfirst %" PRIu64 "\nlast %" PRIu64 "\nreceived %" PRId64 " %" PRId64
                         "\nraw %zu\npayload %zu %s\n\n",
                         first, last, min_received, max_received, raw.size(), z.size(),
                         seal::hex(seal::sha256(z)).c_str());
  WrittenSegment out;
  out.path = dir + "/" + segment_name(first, last);
  std::string tmp = dir + "/.tmp-" + segment_name(first, last);
  ::unlink(tmp.c_str());  // left by an interrupted run
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, kSegmentMode);
  if (fd < 0) return Err{errno_text("create", tmp)};
  // fchmod: the umask may have narrowed the mode; it never widens past kSegmentMode.
  bool ok = ::fchmod(fd, kSegmentMode) == 0 && write_all(fd, head, static_cast<size_t>(hn)) &&
            write_all(fd, z.data(), z.size()) && ::fsync(fd) == 0;
  int e = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    errno = e;
    return Err{errno_text("write", tmp)};
  }
  if (::rename(tmp.c_str(), out.path.c_str()) != 0) {
    e = errno;
    ::unlink(tmp.c_str());
    errno = e;
    return Err{errno_text("rename into place", out.path)};
  }
  auto s = fsync_dir(dir);
  if (!s) return Err{s.error()};
  std::string file(head, static_cast<size_t>(hn));
  file += z;
  out.sha256 = seal::sha256(file);
  out.raw_bytes = raw.size();
  out.file_bytes = file.size();
  return out;
}

Result<Ok, std::string> remove_segment(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return Err{errno_text("remove", path)};
  size_t slash = path.rfind('/');
  return fsync_dir(slash == std::string::npos ? "." : path.substr(0, slash));
}

uint64_t archive_bytes(const std::string& dir) {
  auto l = list_segments(dir);
  if (!l) return 0;
  uint64_t n = 0;
  for (const auto& f : l.value()) {
    struct stat st {};
    if (::stat(f.path.c_str(), &st) == 0) n += static_cast<uint64_t>(st.st_size);
  }
  return n;
}

}  // namespace cairn::store
