#include "cuda/libs/comm.h"

#include "core/check.h"

namespace loraflow::cuda {

LibrarySpec nccl_spec() {
  LibrarySpec s;
  s.name = "NCCL";
  s.variable = "LORAFLOW_NCCL";
  s.files = {"libnccl.so.2", "libnccl.so"};
  s.wheels = {"nvidia/nccl/lib", "nvidia/cu13/lib"};
#define LF_NAME(type, fn) s.symbols.push_back(#fn);
  LF_NCCL_SYMBOLS(LF_NAME)
#undef LF_NAME
  return s;
}

namespace {

int nccl_type(CommType t) {
  switch (t) {
    case CommType::kBF16: return nccl::kBfloat16;
    case CommType::kF32: return nccl::kFloat32;
    case CommType::kF64: return nccl::kFloat64;
    case CommType::kI32: return nccl::kInt32;
  }
  return nccl::kFloat32;
}

}  // namespace

Nccl::Nccl() : lib_(open_library(nccl_spec())) {
#define LF_RESOLVE(type, fn) fn = reinterpret_cast<nccl::type>(lib_.symbol(#fn));
  LF_NCCL_SYMBOLS(LF_RESOLVE)
#undef LF_RESOLVE
  check(ncclGetVersion(&version_), "ncclGetVersion");
}

void Nccl::check(nccl::Result r, const char* call) const {
  LF_CHECK(r == nccl::kSuccess, "NCCL (" << lib_.path() << "): " << call << " failed: " << ncclGetErrorString(r));
}

nccl::UniqueId Nccl::unique_id() const {
  nccl::UniqueId id{};
  check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  return id;
}

Comm::Comm(const Nccl& nccl, int ranks, const nccl::UniqueId& id, int rank, Device& device) : nccl_(nccl), device_(device), rank_(rank) {
  device_.make_current();
  nccl::Comm c = nullptr;
  nccl_.check(nccl_.ncclCommInitRank(&c, ranks, id, rank), "ncclCommInitRank");
  comm_ = c;
}

Comm::~Comm() {
  if (nccl::Comm c = comm_.exchange(nullptr)) nccl_.ncclCommDestroy(c);
}

void Comm::send(Stream& s, const void* buf, size_t count, CommType type, int peer) {
  nccl_.check(nccl_.ncclSend(buf, count, nccl_type(type), peer, comm_, device_.native(s)), "ncclSend");
}

void Comm::recv(Stream& s, void* buf, size_t count, CommType type, int peer) {
  nccl_.check(nccl_.ncclRecv(buf, count, nccl_type(type), peer, comm_, device_.native(s)), "ncclRecv");
}

void Comm::all_reduce_sum(Stream& s, const void* send, void* recv, size_t count, CommType type) {
  nccl_.check(nccl_.ncclAllReduce(send, recv, count, nccl_type(type), nccl::kSum, comm_, device_.native(s)), "ncclAllReduce");
}

void Comm::abort() {
  if (nccl::Comm c = comm_.exchange(nullptr)) nccl_.ncclCommAbort(c);
}

void Comm::group_start() { nccl_.check(nccl_.ncclGroupStart(), "ncclGroupStart"); }
void Comm::group_end() { nccl_.check(nccl_.ncclGroupEnd(), "ncclGroupEnd"); }

}  // namespace loraflow::cuda
