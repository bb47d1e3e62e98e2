// The RNN of D2L 8.5 as two native MXNet operators: d2lrnn_rnn_forward runs
// all num_steps of a minibatch, d2lrnn_rnn_backward backpropagates through
// them. d2lrnn/native.py compiles this file against MXNet's extension API
// (lib_api.h) and OpenBLAS (scipy-openblas32), and loads it; d2lrnn/fast.py
// calls the pair inside its autograd.Function, so the gradients land in the
// parameters' .grad as with the Python path. The step product has a kernel
// of its own (gemm_packed); OpenBLAS computes the others. Row-major:
//   H_t = act(X_t W_xh + H_{t-1} W_hh + b_h)     (B, Hd)
//   Y   = [H_1; ...; H_T] (* mask) W_hq + b_q     (T * B, V)
// with B = batch_size, T = num_steps, Hd = num_hiddens, V = vocab_size.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "mxnet/lib_api.h"

using mxnet::ext::MXTensor;
using mxnet::ext::MXReturnValue;
using mxnet::ext::MX_SUCCESS;
using mxnet::ext::MX_FAIL;
using mxnet::ext::OpResource;
using Attrs = std::unordered_map<std::string, std::string>;
using Shapes = std::vector<std::vector<unsigned int>>;

// OpenBLAS of scipy-openblas32 (its symbols carry the prefix scipy_); the
// enum values are CBLAS's.
extern "C" void scipy_cblas_sgemm(int order, int trans_a, int trans_b,
                                  int m, int n, int k, float alpha,
                                  const float* a, int lda, const float* b,
                                  int ldb, float beta, float* c, int ldc);
