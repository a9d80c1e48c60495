#include "generator_handle.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstring>
#include <mutex>

#include "common.h"
#include "errors.h"
#include "submit.h"

namespace st2v {


Napi::Function NativeGenerator::Init(Napi::Env env) {
  return DefineClass(env, "NativeGenerator",
                     {
                         InstanceMethod<&NativeGenerator::Randn>("randn"),
                         InstanceMethod<&NativeGenerator::GetState>("getState"),
                         InstanceMethod<&NativeGenerator::SetState>("setState"),
                         InstanceMethod<&NativeGenerator::Dispose>("dispose"),
                         InstanceAccessor<&NativeGenerator::Disposed>("disposed"),
                     });
}

NativeGenerator::NativeGenerator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeGenerator>(info) {
  Napi::Env env = info.Env();
  try {
    uint64_t seed = static_cast<uint64_t>(ReadInt(info[0], "seed"));
    gen_ = at::detail::createCPUGenerator(seed);
  } catch (...) {
    throw MakeJsError(env, CaptureCurrentException("Generator"));
  }
  info.This().As<Napi::Object>().TypeTag(&kGeneratorTag);
}

at::Generator NativeGenerator::Checked() const {
  if (disposed_) throw DisposedError("Generator used after dispose()");
  return gen_;
}

Napi::Value NativeGenerator::Randn(const Napi::CallbackInfo& info) {
  return AsyncGuard(info, "Generator.randn", [&]() -> Napi::Value {
    at::Generator gen = Checked();
    std::vector<int64_t> shape = ReadShape(info[0], "shape");
    TensorTarget target = ReadTarget(info[1]);
    c10::Device device = target.device.value_or(c10::kCPU);
    return SubmitTensor(info.Env(), device, "Generator.randn", [gen, shape, target, device]() {
      at::Tensor t = at::randn(shape, gen, at::TensorOptions().dtype(c10::kFloat));
      c10::ScalarType dtype = target.dtype.value_or(c10::kFloat);
      return (device.is_cpu() && dtype == c10::kFloat) ? t : t.to(device, dtype);
    });
  });
}

Napi::Value NativeGenerator::GetState(const Napi::CallbackInfo& info) {
  return AsyncGuard(info, "Generator.getState", [&]() -> Napi::Value {
    at::Generator gen = Checked();
    return SubmitValue<at::Tensor>(
        info.Env(), c10::kCPU, "Generator.getState",
        [gen]() mutable {
          std::lock_guard<std::mutex> lock(gen.mutex());
          return gen.get_state();
        },
        [](Napi::Env e, at::Tensor& state) -> Napi::Value {
          Napi::Uint8Array out = Napi::Uint8Array::New(e, static_cast<size_t>(state.numel()));
          std::memcpy(out.Data(), state.data_ptr(), static_cast<size_t>(state.numel()));
          return out;
        });
  });
}

Napi::Value NativeGenerator::SetState(const Napi::CallbackInfo& info) {
  return AsyncGuard(info, "Generator.setState", [&]() -> Napi::Value {
    at::Generator gen = Checked();
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw ArgError("Expected a Uint8Array for `state`");
    }
    Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
    at::Tensor state = at::empty({static_cast<int64_t>(bytes.ElementLength())}, at::TensorOptions().dtype(c10::kByte));
    std::memcpy(state.data_ptr(), bytes.Data(), bytes.ElementLength());
    return SubmitValue<bool>(
        info.Env(), c10::kCPU, "Generator.setState",
        [gen, state]() mutable {
          std::lock_guard<std::mutex> lock(gen.mutex());
          gen.set_state(state);
          return true;
        },
        [](Napi::Env e, bool&) -> Napi::Value { return e.Undefined(); });
  });
}

Napi::Value NativeGenerator::Dispose(const Napi::CallbackInfo& info) {
  disposed_ = true;
  gen_ = at::Generator();
  return info.Env().Undefined();
}

Napi::Value NativeGenerator::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

}  // namespace st2v
