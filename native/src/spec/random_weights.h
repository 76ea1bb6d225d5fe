// random_weights.h: weights a run file names by their seed instead of holding, drawn as the
// runtime draws them, so that a 7B-shaped benchmark's file stays small: the base weights of a
// model declared inline (runtime/weights/base-weights.ts: Hugging Face's Llama initialisation,
// normal(0, 0.02) matrices by Box-Muller over runtime/random.ts's xoshiro128** stream, norms of
// ones) and fresh adapters (runtime/weights/lora.ts). The same streams and the same double
// arithmetic rounded to fp32; the C library's log, cos and sin may differ from Node's in a last
// bit, which the rounding to fp32 almost always hides.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/llama_config.h"
#include "train/stage_engine.h"

namespace loraflow::spec {

// Every base tensor by Hugging Face name.
std::map<std::string, std::vector<float>> random_base_weights(const LlamaConfig& c, uint32_t seed);

// A fresh adapter as runtime/weights/lora.ts's initLora draws it (PEFT's: A Kaiming-uniform,
// uniform in +-1/sqrt(in), B zero), at every layer of each module (model/llama_config.h's
// numbering): pure arithmetic on the stream, so the same bits as Node's.
SiteWeights random_lora_init(const LlamaConfig& c, int64_t rank, uint32_t seed, const std::vector<int>& modules);

}  // namespace loraflow::spec
