// Executor: one owned worker thread per device, a FIFO queue of tasks, completion on the JS
// thread through a ThreadSafeFunction (the onnxruntime-node "generation 3" design).
//
// Why an owned thread instead of the libuv pool: a UNet forward takes seconds; on the 4-thread
// libuv pool it would stall fs/dns/zlib/crypto work of the whole process, and several forwards
// on one device would oversubscribe the cores with OpenMP threads. One thread per device also
// gives FIFO ordering, so the TS layer sees ops on a device complete in submission order.
#pragma once

#include <napi.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "errors.h"

namespace st2v {

// A unit of libtorch work. Execute() runs on the worker thread; Finish() runs on the JS thread
// and builds the value the promise resolves with. The promise is settled exactly once.
class Task {
 public:
  Task(Napi::Env env, std::string call);
  virtual ~Task() = default;
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  Napi::Promise Promise() const { return deferred_.Promise(); }
  const std::string& call() const { return call_; }

  void RunOnWorker();                                   // worker thread
  void Settle(Napi::Env env);                           // JS thread, idempotent
  void Abandon(Napi::Env env, const std::string& why);  // JS thread, rejects if not settled

 protected:
  virtual void Execute() = 0;
  virtual Napi::Value Finish(Napi::Env env) = 0;

 private:
  Napi::Promise::Deferred deferred_;
  std::string call_;
  std::optional<NativeFailure> failure_;
  bool settled_ = false;
};

// A task from two lambdas: `work` runs on the worker and returns R; `done` maps R to a JS value.
template <typename R>
class FnTask final : public Task {
 public:
  FnTask(Napi::Env env, std::string call, std::function<R()> work,
         std::function<Napi::Value(Napi::Env, R&)> done)
      : Task(env, std::move(call)), work_(std::move(work)), done_(std::move(done)) {}

 protected:
  void Execute() override { result_ = work_(); }
  Napi::Value Finish(Napi::Env env) override { return done_(env, result_); }

 private:
  std::function<R()> work_;
  std::function<Napi::Value(Napi::Env, R&)> done_;
  R result_{};
};

// The intra-op thread setting changes rarely; workers re-apply it when this counter moves.
uint64_t ThreadSettingGeneration();
void BumpThreadSettingGeneration();
// Whether TorchScript graph optimizations run (thread-local in libtorch, applied per job).
void SetJitOptimize(bool optimize);
bool JitOptimize();

class Executor {
 public:
  Executor(Napi::Env env, std::string name);
  ~Executor();

  // JS thread. Takes ownership of the task and returns its promise.
  Napi::Promise Submit(std::unique_ptr<Task> task);
  // JS thread (environment cleanup hook). Lets the running task finish, joins the thread and
  // drops queued tasks: nothing can observe their promises once the environment is going away.
  void Shutdown();
  size_t pending() const { return inflight_; }
  // Any thread. Asks the worker to stop after its current task and joins it (idempotent).
  void StopThread();

  static void CallJs(Napi::Env env, Napi::Function, Executor* self, Task* task);

 private:
  void Loop();

  using Tsfn = Napi::TypedThreadSafeFunction<Executor, Task, &Executor::CallJs>;
  std::string name_;
  Tsfn tsfn_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task*> queue_;
  bool stopping_ = false;
  bool shut_down_ = false;
  size_t inflight_ = 0;  // JS thread only: submitted but not yet settled
};

}  // namespace st2v
