// The time loop of every recurrent cell, forward and backward, in compiled code.
//
// One call runs one layer and one direction over all T steps. Each step is one matrix
// product (h_{t-1} W_hh^T, on oneDNN's packed kernel where Python found it works) and
// ONE pass over the batch rows that applies the cell's equations, the regularisers
// (hidden dropout, zoneout) and the padding rule together. Backward walks the steps
// in reverse with the same structure, and the recurrent weight gradient is one matrix
// product over all steps at the end.
//
// The equations are those of the cells' Python files (rnnzoo/cells/*.py), which stay
// the readable statement; tests/test_native.py proves every kind equal to them.
//
// Padding follows the loop's rule (rnnzoo.layers.loop_scan): at a step past a
// sequence's length its state is left as it was, its output is zero, and backward
// passes the state's gradient through untouched.
//
// Saved for backward, per step and batch row: the output h_t (zero at padded steps),
// C_t for the two-state cells, and the cell's activations (`saved_width` below). The
// state before a valid step is recovered from the outputs: h_{t-1} forwards, h_{t+1}
// in reverse, or h_0 where the sequence starts.

#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

using at::Tensor;

enum Kind : int64_t {
  RNN_TANH = 0,
  RNN_RELU = 1,
  LSTM = 2,
  GRU = 3,
  PEEPHOLE_LSTM = 4,
  CIFG_LSTM = 5,
  INDRNN = 6,
  LAYERNORM_LSTM = 7,
  LAYERNORM_GRU = 8,
};

constexpr double LN_EPS = 1e-5;  // rnnzoo.cells.layernorm.EPS

int64_t num_states(int64_t kind) {
  switch (kind) {
    case LSTM: case PEEPHOLE_LSTM: case CIFG_LSTM: case LAYERNORM_LSTM: return 2;
    default: return 1;
  }
}

int64_t num_chunks(int64_t kind) {
  switch (kind) {
    case LSTM: case PEEPHOLE_LSTM: case LAYERNORM_LSTM: return 4;
    case GRU: case CIFG_LSTM: case LAYERNORM_GRU: return 3;
    default: return 1;
  }
}

// Per row and step, in multiples of H: the activations backward needs.
//   lstm, peephole: i, f, C~, o (4)      cifg: i, C~, o (3)
//   gru: r, z, h~ and W_hn h + b_hn (4)  layernorm_gru: those and the normalised
//   recurrent part, LN(W_hh h) before its gain (3), and 1/std (one value, 1 below)
//   layernorm_lstm: i, f, C~, o (4), LN(W_hh h) (4), LN(C_t) before gain (1), and two
//   1/std values (1); the simple cells need only h_t

int64_t base_width(int64_t kind, int64_t H) {
  switch (kind) {
    case LSTM: case PEEPHOLE_LSTM: return 4 * H;
    case CIFG_LSTM: return 3 * H;
    case GRU: return 4 * H;
    case LAYERNORM_GRU: return 7 * H + 1;
    case LAYERNORM_LSTM: return 9 * H + 2;
    default: return 0;
  }
}

// With zoneout the carried state is a mix of old and new, so the cell's own new value
// (the activation of the simple cells, C_t of the LSTMs) is saved after the rest.
bool saves_cell_value(int64_t kind) {
  return kind != GRU && kind != LAYERNORM_GRU && kind != LAYERNORM_LSTM;
}

int64_t saved_width(int64_t kind, int64_t H, bool zoneout) {
  return base_width(kind, H) + (zoneout && saves_cell_value(kind) ? H : 0);
}

// -- activations ------------------------------------------------------------------------
//
// float32 is the training dtype, and there the activations are written without library
// calls so that the compiler vectorises the per-row loops: exp by Cephes' range
// reduction and polynomial (relative error about 2e-7), sigmoid and tanh from it.
// float64, what the equivalence tests compare in, keeps the C library's functions.

inline float exp_approx(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  float n = std::floor(x * 1.44269504088896341f + 0.5f);  // x = n ln 2 + r, |r| <= ln2 / 2
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;
  float y = 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n
  return y * __builtin_bit_cast(float, bits);
}

