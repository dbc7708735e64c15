// The SIMT harness's scheduler: runs a launch's blocks one after another and a block's threads as
// fibers on this one OS thread, switching only at synchronisation points.
//
// Why fibers and not one OS thread per CUDA thread: a block has up to 1024 threads and a warp reduction
// switches 32 of them per shuffle, about a million switches for one attention case. A fiber switch is a
// few nanoseconds and no kernel scheduler is involved, so the order in which threads run is exactly the
// configured one; an OS thread per CUDA thread with a baton gives the same semantics at a futex wake-up
// and a kernel context switch (microseconds) per handover. The switch is our own (a few instructions of
// x86-64 assembly, below): glibc's swapcontext makes a system call per switch, and ASan's interceptor of it
// clears the shadow of the whole target stack each time, which was 60% of the run time. AddressSanitizer is
// told about every switch (__sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber), so it keeps
// checking the fibers' stacks.
#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "simt_runtime.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define SIMT_WITH_ASAN 1
#else
#define SIMT_WITH_ASAN 0
#endif

namespace simt {
namespace {

// ASan needs bigger frames; 256 KB of address space per fiber, touched pages only.
constexpr size_t kFiberStackBytes = 256 * 1024;
constexpr size_t kGuardBytes = 4096;
constexpr int kExitCode = 86;
// Dynamic shared memory is filled with this byte at every block start: NaN as float/double, -1 as int.
constexpr unsigned char kPoisonByte = 0xff;

enum class Status { kRunnable, kAtBarrier, kInWarpCollective, kExited };

#if !defined(__x86_64__)
#error "the SIMT harness's fiber switch is written for x86-64"
#endif

// switch_stack(&save, next): saves the callee-saved registers, MXCSR and the x87 control word on the
// current stack, stores its stack pointer in *save, and resumes the context whose stack pointer is next.
extern "C" void simt_switch_stack(void** save, void* next);
asm(R"(
  .text
  .globl simt_switch_stack
  .type simt_switch_stack, @function
simt_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size simt_switch_stack, .-simt_switch_stack
  .section .note.GNU-stack,"",@progbits
  .text
)");

// A new fiber's stack as simt_switch_stack leaves a suspended one: the saved registers (zero), default
// MXCSR / x87 control word, and `entry` as the return address, with the stack aligned as after a call.
void* prepare_stack(unsigned char* stack, size_t size, void (*entry)()) {
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + size) & ~uintptr_t{15};
  auto* slots = reinterpret_cast<uint64_t*>(top);
  slots[-1] = 0;                                    // entry's (never used) return address
  slots[-2] = reinterpret_cast<uint64_t>(entry);   // popped by ret
  for (int i = 3; i <= 8; ++i) slots[-i] = 0;      // rbp, rbx, r12..r15
  slots[-9] = 0x1f80 | (uint64_t{0x037f} << 32);   // MXCSR (all exceptions masked), x87 control word
  return &slots[-9];
}

struct Fiber {
  void* stack_pointer = nullptr;  // while switched out
  unsigned char* stack = nullptr;  // usable stack (above the guard page)
  detail::Coordinates coordinates;
  Status status = Status::kRunnable;
  const char* barrier_file = nullptr;
  int barrier_line = 0;
  const detail::WarpCall* pending = nullptr;  // the warp collective it waits in
  void* fake_stack = nullptr;                 // ASan's bookkeeping while switched out
};

struct Scheduler {
  Order order = Order::kForward;
  uint64_t seed = 0;
  std::mt19937_64 random;
  std::vector<Fiber> fibers;
  void* scheduler_stack_pointer = nullptr;
  void* scheduler_fake_stack = nullptr;
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
  Fiber* running = nullptr;
  detail::LaunchBody body{};
  unsigned threads = 0, exited = 0, at_barrier = 0;
  // Per warp, the lanes that wait in a warp collective / wait in __syncthreads / have returned.
  struct WarpMasks {
    uint32_t waiting = 0, at_barrier = 0, exited = 0;
  };
  std::vector<WarpMasks> warps;
  std::vector<unsigned> runnable;  // reused by every scheduling round
  std::vector<unsigned> runnable_warps;  // likewise (warp-major orders)
  // Launch being run, for messages.
  unsigned long launch_number = 0;
  dim3 grid, block;
  size_t shared_bytes = 0;
  bool in_launch = false;
  std::map<const void*, size_t> max_dynamic_shared;  // opt-ins by cudaFuncSetAttribute
  std::vector<unsigned char*> dynamic_shared_buffers;
  cudaError_t last_error = cudaSuccess;
};

Scheduler& scheduler() {
  static Scheduler instance;
  return instance;
}

std::string describe_schedule() {
  const Scheduler& s = scheduler();
  char text[160];
  std::snprintf(text, sizeof text, "order=%s seed=%llu (SIMT_ORDER / SIMT_SEED reproduce it)", order_name(s.order),
                static_cast<unsigned long long>(s.seed));
  return text;
}

std::string describe_position() {
  const Scheduler& s = scheduler();
  if (!s.in_launch) return "outside a launch";
  char text[320];
  int used = std::snprintf(text, sizeof text, "launch #%lu grid (%u,%u,%u) block (%u,%u,%u) dynamic shared %zu B",
                           s.launch_number, s.grid.x, s.grid.y, s.grid.z, s.block.x, s.block.y, s.block.z,
                           s.shared_bytes);
  if (s.running != nullptr && used > 0 && static_cast<size_t>(used) < sizeof text) {
    const detail::Coordinates& c = s.running->coordinates;
    std::snprintf(text + used, sizeof text - used, ", block (%u,%u,%u) thread (%u,%u,%u) = warp %u lane %u",
                  c.block_index.x, c.block_index.y, c.block_index.z, c.thread_index.x, c.thread_index.y,
                  c.thread_index.z, c.linear_thread / 32, c.linear_thread % 32);
  }
  return text;
}

[[noreturn]] void fail_with(const std::string& message) {
  std::fprintf(stderr, "simt error: %s\n  at %s\n  schedule: %s\n", message.c_str(), describe_position().c_str(),
               describe_schedule().c_str());
  std::fflush(stderr);
  std::_Exit(kExitCode);
}

std::string vformat(const char* format, va_list args) {
  char text[1024];
  std::vsnprintf(text, sizeof text, format, args);
  return text;
}

// ---- fiber switching ----------------------------------------------------------------------------

void switch_to_fiber(Fiber& fiber) {
  Scheduler& s = scheduler();
  s.running = &fiber;
  detail::current = &fiber.coordinates;
#if SIMT_WITH_ASAN
  __sanitizer_start_switch_fiber(&s.scheduler_fake_stack, fiber.stack, kFiberStackBytes);
#endif
  simt_switch_stack(&s.scheduler_stack_pointer, fiber.stack_pointer);
#if SIMT_WITH_ASAN
  __sanitizer_finish_switch_fiber(s.scheduler_fake_stack, nullptr, nullptr);
#endif
  s.running = nullptr;
  detail::current = nullptr;
}

// Called on a fiber: back to the scheduler; returns when the scheduler resumes this fiber.
void yield_to_scheduler() {
  Scheduler& s = scheduler();
  Fiber& self = *s.running;
#if SIMT_WITH_ASAN
  __sanitizer_start_switch_fiber(&self.fake_stack, s.scheduler_stack_bottom, s.scheduler_stack_size);
#endif
  simt_switch_stack(&self.stack_pointer, s.scheduler_stack_pointer);
#if SIMT_WITH_ASAN
  __sanitizer_finish_switch_fiber(self.fake_stack, &s.scheduler_stack_bottom, &s.scheduler_stack_size);
#endif
}

// ---- warp collectives ---------------------------------------------------------------------------

unsigned warp_of(const Fiber& f) { return f.coordinates.linear_thread / 32; }
unsigned lane_of(const Fiber& f) { return f.coordinates.linear_thread % 32; }

std::string describe_call(const detail::WarpCall& call) {
  char text[256];
  std::snprintf(text, sizeof text, "%s(mask 0x%08x) at %s:%d", call.name, call.mask, call.file, call.line);
  return text;
}

// A lane leaves its warp while lanes of a pending collective name it in their mask: they would hang.
void check_no_lane_waits_for(const Fiber& leaving, const char* how) {
  Scheduler& s = scheduler();
  const unsigned warp = warp_of(leaving), lane = lane_of(leaving);
  for (uint32_t waiting = s.warps[warp].waiting; waiting != 0; waiting &= waiting - 1) {
    const unsigned other = static_cast<unsigned>(__builtin_ctz(waiting));
    const Fiber& f = s.fibers[warp * 32 + other];
    if (f.pending->mask >> lane & 1u)
      fail_with("lane " + std::to_string(lane) + " " + how + " while lane " + std::to_string(other) +
                " waits for it in " + describe_call(*f.pending));
  }
}

void thread_entry() {
  Scheduler& s = scheduler();
#if SIMT_WITH_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &s.scheduler_stack_bottom, &s.scheduler_stack_size);
#endif
  s.body.run(s.body.context);
  Fiber& self = *s.running;
  self.status = Status::kExited;
  ++s.exited;
  s.warps[warp_of(self)].exited |= 1u << lane_of(self);
  check_no_lane_waits_for(self, "returned from the kernel");
#if SIMT_WITH_ASAN
  __sanitizer_start_switch_fiber(nullptr, s.scheduler_stack_bottom, s.scheduler_stack_size);  // frees the fake stack
#endif
  void* discarded;
  simt_switch_stack(&discarded, s.scheduler_stack_pointer);
}

// ---- block execution ----------------------------------------------------------------------------

void allocate_fibers(unsigned threads) {
  Scheduler& s = scheduler();
  while (s.fibers.size() < threads) {
    s.fibers.emplace_back();
    void* region = mmap(nullptr, kFiberStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (region == MAP_FAILED) fail_with("cannot map a fiber stack");
    mprotect(region, kGuardBytes, PROT_NONE);  // overflow faults instead of corrupting a neighbour
    s.fibers.back().stack = static_cast<unsigned char*>(region) + kGuardBytes;
  }
}

void apply_order(std::vector<unsigned>& items) {
  Scheduler& s = scheduler();
  switch (s.order) {
    case Order::kForward:
      break;
    case Order::kReversed:
      std::reverse(items.begin(), items.end());
      break;
    case Order::kShuffled:
      std::shuffle(items.begin(), items.end(), s.random);
      break;
    case Order::kWarpMajor:
      break;
    case Order::kWarpMajorReversed:
      std::reverse(items.begin(), items.end());
      break;
  }
}

bool warp_major() {
  const Order order = scheduler().order;
  return order == Order::kWarpMajor || order == Order::kWarpMajorReversed;
}

// Runs warp `warp`'s runnable threads, in lane order, until none is runnable (all wait in __syncthreads,
// have returned, or wait in a collective another warp's thread must join).
void run_warp_ahead(unsigned warp) {
  Scheduler& s = scheduler();
  const unsigned first = warp * 32, end = std::min(s.threads, first + 32);
  for (bool ran = true; ran;) {
    ran = false;
    for (unsigned t = first; t < end; ++t) {
      if (s.fibers[t].status != Status::kRunnable) continue;
      switch_to_fiber(s.fibers[t]);
      ran = true;
    }
  }
}

void release_barrier() {
  Scheduler& s = scheduler();
  const Fiber* first = nullptr;
  for (unsigned t = 0; t < s.threads; ++t) {
    Fiber& f = s.fibers[t];
    if (f.status != Status::kAtBarrier) continue;
    if (first == nullptr) {
      first = &f;
    } else if (f.barrier_line != first->barrier_line || std::strcmp(f.barrier_file, first->barrier_file) != 0) {
      char text[512];
      std::snprintf(text, sizeof text,
                    "threads of one block wait in different __syncthreads: thread %u at %s:%d, thread %u at %s:%d "
                    "(divergent barrier)",
                    first->coordinates.linear_thread, first->barrier_file, first->barrier_line,
                    f.coordinates.linear_thread, f.barrier_file, f.barrier_line);
      fail_with(text);
    }
    f.status = Status::kRunnable;
  }
  s.at_barrier = 0;
  for (auto& warp : s.warps) warp.at_barrier = 0;
}

[[noreturn]] void report_deadlock() {
  Scheduler& s = scheduler();
  std::string text = "no thread of the block can continue (it would hang on a GPU):";
  int listed = 0;
  for (unsigned t = 0; t < s.threads && listed < 8; ++t) {
    const Fiber& f = s.fibers[t];
    if (f.status == Status::kInWarpCollective) {
      text += "\n    thread " + std::to_string(t) + " waits in " + describe_call(*f.pending);
      ++listed;
    }
  }
  text += "\n    " + std::to_string(s.at_barrier) + " thread(s) wait in __syncthreads, " + std::to_string(s.exited) +
          " returned";
  fail_with(text);
}

void run_block(uint3 block_index) {
  Scheduler& s = scheduler();
  for (unsigned char* buffer : s.dynamic_shared_buffers) {
#if SIMT_WITH_ASAN
    ASAN_UNPOISON_MEMORY_REGION(buffer, kMaxDynamicSharedBytes);
#endif
    std::memset(buffer, kPoisonByte, s.shared_bytes);
#if SIMT_WITH_ASAN
    // Past the launch's dynamic shared bytes: any access is an ASan error (use-after-poison).
    ASAN_POISON_MEMORY_REGION(buffer + s.shared_bytes, kMaxDynamicSharedBytes - s.shared_bytes);
#endif
  }
  for (unsigned t = 0; t < s.threads; ++t) {
    Fiber& f = s.fibers[t];
    f.coordinates.block_index = block_index;
    f.coordinates.block_dim = s.block;
    f.coordinates.grid_dim = s.grid;
    f.coordinates.linear_thread = t;
    f.coordinates.thread_index = {t % s.block.x, (t / s.block.x) % s.block.y, t / (s.block.x * s.block.y)};
    f.status = Status::kRunnable;
    f.pending = nullptr;
    f.fake_stack = nullptr;
#if SIMT_WITH_ASAN
    ASAN_UNPOISON_MEMORY_REGION(f.stack, kFiberStackBytes);  // frames left by the previous block's fiber
#endif
    f.stack_pointer = prepare_stack(f.stack, kFiberStackBytes, thread_entry);
  }
  s.exited = 0;
  s.at_barrier = 0;
  s.warps.assign((s.threads + 31) / 32, {});
  std::vector<unsigned>& runnable = s.runnable;
  while (s.exited < s.threads) {
    runnable.clear();
    for (unsigned t = 0; t < s.threads; ++t)
      if (s.fibers[t].status == Status::kRunnable) runnable.push_back(t);
    if (runnable.empty()) {
      if (s.at_barrier > 0 && s.at_barrier == s.threads - s.exited) {
        if (s.exited > 0)
          fail_with(std::to_string(s.exited) + " thread(s) returned from the kernel while the others wait in " +
                    "__syncthreads (divergent barrier)");
        release_barrier();
        continue;
      }
      report_deadlock();
    }
    if (warp_major()) {
      std::vector<unsigned>& warps = s.runnable_warps;
      warps.clear();
      for (unsigned t : runnable)
        if (warps.empty() || warps.back() != t / 32) warps.push_back(t / 32);
      apply_order(warps);
      for (unsigned warp : warps) run_warp_ahead(warp);
      continue;
    }
    apply_order(runnable);
    for (unsigned t : runnable) switch_to_fiber(s.fibers[t]);
  }
}

}  // namespace

// ---- public API ---------------------------------------------------------------------------------

void configure(Order order, uint64_t seed) {
  Scheduler& s = scheduler();
  s.order = order;
  s.seed = seed;
  s.random.seed(seed);
}
uint64_t configured_seed() { return scheduler().seed; }
const char* order_name(Order order) {
  switch (order) {
    case Order::kForward:
      return "forward";
    case Order::kReversed:
      return "reversed";
    case Order::kShuffled:
      return "shuffled";
    case Order::kWarpMajor:
      return "warp-major";
    case Order::kWarpMajorReversed:
      return "warp-major-reversed";
  }
  return "?";
}

namespace detail {

const Coordinates* current = nullptr;

void fail_in_collective(const char* name, const char* format, ...) {
  va_list args;
  va_start(args, format);
  const std::string message = vformat(format, args);
  va_end(args);
  fail_with(std::string(name) + ": " + message);
}

unsigned active_lanes() {
  Scheduler& s = scheduler();
  if (s.running == nullptr) fail_with("__activemask outside a kernel");
  const unsigned warp = warp_of(*s.running);
  const unsigned lanes = std::min(32u, s.threads - warp * 32);
  const uint32_t present = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
  return present & ~s.warps[warp].exited;
}

void block_barrier(const char* file, int line) {
  Scheduler& s = scheduler();
  if (s.running == nullptr) fail_with("__syncthreads outside a kernel");
  Fiber& self = *s.running;
  check_no_lane_waits_for(self, ("entered __syncthreads at " + std::string(file) + ":" + std::to_string(line)).c_str());
  self.status = Status::kAtBarrier;
  s.warps[warp_of(self)].at_barrier |= 1u << lane_of(self);
  self.barrier_file = file;
  self.barrier_line = line;
  ++s.at_barrier;
  // The scheduler releases the barrier once every thread waits in it, then starts a new round in the
  // configured order (so the last thread to arrive is not always the first to continue).
  yield_to_scheduler();
}

void warp_collective(const WarpCall& call) {
  Scheduler& s = scheduler();
  if (s.running == nullptr) fail_with(std::string(call.name) + " outside a kernel");
  Fiber& self = *s.running;
  const unsigned warp = warp_of(self), lane = lane_of(self);
  Scheduler::WarpMasks& masks = s.warps[warp];
  Fiber* const lanes = &s.fibers[warp * 32];
  const uint32_t mask = call.mask;
  if (!(mask >> lane & 1u))
    fail_with("lane " + std::to_string(lane) + " calls " + describe_call(call) + " without its own bit in the mask");
  const unsigned lane_count = std::min(32u, s.threads - warp * 32);
  if (lane_count < 32 && (mask >> lane_count) != 0)
    fail_with(describe_call(call) + " names lanes that do not exist (block of " + std::to_string(s.threads) +
              " threads)");
  if (const uint32_t gone = mask & masks.exited)
    fail_with(describe_call(call) + " names lane " + std::to_string(__builtin_ctz(gone)) + ", which has returned");
  if (const uint32_t blocked = mask & masks.at_barrier) {
    const Fiber& f = lanes[__builtin_ctz(blocked)];
    fail_with(describe_call(call) + " names lane " + std::to_string(__builtin_ctz(blocked)) +
              ", which waits in __syncthreads at " + f.barrier_file + ":" + std::to_string(f.barrier_line));
  }
  for (uint32_t others = mask & masks.waiting; others != 0; others &= others - 1) {
    const Fiber& f = lanes[__builtin_ctz(others)];
    if (f.pending->resolver != call.resolver || f.pending->mask != mask)
      fail_with("mismatched warp collectives: lane " + std::to_string(lane) + " calls " + describe_call(call) +
                ", lane " + std::to_string(__builtin_ctz(others)) + " waits in " + describe_call(*f.pending));
  }
  self.pending = &call;
  self.status = Status::kInWarpCollective;
  masks.waiting |= 1u << lane;
  if ((masks.waiting & mask) == mask) {
    void* payloads[32] = {};
    for (uint32_t group = mask; group != 0; group &= group - 1) {
      const unsigned other = static_cast<unsigned>(__builtin_ctz(group));
      payloads[other] = lanes[other].pending->payload;
    }
    call.resolver(payloads, mask);
    for (uint32_t group = mask; group != 0; group &= group - 1) {
      Fiber& f = lanes[__builtin_ctz(group)];
      f.status = Status::kRunnable;
      f.pending = nullptr;
    }
    masks.waiting &= ~mask;
  }
  yield_to_scheduler();  // the lanes continue in the configured order
}

cudaError_t set_max_dynamic_shared(const void* kernel, size_t bytes) {
  if (bytes > kMaxDynamicSharedBytes) return cudaErrorInvalidValue;
  scheduler().max_dynamic_shared[kernel] = bytes;
  return cudaSuccess;
}

void register_dynamic_shared(unsigned char* buffer) { scheduler().dynamic_shared_buffers.push_back(buffer); }

// With SIMT_LAUNCH_LOG=<file>, appends one line per launch: the kernel's address relative to run_grid's
// (the executable is position-independent; `nm` gives both symbols' offsets, so the reader names the
// kernel), the grid, the block and the dynamic shared bytes. bench/static_report.py reads it for the
// CUDA kernels' launch geometry.
void log_launch(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes) {
  const char* path = std::getenv("SIMT_LAUNCH_LOG");
  if (path == nullptr || *path == '\0') return;
  FILE* log = std::fopen(path, "a");
  if (log == nullptr) fail_with(std::string("SIMT_LAUNCH_LOG: cannot open ") + path);
  const long long offset = static_cast<long long>(reinterpret_cast<uintptr_t>(kernel)) -
                           static_cast<long long>(reinterpret_cast<uintptr_t>(&run_grid));
  std::fprintf(log, "%lld %u %u %u %u %u %u %zu\n", offset, grid.x, grid.y, grid.z, block.x, block.y, block.z,
               shared_bytes);
  std::fclose(log);
}

cudaError_t run_grid(const void* kernel, dim3 grid, dim3 block, size_t shared_bytes, LaunchBody body) {
  Scheduler& s = scheduler();
  if (s.in_launch) fail_with("a kernel launch from inside a kernel (dynamic parallelism is not modelled)");
  const uint64_t threads = uint64_t{block.x} * block.y * block.z;
  if (threads == 0 || threads > kMaxThreadsPerBlock || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535)
    return s.last_error = cudaErrorInvalidConfiguration;
  const auto opt_in = s.max_dynamic_shared.find(kernel);
  const size_t allowed = opt_in == s.max_dynamic_shared.end() ? kDefaultDynamicSharedBytes
                                                                 : std::max(opt_in->second, kDefaultDynamicSharedBytes);
  if (shared_bytes > allowed) return s.last_error = cudaErrorInvalidValue;
  log_launch(kernel, grid, block, shared_bytes);
  ++s.launch_number;
  s.in_launch = true;
  s.grid = grid;
  s.block = block;
  s.shared_bytes = shared_bytes;
  s.threads = static_cast<unsigned>(threads);
  s.body = body;
  allocate_fibers(s.threads);
  std::vector<unsigned> blocks(uint64_t{grid.x} * grid.y * grid.z);
  for (unsigned b = 0; b < blocks.size(); ++b) blocks[b] = b;
  apply_order(blocks);
  for (unsigned b : blocks) run_block({b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y)});
  s.in_launch = false;
  return cudaSuccess;
}

}  // namespace detail
}  // namespace simt

cudaError_t cudaGetLastError() {
  const cudaError_t error = simt::scheduler().last_error;
  simt::scheduler().last_error = cudaSuccess;
  return error;
}
cudaError_t cudaPeekAtLastError() { return simt::scheduler().last_error; }
const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDeviceFunction:
      return "invalid device function";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
  }
  return "unknown error";
}
