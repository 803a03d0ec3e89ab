#include "Kernels.h"

#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

// One rounding per operation: a fused multiply-add would round once for `mu*v + d` and change the last bit
// depending on the clone (AVX2/AVX-512 have FMA, the baseline has not).
#pragma clang fp contract(off)

// One clone per instruction set worth having; the loader picks the first the CPU supports.
#define DDP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static const uint32_t exponentMask = 0x7f800000u;

// max over (bits & exponentMask) equals exponentMask exactly when some element is NaN or ±Inf.
static inline uint32_t exponentOf(const float *x, ptrdiff_t i) {
  uint32_t bits;
  memcpy(&bits, x + i, sizeof bits);
  return bits & exponentMask;
}

// The gradient element i: g[i], or g[i] + g2[i] when a second addend is given (the rank-order sum of two ranks'
// gradients, left to the update's pass by SharedMemoryPairReducer). The same addition the separate sum makes, so
// both give the same bits.
#define DDP_GRADIENT(i) (twoAddends ? g[i] + g2[i] : g[i])

// One body for the update with and without the second addend: `twoAddends` is a constant in each inlined copy.
static inline __attribute__((always_inline)) bool sgdMomentum(float *restrict w, const float *restrict g,
                                                              const float *restrict g2, bool twoAddends,
                                                              float *restrict v, ptrdiff_t n, float lr, float wd,
                                                              float mu, bool nesterov) {
  uint32_t worst = 0;
  // One loop per variant, not a branch inside one loop, so that each vectorises without relying on unswitching.
  if (nesterov) {
    for (ptrdiff_t i = 0; i < n; i++) {
      float gradient = DDP_GRADIENT(i);
      uint32_t e = exponentOf(&gradient, 0);
      worst = worst > e ? worst : e;
      float d = gradient + wd * w[i];
      float velocity = mu * v[i] + d;
      v[i] = velocity;
      w[i] = w[i] - lr * (d + mu * velocity);
    }
  } else {
    for (ptrdiff_t i = 0; i < n; i++) {
      float gradient = DDP_GRADIENT(i);
      uint32_t e = exponentOf(&gradient, 0);
      worst = worst > e ? worst : e;
      float d = gradient + wd * w[i];
      float velocity = mu * v[i] + d;
      v[i] = velocity;
      w[i] = w[i] - lr * velocity;
    }
  }
  return worst != exponentMask;
}

static inline __attribute__((always_inline)) bool sgdPlain(float *restrict w, const float *restrict g,
                                                           const float *restrict g2, bool twoAddends, ptrdiff_t n,
                                                           float lr, float wd) {
  uint32_t worst = 0;
  for (ptrdiff_t i = 0; i < n; i++) {
    float gradient = DDP_GRADIENT(i);
    uint32_t e = exponentOf(&gradient, 0);
    worst = worst > e ? worst : e;
    float d = gradient + wd * w[i];
    w[i] = w[i] - lr * d;
  }
  return worst != exponentMask;
}

DDP_CLONES
bool ddp_sgd_momentum_step(float *restrict w, const float *restrict g, float *restrict v, ptrdiff_t n, float lr,
                           float wd, float mu, bool nesterov) {
  return sgdMomentum(w, g, g, false, v, n, lr, wd, mu, nesterov);
}

DDP_CLONES
bool ddp_sgd_momentum_step2(float *restrict w, const float *restrict g, const float *restrict g2, float *restrict v,
                            ptrdiff_t n, float lr, float wd, float mu, bool nesterov) {
  return sgdMomentum(w, g, g2, true, v, n, lr, wd, mu, nesterov);
}

DDP_CLONES
bool ddp_sgd_plain_step(float *restrict w, const float *restrict g, ptrdiff_t n, float lr, float wd) {
  return sgdPlain(w, g, g, false, n, lr, wd);
}

DDP_CLONES
bool ddp_sgd_plain_step2(float *restrict w, const float *restrict g, const float *restrict g2, ptrdiff_t n, float lr,
                         float wd) {
  return sgdPlain(w, g, g2, true, n, lr, wd);
}

