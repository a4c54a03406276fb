// The fused residual-MLP conditioner of a flow's coupling (csrc/residual_mlp.cpp), for module.cpp's bindings.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace genad::autograd {

// The conditioner's output with one C++ autograd node (its backward hand-written): training, gradients on.
at::Tensor residual_mlp_train(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params);
// The same output without gradients (scoring).
at::Tensor residual_mlp_forward(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params);

// Refuses a parameter list that is not 4 + 4·n_blocks tensors, naming `name`.
void check_residual_mlp_params(const char* name, int64_t n_blocks, const std::vector<at::Tensor>& params);

// The same conditioner with its products in `dtype` (bfloat16: autocast's arithmetic; csrc/residual_mlp_lowp.cpp),
// input, output, gradients and parameters in their own dtype. Training, one C++ autograd node:
at::Tensor residual_mlp_train_lowp(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params,
                                   at::ScalarType dtype);
// ... and without gradients.
at::Tensor residual_mlp_forward_lowp(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params,
                                     at::ScalarType dtype);

}  // namespace genad::autograd
