// The argument contracts of the genad_fast ops, checked once for the CPU (csrc/cpu) and the CUDA (csrc/cuda)
// entry points: one function per contract, one message text per contract, "genad_fast::<op>: <text>".
//
//   device       <name> must be a <CPU|CUDA> tensor for the <CPU|CUDA> kernel, got <device>
//   same device  <name> must be on <ref>'s device <device>, got <device>
//   rank         <name> must be <k>-D, got shape <sizes>
//   dtype        <name> must be <dtype> or <dtype>, got <dtype>
//   same dtype   <name> must have <ref>'s dtype <dtype>, got <dtype>
//   same shape   <name> must have <ref>'s shape <sizes>, got <sizes>
//   same rows    <name> must have <ref>'s number of rows <n>, got <n>
//   shape        <name> must have shape <sizes>, got <sizes>
//   per row      <name> must be a vector of one <unit>, shape [<n>], got shape <sizes>
//   unit stride  <name> must have unit stride on its last dimension, got strides <strides>
//   contiguous   <name> must be contiguous, got strides <strides>
//
// <ref>'s is <ref>' for a name ending in s (queries'). Dtypes print as Python prints them without "torch."
// (float32), sizes and strides as lists ([4, 3]), so the Triton twins (kernels/*.py) raise the same text for
// the contracts they check; scalar ranges have one text each in their op's header. tests/test_op_contract_errors.py
// holds this table and checks the CPU kernels (and, in tests/triton_kernels, the Triton twins) against it.
// Host code only (ATen); the per-element math shared with the GPU is in genad/<op>.h.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <initializer_list>
#include <string>
#include <string_view>

namespace genad::host {

// The device type an entry point serves, as its messages name it.
struct Backend {
  c10::DeviceType type;
  const char* name;
};
inline constexpr Backend kCPU{c10::DeviceType::CPU, "CPU"};
inline constexpr Backend kCUDA{c10::DeviceType::CUDA, "CUDA"};

// "float32", "int64", "bool": the name Python gives the dtype (torch.float32 without "torch.").
inline std::string_view dtype_name(at::ScalarType t) { return c10::getDtypeNames(t).first; }

// The contracts of one op on one backend.
class Checks {
 public:
  constexpr Checks(const char* op, Backend backend) : op_(op), backend_(backend) {}

  const char* op() const { return op_; }
  Backend backend() const { return backend_; }

  void device(const at::Tensor& t, const char* name) const {
    TORCH_CHECK(t.device().type() == backend_.type, op_, ": ", name, " must be a ", backend_.name,
                " tensor for the ", backend_.name, " kernel, got ", t.device());
  }

  // On this backend and on ref's device (one GPU of several).
  void same_device(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) const {
    device(t, name);
    TORCH_CHECK(t.device() == ref.device(), op_, ": ", name, " must be on ", owner(ref_name), " device ", ref.device(),
                ", got ", t.device());
  }

  void rank(const at::Tensor& t, const char* name, int64_t k) const {
    TORCH_CHECK(t.dim() == k, op_, ": ", name, " must be ", k, "-D, got shape ", t.sizes());
  }

  void dtype(const at::Tensor& t, const char* name, std::initializer_list<at::ScalarType> allowed) const {
    for (const at::ScalarType a : allowed) {
      if (t.scalar_type() == a) return;
    }
    TORCH_CHECK(false, op_, ": ", name, " must be ", one_of(allowed), ", got ", dtype_name(t.scalar_type()));
  }

  void floating(const at::Tensor& t, const char* name) const { dtype(t, name, {at::kFloat, at::kDouble}); }

  void same_dtype(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) const {
    TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op_, ": ", name, " must have ", owner(ref_name), " dtype ",
                dtype_name(ref.scalar_type()), ", got ", dtype_name(t.scalar_type()));
  }

  void same_shape(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) const {
    TORCH_CHECK(t.sizes() == ref.sizes(), op_, ": ", name, " must have ", owner(ref_name), " shape ", ref.sizes(),
                ", got ", t.sizes());
  }

  void same_rows(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name) const {
    TORCH_CHECK(t.size(0) == ref.size(0), op_, ": ", name, " must have ", owner(ref_name), " number of rows ",
                ref.size(0), ", got ", t.size(0));
  }

  void shape(const at::Tensor& t, const char* name, at::IntArrayRef want) const {
    TORCH_CHECK(t.sizes() == want, op_, ": ", name, " must have shape ", want, ", got ", t.sizes());
  }

  // A 1-D tensor with one entry per row of the data (`unit` names the entry: "coefficient per sample").
  void per_row(const at::Tensor& t, const char* name, int64_t rows, const char* unit) const {
    TORCH_CHECK(t.dim() == 1 && t.size(0) == rows, op_, ": ", name, " must be a vector of one ", unit, ", shape [",
                rows, "], got shape ", t.sizes());
  }

  // Only the last dimension must be contiguous: column slices of a bigger matrix are read in place through
  // their row stride. broadcast_ok also takes a column stride of 0 (a gradient broadcast along a row).
  void unit_stride(const at::Tensor& t, const char* name, bool broadcast_ok = false) const {
    const int64_t last = t.dim() - 1;
    TORCH_CHECK(t.dim() == 0 || t.size(last) <= 1 || t.stride(last) == 1 || (broadcast_ok && t.stride(last) == 0),
                op_, ": ", name, " must have unit stride on its last dimension, got strides ", t.strides());
  }

  void contiguous(const at::Tensor& t, const char* name) const {
    TORCH_CHECK(t.is_contiguous(), op_, ": ", name, " must be contiguous, got strides ", t.strides());
  }

  // The usual data argument: on this backend, k-D, float32 or float64, unit stride on the last dimension.
  void rows(const at::Tensor& t, const char* name, int64_t k = 2, bool broadcast_ok = false) const {
    device(t, name);
    rank(t, name, k);
    floating(t, name);
    unit_stride(t, name, broadcast_ok);
  }

  // A second data argument that goes with ref: rows() plus ref's device and dtype.
  void rows_like(const at::Tensor& t, const char* name, const at::Tensor& ref, const char* ref_name,
                 int64_t k = 2, bool broadcast_ok = false) const {
    rows(t, name, k, broadcast_ok);
    same_device(t, name, ref, ref_name);
    same_dtype(t, name, ref, ref_name);
  }

 private:
  // "x's", "the data's", "queries'"
  static std::string owner(const char* ref) {
    std::string s(ref);
    s += !s.empty() && s.back() == 's' ? "'" : "'s";
    return s;
  }

  // "float32", "float32 or float64", "float32, float64 or bfloat16"
  static std::string one_of(std::initializer_list<at::ScalarType> allowed) {
    std::string s;
    size_t i = 0;
    for (const at::ScalarType a : allowed) {
      if (i > 0) s += i + 1 == allowed.size() ? " or " : ", ";
      s += dtype_name(a);
      ++i;
    }
    return s;
  }

  const char* op_;
  Backend backend_;
};

}  // namespace genad::host
