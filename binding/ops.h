// Registration entry points of each binding file (called once per environment from addon.cc).
#pragma once

#include <napi.h>

namespace st2v {
void RegisterTensorOps(Napi::Env env, Napi::Object exports);
void RegisterDeviceFunctions(Napi::Env env, Napi::Object exports);
// cpu_memory.cc: CPU allocation accounting + optional limit (installed once per process).
void InstallCpuMemoryAccounting();
void RegisterCpuMemoryFunctions(Napi::Env env, Napi::Object exports);
}  // namespace st2v
