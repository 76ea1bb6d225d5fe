// engine_run.cc: loraflow_engine_run, the engine without Node.js: trains a run file (what
// `loraflow run --engine-run FILE` writes: the lowered plan, weights or the seed they are drawn
// from, initial adapters, tokenised data) on the CPU engine or on GPUs, real or emulated, and
// prints each step as `loraflow run` does. It is how a machine without Node (the GPU machine)
// trains, and what bench/gpu/check.sh measures with.
//
//   loraflow_engine_run RUN_FILE [--backend cpu|cuda|cuda-emulated] [--devices 0,1,...]
//       [--report FILE.json] [--compare-cpu LOSS,UPDATE] [--quiet]
//
// --report writes what the run measured: every step's loss, learning rate, gradient norm,
// tokens and when it ended, the seconds and tokens/s, each stage's busy time and arenas, the model FLOPs per
// token. --compare-cpu trains the file again on the CPU engine and compares: each step's loss
// (relative) and each adapter's update (final less initial weights, by norm), failing (exit 1)
// past the two bounds given. Exit 2: bad usage or a file it refuses; 1: training failed.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "cuda/bf16.h"
#include "cuda/cuda_stage.h"
#include "spec/random_weights.h"
#include "spec/program_read.h"
#include "spec/read.h"
#include "spec/run_file.h"
#include "spec/train_read.h"
#include "train/trainer.h"

namespace {

using namespace loraflow;

struct Options {
  std::string file, backend, report;
  std::vector<int> devices;
  bool compare = false, quiet = false;
  double loss_bound = 0, update_bound = 0;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr, "loraflow_engine_run: %s\nusage: loraflow_engine_run RUN_FILE [--backend cpu|cuda|cuda-emulated] [--devices 0,1,...] [--report FILE.json] [--compare-cpu LOSS,UPDATE] [--quiet]\n", why.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(a + " needs a value");
      return argv[++i];
    };
    if (a == "--backend") {
      o.backend = value();
      if (o.backend != "cpu" && o.backend != "cuda" && o.backend != "cuda-emulated") usage("--backend is cpu, cuda or cuda-emulated");
    } else if (a == "--devices") {
      std::stringstream in(value());
      for (std::string part; std::getline(in, part, ',');) {
        char* end = nullptr;
        const long d = std::strtol(part.c_str(), &end, 10);
        if (part.empty() || *end != '\0' || d < 0 || d > 1023) usage("--devices is a list of GPU numbers: 0,1,2");
        o.devices.push_back(static_cast<int>(d));
      }
    } else if (a == "--report") {
      o.report = value();
    } else if (a == "--compare-cpu") {
      const std::string v = value();
      if (std::sscanf(v.c_str(), "%lf,%lf", &o.loss_bound, &o.update_bound) != 2 || !(o.loss_bound > 0) || !(o.update_bound > 0)) usage("--compare-cpu takes two bounds: LOSS,UPDATE (relative errors)");
      o.compare = true;
    } else if (a == "--quiet") {
      o.quiet = true;
    } else if (!a.empty() && a[0] == '-') {
      usage("unknown option " + a);
    } else if (o.file.empty()) {
      o.file = a;
    } else {
      usage("one run file");
    }
  }
  if (o.file.empty()) usage("no run file");
  return o;
}

// The run file with base weights drawn from the model's seed where it names one instead of
// holding them.
spec::Value load(const Options& o) {
  spec::Value tree = spec::read_run_file(o.file);
  LF_CHECK(tree.is_object(), o.file << ": the header is not an object");
  if (!o.devices.empty()) tree.set("devices", spec::Value::i32(std::vector<int32_t>(o.devices.begin(), o.devices.end())));
  const LlamaConfig c = spec::llama_config(spec::object(tree, "config", "spec"));
  auto seed_of = [](const spec::Value& o, const std::string& where) {
    const int64_t seed = spec::integer(o, "seed", where);
    LF_CHECK(seed >= 0 && seed <= 0xffffffffll, where << ": seed " << seed);
    return static_cast<uint32_t>(seed);
  };
  if (const spec::Value* random = tree.find("randomWeights")) {
    spec::Value weights = spec::Value::object();
    for (auto& [name, data] : spec::random_base_weights(c, seed_of(*random, "randomWeights"))) weights.set(name, spec::Value::f32(std::move(data)));
    tree.set("weights", std::move(weights));
  }
  spec::Value& adapters = spec::array(tree, "adapters", "spec");
  for (size_t a = 0; a < adapters.size(); a++) {
    const std::string where = "adapters[" + std::to_string(a) + "]";
    spec::Value& ao = spec::object_at(adapters, a, where);
    const spec::Value* random = ao.find("randomInit");
    if (random == nullptr) continue;
    std::vector<int> modules;
    for (int m : spec::index_list(spec::field(*random, "modules", where + ".randomInit"), where + ".randomInit.modules")) {
      LF_CHECK(m < kModules, where << ".randomInit: module " << m);
      modules.push_back(m);
    }
    const int64_t rank = spec::integer(ao, "rank", where);
    LF_CHECK(rank > 0 && rank <= (1 << 16), where << ": rank " << rank);
    spec::Value sites = spec::Value::object();
    for (auto& [site, ab] : spec::random_lora_init(c, rank, seed_of(*random, where + ".randomInit"), modules)) {
      spec::Value s = spec::Value::object();
      s.set("A", spec::Value::f32(std::move(ab.first)));
      s.set("B", spec::Value::f32(std::move(ab.second)));
      sites.set(std::to_string(site.first) + "." + kModuleNames[site.second], std::move(s));
    }
    ao.set("sites", std::move(sites));
  }
  return tree;
}

