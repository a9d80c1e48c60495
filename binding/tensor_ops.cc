// The closed op set. Chosen for the sampler, memory, noise, blending and video code; not a
// mirror of the torch API. Every op runs on the executor of the device it touches and returns a
// Promise; copies from JS memory happen on the JS thread (a memcpy), never compute.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstring>

#include "common.h"
#include "errors.h"
#include "ops.h"
#include "submit.h"
#include "tensor_handle.h"

namespace st2v {

namespace {

struct TypedArrayInfo {
  c10::ScalarType dtype;
  const void* data;
  size_t length;  // elements
};

TypedArrayInfo ReadTypedArray(const Napi::Value& value, const char* name) {
  if (!value.IsTypedArray()) throw ArgError(MakeString("Expected a typed array for `", name, "`"));
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  c10::ScalarType dtype;
  switch (array.TypedArrayType()) {
    case napi_float32_array: dtype = c10::kFloat; break;
    case napi_float64_array: dtype = c10::kDouble; break;
    case napi_int32_array: dtype = c10::kInt; break;
    case napi_bigint64_array: dtype = c10::kLong; break;
    case napi_uint8_array: dtype = c10::kByte; break;
    default: throw ArgError(MakeString("Unsupported typed array for `", name, "` (use Float32Array, Float64Array, Int32Array, BigInt64Array or Uint8Array)"));
  }
  const uint8_t* base = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
  return {dtype, base, array.ElementLength()};
}

// Copies JS memory into a fresh CPU tensor (JS thread; the JS buffer may change afterwards).
at::Tensor CopyIn(const TypedArrayInfo& src, const std::vector<int64_t>& shape) {
  int64_t numel = 1;
  for (int64_t s : shape) numel *= s;
  if (static_cast<size_t>(numel) != src.length) {
    throw ArgError(MakeString("Shape ", c10::IntArrayRef(shape), " has ", numel, " elements but the array has ", src.length));
  }
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(src.dtype).device(c10::kCPU));
  if (numel > 0) std::memcpy(out.data_ptr(), src.data, static_cast<size_t>(numel) * out.element_size());
  return out;
}

at::Tensor ApplyTarget(at::Tensor t, const TensorTarget& target) {
  c10::Device device = target.device.value_or(t.device());
  c10::ScalarType dtype = target.dtype.value_or(t.scalar_type());
  if (device == t.device() && dtype == t.scalar_type()) return t;
  return t.to(device, dtype);
}

c10::Device WorkDevice(const at::Tensor& t, const TensorTarget& target) { return target.device.value_or(t.device()); }

struct HostBuffer {
  at::Tensor cpu;  // contiguous CPU tensor whose bytes are copied into JS
  std::vector<int64_t> shape;
};

Napi::Value ToJsTypedArray(Napi::Env env, HostBuffer& host) {
  const at::Tensor& t = host.cpu;
  size_t count = static_cast<size_t>(t.numel());
  size_t bytes = count * t.element_size();
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, bytes);
  if (bytes > 0) std::memcpy(buffer.Data(), t.data_ptr(), bytes);
  switch (t.scalar_type()) {
    case c10::kFloat: return Napi::Float32Array::New(env, count, buffer, 0);
    case c10::kDouble: return Napi::Float64Array::New(env, count, buffer, 0);
    case c10::kInt: return Napi::Int32Array::New(env, count, buffer, 0);
    case c10::kLong: return Napi::TypedArrayOf<int64_t>::New(env, count, buffer, 0, napi_bigint64_array);
    case c10::kByte: return Napi::Uint8Array::New(env, count, buffer, 0);
    default: throw ArgError("unsupported host dtype");
  }
}

at::Tensor Fold5d(const at::Tensor& t, int64_t& frames) {
  // [B,C,F,H,W] -> [B*F,C,H,W] (B-major), remembering F to unfold later.
  frames = t.size(2);
  return t.permute({0, 2, 1, 3, 4}).reshape({t.size(0) * t.size(2), t.size(1), t.size(3), t.size(4)});
}

