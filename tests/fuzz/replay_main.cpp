// replay_main.cpp — a main() for fuzz targets in builds without libFuzzer (g++ trees).
//
// Runs LLVMFuzzerTestOneInput once on every file named on the command line, or on every
// regular file inside a named directory (sorted, so a failure names the same file on
// every run). It does not mutate anything: in the g++ and ASan trees the fuzz suite only
// replays the seed corpus and the regression inputs, so a fixed crash stays fixed even
// where clang is not installed. Flags (arguments starting with '-') are libFuzzer's and
// are ignored here.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);

namespace {

void collect(const std::string& path, std::vector<std::string>& out) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    std::fprintf(stderr, "replay: cannot stat %s\n", path.c_str());
    std::exit(2);
  }
  if (!S_ISDIR(st.st_mode)) {
    out.push_back(path);
    return;
  }
  DIR* d = opendir(path.c_str());
  if (d == nullptr) return;
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n == "." || n == ".." || n[0] == '.') continue;  // .gitkeep and friends
    names.push_back(path + "/" + n);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  for (const auto& n : names) collect(n, out);
}

}  // namespace

int main(int argc, char** argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i)
    if (argv[i][0] != '-') collect(argv[i], files);
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::vector<char> buf((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", f.c_str(), buf.size());
    // A copy of exactly the input's size, so ASan sees a read one past the end.
    std::vector<uint8_t> exact(buf.begin(), buf.end());
    uint8_t* data = exact.empty() ? nullptr : exact.data();
    LLVMFuzzerTestOneInput(data, exact.size());
  }
  std::fprintf(stderr, "replay: %zu inputs, no failure\n", files.size());
  return 0;
}
