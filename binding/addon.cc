// Module registration: classes, free functions, per-environment data and its cleanup hook.
#include <napi.h>

#include <ATen/Parallel.h>

#include <cstdlib>
#include <thread>

#include "addon_data.h"
#include "common.h"
#include "errors.h"
#include "generator_handle.h"
#include "module_handle.h"
#include "ops.h"
#include "submit.h"
#include "tensor_handle.h"

namespace st2v {

Executor& AddonData::ExecutorFor(Napi::Env env, const c10::Device& device) {
  std::string key = DeviceName(device);
  auto it = executors.find(key);
  if (it == executors.end()) it = executors.emplace(key, std::make_unique<Executor>(env, key)).first;
  return *it->second;
}

void AddonData::Teardown() {
  if (torn_down) return;
  torn_down = true;
  for (auto& entry : executors) entry.second->Shutdown();
}

void ExportAsync(Napi::Env env, Napi::Object exports, const char* name,
                 std::function<Napi::Value(const Napi::CallbackInfo&)> fn) {
  std::string call = name;
  exports.Set(name, Napi::Function::New(
                        env,
                        [fn, call](const Napi::CallbackInfo& info) -> Napi::Value {
                          // Argument errors surface as rejections: every async entry point returns a Promise.
                          return AsyncGuard(info, call.c_str(), [&]() { return fn(info); });
                        },
                        name));
}

namespace detail {

void DefaultThreads() {
  // libtorch 1.13 defaults to cores/2 intra-op threads; use all cores unless the user chose.
  if (std::getenv("OMP_NUM_THREADS") == nullptr) {
    unsigned cores = std::thread::hardware_concurrency();
    if (cores > 0) at::set_num_threads(static_cast<int>(cores));
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  static bool threads_set = false;
  if (!threads_set) {
    threads_set = true;
    DefaultThreads();
  }
  InstallCpuMemoryAccounting();  // before this addon makes its first tensor
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);  // deleted by N-API when the environment goes away
  Napi::Function tensor = NativeTensor::Init(env);
  Napi::Function module = NativeModule::Init(env);
  Napi::Function generator = NativeGenerator::Init(env);
  data->tensor_ctor = Napi::Persistent(tensor);
  data->module_ctor = Napi::Persistent(module);
  data->generator_ctor = Napi::Persistent(generator);
  exports.Set("NativeTensor", tensor);
  exports.Set("NativeModule", module);
  exports.Set("NativeGenerator", generator);
  RegisterTensorOps(env, exports);
  RegisterDeviceFunctions(env, exports);
  RegisterCpuMemoryFunctions(env, exports);
  NativeModule::RegisterLoad(env, exports);
  exports.Set("abiVersion", Napi::Number::New(env, 2));  // 2: NativeModule.moveTo/dtype, TF32
  // process.exit() does not run environment cleanup hooks, and C++ static destructors (libtorch,
  // oneDNN caches) would then run while a worker thread is still inside a forward: a heap
  // corruption or a deadlock at exit. The 'exit' event runs first, so stop this environment's
  // executors there (waiting for a running forward to finish). Workers have their own process object.
  Napi::Object process = env.Global().Get("process").As<Napi::Object>();
  Napi::Function once = process.Get("once").As<Napi::Function>();
  once.Call(process, {Napi::String::New(env, "exit"), Napi::Function::New(env, [data](const Napi::CallbackInfo& info) -> Napi::Value {
                        data->Teardown();
                        return info.Env().Undefined();
                      })});
  napi_add_env_cleanup_hook(
      env, [](void* arg) { static_cast<AddonData*>(arg)->Teardown(); }, data);
  return exports;
}

}  // namespace detail
}  // namespace st2v

static Napi::Object InitStreamingT2V(Napi::Env env, Napi::Object exports) { return st2v::detail::Init(env, exports); }

NODE_API_MODULE(streamingt2v, InitStreamingT2V)
