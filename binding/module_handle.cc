#include "module_handle.h"

#include <torch/script.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include "addon_data.h"
#include "common.h"
#include "errors.h"
#include "submit.h"
#include "tensor_handle.h"

namespace st2v {

namespace {

struct Loaded {
  std::shared_ptr<torch::jit::Module> module;
  c10::Device device = c10::kCPU;
  std::string path;
  std::string dtype;   // see FloatingDType
  std::string frozen;  // "freeze" / "optimize" / empty
};

// The dtype of the first floating-point parameter, else of the first floating-point buffer;
// empty when the module has neither. Worker thread only (parameters may be changing).
std::string FloatingDType(const torch::jit::Module& module) {
  for (const at::Tensor& p : module.parameters()) {
    if (p.is_floating_point()) return DTypeName(p.scalar_type());
  }
  for (const at::Tensor& b : module.buffers()) {
    if (b.is_floating_point()) return DTypeName(b.scalar_type());
  }
  return "";
}

// Moves every parameter and buffer in place (set_data, as jit::Module::to does). Unlike
// jit::Module::to(dtype), which casts every tensor, only floating-point ones change dtype:
// integer buffers (position ids, counters) keep theirs, as torch.nn.Module.to does.
// Worker thread only, with the same guards as loading (parameters must stay normal tensors).
void PlaceModule(const torch::jit::Module& module, c10::Device device, c10::optional<c10::ScalarType> dtype) {
  c10::InferenceMode normal_mode(false);
  torch::NoGradGuard no_grad;
  auto place = [&](const at::Tensor& t) {
    c10::ScalarType type = dtype && t.is_floating_point() ? *dtype : t.scalar_type();
    if (t.device() == device && t.scalar_type() == type) return;  // also skips tensors shared by submodules
    t.set_data(t.to(device, type));
  };
  for (const at::Tensor& p : module.parameters()) place(p);
  for (const at::Tensor& b : module.buffers()) place(b);
}

struct Moved {
  c10::Device device = c10::kCPU;
  std::string dtype;
  c10::optional<NativeFailure> failure;  // set on the worker; the completion rejects with it
};

c10::TypePtr Unoptional(const c10::TypePtr& type) {
  if (auto opt = type->cast<c10::OptionalType>()) return opt->getElementType();
  return type;
}

// JS value -> IValue, guided by the schema's expected type (numbers become int or float).
c10::IValue ToIValue(const Napi::Value& value, const c10::TypePtr& expected, const std::string& name) {
  c10::TypePtr type = Unoptional(expected);
  if (value.IsNull() || value.IsUndefined()) return c10::IValue();
  if (value.IsObject() && value.As<Napi::Object>().CheckTypeTag(&kTensorTag)) {
    return NativeTensor::From(value, name.c_str());
  }
  if (value.IsBoolean()) return value.As<Napi::Boolean>().Value();
  if (value.IsBigInt()) return ReadInt(value, name.c_str());
  if (value.IsNumber()) {
    if (type->kind() == c10::TypeKind::IntType) return ReadInt(value, name.c_str());
    return value.As<Napi::Number>().DoubleValue();
  }
  if (value.IsString()) return value.As<Napi::String>().Utf8Value();
  if (value.IsArray()) {
    Napi::Array array = value.As<Napi::Array>();
    if (auto list = type->cast<c10::ListType>()) {
      c10::TypePtr elem = list->getElementType();
      c10::impl::GenericList out(elem);
      for (uint32_t i = 0; i < array.Length(); ++i) out.push_back(ToIValue(array.Get(i), elem, name));
      return out;
    }
    if (auto tuple = type->cast<c10::TupleType>()) {
      std::vector<c10::IValue> items;
      for (uint32_t i = 0; i < array.Length(); ++i) {
        c10::TypePtr elem = i < tuple->elements().size() ? tuple->elements()[i] : c10::AnyType::get();
        items.push_back(ToIValue(array.Get(i), elem, name));
      }
      return c10::ivalue::Tuple::create(std::move(items));
    }
  }
  throw ArgError(MakeString("Input `", name, "` cannot be converted to ", expected->annotation_str()));
}

Napi::Value FromIValue(Napi::Env env, const c10::IValue& value) {
  if (value.isTensor()) return NativeTensor::Wrap(env, value.toTensor());
  if (value.isNone()) return env.Null();
  if (value.isBool()) return Napi::Boolean::New(env, value.toBool());
  if (value.isInt()) return Napi::Number::New(env, static_cast<double>(value.toInt()));
  if (value.isDouble()) return Napi::Number::New(env, value.toDouble());
  if (value.isString()) return Napi::String::New(env, value.toStringRef());
  if (value.isTuple()) {
    const auto& items = value.toTupleRef().elements();
    Napi::Array out = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); ++i) out.Set(static_cast<uint32_t>(i), FromIValue(env, items[i]));
    return out;
  }
  if (value.isList()) {
    c10::List<c10::IValue> items = value.toList();
    Napi::Array out = Napi::Array::New(env, items.size());
    for (size_t i = 0; i < items.size(); ++i) out.Set(static_cast<uint32_t>(i), FromIValue(env, items.get(i)));
    return out;
  }
  if (value.isGenericDict()) {
    Napi::Object out = Napi::Object::New(env);
    for (const auto& entry : value.toGenericDict()) {
      std::string key = entry.key().isString() ? entry.key().toStringRef() : MakeString(entry.key());
      out.Set(key, FromIValue(env, entry.value()));
    }
    return out;
  }
  throw ArgError(MakeString("Unsupported module output type ", value.tagKind()));
}

