#include "Compression.h"

#include <string.h>

#pragma clang fp contract(off)
#define DDP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

static inline uint32_t bitsOf(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  return bits;
}

static inline float floatOf(uint32_t bits) {
  float x;
  memcpy(&x, &bits, sizeof x);
  return x;
}

static inline uint16_t toBF16(float x) {
  uint32_t bits = bitsOf(x);
  // NaN: keep it a (quiet) NaN; rounding could carry it into the infinity pattern.
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u);
  uint32_t roundingBias = 0x7fffu + ((bits >> 16) & 1u);
  uint16_t rounded = (uint16_t)((bits + roundingBias) >> 16);
  // A finite value that rounds to infinity is sent as the largest finite bfloat16 (the rest stays in the residual).
  if ((bits & 0x7f800000u) != 0x7f800000u && (rounded & 0x7fffu) == 0x7f80u) rounded -= 1;
  return rounded;
}

static inline float fromBF16(uint16_t h) { return floatOf((uint32_t)h << 16); }

static inline uint16_t toFP16(float x) {
  float clamped = x > 65504.0f ? 65504.0f : (x < -65504.0f ? -65504.0f : x);
  _Float16 h = (_Float16)clamped;
  uint16_t bits;
  memcpy(&bits, &h, sizeof bits);
  return bits;
}

static inline float fromFP16(uint16_t bits) {
  _Float16 h;
  memcpy(&h, &bits, sizeof h);
  return (float)h;
}

DDP_CLONES
void ddp_encode_bf16(uint16_t *restrict out, const float *restrict x, float *restrict residual, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) {
    float v = x[i] + residual[i];
    uint16_t q = toBF16(v);
    out[i] = q;
    residual[i] = v - fromBF16(q);
  }
}

DDP_CLONES
void ddp_encode_fp16(uint16_t *restrict out, const float *restrict x, float *restrict residual, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) {
    float v = x[i] + residual[i];
    uint16_t q = toFP16(v);
    out[i] = q;
    residual[i] = v - fromFP16(q);
  }
}

DDP_CLONES
void ddp_add_bf16(float *restrict out, const uint16_t *restrict in, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) out[i] += fromBF16(in[i]);
}

DDP_CLONES
void ddp_add_fp16(float *restrict out, const uint16_t *restrict in, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) out[i] += fromFP16(in[i]);
}

DDP_CLONES
void ddp_decode_bf16(float *restrict out, const uint16_t *restrict in, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) out[i] = fromBF16(in[i]);
}

DDP_CLONES
void ddp_decode_fp16(float *restrict out, const uint16_t *restrict in, ptrdiff_t n) {
  for (ptrdiff_t i = 0; i < n; i++) out[i] = fromFP16(in[i]);
}