namespace {
const int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// C (m, n) = alpha * op(A) op(B) + beta * C, op = transpose if asked
void gemm(bool ta, bool tb, int m, int n, int k, const float* a,
          const float* b, float beta, float* c) {
  scipy_cblas_sgemm(kRowMajor, ta ? kTrans : kNoTrans,
                    tb ? kTrans : kNoTrans, m, n, k, 1.0f, a, ta ? m : k,
                    b, tb ? k : n, beta, c, n);
}

// The step product, a (B, Hd) state times a fixed (Hd, Hd) matrix, by our
// own kernel: OpenBLAS packs the matrix again at every call, here it is
// packed once per minibatch into panels of 16 columns, (Hd / 16, Hd, 16),
// and each 6 x 16 block of the result stays in registers over all of K
// (bench/bench_native.py measures the operators' rate against sgemm's).
const int kPanel = 16;

// Bp (N / 16, K, 16) from B (K, N), or from B^T given as (N, K)
void pack_panels(const float* W, int K, int N, bool transposed, float* Bp) {
  for (int jp = 0; jp < N / kPanel; ++jp) {
    float* P = Bp + static_cast<int64_t>(jp) * K * kPanel;
    for (int k = 0; k < K; ++k) {
      for (int c = 0; c < kPanel; ++c) {
        const int n = jp * kPanel + c;
        P[k * kPanel + c] = transposed ? W[static_cast<int64_t>(n) * K + k]
                                       : W[static_cast<int64_t>(k) * N + n];
      }
    }
  }
}

// Vec<W>::type: W floats in one register. The attributes (unaligned, may
// alias) must sit on a typedef made here: GCC drops them from a type passed
// as a template argument, and an aligned load at an unaligned address faults.
// With AVX-512 (-march=native on such a CPU) a 16-wide register holds a whole
// row of a panel, and each 6 x 32 block of the result, from two adjacent
// panels, stays in 12 of the 32 registers; each element of C still adds its
// K products in the same order, so the results are those of the 8-wide kernel.
template <int W> struct Vec;
template <> struct Vec<8> {
  typedef float type __attribute__((vector_size(32), aligned(4), may_alias));
};
template <> struct Vec<16> {
  typedef float type __attribute__((vector_size(64), aligned(4), may_alias));
};

// C[0:R, 0:2W] += A[0:R, :] [B0 B1]: B0 and B1 are the two halves of one
// panel (W = 8) or two adjacent panels (W = 16), their rows kPanel floats
// apart. R <= 6 rows.
template <int W, int R>
inline void micro(const float* A, int K, const float* B0, const float* B1,
                  float* C, int ldc) {
  typedef typename Vec<W>::type V;
  V acc0[R], acc1[R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    acc0[r] = *reinterpret_cast<const V*>(C + r * ldc);
    acc1[r] = *reinterpret_cast<const V*>(C + r * ldc + W);
  }
  for (int k = 0; k < K; ++k) {
    const V b0 = *reinterpret_cast<const V*>(B0 + k * kPanel);
    const V b1 = *reinterpret_cast<const V*>(B1 + k * kPanel);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const float a = A[r * K + k];
      acc0[r] += a * b0;
      acc1[r] += a * b1;
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    *reinterpret_cast<V*>(C + r * ldc) = acc0[r];
    *reinterpret_cast<V*>(C + r * ldc + W) = acc1[r];
  }
}

// C[0:M, 0:2W] += A [B0 B1] (as micro), in blocks of 6 rows
template <int W>
void row_blocks(int M, int N, int K, const float* A, const float* B0,
                const float* B1, float* C) {
  for (int i = 0; i < M; i += 6) {
    const float* Ai = A + static_cast<int64_t>(i) * K;
    float* Ci = C + static_cast<int64_t>(i) * N;
    switch (std::min(6, M - i)) {
      case 6: micro<W, 6>(Ai, K, B0, B1, Ci, N); break;
      case 5: micro<W, 5>(Ai, K, B0, B1, Ci, N); break;
      case 4: micro<W, 4>(Ai, K, B0, B1, Ci, N); break;
      case 3: micro<W, 3>(Ai, K, B0, B1, Ci, N); break;
      case 2: micro<W, 2>(Ai, K, B0, B1, Ci, N); break;
      default: micro<W, 1>(Ai, K, B0, B1, Ci, N); break;
    }
  }
}

// C (M, N) += A (M, K) B, B packed by pack_panels; N a multiple of 16
void gemm_packed(int M, int N, int K, const float* A, const float* Bp,
                 float* C) {
  const int64_t panel = static_cast<int64_t>(K) * kPanel;
  int jp = 0;
#if defined(__AVX512F__)
  for (; jp + 2 <= N / kPanel; jp += 2) {
    const float* P = Bp + jp * panel;
    row_blocks<16>(M, N, K, A, P, P + panel, C + jp * kPanel);
  }
#endif
  for (; jp < N / kPanel; ++jp) {
    const float* P = Bp + jp * panel;
    row_blocks<8>(M, N, K, A, P, P + 8, C + jp * kPanel);
  }
}

// tanh as a rational function (Eigen's fast float tanh, a few ulps), so
// that the loop vectorises: libm's tanhf per element would cost more than
// the step's product.
inline float fast_tanh(float x) {
  const float c = 7.90531110763549805f;
  float xc = std::min(std::max(x, -c), c);
  float x2 = xc * xc;
  float p = -2.76076847742355e-16f;
  p = x2 * p + 2.00018790482477e-13f;
  p = x2 * p - 8.60467152213735e-11f;
  p = x2 * p + 5.12229709037114e-08f;
  p = x2 * p + 1.48572235717979e-05f;
  p = x2 * p + 6.37261928875436e-04f;
  p = x2 * p + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = x2 * q + 1.18534705686654e-04f;
  q = x2 * q + 2.26843463243900e-03f;
  q = x2 * q + 4.89352518554385e-03f;
  float r = xc * p / q;
  return std::fabs(x) < 0.0004f ? x : r;
}

void activate(float* z, int64_t n, bool relu) {
  if (relu) {
    for (int64_t i = 0; i < n; ++i) z[i] = std::max(z[i], 0.0f);
  } else {
    for (int64_t i = 0; i < n; ++i) z[i] = fast_tanh(z[i]);
  }
}

// growing scratch buffers, reused from call to call (no page faults)
float* scratch(std::vector<float>* buf, int64_t n) {
  if (static_cast<int64_t>(buf->size()) < n) buf->resize(n);
  return buf->data();
}

// The ids index rows of W_xh (V rows): each must be in 0..V-1 before any is
// used, else the operator would read (forward) or write (backward) outside
// the matrix. d2lrnn/fast.py checks first and says which id; this is the
// defence behind it, one pass over the B * T ids. NaN fails the test too.
bool ids_in_range(const char* op, const float* X, int64_t n, int V) {
  for (int64_t i = 0; i < n; ++i) {
    if (!(X[i] >= 0.0f && X[i] < static_cast<float>(V))) {
      MX_ERROR_MSG << op << ": token id " << X[i]
                   << " is outside the vocabulary of " << V << " tokens (0.."
                   << V - 1 << ")";
      return false;
    }
  }
  return true;
}

bool relu_of(const Attrs& attrs) {
  auto it = attrs.find("activation");
  return it != attrs.end() && it->second == "relu";
}

bool masked_of(const Attrs& attrs) {
  auto it = attrs.find("masked");
  return it != attrs.end() && it->second == "1";
}

// Inputs: W_xh (V, Hd), W_hh (Hd, Hd), b_h (Hd), W_hq (Hd, V), b_q (V),
// H0 (B, Hd), X (B, T) float32 ids[, mask (T * B, Hd)].
// Outputs: Y (T * B, V), H_T (B, Hd), all states (T + 1, B, Hd), H_0 first.
MXReturnValue forward(const Attrs& attrs, std::vector<MXTensor>* in,
                      std::vector<MXTensor>* out, const OpResource& res) {
  const bool relu = relu_of(attrs), masked = masked_of(attrs);
  const float* W_xh = (*in)[0].data<float>();
  const float* W_hh = (*in)[1].data<float>();
  const float* b_h = (*in)[2].data<float>();
  const float* W_hq = (*in)[3].data<float>();
  const float* b_q = (*in)[4].data<float>();
  const float* H0 = (*in)[5].data<float>();
  const float* X = (*in)[6].data<float>();
  const int V = (*in)[0].shape[0], Hd = (*in)[0].shape[1];
  const int B = (*in)[6].shape[0], T = (*in)[6].shape[1];
  if (!ids_in_range("d2lrnn_rnn_forward", X, static_cast<int64_t>(B) * T, V))
    return MX_FAIL;
  float* Y = (*out)[0].data<float>();
  float* H_last = (*out)[1].data<float>();
  float* Hs = (*out)[2].data<float>();
  const int64_t BH = static_cast<int64_t>(B) * Hd;
  std::copy(H0, H0 + BH, Hs);
  // W_hh packed once for all steps (Hd a multiple of 16), else OpenBLAS
  static thread_local std::vector<float> buf_pack;
  const bool packed = Hd % kPanel == 0;
  float* W_p = packed ? scratch(&buf_pack, static_cast<int64_t>(Hd) * Hd)
                      : nullptr;
  if (packed) pack_panels(W_hh, Hd, Hd, false, W_p);
  for (int t = 0; t < T; ++t) {
    float* H = Hs + (t + 1) * BH;
    // X_t W_xh + b_h: one-hot rows pick rows of W_xh
    for (int b = 0; b < B; ++b) {
      const float* w = W_xh + static_cast<int64_t>(X[b * T + t]) * Hd;
      float* h = H + static_cast<int64_t>(b) * Hd;
      for (int j = 0; j < Hd; ++j) h[j] = w[j] + b_h[j];
    }
    if (packed)
      gemm_packed(B, Hd, Hd, Hs + t * BH, W_p, H);
    else
      gemm(false, false, B, Hd, Hd, Hs + t * BH, W_hh, 1.0f, H);
    activate(H, BH, relu);
  }
  std::copy(Hs + T * BH, Hs + (T + 1) * BH, H_last);
  // the output layer over all steps: (T * B, Hd) x (Hd, V)
  const int64_t rows = static_cast<int64_t>(T) * B;
  const float* Hout = Hs + BH;
  static thread_local std::vector<float> buf;
  if (masked) {
    const float* mask = (*in)[7].data<float>();
    float* Hm = scratch(&buf, rows * Hd);
    for (int64_t i = 0; i < rows * Hd; ++i) Hm[i] = Hout[i] * mask[i];
    Hout = Hm;
  }
  for (int64_t r = 0; r < rows; ++r) std::copy(b_q, b_q + V, Y + r * V);
  gemm(false, false, rows, V, Hd, Hout, W_hq, 1.0f, Y);
  return MX_SUCCESS;
}

// Inputs: dY (T * B, V), dH_T (B, Hd), W_hh, W_hq, X (B, T), the states
// (T + 1, B, Hd)[, mask]. Outputs: dW_xh, dW_hh, db_h, dW_hq, db_q, dH0.
MXReturnValue backward(const Attrs& attrs, std::vector<MXTensor>* in,
                       std::vector<MXTensor>* out, const OpResource& res) {
  const bool relu = relu_of(attrs), masked = masked_of(attrs);
  const float* dY = (*in)[0].data<float>();
  const float* dH_last = (*in)[1].data<float>();
  const float* W_hh = (*in)[2].data<float>();
  const float* W_hq = (*in)[3].data<float>();
  const float* X = (*in)[4].data<float>();
  const float* Hs = (*in)[5].data<float>();
  const float* mask = masked ? (*in)[6].data<float>() : nullptr;
  const int Hd = (*in)[2].shape[0], V = (*in)[3].shape[1];
  const int B = (*in)[4].shape[0], T = (*in)[4].shape[1];
  if (!ids_in_range("d2lrnn_rnn_backward", X, static_cast<int64_t>(B) * T,
                    V))
    return MX_FAIL;
  float* dW_xh = (*out)[0].data<float>();
  float* dW_hh = (*out)[1].data<float>();
  float* db_h = (*out)[2].data<float>();
  float* dW_hq = (*out)[3].data<float>();
  float* db_q = (*out)[4].data<float>();
  float* dH0 = (*out)[5].data<float>();
  const int64_t BH = static_cast<int64_t>(B) * Hd;
  const int64_t rows = static_cast<int64_t>(T) * B;
  static thread_local std::vector<float> buf_dA, buf_dH, buf_Hm;
  // the gradient reaching each H_t from its output: dY W_hq^T (T * B, Hd),
  // overwritten below by the gradient before the activation, dA
  float* dA = scratch(&buf_dA, rows * Hd);
  gemm(false, true, rows, Hd, V, dY, W_hq, 0.0f, dA);
  if (masked)
    for (int64_t i = 0; i < rows * Hd; ++i) dA[i] *= mask[i];
  float* dH = scratch(&buf_dH, BH);  // the gradient reaching H_t
  std::copy(dH_last, dH_last + BH, dH);
  // W_hh^T packed once for all steps, as in the forward pass
  static thread_local std::vector<float> buf_pack;
  const bool packed = Hd % kPanel == 0;
  float* W_p = packed ? scratch(&buf_pack, static_cast<int64_t>(Hd) * Hd)
                      : nullptr;
  if (packed) pack_panels(W_hh, Hd, Hd, true, W_p);
  for (int t = T - 1; t >= 0; --t) {
    float* d = dA + t * BH;
    const float* H = Hs + (t + 1) * BH;
    if (relu) {
      for (int64_t i = 0; i < BH; ++i)
        d[i] = H[i] > 0.0f ? d[i] + dH[i] : 0.0f;
    } else {
      for (int64_t i = 0; i < BH; ++i)
        d[i] = (d[i] + dH[i]) * (1.0f - H[i] * H[i]);
    }
    // dA_t W_hh^T, the gradient reaching H_{t-1}: (B, Hd)
    float* next = t ? dH : dH0;
    if (packed) {
      std::fill(next, next + BH, 0.0f);
      gemm_packed(B, Hd, Hd, d, W_p, next);
    } else {
      gemm(false, true, B, Hd, Hd, d, W_hh, 0.0f, next);
    }
  }
  if (T == 0) std::copy(dH_last, dH_last + BH, dH0);
  // all steps at once: dW_hh = [H_0; ...; H_{T-1}]^T [dA_1; ...; dA_T]
  gemm(true, false, Hd, Hd, rows, Hs, dA, 0.0f, dW_hh);
  const float* Hout = Hs + BH;
  if (masked) {
    float* Hm = scratch(&buf_Hm, rows * Hd);
    for (int64_t i = 0; i < rows * Hd; ++i) Hm[i] = Hout[i] * mask[i];
    Hout = Hm;
  }
  gemm(true, false, Hd, V, rows, Hout, dY, 0.0f, dW_hq);
  // bias gradients: column sums; dW_xh: dA's rows added to the rows of
  // W_xh that the ids picked
  std::fill(db_h, db_h + Hd, 0.0f);
  std::fill(db_q, db_q + V, 0.0f);
  std::fill(dW_xh, dW_xh + static_cast<int64_t>(V) * Hd, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    const float* d = dA + r * Hd;
    const int t = r / B, b = r % B;
    float* w = dW_xh + static_cast<int64_t>(X[b * T + t]) * Hd;
    for (int j = 0; j < Hd; ++j) {
      db_h[j] += d[j];
      w[j] += d[j];
    }
    const float* y = dY + r * V;
    for (int j = 0; j < V; ++j) db_q[j] += y[j];
  }
  return MX_SUCCESS;
}

MXReturnValue parse_forward(const Attrs& attrs, int* n_in, int* n_out) {
  *n_in = masked_of(attrs) ? 8 : 7;
  *n_out = 3;
  return MX_SUCCESS;
}

MXReturnValue parse_backward(const Attrs& attrs, int* n_in, int* n_out) {
  *n_in = masked_of(attrs) ? 7 : 6;
  *n_out = 6;
  return MX_SUCCESS;
}

MXReturnValue all_float32(const Attrs& attrs, std::vector<int>* in_types,
                          std::vector<int>* out_types) {
  for (int t : *in_types) {
    if (t != mxnet::ext::kFloat32) {
      MX_ERROR_MSG << "d2lrnn_rnn: every input must be float32";
      return MX_FAIL;
    }
  }
  for (auto& t : *out_types) t = mxnet::ext::kFloat32;
  return MX_SUCCESS;
}

MXReturnValue shape_forward(const Attrs& attrs, Shapes* in, Shapes* out) {
  const auto& W_xh = (*in)[0];
  const auto& X = (*in)[6];
  if (W_xh.size() != 2 || X.size() != 2) {
    MX_ERROR_MSG << "d2lrnn_rnn_forward: W_xh and X must be 2-d";
    return MX_FAIL;
  }
  const unsigned V = W_xh[0], Hd = W_xh[1], B = X[0], T = X[1];
  (*out)[0] = {T * B, V};
  (*out)[1] = {B, Hd};
  (*out)[2] = {T + 1, B, Hd};
  return MX_SUCCESS;
}

MXReturnValue shape_backward(const Attrs& attrs, Shapes* in, Shapes* out) {
  const unsigned Hd = (*in)[2][0], V = (*in)[3][1], B = (*in)[4][0];
  (*out)[0] = {V, Hd};
  (*out)[1] = {Hd, Hd};
  (*out)[2] = {Hd};
  (*out)[3] = {Hd, V};
  (*out)[4] = {V};
  (*out)[5] = {B, Hd};
  return MX_SUCCESS;
}
}  // namespace

REGISTER_OP(d2lrnn_rnn_forward)
.setForward(forward, "cpu")
.setParseAttrs(parse_forward)
.setInferType(all_float32)
.setInferShape(shape_forward);

REGISTER_OP(d2lrnn_rnn_backward)
.setForward(backward, "cpu")
.setParseAttrs(parse_backward)
.setInferType(all_float32)
.setInferShape(shape_backward);

MXReturnValue initialize(int version) {
  if (version >= 10900) return MX_SUCCESS;
  MX_ERROR_MSG << "d2lrnn_rnn needs MXNet 1.9 or later, got " << version;
  return MX_FAIL;
}
