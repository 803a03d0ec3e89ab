#include "Kernels.h"

#include <stdint.h>
#include <string.h>

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

DDP_CLONES
bool ddp_sgd_momentum_step(float *restrict w, const float *restrict g, float *restrict v, ptrdiff_t n, float lr,
                           float wd, float mu, bool nesterov) {
  uint32_t worst = 0;
  // One loop per variant, not a branch inside one loop, so that each vectorises without relying on unswitching.
  if (nesterov) {
    for (ptrdiff_t i = 0; i < n; i++) {
      uint32_t e = exponentOf(g, i);
      worst = worst > e ? worst : e;
      float d = g[i] + wd * w[i];
      float velocity = mu * v[i] + d;
      v[i] = velocity;
      w[i] = w[i] - lr * (d + mu * velocity);
    }
  } else {
    for (ptrdiff_t i = 0; i < n; i++) {
      uint32_t e = exponentOf(g, i);
      worst = worst > e ? worst : e;
      float d = g[i] + wd * w[i];
      float velocity = mu * v[i] + d;
      v[i] = velocity;
      w[i] = w[i] - lr * velocity;
    }
  }
  return worst != exponentMask;
}

DDP_CLONES
bool ddp_sgd_plain_step(float *restrict w, const float *restrict g, ptrdiff_t n, float lr, float wd) {
  uint32_t worst = 0;
  for (ptrdiff_t i = 0; i < n; i++) {
    uint32_t e = exponentOf(g, i);
    worst = worst > e ? worst : e;
    float d = g[i] + wd * w[i];
    w[i] = w[i] - lr * d;
  }
  return worst != exponentMask;
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

bool ddp_cpu_has_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}
