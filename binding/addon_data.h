// Per-environment addon state (main thread and each worker_thread get their own): the
// executors, one per device, and the constructors used to wrap results.
#pragma once

#include <napi.h>
#include <c10/core/Device.h>

#include <map>
#include <memory>
#include <string>

#include "executor.h"

namespace st2v {

struct AddonData {
  Napi::FunctionReference tensor_ctor;
  Napi::FunctionReference module_ctor;
  Napi::FunctionReference generator_ctor;
  std::map<std::string, std::unique_ptr<Executor>> executors;  // key: "cpu", "cuda:0", ...
  bool torn_down = false;

  // The executor that runs work for `device`, created on first use (JS thread only).
  Executor& ExecutorFor(Napi::Env env, const c10::Device& device);
  // Cleanup hook body: finish running work, abandon queued work, join the threads.
  void Teardown();

  static AddonData& Get(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }
};

}  // namespace st2v