// The spec for one backend: a run file holds the programs twice, lowered in fp32 for the CPU
// engine (cpuPrograms) and in the model's dtype for GPUs (gpuPrograms).
spec::Value for_backend(spec::Value tree, const std::string& backend) {
  spec::Value programs = std::move(spec::field(tree, backend == "cpu" ? "cpuPrograms" : "gpuPrograms", "the run file"));
  spec::Value out = spec::Value::object();
  for (auto& [k, v] : tree.members()) {
    if (k != "cpuPrograms" && k != "gpuPrograms" && k != "backend") out.set(k, std::move(v));
  }
  out.set("backend", spec::Value::string(backend));
  out.set("programs", std::move(programs));
  return out;
}

bool bf16_programs(const spec::Value& tree) {
  const spec::Value* p = tree.find("gpuPrograms");
  return p != nullptr && p->is_object() && p->has("dtype") && p->find("dtype")->is_string() && p->find("dtype")->as_string() == "bf16";
}

void round_weights_to_bf16(spec::Value& tree) {
  for (auto& [name, w] : spec::object(tree, "weights", "spec").members()) {
    if (w.kind() != spec::Value::Kind::kF32) continue;
    for (float& x : w.f32_data()) x = cuda::round_to<cuda::bf16>(x);
  }
}

struct Outcome {
  std::vector<StepEvent> steps;
  std::vector<double> at;  // seconds from the start when each step was reported
  std::vector<SiteWeights> adapters, initial;
  std::vector<std::string> names;
  std::vector<StageTimes> stages;
  double seconds = 0, tokens = 0;
  std::string backend;
  LlamaConfig config;
  int64_t seq_len = 0;
};

Outcome train(spec::Value tree, bool quiet) {
  Outcome out;
  const spec::Placement placement = spec::read_placement(tree);
  TrainSpec spec = spec::read_train_spec(tree, placement);
  out.backend = placement.backend;
  out.config = spec.config;
  for (const AdapterSpec& a : spec.adapters) {
    out.names.push_back(a.name);
    out.initial.push_back(a.init);
    out.seq_len = std::max(out.seq_len, a.data.seq_len);
  }
  MakeStageEngines engines;
  if (placement.backend != "cpu") engines = cuda::cuda_stage_engines({placement.backend == "cuda-emulated", placement.devices});
  Trainer trainer(std::move(spec), engines);
  const auto started = std::chrono::steady_clock::now();
  trainer.run([&](const StepEvent& e) {
    out.steps.push_back(e);
    out.at.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    out.tokens += e.tokens;
    if (!quiet) std::printf("  %s  step %lld  loss %.4f  lr %.2e  grad norm %.3f\n", out.names[static_cast<size_t>(e.adapter)].c_str(), static_cast<long long>(e.step), e.loss, e.lr, e.grad_norm);
  });
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  for (size_t a = 0; a < trainer.adapter_count(); a++) out.adapters.push_back(trainer.adapter_weights(static_cast<int>(a)));
  out.stages = trainer.stage_times();
  return out;
}

// Base-model FLOPs per trained token: the GEMMs of every layer and the head forward (2 per
// weight) and backward (2 more: the input gradient; the frozen weights get none), and causal
// attention (about 2 * seq * hidden per layer forward, twice that backward). LoRA's own are
// left out: at rank 16 they are under 1% of the base's.
double flops_per_token(const LlamaConfig& c, int64_t seq) {
  double matrix = static_cast<double>(c.vocab) * static_cast<double>(c.hidden);
  for (int m = 0; m < kModules; m++) matrix += static_cast<double>(c.layers) * static_cast<double>(module_in(c, m)) * static_cast<double>(module_out(c, m));
  const double attention = 2.0 * static_cast<double>(seq) * static_cast<double>(c.heads * c.head_dim) * static_cast<double>(c.layers);
  return 4.0 * matrix + 3.0 * attention;
}

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += c;
  }
  return out + "\"";
}

