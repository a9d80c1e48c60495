// NativeGenerator: a seeded CPU torch generator with state, for sequential draws exactly like
// Python's `torch.Generator().manual_seed(seed)` followed by repeated `torch.randn(..., generator=g)`.
// Noise is always drawn on the CPU and then moved, so CPU and CUDA runs see the same noise.
// getState()/setState() let a run persist and restore its RNG (resume).
#pragma once

#include <napi.h>
#include <torch/script.h>

namespace st2v {

class NativeGenerator : public Napi::ObjectWrap<NativeGenerator> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeGenerator(const Napi::CallbackInfo& info);

 private:
  Napi::Value Randn(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  at::Generator Checked() const;

  at::Generator gen_;
  bool disposed_ = false;
};

}  // namespace st2v
