// arena.h: one allocation per stage and category (weights, adapter state), carved up in order.
// Sized up front from the shapes the stage holds, so a stage either gets all its memory at
// start or fails before training, and reports what it holds.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "core/check.h"

namespace loraflow {

class Arena {
 public:
  Arena(std::string name, int64_t floats) : name_(std::move(name)), capacity_(floats) {
    data_.reset(new float[static_cast<size_t>(floats > 0 ? floats : 1)]());
  }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // n floats, zeroed.
  float* take(int64_t n) {
    LF_CHECK(used_ + n <= capacity_, "arena " << name_ << ": " << n << " floats more than its " << capacity_ << " (" << used_ << " used)");
    float* p = data_.get() + used_;
    used_ += n;
    return p;
  }

  int64_t bytes() const { return capacity_ * static_cast<int64_t>(sizeof(float)); }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  int64_t capacity_, used_ = 0;
  std::unique_ptr<float[]> data_;
};

}  // namespace loraflow