inline float sigmoid(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

inline float tanh_(float x) {
  // 1 - 2 / (e^2x + 1) loses relative accuracy near 0, where the series takes over
  float x2 = x * x;
  float series = x * (1.0f + x2 * (-1.0f / 3 + x2 * (2.0f / 15 + x2 * (-17.0f / 315))));
  float far = 1.0f - 2.0f / (exp_approx(2.0f * x) + 1.0f);
  return std::fabs(x) < 0.1f ? series : far;
}

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
inline double tanh_(double x) { return std::tanh(x); }

// -- the step's matrix product ----------------------------------------------------------

// x (B, K) -> x @ W^T (B, N). `w` is either W itself (N, K) or, where `packed`, the
// oneDNN layout made by torch.ops.mkldnn._reorder_linear_weight (rnnzoo/native.py).
Tensor matmul(const Tensor& x, const Tensor& w, bool packed) {
  if (!packed) return at::mm(x, w.t());
  static const c10::OperatorHandle op =
      c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack;
  stack.reserve(6);
  stack.emplace_back(x);
  stack.emplace_back(w);
  stack.emplace_back(c10::IValue());
  stack.emplace_back(std::string("none"));
  stack.emplace_back(c10::List<std::optional<c10::Scalar>>());
  stack.emplace_back(std::string(""));
  op.callBoxed(&stack);
  return stack[0].toTensor();
}

// -- layer normalisation of one row -----------------------------------------------------

// y_hat = (x - mean) / sqrt(var + eps) over n values; returns 1 / sqrt(var + eps).
template <typename T> T normalise(const T* x, T* y_hat, int64_t n) {
  T mean = 0;
  for (int64_t k = 0; k < n; ++k) mean += x[k];
  mean /= n;
  T var = 0;
  for (int64_t k = 0; k < n; ++k) var += (x[k] - mean) * (x[k] - mean);
  var /= n;
  T rstd = T(1) / std::sqrt(var + T(LN_EPS));
  for (int64_t k = 0; k < n; ++k) y_hat[k] = (x[k] - mean) * rstd;
  return rstd;
}

// Given dL/dy_hat (dy, n values), the normalised values and 1/std: dL/dx, into dx.
template <typename T> void normalise_backward(const T* dy, const T* y_hat, T rstd, T* dx, int64_t n) {
  T mean_dy = 0, mean_dy_y = 0;
  for (int64_t k = 0; k < n; ++k) {
    mean_dy += dy[k];
    mean_dy_y += dy[k] * y_hat[k];
  }
  mean_dy /= n;
  mean_dy_y /= n;
  for (int64_t k = 0; k < n; ++k) dx[k] = rstd * (dy[k] - mean_dy - y_hat[k] * mean_dy_y);
}

// -- everything one call needs, as raw pointers ------------------------------------------

template <typename T> struct Scan {
  int64_t kind, steps, batch, hidden, gates, width;
  int64_t cell_value;   // offset in a saved row of the cell's own new value, -1: none
  bool reverse;
  const T* gi;          // (T, B, G) input part of the gates
  const T* bias;        // (G,) b_hh or null
  const T* u;           // indrnn: (H,) recurrent weights (already clamped)
  const T* peep;        // peephole: (3, H) p_i, p_f, p_o
  const T* ln_hh;       // layernorm: (G,) gain of LN(W_hh h)
  const T* ln_c;        // layernorm_lstm: (H,) gain and (H,) shift of LN(C_t)
  const T* ln_c_bias;
  const int64_t* lengths;  // (B,) or null: no padding
  const T* hmask;       // (B, H) hidden dropout mask (scaled) or null
  const bool* zmask;    // (T, S, B, H) zoneout: true keeps the old value; null: eval mix
  T zp;                 // zoneout rate, 0: off
  const T* h0;          // (B, H) each
  const T* c0;
  T* out;               // (T, B, H)
  T* cs;                // (T, B, H) or null
  T* saved;             // (T, B, width) or null

  bool valid(int64_t t, int64_t b) const { return lengths == nullptr || t < lengths[b]; }

  // The state before valid step t of row b: the neighbouring output, or the initial state.
  const T* prev(const T* seq, const T* init, int64_t t, int64_t b) const {
    int64_t p = reverse ? t + 1 : t - 1;
    bool start = reverse ? (p >= steps || !valid(p, b)) : p < 0;
    return start ? init + b * hidden : seq + (p * batch + b) * hidden;
  }

  // Zoneout keeps each unit of the old state with probability p: 1 where kept (training
  // mask), p in eval; the state then is keep * old + (1 - keep) * new.
  T keep(int64_t s, int64_t state, int64_t b, int64_t k) const {
    if (zp == T(0)) return T(0);
    if (zmask == nullptr) return zp;
    int64_t states = num_states(kind);
    return zmask[((s * states + state) * batch + b) * hidden + k] ? T(1) : T(0);
  }
};

// One forward step for rows [b0, b1). `gh`: (B, G) h_in @ W_hh^T (null for indrnn),
// `h_in`: (B, H) the recurrent input (h_{t-1}, masked by hidden dropout), `h`/`c`: (B, H)
// the carried state, updated in place.
template <typename T>
void forward_rows(const Scan<T>& S, int64_t s, int64_t t, const T* gh, const T* h_in, T* h, T* c,
                  int64_t b0, int64_t b1) {
  const int64_t H = S.hidden, G = S.gates;
  std::vector<T> a(G), tmp(G);
  for (int64_t b = b0; b < b1; ++b) {
    T* o_row = S.out + (t * S.batch + b) * H;
    T* h_row = h + b * H;
    if (!S.valid(t, b)) {  // padded: the state stays, the output is zero
      for (int64_t k = 0; k < H; ++k) o_row[k] = T(0);
      continue;
    }
    const T* x = S.gi + (t * S.batch + b) * G;
    const T* r = gh == nullptr ? nullptr : gh + b * G;
    T* sv = S.saved == nullptr ? nullptr : S.saved + (t * S.batch + b) * S.width;
    T* c_row = c == nullptr ? nullptr : c + b * H;
    T* cs_row = S.cs == nullptr ? nullptr : S.cs + (t * S.batch + b) * H;
    auto bias = [&](int64_t j) { return S.bias == nullptr ? T(0) : S.bias[j]; };
    switch (S.kind) {
      case RNN_TANH: case RNN_RELU:
        for (int64_t k = 0; k < H; ++k) {
          T v = x[k] + r[k] + bias(k);
          a[k] = S.kind == RNN_TANH ? tanh_(v) : (v > T(0) ? v : T(0));
        }
        break;
      case INDRNN:
        for (int64_t k = 0; k < H; ++k) {
          T v = x[k] + S.u[k] * h_in[b * H + k];
          a[k] = v > T(0) ? v : T(0);
        }
        break;
      case LSTM: case PEEPHOLE_LSTM: case LAYERNORM_LSTM: {
        const T* rec = r;
        if (S.kind == LAYERNORM_LSTM) {  // gh = LN(W_hh h) * gain, normalised part saved
          T* hat = sv + 4 * H;
          sv[9 * H] = normalise(r, hat, G);
          for (int64_t j = 0; j < G; ++j) tmp[j] = hat[j] * S.ln_hh[j];
          rec = tmp.data();
        }
        for (int64_t j = 0; j < G; ++j) a[j] = x[j] + rec[j] + bias(j);
        for (int64_t k = 0; k < H; ++k) {
          T c_prev = c_row[k];
          T i_pre = a[k], f_pre = a[H + k];
          if (S.kind == PEEPHOLE_LSTM) {
            i_pre += S.peep[k] * c_prev;
            f_pre += S.peep[H + k] * c_prev;
          }
          T i = sigmoid(i_pre), f = sigmoid(f_pre), g = tanh_(a[2 * H + k]);
          T c_new = f * c_prev + i * g;
          sv[k] = i; sv[H + k] = f; sv[2 * H + k] = g;
          cs_row[k] = c_new;
          a[k] = c_new;  // a[0:H] now holds C_t
        }
        if (S.kind == LAYERNORM_LSTM) {
          T* hat = sv + 8 * H;
          sv[9 * H + 1] = normalise(a.data(), hat, H);
          for (int64_t k = 0; k < H; ++k) tmp[k] = hat[k] * S.ln_c[k] + S.ln_c_bias[k];
        }
        for (int64_t k = 0; k < H; ++k) {
          T o_pre = a[3 * H + k];
          if (S.kind == PEEPHOLE_LSTM) o_pre += S.peep[2 * H + k] * a[k];
          T o = sigmoid(o_pre);
          sv[3 * H + k] = o;
          T squashed = S.kind == LAYERNORM_LSTM ? tmp[k] : a[k];
          a[k] = o * tanh_(squashed);  // h_t
        }
        break;
      }
      case CIFG_LSTM:
        for (int64_t k = 0; k < H; ++k) {
          T c_prev = c_row[k];
          T i = sigmoid(x[k] + r[k] + bias(k));
          T g = tanh_(x[H + k] + r[H + k] + bias(H + k));
          T o = sigmoid(x[2 * H + k] + r[2 * H + k] + bias(2 * H + k));
          T c_new = c_prev + i * (g - c_prev);
          sv[k] = i; sv[H + k] = g; sv[2 * H + k] = o;
          cs_row[k] = c_new;
          a[k] = o * tanh_(c_new);
        }
        break;
      case GRU: case LAYERNORM_GRU: {
        const T* rec = r;
        if (S.kind == LAYERNORM_GRU) {
          T* hat = sv + 4 * H;
          sv[7 * H] = normalise(r, hat, G);
          for (int64_t j = 0; j < G; ++j) tmp[j] = hat[j] * S.ln_hh[j];
          rec = tmp.data();
        }
        for (int64_t k = 0; k < H; ++k) {
          T rt = sigmoid(x[k] + rec[k] + bias(k));
          T z = sigmoid(x[H + k] + rec[H + k] + bias(H + k));
          T ghn = rec[2 * H + k] + bias(2 * H + k);
          T n = tanh_(x[2 * H + k] + rt * ghn);
          sv[k] = rt; sv[H + k] = z; sv[2 * H + k] = n; sv[3 * H + k] = ghn;
          a[k] = n + z * (h_row[k] - n);  // (1 - z) h~ + z h_{t-1}
        }
        break;
      }
    }
    if (S.cell_value >= 0) {  // zoneout: keep the cell's own value for backward
      const T* own = c_row != nullptr ? cs_row : a.data();
      for (int64_t k = 0; k < H; ++k) sv[S.cell_value + k] = own[k];
    }
    if (S.zp == T(0)) {  // the row's state and output are written
      for (int64_t k = 0; k < H; ++k) h_row[k] = o_row[k] = a[k];
      if (c_row != nullptr) for (int64_t k = 0; k < H; ++k) c_row[k] = cs_row[k];
      continue;
    }
    for (int64_t k = 0; k < H; ++k) {  // zoneout mixes old and new state
      T keep = S.keep(s, 0, b, k);
      T h_new = keep * h_row[k] + (T(1) - keep) * a[k];
      h_row[k] = h_new;
      o_row[k] = h_new;
    }
    if (c_row != nullptr) {
      for (int64_t k = 0; k < H; ++k) {
        T keep = S.keep(s, 1, b, k);
        T c_new = keep * c_row[k] + (T(1) - keep) * cs_row[k];
        c_row[k] = c_new;
        cs_row[k] = c_new;
      }
    }
  }
}

template <typename T> int64_t grain(const Scan<T>& S) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(S.gates, 1));
}