Napi::Object DescribeSchema(Napi::Env env, const c10::FunctionSchema& schema) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", schema.name());
  Napi::Array args = Napi::Array::New(env);
  uint32_t n = 0;
  for (size_t i = 0; i < schema.arguments().size(); ++i) {
    const c10::Argument& arg = schema.arguments()[i];
    if (i == 0 && arg.name() == "self") continue;
    Napi::Object a = Napi::Object::New(env);
    a.Set("name", arg.name());
    a.Set("type", arg.type()->annotation_str());
    a.Set("hasDefault", arg.default_value().has_value());
    args.Set(n++, a);
  }
  out.Set("arguments", args);
  Napi::Array rets = Napi::Array::New(env);
  for (size_t i = 0; i < schema.returns().size(); ++i) {
    Napi::Object r = Napi::Object::New(env);
    r.Set("type", schema.returns()[i].type()->annotation_str());
    rets.Set(static_cast<uint32_t>(i), r);
  }
  out.Set("returns", rets);
  return out;
}

}  // namespace

Napi::Function NativeModule::Init(Napi::Env env) {
  return DefineClass(env, "NativeModule",
                     {
                         InstanceMethod<&NativeModule::Forward>("forward"),
                         InstanceMethod<&NativeModule::MoveTo>("moveTo"),
                         InstanceAccessor<&NativeModule::DType>("dtype"),
                         InstanceAccessor<&NativeModule::Schema>("schema"),
                         InstanceAccessor<&NativeModule::Device>("device"),
                         InstanceAccessor<&NativeModule::Path>("path"),
                         InstanceAccessor<&NativeModule::Disposed>("disposed"),
                         InstanceMethod<&NativeModule::Dispose>("dispose"),
                     });
}

NativeModule::NativeModule(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModule>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) {
    Napi::Error error = Napi::TypeError::New(info.Env(), "NativeModule cannot be constructed from JavaScript; use loadModule()");
    error.Set("code", Napi::String::New(info.Env(), "ERR_INVALID_ARG"));
    throw error;
  }
  Loaded* loaded = info[0].As<Napi::External<Loaded>>().Data();
  module_ = std::move(loaded->module);
  placement_->device = loaded->device;
  placement_->dtype = loaded->dtype;
  path_ = loaded->path;
  frozen_ = loaded->frozen;
  info.This().As<Napi::Object>().TypeTag(&kModuleTag);
}