at::Tensor Unfold5d(const at::Tensor& t, int64_t batch, int64_t frames) {
  return t.reshape({batch, frames, t.size(1), t.size(2), t.size(3)}).permute({0, 2, 1, 3, 4}).contiguous();
}

}  // namespace

void RegisterTensorOps(Napi::Env env, Napi::Object exports) {
  ExportAsync(env, exports, "fromTypedArray", [](const Napi::CallbackInfo& info) -> Napi::Value {
    TypedArrayInfo src = ReadTypedArray(info[0], "data");
    at::Tensor cpu = CopyIn(src, ReadShape(info[1], "shape"));
    TensorTarget target = ReadTarget(info[2]);
    return SubmitTensor(info.Env(), WorkDevice(cpu, target), "fromTypedArray",
                        [cpu, target]() { return ApplyTarget(cpu, target); });
  });

  ExportAsync(env, exports, "toTypedArray", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    bool as_float32 = ReadBool(info[1], "asFloat32", false);
    return SubmitValue<HostBuffer>(
        info.Env(), t.device(), "toTypedArray",
        [t, as_float32]() {
          at::Tensor host = t;
          c10::ScalarType type = host.scalar_type();
          if (as_float32 || type == c10::kHalf || type == c10::kBFloat16) host = host.to(c10::kFloat);
          else if (type == c10::kBool) host = host.to(c10::kByte);
          return HostBuffer{host.to(c10::kCPU).contiguous(), host.sizes().vec()};
        },
        [](Napi::Env e, HostBuffer& host) { return ToJsTypedArray(e, host); });
  });

  ExportAsync(env, exports, "randn", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::vector<int64_t> shape = ReadShape(info[0], "shape");
    uint64_t seed = static_cast<uint64_t>(ReadInt(info[1], "seed"));
    TensorTarget target = ReadTarget(info[2]);
    c10::Device device = target.device.value_or(c10::kCPU);
    return SubmitTensor(info.Env(), device, "randn", [shape, seed, target]() {
      // Always drawn on a CPU generator (bit-identical to torch.randn(shape, generator=Generator().manual_seed(seed)))
      // and then moved, so the same seed gives the same noise on every device.
      at::Generator gen = at::detail::createCPUGenerator(seed);
      at::Tensor t = at::randn(shape, gen, at::TensorOptions().dtype(c10::kFloat));
      return ApplyTarget(t, target);
    });
  });

  ExportAsync(env, exports, "full", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::vector<int64_t> shape = ReadShape(info[0], "shape");
    double value = ReadNumber(info[1], "value");
    TensorTarget target = ReadTarget(info[2]);
    c10::Device device = target.device.value_or(c10::kCPU);
    c10::ScalarType dtype = target.dtype.value_or(c10::kFloat);
    return SubmitTensor(info.Env(), device, "full", [shape, value, device, dtype]() {
      return at::full(shape, value, at::TensorOptions().dtype(dtype).device(device));
    });
  });

  ExportAsync(env, exports, "combine", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::vector<at::Tensor> terms = NativeTensor::FromArray(info[0], "terms");
    if (!info[1].IsArray()) throw ArgError("Expected an array of numbers for `coeffs`");
    Napi::Array coeff_array = info[1].As<Napi::Array>();
    if (terms.empty() || coeff_array.Length() != terms.size()) {
      throw ArgError(MakeString("combine needs as many coefficients as tensors (at least one); received ", terms.size(),
                                " tensors and ", coeff_array.Length(), " coefficients"));
    }
    std::vector<double> coeffs;
    for (uint32_t i = 0; i < coeff_array.Length(); ++i) coeffs.push_back(ReadNumber(coeff_array.Get(i), "coeffs"));
    return SubmitTensor(info.Env(), terms[0].device(), "combine", [terms, coeffs]() {
      // out = Σ c_i · t_i: one allocation, then in-place scaled adds (a single native call from TS).
      at::Tensor out = at::mul(terms[0], coeffs[0]);
      for (size_t i = 1; i < terms.size(); ++i) out.add_(terms[i], coeffs[i]);
      return out;
    });
  });

  ExportAsync(env, exports, "addcmul", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor a = NativeTensor::From(info[0], "a");
    at::Tensor b = NativeTensor::From(info[1], "b");
    at::Tensor c = NativeTensor::From(info[2], "c");
    double value = info[3].IsUndefined() ? 1.0 : ReadNumber(info[3], "value");
    // a + value·(b ⊙ c): the one non-linear combination the pipeline needs (VAE posterior sampling).
    return SubmitTensor(info.Env(), a.device(), "addcmul", [a, b, c, value]() { return at::addcmul(a, b, c, value); });
  });

  ExportAsync(env, exports, "cat", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::vector<at::Tensor> tensors = NativeTensor::FromArray(info[0], "tensors");
    if (tensors.empty()) throw ArgError("cat needs at least one tensor");
    int64_t dim = ReadInt(info[1], "dim");
    return SubmitTensor(info.Env(), tensors[0].device(), "cat", [tensors, dim]() { return at::cat(tensors, dim); });
  });

  ExportAsync(env, exports, "narrow", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    int64_t dim = ReadInt(info[1], "dim"), start = ReadInt(info[2], "start"), length = ReadInt(info[3], "length");
    // A copy, not a view: keeping 8 frames of a window must not keep the whole window alive.
    return SubmitTensor(info.Env(), t.device(), "narrow",
                        [t, dim, start, length]() { return t.narrow(dim, start, length).clone(at::MemoryFormat::Contiguous); });
  });

  ExportAsync(env, exports, "reshape", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    std::vector<int64_t> shape;
    Napi::Array dims = info[1].IsArray() ? info[1].As<Napi::Array>() : Napi::Array::New(info.Env());
    if (!info[1].IsArray()) throw ArgError("Expected an array of sizes for `shape`");
    for (uint32_t i = 0; i < dims.Length(); ++i) shape.push_back(ReadInt(dims.Get(i), "shape"));  // -1 allowed
    return SubmitTensor(info.Env(), t.device(), "reshape", [t, shape]() { return t.reshape(shape).contiguous(); });
  });

  ExportAsync(env, exports, "permute", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    std::vector<int64_t> dims = ReadShape(info[1], "dims");
    return SubmitTensor(info.Env(), t.device(), "permute", [t, dims]() { return t.permute(dims).contiguous(); });
  });

  ExportAsync(env, exports, "to", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    TensorTarget target = ReadTarget(info[1]);
    return SubmitTensor(info.Env(), WorkDevice(t, target), "to", [t, target]() {
      at::Tensor out = ApplyTarget(t, target);
      return out.is_same(t) ? t.clone() : out;  // always a new, independently disposable tensor
    });
  });

  ExportAsync(env, exports, "clamp", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    double lo = ReadNumber(info[1], "min"), hi = ReadNumber(info[2], "max");
    return SubmitTensor(info.Env(), t.device(), "clamp", [t, lo, hi]() { return at::clamp(t, lo, hi); });
  });

  ExportAsync(env, exports, "clone", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    return SubmitTensor(info.Env(), t.device(), "clone", [t]() { return t.clone(); });
  });

  ExportAsync(env, exports, "reduce", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    std::string op = ReadString(info[1], "op");
    if (op != "mean" && op != "std" && op != "maxAbs" && op != "sum") throw ArgError("reduce op must be mean, std, sum or maxAbs");
    return SubmitValue<double>(
        info.Env(), t.device(), op,
        [t, op]() {
          at::Tensor d = t.to(c10::kDouble);  // reductions in float64: sampler scalars are float64 in TS
          if (op == "mean") return d.mean().item<double>();
          if (op == "sum") return d.sum().item<double>();
          if (op == "std") return d.std().item<double>();  // unbiased, as torch.std
          return d.abs().max().item<double>();
        },
        [](Napi::Env e, double& v) -> Napi::Value { return Napi::Number::New(e, v); });
  });

  ExportAsync(env, exports, "resize", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    std::vector<int64_t> size = ReadShape(info[1], "size");
    std::string mode = ReadString(info[2], "mode");
    bool antialias = ReadBool(info[3], "antialias", false);
    bool align_corners = ReadBool(info[4], "alignCorners", false);
    if (size.size() != 2) throw ArgError("Expected `size` as [height, width]");
    if (t.dim() != 4 && t.dim() != 5) throw ArgError("resize expects [N,C,H,W] or [B,C,F,H,W]");
    if (mode != "nearest" && mode != "bilinear" && mode != "bicubic" && mode != "area") {
      throw ArgError("resize mode must be nearest, bilinear, bicubic or area");
    }
    if (!c10::isFloatingType(t.scalar_type())) throw ArgError("resize needs a floating-point tensor");
    return SubmitTensor(info.Env(), t.device(), "resize", [t, size, mode, antialias, align_corners]() {
      int64_t frames = 0;
      at::Tensor x = t.dim() == 5 ? Fold5d(t, frames) : t;
      at::Tensor y;
      if (mode == "nearest") y = at::upsample_nearest2d(x, size);
      else if (mode == "area") y = at::adaptive_avg_pool2d(x, size);
      else if (mode == "bilinear") y = antialias ? at::_upsample_bilinear2d_aa(x, size, align_corners) : at::upsample_bilinear2d(x, size, align_corners);
      else y = antialias ? at::_upsample_bicubic2d_aa(x, size, align_corners) : at::upsample_bicubic2d(x, size, align_corners);
      return t.dim() == 5 ? Unfold5d(y, t.size(0), frames) : y;
    });
  });

  ExportAsync(env, exports, "pad", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "tensor");
    std::vector<int64_t> pads = ReadShape(info[1], "padding");  // [left, right, top, bottom]
    double value = ReadNumber(info[2], "value");
    if (pads.size() != 4) throw ArgError("Expected `padding` as [left, right, top, bottom]");
    return SubmitTensor(info.Env(), t.device(), "pad", [t, pads, value]() { return at::constant_pad_nd(t, pads, value); });
  });

  ExportAsync(env, exports, "toRgbFrames", [](const Napi::CallbackInfo& info) -> Napi::Value {
    at::Tensor t = NativeTensor::From(info[0], "video");
    bool round = ReadBool(info[1], "round", false);
    if (t.dim() != 5 || t.size(1) != 3) throw ArgError("toRgbFrames expects a video [B,3,F,H,W] in [-1,1]");
    return SubmitValue<HostBuffer>(
        info.Env(), t.device(), "toRgbFrames",
        [t, round]() {
          // [-1,1] -> [0,255] on the device, then only uint8 bytes cross to the host (4x less traffic).
          at::Tensor x = (t.to(c10::kFloat) * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0;
          x = round ? x.round() : x.floor();  // the official writer truncates (spec G5)
          at::Tensor u8 = x.to(c10::kByte).permute({0, 2, 3, 4, 1}).contiguous();  // [B,F,H,W,3]
          return HostBuffer{u8.to(c10::kCPU), u8.sizes().vec()};
        },
        [](Napi::Env e, HostBuffer& host) { return ToJsTypedArray(e, host); });
  });

  ExportAsync(env, exports, "fromRgbFrames", [](const Napi::CallbackInfo& info) -> Napi::Value {
    TypedArrayInfo src = ReadTypedArray(info[0], "frames");
    if (src.dtype != c10::kByte) throw ArgError("Expected a Uint8Array of RGB frames");
    std::vector<int64_t> shape = ReadShape(info[1], "shape");
    if (shape.size() != 5 || shape[4] != 3) throw ArgError("Expected `shape` [B,F,H,W,3] for RGB frames");
    at::Tensor cpu = CopyIn(src, shape);
    TensorTarget target = ReadTarget(info[2]);
    return SubmitTensor(info.Env(), WorkDevice(cpu, target), "fromRgbFrames", [cpu, target]() {
      c10::Device device = target.device.value_or(c10::kCPU);
      at::Tensor x = cpu.to(device).permute({0, 4, 1, 2, 3}).to(c10::kFloat) / 127.5 - 1.0;  // [B,3,F,H,W] in [-1,1]
      return x.contiguous().to(target.dtype.value_or(c10::kFloat));
    });
  });
}

}  // namespace st2v
