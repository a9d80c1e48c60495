// Device and runtime information: CUDA availability/count, CUDA memory statistics, synchronize,
// empty cache, libtorch version and build flags, intra-op thread count, TF32, live handle counts.
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#ifdef STREAMINGT2V_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

#include "addon_data.h"
#include "executor.h"
#include "common.h"
#include "errors.h"
#include "ops.h"
#include "submit.h"
#include "tensor_handle.h"

namespace st2v {

namespace {

struct MemoryStats {
  double allocated = 0, reserved = 0, peak_allocated = 0, peak_reserved = 0;
};

c10::Device CudaDevice(const Napi::Value& value) {
  c10::Device device = value.IsUndefined() ? c10::Device("cuda:0") : ParseDevice(ReadString(value, "device"));
  if (!device.is_cuda()) throw ArgError("Expected a CUDA device ('cuda' or 'cuda:N')");
  CheckDeviceUsable(device);
  if (!device.has_index()) device.set_index(0);
  return device;
}

}  // namespace

void RegisterDeviceFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("cudaAvailable", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Napi::Boolean::New(info.Env(), torch::cuda::is_available());
              }));
  exports.Set("cudaDeviceCount", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
              }));
  exports.Set("versionInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Env e = info.Env();
                Napi::Object out = Napi::Object::New(e);
                out.Set("torch", MakeString(TORCH_VERSION_MAJOR, ".", TORCH_VERSION_MINOR, ".", TORCH_VERSION_PATCH));
#ifdef STREAMINGT2V_WITH_CUDA
                out.Set("cudaBuild", true);
#else
                out.Set("cudaBuild", false);
#endif
                out.Set("torchSource", STREAMINGT2V_TORCH_SOURCE);
                out.Set("buildConfig", at::show_config());
                out.Set("parallelInfo", at::get_parallel_info());
                return out;
              }));
  exports.Set("setNumThreads", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Guard(info, "setNumThreads", [&]() -> Napi::Value {
                  int64_t n = ReadInt(info[0], "threads");
                  if (n < 1 || n > 1024) throw ArgError(MakeString("Expected 1..1024 for `threads` but received ", n));
                  // Global setting; each executor job calls at::init_num_threads() and picks it up.
                  at::set_num_threads(static_cast<int>(n));
                  BumpThreadSettingGeneration();
                  return info.Env().Undefined();
                });
              }));
  exports.Set("setJitMode", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Guard(info, "setJitMode", [&]() -> Napi::Value {
                  // 'profiling' (libtorch default: profiles the first runs, then re-optimizes per shape —
                  // seconds of one-off work for a UNet), 'legacy' (optimizes once per input signature),
                  // 'simple' (no graph executor specialization: the first call is as fast as the others).
                  std::string mode = ReadString(info[0], "mode");
                  bool optimize = ReadBool(info[1], "optimize", true);
                  if (mode != "profiling" && mode != "legacy" && mode != "simple") {
                    throw ArgError("Expected 'profiling', 'legacy' or 'simple' for `mode`");
                  }
                  torch::jit::getExecutorMode() = mode != "simple";
                  torch::jit::getProfilingMode() = mode == "profiling";
                  SetJitOptimize(optimize);
                  return info.Env().Undefined();
                });
              }));
  exports.Set("getJitMode", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                Napi::Object out = Napi::Object::New(info.Env());
                bool executor = torch::jit::getExecutorMode();
                out.Set("mode", !executor ? "simple" : torch::jit::getProfilingMode() ? "profiling" : "legacy");
                out.Set("optimize", JitOptimize());
                return out;
              }));
  exports.Set("setAllowTf32", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Guard(info, "setAllowTf32", [&]() -> Napi::Value {
                  if (!info[0].IsBoolean()) throw ArgError("Expected a boolean for `enabled`");
                  // Process-wide flags read by the CUDA matmul (cuBLAS) and convolution (cuDNN) kernels
                  // when they pick a math mode; no effect on CPU or on non-float32 tensors.
                  bool enabled = info[0].As<Napi::Boolean>().Value();
                  at::globalContext().setAllowTF32CuBLAS(enabled);
                  at::globalContext().setAllowTF32CuDNN(enabled);
                  return info.Env().Undefined();
                });
              }));
  exports.Set("getAllowTf32", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                const at::Context& context = at::globalContext();
                return Napi::Boolean::New(info.Env(), context.allowTF32CuBLAS() && context.allowTF32CuDNN());
              }));
  exports.Set("getNumThreads", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Napi::Number::New(info.Env(), at::get_num_threads());
              }));
  exports.Set("liveTensorCount", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                return Napi::Number::New(info.Env(), static_cast<double>(NativeTensor::LiveCount()));
              }));
  exports.Set("pendingTasks", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
                size_t total = 0;
                for (auto& entry : AddonData::Get(info.Env()).executors) total += entry.second->pending();
                return Napi::Number::New(info.Env(), static_cast<double>(total));
              }));

  ExportAsync(env, exports, "memoryStats", [](const Napi::CallbackInfo& info) -> Napi::Value {
    c10::Device device = CudaDevice(info[0]);
    return SubmitValue<MemoryStats>(
        info.Env(), device, "memoryStats",
        [device]() {
          MemoryStats stats;
#ifdef STREAMINGT2V_WITH_CUDA
          auto s = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
          const size_t all = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
          stats.allocated = static_cast<double>(s.allocated_bytes[all].current);
          stats.reserved = static_cast<double>(s.reserved_bytes[all].current);
          stats.peak_allocated = static_cast<double>(s.allocated_bytes[all].peak);
          stats.peak_reserved = static_cast<double>(s.reserved_bytes[all].peak);
#endif
          return stats;
        },
        [](Napi::Env e, MemoryStats& s) -> Napi::Value {
          Napi::Object out = Napi::Object::New(e);
          out.Set("allocated", s.allocated);
          out.Set("reserved", s.reserved);
          out.Set("peakAllocated", s.peak_allocated);
          out.Set("peakReserved", s.peak_reserved);
          return out;
        });
  });

  ExportAsync(env, exports, "resetPeakMemory", [](const Napi::CallbackInfo& info) -> Napi::Value {
    c10::Device device = CudaDevice(info[0]);
    return SubmitValue<bool>(
        info.Env(), device, "resetPeakMemory",
        [device]() {
#ifdef STREAMINGT2V_WITH_CUDA
          c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
#endif
          return true;
        },
        [](Napi::Env e, bool&) -> Napi::Value { return e.Undefined(); });
  });

  ExportAsync(env, exports, "synchronize", [](const Napi::CallbackInfo& info) -> Napi::Value {
    c10::Device device = CudaDevice(info[0]);
    return SubmitValue<bool>(
        info.Env(), device, "synchronize",
        [device]() {
          torch::cuda::synchronize(device.index());
          return true;
        },
        [](Napi::Env e, bool&) -> Napi::Value { return e.Undefined(); });
  });

  ExportAsync(env, exports, "emptyCache", [](const Napi::CallbackInfo& info) -> Napi::Value {
    c10::Device device = CudaDevice(info[0]);
    return SubmitValue<bool>(
        info.Env(), device, "emptyCache",
        [device]() {
#ifdef STREAMINGT2V_WITH_CUDA
          c10::cuda::CUDACachingAllocator::emptyCache();
#endif
          return true;
        },
        [](Napi::Env e, bool&) -> Napi::Value { return e.Undefined(); });
  });
}

}  // namespace st2v
