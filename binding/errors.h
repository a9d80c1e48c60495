// One translation point from C++ exceptions to JS errors with stable codes.
//   c10::OutOfMemoryError, std::bad_alloc, CPU allocator failures -> ERR_OUT_OF_MEMORY
//   c10::Error                                                     -> ERR_TORCH (message without backtrace)
//   ArgError (our own argument checks)                             -> ERR_INVALID_ARG (TypeError)
//   DisposedError (use after dispose)                              -> ERR_DISPOSED
//   anything else                                                  -> ERR_NATIVE naming the native call
#pragma once

#include <napi.h>

#include <exception>
#include <stdexcept>
#include <string>

namespace st2v {

class ArgError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A libtorch failure that did not arrive as c10::Error (e.g. rethrown by the TorchScript interpreter).
class TorchFailure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DisposedError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

// A failure captured on a worker thread, turned into a JS error later on the JS thread.
struct NativeFailure {
  std::string code;     // "ERR_TORCH", ...
  std::string message;  // human readable, no C++ backtrace
  std::string call;     // the native call that failed, e.g. "forward"
};

// Must be called inside a catch block; classifies the in-flight exception.
NativeFailure CaptureCurrentException(const std::string& call);

// Builds the JS error object (Error or TypeError) with `code` and `nativeCall` properties.
Napi::Error MakeJsError(Napi::Env env, const NativeFailure& failure);

// A promise already rejected with `failure` (async entry points never throw synchronously).
Napi::Value RejectedPromise(Napi::Env env, const NativeFailure& failure);

// Wraps a promise-returning JS-thread entry point: any exception becomes a rejected promise.
template <typename Fn>
Napi::Value AsyncGuard(const Napi::CallbackInfo& info, const char* call, Fn&& fn) {
  try {
    return fn();
  } catch (...) {
    return RejectedPromise(info.Env(), CaptureCurrentException(call));
  }
}

// Wraps a synchronous JS-thread entry point: any exception becomes a thrown JS error.
template <typename Fn>
Napi::Value Guard(const Napi::CallbackInfo& info, const char* call, Fn&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    MakeJsError(info.Env(), CaptureCurrentException(call)).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
}

}  // namespace st2v
