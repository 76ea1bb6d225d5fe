// run_file.h: a run file, what `loraflow run --engine-run FILE` writes for the standalone
// driver (native/driver/): everything the engine is given to train, in one file.
//   bytes 0-7    "LFRUN001"
//   bytes 8-15   H, the header's length, little-endian
//   bytes 16..   the header: the training spec as JSON, each typed array of it replaced by
//                {"$array": "f32" | "f64" | "i32" | "u64", "offset": BYTES, "length": N}
//   then         the arrays, from the first multiple of 64 after the header, each at its offset
//                from there, aligned to its element size, little-endian
// Reading checks every part of that against the file (a truncated or hand-edited file is
// refused, naming the byte), and reads each array straight into its vector.
#pragma once
#include <string>

#include "spec/value.h"

namespace loraflow::spec {

constexpr char kRunFileMagic[9] = "LFRUN001";

Value read_run_file(const std::string& path);

}  // namespace loraflow::spec