// torch.optim.AdamW's update in PyTorch's order (see Kernels.h), with or without the second addend.
static inline __attribute__((always_inline)) bool adamw(float *restrict w, const float *restrict g,
                                                        const float *restrict g2, bool twoAddends,
                                                        float *restrict m, float *restrict v, ptrdiff_t n,
                                                        const struct ddp_adamw_scalars *s) {
  const float decay = s->decay, beta1Complement = s->beta1Complement, beta2 = s->beta2;
  const float beta2Complement = s->beta2Complement, correction2Root = s->correction2Root, eps = s->eps;
  const float negativeStepSize = s->negativeStepSize;
  uint32_t worst = 0;
  for (ptrdiff_t i = 0; i < n; i++) {
    float gradient = DDP_GRADIENT(i);
    uint32_t e = exponentOf(&gradient, 0);
    worst = worst > e ? worst : e;
    float decayed = w[i] * decay;
    float mean = m[i] + beta1Complement * (gradient - m[i]);
    float square = v[i] * beta2 + (beta2Complement * gradient) * gradient;
    m[i] = mean;
    v[i] = square;
    float denominator = __builtin_sqrtf(square) / correction2Root + eps;
    w[i] = decayed + (negativeStepSize * mean) / denominator;
  }
  return worst != exponentMask;
}

DDP_CLONES
bool ddp_adamw_step(float *restrict w, const float *restrict g, float *restrict m, float *restrict v, ptrdiff_t n,
                    const struct ddp_adamw_scalars *s) {
  return adamw(w, g, g, false, m, v, n, s);
}

DDP_CLONES
bool ddp_adamw_step2(float *restrict w, const float *restrict g, const float *restrict g2, float *restrict m,
                     float *restrict v, ptrdiff_t n, const struct ddp_adamw_scalars *s) {
  return adamw(w, g, g2, true, m, v, n, s);
}

DDP_CLONES
void ddp_lamb_update(float *restrict u, const float *restrict w, const float *restrict g, float *restrict m,
                     float *restrict v, ptrdiff_t n, const struct ddp_lamb_scalars *s, double *restrict norms) {
  const float clip = s->clip, beta1 = s->beta1, beta3 = s->beta3, beta2 = s->beta2;
  const float beta2Complement = s->beta2Complement, correction1 = s->correction1, correction2 = s->correction2;
  const float eps = s->eps, wd = s->wd;
  double weightSquares = 0, updateSquares = 0;
  for (ptrdiff_t i = 0; i < n; i++) {
    float scaled = g[i] / clip;
    float mean = m[i] * beta1 + beta3 * scaled;
    float square = v[i] * beta2 + (beta2Complement * scaled) * scaled;
    m[i] = mean;
    v[i] = square;
    float denominator = __builtin_sqrtf(square / correction2) + eps;
    float update = (mean / correction1) / denominator + wd * w[i];
    u[i] = update;
    weightSquares += (double)w[i] * (double)w[i];
    updateSquares += (double)update * (double)update;
  }
  norms[0] = weightSquares;
  norms[1] = updateSquares;
}

DDP_CLONES
void ddp_scaled_subtract(float *restrict w, const float *restrict u, ptrdiff_t n, float ratio) {
  for (ptrdiff_t i = 0; i < n; i++) w[i] = w[i] - ratio * u[i];
}

DDP_CLONES
double ddp_sum_of_squares(const float *restrict x, ptrdiff_t n, bool *_Nonnull finite) {
  uint32_t worst = 0;
  double sum = 0;
  for (ptrdiff_t i = 0; i < n; i++) {
    uint32_t e = exponentOf(x, i);
    worst = worst > e ? worst : e;
    sum += (double)x[i] * (double)x[i];
  }
  *finite = worst != exponentMask;
  return sum;
}

DDP_CLONES
bool ddp_all_finite(const float *restrict x, ptrdiff_t n) {
  uint32_t worst = 0;
  for (ptrdiff_t i = 0; i < n; i++) {
    uint32_t e = exponentOf(x, i);
    worst = worst > e ? worst : e;
  }
  return worst != exponentMask;
}

DDP_CLONES
void ddp_add(float *restrict out, const float *restrict part, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) out[i] = out[i] + part[i];
}

DDP_CLONES
void ddp_sum(float *restrict out, const float *restrict a, const float *restrict b, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

DDP_CLONES
void ddp_unit_floats_from_bytes(float *restrict dst, const unsigned char *restrict src, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) dst[i] = (float)src[i] / 255.0f;
}

