#include "errors.h"

#include <c10/util/Exception.h>

#include <new>

namespace st2v {

namespace {

bool LooksLikeAllocationFailure(const std::string& message) {
  // CPU allocations fail with a plain c10::Error ("DefaultCPUAllocator: can't allocate memory");
  // CUDA ones raise c10::OutOfMemoryError (handled before this check).
  return message.find("can't allocate memory") != std::string::npos ||
         message.find("not enough memory") != std::string::npos ||
         message.find("out of memory") != std::string::npos;
}

std::string FirstLines(const std::string& message) {
  // what_without_backtrace() can still carry an "Exception raised from ..." tail on some builds.
  const auto cut = message.find("\nException raised from");
  return cut == std::string::npos ? message : message.substr(0, cut);
}

}  // namespace

NativeFailure CaptureCurrentException(const std::string& call) {
  try {
    throw;
  } catch (const ArgError& e) {
    return {"ERR_INVALID_ARG", e.what(), call};
  } catch (const DisposedError& e) {
    return {"ERR_DISPOSED", e.what(), call};
  } catch (const c10::OutOfMemoryError& e) {
    return {"ERR_OUT_OF_MEMORY", FirstLines(e.what_without_backtrace()), call};
  } catch (const c10::Error& e) {
    std::string message = FirstLines(e.what_without_backtrace());
    if (LooksLikeAllocationFailure(message)) return {"ERR_OUT_OF_MEMORY", message, call};
    return {"ERR_TORCH", message, call};
  } catch (const TorchFailure& e) {
    std::string message = FirstLines(e.what());
    if (LooksLikeAllocationFailure(message)) return {"ERR_OUT_OF_MEMORY", message, call};
    return {"ERR_TORCH", message, call};
  } catch (const std::bad_alloc& e) {
    return {"ERR_OUT_OF_MEMORY", std::string("allocation failed in ") + call, call};
  } catch (const std::exception& e) {
    std::string message = FirstLines(e.what());
    if (LooksLikeAllocationFailure(message)) return {"ERR_OUT_OF_MEMORY", message, call};
    return {"ERR_NATIVE", message.empty() ? "native failure in " + call : message, call};
  } catch (...) {
    return {"ERR_NATIVE", "unknown native failure in \"" + call + "\"", call};
  }
}

Napi::Error MakeJsError(Napi::Env env, const NativeFailure& failure) {
  Napi::Error error = failure.code == "ERR_INVALID_ARG" ? Napi::TypeError::New(env, failure.message)
                                                        : Napi::Error::New(env, failure.message);
  error.Set("code", Napi::String::New(env, failure.code));
  error.Set("nativeCall", Napi::String::New(env, failure.call));
  return error;
}

Napi::Value RejectedPromise(Napi::Env env, const NativeFailure& failure) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(MakeJsError(env, failure).Value());
  return deferred.Promise();
}

}  // namespace st2v
