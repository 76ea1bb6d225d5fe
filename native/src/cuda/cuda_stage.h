// cuda_stage.h: stages trained on GPUs, real or emulated: each stage's programs on the CUDA
// backend (cuda_backend.h) in the plan's dtype, in three device arenas of the planned sizes
// (base weights; adapter state, fp32: per site [A | B], [dA | dB] and the optimizer's moments;
// activations), its optimizer step and gradient norms as one launch each over the adapter's
// sites (kernels/optimizer.h), and its messages through DeviceLinks (device_links.h): a copy
// between stages that share a GPU, NCCL between GPUs.
#pragma once
#include <vector>

#include "train/stage_engine.h"

namespace loraflow::cuda {

struct CudaTrainOptions {
  bool emulated = false;              // EmuDevices (with the fake cuBLASLt and NCCL) instead of GPUs
  std::vector<int> device_of_stage;   // the GPU of each stage (empty: all on GPU 0)
};

MakeStageEngines cuda_stage_engines(CudaTrainOptions options);

}  // namespace loraflow::cuda