// The valid output columns [*lo, *hi) for kernel column kj: those whose input column ox·stride − pad + kj is
// inside [0, w).
static inline void validColumns(ptrdiff_t kj, ptrdiff_t stride, ptrdiff_t pad, ptrdiff_t w, ptrdiff_t ow,
                                ptrdiff_t *lo, ptrdiff_t *hi) {
  ptrdiff_t first = pad - kj;  // ox·stride >= first
  ptrdiff_t l = first <= 0 ? 0 : (first + stride - 1) / stride;
  ptrdiff_t last = w - 1 + pad - kj;  // ox·stride <= last
  ptrdiff_t u = last < 0 ? 0 : last / stride + 1;
  if (u > ow) u = ow;
  if (l > u) l = u;
  *lo = l;
  *hi = u;
}

// Rows here are short (a 14- or 28-pixel image row): inline loops beat a call to memcpy or memset per row.
DDP_CLONES __attribute__((no_builtin("memcpy", "memset")))
void ddp_im2col(float *restrict cols, const float *restrict x, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k,
                ptrdiff_t stride, ptrdiff_t pad, ptrdiff_t oh, ptrdiff_t ow) {
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    const float *plane = x + ci * h * w;
    for (ptrdiff_t ki = 0; ki < k; ki++) {
      for (ptrdiff_t kj = 0; kj < k; kj++) {
        float *row = cols + ((ci * k + ki) * k + kj) * oh * ow;
        ptrdiff_t lo, hi;
        validColumns(kj, stride, pad, w, ow, &lo, &hi);
        for (ptrdiff_t oy = 0; oy < oh; oy++) {
          float *out = row + oy * ow;
          ptrdiff_t iy = oy * stride - pad + ki;
          if (iy < 0 || iy >= h) {
            for (ptrdiff_t ox = 0; ox < ow; ox++) out[ox] = 0;
            continue;
          }
          const float *in = plane + iy * w - pad + kj;
          for (ptrdiff_t ox = 0; ox < lo; ox++) out[ox] = 0;
          if (stride == 1) {
            for (ptrdiff_t ox = lo; ox < hi; ox++) out[ox] = in[ox];
          } else {
            for (ptrdiff_t ox = lo; ox < hi; ox++) out[ox] = in[ox * stride];
          }
          for (ptrdiff_t ox = hi; ox < ow; ox++) out[ox] = 0;
        }
      }
    }
  }
}

DDP_CLONES
void ddp_col2im(float *restrict dx, const float *restrict cols, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k,
                ptrdiff_t stride, ptrdiff_t pad, ptrdiff_t oh, ptrdiff_t ow) {
  memset(dx, 0, (size_t)(c * h * w) * sizeof(float));
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    float *plane = dx + ci * h * w;
    for (ptrdiff_t ki = 0; ki < k; ki++) {
      for (ptrdiff_t kj = 0; kj < k; kj++) {
        const float *row = cols + ((ci * k + ki) * k + kj) * oh * ow;
        ptrdiff_t lo, hi;
        validColumns(kj, stride, pad, w, ow, &lo, &hi);
        for (ptrdiff_t oy = 0; oy < oh; oy++) {
          ptrdiff_t iy = oy * stride - pad + ki;
          if (iy < 0 || iy >= h) continue;
          const float *in = row + oy * ow;
          float *out = plane + iy * w - pad + kj;
          if (stride == 1) {
            for (ptrdiff_t ox = lo; ox < hi; ox++) out[ox] += in[ox];
          } else {
            for (ptrdiff_t ox = lo; ox < hi; ox++) out[ox * stride] += in[ox];
          }
        }
      }
    }
  }
}

DDP_CLONES
void ddp_add_channel_bias(float *restrict y, const float *restrict bias, ptrdiff_t channels, ptrdiff_t pixels,
                          bool relu) {
  for (ptrdiff_t ch = 0; ch < channels; ch++) {
    float *row = y + ch * pixels;
    float b = bias[ch];
    if (relu) {
      for (ptrdiff_t p = 0; p < pixels; p++) {
        float v = row[p] + b;
        row[p] = v > 0 ? v : 0;
      }
    } else {
      for (ptrdiff_t p = 0; p < pixels; p++) row[p] = row[p] + b;
    }
  }
}

