// NativeModule: a loaded TorchScript module on one device.
// load (async, on the device's executor): torch::jit::load -> eval() -> optional dtype cast ->
// optional freeze / optimize_for_inference (done at load because optimized files cannot be saved).
// forward (async): positional or named inputs, checked against the method schema on the JS thread
// before anything is queued; returns tensors, tuples/lists (arrays), dicts (objects), numbers.
// moveTo (async, on the executor of the CURRENT device, so after any forward queued there):
// moves parameters and buffers in place to another device and/or floating dtype. While it is
// pending, forward() and moveTo() reject; a frozen/optimized module cannot move (its weights
// are graph constants).
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
  // Where the module is: read and written on the JS thread only (the completion of a move
  // updates it), shared with pending moves so a completion never needs the wrapper alive.
  struct Placement {
    c10::Device device = c10::kCPU;
    std::string dtype;      // of the floating parameters (else buffers); empty = none
    std::string moving_to;  // non-empty while a moveTo() is pending
  };

  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value MoveTo(const Napi::CallbackInfo& info);
  Napi::Value DType(const Napi::CallbackInfo& info);
  Napi::Value Schema(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Path(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);

  std::shared_ptr<torch::jit::Module> module_;
  std::shared_ptr<Placement> placement_ = std::make_shared<Placement>();
  std::string path_;
  std::string frozen_;  // "freeze" / "optimize" when loaded so (then it cannot move); else empty
};

}  // namespace st2v
