// XLA FFI kernels for `flax-ffi` (backends/ffi_kernels.py builds and registers them; README "Performance").
//
// XLA's CPU backend runs a batch-32 step as ~40 small thunks; two of its costs are avoidable from inside the
// compiled program: its matrix products reach only ~85% of a threaded BLAS on these shapes, and Adam takes
// three passes over the state (10 float32 accesses per parameter instead of 7). Both kernels split their
// work over XLA's own intra-op thread pool (the FFI ThreadPool context): a second pool, such as OpenBLAS'
// own threads, would compete with XLA's for the same cores (measured: 1.6x slower, README).

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <thread>
#include <utility>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };  // CBLAS' enum values
using Sgemm64 = void (*)(int, int, int, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t);
using Sgemm32 = void (*)(int, int, int, int32_t, int32_t, int32_t, float, const float*, int32_t, const float*,
                         int32_t, float, float*, int32_t);

void* sgemm_address = nullptr;  // cblas_sgemm of the BLAS NumPy loaded, set once from Python
bool sgemm_ilp64 = false;

constexpr int64_t kFlopsPerPart = 2'000'000;  // below this a product is not worth a second thread
constexpr int64_t kElementsPerPart = 16'384;  // the same for Adam's element-wise pass

void Sgemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
           const float* b, int64_t ldb, float* c, int64_t ldc) {
  int ta = transpose_a ? kTrans : kNoTrans, tb = transpose_b ? kTrans : kNoTrans;
  if (sgemm_ilp64) {
    reinterpret_cast<Sgemm64>(sgemm_address)(kRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  } else {
    reinterpret_cast<Sgemm32>(sgemm_address)(kRowMajor, ta, tb, static_cast<int32_t>(m), static_cast<int32_t>(n),
                                             static_cast<int32_t>(k), 1.0f, a, static_cast<int32_t>(lda), b,
                                             static_cast<int32_t>(ldb), 0.0f, c, static_cast<int32_t>(ldc));
  }
}

// Runs part(0..parts-1) on this thread and on up to parts-1 helpers from XLA's pool, and returns when all
// are done. Parts are claimed from a shared counter, so a helper that starts late (a pool thread asleep,
// or a task queued behind this very thread's work) costs nothing: this thread takes the unclaimed parts
// itself instead of waiting for one to wake.
template <typename Part>
void RunParts(ffi::ThreadPool& pool, int64_t parts, const Part& part) {
  struct Progress {
    std::atomic<int64_t> next{0};
    std::atomic<int64_t> done{0};
  };
  // Shared with the helpers: one may start after this call returned, find nothing to claim, and leave.
  auto progress = std::make_shared<Progress>();
  auto work = [progress, parts, &part] {
    for (int64_t index; (index = progress->next.fetch_add(1, std::memory_order_relaxed)) < parts;) {
      part(index);
      progress->done.fetch_add(1, std::memory_order_release);
    }
  };
  for (int64_t helper = 1; helper < parts; ++helper) {
    auto task = work;  // Schedule takes its task by value
    pool.Schedule(std::move(task));
  }
  work();
  // Only parts a running helper has claimed remain: tens of microseconds at most.
  while (progress->done.load(std::memory_order_acquire) != parts) std::this_thread::yield();
}

// out = op(a) @ op(b), op = transpose or not; the output's longer side split into one block per thread,
// each block one single-threaded BLAS call.
ffi::Error Gemm(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> a, ffi::Buffer<ffi::F32> b,
                ffi::ResultBuffer<ffi::F32> out, bool transpose_a, bool transpose_b) {
  if (sgemm_address == nullptr) return ffi::Error::Internal("mnist_bench_gemm: no BLAS sgemm was set");
  auto a_dims = a.dimensions();
  auto b_dims = b.dimensions();
  if (a_dims.size() != 2 || b_dims.size() != 2) {
    return ffi::Error::InvalidArgument("mnist_bench_gemm: operands must be 2-D");
  }
  const int64_t m = transpose_a ? a_dims[1] : a_dims[0], k = transpose_a ? a_dims[0] : a_dims[1];
  const int64_t k_b = transpose_b ? b_dims[1] : b_dims[0], n = transpose_b ? b_dims[0] : b_dims[1];
  if (k != k_b) return ffi::Error::InvalidArgument("mnist_bench_gemm: contracted dimensions differ");
  const float* a_data = a.typed_data();
  const float* b_data = b.typed_data();
  float* c_data = out->typed_data();
  const int64_t lda = a_dims[1], ldb = b_dims[1];
  const bool by_rows = m >= n;
  const int64_t extent = by_rows ? m : n;
  const int64_t threads = std::max<int64_t>(1, std::min(pool.num_threads(), extent));
  const int64_t parts = std::clamp<int64_t>(2 * m * n * k / kFlopsPerPart, 1, threads);
  RunParts(pool, parts, [=](int64_t part) {
    const int64_t begin = extent * part / parts, end = extent * (part + 1) / parts;
    if (by_rows) {  // rows of op(a): rows of a, or columns of a when transposed
      Sgemm(transpose_a, transpose_b, end - begin, n, k, transpose_a ? a_data + begin : a_data + begin * lda, lda,
            b_data, ldb, c_data + begin * n, n);
    } else {  // columns of op(b)
      Sgemm(transpose_a, transpose_b, m, end - begin, k, a_data, lda,
            transpose_b ? b_data + begin * ldb : b_data + begin, ldb, c_data + begin, n);
    }
  });
  return ffi::Error::Success();
}

// Keras 3's Adam rule (backends/keras_adam.py) in one pass: reads parameter, gradient and both moments,
// writes parameter and both moments (aliased in place). alpha, with both bias corrections folded in, and
// 1 - beta (rounded to float32 from the double, as the XLA version's constants are) come from the caller.
ffi::Error Adam(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> param, ffi::Buffer<ffi::F32> grad,
                ffi::Buffer<ffi::F32> mu, ffi::Buffer<ffi::F32> nu, ffi::Buffer<ffi::F32> alpha_scalar,
                ffi::ResultBuffer<ffi::F32> param_out, ffi::ResultBuffer<ffi::F32> mu_out,
                ffi::ResultBuffer<ffi::F32> nu_out, float one_minus_beta_1, float one_minus_beta_2,
                float epsilon) {
  const int64_t size = param.element_count();
  if (grad.element_count() != size || mu.element_count() != size || nu.element_count() != size ||
      alpha_scalar.element_count() != 1) {
    return ffi::Error::InvalidArgument("mnist_bench_adam: parameter, gradient and moments differ in size");
  }
  const float alpha = alpha_scalar.typed_data()[0];
  const float* w = param.typed_data();
  const float* g = grad.typed_data();
  const float* m = mu.typed_data();
  const float* v = nu.typed_data();
  float* w_out = param_out->typed_data();
  float* m_out = mu_out->typed_data();
  float* v_out = nu_out->typed_data();
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t parts = std::clamp<int64_t>(size / kElementsPerPart, 1, threads);
  RunParts(pool, parts, [=](int64_t part) {
    const int64_t begin = size * part / parts, end = size * (part + 1) / parts;
    // Each element is read before it is written at the same index only, so the aliased buffers vectorize.
#pragma GCC ivdep
    for (int64_t i = begin; i < end; ++i) {
      const float gi = g[i];
      const float mi = m[i] + (gi - m[i]) * one_minus_beta_1;
      const float vi = v[i] + (gi * gi - v[i]) * one_minus_beta_2;
      m_out[i] = mi;
      v_out[i] = vi;
      w_out[i] = w[i] - (mi * alpha) / (std::sqrt(vi) + epsilon);
    }
  });
  return ffi::Error::Success();
}

}  // namespace

extern "C" void mnist_bench_set_sgemm(void* address, int ilp64) {
  sgemm_address = address;
  sgemm_ilp64 = ilp64 != 0;
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(MnistBenchGemm, Gemm,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("transpose_a")
                                  .Attr<bool>("transpose_b"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MnistBenchAdam, Adam,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("one_minus_beta_1")
                                  .Attr<float>("one_minus_beta_2")
                                  .Attr<float>("epsilon"));
