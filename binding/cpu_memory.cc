// CPU memory accounting and an optional limit for libtorch's CPU tensors.
//
// libtorch keeps no statistics for CPU memory (unlike its CUDA caching allocator) and has no cap. This file
// installs, once per process and before the first tensor the addon makes, an allocator for device CPU that
// allocates exactly as libtorch's default one does (c10::alloc_cpu / c10::free_cpu, 64-byte aligned), plus a
// 64-byte header holding the size so that the deleter can count the bytes back. It keeps live bytes, the peak
// since the last reset, and refuses an allocation that would pass the limit (if one is set) with
// c10::OutOfMemoryError, which travels through TorchScript and the executor like any allocation failure and
// reaches JavaScript as ERR_OUT_OF_MEMORY. Policy (what the limit is, when it is set) lives in TypeScript.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <c10/util/Exception.h>
#include <torch/version.h>

#include <atomic>
#include <cstdint>

#include "common.h"
#include "errors.h"
#include "ops.h"

namespace st2v {

namespace {

constexpr size_t kHeader = 64;  // keeps c10's 64-byte alignment of the data
std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_limit{0};  // 0 = no limit
std::atomic<int64_t> g_refused{0};
std::atomic<bool> g_installed{false};

void Release(void* data) {
  if (data == nullptr) return;
  char* base = static_cast<char*>(data) - kHeader;
  const auto bytes = static_cast<int64_t>(*reinterpret_cast<size_t*>(base));
  g_live.fetch_sub(bytes, std::memory_order_relaxed);
  c10::free_cpu(base);
}

void RaisePeak(int64_t live) {
  int64_t peak = g_peak.load(std::memory_order_relaxed);
  while (live > peak && !g_peak.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
  }
}

c10::DataPtr Allocate(size_t n) {
  const c10::Device cpu(c10::DeviceType::CPU);
  if (n == 0) return {nullptr, nullptr, &Release, cpu};
  const auto bytes = static_cast<int64_t>(n);
  const int64_t live = g_live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  const int64_t limit = g_limit.load(std::memory_order_relaxed);
  if (limit > 0 && live > limit) {
    g_live.fetch_sub(bytes, std::memory_order_relaxed);
    g_refused.fetch_add(1, std::memory_order_relaxed);
    TORCH_CHECK_WITH(OutOfMemoryError, false, "CPU memory limit: not enough memory: tried to allocate ", n,
                     " bytes with ", live - bytes, " bytes in use and a limit of ", limit, " bytes");
  }
  RaisePeak(live);
  char* base = static_cast<char*>(c10::alloc_cpu(n + kHeader));  // throws c10::Error when malloc fails
  *reinterpret_cast<size_t*>(base) = n;
  void* data = base + kHeader;
  // context == data, so raw_allocate()/raw_deleter() work as with the default allocator
  return {data, data, &Release, cpu};
}

class CountingCpuAllocator final : public c10::Allocator {
 public:
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
  // torch >= 2.3: allocate() is non-const and copy_data() must be provided
  c10::DataPtr allocate(size_t n) override { return Allocate(n); }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#else
  c10::DataPtr allocate(size_t n) const override { return Allocate(n); }
#endif
  c10::DeleterFnPtr raw_deleter() const override { return &Release; }
};

}  // namespace

void InstallCpuMemoryAccounting() {
  bool expected = false;
  if (!g_installed.compare_exchange_strong(expected, true)) return;
  // Never destroyed: tensors may be freed during static destruction at exit.
  static auto* allocator = new CountingCpuAllocator();
  c10::SetCPUAllocator(allocator, /*priority=*/1);
}

void RegisterCpuMemoryFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuMemoryStats", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Object out = Napi::Object::New(info.Env());
                out.Set("allocated", static_cast<double>(g_live.load()));
                out.Set("peakAllocated", static_cast<double>(g_peak.load()));
                out.Set("limit", static_cast<double>(g_limit.load()));
                out.Set("refused", static_cast<double>(g_refused.load()));
                out.Set("accounting", g_installed.load());
                return out;
              }));
  exports.Set("resetCpuPeak", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                g_peak.store(g_live.load());
                return info.Env().Undefined();
              }));
  exports.Set("setCpuMemoryLimit", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Guard(info, "setCpuMemoryLimit", [&]() -> Napi::Value {
                  const int64_t bytes = ReadInt(info[0], "bytes");
                  if (bytes < 0) throw ArgError(MakeString("Expected a byte count >= 0 for `bytes` but received ", bytes));
                  g_limit.store(bytes);
                  return info.Env().Undefined();
                });
              }));
}

}  // namespace st2v
