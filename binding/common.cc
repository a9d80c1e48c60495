#include "common.h"

#include <cmath>
#include <limits>

#include "errors.h"

#include <torch/cuda.h>

namespace st2v {

// Random 128-bit tags, one per wrapped class.
const napi_type_tag kTensorTag = {0x5f2d7a1c9b3e4a01ULL, 0x8c41d2e7f0a95b63ULL};
const napi_type_tag kModuleTag = {0x1b7e94c2d05a3f88ULL, 0x9d3c6a01e4f7b215ULL};
const napi_type_tag kGeneratorTag = {0x73a0c5e19d4b2f06ULL, 0x2e8f1b7c4a9d6035ULL};

int64_t ReadInt(const Napi::Value& value, const char* name) {
  if (value.IsBigInt()) {
    bool lossless = false;
    int64_t out = value.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) throw ArgError(MakeString("Expected a 64-bit integer for `", name, "`"));
    return out;
  }
  if (!value.IsNumber()) throw ArgError(MakeString("Expected an integer for `", name, "`"));
  double d = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) {
    throw ArgError(MakeString("Expected an integer for `", name, "` but received ", d));
  }
  return static_cast<int64_t>(d);
}

double ReadNumber(const Napi::Value& value, const char* name) {
  if (!value.IsNumber()) throw ArgError(MakeString("Expected a number for `", name, "`"));
  return value.As<Napi::Number>().DoubleValue();
}

std::string ReadString(const Napi::Value& value, const char* name) {
  if (!value.IsString()) throw ArgError(MakeString("Expected a string for `", name, "`"));
  return value.As<Napi::String>().Utf8Value();
}

bool ReadBool(const Napi::Value& value, const char* name, bool fallback) {
  if (value.IsUndefined() || value.IsNull()) return fallback;
  if (!value.IsBoolean()) throw ArgError(MakeString("Expected a boolean for `", name, "`"));
  return value.As<Napi::Boolean>().Value();
}

std::vector<int64_t> ReadShape(const Napi::Value& value, const char* name) {
  if (!value.IsArray()) throw ArgError(MakeString("Expected an array of sizes for `", name, "`"));
  Napi::Array array = value.As<Napi::Array>();
  std::vector<int64_t> shape;
  shape.reserve(array.Length());
  for (uint32_t i = 0; i < array.Length(); ++i) {
    int64_t size = ReadInt(array.Get(i), name);
    if (size < 0) throw ArgError(MakeString("Expected non-negative sizes for `", name, "` but received ", size));
    shape.push_back(size);
  }
  return shape;
}

c10::ScalarType ParseDType(const std::string& name) {
  if (name == "float32") return c10::kFloat;
  if (name == "float16") return c10::kHalf;
  if (name == "bfloat16") return c10::kBFloat16;
  if (name == "float64") return c10::kDouble;
  if (name == "uint8") return c10::kByte;
  if (name == "int32") return c10::kInt;
  if (name == "int64") return c10::kLong;
  if (name == "bool") return c10::kBool;
  throw ArgError(MakeString("Unknown dtype '", name,
                            "' (expected float32, float16, bfloat16, float64, uint8, int32, int64 or bool)"));
}

std::string DTypeName(c10::ScalarType type) {
  switch (type) {
    case c10::kFloat: return "float32";
    case c10::kHalf: return "float16";
    case c10::kBFloat16: return "bfloat16";
    case c10::kDouble: return "float64";
    case c10::kByte: return "uint8";
    case c10::kInt: return "int32";
    case c10::kLong: return "int64";
    case c10::kBool: return "bool";
    default: return c10::toString(type);
  }
}

c10::Device ParseDevice(const std::string& name) {
  try {
    return c10::Device(name);
  } catch (const c10::Error&) {
    throw ArgError(MakeString("Unknown device '", name, "' (expected 'cpu', 'cuda' or 'cuda:N')"));
  }
}

std::string DeviceName(const c10::Device& device) {
  if (device.is_cuda()) return MakeString("cuda:", device.has_index() ? static_cast<int>(device.index()) : 0);
  return device.str();
}

TensorTarget ReadTarget(const Napi::Value& value) {
  TensorTarget target;
  if (value.IsUndefined() || value.IsNull()) return target;
  if (!value.IsObject()) throw ArgError("Expected an options object {dtype?, device?}");
  Napi::Object options = value.As<Napi::Object>();
  Napi::Value dtype = options.Get("dtype");
  Napi::Value device = options.Get("device");
  if (!dtype.IsUndefined()) target.dtype = ParseDType(ReadString(dtype, "dtype"));
  if (!device.IsUndefined()) {
    target.device = ParseDevice(ReadString(device, "device"));
    CheckDeviceUsable(*target.device);
  }
  return target;
}

void CheckDeviceUsable(const c10::Device& device) {
  if (device.is_cpu()) return;
  if (device.is_cuda()) {
    if (!torch::cuda::is_available()) {
      throw ArgError("CUDA device requested but this libtorch build has no usable CUDA device");
    }
    int64_t index = device.has_index() ? device.index() : 0;
    if (index >= static_cast<int64_t>(torch::cuda::device_count())) {
      throw ArgError(MakeString("CUDA device ", index, " does not exist (", torch::cuda::device_count(), " visible)"));
    }
    return;
  }
  throw ArgError(MakeString("Unsupported device type '", device.str(), "'"));
}

}  // namespace st2v
