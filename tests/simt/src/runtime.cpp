// The SIMT harness's scheduler: runs a launch's blocks one after another and a block's threads as
// fibers (ucontext) on this one OS thread, switching only at synchronisation points.
//
// Why fibers and not one OS thread per CUDA thread: a block has up to 1024 threads and a warp reduction
// switches 32 of them per shuffle; a fiber switch costs well under a microsecond and no kernel
// scheduler is involved, so the order in which threads run is exactly the configured one (an OS thread
// per CUDA thread with a baton would give the same semantics at ~10x the cost per switch). AddressSanitizer
// is told about every switch (__sanitizer_start_switch_fiber / __sanitizer_finish_switch_fiber), so it
// keeps checking the fibers' stacks.
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
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

struct Fiber {
  ucontext_t context;
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
  ucontext_t scheduler_context;
  void* scheduler_fake_stack = nullptr;
  const void* scheduler_stack_bottom = nullptr;
  size_t scheduler_stack_size = 0;
  Fiber* running = nullptr;
  detail::LaunchBody body{};
  unsigned threads = 0, exited = 0, at_barrier = 0;
  // Launch being run, for messages.
  unsigned long launch_number = 0;
  dim3 grid, block;
  size_t shared_bytes = 0;
  bool in_launch = false;
  std::map<const void*, size_t> max_dynamic_shared;  // opt-ins by cudaFuncSetAttribute
  std::vector<unsigned char*> dynamic_shared_buffers;
  cudaError_t last_error = cudaSuccess;
  const char* collective_name = nullptr;  // the warp collective being resolved, for messages
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
  swapcontext(&s.scheduler_context, &fiber.context);
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
  swapcontext(&self.context, &s.scheduler_context);
#if SIMT_WITH_ASAN
  __sanitizer_finish_switch_fiber(self.fake_stack, &s.scheduler_stack_bottom, &s.scheduler_stack_size);
#endif
}

// ---- warp collectives ---------------------------------------------------------------------------

unsigned warp_of(const Fiber& f) { return f.coordinates.linear_thread / 32; }
unsigned lane_of(const Fiber& f) { return f.coordinates.linear_thread % 32; }
Fiber* fiber_of_lane(unsigned warp, unsigned lane) {
  Scheduler& s = scheduler();
  const unsigned index = warp * 32 + lane;
  return index < s.threads ? &s.fibers[index] : nullptr;
}

std::string describe_call(const detail::WarpCall& call) {
  char text[256];
  std::snprintf(text, sizeof text, "%s(mask 0x%08x) at %s:%d", call.name, call.mask, call.file, call.line);
  return text;
}

