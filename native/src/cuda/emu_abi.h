// emu_abi.h: what an emulated stream looks like to the project's stand-in libraries (the fake
// cuBLASLt and the fake NCCL), which receive it where the real ones receive a cudaStream_t. They
// queue their work on it and the emulated device runs that work in stream order, as the GPU
// would run the real libraries' kernels. Plain C, because the fakes are loaded with dlopen.
#pragma once
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LF_EMU_STREAM_MAGIC 0x4c46454du /* "LFEM" */

typedef struct lf_emu_stream {
  uint32_t magic;
  void* self;
  /* Queues fn(arg) on the stream; fn owns arg. fn returns NULL, or what went wrong (the text
     must live until the next call from that thread); the stream then reports it. */
  void (*enqueue)(void* self, const char* (*fn)(void* arg), void* arg);
  /* 1 when [p, p + bytes) lies inside one allocation of the stream's device, else 0. */
  int (*in_device)(void* self, const void* p, size_t bytes);
} lf_emu_stream;

#ifdef __cplusplus
}
#endif
