// Shared includes, argument helpers and type tags for the streamingt2v addon.
// The addon is deliberately thin: it moves tensors, runs TorchScript and a closed set of ops.
// Every policy decision (sampling, memory, blending) lives in the TypeScript layer.
#pragma once

#include <napi.h>
#include <torch/script.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace st2v {

// Builds a message from any streamable parts (onnxruntime-node's MakeString idea).
template <typename... Parts>
std::string MakeString(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

// Type tags: every wrapped object is tagged at construction and checked on unwrap, so a
// plain object or a wrapper of another kind can never be reinterpreted (napi_type_tag, N-API 8).
extern const napi_type_tag kTensorTag;
extern const napi_type_tag kModuleTag;
extern const napi_type_tag kGeneratorTag;

// Argument readers used on the JS thread. They throw ArgError (see errors.h) with a message that
// names the argument, which the boundary turns into an ERR_INVALID_ARG TypeError.
std::vector<int64_t> ReadShape(const Napi::Value& value, const char* name);
int64_t ReadInt(const Napi::Value& value, const char* name);
double ReadNumber(const Napi::Value& value, const char* name);
std::string ReadString(const Napi::Value& value, const char* name);
bool ReadBool(const Napi::Value& value, const char* name, bool fallback);

// dtype and device names as used in TypeScript ('float32', 'cuda:0', ...).
c10::ScalarType ParseDType(const std::string& name);
std::string DTypeName(c10::ScalarType type);
c10::Device ParseDevice(const std::string& name);
std::string DeviceName(const c10::Device& device);

// Optional {dtype, device} read from an options object; missing keys keep the fallback.
struct TensorTarget {
  c10::optional<c10::ScalarType> dtype;
  c10::optional<c10::Device> device;
};
TensorTarget ReadTarget(const Napi::Value& value);

// Rejects a device that this libtorch build cannot run on, before any work is queued.
void CheckDeviceUsable(const c10::Device& device);

}  // namespace st2v
