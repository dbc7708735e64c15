#include "case_io.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace simt_driver {

void fail(const std::string& message) {
  std::fprintf(stderr, "driver error: %s\n", message.c_str());
  std::exit(2);
}

Buffer::Buffer(size_t bytes, size_t offset_bytes) : storage_(nullptr), bytes_(bytes), offset_(offset_bytes) {
  // 256-byte aligned like a CUDA allocation; exactly offset + bytes long, so ASan reports the first byte past it.
  void* storage = nullptr;
  if (posix_memalign(&storage, 256, offset_bytes + bytes + (bytes == 0 ? 1 : 0)) != 0) fail("out of memory");
  storage_ = static_cast<unsigned char*>(storage);
}

Buffer::~Buffer() { std::free(storage_); }

Case::Case(std::string directory) : directory_(std::move(directory)) {
  std::ifstream file(directory_ + "/case.txt");
  if (!file) fail("cannot read " + directory_ + "/case.txt");
  std::string line;
  while (std::getline(file, line)) {
    std::istringstream fields(line);
    std::string key, value;
    if (fields >> key >> value) values_[key] = value;
  }
}

std::string Case::text(const std::string& key) const {
  auto found = values_.find(key);
  if (found == values_.end()) fail("case.txt: missing key " + key);
  return found->second;
}

int64_t Case::integer(const std::string& key) const { return std::stoll(text(key)); }
double Case::real(const std::string& key) const { return std::stod(text(key)); }

std::unique_ptr<Buffer> Case::read(const std::string& name, size_t expected_bytes, size_t offset_bytes) const {
  const std::string path = directory_ + "/" + name + ".bin";
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) fail("cannot read " + path);
  const size_t bytes = static_cast<size_t>(file.tellg());
  if (bytes != expected_bytes)
    fail(path + ": expected " + std::to_string(expected_bytes) + " bytes, got " + std::to_string(bytes));
  auto buffer = std::make_unique<Buffer>(bytes, offset_bytes);
  file.seekg(0);
  file.read(static_cast<char*>(buffer->data()), static_cast<std::streamsize>(bytes));
  return buffer;
}

std::unique_ptr<Buffer> Case::output(size_t bytes, size_t offset_bytes, unsigned char fill) {
  auto buffer = std::make_unique<Buffer>(bytes, offset_bytes);
  std::memset(buffer->data(), fill, bytes);
  return buffer;
}

void Case::write(const std::string& name, const void* data, size_t bytes) const {
  const std::string path = directory_ + "/" + name + ".bin";
  std::ofstream file(path, std::ios::binary);
  file.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!file) fail("cannot write " + path);
}

template <typename T>
std::vector<T> read_values(const Case& c, const std::string& name, size_t count) {
  const std::unique_ptr<Buffer> raw = c.read(name, count * sizeof(double));
  std::vector<T> values(count);
  const double* source = static_cast<const double*>(raw->data());
  for (size_t i = 0; i < count; ++i) values[i] = static_cast<T>(source[i]);
  return values;
}

template std::vector<float> read_values<float>(const Case&, const std::string&, size_t);
template std::vector<double> read_values<double>(const Case&, const std::string&, size_t);

}  // namespace simt_driver
