// host_device.h: LF_HD marks a function that runs on the host and, under nvcc, on the device too
// (the dropout hash, the kernels' phase functions), so both compute the same bits.
#pragma once

#if defined(__CUDACC__)
#define LF_HD __host__ __device__
#else
#define LF_HD
#endif
