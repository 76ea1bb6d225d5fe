// random_weights.cc: see random_weights.h.
#include "spec/random_weights.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <thread>
#include <utility>

namespace loraflow::spec {
namespace {

uint32_t splitmix32_first(uint32_t seed) {
  uint32_t z = seed + 0x9e3779b9u;
  z = (z ^ (z >> 16)) * 0x85ebca6bu;
  z = (z ^ (z >> 13)) * 0xc2b2ae35u;
  return z ^ (z >> 16);
}

// runtime/random.ts's randomFor(seed, ...parts).
class Random {
 public:
  Random(uint32_t seed, std::initializer_list<uint32_t> parts) {
    uint32_t mixed = splitmix32_first(seed);
    for (uint32_t part : parts) mixed = splitmix32_first(mixed ^ part);
    uint32_t a = mixed;
    auto next = [&a] {
      a += 0x9e3779b9u;
      uint32_t z = a;
      z = (z ^ (z >> 16)) * 0x85ebca6bu;
      z = (z ^ (z >> 13)) * 0xc2b2ae35u;
      return z ^ (z >> 16);
    };
    s0_ = next(), s1_ = next(), s2_ = next(), s3_ = next();
    if ((s0_ | s1_ | s2_ | s3_) == 0) s0_ = 1;
  }
  double next() {
    const uint32_t m = s1_ * 5u;
    const uint32_t result = ((m << 7) | (m >> 25)) * 9u;
    const uint32_t t = s1_ << 9;
    s2_ ^= s0_;
    s3_ ^= s1_;
    s1_ ^= s2_;
    s0_ ^= s3_;
    s2_ ^= t;
    s3_ = (s3_ << 11) | (s3_ >> 21);
    return static_cast<double>(result) / 4294967296.0;
  }

 private:
  uint32_t s0_, s1_, s2_, s3_;
};

}  // namespace

std::map<std::string, std::vector<float>> random_base_weights(const LlamaConfig& c, uint32_t seed) {
  // runtime's weightShapes order: each tensor's index is its stream's part.
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  shapes.push_back({"model.embed_tokens.weight", {c.vocab, c.hidden}});
  for (int64_t l = 0; l < c.layers; l++) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    shapes.push_back({p + "input_layernorm.weight", {c.hidden}});
    shapes.push_back({p + "post_attention_layernorm.weight", {c.hidden}});
    for (int m = 0; m < kModules; m++) shapes.push_back({p + kModuleParents[m] + "." + kModuleNames[m] + ".weight", {module_out(c, m), module_in(c, m)}});
  }
  shapes.push_back({"model.norm.weight", {c.hidden}});
  if (!c.tie_embeddings) shapes.push_back({"lm_head.weight", {c.vocab, c.hidden}});
  // Each tensor has a stream of its own: threads draw them side by side (a 7B model's 6.7
  // billion values take a minute on one core).
  std::vector<std::vector<float>> drawn(shapes.size());
  std::atomic<size_t> next{0};
  auto draw = [&] {
    for (size_t index; (index = next++) < shapes.size();) {
    const auto& shape = shapes[index].second;
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float>& data = drawn[index];
    data.assign(static_cast<size_t>(n), 1.0f);
    if (shape.size() > 1) {
      Random r(seed, {static_cast<uint32_t>(index)});
      for (int64_t i = 0; i < n; i += 2) {
        const double u = 1 - r.next();
        const double v = r.next();
        const double radius = 0.02 * std::sqrt(-2 * std::log(u));
        data[static_cast<size_t>(i)] = static_cast<float>(radius * std::cos(2 * M_PI * v));
        if (i + 1 < n) data[static_cast<size_t>(i + 1)] = static_cast<float>(radius * std::sin(2 * M_PI * v));
      }
    }
    }
  };
  const unsigned threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; t++) pool.emplace_back(draw);
  draw();
  for (auto& t : pool) t.join();
  std::map<std::string, std::vector<float>> out;
  for (size_t index = 0; index < shapes.size(); index++) out[shapes[index].first] = std::move(drawn[index]);
  return out;
}

SiteWeights random_lora_init(const LlamaConfig& c, int64_t rank, uint32_t seed, const std::vector<int>& modules) {
  SiteWeights out;
  for (int64_t l = 0; l < c.layers; l++) {
    for (int m : modules) {
      const int64_t in = module_in(c, m), out_features = module_out(c, m);
      Random r(seed, {0x10a, static_cast<uint32_t>(l), static_cast<uint32_t>(m)});
      const double bound = 1 / std::sqrt(static_cast<double>(in));
      std::vector<float> A(static_cast<size_t>(rank * in));
      for (float& x : A) x = static_cast<float>((2 * r.next() - 1) * bound);
      out[{l, m}] = {std::move(A), std::vector<float>(static_cast<size_t>(out_features * rank), 0.0f)};
    }
  }
  return out;
}

}  // namespace loraflow::spec
