#include "executor.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/python/update_graph_executor_opt.h>

#include <atomic>

namespace st2v {

namespace {
std::atomic<uint64_t> g_thread_generation{1};
std::atomic<bool> g_jit_optimize{false};  // default: skip graph-executor optimization passes (see setJitMode)
}

void SetJitOptimize(bool optimize) { g_jit_optimize = optimize; }
bool JitOptimize() { return g_jit_optimize.load(); }

uint64_t ThreadSettingGeneration() { return g_thread_generation.load(); }
void BumpThreadSettingGeneration() { g_thread_generation++; }

Task::Task(Napi::Env env, std::string call)
    : deferred_(Napi::Promise::Deferred::New(env)), call_(std::move(call)) {}

void Task::RunOnWorker() {
  try {
    Execute();
  } catch (...) {
    failure_ = CaptureCurrentException(call_);
  }
}

void Task::Settle(Napi::Env env) {
  if (settled_) return;
  settled_ = true;
  Napi::HandleScope scope(env);
  if (failure_) {
    deferred_.Reject(MakeJsError(env, *failure_).Value());
    return;
  }
  try {
    deferred_.Resolve(Finish(env));
  } catch (const Napi::Error& e) {
    deferred_.Reject(e.Value());
  } catch (...) {
    deferred_.Reject(MakeJsError(env, CaptureCurrentException(call_)).Value());
  }
}

void Task::Abandon(Napi::Env env, const std::string& why) {
  if (settled_) return;
  settled_ = true;
  Napi::HandleScope scope(env);
  deferred_.Reject(MakeJsError(env, {"ERR_ABANDONED", why, call_}).Value());
}

Executor::Executor(Napi::Env env, std::string name) : name_(std::move(name)) {
  tsfn_ = Tsfn::New(env, "streamingt2v:" + name_, 0, 1, this);
  tsfn_.Unref(env);  // an idle executor must not keep the process alive
  thread_ = std::thread([this] { Loop(); });
}

void Executor::StopThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

Executor::~Executor() { StopThread(); }

Napi::Promise Executor::Submit(std::unique_ptr<Task> task) {
  Napi::Env env = task->Promise().Env();
  Napi::Promise promise = task->Promise();
  if (shut_down_) {
    task->Abandon(env, "the " + name_ + " executor was shut down");
    return promise;
  }
  if (inflight_++ == 0) tsfn_.Ref(env);  // keep the loop alive while work is pending
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(task.release());
  }
  wake_.notify_one();
  return promise;
}

void Executor::CallJs(Napi::Env env, Napi::Function, Executor* self, Task* task) {
  std::unique_ptr<Task> owned(task);
  if (env == nullptr) return;  // environment is going away: nothing can observe the promise
  owned->Settle(env);
  if (self != nullptr && self->inflight_ > 0 && --self->inflight_ == 0 && !self->shut_down_) {
    self->tsfn_.Unref(env);
  }
}

void Executor::Loop() {
  // Thread-local for the life of the worker: every op runs without autograd bookkeeping.
  c10::InferenceMode inference_guard;
  uint64_t applied_generation = 0;  // 0 = never applied
  for (;;) {
    Task* task = nullptr;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;  // queued tasks are abandoned by Shutdown on the JS thread
      task = queue_.front();
      queue_.pop_front();
    }
    // OpenMP thread counts are per OS thread: apply the global setting on this worker when it
    // changed. Not on every job: in libtorch 1.13 it also rebuilds the pthreadpool (milliseconds).
    const uint64_t generation = ThreadSettingGeneration();
    if (generation != applied_generation) {
      at::init_num_threads();
      applied_generation = generation;
    }
    // Thread-local in libtorch: apply the process-wide choice on this worker for every job.
    torch::jit::setGraphExecutorOptimize(g_jit_optimize.load());
    task->RunOnWorker();
    if (tsfn_.NonBlockingCall(task) != napi_ok) {
      delete task;  // the environment is closing; the promise can no longer be observed
    }
  }
}

void Executor::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  StopThread();  // a running forward finishes first; it cannot be interrupted
  std::deque<Task*> abandoned;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    abandoned.swap(queue_);
  }
  for (Task* task : abandoned) delete task;
  tsfn_.Abort();  // completed-but-undelivered tasks reach CallJs with a null env and are freed there
}

}  // namespace st2v
