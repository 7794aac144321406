// The time loop of every recurrent cell, forward and backward, in compiled code.
//
// One call runs one layer and one direction over all T steps. Each step is the step's
// matrix products (h_{t-1} W_hh^T, and x_t W_ih^T: the input is projected here, step by
// step, LayerNorm included, so no tensor of every step's gates is ever made) and ONE
// pass over the batch rows that applies the cell's equations, the regularisers (hidden
// dropout, zoneout) and the padding rule together.
// Rows of a batch never meet in a recurrence, so each thread runs the whole loop for
// its own slice of the batch, with no barrier between steps. Backward walks the steps
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
// The layernorm cells then keep LN(W_ih x) before its gain (G) and its 1/std (1) at
// `input_norm_at`: their input part is normalised here too, step by step.

int64_t base_width(int64_t kind, int64_t H) {
  switch (kind) {
    case LSTM: case PEEPHOLE_LSTM: return 4 * H;
    case CIFG_LSTM: return 3 * H;
    case GRU: return 4 * H;
    case LAYERNORM_GRU: return 7 * H + 1 + 3 * H + 1;
    case LAYERNORM_LSTM: return 9 * H + 2 + 4 * H + 1;
    default: return 0;
  }
}

bool layernorm(int64_t kind) { return kind == LAYERNORM_LSTM || kind == LAYERNORM_GRU; }

int64_t input_norm_at(int64_t kind, int64_t H) {
  return kind == LAYERNORM_LSTM ? 9 * H + 2 : 7 * H + 1;
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

// -- layer normalisation of one row -----------------------------------------------------

// sum over k < n of f(k). `omp simd reduction` (setup.py compiles with -fopenmp-simd)
// lets the compiler keep partial sums in vector lanes: a plain running sum is one
// dependency chain it may not reorder, since float addition is not associative.
template <typename T, typename F> T sum_over(int64_t n, F f) {
  T total = 0;
#pragma omp simd reduction(+ : total)
  for (int64_t k = 0; k < n; ++k) total += f(k);
  return total;
}

// y_hat = (x - mean) / sqrt(var + eps) over n values; returns 1 / sqrt(var + eps).
template <typename T> T normalise(const T* __restrict x, T* __restrict y_hat, int64_t n) {
  T mean = sum_over<T>(n, [&](int64_t k) { return x[k]; }) / n;
  T var = sum_over<T>(n, [&](int64_t k) { return (x[k] - mean) * (x[k] - mean); }) / n;
  T rstd = T(1) / std::sqrt(var + T(LN_EPS));
  for (int64_t k = 0; k < n; ++k) y_hat[k] = (x[k] - mean) * rstd;
  return rstd;
}

// Given dL/dy_hat (dy, n values), the normalised values and 1/std: dL/dx, into dx.
template <typename T>
void normalise_backward(const T* __restrict dy, const T* __restrict y_hat, T rstd,
                        T* __restrict dx, int64_t n) {
  T mean_dy = sum_over<T>(n, [&](int64_t k) { return dy[k]; }) / n;
  T mean_dy_y = sum_over<T>(n, [&](int64_t k) { return dy[k] * y_hat[k]; }) / n;
  for (int64_t k = 0; k < n; ++k) dx[k] = rstd * (dy[k] - mean_dy - y_hat[k] * mean_dy_y);
}

// y = LN(x) * gain (+ shift), the normalised values into hat and 1/std into *rstd.
template <typename T>
void scaled_norm(const T* __restrict x, T* __restrict hat, T* rstd, const T* __restrict gain,
                 const T* shift, T* __restrict y, int64_t n) {
  *rstd = normalise(x, hat, n);
  for (int64_t k = 0; k < n; ++k) y[k] = hat[k] * gain[k];
  if (shift != nullptr)
    for (int64_t k = 0; k < n; ++k) y[k] += shift[k];
}

// Its backward: the gain's (and shift's) gradients added into their rows, dL/dx into dx
// (which may be dy's memory: dy is read before dx is written), `scaled` a scratch row.
template <typename T>
void scaled_norm_backward(const T* dy, const T* __restrict hat, T rstd, const T* __restrict gain,
                          T* __restrict gain_acc, T* shift_acc, T* __restrict scaled, T* dx,
                          int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    gain_acc[k] += dy[k] * hat[k];
    scaled[k] = dy[k] * gain[k];
  }
  if (shift_acc != nullptr)
    for (int64_t k = 0; k < n; ++k) shift_acc[k] += dy[k];
  normalise_backward(scaled, hat, rstd, dx, n);
}

// -- everything one call needs, as raw pointers ------------------------------------------

