// Row-panel orthonormalization in float64 for the randomized SVDs of @svdquant/quantizer's kernel path:
// CholeskyQR repeated (Fukaya et al. 2020, "CholeskyQR3") on P [l, d] whose rows are first scaled to unit norm.
//
//   repeat `passes` times:  G = P·Pᵀ (float64),  G = C·Cᵀ (Cholesky),  P ← C⁻¹·P,  T ← T·C
//
// so that P_in = T·P_out with T lower triangular [l, l]. Fails (returns the reason, P and T then undefined) when a
// row norm is zero or non-finite, a Cholesky pivot is ≤ min_pivot, or the last pass's Gram matrix is not the
// identity within max_dev: the caller then uses another method (modified Gram–Schmidt). Each Gram entry and each
// updated element is one fixed-order sum, so results do not depend on the thread count.
//
// | tensor | shape  | dtype   |                                   |
// | ------ | ------ | ------- | --------------------------------- |
// | p      | [l, d] | float64 | in/out, row-major                 |
// | t      | [l, l] | float64 | out, lower triangular, row-major  |
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common.h"

namespace svdq {
namespace {

enum CholQrStatus { kOk = 0, kZeroRow = 1, kPivot = 2, kNotOrthogonal = 3 };

constexpr int64_t kColsPerTask = 512;  // columns of P per task of the triangular update

// Σ a[x]·b[x] in 8 fixed lanes (vectorizable, and the same sum on every thread count).
inline double dot8(const double* a, const double* b, int64_t d) {
  double acc[8] = {};
  int64_t x = 0;
  for (; x + 8 <= d; x += 8)
    for (int k = 0; k < 8; ++k) acc[k] += a[x + k] * b[x + k];
  for (; x < d; ++x) acc[0] += a[x] * b[x];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

int cholqr_rows_f64(double* p, int64_t l, int64_t d, int passes, double min_pivot, double max_dev, double* t) {
  std::fill(t, t + l * l, 0.0);
  for (int64_t i = 0; i < l; ++i) {
    double* r = p + i * d;
    const double nrm = std::sqrt(dot8(r, r, d));
    if (!(nrm > 0) || !std::isfinite(nrm)) return kZeroRow;
    t[i * l + i] = nrm;
    for (int64_t x = 0; x < d; ++x) r[x] /= nrm;
  }
  std::vector<double> g(l * l), c(l * l), tc(l * l);
  for (int pass = 0; pass < passes; ++pass) {
    // G = P·Pᵀ, lower triangle, one task per row
    parallel_for(l, [&](int64_t i, int) {
      const double* a = p + i * d;
      for (int64_t j = 0; j <= i; ++j) {
        g[i * l + j] = dot8(a, p + j * d, d);
      }
    });
    if (pass == passes - 1) {
      double dev = 0;
      for (int64_t i = 0; i < l; ++i)
        for (int64_t j = 0; j <= i; ++j) dev = std::max(dev, std::fabs(g[i * l + j] - (i == j ? 1.0 : 0.0)));
      if (!(dev <= max_dev)) return kNotOrthogonal;
    }
    std::fill(c.begin(), c.end(), 0.0);
    for (int64_t i = 0; i < l; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        double s = g[i * l + j];
        for (int64_t q = 0; q < j; ++q) s -= c[i * l + q] * c[j * l + q];
        if (i == j) {
          if (!(s > min_pivot)) return kPivot;
          c[i * l + i] = std::sqrt(s);
        } else {
          c[i * l + j] = s / c[j * l + j];
        }
      }
    // P ← C⁻¹·P: forward substitution down the rows, independently per column chunk
    const int64_t chunks = (d + kColsPerTask - 1) / kColsPerTask;
    parallel_for(chunks, [&](int64_t ch, int) {
      const int64_t x0 = ch * kColsPerTask, x1 = std::min(d, x0 + kColsPerTask);
      for (int64_t i = 0; i < l; ++i) {
        double* r = p + i * d;
        for (int64_t q = 0; q < i; ++q) {
          const double cq = c[i * l + q];
          const double* rq = p + q * d;
          for (int64_t x = x0; x < x1; ++x) r[x] -= cq * rq[x];
        }
        const double inv = 1.0 / c[i * l + i];
        for (int64_t x = x0; x < x1; ++x) r[x] *= inv;
      }
    });
    // T ← T·C (both lower triangular)
    std::fill(tc.begin(), tc.end(), 0.0);
    for (int64_t i = 0; i < l; ++i)
      for (int64_t j = 0; j <= i; ++j) {
        double s = 0;
        for (int64_t q = j; q <= i; ++q) s += t[i * l + q] * c[q * l + j];
        tc[i * l + j] = s;
      }
    std::copy(tc.begin(), tc.end(), t);
  }
  return kOk;
}

Napi::Value CholQrRowsF64(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    if (info.Length() < 1 || !info[0].IsObject()) throw KernelError("cholQrRowsF64: expected one argument object");
    auto o = info[0].As<Napi::Object>();
    auto num = [&](const char* key) -> double {
      Napi::Value v = o.Get(key);
      if (!v.IsNumber()) throw KernelError(std::string("cholQrRowsF64: argument '") + key + "' must be a number");
      return v.As<Napi::Number>().DoubleValue();
    };
    auto f64 = [&](const char* key, int64_t len) -> double* {
      Napi::Value v = o.Get(key);
      if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
        throw KernelError(std::string("cholQrRowsF64: argument '") + key + "' must be a Float64Array");
      auto ta = v.As<Napi::TypedArray>();
      if (static_cast<int64_t>(ta.ElementLength()) < len)
        throw KernelError(std::string("cholQrRowsF64: argument '") + key + "' is too short");
      return reinterpret_cast<double*>(static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset());
    };
    const int64_t l = static_cast<int64_t>(num("l")), d = static_cast<int64_t>(num("d"));
    const int passes = static_cast<int>(num("passes"));
    if (l <= 0 || d <= 0 || passes < 1) throw KernelError("cholQrRowsF64: bad l/d/passes");
    const int status = cholqr_rows_f64(f64("p", l * d), l, d, passes, num("minPivot"), num("maxDev"), f64("t", l * l));
    return Napi::Number::New(env, status);
  } catch (const Napi::Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("@svdquant/kernels native: ") + e.what());
  }
}

}  // namespace

void register_cholqr_f64(Napi::Env env, Napi::Object exports) {
  exports.Set("cholQrRowsF64", Napi::Function::New(env, CholQrRowsF64));
}

}  // namespace svdq
