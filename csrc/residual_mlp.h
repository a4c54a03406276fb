// The fused residual-MLP conditioner of a flow's coupling (csrc/residual_mlp.cpp), for module.cpp's bindings.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace genad::autograd {

// The conditioner's output with one C++ autograd node (its backward hand-written): training, gradients on.
at::Tensor residual_mlp_train(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params);
// The same output without gradients (scoring).
at::Tensor residual_mlp_forward(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params);

// The same conditioner with bfloat16 operands in its products and float32 results (MKL's bfloat16 GEMM, CPU, float32
// tensors only): training, one C++ autograd node; and without gradients.
at::Tensor residual_mlp_train_bf16(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params);
at::Tensor residual_mlp_forward_bf16(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params);

}  // namespace genad::autograd
