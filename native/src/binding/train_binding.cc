// train_binding.cc: `train(spec, onStep, onCheckpoint, onSnapshot, stopFlag?)` -> Promise. The spec (a lowered
// plan, base weights, initial adapters, tokenised data) is copied into C++ on the calling thread;
// training runs on a worker thread (Napi::AsyncWorker) that starts one thread per stage, so Node's
// event loop stays free; each optimizer step's loss reaches `onStep`, each adapter checkpoint
// `onCheckpoint` and each snapshot of the run's state `onSnapshot`, through thread-safe functions
// while it runs. Setting stopFlag[0] to a non-zero value stops the run at the end of the round in
// flight (Trainer::watch_stop_flag).
#include <napi.h>

#include <cmath>
#include <memory>
#include <string>

#include "binding/napi_value.h"
#include "core/check.h"
#include "cpu/gemm.h"
#include "cuda/cuda_stage.h"
#include "spec/train_read.h"
#include "train/trainer.h"

#ifdef LORAFLOW_HAVE_CBLAS
extern "C" void openblas_set_num_threads(int);
#endif

namespace loraflow {
namespace {


// (layer, module) -> {A, B} as { "LAYER.MODULE": { A: Float32Array, B: Float32Array } }.
Napi::Object sites_to_js(Napi::Env env, const std::map<std::pair<int64_t, int>, std::pair<std::vector<float>, std::vector<float>>>& sites) {
  Napi::Object out = Napi::Object::New(env);
  for (auto& [site, ab] : sites) {
    Napi::Object so = Napi::Object::New(env);
    auto A = Napi::Float32Array::New(env, ab.first.size());
    std::copy(ab.first.begin(), ab.first.end(), A.Data());
    auto B = Napi::Float32Array::New(env, ab.second.size());
    std::copy(ab.second.begin(), ab.second.end(), B.Data());
    so.Set("A", A);
    so.Set("B", B);
    out.Set(std::to_string(site.first) + "." + kModuleNames[site.second], so);
  }
  return out;
}

// (layer, module) -> [moments, na + nb] as { "LAYER.MODULE": Float32Array }.
Napi::Object moments_to_js(Napi::Env env, const SiteMoments& sites) {
  Napi::Object out = Napi::Object::New(env);
  for (auto& [site, m] : sites) {
    auto values = Napi::Float32Array::New(env, m.size());
    std::copy(m.begin(), m.end(), values.Data());
    out.Set(std::to_string(site.first) + "." + kModuleNames[site.second], values);
  }
  return out;
}

Napi::Array int64s_to_js(Napi::Env env, const std::vector<int64_t>& values) {
  Napi::Array out = Napi::Array::New(env, values.size());
  for (size_t i = 0; i < values.size(); i++) out.Set(static_cast<uint32_t>(i), static_cast<double>(values[i]));
  return out;
}

// A callback that throws must not take the process down from a thread-safe function's call: its
// error is left to the JavaScript side (runPlan records it and fails the run when training ends).
void call_safely(const Napi::Function& fn, const Napi::Object& arg) {
  try {
    fn.Call({arg});
  } catch (const Napi::Error&) {
  }
}

// How the training promise settles. Progress and checkpoint calls are queued for the event
// loop and may still be waiting when training ends; a thread-safe function's finalizer runs only
// after its queue is empty, so the promise settles when both have been finalized, and nothing
// reaches JavaScript after it.
struct Settlement {
  explicit Settlement(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise::Deferred deferred;
  Napi::Reference<Napi::Value> outcome;  // the result, or the error, once training has ended
  bool failed = false;
  int open = 3;  // thread-safe functions not finalized yet

  void finalized(Napi::Env env) {
    if (--open > 0) return;
    Napi::HandleScope scope(env);
    if (failed) deferred.Reject(outcome.Value());
    else deferred.Resolve(outcome.Value());
    outcome.Reset();
  }
};

class TrainWorker : public Napi::AsyncWorker {
 public:
  TrainWorker(Napi::Env env, std::shared_ptr<Settlement> settlement, std::unique_ptr<Trainer> trainer, Napi::ThreadSafeFunction on_step,
              Napi::ThreadSafeFunction on_checkpoint, Napi::ThreadSafeFunction on_snapshot, int blas_threads, Napi::Value stop_flag)
      : Napi::AsyncWorker(env, "loraflow-train"), settlement_(std::move(settlement)), trainer_(std::move(trainer)),
        on_step_(std::move(on_step)), on_checkpoint_(std::move(on_checkpoint)), on_snapshot_(std::move(on_snapshot)), blas_threads_(blas_threads) {
    // The flag's memory lives as long as this reference: until the worker is gone.
    if (stop_flag.IsTypedArray() && stop_flag.As<Napi::TypedArray>().TypedArrayType() == napi_int32_array && stop_flag.As<Napi::Int32Array>().ElementLength() >= 1) {
      stop_flag_ = Napi::Persistent(stop_flag.As<Napi::Object>());
      trainer_->watch_stop_flag(stop_flag.As<Napi::Int32Array>().Data());
    }
  }