template <typename T> struct Scan {
  int64_t kind, steps, batch, hidden, gates, width;
  int64_t cell_value;   // offset in a saved row of the cell's own new value, -1: none
  bool reverse;
  const T* gi;          // (T, B, G) input part of the gates
  const T* bias;        // (G,) b_hh, or no_bias's zeros
  std::vector<T> no_bias, no_b_ih;
  const T* u;           // indrnn: (H,) recurrent weights (already clamped)
  const T* peep;        // peephole: (3, H) p_i, p_f, p_o
  const T* ln_hh;       // layernorm: (G,) gain of LN(W_hh h)
  const T* ln_c;        // layernorm_lstm: (H,) gain and (H,) shift of LN(C_t)
  const T* ln_c_bias;
  const T* ln_ih;       // layernorm: (G,) gain of LN(W_ih x), and b_ih (or zeros) after it
  const T* b_ih;
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

// The per-row math, written as plain loops over restrict pointers so that the compiler
// vectorises each one (with -O3 and the machine's vector units, see setup.py).
#define R __restrict

template <typename T> void sigmoid_inplace(T* R y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = sigmoid(y[k]);
}
template <typename T> void tanh_inplace(T* R y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = tanh_(y[k]);
}
template <typename T> void add3(const T* R x, const T* R r, const T* R b, T* R y, int64_t n) {
  for (int64_t k = 0; k < n; ++k) y[k] = x[k] + r[k] + b[k];
}

// LN(r; gain) into rec for the layernorm cells (its normalised part saved in sv at
// `at`, 1/std at `rstd_at`); returns the recurrent part the gates add.
template <typename T>
const T* recurrent_part(const Scan<T>& S, const T* R r, T* R sv, int64_t at, int64_t rstd_at,
                        T* R rec) {
  if (S.kind != LAYERNORM_LSTM && S.kind != LAYERNORM_GRU) return r;
  const int64_t G = S.gates;
  scaled_norm(r, sv + at, sv + rstd_at, S.ln_hh, static_cast<const T*>(nullptr), rec, G);
  return rec;
}

// lstm, peephole_lstm, layernorm_lstm: gates into sv (i, f, C~, o), C_t into c_new and
// the cell's h_t into h_new.
template <typename T>
void lstm_forward(const Scan<T>& S, const T* R x, const T* r, const T* R c_prev, T* R sv,
                  T* R c_new, T* R h_new, T* R rec) {
  const int64_t H = S.hidden, G = S.gates;
  r = recurrent_part(S, r, sv, 4 * H, 9 * H, rec);
  T* R a = sv;
  add3(x, r, S.bias, a, G);
  const T* R p = S.peep;
  if (S.kind == PEEPHOLE_LSTM) {
    for (int64_t k = 0; k < H; ++k) {
      a[k] += p[k] * c_prev[k];
      a[H + k] += p[H + k] * c_prev[k];
    }
  }
  sigmoid_inplace(a, 2 * H);
  tanh_inplace(a + 2 * H, H);
  for (int64_t k = 0; k < H; ++k) c_new[k] = a[H + k] * c_prev[k] + a[k] * a[2 * H + k];
  if (S.kind == PEEPHOLE_LSTM)
    for (int64_t k = 0; k < H; ++k) a[3 * H + k] += p[2 * H + k] * c_new[k];
  sigmoid_inplace(a + 3 * H, H);
  if (S.kind == LAYERNORM_LSTM) {  // h_t = o tanh(LN(C_t; g_c, b_c))
    T* R hat = sv + 8 * H;
    sv[9 * H + 1] = normalise(c_new, hat, H);
    const T* R gc = S.ln_c;
    const T* R bc = S.ln_c_bias;
    for (int64_t k = 0; k < H; ++k) h_new[k] = hat[k] * gc[k] + bc[k];
  } else {
    for (int64_t k = 0; k < H; ++k) h_new[k] = c_new[k];
  }
  tanh_inplace(h_new, H);
  for (int64_t k = 0; k < H; ++k) h_new[k] *= a[3 * H + k];
}

template <typename T>
void cifg_forward(const Scan<T>& S, const T* R x, const T* R r, const T* R c_prev, T* R sv,
                  T* R c_new, T* R h_new) {
  const int64_t H = S.hidden;
  T* R a = sv;  // i, C~, o
  add3(x, r, S.bias, a, 3 * H);
  sigmoid_inplace(a, H);
  tanh_inplace(a + H, H);
  sigmoid_inplace(a + 2 * H, H);
  for (int64_t k = 0; k < H; ++k) c_new[k] = c_prev[k] + a[k] * (a[H + k] - c_prev[k]);
  for (int64_t k = 0; k < H; ++k) h_new[k] = c_new[k];
  tanh_inplace(h_new, H);
  for (int64_t k = 0; k < H; ++k) h_new[k] *= a[2 * H + k];
}

// gru, layernorm_gru: r, z, h~ and W_hn h + b_hn into sv, h_t into h_new.
template <typename T>
void gru_forward(const Scan<T>& S, const T* R x, const T* r, const T* R h_prev, T* R sv,
                 T* R h_new, T* R rec) {
  const int64_t H = S.hidden;
  r = recurrent_part(S, r, sv, 4 * H, 7 * H, rec);
  const T* R rr = r;
  const T* R bias = S.bias;
  T* R a = sv;
  add3(x, rr, bias, a, 2 * H);
  sigmoid_inplace(a, 2 * H);
  for (int64_t k = 0; k < H; ++k) {
    T ghn = rr[2 * H + k] + bias[2 * H + k];
    a[3 * H + k] = ghn;
    a[2 * H + k] = x[2 * H + k] + a[k] * ghn;
  }
  tanh_inplace(a + 2 * H, H);
  for (int64_t k = 0; k < H; ++k) h_new[k] = a[2 * H + k] + a[H + k] * (h_prev[k] - a[2 * H + k]);
}

// One forward step for rows [b0, b1). `gh`: (b1 - b0, G) h_in @ W_hh^T of those rows
// (null for indrnn), `h_in`: (b1 - b0, H) their recurrent input (h_{t-1}, masked by
// hidden dropout), `h`/`c`: (B, H) the carried state, updated in place. The input part
// of the gates comes from `gi_rows` (row b at (b - b0) * gi_stride) where the step
// projected it, else from S.gi.
template <typename T>
void forward_rows(const Scan<T>& S, int64_t s, int64_t t, const T* gh, const T* h_in, T* h, T* c,
                  int64_t b0, int64_t b1, const T* gi_rows, int64_t gi_stride) {
  const int64_t H = S.hidden, G = S.gates;
  std::vector<T> buffers(G + H + H + S.width + G);
  T* rec = buffers.data();        // (G) the recurrent part after LN
  T* h_new = rec + G;             // (H) the cell's new h
  T* c_new = h_new + H;           // (H) and C (written to cs when backward needs it)
  T* scratch = c_new + H;         // (width) the activations, when backward needs none
  T* xin = scratch + S.width;     // (G) the normalised input part (layernorm)
  for (int64_t b = b0; b < b1; ++b) {
    T* o_row = S.out + (t * S.batch + b) * H;
    T* h_row = h + b * H;
    if (!S.valid(t, b)) {  // padded: the state stays, the output is zero
      for (int64_t k = 0; k < H; ++k) o_row[k] = T(0);
      continue;
    }
    const T* x = gi_rows != nullptr ? gi_rows + (b - b0) * gi_stride : S.gi + (t * S.batch + b) * G;
    const T* r = gh == nullptr ? nullptr : gh + (b - b0) * G;
    T* sv = S.saved == nullptr ? scratch : S.saved + (t * S.batch + b) * S.width;
    if (layernorm(S.kind)) {  // the input part: LN(W_ih x; g_ih) + b_ih
      const int64_t at = input_norm_at(S.kind, H);
      scaled_norm(x, sv + at, sv + at + G, S.ln_ih, S.b_ih, xin, G);
      x = xin;
    }
    T* c_row = c == nullptr ? nullptr : c + b * H;
    T* cs_row = S.cs == nullptr ? c_new : S.cs + (t * S.batch + b) * H;
    switch (S.kind) {
      case RNN_TANH:
        add3(x, r, S.bias, h_new, H);
        tanh_inplace(h_new, H);
        break;
      case RNN_RELU:
        add3(x, r, S.bias, h_new, H);
        for (int64_t k = 0; k < H; ++k) h_new[k] = h_new[k] > T(0) ? h_new[k] : T(0);
        break;
      case INDRNN: {
        const T* hin = h_in + (b - b0) * H;
        for (int64_t k = 0; k < H; ++k) {
          T v = x[k] + S.u[k] * hin[k];
          h_new[k] = v > T(0) ? v : T(0);
        }
        break;
      }
      case LSTM: case PEEPHOLE_LSTM: case LAYERNORM_LSTM:
        lstm_forward(S, x, r, c_row, sv, cs_row, h_new, rec);
        break;
      case CIFG_LSTM:
        cifg_forward(S, x, r, c_row, sv, cs_row, h_new);
        break;
      case GRU: case LAYERNORM_GRU:
        gru_forward(S, x, r, h_row, sv, h_new, rec);
        break;
    }
    if (S.cell_value >= 0) {  // zoneout: keep the cell's own value for backward
      const T* own = c_row != nullptr ? cs_row : h_new;
      std::copy(own, own + H, sv + S.cell_value);
    }
    if (S.zp == T(0)) {  // the row's state and output are written
      std::copy(h_new, h_new + H, h_row);
      std::copy(h_new, h_new + H, o_row);
      if (c_row != nullptr) std::copy(cs_row, cs_row + H, c_row);
      continue;
    }
    for (int64_t k = 0; k < H; ++k) {  // zoneout mixes old and new state
      T keep = S.keep(s, 0, b, k);
      T mixed = keep * h_row[k] + (T(1) - keep) * h_new[k];
      h_row[k] = mixed;
      o_row[k] = mixed;
    }
    if (c_row != nullptr) {
      for (int64_t k = 0; k < H; ++k) {
        T keep = S.keep(s, 1, b, k);
        T mixed = keep * c_row[k] + (T(1) - keep) * cs_row[k];
        c_row[k] = mixed;
        cs_row[k] = mixed;
      }
    }
  }
}


// Rows of a batch never meet in a recurrence, so each thread runs the whole time loop
// for its own slice of the batch: no barrier between steps, and each step's product is
// a single-threaded one on that slice.
int64_t slice(int64_t batch) {
  int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  return (batch + threads - 1) / threads;
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
  T* ln_ih;  // (B, G), and b_ih's
  T* b_ih;
};

// lstm, peephole_lstm, layernorm_lstm backward of one row: dgi (G) from dnew = dL/dh_t
// and dcn = dL/dC_t (the cell's own), the direct dL/dC_{t-1} added into dc_prev, the
// pre-LN gradient of the recurrent part into dgh (layernorm), small grads into A rows.
template <typename T>
void lstm_backward(const Scan<T>& S, const T* R dnew, const T* R dcn, const T* R sv,
                   const T* R c_t, const T* R c_prev, T* R dgi, T* R dgh, T* R dc_prev,
                   T* R peep_acc, T* R ln_acc, T* R lnc_acc, T* R lncb_acc, T* R dC, T* R tmp) {
  const int64_t H = S.hidden, G = S.gates;
  const T* R o = sv + 3 * H;
  if (S.kind == LAYERNORM_LSTM) {
    const T* R hat = sv + 8 * H;
    const T* R gc = S.ln_c;
    const T* R bc = S.ln_c_bias;
    for (int64_t k = 0; k < H; ++k) tmp[k] = hat[k] * gc[k] + bc[k];
    tanh_inplace(tmp, H);  // tanh(LN(C_t))
    for (int64_t k = 0; k < H; ++k) {
      T ty = tmp[k];
      dgi[3 * H + k] = dnew[k] * ty * o[k] * (T(1) - o[k]);
      T dy = dnew[k] * o[k] * (T(1) - ty * ty);
      lnc_acc[k] += dy * hat[k];
      lncb_acc[k] += dy;
      tmp[k] = dy * gc[k];  // dL/d(normalised C_t)
    }
    normalise_backward(tmp, hat, sv[9 * H + 1], dC, H);
    for (int64_t k = 0; k < H; ++k) dC[k] += dcn[k];
  } else {
    for (int64_t k = 0; k < H; ++k) tmp[k] = c_t[k];
    tanh_inplace(tmp, H);
    for (int64_t k = 0; k < H; ++k) {
      T tc = tmp[k];
      dgi[3 * H + k] = dnew[k] * tc * o[k] * (T(1) - o[k]);
      dC[k] = dcn[k] + dnew[k] * o[k] * (T(1) - tc * tc);
    }
  }
  const T* R p = S.peep;
  if (S.kind == PEEPHOLE_LSTM) {  // o_t saw C_t
    for (int64_t k = 0; k < H; ++k) {
      dC[k] += dgi[3 * H + k] * p[2 * H + k];
      peep_acc[2 * H + k] += dgi[3 * H + k] * c_t[k];
    }
  }
  for (int64_t k = 0; k < H; ++k) {
    T i = sv[k], f = sv[H + k], g = sv[2 * H + k];
    dgi[k] = dC[k] * g * i * (T(1) - i);
    dgi[H + k] = dC[k] * c_prev[k] * f * (T(1) - f);
    dgi[2 * H + k] = dC[k] * i * (T(1) - g * g);
    dc_prev[k] += dC[k] * f;
  }
  if (S.kind == PEEPHOLE_LSTM) {  // i_t and f_t saw C_{t-1}
    for (int64_t k = 0; k < H; ++k) {
      dc_prev[k] += dgi[k] * p[k] + dgi[H + k] * p[H + k];
      peep_acc[k] += dgi[k] * c_prev[k];
      peep_acc[H + k] += dgi[H + k] * c_prev[k];
    }
  }
  if (S.kind == LAYERNORM_LSTM)  // through LN(W_hh h) * gain into the raw product
    scaled_norm_backward(dgi, sv + 4 * H, sv[9 * H], S.ln_hh, ln_acc, static_cast<T*>(nullptr),
                         tmp, dgh, G);
}

template <typename T>
void cifg_backward(const Scan<T>& S, const T* R dnew, const T* R dcn, const T* R sv,
                   const T* R c_t, const T* R c_prev, T* R dgi, T* R dc_prev, T* R tmp) {
  const int64_t H = S.hidden;
  for (int64_t k = 0; k < H; ++k) tmp[k] = c_t[k];
  tanh_inplace(tmp, H);
  for (int64_t k = 0; k < H; ++k) {
    T i = sv[k], g = sv[H + k], o = sv[2 * H + k], tc = tmp[k];
    dgi[2 * H + k] = dnew[k] * tc * o * (T(1) - o);
    T dC = dcn[k] + dnew[k] * o * (T(1) - tc * tc);
    dgi[k] = dC * (g - c_prev[k]) * i * (T(1) - i);
    dgi[H + k] = dC * i * (T(1) - g * g);
    dc_prev[k] += dC * (T(1) - i);
  }
}

// gru, layernorm_gru: dgi, and the gradient of the recurrent part (after LN: dpost; raw:
// dgh), dL/dh_{t-1} through z_t h_{t-1} added into dh_prev.
template <typename T>
void gru_backward(const Scan<T>& S, const T* R dnew, const T* R sv, const T* R h_prev, T* R dgi,
                  T* R dpost, T* R dgh, T* R dh_prev, T* R bias_acc, T* R ln_acc, T* R tmp) {
  const int64_t H = S.hidden, G = S.gates;
  for (int64_t k = 0; k < H; ++k) {
    T rt = sv[k], z = sv[H + k], n = sv[2 * H + k], ghn = sv[3 * H + k], d = dnew[k];
    T dz = d * (h_prev[k] - n) * z * (T(1) - z);
    T dn = d * (T(1) - z) * (T(1) - n * n);
    T dr = dn * ghn * rt * (T(1) - rt);
    dgi[k] = dr;
    dgi[H + k] = dz;
    dgi[2 * H + k] = dn;
    dpost[k] = dr;
    dpost[H + k] = dz;
    dpost[2 * H + k] = dn * rt;
    dh_prev[k] += d * z;  // h_t = ... + z h_{t-1}: the carried copy, never masked
  }
  if (bias_acc != nullptr)
    for (int64_t j = 0; j < G; ++j) bias_acc[j] += dpost[j];
  if (S.kind == LAYERNORM_GRU)
    scaled_norm_backward(dpost, sv + 4 * H, sv[7 * H], S.ln_hh, ln_acc,
                         static_cast<T*>(nullptr), tmp, dgh, G);
}

// Rows [b0, b1) of step t. dh, dc: (B, H) dL/d(state after t), replaced by the direct
// part of dL/d(state before t) (the recurrent product is added by the caller).
// dgi: (B, G) this step's slice of dL/dgi; dgh: (B, G) dL/d(h_in W_hh^T) (the pre-LN
// part for the layernorm cells), the same memory as dgi when the cell allows it.
template <typename T>
void backward_rows(const Scan<T>& S, const Accum<T>& A, int64_t s, int64_t t, const T* grad_out,
                   T* dh, T* dc, T* dgi, T* dgh, int64_t b0, int64_t b1) {
  const int64_t H = S.hidden, G = S.gates;
  std::vector<T> buffers(3 * H + 2 * G);
  T* dnew = buffers.data();  // (H) dL/d(the cell's new h), after zoneout
  T* dcn = dnew + H;         // (H) the same for C
  T* dC = dcn + H;           // (H)
  T* tmp = dC + H;           // (G)
  T* dpost = tmp + G;        // (G)
  auto row = [](T* base, int64_t b, int64_t n) { return base == nullptr ? nullptr : base + b * n; };
  for (int64_t b = b0; b < b1; ++b) {
    T* dh_row = dh + b * H;
    T* dc_row = row(dc, b, H);
    T* dgi_row = dgi + b * G;
    T* dgh_row = dgh + b * G;
    if (!S.valid(t, b)) {  // padded: nothing flows into the gates, the state's grad passes
      std::fill(dgi_row, dgi_row + G, T(0));
      if (dgh != dgi) std::fill(dgh_row, dgh_row + G, T(0));
      continue;
    }
    if (grad_out != nullptr) {
      const T* go = grad_out + (t * S.batch + b) * H;
      for (int64_t k = 0; k < H; ++k) dh_row[k] += go[k];
    }
    // zoneout: the new value reaches the state with weight 1 - keep, the old with keep
    if (S.zp == T(0)) {
      std::copy(dh_row, dh_row + H, dnew);
      std::fill(dh_row, dh_row + H, T(0));
      if (dc_row != nullptr) {
        std::copy(dc_row, dc_row + H, dcn);
        std::fill(dc_row, dc_row + H, T(0));
      }
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
    const T* h_prev = S.prev(S.out, S.h0, t, b);
    const T* h_t = own != nullptr ? own : S.out + (t * S.batch + b) * H;
    switch (S.kind) {
      case RNN_TANH:
        for (int64_t k = 0; k < H; ++k) dgi_row[k] = dnew[k] * (T(1) - h_t[k] * h_t[k]);
        break;
      case RNN_RELU:
        for (int64_t k = 0; k < H; ++k) dgi_row[k] = h_t[k] > T(0) ? dnew[k] : T(0);
        break;
      case INDRNN: {
        T* u_acc = A.u + b * H;
        for (int64_t k = 0; k < H; ++k) {
          T da = h_t[k] > T(0) ? dnew[k] : T(0);
          dgi_row[k] = da;
          T hin = S.hmask == nullptr ? h_prev[k] : h_prev[k] * S.hmask[b * H + k];
          u_acc[k] += da * hin;
        }
        break;
      }
      case LSTM: case PEEPHOLE_LSTM: case LAYERNORM_LSTM: {
        const T* c_t = own != nullptr ? own : S.cs + (t * S.batch + b) * H;
        lstm_backward(S, dnew, dcn, sv, c_t, S.prev(S.cs, S.c0, t, b), dgi_row, dgh_row, dc_row,
                      row(A.peep, b, 3 * H), row(A.ln_hh, b, G), row(A.ln_c, b, H),
                      row(A.ln_c_bias, b, H), dC, tmp);
        break;
      }
      case CIFG_LSTM: {
        const T* c_t = own != nullptr ? own : S.cs + (t * S.batch + b) * H;
        cifg_backward(S, dnew, dcn, sv, c_t, S.prev(S.cs, S.c0, t, b), dgi_row, dc_row, tmp);
        break;
      }
      case GRU: case LAYERNORM_GRU:
        gru_backward(S, dnew, sv, h_prev, dgi_row, S.kind == GRU ? dgh_row : dpost, dgh_row,
                     dh_row, row(A.bias, b, G), row(A.ln_hh, b, G), tmp);
        break;
    }
    if (layernorm(S.kind)) {  // back through LN(W_ih x; g_ih) + b_ih: dgi becomes the raw
      const int64_t at = input_norm_at(S.kind, H);  // product's gradient
      scaled_norm_backward(dgi_row, sv + at, sv[at + G], S.ln_ih, A.ln_ih + b * G,
                           A.b_ih + b * G, tmp, dgi_row, G);
    }
  }
}


// -- the drivers -----------------------------------------------------------------------

template <typename T> const T* ptr(const std::optional<Tensor>& t) {
  return t.has_value() && t->defined() ? t->data_ptr<T>() : nullptr;
}

struct Args {  // what Python hands over, shared by forward and backward
  int64_t kind;
  Tensor gi;                        // (T, B, G); with w_ih: the input x (T, B, I) itself
  std::optional<Tensor> w_ih;       // W_ih (G, I): project x step by step (forward only)
  std::optional<Tensor> b_ih;       // b_ih (G,)
  std::optional<Tensor> weight;     // W_hh (G, H); indrnn: u (H,)
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
  S.gates = a.w_ih.has_value() ? a.w_ih->size(0) : a.gi.size(2);
  S.hidden = S.gates / num_chunks(a.kind);
  S.width = saved_width(a.kind, S.hidden, a.zp != 0);
  S.cell_value = a.zp != 0 && saves_cell_value(a.kind) ? base_width(a.kind, S.hidden) : -1;
  S.reverse = a.reverse;
  S.gi = a.gi.data_ptr<T>();
  S.bias = ptr<T>(a.bias);
  if (S.bias == nullptr) {  // the loops add a bias everywhere: zeros where there is none
    S.no_bias.assign(S.gates, T(0));
    S.bias = S.no_bias.data();
  }
  S.u = a.kind == INDRNN ? a.weight->data_ptr<T>() : nullptr;
  S.peep = a.kind == PEEPHOLE_LSTM ? a.extras.at(0).data_ptr<T>() : nullptr;
  bool ln = a.kind == LAYERNORM_LSTM || a.kind == LAYERNORM_GRU;
  S.ln_hh = ln ? a.extras.at(0).data_ptr<T>() : nullptr;
  S.ln_c = a.kind == LAYERNORM_LSTM ? a.extras.at(1).data_ptr<T>() : nullptr;
  S.ln_c_bias = a.kind == LAYERNORM_LSTM ? a.extras.at(2).data_ptr<T>() : nullptr;
  S.ln_ih = ln ? a.extras.back().data_ptr<T>() : nullptr;  // the last extra
  S.b_ih = ptr<T>(a.b_ih);
  if (ln && S.b_ih == nullptr) {
    S.no_b_ih.assign(S.gates, T(0));
    S.b_ih = S.no_b_ih.data();
  }
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

// Returns [out (T, B, H), final states..., C_t for every step (or empty), saved]. Without
// `for_backward` (inference) nothing but the outputs is kept.
std::vector<Tensor> forward(const Args& in, bool for_backward) {
  // Where the step projects x itself and the cell adds the two parts of its gates, one
  // bias b_ih + b_hh serves both and the input part accumulates into the product.
  Args a = in;
  const bool project = a.w_ih.has_value();
  const bool summed = project && a.kind != GRU && a.kind != INDRNN && !layernorm(a.kind);
  if (summed && a.b_ih.has_value()) a.bias = a.bias.has_value() ? *a.bias + *a.b_ih : *a.b_ih;
  const int64_t steps = a.gi.size(0), batch = a.gi.size(1), H = a.state0.at(0).size(1);
  const int64_t G = project ? a.w_ih->size(0) : a.gi.size(2);
  Tensor out = at::empty({steps, batch, H}, a.gi.options());
  Tensor cs = num_states(a.kind) > 1 && for_backward ? at::empty_like(out) : Tensor();
  int64_t width = saved_width(a.kind, H, a.zp != 0);
  Tensor saved = width > 0 && for_backward ? at::empty({steps, batch, width}, a.gi.options())
                                           : Tensor();
  std::vector<Tensor> state;
  for (const auto& s0 : a.state0) state.push_back(s0.clone());
  AT_DISPATCH_FLOATING_TYPES(a.gi.scalar_type(), "rnnzoo_scan_forward", [&] {
    Scan<scalar_t> S = make_scan<scalar_t>(a, out, cs, saved);
    scalar_t* h = state[0].data_ptr<scalar_t>();
    scalar_t* c = state.size() > 1 ? state[1].data_ptr<scalar_t>() : nullptr;
    const std::vector<scalar_t> zeros(summed ? G : 0, scalar_t(0));
    at::parallel_for(0, batch, slice(batch), [&](int64_t b0, int64_t b1) {
      at::NoGradGuard no_grad;  // thread-local: worker threads start with it on
      const int64_t n = b1 - b0;
      Tensor h_rows = state[0].narrow(0, b0, n);
      std::optional<Tensor> mask;
      if (a.hmask.has_value()) mask = a.hmask->narrow(0, b0, n);
      // this thread's buffers, allocated once: the masked input and the products
      Tensor h_in = mask.has_value() ? at::empty_like(h_rows) : h_rows;
      Tensor gh = a.kind == INDRNN ? Tensor() : at::empty({n, G}, h_rows.options());
      Tensor gi = project && !summed ? at::empty({n, G}, h_rows.options()) : Tensor();
      Tensor w_t = a.kind == INDRNN ? Tensor() : a.weight->t();
      Tensor w_ih_t = project ? a.w_ih->t() : Tensor();
      const scalar_t* gh_p = gh.defined() ? gh.data_ptr<scalar_t>() : nullptr;
      const scalar_t* gi_p = summed ? zeros.data() : gi.defined() ? gi.data_ptr<scalar_t>() : nullptr;
      const int64_t gi_stride = summed ? 0 : G;
      for (int64_t s = 0; s < steps; ++s) {
        int64_t t = step_time(s, steps, a.reverse);
        if (mask.has_value()) at::mul_out(h_in, h_rows, *mask);
        if (gh.defined()) at::mm_out(gh, h_in, w_t);
        if (project) {
          Tensor x_rows = a.gi[t].narrow(0, b0, n);
          if (summed) gh.addmm_(x_rows, w_ih_t);  // + x_t W_ih^T
          else if (a.b_ih.has_value() && !layernorm(a.kind)) at::addmm_out(gi, *a.b_ih, x_rows, w_ih_t);
          else at::mm_out(gi, x_rows, w_ih_t);
        }
        forward_rows(S, s, t, gh_p, h_in.data_ptr<scalar_t>(), h, c, b0, b1, gi_p, gi_stride);
      }
    });
  });
  std::vector<Tensor> result{out};
  for (auto& s : state) result.push_back(s);
  result.push_back(cs);
  result.push_back(saved);
  return result;
}

// dL/dW_hh = sum over steps and rows of dgh^T h_in, h_in the recurrent input of each
// step. That input is the neighbouring output, so without hidden dropout the product runs
// on views of `out` (padded rows of dgh are zero, so what sits there does not matter);
// rows whose step started from h_0 are added on their own. With hidden dropout the
// masked inputs are gathered first.
Tensor weight_grad(const Args& a, const Tensor& dgh, const Tensor& out) {
  const int64_t steps = out.size(0), batch = out.size(1), H = out.size(2), G = dgh.size(2);
  const Tensor& h0 = a.state0.at(0);
  auto flat = [](const Tensor& x) { return x.reshape({-1, x.size(-1)}); };
  if (!a.hmask.has_value()) {
    Tensor dw = at::zeros({G, H}, out.options());
    if (steps > 1) {  // step t saw out[t - 1] (forwards) or out[t + 1] (reverse)
      Tensor d = a.reverse ? dgh.narrow(0, 0, steps - 1) : dgh.narrow(0, 1, steps - 1);
      Tensor h = a.reverse ? out.narrow(0, 1, steps - 1) : out.narrow(0, 0, steps - 1);
      dw.addmm_(flat(d).t(), flat(h));
    }
    // the rows that started from h_0: step 0 forwards, each row's last valid step in
    // reverse (where out[t + 1] is a padded zero or past the end)
    Tensor first;
    if (!a.reverse) {
      first = dgh[0];
    } else if (a.lengths.has_value()) {
      Tensor last = (*a.lengths - 1).clamp_min(0).view({1, batch, 1}).expand({1, batch, G});
      first = dgh.gather(0, last).squeeze(0);
      // in reverse, rows shorter than T also took out[t + 1] = 0 into the product
      // above at their last step: a zero row adds nothing, so no correction is needed
    } else {
      first = dgh[steps - 1];
    }
    dw.addmm_(first.t(), h0);
    return dw;
  }
  Tensor h_in = at::zeros_like(out);
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "rnnzoo_scan_inputs", [&] {
    const scalar_t* o = out.data_ptr<scalar_t>();
    const scalar_t* init = h0.data_ptr<scalar_t>();
    const scalar_t* mask = a.hmask->data_ptr<scalar_t>();
    const int64_t* len = a.lengths.has_value() ? a.lengths->data_ptr<int64_t>() : nullptr;
    scalar_t* dst = h_in.data_ptr<scalar_t>();
    at::parallel_for(0, steps * batch, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        int64_t t = i / batch, b = i % batch, end = len == nullptr ? steps : len[b];
        if (t >= end) continue;
        int64_t p = a.reverse ? t + 1 : t - 1;
        bool start = a.reverse ? p >= end : p < 0;
        const scalar_t* src = start ? init + b * H : o + (p * batch + b) * H;
        for (int64_t k = 0; k < H; ++k) dst[i * H + k] = src[k] * mask[b * H + k];
      }
    });
  });
  return flat(dgh).t().mm(flat(h_in));
}