void NativeModule::RegisterLoad(Napi::Env env, Napi::Object exports) {
  ExportAsync(env, exports, "loadModule", [](const Napi::CallbackInfo& info) -> Napi::Value {
    std::string path = ReadString(info[0], "path");
    TensorTarget target = ReadTarget(info[1]);
    bool freeze = false, optimize = false;
    if (info[1].IsObject()) {
      freeze = ReadBool(info[1].As<Napi::Object>().Get("freeze"), "freeze", false);
      optimize = ReadBool(info[1].As<Napi::Object>().Get("optimize"), "optimize", false);
    }
    c10::Device device = target.device.value_or(c10::kCPU);
    c10::optional<c10::ScalarType> dtype = target.dtype;
    return SubmitValue<Loaded>(
        info.Env(), device, "loadModule",
        [path, device, dtype, freeze, optimize]() {
          // Parameters must stay normal (non-inference) tensors: module.to() and freeze replace them.
          c10::InferenceMode normal_mode(false);
          torch::NoGradGuard no_grad;
          // freeze() inlines calls only with graph optimization on (a thread-local the executor
          // turns off by default for forwards; see setJitMode).
          torch::jit::GraphOptimizerEnabledGuard optimize_while_loading(true);
          auto module = std::make_shared<torch::jit::Module>(torch::jit::load(path, device));
          module->eval();
          if (dtype) PlaceModule(*module, device, dtype);
          // Before freezing: a frozen module has no parameters left, but its constants keep this dtype.
          std::string module_dtype = FloatingDType(*module);
          if (freeze || optimize) {
            torch::jit::Module frozen = torch::jit::freeze(*module);
            if (optimize) frozen = torch::jit::optimize_for_inference(frozen);
            module = std::make_shared<torch::jit::Module>(std::move(frozen));
          }
          if (!module->find_method("forward")) throw ArgError(MakeString("TorchScript file ", path, " has no forward() method"));
          return Loaded{module, device, path, module_dtype, optimize ? "optimize" : freeze ? "freeze" : ""};
        },
        [](Napi::Env e, Loaded& loaded) -> Napi::Value {
          Napi::External<Loaded> external = Napi::External<Loaded>::New(e, &loaded);
          return AddonData::Get(e).module_ctor.New({external});
        });
  });
}

Napi::Value NativeModule::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (!module_) throw DisposedError(MakeString("Module used after dispose() (", path_, ")"));
    if (!placement_->moving_to.empty()) {
      throw ArgError(MakeString("Module ", path_, " is being moved to ", placement_->moving_to,
                                "; await moveTo() before calling forward()"));
    }
    torch::jit::Method method = module_->get_method("forward");
    const c10::FunctionSchema& schema = method.function().getSchema();
    const auto& args = schema.arguments();
    std::vector<c10::IValue> stack{module_->_ivalue()};
    std::unordered_map<std::string, c10::IValue> kwargs;
    if (info[0].IsArray()) {
      Napi::Array inputs = info[0].As<Napi::Array>();
      if (inputs.Length() + 1 > args.size()) {
        throw ArgError(MakeString("forward() of ", path_, " takes ", args.size() - 1, " inputs but received ", inputs.Length()));
      }
      for (uint32_t i = 0; i < inputs.Length(); ++i) stack.push_back(ToIValue(inputs.Get(i), args[i + 1].type(), args[i + 1].name()));
    } else if (info[0].IsObject() && !info[0].As<Napi::Object>().CheckTypeTag(&kTensorTag)) {
      Napi::Object named = info[0].As<Napi::Object>();
      Napi::Array keys = named.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); ++i) {
        std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
        auto index = schema.argumentIndexWithName(key);
        if (!index || *index == 0) throw ArgError(MakeString("forward() of ", path_, " has no input named `", key, "`"));
        kwargs[key] = ToIValue(named.Get(key), args[*index].type(), key);
      }
    } else {
      throw ArgError("Expected forward inputs as an array (positional) or an object (named)");
    }
    try {
      schema.checkAndNormalizeInputs(stack, kwargs);  // types, counts, defaults: checked before queuing
    } catch (const c10::Error& e) {
      throw ArgError(e.what_without_backtrace());
    }
    stack.erase(stack.begin());  // Method::operator() re-inserts self
    auto module = module_;       // pins the module while the task runs, even if disposed meanwhile
    return SubmitValue<c10::IValue>(
        env, placement_->device, "forward",
        [module, stack]() mutable {
          try {
            return module->get_method("forward")(std::move(stack));
          } catch (const c10::Error&) {
            throw;
          } catch (const std::bad_alloc&) {
            throw;
          } catch (const std::exception& e) {
            // The TorchScript interpreter rethrows op failures as std::runtime_error with the
            // TorchScript traceback: these are libtorch errors (ERR_TORCH), not addon bugs.
            throw TorchFailure(e.what());
          }
        },
        [](Napi::Env e, c10::IValue& out) { return FromIValue(e, out); });
  } catch (...) {
    return RejectedPromise(env, CaptureCurrentException("forward"));
  }
}

