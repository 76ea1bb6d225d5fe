// cuda_device.h: the GPUs of this machine, through cudart (linked statically, so the engine
// loads on a machine without a driver and says so when asked for a GPU).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "cuda/device.h"

namespace loraflow::cuda {

struct CudaProbe {
  std::vector<std::string> devices;  // Device::describe() of each
  std::string problem;               // why there are none: no driver, no device, no CUDA in this build
};

// What GPUs there are; never throws.
CudaProbe probe_cuda();

// GPU `ordinal`; throws EngineError saying why when there is none.
std::unique_ptr<Device> open_cuda_device(int ordinal);

}  // namespace loraflow::cuda