// Returns [dgi, d weight (W_hh (G, H) or u (H,)), d bias or empty, d state0..., d extras...].
std::vector<Tensor> backward(const Args& a, const Tensor& out, const Tensor& cs, const Tensor& saved,
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
  Tensor acc_ln_ih = ln ? zeros(G) : Tensor();
  Tensor acc_b_ih = ln ? zeros(G) : Tensor();
  Tensor go = grad_out.has_value() && grad_out->defined() ? grad_out->contiguous() : Tensor();
  AT_DISPATCH_FLOATING_TYPES(a.gi.scalar_type(), "rnnzoo_scan_backward", [&] {
    Scan<scalar_t> S = make_scan<scalar_t>(a, out, cs, saved);
    auto p = [](const Tensor& t) { return t.defined() ? t.data_ptr<scalar_t>() : nullptr; };
    Accum<scalar_t> A{p(acc_bias), p(acc_u), p(acc_peep), p(acc_ln), p(acc_lnc), p(acc_lncb),
                      p(acc_ln_ih), p(acc_b_ih)};
    const scalar_t* go_p = p(go);
    scalar_t* dh = d[0].data_ptr<scalar_t>();
    scalar_t* dc = d.size() > 1 ? d[1].data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, batch, slice(batch), [&](int64_t b0, int64_t b1) {
      at::NoGradGuard no_grad;
      const int64_t n = b1 - b0;
      Tensor dh_rows = d[0].narrow(0, b0, n);
      std::optional<Tensor> mask;
      if (a.hmask.has_value()) mask = a.hmask->narrow(0, b0, n);
      Tensor rec = mask.has_value() || a.kind == INDRNN ? at::empty_like(dh_rows) : Tensor();
      for (int64_t s = steps - 1; s >= 0; --s) {
        int64_t t = step_time(s, steps, a.reverse);
        scalar_t* dgi_p = dgi.data_ptr<scalar_t>() + t * batch * G;
        scalar_t* dgh_p = dgh.data_ptr<scalar_t>() + t * batch * G;
        backward_rows(S, A, s, t, go_p, dh, dc, dgi_p, dgh_p, b0, b1);
        // dL/dh_{t-1} += dL/d(h_in) through the recurrent product, times the mask
        Tensor dgh_rows = dgh[t].narrow(0, b0, n);
        if (a.kind == INDRNN) {
          at::mul_out(rec, dgh_rows, *a.weight);
        } else if (!mask.has_value()) {
          dh_rows.addmm_(dgh_rows, *a.weight);  // += dgh W_hh
          continue;
        } else {
          at::mm_out(rec, dgh_rows, *a.weight);
        }
        if (mask.has_value()) rec.mul_(*mask);
        dh_rows.add_(rec);
      }
    });
  });
  std::vector<Tensor> result{dgi};
  if (a.kind == INDRNN) {
    result.push_back(acc_u.sum(0));
  } else {
    result.push_back(weight_grad(a, dgh, out));
  }
  if (!a.bias.has_value()) result.push_back(Tensor());
  else if (acc_bias.defined()) result.push_back(acc_bias.sum(0));
  else if (ln) result.push_back(acc_b_ih.sum(0));  // both biases add to the gates after LN
  else result.push_back(dgi.sum({0, 1}));
  for (auto& x : d) result.push_back(x);
  if (acc_peep.defined()) result.push_back(acc_peep.sum(0).view({3, H}));
  if (acc_ln.defined()) result.push_back(acc_ln.sum(0));
  if (acc_lnc.defined()) {
    result.push_back(acc_lnc.sum(0));
    result.push_back(acc_lncb.sum(0));
  }
  if (ln) {  // the input part's gain, then b_ih
    result.push_back(acc_ln_ih.sum(0));
    result.push_back(acc_b_ih.sum(0));
  }
  return result;
}