// -- backward of one step --------------------------------------------------------------

// Per-row accumulators of the small parameters' gradients, each row owned by one thread.
template <typename T> struct Accum {
  T* bias;   // (B, G) dL/db_hh
  T* u;      // (B, H) indrnn
  T* peep;   // (B, 3H)
  T* ln_hh;  // (B, G)
  T* ln_c;   // (B, H), and its shift
  T* ln_c_bias;
};

// Rows [b0, b1) of step t. dh, dc: (B, H) dL/d(state after t), replaced by the direct
// part of dL/d(state before t) (the recurrent product is added by the caller).
// dgi: (B, G) this step's slice of dL/dgi; dgh: (B, G) dL/d(h_in W_hh^T) (the pre-LN
// part for the layernorm cells), the same memory as dgi when the cell allows it.
template <typename T>
void backward_rows(const Scan<T>& S, const Accum<T>& A, int64_t s, int64_t t, const T* grad_out,
                   T* dh, T* dc, T* dgi, T* dgh, int64_t b0, int64_t b1) {
  const int64_t H = S.hidden, G = S.gates;
  std::vector<T> dnew(H), dcn(H), tmp(G), tmp2(G);
  for (int64_t b = b0; b < b1; ++b) {
    T* dh_row = dh + b * H;
    T* dc_row = dc == nullptr ? nullptr : dc + b * H;
    T* dgi_row = dgi + b * G;
    T* dgh_row = dgh + b * G;
    if (!S.valid(t, b)) {  // padded: nothing flows into the gates, the state's grad passes
      for (int64_t j = 0; j < G; ++j) dgi_row[j] = T(0);
      if (dgh != dgi) for (int64_t j = 0; j < G; ++j) dgh_row[j] = T(0);
      continue;
    }
    if (grad_out != nullptr) {
      const T* go = grad_out + (t * S.batch + b) * H;
      for (int64_t k = 0; k < H; ++k) dh_row[k] += go[k];
    }
    // zoneout: the new value reaches the state with weight 1 - keep, the old with keep
    if (S.zp == T(0)) {
      for (int64_t k = 0; k < H; ++k) dnew[k] = dh_row[k], dh_row[k] = T(0);
      if (dc_row != nullptr) for (int64_t k = 0; k < H; ++k) dcn[k] = dc_row[k], dc_row[k] = T(0);
    } else {
    for (int64_t k = 0; k < H; ++k) {
      T keep = S.keep(s, 0, b, k);
      dnew[k] = dh_row[k] * (T(1) - keep);
      dh_row[k] *= keep;
    }
    if (dc_row != nullptr) {
      for (int64_t k = 0; k < H; ++k) {
        T keep = S.keep(s, 1, b, k);
        dcn[k] = dc_row[k] * (T(1) - keep);
        dc_row[k] *= keep;
      }
    }
    }
    const T* sv = S.saved == nullptr ? nullptr : S.saved + (t * S.batch + b) * S.width;
    // the cell's own new value: without zoneout it is the saved state itself
    const T* own = S.cell_value >= 0 ? sv + S.cell_value : nullptr;
    const T* h_t = own != nullptr && num_states(S.kind) == 1 ? own : S.out + (t * S.batch + b) * H;
    const T* h_prev = S.prev(S.out, S.h0, t, b);
    switch (S.kind) {
      case RNN_TANH: case RNN_RELU:
        for (int64_t k = 0; k < H; ++k) {
          T pre = S.kind == RNN_TANH ? T(1) - h_t[k] * h_t[k] : (h_t[k] > T(0) ? T(1) : T(0));
          dgi_row[k] = dnew[k] * pre;
        }
        break;
      case INDRNN: {
        const T* h_in = S.hmask == nullptr ? h_prev : nullptr;
        for (int64_t k = 0; k < H; ++k) {
          T da = h_t[k] > T(0) ? dnew[k] : T(0);
          dgi_row[k] = da;
          T hin = h_in != nullptr ? h_in[k] : h_prev[k] * S.hmask[b * H + k];
          A.u[b * H + k] += da * hin;
        }
        break;
      }
      case LSTM: case PEEPHOLE_LSTM: case LAYERNORM_LSTM: {
        const T* c_t = own != nullptr ? own : S.cs + (t * S.batch + b) * H;
        const T* c_prev = S.prev(S.cs, S.c0, t, b);
        // dL/dC_t from h_t = o tanh(C_t) (through LN(C_t) for the layernorm cell)
        T* dC = tmp.data();
        if (S.kind == LAYERNORM_LSTM) {
          const T* hat = sv + 8 * H;
          T* dsq = tmp2.data();  // dL/d(LN(C_t)) times the gain, per unit
          for (int64_t k = 0; k < H; ++k) {
            T o = sv[3 * H + k];
            T y = hat[k] * S.ln_c[k] + S.ln_c_bias[k];
            T ty = tanh_(y);
            dgi_row[3 * H + k] = dnew[k] * ty * o * (T(1) - o);
            T dy = dnew[k] * o * (T(1) - ty * ty);
            A.ln_c[b * H + k] += dy * hat[k];
            A.ln_c_bias[b * H + k] += dy;
            dsq[k] = dy * S.ln_c[k];
          }
          normalise_backward(dsq, hat, sv[9 * H + 1], dC, H);
          for (int64_t k = 0; k < H; ++k) dC[k] += dcn[k];
        } else {
          for (int64_t k = 0; k < H; ++k) {
            T o = sv[3 * H + k];
            T tc = tanh_(c_t[k]);
            T da_o = dnew[k] * tc * o * (T(1) - o);
            dgi_row[3 * H + k] = da_o;
            dC[k] = dcn[k] + dnew[k] * o * (T(1) - tc * tc);
            if (S.kind == PEEPHOLE_LSTM) {
              dC[k] += da_o * S.peep[2 * H + k];
              A.peep[b * 3 * H + 2 * H + k] += da_o * c_t[k];
            }
          }
        }
        for (int64_t k = 0; k < H; ++k) {
          T i = sv[k], f = sv[H + k], g = sv[2 * H + k];
          T da_i = dC[k] * g * i * (T(1) - i);
          T da_f = dC[k] * c_prev[k] * f * (T(1) - f);
          dgi_row[k] = da_i;
          dgi_row[H + k] = da_f;
          dgi_row[2 * H + k] = dC[k] * i * (T(1) - g * g);
          T dcp = dC[k] * f;
          if (S.kind == PEEPHOLE_LSTM) {
            dcp += da_i * S.peep[k] + da_f * S.peep[H + k];
            A.peep[b * 3 * H + k] += da_i * c_prev[k];
            A.peep[b * 3 * H + H + k] += da_f * c_prev[k];
          }
          dc_row[k] += dcp;
        }
        if (S.kind == LAYERNORM_LSTM) {  // through LN(W_hh h) * gain into the raw product
          const T* hat = sv + 4 * H;
          for (int64_t j = 0; j < G; ++j) {
            A.ln_hh[b * G + j] += dgi_row[j] * hat[j];
            tmp2[j] = dgi_row[j] * S.ln_hh[j];
          }
          normalise_backward(tmp2.data(), hat, sv[9 * H], dgh_row, G);
        }
        break;
      }
      case CIFG_LSTM: {
        const T* c_t = own != nullptr ? own : S.cs + (t * S.batch + b) * H;
        const T* c_prev = S.prev(S.cs, S.c0, t, b);
        for (int64_t k = 0; k < H; ++k) {
          T i = sv[k], g = sv[H + k], o = sv[2 * H + k];
          T tc = tanh_(c_t[k]);
          dgi_row[2 * H + k] = dnew[k] * tc * o * (T(1) - o);
          T dC = dcn[k] + dnew[k] * o * (T(1) - tc * tc);
          dgi_row[k] = dC * (g - c_prev[k]) * i * (T(1) - i);
          dgi_row[H + k] = dC * i * (T(1) - g * g);
          dc_row[k] += dC * (T(1) - i);
        }
        break;
      }
      case GRU: case LAYERNORM_GRU: {
        T* dpost = S.kind == GRU ? dgh_row : tmp.data();  // dL/d(recurrent part + b_hh)
        for (int64_t k = 0; k < H; ++k) {
          T rt = sv[k], z = sv[H + k], n = sv[2 * H + k], ghn = sv[3 * H + k];
          T d = dnew[k];
          T dz = d * (h_prev[k] - n) * z * (T(1) - z);
          T dn = d * (T(1) - z) * (T(1) - n * n);
          T dr = dn * ghn * rt * (T(1) - rt);
          dgi_row[k] = dr;
          dgi_row[H + k] = dz;
          dgi_row[2 * H + k] = dn;
          dpost[k] = dr;
          dpost[H + k] = dz;
          dpost[2 * H + k] = dn * rt;
          dh_row[k] += d * z;  // h_t = ... + z h_{t-1}: the carried copy, never masked
        }
        if (S.bias != nullptr)
          for (int64_t j = 0; j < G; ++j) A.bias[b * G + j] += dpost[j];
        if (S.kind == LAYERNORM_GRU) {
          const T* hat = sv + 4 * H;
          for (int64_t j = 0; j < G; ++j) {
            A.ln_hh[b * G + j] += dpost[j] * hat[j];
            tmp2[j] = dpost[j] * S.ln_hh[j];
          }
          normalise_backward(tmp2.data(), hat, sv[7 * H], dgh_row, G);
        }
        break;
      }
    }
  }
}

