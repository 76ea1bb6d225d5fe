#include "cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "cuda/kernels/attention.h"
#include "cuda/kernels/cross_entropy.h"
#include "cuda/kernels/elementwise.h"
#include "cuda/kernels/rmsnorm.h"
#include "cuda/lora_segments.h"
#include "model/ops.h"

namespace loraflow::cuda {

namespace {

using Call = KernelCall<std::byte>;

template <typename X>
X* as(std::byte* p) {
  return reinterpret_cast<X*>(p);
}
template <typename X>
const X* as(const std::byte* p) {
  return reinterpret_cast<const X*>(p);
}

CudaBackend& backend_of(loraflow::Stream* s) { return *s->backend; }

template <typename K>
void run(loraflow::Stream* s, const typename K::Params& p, const char* name) {
  CudaBackend& b = backend_of(s);
  launch<K>(b.device(), b.cuda_stream(), p, name);
}

template <typename T>
GemmType blas_type() {
  return sizeof(T) == 2 ? GemmType::kBF16 : GemmType::kF32;
}
template <typename T>
Storage storage() {
  return sizeof(T) == 2 ? Storage::kBF16 : Storage::kF32;
}

int64_t width(int64_t numel, int64_t T) { return T == 0 ? 0 : numel / T; }

template <typename T, Elementwise kOp>
void elementwise(const Call& c, loraflow::Stream* s) {
  const int64_t n = kOp == Elementwise::kZero ? c.numel_out[0] : c.numel_in[0];
  run<ElementwiseKernel<T, kOp>>(s, {as<T>(c.out[0]), kOp == Elementwise::kZero ? nullptr : as<T>(c.in[0]), kOp == Elementwise::kAdd ? as<T>(c.in[1]) : nullptr, n}, "elementwise");
}

template <typename T>
void embed(const Call& c, loraflow::Stream* s) {
  const LlamaConfig& k = *c.ctx->config;
  run<EmbeddingKernel<T>>(s, {as<T>(c.out[0]), as<T>(c.weight), c.ctx->tokens, c.ctx->T, k.hidden, k.vocab}, "embedding");
}

template <typename T>
void rmsnorm(const Call& c, loraflow::Stream* s) {
  const LlamaConfig& k = *c.ctx->config;
  run<RmsnormForward<T>>(s, {as<T>(c.out[0]), as<float>(c.out[1]), as<T>(c.in[0]), as<T>(c.weight), c.ctx->T, k.hidden, static_cast<float>(k.norm_eps)}, "rmsnorm");
}

template <typename T>
void rmsnorm_bwd(const Call& c, loraflow::Stream* s) {
  run<RmsnormBackward<T>>(s, {as<T>(c.out[0]), as<T>(c.in[0]), as<T>(c.in[1]), as<T>(c.weight), as<float>(c.in[2]), c.ctx->T, c.ctx->config->hidden}, "rmsnorm_bwd");
}

// y[T, out] = x[T, in] W^T; dx[T, in] += dy[T, out] W.
template <typename T>
void linear(const Call& c, loraflow::Stream* s) {
  GemmShape g;
  g.ta = false, g.tb = true, g.M = c.ctx->T, g.N = c.weight_rows, g.K = c.weight_cols, g.ab = blas_type<T>(), g.c = blas_type<T>();
  g.lda = c.weight_cols, g.ldb = c.weight_cols, g.ldc = c.weight_rows;
  backend_of(s).blas().gemm(backend_of(s).cuda_stream(), g, 1.0f, c.in[0], c.weight, 0.0f, c.out[0]);
}

template <typename T>
void linear_dx(const Call& c, loraflow::Stream* s) {
  GemmShape g;
  g.ta = false, g.tb = false, g.M = c.ctx->T, g.N = c.weight_cols, g.K = c.weight_rows, g.ab = blas_type<T>(), g.c = blas_type<T>();
  g.lda = c.weight_rows, g.ldb = c.weight_cols, g.ldc = c.weight_cols;
  backend_of(s).blas().gemm(backend_of(s).cuda_stream(), g, 1.0f, c.in[0], c.weight, 1.0f, c.out[0]);
}

constexpr int kMaxParts = 64;

// The op's parts as the LoRA launches take them: u_i from `u` (the op's outputs or inputs), G
// (backward) at each part's offset in scratch[0]. Returns the count.
int lora_parts(const Call& c, LoraPart* parts, std::byte* const* u, float* G) {
  LF_CHECK(c.op->parts.size() <= kMaxParts, "a LoRA op over " << c.op->parts.size() << " parts (at most " << kMaxParts << ")");
  int64_t g = 0;
  for (size_t i = 0; i < c.op->parts.size(); i++) {
    const AdapterRows& rows = c.ctx->parts[c.op->parts[i]];
    const LoraBinding<std::byte>& b = c.lora[i];
    LoraPart& p = parts[i];
    p.row0 = rows.row0, p.rows = rows.rows, p.rank = b.site.rank;
    p.A = as<float>(b.A), p.B = as<float>(b.B), p.dA = as<float>(b.dA), p.dB = as<float>(b.dB), p.u = as<float>(u[i]);
    p.scale = static_cast<float>(b.site.scale), p.dropout = b.site.dropout, p.module_key = b.site.module_key, p.row_keys = c.ctx->row_keys;
    if (G) p.G = G + g;
    g += rows.rows * b.site.rank;
  }
  return static_cast<int>(c.op->parts.size());
}

template <typename T>
void lora_shrink(const Call& c, loraflow::Stream* s) {
  LoraPart parts[kMaxParts];
  const int n = lora_parts(c, parts, c.out, nullptr);
  const LoraSiteRows site{c.lora[0].site.in, c.lora[0].site.out, storage<T>(), c.in[0], nullptr, nullptr, nullptr};
  lora_shrink_launches(site, parts, n, [&](const SegmentedGemm::Params& p) { run<SegmentedGemm>(s, p, "lora_shrink"); });
}

template <typename T>
void lora_expand(const Call& c, loraflow::Stream* s) {
  LoraPart parts[kMaxParts];
  const int n = lora_parts(c, parts, c.in + 1, nullptr);
  const LoraSiteRows site{c.lora[0].site.in, c.lora[0].site.out, storage<T>(), nullptr, c.out[0], nullptr, nullptr};
  lora_expand_launches(site, parts, n, [&](const SegmentedGemm::Params& p) { run<SegmentedGemm>(s, p, "lora_expand"); });
}

// in: dy, x, u per part (, dx); out: (dx); scratch: G (, the masked input, dh: unused here,
// where the mask is applied as the operands are read).
template <typename T>
void lora_bwd(const Call& c, loraflow::Stream* s) {
  LoraPart parts[kMaxParts];
  const int n = lora_parts(c, parts, c.in + 2, as<float>(c.scratch[0]));
  const LoraSiteRows site{c.lora[0].site.in, c.lora[0].site.out, storage<T>(), c.in[1], nullptr, c.in[0], c.op->out.empty() ? nullptr : c.out[0]};
  auto go = [&](const SegmentedGemm::Params& p) { run<SegmentedGemm>(s, p, "lora_bwd"); };
  lora_backward_first_launches(site, parts, n, go);
  lora_backward_second_launches(site, parts, n, go);
}

template <typename T, bool kInverse>
void rope(const Call& c, loraflow::Stream* s) {
  const LlamaConfig& k = *c.ctx->config;
  run<RopeKernel<T>>(s, {as<T>(c.out[0]), c.ctx->pos, c.ctx->inv_freq, c.ctx->T, width(c.numel_in[0], c.ctx->T) / k.head_dim, k.head_dim, kInverse}, "rope");
}

AttentionShape attention_shape(const Call& c, loraflow::Stream* s) {
  const LlamaConfig& k = *c.ctx->config;
  AttentionShape a;
  a.T = c.ctx->T, a.H = k.heads, a.KV = k.kv_heads, a.hd = k.head_dim;
  a.longest = backend_of(s).longest_example();
  a.seg_start = c.ctx->seg_start;
  a.seg_end = backend_of(s).seg_end();
  return a;
}

template <typename T>
void attention(const Call& c, loraflow::Stream* s) {
  run<AttentionForward<T>>(s, {as<T>(c.out[0]), as<float>(c.out[1]), as<T>(c.in[0]), as<T>(c.in[1]), as<T>(c.in[2]), attention_shape(c, s)}, "attention");
}

// in: dout, out, lse, q, k, v, dq, dk, dv; out: dq, dk, dv; scratch: P, dP (unused), D.
template <typename T>
void attention_bwd(const Call& c, loraflow::Stream* s) {
  const AttentionShape a = attention_shape(c, s);
  float* D = as<float>(c.scratch[2]);
  const T *dout = as<T>(c.in[0]), *out = as<T>(c.in[1]), *q = as<T>(c.in[3]), *k = as<T>(c.in[4]), *v = as<T>(c.in[5]);
  const float* lse = as<float>(c.in[2]);
  run<AttentionRowDot<T>>(s, {D, dout, out, a}, "attention_rowdot");
  run<AttentionBackwardQuery<T>>(s, {as<T>(c.out[0]), dout, q, k, v, lse, D, a}, "attention_bwd_q");
  run<AttentionBackwardKeyValue<T>>(s, {as<T>(c.out[1]), as<T>(c.out[2]), dout, q, k, v, lse, D, a}, "attention_bwd_kv");
}

template <typename T>
void swiglu(const Call& c, loraflow::Stream* s) {
  run<SwigluForward<T>>(s, {as<T>(c.out[0]), as<T>(c.in[0]), as<T>(c.in[1]), c.numel_in[0]}, "swiglu");
}

template <typename T>
void swiglu_bwd(const Call& c, loraflow::Stream* s) {
  run<SwigluBackward<T>>(s, {as<T>(c.out[0]), as<T>(c.out[1]), as<T>(c.in[0]), as<T>(c.in[1]), as<T>(c.in[2]), c.numel_in[0]}, "swiglu_bwd");
}

// The head, `chunk` rows at a time: logits in fp32 by cuBLASLt, the loss and its gradient by
// row (into the second scratch below fp32, over the logits in fp32), then dn = dlogits W.
template <typename T>
void head_loss(const Call& c, loraflow::Stream* s) {
  CudaBackend& b = backend_of(s);
  const int64_t T_ = c.ctx->T, C = c.ctx->config->hidden, V = c.ctx->config->vocab, chunk = c.op->chunk;
  float* logits = as<float>(c.scratch[0]);
  T* dl = sizeof(T) == 4 ? reinterpret_cast<T*>(logits) : as<T>(c.scratch[1]);
  LF_CHECK(sizeof(T) == 4 || c.op->scratch.size() == 2, "head_loss below fp32 needs a buffer for the logits' gradient");
  for (int64_t r0 = 0; r0 < T_; r0 += chunk) {
    const int64_t rows = std::min(T_, r0 + chunk) - r0;
    GemmShape g;
    g.ta = false, g.tb = true, g.M = rows, g.N = V, g.K = C, g.ab = blas_type<T>(), g.c = GemmType::kF32, g.lda = C, g.ldb = C, g.ldc = V;
    b.blas().gemm(b.cuda_stream(), g, 1.0f, as<T>(c.in[0]) + r0 * C, c.weight, 0.0f, logits);
    run<CrossEntropyKernel<T>>(s, {logits, dl, c.ctx->targets + r0, b.row_scale() + r0, b.row_losses() + r0, rows, V}, "cross_entropy");
    GemmShape d;
    d.ta = false, d.tb = false, d.M = rows, d.N = C, d.K = V, d.ab = blas_type<T>(), d.c = blas_type<T>(), d.lda = V, d.ldb = C, d.ldc = C;
    b.blas().gemm(b.cuda_stream(), d, 1.0f, dl, c.weight, 0.0f, as<T>(c.out[0]) + r0 * C);
  }
  b.head_ran();
}

template <typename T>
KernelTable<std::byte> kernel_table() {
  KernelTable<std::byte> t{};
  auto set = [&](OpCode op, Kernel<std::byte> k) { t[static_cast<size_t>(op)] = k; };
  set(OpCode::kEmbed, embed<T>);
  set(OpCode::kCopy, elementwise<T, Elementwise::kCopy>);
  set(OpCode::kAccumulate, elementwise<T, Elementwise::kAccumulate>);
  set(OpCode::kZero, elementwise<T, Elementwise::kZero>);
  set(OpCode::kRmsnorm, rmsnorm<T>);
  set(OpCode::kRmsnormBwd, rmsnorm_bwd<T>);
  set(OpCode::kLinear, linear<T>);
  set(OpCode::kLinearDx, linear_dx<T>);
  set(OpCode::kLoraShrink, lora_shrink<T>);
  set(OpCode::kLoraExpand, lora_expand<T>);
  set(OpCode::kLoraBwd, lora_bwd<T>);
  set(OpCode::kRope, rope<T, false>);
  set(OpCode::kRopeInv, rope<T, true>);
  set(OpCode::kAttention, attention<T>);
  set(OpCode::kAttentionBwd, attention_bwd<T>);
  set(OpCode::kSwiglu, swiglu<T>);
  set(OpCode::kSwigluBwd, swiglu_bwd<T>);
  set(OpCode::kAdd, elementwise<T, Elementwise::kAdd>);
  set(OpCode::kHeadLoss, head_loss<T>);
  for (auto k : t) LF_CHECK(k != nullptr, "the CUDA backend lacks a kernel");
  return t;
}

}  // namespace

CudaBackend::CudaBackend(Device& device, const LlamaConfig& config, loraflow::DType activations, int64_t max_rows)
    : device_(device), config_(config), activations_(activations), max_rows_(std::max<int64_t>(max_rows, 1)), name_("cuda (" + device.describe() + ")") {
  LF_CHECK(config.head_dim <= kAttentionThreads, "the CUDA backend's attention takes head_dim up to " << kAttentionThreads << ", not " << config.head_dim);
  stream_ = device_.create_stream();
  blas_ = std::make_unique<Blas>(device_);
  handle_.backend = this;
  table_ = activations == loraflow::DType::kBF16 ? kernel_table<bf16>() : kernel_table<float>();
  // One allocation for the row tables: five of int32, the row keys, the scales, the losses,
  // inv_freq; each 256-byte aligned.
  const int64_t R = max_rows_;
  auto round_up = [](int64_t n) { return (n + 255) / 256 * 256; };
  const int64_t i32 = round_up(R * 4), u64 = round_up(R * 8), f32 = round_up(R * 4), freq = round_up(config.head_dim / 2 * 4);
  const int64_t staged = 5 * i32 + u64 + f32;  // what bind_rows uploads, in this order
  rows_ = device_.allocate(static_cast<size_t>(staged + f32 + freq));
  auto* base = static_cast<unsigned char*>(rows_);
  tokens_ = reinterpret_cast<int32_t*>(base);
  targets_ = reinterpret_cast<int32_t*>(base + i32);
  seg_start_ = reinterpret_cast<int32_t*>(base + 2 * i32);
  seg_end_ = reinterpret_cast<int32_t*>(base + 3 * i32);
  pos_ = reinterpret_cast<int32_t*>(base + 4 * i32);
  row_keys_ = reinterpret_cast<uint64_t*>(base + 5 * i32);
  row_scale_ = reinterpret_cast<float*>(base + 5 * i32 + u64);
  row_loss_ = reinterpret_cast<float*>(base + staged);
  inv_freq_ = reinterpret_cast<float*>(base + staged + f32);
  staging_.assign(static_cast<size_t>(staged), 0);
  losses_.assign(static_cast<size_t>(R), 0.0f);
  const std::vector<float> inv_freq = ops::rope_inv_freq(config);
  device_.copy(inv_freq_, inv_freq.data(), inv_freq.size() * sizeof(float), *stream_);
  device_.synchronize(*stream_);
}

CudaBackend::~CudaBackend() {
  try {
    device_.synchronize(*stream_);
    device_.release(rows_);
  } catch (...) {
  }
}

std::byte* CudaBackend::allocate(int64_t n) {
  auto* p = static_cast<std::byte*>(device_.allocate(static_cast<size_t>(std::max<int64_t>(n, 1))));
  device_.fill(p, 0, static_cast<size_t>(std::max<int64_t>(n, 1)), *stream_);
  device_.synchronize(*stream_);
  return p;
}

void CudaBackend::release(std::byte* p) { device_.release(p); }

void CudaBackend::upload(std::byte* dst, const std::byte* src, int64_t n, loraflow::Stream*) { device_.copy(dst, src, static_cast<size_t>(n), *stream_); }

void CudaBackend::download(std::byte* dst, const std::byte* src, int64_t n, loraflow::Stream*) { device_.copy(dst, src, static_cast<size_t>(n), *stream_); }

void CudaBackend::synchronize(loraflow::Stream*) { device_.synchronize(*stream_); }

const KernelContext<std::byte>& CudaBackend::bind_rows(const KernelContext<std::byte>& host) {
  const int64_t T = host.T;
  LF_CHECK(T <= max_rows_, name_ << ": a micro-batch of " << T << " rows, the row tables hold " << max_rows_);
  // The staging buffer is rewritten only once the stream has read what it held before.
  device_.synchronize(*stream_);
  // A table's place in the staging buffer is its place in the device allocation.
  auto staged = [&](const void* on_device) { return staging_.data() + (static_cast<const unsigned char*>(on_device) - static_cast<const unsigned char*>(rows_)); };
  std::memcpy(staged(tokens_), host.tokens, static_cast<size_t>(T) * 4);
  std::memcpy(staged(targets_), host.targets, static_cast<size_t>(T) * 4);
  std::memcpy(staged(seg_start_), host.seg_start, static_cast<size_t>(T) * 4);
  std::memcpy(staged(pos_), host.pos, static_cast<size_t>(T) * 4);
  std::memcpy(staged(row_keys_), host.row_keys, static_cast<size_t>(T) * 8);
  // Each row's example end, the longest example, and each row's loss scale (its part's).
  auto* ends = reinterpret_cast<int32_t*>(staged(seg_end_));
  longest_ = 0;
  for (int64_t t = T; t-- > 0;) {
    ends[t] = t + 1 == T || host.seg_start[t + 1] != host.seg_start[t] ? static_cast<int32_t>(t + 1) : ends[t + 1];
    longest_ = std::max<int64_t>(longest_, ends[t] - host.seg_start[t]);
  }
  auto* scale = reinterpret_cast<float*>(staged(row_scale_));
  for (size_t p = 0; p < host.part_count; p++) {
    const AdapterRows& part = host.parts[p];
    for (int64_t t = part.row0; t < part.row0 + part.rows; t++) scale[t] = static_cast<float>(part.grad_scale);
  }
  device_.copy(rows_, staging_.data(), staging_.size(), *stream_);
  bound_ = host;
  bound_.tokens = tokens_;
  bound_.targets = targets_;
  bound_.seg_start = seg_start_;
  bound_.pos = pos_;
  bound_.row_keys = row_keys_;
  bound_.inv_freq = inv_freq_;
  head_ran_ = false;
  return bound_;
}

void CudaBackend::finish(const KernelContext<std::byte>&, const KernelContext<std::byte>& host) {
  if (!head_ran_) return;
  device_.copy(losses_.data(), row_loss_, static_cast<size_t>(host.T) * sizeof(float), *stream_);
  device_.synchronize(*stream_);
  // In row order, in double, as the CPU's head adds them.
  for (size_t p = 0; p < host.part_count; p++) {
    const AdapterRows& part = host.parts[p];
    double sum = 0;
    for (int64_t t = part.row0; t < part.row0 + part.rows; t++) sum += static_cast<double>(losses_[static_cast<size_t>(t)]);
    host.part_losses[p] = sum * part.grad_scale;
  }
}

void CudaBackend::check(const ProgramSpec& p, const std::string& where) const {
  LF_CHECK(p.unit_bytes == 1, where << ": the CUDA backend reads programs in bytes");
  LF_CHECK(p.activations == activations_, where << ": programs in " << dtype_name(p.activations) << ", the backend runs " << dtype_name(activations_));
  auto type = [&](int id) { return p.tensors[static_cast<size_t>(id)].dtype; };
  for (const auto* list : {&p.forward, &p.backward}) {
    for (size_t k = 0; k < list->size(); k++) {
      const OpSpec& op = (*list)[k];
      const std::string w = where + (list == &p.forward ? " forward" : " backward") + " op " + std::to_string(k) + " (" + kOpNames[static_cast<int>(op.code)] + ")";
      // Operands in fp32 whatever the plan's dtype: statistics, LoRA intermediates, the logits.
      auto f32 = [&](const std::vector<int>& ids, std::initializer_list<size_t> which) {
        for (size_t i : which) if (i < ids.size()) LF_CHECK(type(ids[i]) == loraflow::DType::kF32, w << ": operand " << i << " must be f32");
      };
      auto rest_act = [&](const std::vector<int>& ids, std::initializer_list<size_t> skip) {
        for (size_t i = 0; i < ids.size(); i++) {
          if (std::find(skip.begin(), skip.end(), i) != skip.end()) continue;
          LF_CHECK(type(ids[i]) == activations_, w << ": operand " << i << " must be " << dtype_name(activations_));
        }
      };
      switch (op.code) {
        case OpCode::kRmsnorm: rest_act(op.in, {}); rest_act(op.out, {1}); f32(op.out, {1}); break;
        case OpCode::kRmsnormBwd: rest_act(op.in, {2}); f32(op.in, {2}); rest_act(op.out, {}); break;
        case OpCode::kAttention: rest_act(op.in, {}); rest_act(op.out, {1}); f32(op.out, {1}); for (int id : op.scratch) LF_CHECK(type(id) == loraflow::DType::kF32, w << ": scratch must be f32"); break;
        case OpCode::kAttentionBwd: rest_act(op.in, {2}); f32(op.in, {2}); rest_act(op.out, {}); f32(op.scratch, {2}); break;
        case OpCode::kLoraShrink: rest_act(op.in, {}); for (int id : op.out) LF_CHECK(type(id) == loraflow::DType::kF32, w << ": u must be f32"); break;
        case OpCode::kLoraExpand: LF_CHECK(type(op.in[0]) == activations_ && type(op.out[0]) == activations_, w << ": y must be " << dtype_name(activations_));
          for (size_t i = 1; i < op.in.size(); i++) LF_CHECK(type(op.in[i]) == loraflow::DType::kF32, w << ": u must be f32");
          break;
        case OpCode::kLoraBwd: {
          const size_t parts = op.parts.size();
          LF_CHECK(type(op.in[0]) == activations_ && type(op.in[1]) == activations_, w << ": dy and x must be " << dtype_name(activations_));
          for (size_t i = 0; i < parts; i++) LF_CHECK(type(op.in[2 + i]) == loraflow::DType::kF32, w << ": u must be f32");
          for (size_t i = 2 + parts; i < op.in.size(); i++) LF_CHECK(type(op.in[i]) == activations_, w << ": dx must be " << dtype_name(activations_));
          f32(op.scratch, {0});
          break;
        }
        case OpCode::kHeadLoss: rest_act(op.in, {}); rest_act(op.out, {}); f32(op.scratch, {0}); if (op.scratch.size() > 1) LF_CHECK(type(op.scratch[1]) == activations_, w << ": the logits' gradient must be " << dtype_name(activations_)); break;
        default: rest_act(op.in, {}); rest_act(op.out, {}); break;
      }
    }
  }
}

}  // namespace loraflow::cuda