Args make_args(int64_t kind, Tensor gi, std::optional<Tensor> w_ih, std::optional<Tensor> b_ih,
               std::optional<Tensor> weight,
               std::optional<Tensor> bias, std::vector<Tensor> extras, std::vector<Tensor> state0,
               std::optional<Tensor> lengths, bool reverse, std::optional<Tensor> hmask,
               std::optional<Tensor> zmask, double zp) {
  TORCH_CHECK(gi.dim() == 3, "gi must be a (T, B, G) tensor");
  TORCH_CHECK(!state0.empty(), "state0 must hold the initial state");
  return Args{kind, gi, w_ih, b_ih, weight, bias, extras, state0, lengths, reverse, hmask, zmask, zp};
}

std::vector<Tensor> py_forward(int64_t kind, Tensor gi, std::optional<Tensor> w_ih,
                               std::optional<Tensor> b_ih, std::optional<Tensor> weight,
                               std::optional<Tensor> bias, std::vector<Tensor> extras,
                               std::vector<Tensor> state0, std::optional<Tensor> lengths,
                               bool reverse, std::optional<Tensor> hmask,
                               std::optional<Tensor> zmask, double zp, bool for_backward) {
  at::NoGradGuard no_grad;
  TORCH_CHECK(gi.is_contiguous(), "gi must be contiguous");
  return forward(make_args(kind, gi, w_ih, b_ih, weight, bias, extras, state0, lengths, reverse, hmask,
                           zmask, zp), for_backward);
}

std::vector<Tensor> py_backward(int64_t kind, Tensor gi, std::optional<Tensor> weight,
                                std::optional<Tensor> bias, std::vector<Tensor> extras,
                                std::vector<Tensor> state0, std::optional<Tensor> lengths,
                                bool reverse, std::optional<Tensor> hmask,
                                std::optional<Tensor> zmask, double zp, Tensor out,
                                std::optional<Tensor> cs, std::optional<Tensor> saved,
                                std::optional<Tensor> grad_out,
                                std::vector<std::optional<Tensor>> grad_final) {
  at::NoGradGuard no_grad;
  Args a = make_args(kind, gi, std::nullopt, std::nullopt, weight, bias, extras, state0, lengths, reverse, hmask, zmask, zp);
  return backward(a, out, cs.value_or(Tensor()), saved.value_or(Tensor()), grad_out,
                  grad_final);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "rnnzoo's compiled time loop (see rnnzoo/native.py)";
  m.def("forward", &py_forward, "one layer and direction, all steps");
  m.def("backward", &py_backward, "its backward");
  m.attr("VERSION") = 1;
}
