// bf16.h: the engine's bfloat16 storage type, the same 16 bits on the device and in the CPU
// harness (which builds without the CUDA toolkit). Conversions round to nearest even, as
// __float2bfloat16_rn and PyTorch do; on the device they are the hardware's instructions.
#pragma once
#include <cstdint>
#include <cstring>

#include "cuda/phase.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#endif

namespace loraflow::cuda {

struct bf16 {
  uint16_t bits;
};

LF_HD inline float to_float(float x) { return x; }

LF_HD inline float to_float(bf16 x) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(static_cast<unsigned>(x.bits) << 16);
#else
  const uint32_t u = static_cast<uint32_t>(x.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

template <typename T>
LF_HD inline T from_float(float x);

template <>
LF_HD inline float from_float<float>(float x) {
  return x;
}

template <>
LF_HD inline bf16 from_float<bf16>(float x) {
#if defined(__CUDA_ARCH__)
  bf16 r;
  r.bits = __bfloat16_as_ushort(__float2bfloat16_rn(x));
  return r;
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  bf16 r;
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) {
    r.bits = 0x7fff;  // NaN, as the device writes it
  } else {
    r.bits = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  return r;
#endif
}

// x rounded to T's precision and back: what storing x as T and loading it again gives. PyTorch
// rounds every bf16 op's result; kernels that follow Hugging Face's numerics round where it does.
template <typename T>
LF_HD inline float round_to(float x) {
  return to_float(from_float<T>(x));
}

}  // namespace loraflow::cuda