Napi::Value NativeModule::Schema(const Napi::CallbackInfo& info) {
  return Guard(info, "schema", [&]() -> Napi::Value {
    if (!module_) throw DisposedError(MakeString("Module used after dispose() (", path_, ")"));
    return DescribeSchema(info.Env(), module_->get_method("forward").function().getSchema());
  });
}

Napi::Value NativeModule::MoveTo(const Napi::CallbackInfo& info) {
  return AsyncGuard(info, "moveTo", [&]() -> Napi::Value {
    if (!module_) throw DisposedError(MakeString("Module used after dispose() (", path_, ")"));
    if (!frozen_.empty()) {
      throw ArgError(MakeString("Module ", path_, " was loaded with `", frozen_,
                                "`: its weights are inlined as graph constants and cannot be moved; "
                                "load it again with the wanted { device, dtype } instead"));
    }
    if (!placement_->moving_to.empty()) {
      throw ArgError(MakeString("Module ", path_, " is already being moved to ", placement_->moving_to,
                                "; await that moveTo() before moving it again"));
    }
    if (!info[0].IsUndefined() && !info[0].IsObject()) throw ArgError("Expected a target object {device?, dtype?}");
    TensorTarget target = ReadTarget(info[0]);  // unusable CUDA devices are rejected here, as in tensor to()
    if (target.dtype && !c10::isFloatingType(*target.dtype)) {
      throw ArgError(MakeString("Expected a floating-point dtype (float32, float16, bfloat16, float64) for `dtype` but received ",
                                DTypeName(*target.dtype)));
    }
    c10::Device from = placement_->device;
    c10::Device to = target.device.value_or(from);
    if (to.is_cuda() && !to.has_index()) to.set_index(0);
    c10::optional<c10::ScalarType> dtype = target.dtype;
    c10::optional<c10::ScalarType> old_dtype;
    if (!placement_->dtype.empty()) old_dtype = ParseDType(placement_->dtype);
    auto module = module_;
    auto placement = placement_;
    std::string label = DeviceName(to) + (dtype ? " as " + DTypeName(*dtype) : "");
    Napi::Value promise = SubmitValue<Moved>(
        info.Env(), from, "moveTo",  // FIFO after every forward already queued on the current device
        [module, from, to, dtype, old_dtype]() {
          Moved moved;
          try {
            PlaceModule(*module, to, dtype);
            moved.device = to;
          } catch (...) {
            moved.failure = CaptureCurrentException("moveTo");
            // A failure part-way (e.g. out of memory on the target) leaves tensors on both sides:
            // put everything back where it was, best effort, so the module stays usable.
            try {
              PlaceModule(*module, from, dtype ? old_dtype : c10::nullopt);
            } catch (...) {
            }
            moved.device = from;
          }
          moved.dtype = FloatingDType(*module);
          return moved;
        },
        [placement](Napi::Env e, Moved& moved) -> Napi::Value {
          placement->device = moved.device;
          placement->dtype = moved.dtype;
          placement->moving_to.clear();
          if (moved.failure) throw MakeJsError(e, *moved.failure);
          return e.Undefined();
        });
    placement_->moving_to = label;  // only once the task is queued
    return promise;
  });
}

Napi::Value NativeModule::DType(const Napi::CallbackInfo& info) {
  if (placement_->dtype.empty()) return info.Env().Null();
  return Napi::String::New(info.Env(), placement_->dtype);
}

Napi::Value NativeModule::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DeviceName(placement_->device));
}
Napi::Value NativeModule::Path(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), path_); }
Napi::Value NativeModule::Disposed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !module_); }

Napi::Value NativeModule::Dispose(const Napi::CallbackInfo& info) {
  module_.reset();  // a forward in flight keeps its own reference and finishes normally
  return info.Env().Undefined();
}

}  // namespace st2v
