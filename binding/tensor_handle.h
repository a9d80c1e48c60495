// NativeTensor: a JS handle (ObjectWrap) over one at::Tensor.
// - shape/dtype/device getters are synchronous metadata reads;
// - dispose() is idempotent and drops the reference at once (storage is freed if this was the last one);
// - any use after dispose throws ERR_DISPOSED;
// - CPU storage is reported to V8 as external memory so the GC feels native allocations;
// - unwrap checks a type tag, so only real NativeTensor objects are ever reinterpreted.
#pragma once

#include <napi.h>
#include <torch/script.h>

namespace st2v {

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  static Napi::Function Init(Napi::Env env);
  // Wraps a tensor in a new JS object (JS thread).
  static Napi::Object Wrap(Napi::Env env, at::Tensor tensor);
  // Returns a copy of the wrapped tensor (refcount +1 keeps the storage alive while work runs).
  static at::Tensor From(const Napi::Value& value, const char* name);
  static std::vector<at::Tensor> FromArray(const Napi::Value& value, const char* name);

  explicit NativeTensor(const Napi::CallbackInfo& info);
  ~NativeTensor() override;

  static int64_t LiveCount();

 private:
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value DType(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value Disposed(const Napi::CallbackInfo& info);
  Napi::Value ByteLength(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);

  const at::Tensor& Checked(const char* what) const;
  void Release(Napi::Env env);

  at::Tensor tensor_;
  bool disposed_ = false;
  int64_t accounted_bytes_ = 0;
};

}  // namespace st2v
