// The program csrc/testing/sanitize.py builds under AddressSanitizer (fiber scheduler) and
// ThreadSanitizer (thread scheduler, FM_SHIM_THREADS): csrc/cuda's step-A and step-C kernels
// through the shim on small cases, each result compared with its twin's formula
// (fishermask_ext/ops/reference.py) in ATen, then the shim's self-test kernels, of which every
// broken one must fail its launch. Exit status 0 when all agree; a sanitizer report exits
// non-zero on its own.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <string>
#include <vector>

// csrc/ops.cpp, linked for its schemas, also defines the package's Python module init; this
// program never calls it, so the one CPython function it names needs no libpython.
extern "C" void* PyModule_Create2(void*, int) { return nullptr; }

namespace {

#define FM_STR2(x) #x
#define FM_STR(x) FM_STR2(x)
const std::string kNamespace = FM_STR(FM_SHIM_NAMESPACE);

c10::IValue call(const char* op, std::vector<c10::IValue> stack) {
  c10::Dispatcher::singleton().findSchemaOrThrow((kNamespace + "::" + op).c_str(), "")
      .callBoxed(&stack);
  return stack.at(0);
}

int failures = 0;

void expect_close(const char* what, const at::Tensor& got, const at::Tensor& want) {
  const bool ok = got.sizes() == want.sizes() && at::allclose(got, want, 1e-10, 1e-12);
  std::printf("%-22s %s\n", what, ok ? "ok" : "MISMATCH");
  failures += !ok;
}

// Per-sample, per-class conv weight gradients [C, n, O, Cin·kh·kw] (groups = 1): the twin's
// conv2d_sample_grads.
at::Tensor conv_grads(const at::Tensor& x, const at::Tensor& delta, at::IntArrayRef k,
                      at::IntArrayRef s, at::IntArrayRef p, at::IntArrayRef d) {
  const at::Tensor unf = at::im2col(x, k, d, p, s);   // [n, K, L]
  return at::einsum("cnol,nkl->cnok", {delta.flatten(3), unf});
}

void kernels() {
  const auto f64 = at::TensorOptions().dtype(at::kDouble);
  at::manual_seed(0);
  // Step A, Linear weight shared over S = 2 positions: the chunk GEMM, then square_sum.
  const at::Tensor a = at::randn({3, 2, 4}, f64), dl = at::randn({2, 3, 2, 5}, f64);
  const at::Tensor lin = at::einsum("cnso,nsi->cnoi", {dl, a});   // [C, n, O, I]
  expect_close("fisher_linear_sq", call("fisher_linear_sq", {a, dl, 2}).toTensor(),
               lin.square().sum({0, 1}));
  // Conv2d: im2col, the chunk GEMM, square_sum; stride, padding, dilation at once.
  const std::vector<int64_t> k{3, 2}, s{2, 1}, p{1, 0}, d{1, 2};
  const at::Tensor x = at::randn({2, 3, 6, 5}, f64), dc = at::randn({2, 2, 4, 3, 3}, f64);
  const at::Tensor conv = conv_grads(x, dc, k, s, p, d);   // [C, n, O, K]
  expect_close("fisher_conv2d_sq",
               call("fisher_conv2d_sq", {x, dc, k, s, p, d, 1, 1}).toTensor(),
               conv.square().sum({0, 1}));
  // Channel sums: warps' sums meet in shared memory behind a barrier. L = 40 gives a channel a
  // whole warp; L = 6 a segment of 8 lanes, 4 channels per warp.
  const at::Tensor dch = at::randn({2, 3, 3, 40}, f64), ach = at::randn({3, 3, 40}, f64);
  expect_close("fisher_channel_sq", call("fisher_channel_sq", {dch, ach}).toTensor(),
               (dch * ach).sum(-1).square().sum({0, 1}));
  const at::Tensor dsm = at::randn({2, 3, 5, 6}, f64);
  expect_close("fisher_channel_sq bias", call("fisher_channel_sq", {dsm, c10::IValue()}).toTensor(),
               dsm.sum(-1).square().sum({0, 1}));
  // Step C: masked entries of the Linear and Conv2d weights (warp shuffles in the conv kernel).
  const at::Tensor il = at::tensor(std::vector<int64_t>{0, 7, 19, 3}, at::kLong);
  expect_close("masked_linear_grad", call("masked_linear_grad", {a, dl, il}).toTensor(),
               lin.flatten(2).index_select(2, il).permute({1, 0, 2}));
  const at::Tensor ic = at::tensor(std::vector<int64_t>{0, 5, 17, 23, 4}, at::kLong);
  expect_close("masked_conv2d_grad",
               call("masked_conv2d_grad", {x, dc, ic, k, s, p, d, 1}).toTensor(),
               conv.flatten(2).index_select(2, ic).permute({1, 0, 2}));
}

// csrc/testing/shim_selftest.cu: kind 0 runs, kinds 1-3 must be launch errors.
void selftest() {
  const at::Tensor x = at::arange(64, at::kLong) * 3 + 1;
  const bool sum_ok = call("shim_selftest", {x, 0}).toTensor().item<int64_t>() ==
                      x.sum().item<int64_t>();
  std::printf("%-22s %s\n", "shim self-test sum", sum_ok ? "ok" : "WRONG");
  failures += !sum_ok;
  for (int64_t kind = 1; kind <= 3; ++kind) {
    std::string error;
    try {
      call("shim_selftest", {x, kind});
    } catch (const c10::Error& e) {
      error = e.what_without_backtrace();
    }
    const bool ok = error.find("divergent") != std::string::npos;
    std::printf("%-22s %s\n", ("shim self-test " + std::to_string(kind)).c_str(),
                ok ? "reported" : "NOT REPORTED");
    failures += !ok;
  }
}

}  // namespace

int main() {
  // One host thread for ATen: its OpenMP pool is not instrumented, and the race check is
  // about the kernels' threads only.
  at::set_num_threads(1);
  kernels();
  selftest();
  return failures == 0 ? 0 : 1;
}
