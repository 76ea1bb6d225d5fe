// cuda_device_none.cc: cuda_device.h in a build made without nvcc.
#include "core/check.h"
#include "cuda/cuda_device.h"

namespace loraflow::cuda {

CudaProbe probe_cuda() {
  CudaProbe probe;
  probe.problem = "this build of loraflow has no CUDA backend (nvcc was not found when it was built)";
  return probe;
}

std::unique_ptr<Device> open_cuda_device(int) {
  LF_CHECK(false, "no GPU: " << probe_cuda().problem);
  return nullptr;
}

}  // namespace loraflow::cuda
