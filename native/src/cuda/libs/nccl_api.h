// nccl_api.h: the part of NCCL's C API the engine calls, declared from NVIDIA's documentation
// (no NCCL headers exist on the machines that build this) and loaded with dlopen (library.h).
// ncclUniqueId is 128 bytes passed by value; bench/gpu/check.sh compares these declarations
// with the real nccl.h where the wheel ships it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace loraflow::cuda::nccl {

using Comm = struct OpaqueComm*;
using Result = int;  // ncclResult_t

constexpr Result kSuccess = 0;
constexpr Result kUnhandledCudaError = 1;
constexpr Result kSystemError = 2;
constexpr Result kInternalError = 3;
constexpr Result kInvalidArgument = 4;
constexpr Result kInvalidUsage = 5;

// ncclDataType_t
constexpr int kInt32 = 2;
constexpr int kFloat32 = 7;
constexpr int kFloat64 = 8;
constexpr int kBfloat16 = 9;
// ncclRedOp_t
constexpr int kSum = 0;

struct UniqueId {
  char internal[128];
};
static_assert(sizeof(UniqueId) == 128, "ncclUniqueId is 128 bytes");

using GetVersion = Result (*)(int* version);
using GetUniqueId = Result (*)(UniqueId* id);
using CommInitRank = Result (*)(Comm* comm, int nranks, UniqueId id, int rank);
using CommDestroy = Result (*)(Comm comm);
using CommAbort = Result (*)(Comm comm);
using GetErrorString = const char* (*)(Result result);
using Send = Result (*)(const void* buf, size_t count, int type, int peer, Comm comm, void* stream);
using Recv = Result (*)(void* buf, size_t count, int type, int peer, Comm comm, void* stream);
using AllReduce = Result (*)(const void* send, void* recv, size_t count, int type, int op, Comm comm, void* stream);
using GroupStart = Result (*)();
using GroupEnd = Result (*)();

#define LF_NCCL_SYMBOLS(X)               \
  X(GetVersion, ncclGetVersion)          \
  X(GetUniqueId, ncclGetUniqueId)        \
  X(CommInitRank, ncclCommInitRank)      \
  X(CommDestroy, ncclCommDestroy)        \
  X(CommAbort, ncclCommAbort)            \
  X(GetErrorString, ncclGetErrorString)  \
  X(Send, ncclSend)                      \
  X(Recv, ncclRecv)                      \
  X(AllReduce, ncclAllReduce)            \
  X(GroupStart, ncclGroupStart)          \
  X(GroupEnd, ncclGroupEnd)

}  // namespace loraflow::cuda::nccl