// -- the drivers -----------------------------------------------------------------------

template <typename T> const T* ptr(const std::optional<Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

struct Args {  // what Python hands over, shared by forward and backward
  int64_t kind;
  Tensor gi;                        // (T, B, G)
  std::optional<Tensor> weight;     // W_hh for the step (plain (G, H) or packed); indrnn: u
  bool packed;
  std::optional<Tensor> bias;       // b_hh (G,)
  std::vector<Tensor> extras;       // peephole: [p (3, H)]; layernorm: [gain (G,), (C gain, C shift)]
  std::vector<Tensor> state0;       // (B, H) each
  std::optional<Tensor> lengths;    // (B,) int64
  bool reverse;
  std::optional<Tensor> hmask;      // (B, H)
  std::optional<Tensor> zmask;      // (T, S, B, H) bool
  double zp;
};

template <typename T> Scan<T> make_scan(const Args& a, const Tensor& out, const Tensor& cs,
                                        const Tensor& saved) {
  Scan<T> S;
  S.kind = a.kind;
  S.steps = a.gi.size(0);
  S.batch = a.gi.size(1);
  S.gates = a.gi.size(2);
  S.hidden = S.gates / num_chunks(a.kind);
  S.width = saved_width(a.kind, S.hidden, a.zp != 0);
  S.cell_value = a.zp != 0 && saves_cell_value(a.kind) ? base_width(a.kind, S.hidden) : -1;
  S.reverse = a.reverse;
  S.gi = a.gi.data_ptr<T>();
  S.bias = ptr<T>(a.bias);
  S.u = a.kind == INDRNN ? a.weight->data_ptr<T>() : nullptr;
  S.peep = a.kind == PEEPHOLE_LSTM ? a.extras.at(0).data_ptr<T>() : nullptr;
  bool ln = a.kind == LAYERNORM_LSTM || a.kind == LAYERNORM_GRU;
  S.ln_hh = ln ? a.extras.at(0).data_ptr<T>() : nullptr;
  S.ln_c = a.kind == LAYERNORM_LSTM ? a.extras.at(1).data_ptr<T>() : nullptr;
  S.ln_c_bias = a.kind == LAYERNORM_LSTM ? a.extras.at(2).data_ptr<T>() : nullptr;
  S.lengths = a.lengths.has_value() ? a.lengths->data_ptr<int64_t>() : nullptr;
  S.hmask = ptr<T>(a.hmask);
  S.zmask = a.zmask.has_value() ? a.zmask->data_ptr<bool>() : nullptr;
  S.zp = T(a.zp);
  S.h0 = a.state0.at(0).data_ptr<T>();
  S.c0 = a.state0.size() > 1 ? a.state0[1].data_ptr<T>() : nullptr;
  S.out = out.data_ptr<T>();
  S.cs = cs.defined() ? cs.data_ptr<T>() : nullptr;
  S.saved = saved.defined() ? saved.data_ptr<T>() : nullptr;
  return S;
}

int64_t step_time(int64_t s, int64_t steps, bool reverse) { return reverse ? steps - 1 - s : s; }

// Returns [out (T, B, H), final states..., C_t for every step (or empty), saved].
std::vector<Tensor> forward(const Args& a) {
  const int64_t steps = a.gi.size(0), batch = a.gi.size(1), H = a.state0.at(0).size(1);
  Tensor out = at::empty({steps, batch, H}, a.gi.options());
  Tensor cs = num_states(a.kind) > 1 ? at::empty_like(out) : Tensor();
  int64_t width = saved_width(a.kind, H, a.zp != 0);
  Tensor saved = width > 0 ? at::empty({steps, batch, width}, a.gi.options()) : Tensor();
  std::vector<Tensor> state;
  for (const auto& s0 : a.state0) state.push_back(s0.clone());
  AT_DISPATCH_FLOATING_TYPES(a.gi.scalar_type(), "rnnzoo_scan_forward", [&] {
    Scan<scalar_t> S = make_scan<scalar_t>(a, out, cs, saved);
    scalar_t* h = state[0].data_ptr<scalar_t>();
    scalar_t* c = state.size() > 1 ? state[1].data_ptr<scalar_t>() : nullptr;
    for (int64_t s = 0; s < steps; ++s) {
      int64_t t = step_time(s, steps, a.reverse);
      Tensor h_in = a.hmask.has_value() ? state[0] * *a.hmask : state[0];
      Tensor gh;
      if (a.kind != INDRNN) gh = matmul(h_in, *a.weight, a.packed);
      const scalar_t* gh_p = gh.defined() ? gh.data_ptr<scalar_t>() : nullptr;
      const scalar_t* hin_p = h_in.data_ptr<scalar_t>();
      at::parallel_for(0, batch, grain(S), [&](int64_t b0, int64_t b1) {
        forward_rows(S, s, t, gh_p, hin_p, h, c, b0, b1);
      });
    }
  });
  std::vector<Tensor> result{out};
  for (auto& s : state) result.push_back(s);
  result.push_back(cs);
  result.push_back(saved);
  return result;
}

// Returns [dgi, d weight (W_hh (G, H) or u (H,)), d bias or empty, d state0..., d extras...].
std::vector<Tensor> backward(const Args& a, const std::optional<Tensor>& weight_t, const Tensor& out,
                             const Tensor& cs, const Tensor& saved,
                             const std::optional<Tensor>& grad_out,
                             const std::vector<std::optional<Tensor>>& grad_final) {
  const int64_t steps = a.gi.size(0), batch = a.gi.size(1), G = a.gi.size(2);
  const int64_t H = a.state0.at(0).size(1);
  const bool ln = a.kind == LAYERNORM_LSTM || a.kind == LAYERNORM_GRU;
  const bool own_dgh = ln || a.kind == GRU;  // dL/d(h W_hh^T) differs from dL/dgi
  // a.gi is only its shape here (backward keeps no copy of it): see rnnzoo/native.py
  Tensor dgi = at::empty({steps, batch, G}, out.options());
  Tensor dgh = own_dgh ? at::empty_like(dgi) : dgi;
  std::vector<Tensor> d;
  for (size_t j = 0; j < a.state0.size(); ++j) {
    const auto& g = grad_final.at(j);
    d.push_back(g.has_value() && g->defined() ? g->clone() : at::zeros_like(a.state0[j]));
  }
  auto zeros = [&](int64_t n) { return at::zeros({batch, n}, a.gi.options()); };
  Tensor acc_bias = a.bias.has_value() && (a.kind == GRU || a.kind == LAYERNORM_GRU) ? zeros(G) : Tensor();
  Tensor acc_u = a.kind == INDRNN ? zeros(H) : Tensor();
  Tensor acc_peep = a.kind == PEEPHOLE_LSTM ? zeros(3 * H) : Tensor();
  Tensor acc_ln = ln ? zeros(G) : Tensor();
  Tensor acc_lnc = a.kind == LAYERNORM_LSTM ? zeros(H) : Tensor();
  Tensor acc_lncb = a.kind == LAYERNORM_LSTM ? zeros(H) : Tensor();
  Tensor go = grad_out.has_value() && grad_out->defined() ? grad_out->contiguous() : Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.gi.scalar_type(), "rnnzoo_scan_backward", [&] {
    Scan<scalar_t> S = make_scan<scalar_t>(a, out, cs, saved);
    auto p = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    Accum<scalar_t> A{p(acc_bias), p(acc_u), p(acc_peep), p(acc_ln), p(acc_lnc), p(acc_lncb)};
    const scalar_t* go_p = p(go);
    scalar_t* dh = d[0].data_ptr<scalar_t>();
    scalar_t* dc = d.size() > 1 ? d[1].data_ptr<scalar_t>() : nullptr;
    for (int64_t s = steps - 1; s >= 0; --s) {
      int64_t t = step_time(s, steps, a.reverse);
      Tensor dgi_t = dgi[t], dgh_t = dgh[t];
      scalar_t* dgi_p = dgi_t.data_ptr<scalar_t>();
      scalar_t* dgh_p = dgh_t.data_ptr<scalar_t>();
      at::parallel_for(0, batch, grain(S), [&](int64_t b0, int64_t b1) {
        backward_rows(S, A, s, t, go_p, dh, dc, dgi_p, dgh_p, b0, b1);
      });
      // dL/dh_{t-1} += dL/d(h_in) through the recurrent product, times the dropout mask
      Tensor rec = a.kind == INDRNN ? dgh_t * *a.weight : matmul(dgh_t, *weight_t, a.packed);
      if (a.hmask.has_value()) rec.mul_(*a.hmask);
      d[0].add_(rec);
    }
  });
  // The recurrent input of every step, (T, B, H), for the weight gradient: zero rows
  // where padded (their dgh rows are zero too).
  Tensor h_in = at::zeros_like(out);
  AT_DISPATCH_FLOATING_TYPES(a.gi.scalar_type(), "rnnzoo_scan_inputs", [&] {
    Scan<scalar_t> S = make_scan<scalar_t>(a, out, cs, saved);
    scalar_t* dst = h_in.data_ptr<scalar_t>();
    at::parallel_for(0, steps * batch, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        int64_t t = i / batch, b = i % batch;
        if (!S.valid(t, b)) continue;
        const scalar_t* src = S.prev(S.out, S.h0, t, b);
        for (int64_t k = 0; k < H; ++k)
          dst[i * H + k] = S.hmask == nullptr ? src[k] : src[k] * S.hmask[b * H + k];
      }
    });
  });
  std::vector<Tensor> result{dgi};
  if (a.kind == INDRNN) {
    result.push_back(acc_u.sum(0));
  } else {
    result.push_back(dgh.view({steps * batch, G}).t().mm(h_in.view({steps * batch, H})));
  }
  if (!a.bias.has_value()) result.push_back(Tensor());
  else if (acc_bias.defined()) result.push_back(acc_bias.sum(0));
  else result.push_back(dgi.sum({0, 1}));
  for (auto& x : d) result.push_back(x);
  if (acc_peep.defined()) result.push_back(acc_peep.sum(0).view({3, H}));
  if (acc_ln.defined()) result.push_back(acc_ln.sum(0));
  if (acc_lnc.defined()) {
    result.push_back(acc_lnc.sum(0));
    result.push_back(acc_lncb.sum(0));
  }
  return result;
}

