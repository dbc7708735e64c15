// What a harness run reads and writes: a case directory holding case.txt ("key value" lines) and raw
// little-endian buffers (*.bin, written by tests/kernels/test_cuda_simt.py with numpy's tofile); outputs are
// written back there as *.bin.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace simt_driver {

// A device buffer stand-in: `bytes` of payload `offset_bytes` into its own heap allocation, so that
// AddressSanitizer reports any access past its end, and the payload can start misaligned as a tensor
// with a storage offset does.
class Buffer {
 public:
  Buffer(size_t bytes, size_t offset_bytes);
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();
  void* data() { return storage_ + offset_; }
  size_t size() const { return bytes_; }

 private:
  unsigned char* storage_;
  size_t bytes_, offset_;
};

class Case {
 public:
  explicit Case(std::string directory);
  std::string text(const std::string& key) const;
  int64_t integer(const std::string& key) const;
  double real(const std::string& key) const;
  bool has(const std::string& key) const { return values_.count(key) != 0; }
  // Reads <name>.bin into a new buffer placed `offset_bytes` into its allocation; `expected_bytes` is checked.
  std::unique_ptr<Buffer> read(const std::string& name, size_t expected_bytes, size_t offset_bytes = 0) const;
  // A buffer for an output, every byte set to `fill` (0xff: NaN in every float type, so unwritten
  // elements show).
  static std::unique_ptr<Buffer> output(size_t bytes, size_t offset_bytes = 0, unsigned char fill = 0xff);
  void write(const std::string& name, const void* data, size_t bytes) const;

 private:
  std::string directory_;
  std::map<std::string, std::string> values_;
};

// Reads a float64 file of `count` values (scale, bias, rel_bias, mask), converted to T like torch's .to().
template <typename T>
std::vector<T> read_values(const Case& c, const std::string& name, size_t count);

[[noreturn]] void fail(const std::string& message);

}  // namespace simt_driver