// A lane leaves its warp while lanes of a pending collective name it in their mask: they would hang.
void check_no_lane_waits_for(const Fiber& leaving, const char* how) {
  const unsigned warp = warp_of(leaving), lane = lane_of(leaving);
  for (unsigned other = 0; other < 32; ++other) {
    const Fiber* f = fiber_of_lane(warp, other);
    if (f == nullptr || f->status != Status::kInWarpCollective) continue;
    if (f->pending->mask >> lane & 1u)
      fail_with("lane " + std::to_string(lane) + " " + how + " while lane " + std::to_string(other) +
                " waits for it in " + describe_call(*f->pending));
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
  check_no_lane_waits_for(self, "returned from the kernel");
#if SIMT_WITH_ASAN
  __sanitizer_start_switch_fiber(nullptr, s.scheduler_stack_bottom, s.scheduler_stack_size);  // frees the fake stack
#endif
  setcontext(&s.scheduler_context);
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

std::vector<unsigned> ordered(std::vector<unsigned> items) {
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
  }
  return items;
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
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack;
    f.context.uc_stack.ss_size = kFiberStackBytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, thread_entry, 0);
  }
  s.exited = 0;
  s.at_barrier = 0;
  std::vector<unsigned> all(s.threads);
  for (unsigned t = 0; t < s.threads; ++t) all[t] = t;
  while (s.exited < s.threads) {
    std::vector<unsigned> runnable;
    for (unsigned t : all)
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
    for (unsigned t : ordered(runnable)) switch_to_fiber(s.fibers[t]);
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
Order configured_order() { return scheduler().order; }
uint64_t configured_seed() { return scheduler().seed; }
const char* order_name(Order order) {
  switch (order) {
    case Order::kForward:
      return "forward";
    case Order::kReversed:
      return "reversed";
    case Order::kShuffled:
      return "shuffled";
  }
  return "?";
}

void fail(const char* format, ...) {
  va_list args;
  va_start(args, format);
  const std::string message = vformat(format, args);
  va_end(args);
  fail_with(message);
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
  unsigned mask = 0;
  for (unsigned lane = 0; lane < 32; ++lane) {
    const Fiber* f = fiber_of_lane(warp, lane);
    if (f != nullptr && f->status != Status::kExited) mask |= 1u << lane;
  }
  return mask;
}

void block_barrier(const char* file, int line) {
  Scheduler& s = scheduler();
  if (s.running == nullptr) fail_with("__syncthreads outside a kernel");
  Fiber& self = *s.running;
  check_no_lane_waits_for(self, ("entered __syncthreads at " + std::string(file) + ":" + std::to_string(line)).c_str());
  self.status = Status::kAtBarrier;
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
  if (!(call.mask >> lane & 1u))
    fail_with("lane " + std::to_string(lane) + " calls " + describe_call(call) + " without its own bit in the mask");
  for (unsigned other = 0; other < 32; ++other) {
    if (!(call.mask >> other & 1u) || other == lane) continue;
    const Fiber* f = fiber_of_lane(warp, other);
    if (f == nullptr)
      fail_with(describe_call(call) + " names lane " + std::to_string(other) + ", which does not exist (block of " +
                std::to_string(s.threads) + " threads)");
    if (f->status == Status::kExited)
      fail_with(describe_call(call) + " names lane " + std::to_string(other) + ", which has returned");
    if (f->status == Status::kAtBarrier)
      fail_with(describe_call(call) + " names lane " + std::to_string(other) + ", which waits in __syncthreads at " +
                f->barrier_file + ":" + std::to_string(f->barrier_line));
    if (f->status == Status::kInWarpCollective &&
        (f->pending->resolver != call.resolver || f->pending->mask != call.mask))
      fail_with("mismatched warp collectives: lane " + std::to_string(lane) + " calls " + describe_call(call) +
                ", lane " + std::to_string(other) + " waits in " + describe_call(*f->pending));
  }
  self.pending = &call;
  self.status = Status::kInWarpCollective;
  bool complete = true;
  for (unsigned other = 0; other < 32 && complete; ++other)
    if (call.mask >> other & 1u) complete = fiber_of_lane(warp, other)->status == Status::kInWarpCollective;
  if (complete) {
    void* payloads[32] = {};
    for (unsigned other = 0; other < 32; ++other)
      if (call.mask >> other & 1u) payloads[other] = fiber_of_lane(warp, other)->pending->payload;
    s.collective_name = call.name;
    call.resolver(payloads, call.mask);
    for (unsigned other = 0; other < 32; ++other) {
      if (!(call.mask >> other & 1u)) continue;
      Fiber* f = fiber_of_lane(warp, other);
      f->status = Status::kRunnable;
      f->pending = nullptr;
    }
  }
  yield_to_scheduler();  // the lanes continue in the configured order
}

cudaError_t set_max_dynamic_shared(const void* kernel, size_t bytes) {
  if (bytes > kMaxDynamicSharedBytes) return cudaErrorInvalidValue;
  scheduler().max_dynamic_shared[kernel] = bytes;
  return cudaSuccess;
}

void register_dynamic_shared(unsigned char* buffer) { scheduler().dynamic_shared_buffers.push_back(buffer); }

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
  for (unsigned b : ordered(blocks)) run_block({b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y)});
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