Args make_args(int64_t kind, Tensor gi, std::optional<Tensor> weight, bool packed,
               std::optional<Tensor> bias, std::vector<Tensor> extras, std::vector<Tensor> state0,
               std::optional<Tensor> lengths, bool reverse, std::optional<Tensor> hmask,
               std::optional<Tensor> zmask, double zp) {
  TORCH_CHECK(gi.dim() == 3, "gi must be a (T, B, G) tensor");
  TORCH_CHECK(!state0.empty(), "state0 must hold the initial state");
  return Args{kind, gi, weight, packed, bias, extras, state0, lengths, reverse, hmask, zmask, zp};
}

std::vector<Tensor> py_forward(int64_t kind, Tensor gi, std::optional<Tensor> weight, bool packed,
                               std::optional<Tensor> bias, std::vector<Tensor> extras,
                               std::vector<Tensor> state0, std::optional<Tensor> lengths,
                               bool reverse, std::optional<Tensor> hmask,
                               std::optional<Tensor> zmask, double zp) {
  at::NoGradGuard no_grad;
  TORCH_CHECK(gi.is_contiguous(), "gi must be contiguous");
  return forward(make_args(kind, gi, weight, packed, bias, extras, state0, lengths, reverse, hmask,
                           zmask, zp));
}

std::vector<Tensor> py_backward(int64_t kind, Tensor gi, std::optional<Tensor> weight,
                                std::optional<Tensor> weight_t, bool packed,
                                std::optional<Tensor> bias, std::vector<Tensor> extras,
                                std::vector<Tensor> state0, std::optional<Tensor> lengths,
                                bool reverse, std::optional<Tensor> hmask,
                                std::optional<Tensor> zmask, double zp, Tensor out,
                                std::optional<Tensor> cs, std::optional<Tensor> saved,
                                std::optional<Tensor> grad_out,
                                std::vector<std::optional<Tensor>> grad_final) {
  at::NoGradGuard no_grad;
  Args a = make_args(kind, gi, weight, packed, bias, extras, state0, lengths, reverse, hmask, zmask, zp);
  return backward(a, weight_t, out, cs.value_or(Tensor()), saved.value_or(Tensor()), grad_out,
                  grad_final);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "rnnzoo's compiled time loop (see rnnzoo/native.py)";
  m.def("forward", &py_forward, "one layer and direction, all steps");
  m.def("backward", &py_backward, "its backward");
  m.attr("VERSION") = 1;
}