void write_report(const std::string& path, const Outcome& o, const std::vector<std::pair<std::string, double>>& extra) {
  std::ostringstream j;
  j << "{\n  \"backend\": " << json_string(o.backend) << ",\n  \"seconds\": " << json_number(o.seconds) << ",\n  \"tokens\": " << json_number(o.tokens)
    << ",\n  \"tokensPerSecond\": " << json_number(o.tokens / o.seconds) << ",\n  \"flopsPerToken\": " << json_number(flops_per_token(o.config, o.seq_len)) << ",\n  \"steps\": [";
  for (size_t i = 0; i < o.steps.size(); i++) {
    const StepEvent& e = o.steps[i];
    j << (i ? "," : "") << "\n    {\"adapter\": " << json_string(o.names[static_cast<size_t>(e.adapter)]) << ", \"step\": " << e.step << ", \"loss\": " << json_number(e.loss)
      << ", \"lr\": " << json_number(e.lr) << ", \"gradNorm\": " << json_number(e.grad_norm) << ", \"tokens\": " << json_number(e.tokens) << ", \"at\": " << json_number(o.at[i]) << "}";
  }
  j << "\n  ],\n  \"stages\": [";
  for (size_t s = 0; s < o.stages.size(); s++) {
    const StageTimes& t = o.stages[s];
    j << (s ? "," : "") << "\n    {\"busySeconds\": " << json_number(t.busy_seconds) << ", \"waitSeconds\": " << json_number(t.wait_seconds) << ", \"weightBytes\": " << t.weight_bytes
      << ", \"adapterBytes\": " << t.adapter_bytes << ", \"activationBytes\": " << t.activation_bytes << "}";
  }
  j << "\n  ]";
  for (auto& [k, v] : extra) j << ",\n  " << json_string(k) << ": " << json_number(v);
  j << "\n}\n";
  const std::string tmp = path + ".partial";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << j.str();
    LF_CHECK(f.good(), tmp << ": cannot write the report");
  }
  LF_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, path << ": cannot write the report (" << std::strerror(errno) << ")");
}

// The worst relative loss error over every step, and the worst update error over adapters.
std::pair<double, double> compare(const Outcome& got, const Outcome& want) {
  double loss = 0, update = 0;
  LF_CHECK(got.steps.size() == want.steps.size(), got.steps.size() << " steps against the CPU's " << want.steps.size());
  std::map<std::pair<int, int64_t>, double> ref;
  for (const StepEvent& e : want.steps) ref[{e.adapter, e.step}] = e.loss;
  for (const StepEvent& e : got.steps) loss = std::max(loss, std::fabs(e.loss - ref.at({e.adapter, e.step})) / std::fabs(ref.at({e.adapter, e.step})));
  for (size_t a = 0; a < want.adapters.size(); a++) {
    double diff = 0, norm = 0;
    for (auto& [site, ab] : want.adapters[a]) {
      const auto& g = got.adapters[a].at(site);
      const auto& w0 = want.initial[a].at(site);
      for (int which = 0; which < 2; which++) {
        const auto& x = which ? ab.second : ab.first;
        const auto& y = which ? g.second : g.first;
        const auto& x0 = which ? w0.second : w0.first;
        for (size_t i = 0; i < x.size(); i++) diff += (double(y[i]) - x[i]) * (double(y[i]) - x[i]), norm += (double(x[i]) - x0[i]) * (double(x[i]) - x0[i]);
      }
    }
    update = std::max(update, std::sqrt(diff / std::max(norm, 1e-300)));
  }
  return {loss, update};
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  spec::Value tree;
  try {
    tree = load(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loraflow_engine_run: %s\n", e.what());
    return 2;
  }
  try {
    const std::string backend = !o.backend.empty() ? o.backend : tree.has("backend") ? spec::text(tree, "backend", "the run file") : "cpu";
    // A comparison trains the file twice; otherwise the tree moves into the one run.
    const spec::Value kept = o.compare ? tree : spec::Value();
    const Outcome run = train(for_backend(std::move(tree), backend), o.quiet);
    std::printf("%.0f tokens in %.2f s (%.0f tokens/s) on %s\n", run.tokens, run.seconds, run.tokens / run.seconds, run.backend.c_str());
    for (size_t s = 0; s < run.stages.size(); s++) std::printf("  stage %zu: busy %.2f s, waiting %.2f s\n", s, run.stages[s].busy_seconds, run.stages[s].wait_seconds);
    std::vector<std::pair<std::string, double>> extra;
    int status = 0;
    if (o.compare) {
      // The same model on both sides: a bf16 GPU run's base weights are the file's rounded to
      // bf16, so the CPU engine gets them rounded too, and what differs is the arithmetic.
      spec::Value reference = for_backend(kept, "cpu");
      if (backend != "cpu" && bf16_programs(kept)) round_weights_to_bf16(reference);
      const Outcome cpu = train(std::move(reference), true);
      const auto [loss, update] = compare(run, cpu);
      std::printf("against the CPU engine: loss error %.3g (bound %.3g), update error %.3g (bound %.3g)\n", loss, o.loss_bound, update, o.update_bound);
      extra = {{"lossError", loss}, {"updateError", update}, {"lossBound", o.loss_bound}, {"updateBound", o.update_bound}};
      if (!(loss <= o.loss_bound && update <= o.update_bound)) status = 1;
    }
    if (!o.report.empty()) write_report(o.report, run, extra);
    return status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "loraflow_engine_run: training failed: %s\n", e.what());
    return 1;
  }
}