DDP_CLONES
void ddp_accumulate_channel_sums(float *restrict dbias, const float *restrict dy, ptrdiff_t channels,
                                 ptrdiff_t pixels) {
  // Eight running sums per row (element p goes to sum p mod 8), added pairwise at the end: a fixed order, so
  // every run gives the same bits, and eight independent chains instead of one long one.
  for (ptrdiff_t ch = 0; ch < channels; ch++) {
    const float *row = dy + ch * pixels;
    float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t p = 0;
    for (; p + 8 <= pixels; p += 8)
      for (int lane = 0; lane < 8; lane++) part[lane] += row[p + lane];
    for (; p < pixels; p++) part[p % 8] += row[p];
    float sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
    dbias[ch] += sum;
  }
}

// Σ over one row of `n` values of f(p), into eight running double sums (p mod 8), added pairwise.
#define EIGHT_LANE_SUM(n, expression, result)                                                            \
  do {                                                                                                   \
    double part_[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                          \
    ptrdiff_t p = 0;                                                                                     \
    for (; p + 8 <= (n); p += 8) {                                                                       \
      for (int lane_ = 0; lane_ < 8; lane_++) {                                                          \
        ptrdiff_t q = p + lane_;                                                                         \
        (void)q;                                                                                         \
        part_[lane_] += (expression);                                                                    \
      }                                                                                                  \
    }                                                                                                    \
    for (ptrdiff_t q = p; q < (n); q++) part_[q % 8] += (expression);                                  \
    (result) = ((part_[0] + part_[1]) + (part_[2] + part_[3])) + ((part_[4] + part_[5]) + (part_[6] + part_[7])); \
  } while (0)

DDP_CLONES
void ddp_batch_norm_moments(double *restrict sums, const float *restrict x, ptrdiff_t batch, ptrdiff_t channels,
                            ptrdiff_t pixels) {
  for (ptrdiff_t b = 0; b < batch; b++) {
    for (ptrdiff_t ch = 0; ch < channels; ch++) {
      const float *row = x + (b * channels + ch) * pixels;
      double sum, squares;
      EIGHT_LANE_SUM(pixels, (double)row[q], sum);
      EIGHT_LANE_SUM(pixels, (double)row[q] * (double)row[q], squares);
      sums[ch] += sum;
      sums[channels + ch] += squares;
    }
  }
}

DDP_CLONES
void ddp_batch_norm_apply(float *y, const float *x, const float *restrict mean, const float *restrict scale,
                          const float *restrict shift, ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t pixels,
                          bool relu) {
  for (ptrdiff_t b = 0; b < batch; b++) {
    for (ptrdiff_t ch = 0; ch < channels; ch++) {
      const float *in = x + (b * channels + ch) * pixels;
      float *out = y + (b * channels + ch) * pixels;
      float m = mean[ch], a = scale[ch], c = shift[ch];
      if (relu) {
        for (ptrdiff_t p = 0; p < pixels; p++) {
          float v = (in[p] - m) * a + c;
          out[p] = v > 0 ? v : 0;
        }
      } else {
        for (ptrdiff_t p = 0; p < pixels; p++) out[p] = (in[p] - m) * a + c;
      }
    }
  }
}

DDP_CLONES
void ddp_batch_norm_gradient_sums(double *restrict sums, const float *restrict dy, const float *restrict x,
                                  const float *restrict mean, const float *restrict invstd, ptrdiff_t batch,
                                  ptrdiff_t channels, ptrdiff_t pixels) {
  for (ptrdiff_t b = 0; b < batch; b++) {
    for (ptrdiff_t ch = 0; ch < channels; ch++) {
      const float *g = dy + (b * channels + ch) * pixels;
      const float *in = x + (b * channels + ch) * pixels;
      float m = mean[ch], s = invstd[ch];
      double sum, products;
      EIGHT_LANE_SUM(pixels, (double)g[q], sum);
      EIGHT_LANE_SUM(pixels, (double)g[q] * (double)((in[q] - m) * s), products);
      sums[ch] += sum;
      sums[channels + ch] += products;
    }
  }
}

DDP_CLONES
void ddp_batch_norm_input_gradient(float *restrict dx, const float *restrict dy, const float *restrict x,
                                   const float *restrict mean, const float *restrict invstd,
                                   const float *restrict a, const float *restrict b, const float *restrict c,
                                   ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t pixels) {
  for (ptrdiff_t n = 0; n < batch; n++) {
    for (ptrdiff_t ch = 0; ch < channels; ch++) {
      const float *g = dy + (n * channels + ch) * pixels;
      const float *in = x + (n * channels + ch) * pixels;
      float *out = dx + (n * channels + ch) * pixels;
      float m = mean[ch], s = invstd[ch], scale = a[ch], meanDy = b[ch], meanDyXhat = c[ch];
      for (ptrdiff_t p = 0; p < pixels; p++) out[p] = scale * ((g[p] - meanDy) - ((in[p] - m) * s) * meanDyXhat);
    }
  }
}

// PyTorch's rule for a window's maximum: a later element wins when it is larger, or when it is NaN.
static inline void takeIfLarger(float v, ptrdiff_t index, float *maximum, ptrdiff_t *best) {
  int larger = (v > *maximum) | (v != v);
  *maximum = larger ? v : *maximum;
  *best = larger ? index : *best;
}

typedef float ddp_f8 __attribute__((ext_vector_type(8)));
typedef int32_t ddp_i8 __attribute__((ext_vector_type(8)));
typedef float ddp_f16 __attribute__((ext_vector_type(16)));

DDP_CLONES
void ddp_max_pool(float *restrict y, int32_t *restrict argmax, const float *restrict x, ptrdiff_t c, ptrdiff_t h,
                  ptrdiff_t w, ptrdiff_t k, ptrdiff_t stride, ptrdiff_t oh, ptrdiff_t ow) {
  const float *xEnd = x + c * h * w;
  const float *yEnd = y + c * oh * ow;
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    const float *plane = x + ci * h * w;
    ptrdiff_t base = ci * h * w;
    for (ptrdiff_t oy = 0; oy < oh; oy++) {
      float *out = y + (ci * oh + oy) * ow;
      int32_t *where = argmax + (ci * oh + oy) * ow;
      ptrdiff_t top = oy * stride;
      ptrdiff_t ox = 0;
      if (k == 2 && stride == 2) {
        // The common 2×2 window, eight outputs at a time: the even and odd columns of both rows, compared in the
        // general loop's order with its rule. A last vector may run past the row where what it reads and writes
        // stays inside this sample and later rows write over it; else the rest goes through the scalar loop.
        const float *r0 = plane + top * w, *r1 = r0 + w;
        for (; ox < ow; ox += 8) {
          if (r1 + 2 * ox + 16 > xEnd || out + ox + 8 > yEnd) break;
          ddp_f8 a0, a1, b0, b1;
          memcpy(&a0, r0 + 2 * ox, sizeof a0);
          memcpy(&a1, r0 + 2 * ox + 8, sizeof a1);
          memcpy(&b0, r1 + 2 * ox, sizeof b0);
          memcpy(&b1, r1 + 2 * ox + 8, sizeof b1);
          ddp_f8 topLeft = __builtin_shufflevector(a0, a1, 0, 2, 4, 6, 8, 10, 12, 14);
          ddp_f8 topRight = __builtin_shufflevector(a0, a1, 1, 3, 5, 7, 9, 11, 13, 15);
          ddp_f8 bottomLeft = __builtin_shufflevector(b0, b1, 0, 2, 4, 6, 8, 10, 12, 14);
          ddp_f8 bottomRight = __builtin_shufflevector(b0, b1, 1, 3, 5, 7, 9, 11, 13, 15);
          ddp_i8 lane = {0, 2, 4, 6, 8, 10, 12, 14};
          ddp_i8 first = (int32_t)(base + top * w + 2 * ox) + lane;
          ddp_f8 maximum = topLeft;
          ddp_i8 best = first;
          ddp_i8 larger = (topRight > maximum) | (topRight != topRight);
          maximum = larger ? topRight : maximum;
          best = larger ? first + 1 : best;
          larger = (bottomLeft > maximum) | (bottomLeft != bottomLeft);
          maximum = larger ? bottomLeft : maximum;
          best = larger ? first + (int32_t)w : best;
          larger = (bottomRight > maximum) | (bottomRight != bottomRight);
          maximum = larger ? bottomRight : maximum;
          best = larger ? first + (int32_t)w + 1 : best;
          memcpy(out + ox, &maximum, sizeof maximum);
          memcpy(where + ox, &best, sizeof best);
        }
        if (ox >= ow) continue;
      }
      for (; ox < ow; ox++) {
        ptrdiff_t left = ox * stride;
        float maximum = plane[top * w + left];
        ptrdiff_t best = top * w + left;
        for (ptrdiff_t ki = 0; ki < k; ki++) {
          const float *row = plane + (top + ki) * w + left;
          for (ptrdiff_t kj = 0; kj < k; kj++) takeIfLarger(row[kj], (top + ki) * w + left + kj, &maximum, &best);
        }
        out[ox] = maximum;
        where[ox] = (int32_t)(base + best);
      }
    }
  }
}

