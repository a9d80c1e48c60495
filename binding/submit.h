// Helpers that queue a lambda on a device's executor and wrap its result for JS.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <functional>
#include <string>

#include "addon_data.h"
#include "executor.h"
#include "tensor_handle.h"

namespace st2v {

// Runs `work` on the executor of `device`; resolves with a new NativeTensor.
inline Napi::Promise SubmitTensor(Napi::Env env, const c10::Device& device, std::string call,
                                  std::function<at::Tensor()> work) {
  auto task = std::make_unique<FnTask<at::Tensor>>(
      env, std::move(call), std::move(work),
      [](Napi::Env e, at::Tensor& t) -> Napi::Value { return NativeTensor::Wrap(e, std::move(t)); });
  return AddonData::Get(env).ExecutorFor(env, device).Submit(std::move(task));
}

// Runs `work` on the executor of `device`; `done` converts its result on the JS thread.
template <typename R>
Napi::Promise SubmitValue(Napi::Env env, const c10::Device& device, std::string call, std::function<R()> work,
                          std::function<Napi::Value(Napi::Env, R&)> done) {
  auto task = std::make_unique<FnTask<R>>(env, std::move(call), std::move(work), std::move(done));
  return AddonData::Get(env).ExecutorFor(env, device).Submit(std::move(task));
}

// Registers a promise-returning free function whose argument errors become rejected promises.
void ExportAsync(Napi::Env env, Napi::Object exports, const char* name,
                 std::function<Napi::Value(const Napi::CallbackInfo&)> fn);

}  // namespace st2v
