#include "tensor_handle.h"

#include <atomic>

#include "addon_data.h"
#include "common.h"
#include "errors.h"

namespace st2v {

namespace {
std::atomic<int64_t> g_live{0};  // handles that still own a tensor (all environments)
}

int64_t NativeTensor::LiveCount() { return g_live.load(); }

Napi::Function NativeTensor::Init(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {
                         InstanceAccessor<&NativeTensor::Shape>("shape"),
                         InstanceAccessor<&NativeTensor::DType>("dtype"),
                         InstanceAccessor<&NativeTensor::Device>("device"),
                         InstanceAccessor<&NativeTensor::Disposed>("disposed"),
                         InstanceAccessor<&NativeTensor::ByteLength>("byteLength"),
                         InstanceMethod<&NativeTensor::Dispose>("dispose"),
                     });
}

NativeTensor::NativeTensor(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeTensor>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    Napi::Error error = Napi::TypeError::New(env, "NativeTensor cannot be constructed from JavaScript; use the Tensor factories");
    error.Set("code", Napi::String::New(env, "ERR_INVALID_ARG"));
    throw error;
  }
  at::Tensor* source = info[0].As<Napi::External<at::Tensor>>().Data();
  tensor_ = std::move(*source);
  info.This().As<Napi::Object>().TypeTag(&kTensorTag);
  g_live++;
  if (tensor_.defined() && tensor_.device().is_cpu() && tensor_.has_storage()) {
    accounted_bytes_ = static_cast<int64_t>(tensor_.storage().nbytes());
    Napi::MemoryManagement::AdjustExternalMemory(env, accounted_bytes_);
  }
}

NativeTensor::~NativeTensor() {
  if (!disposed_) {
    disposed_ = true;
    tensor_.reset();
    g_live--;
    if (accounted_bytes_ != 0) {
      Napi::MemoryManagement::AdjustExternalMemory(Env(), -accounted_bytes_);
      accounted_bytes_ = 0;
    }
  }
}

Napi::Object NativeTensor::Wrap(Napi::Env env, at::Tensor tensor) {
  at::Tensor holder = std::move(tensor);
  Napi::External<at::Tensor> external = Napi::External<at::Tensor>::New(env, &holder);
  return AddonData::Get(env).tensor_ctor.New({external});
}

at::Tensor NativeTensor::From(const Napi::Value& value, const char* name) {
  if (!value.IsObject() || !value.As<Napi::Object>().CheckTypeTag(&kTensorTag)) {
    throw ArgError(MakeString("Expected a tensor for `", name, "`"));
  }
  NativeTensor* handle = Napi::ObjectWrap<NativeTensor>::Unwrap(value.As<Napi::Object>());
  return handle->Checked(name);
}

std::vector<at::Tensor> NativeTensor::FromArray(const Napi::Value& value, const char* name) {
  if (!value.IsArray()) throw ArgError(MakeString("Expected an array of tensors for `", name, "`"));
  Napi::Array array = value.As<Napi::Array>();
  std::vector<at::Tensor> out;
  out.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) out.push_back(From(array.Get(i), name));
  return out;
}

const at::Tensor& NativeTensor::Checked(const char* what) const {
  if (disposed_) throw DisposedError(MakeString("Tensor used after dispose() (", what, ")"));
  return tensor_;
}

void NativeTensor::Release(Napi::Env env) {
  if (disposed_) return;
  disposed_ = true;
  tensor_.reset();  // drops our reference now; pinned copies held by running tasks stay valid
  g_live--;
  if (accounted_bytes_ != 0) {
    Napi::MemoryManagement::AdjustExternalMemory(env, -accounted_bytes_);
    accounted_bytes_ = 0;
  }
}

Napi::Value NativeTensor::Shape(const Napi::CallbackInfo& info) {
  return Guard(info, "shape", [&]() -> Napi::Value {
    const at::Tensor& t = Checked("shape");
    Napi::Array shape = Napi::Array::New(info.Env(), t.dim());
    for (int64_t i = 0; i < t.dim(); ++i) shape.Set(static_cast<uint32_t>(i), Napi::Number::New(info.Env(), static_cast<double>(t.size(i))));
    return shape;
  });
}

Napi::Value NativeTensor::DType(const Napi::CallbackInfo& info) {
  return Guard(info, "dtype", [&]() -> Napi::Value { return Napi::String::New(info.Env(), DTypeName(Checked("dtype").scalar_type())); });
}

Napi::Value NativeTensor::Device(const Napi::CallbackInfo& info) {
  return Guard(info, "device", [&]() -> Napi::Value { return Napi::String::New(info.Env(), DeviceName(Checked("device").device())); });
}

Napi::Value NativeTensor::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), disposed_); }

Napi::Value NativeTensor::ByteLength(const Napi::CallbackInfo& info) {
  return Guard(info, "byteLength", [&]() -> Napi::Value {
    const at::Tensor& t = Checked("byteLength");
    return Napi::Number::New(info.Env(), static_cast<double>(t.numel() * t.element_size()));
  });
}

Napi::Value NativeTensor::Dispose(const Napi::CallbackInfo& info) {
  Release(info.Env());
  return info.Env().Undefined();
}

}  // namespace st2v
