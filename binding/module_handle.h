// NativeModule: a loaded TorchScript module on one device.
// load (async, on the device's executor): torch::jit::load -> eval() -> optional dtype cast ->
// optional freeze / optimize_for_inference (done at load because optimized files cannot be saved).
// forward (async): positional or named inputs, checked against the method schema on the JS thread
// before anything is queued; returns tensors, tuples/lists (arrays), dicts (objects), numbers.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <memory>
#include <string>

namespace st2v {

class NativeModule : public Napi::ObjectWrap<NativeModule> {
 public:
  static Napi::Function Init(Napi::Env env);
  static void RegisterLoad(Napi::Env env, Napi::Object exports);
  explicit NativeModule(const Napi::CallbackInfo& info);

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Schema(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Path(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);

  std::shared_ptr<torch::jit::Module> module_;
  c10::Device device_ = c10::kCPU;
  std::string path_;
};

}  // namespace st2v