DDP_CLONES
void ddp_max_pool_backward(float *restrict dx, const float *restrict dy, const int32_t *restrict argmax,
                           const float *restrict y, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k,
                           ptrdiff_t stride, ptrdiff_t oh, ptrdiff_t ow) {
  if (k == 2 && stride == 2 && h % 2 == 0 && w % 2 == 0) {
    // 2×2 windows that tile the image: every element of dx is one window's, so each is written once, with its
    // window's gradient where it is the argmax (and, when rectifying, the maximum is > 0) and 0 elsewhere. The
    // same values as zeroing and scattering: 0 + dy, which the + 0 below reproduces for dy = −0 as well. Eight
    // windows at a time; a last vector may run past its rows where later rows of this sample are written after it.
    float *dxEnd = dx + c * h * w;
    const int32_t *last = argmax + c * oh * ow;
    for (ptrdiff_t ci = 0; ci < c; ci++) {
      for (ptrdiff_t oy = 0; oy < oh; oy++) {
        ptrdiff_t row = (ci * oh + oy) * ow;
        float *top = dx + (ci * h + 2 * oy) * w, *bottom = top + w;
        // The top row's vectors first, then the bottom row's: a top vector running past the row lands on the bottom
        // row, written after it.
        ptrdiff_t ox = 0;
        for (int bottomRow = 0; bottomRow < 2; bottomRow++) {
          float *out = bottomRow ? bottom : top;
          int32_t offset = bottomRow ? (int32_t)w : 0;
          for (ox = 0; ox < ow; ox += 8) {
            if (bottom + 2 * ox + 16 > dxEnd || argmax + row + ox + 8 > last) break;
            ddp_f8 gradient, maximum;
            ddp_i8 where;
            memcpy(&gradient, dy + row + ox, sizeof gradient);
            memcpy(&where, argmax + row + ox, sizeof where);
            ddp_i8 lane = {0, 2, 4, 6, 8, 10, 12, 14};
            ddp_i8 left = (int32_t)(ci * h * w + 2 * oy * w + 2 * ox) + offset + lane;
            ddp_f8 zero = 0;
            ddp_i8 counts = lane >= 0;  // every lane
            if (y) {
              memcpy(&maximum, y + row + ox, sizeof maximum);
              counts = maximum > zero;
            }
            ddp_f8 even = ((where == left) & counts) ? gradient : zero;
            ddp_f8 odd = ((where == left + 1) & counts) ? gradient : zero;
            ddp_f16 both = __builtin_shufflevector(even, odd, 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
            both = both + 0.0f;
            memcpy(out + 2 * ox, &both, sizeof both);
          }
        }
        for (; ox < ow; ox++) {
          ptrdiff_t i = row + ox;
          ptrdiff_t local = 2 * ox;
          top[local] = 0;
          top[local + 1] = 0;
          bottom[local] = 0;
          bottom[local + 1] = 0;
          if (!y || y[i] > 0) dx[argmax[i]] += dy[i];
        }
      }
    }
    return;
  }
  memset(dx, 0, (size_t)(c * h * w) * sizeof(float));
  ptrdiff_t count = c * oh * ow;
  for (ptrdiff_t i = 0; i < count; i++)
    if (!y || y[i] > 0) dx[argmax[i]] += dy[i];
}

// 16 floats (one cache line) with the alignment a float has, for unaligned loads from src.
typedef float ddp_line_unaligned __attribute__((ext_vector_type(16), aligned(4)));
typedef float ddp_line __attribute__((ext_vector_type(16), aligned(64)));

DDP_CLONES
void ddp_stream_copy(float *_Nonnull dst, const float *_Nonnull src, ptrdiff_t n) {
  ptrdiff_t i = 0;
  for (; i + 16 <= n; i += 16) {
    ddp_line_unaligned line = *(const ddp_line_unaligned *)(src + i);
    __builtin_nontemporal_store((ddp_line)line, (ddp_line *)(dst + i));
  }
  for (; i < n; i++) dst[i] = src[i];
  // Non-temporal stores are weakly ordered: without the fence a later store (the barrier's) could be seen first.
  __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static double monotonicNanoseconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

// Waits until the counter reads `value` or more: spins (with the pause hint) for 20 µs, then yields between looks,
// so that a rank waiting for a late partner leaves the CPU to whatever else wants it. The counter only grows; "or
// more" matters when rank 0 ends a meeting with `last` and at once starts the next one (nothing in between, as in
// the tests): rank 1 may first look after the next store, b + 1, and must not wait for `last` forever.
static void waitForCounter(int64_t *line, int64_t value) {
  double spinUntil = 0;
  for (int64_t looks = 0; __atomic_load_n(line, __ATOMIC_ACQUIRE) < value; looks++) {
    if (looks < 64) {
#if defined(__x86_64__)
      __builtin_ia32_pause();
#endif
      continue;
    }
    if (spinUntil == 0) spinUntil = monotonicNanoseconds() + 20e3;
    if (monotonicNanoseconds() > spinUntil) sched_yield();
  }
}

int32_t ddp_pair_meet(int64_t *_Nonnull line, int32_t rank, int64_t *_Nonnull base, int32_t rounds,
                      double thresholdNanoseconds, double *_Nonnull roundTripNanoseconds) {
  int64_t *counter = line;
  int64_t *published = line + 1;  // the round trip's bits, then the choice, written by rank 0 before the last store
  int64_t b = *base;
  int64_t last = b + 2 * (int64_t)rounds + 3;
  int32_t choice;
  double roundTrip;
  if (rank == 0) {
    __atomic_store_n(counter, b + 1, __ATOMIC_RELEASE);
    waitForCounter(counter, b + 2);
    double start = monotonicNanoseconds();
    for (int32_t i = 1; i <= rounds; i++) {
      __atomic_store_n(counter, b + 2 * i + 1, __ATOMIC_RELEASE);
      waitForCounter(counter, b + 2 * i + 2);
    }
    roundTrip = (monotonicNanoseconds() - start) / (rounds > 0 ? rounds : 1);
    choice = roundTrip > thresholdNanoseconds ? 1 : 0;
    int64_t bits;
    memcpy(&bits, &roundTrip, sizeof bits);
    __atomic_store_n(published, bits, __ATOMIC_RELAXED);
    __atomic_store_n(published + 1, (int64_t)choice, __ATOMIC_RELAXED);
    __atomic_store_n(counter, last, __ATOMIC_RELEASE);
  } else {
    for (int32_t i = 0; i <= rounds; i++) {
      waitForCounter(counter, b + 2 * i + 1);
      __atomic_store_n(counter, b + 2 * i + 2, __ATOMIC_RELEASE);
    }
    waitForCounter(counter, last);
    int64_t bits = __atomic_load_n(published, __ATOMIC_RELAXED);
    memcpy(&roundTrip, &bits, sizeof roundTrip);
    choice = (int32_t)__atomic_load_n(published + 1, __ATOMIC_RELAXED);
  }
  *base = last;
  *roundTripNanoseconds = roundTrip;
  return choice;
}

void ddp_prefetch_rows(const unsigned char *_Nonnull base, ptrdiff_t rowBytes, const int32_t *_Nonnull rows,
                       ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) {
    const unsigned char *row = base + (ptrdiff_t)rows[i] * rowBytes;
    for (ptrdiff_t offset = 0; offset < rowBytes; offset += 64) __builtin_prefetch(row + offset, 0, 2);
    __builtin_prefetch(row + rowBytes - 1, 0, 2);
  }
}