  void Execute() override {
    try {
#ifdef LORAFLOW_HAVE_CBLAS
      openblas_set_num_threads(blas_threads_);
#endif
      trainer_->run([this](const StepEvent& e) {
        auto* copy = new StepEvent(e);
        if (on_step_.BlockingCall(copy, [](Napi::Env env, Napi::Function fn, StepEvent* ev) {
              Napi::Object o = Napi::Object::New(env);
              o.Set("adapter", ev->adapter);
              o.Set("step", static_cast<double>(ev->step));
              o.Set("loss", ev->loss);
              o.Set("lr", ev->lr);
              o.Set("gradNorm", ev->grad_norm);
              o.Set("tokens", ev->tokens);
              Napi::Array busy = Napi::Array::New(env, ev->busy.size()), wait = Napi::Array::New(env, ev->wait.size());
              for (size_t s = 0; s < ev->busy.size(); s++) {
                busy.Set(static_cast<uint32_t>(s), ev->busy[s]);
                wait.Set(static_cast<uint32_t>(s), ev->wait[s]);
              }
              o.Set("busy", busy);
              o.Set("wait", wait);
              delete ev;
              call_safely(fn, o);
            }) != napi_ok) {
          delete copy;
        }
      }, [this](CheckpointEvent&& e) {
        auto* copy = new CheckpointEvent(std::move(e));
        // Queued for the event loop; the promise waits for it (see Settlement).
        if (on_checkpoint_.BlockingCall(copy, [](Napi::Env env, Napi::Function fn, CheckpointEvent* ev) {
              Napi::Object o = Napi::Object::New(env);
              o.Set("adapter", ev->adapter);
              o.Set("step", static_cast<double>(ev->step));
              o.Set("save", ev->save);
              o.Set("evaluate", ev->evaluate);
              o.Set("sites", sites_to_js(env, ev->sites));
              o.Set("moments", moments_to_js(env, ev->moments));
              delete ev;
              call_safely(fn, o);
            }) != napi_ok) {
          delete copy;
        }
      }, [this](Snapshot&& e) {
        auto* copy = new Snapshot(std::move(e));
        // Queued for the event loop; the promise waits for it (see Settlement).
        if (on_snapshot_.BlockingCall(copy, [](Napi::Env env, Napi::Function fn, Snapshot* ev) {
              Napi::Object o = Napi::Object::New(env);
              o.Set("roundsDone", static_cast<double>(ev->rounds_done));
              o.Set("stopped", ev->stopped);
              o.Set("steps", int64s_to_js(env, ev->steps));
              Napi::Array weights = Napi::Array::New(env, ev->weights.size());
              Napi::Array moments = Napi::Array::New(env, ev->moments.size());
              for (size_t a = 0; a < ev->weights.size(); a++) {
                weights.Set(static_cast<uint32_t>(a), sites_to_js(env, ev->weights[a]));
                moments.Set(static_cast<uint32_t>(a), moments_to_js(env, ev->moments[a]));
              }
              o.Set("adapters", weights);
              o.Set("moments", moments);
              delete ev;
              call_safely(fn, o);
            }) != napi_ok) {
          delete copy;
        }
      });
    } catch (const std::exception& e) {
      SetError(e.what());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    Napi::Object result = Napi::Object::New(env);
    Napi::Array adapters = Napi::Array::New(env);
    for (size_t a = 0; a < static_cast<size_t>(adapter_count()); a++) {
      adapters.Set(static_cast<uint32_t>(a), sites_to_js(env, trainer_->adapter_weights(static_cast<int>(a))));
    }
    result.Set("adapters", adapters);
    Napi::Array stages = Napi::Array::New(env);
    const auto& times = trainer_->stage_times();
    for (size_t s = 0; s < times.size(); s++) {
      Napi::Object so = Napi::Object::New(env);
      so.Set("busySeconds", times[s].busy_seconds);
      so.Set("waitSeconds", times[s].wait_seconds);
      so.Set("weightBytes", static_cast<double>(times[s].weight_bytes));
      so.Set("adapterBytes", static_cast<double>(times[s].adapter_bytes));
      so.Set("activationBytes", static_cast<double>(times[s].activation_bytes));
      // [op, mb, channel, peer, round, start, waited, end] per traced action.
      auto trace = Napi::Float64Array::New(env, times[s].trace.size() * 8);
      for (size_t i = 0; i < times[s].trace.size(); i++) {
        const TracedAction& t = times[s].trace[i];
        const double row[8] = {static_cast<double>(t.action.op), static_cast<double>(t.action.mb), static_cast<double>(t.action.what), static_cast<double>(t.action.peer), static_cast<double>(t.round), t.start, t.waited, t.end};
        std::copy(row, row + 8, trace.Data() + i * 8);
      }
      so.Set("trace", trace);
      stages.Set(static_cast<uint32_t>(s), so);
    }
    result.Set("stages", stages);
    result.Set("loopAllocations", static_cast<double>(trainer_->loop_allocations()));
    result.Set("stoppedAfter", static_cast<double>(trainer_->stopped_after()));
    result.Set("totalRounds", static_cast<double>(trainer_->total_rounds()));
    settle(result, false);
  }

  void OnError(const Napi::Error& e) override { settle(Napi::Error::New(Env(), std::string("training failed: ") + e.Message()).Value(), true); }

 private:
  int64_t adapter_count() const { return static_cast<int64_t>(trainer_->adapter_count()); }

  // Records how training ended and lets the thread-safe functions finish their queues; the last
  // finalizer settles the promise.
  void settle(Napi::Value outcome, bool failed) {
    settlement_->outcome = Napi::Persistent(outcome);
    settlement_->failed = failed;
    on_step_.Release();
    on_checkpoint_.Release();
    on_snapshot_.Release();
  }

  std::shared_ptr<Settlement> settlement_;
  std::unique_ptr<Trainer> trainer_;
  Napi::ThreadSafeFunction on_step_;
  Napi::ThreadSafeFunction on_checkpoint_;
  Napi::ThreadSafeFunction on_snapshot_;
  int blas_threads_;
  Napi::ObjectReference stop_flag_;
};

}  // namespace

Napi::Value Train(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction() || !info[3].IsFunction()) {
    throw Napi::TypeError::New(env, "train(spec, onStep, onCheckpoint, onSnapshot, stopFlag?)");
  }
  std::unique_ptr<Trainer> trainer;
  int blas_threads = 1;
  try {
    spec::Value tree = js::to_spec(info[0], "spec");
    const spec::Placement placement = spec::read_placement(tree);
    TrainSpec spec = spec::read_train_spec(tree, placement);
    blas_threads = spec.blas_threads;
    MakeStageEngines engines;
    if (placement.backend != "cpu") engines = cuda::cuda_stage_engines({placement.backend == "cuda-emulated", placement.devices});
    trainer = std::make_unique<Trainer>(std::move(spec), engines);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("train: ") + e.what());
  }
  auto settlement = std::make_shared<Settlement>(env);
  auto finalized = [settlement](Napi::Env e) { settlement->finalized(e); };
  auto on_step = Napi::ThreadSafeFunction::New(env, info[1].As<Napi::Function>(), "loraflow-train-progress", 0, 1, finalized);
  auto on_checkpoint = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "loraflow-train-checkpoint", 0, 1, finalized);
  auto on_snapshot = Napi::ThreadSafeFunction::New(env, info[3].As<Napi::Function>(), "loraflow-train-snapshot", 0, 1, finalized);
  auto* worker = new TrainWorker(env, settlement, std::move(trainer), std::move(on_step), std::move(on_checkpoint), std::move(on_snapshot), blas_threads,
                                 info.Length() > 4 ? info[4] : env.Undefined());
  worker->Queue();
  return settlement->deferred.Promise();
}

}  // namespace loraflow
