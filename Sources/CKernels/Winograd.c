#include "Winograd.h"

#include <string.h>

// One rounding per operation, in the order written: no FMA contraction (see Kernels.c).
#pragma clang fp contract(off)

#define DDP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// The four one-dimensional transforms, each applied down columns and then along rows (or the reverse for the
// adjoints), on vectors of eight tiles (T is f8); the kernel's two are on scalars. Winograd.h gives the matrices;
// every constant in Bᵀ and Aᵀ is exact in binary.
//
// Bᵀ d, with t13 = d1 − d3 and t42 = d4 − d2.
#define INPUT_ROW(T, d, r)                                                \
  do {                                                                    \
    T t13_ = (d)[1] - (d)[3], t42_ = (d)[4] - (d)[2];                     \
    (r)[0] = (((d)[0] - 2 * (d)[2]) + (d)[4]) + 1.5f * t13_;              \
    (r)[1] = ((d)[4] - (d)[1]) - (2.5f * (d)[2] + 0.5f * (d)[3]);         \
    (r)[2] = ((d)[4] + (d)[1]) + (0.5f * (d)[2] - 2.5f * (d)[3]);         \
    (r)[3] = t42_ - 0.5f * t13_;                                          \
    (r)[4] = t42_ + 2 * t13_;                                             \
    (r)[5] = (((d)[1] - 2 * (d)[3]) + (d)[5]) + 1.5f * ((d)[2] - (d)[4]); \
  } while (0)
// B e, the adjoint of INPUT_ROW: h13 and h42 carry what t13 and t42 received.
#define INPUT_ROW_ADJOINT(T, e, dd)                                                      \
  do {                                                                                   \
    T h13_ = (1.5f * (e)[0] + 2 * (e)[4]) - 0.5f * (e)[3], h42_ = (e)[3] + (e)[4];       \
    (dd)[0] = (e)[0];                                                                    \
    (dd)[1] = ((h13_ - (e)[1]) + (e)[2]) + (e)[5];                                       \
    (dd)[2] = (((0.5f * (e)[2] - 2 * (e)[0]) - 2.5f * (e)[1]) - h42_) + 1.5f * (e)[5];   \
    (dd)[3] = ((-h13_ - 0.5f * (e)[1]) - 2.5f * (e)[2]) - 2 * (e)[5];                    \
    (dd)[4] = ((((e)[0] + (e)[1]) + (e)[2]) + h42_) - 1.5f * (e)[5];                     \
    (dd)[5] = (e)[5];                                                                    \
  } while (0)
// Aᵀ m, with a = m1 + m2 and b = m1 − m2.
#define OUTPUT_ROW(T, m, y)                                       \
  do {                                                            \
    T a_ = (m)[1] + (m)[2], b_ = (m)[1] - (m)[2];                 \
    (y)[0] = (((m)[0] + a_) + (m)[3]) + (m)[4];                   \
    (y)[1] = (b_ + 2 * (m)[3]) - 0.5f * (m)[4];                   \
    (y)[2] = (a_ + 4 * (m)[3]) + 0.25f * (m)[4];                  \
    (y)[3] = ((b_ + 8 * (m)[3]) - 0.125f * (m)[4]) + (m)[5];      \
  } while (0)
// A g, the adjoint of OUTPUT_ROW.
#define OUTPUT_ROW_ADJOINT(T, g, m)                                          \
  do {                                                                       \
    T p_ = (g)[0] + (g)[2], q_ = (g)[1] + (g)[3];                            \
    (m)[0] = (g)[0];                                                         \
    (m)[1] = p_ + q_;                                                        \
    (m)[2] = p_ - q_;                                                        \
    (m)[3] = ((g)[0] + 2 * (g)[1]) + (4 * (g)[2] + 8 * (g)[3]);              \
    (m)[4] = ((g)[0] - 0.5f * (g)[1]) + (0.25f * (g)[2] - 0.125f * (g)[3]);  \
    (m)[5] = (g)[3];                                                         \
  } while (0)

// F(4×4, 5×5)'s 8-point transforms (Winograd.h gives the matrices), with the same conventions.
// Bᵀ d.
#define INPUT8_ROW(T, d, r)                                                         \
  do {                                                                              \
    T t1_ = ((d)[2] + (d)[6]) - 4.25f * (d)[4], t2_ = ((d)[1] + (d)[5]) - 4.25f * (d)[3]; \
    T t3_ = (0.25f * (d)[2] + (d)[6]) - 1.25f * (d)[4];                             \
    T t4_ = (0.5f * (d)[1] + 2 * (d)[5]) - 2.5f * (d)[3];                           \
    T t5_ = (4 * (d)[2] + (d)[6]) - 5 * (d)[4];                                     \
    T t6_ = (2 * (d)[1] + 0.5f * (d)[5]) - 2.5f * (d)[3];                           \
    (r)[0] = ((d)[0] - (d)[6]) + 5.25f * ((d)[4] - (d)[2]);                         \
    (r)[1] = t1_ + t2_;                                                             \
    (r)[2] = t1_ - t2_;                                                             \
    (r)[3] = t3_ + t4_;                                                             \
    (r)[4] = t3_ - t4_;                                                             \
    (r)[5] = t5_ + t6_;                                                             \
    (r)[6] = t5_ - t6_;                                                             \
    (r)[7] = ((d)[7] - (d)[1]) + 5.25f * ((d)[3] - (d)[5]);                         \
  } while (0)
// B e, the adjoint of INPUT8_ROW, over the sums s and differences q of the pairs (e1, e2), (e3, e4), (e5, e6).
#define INPUT8_ROW_ADJOINT(T, e, dd)                                                \
  do {                                                                              \
    T s1_ = (e)[1] + (e)[2], q1_ = (e)[1] - (e)[2], s2_ = (e)[3] + (e)[4];          \
    T q2_ = (e)[3] - (e)[4], s3_ = (e)[5] + (e)[6], q3_ = (e)[5] - (e)[6];          \
    (dd)[0] = (e)[0];                                                               \
    (dd)[1] = ((q1_ + 0.5f * q2_) + 2 * q3_) - (e)[7];                              \
    (dd)[2] = ((s1_ + 0.25f * s2_) + 4 * s3_) - 5.25f * (e)[0];                     \
    (dd)[3] = 5.25f * (e)[7] - ((4.25f * q1_ + 2.5f * q2_) + 2.5f * q3_);           \
    (dd)[4] = 5.25f * (e)[0] - ((4.25f * s1_ + 1.25f * s2_) + 5 * s3_);             \
    (dd)[5] = ((q1_ + 2 * q2_) + 0.5f * q3_) - 5.25f * (e)[7];                      \
    (dd)[6] = ((s1_ + s2_) + s3_) - (e)[0];                                         \
    (dd)[7] = (e)[7];                                                               \
  } while (0)
// Aᵀ m (four outputs from eight).
#define OUTPUT8_ROW(T, m, y)                                                        \
  do {                                                                              \
    T a1_ = (m)[1] + (m)[2], b1_ = (m)[1] - (m)[2], a2_ = (m)[3] + (m)[4];          \
    T b2_ = (m)[3] - (m)[4], a3_ = (m)[5] + (m)[6], b3_ = (m)[5] - (m)[6];          \
    (y)[0] = (((m)[0] + a1_) + a2_) + a3_;                                          \
    (y)[1] = (b1_ + 2 * b2_) + 0.5f * b3_;                                          \
    (y)[2] = (a1_ + 4 * a2_) + 0.25f * a3_;                                         \
    (y)[3] = ((b1_ + 8 * b2_) + 0.125f * b3_) + (m)[7];                             \
  } while (0)
// A g, the adjoint of OUTPUT8_ROW.
#define OUTPUT8_ROW_ADJOINT(T, g, m)                                                \
  do {                                                                              \
    T p1_ = (g)[0] + (g)[2], q1_ = (g)[1] + (g)[3];                                 \
    T p2_ = (g)[0] + 4 * (g)[2], q2_ = 2 * (g)[1] + 8 * (g)[3];                     \
    T p3_ = (g)[0] + 0.25f * (g)[2], q3_ = 0.5f * (g)[1] + 0.125f * (g)[3];         \
    (m)[0] = (g)[0];                                                                \
    (m)[1] = p1_ + q1_;                                                             \
    (m)[2] = p1_ - q1_;                                                             \
    (m)[3] = p2_ + q2_;                                                             \
    (m)[4] = p2_ - q2_;                                                             \
    (m)[5] = p3_ + q3_;                                                             \
    (m)[6] = p3_ - q3_;                                                             \
    (m)[7] = (g)[3];                                                                \
  } while (0)

// F(4×4, 5×5)'s G [8][5], in double: the weights' transform and its adjoint run once per step, so they can
// round once at the end instead of at every step of G g Gᵀ.
static const double kernel8[8][5] = {
    {1, 0, 0, 0, 0},
    {-2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9, -2.0 / 9},
    {-2.0 / 9, 2.0 / 9, -2.0 / 9, 2.0 / 9, -2.0 / 9},
    {1.0 / 90, 2.0 / 90, 4.0 / 90, 8.0 / 90, 16.0 / 90},
    {1.0 / 90, -2.0 / 90, 4.0 / 90, -8.0 / 90, 16.0 / 90},
    {32.0 / 45, 16.0 / 45, 8.0 / 45, 4.0 / 45, 2.0 / 45},
    {32.0 / 45, -16.0 / 45, 8.0 / 45, -4.0 / 45, 2.0 / 45},
    {0, 0, 0, 0, 1},
};

// G g for one column of a 3×3 kernel, and its adjoint Gᵀ u.
static inline void kernelRow(const float g[3], float u[6]) {
  u[0] = g[0];
  u[1] = -((g[0] + g[1]) + g[2]) / 3;
  u[2] = ((g[0] - g[1]) + g[2]) / 3;
  u[3] = ((g[0] + 2 * g[1]) + 4 * g[2]) / 15;
  u[4] = -((16 * g[0] - 8 * g[1]) + 4 * g[2]) / 15;
  u[5] = g[2];
}

static inline void kernelRowAdjoint(const float u[6], float g[3]) {
  g[0] = (u[0] + (u[2] - u[1]) / 3) + (u[3] - 16 * u[4]) / 15;
  g[1] = (2 * u[3] + 8 * u[4]) / 15 - (u[1] + u[2]) / 3;
  g[2] = ((u[2] - u[1]) / 3 + (4 * u[3] - 4 * u[4]) / 15) + u[5];
}

static void transformWeights3(float *restrict u, const float *restrict g, ptrdiff_t outC, ptrdiff_t inC) {
  ptrdiff_t plane = outC * inC;
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t c = 0; c < inC; c++) {
      const float *kernel = g + (o * inC + c) * 9;
      float t[3][6];  // column q of G g, for q = 0, 1, 2
      for (int q = 0; q < 3; q++) kernelRow((float[3]){kernel[q], kernel[3 + q], kernel[6 + q]}, t[q]);
      for (int a = 0; a < 6; a++) {
        float row[6];
        kernelRow((float[3]){t[0][a], t[1][a], t[2][a]}, row);
        for (int b = 0; b < 6; b++) u[(6 * a + b) * plane + o * inC + c] = row[b];
      }
    }
  }
}

static void accumulateWeightGradient3(float *restrict dg, const float *restrict du, ptrdiff_t outC,
                                      ptrdiff_t inC) {
  ptrdiff_t plane = outC * inC;
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t c = 0; c < inC; c++) {
      float w[6][3];  // dU G: row a of dU taken back to three columns
      for (int a = 0; a < 6; a++) {
        float row[6];
        for (int b = 0; b < 6; b++) row[b] = du[(6 * a + b) * plane + o * inC + c];
        kernelRowAdjoint(row, w[a]);
      }
      float *out = dg + (o * inC + c) * 9;
      for (int q = 0; q < 3; q++) {
        float column[3];
        kernelRowAdjoint((float[6]){w[0][q], w[1][q], w[2][q], w[3][q], w[4][q], w[5][q]}, column);
        for (int p = 0; p < 3; p++) out[3 * p + q] += column[p];
      }
    }
  }
}

// U = G g Gᵀ for 5×5 kernels, in double.
static void transformWeights5(float *restrict u, const float *restrict g, ptrdiff_t outC, ptrdiff_t inC) {
  ptrdiff_t plane = outC * inC;
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t c = 0; c < inC; c++) {
      const float *kernel = g + (o * inC + c) * 25;
      double t[8][5];  // G g
      for (int a = 0; a < 8; a++) {
        for (int q = 0; q < 5; q++) {
          double sum = 0;
          for (int p = 0; p < 5; p++) sum += kernel8[a][p] * kernel[5 * p + q];
          t[a][q] = sum;
        }
      }
      for (int a = 0; a < 8; a++) {
        for (int b = 0; b < 8; b++) {
          double sum = 0;
          for (int q = 0; q < 5; q++) sum += t[a][q] * kernel8[b][q];
          u[(8 * a + b) * plane + o * inC + c] = (float)sum;
        }
      }
    }
  }
}

// dg += Gᵀ dU G for 5×5 kernels, in double.
static void accumulateWeightGradient5(float *restrict dg, const float *restrict du, ptrdiff_t outC, ptrdiff_t inC) {
  ptrdiff_t plane = outC * inC;
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t c = 0; c < inC; c++) {
      double w[5][8];  // Gᵀ dU
      for (int p = 0; p < 5; p++) {
        for (int b = 0; b < 8; b++) {
          double sum = 0;
          for (int a = 0; a < 8; a++) sum += kernel8[a][p] * du[(8 * a + b) * plane + o * inC + c];
          w[p][b] = sum;
        }
      }
      float *out = dg + (o * inC + c) * 25;
      for (int p = 0; p < 5; p++) {
        for (int q = 0; q < 5; q++) {
          double sum = 0;
          for (int b = 0; b < 8; b++) sum += w[p][b] * kernel8[b][q];
          out[5 * p + q] += (float)sum;
        }
      }
    }
  }
}

ptrdiff_t ddp_winograd_tile_side(ptrdiff_t k) { return k == 5 ? 8 : 6; }

ptrdiff_t ddp_winograd_parts_across(ptrdiff_t k) { return k == 5 ? 1 : (k + 2) / 3; }

void ddp_winograd_transform_weights(float *restrict u, const float *restrict g, ptrdiff_t outC, ptrdiff_t inC,
                                    ptrdiff_t k) {
  if (k == 5) {
    transformWeights5(u, g, outC, inC);
  } else {
    transformWeights3(u, g, outC, inC);
  }
}

void ddp_winograd_accumulate_weight_gradient(float *restrict dg, const float *restrict du, ptrdiff_t outC,
                                             ptrdiff_t inC, ptrdiff_t k) {
  if (k == 5) {
    accumulateWeightGradient5(dg, du, outC, inC);
  } else {
    accumulateWeightGradient3(dg, du, outC, inC);
  }
}

void ddp_winograd_split_kernel(float *restrict parts, const float *restrict g, ptrdiff_t outC, ptrdiff_t inC,
                               ptrdiff_t k) {
  ptrdiff_t across = (k + 2) / 3, partCount = across * across;
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t part = 0; part < partCount; part++) {
      ptrdiff_t a = 3 * (part / across), b = 3 * (part % across);
      for (ptrdiff_t c = 0; c < inC; c++) {
        float *h = parts + ((o * partCount + part) * inC + c) * 9;
        const float *kernel = g + (o * inC + c) * k * k;
        for (ptrdiff_t i = 0; i < 3; i++) {
          for (ptrdiff_t j = 0; j < 3; j++) h[3 * i + j] = a + i < k && b + j < k ? kernel[(a + i) * k + b + j] : 0;
        }
      }
    }
  }
}

void ddp_winograd_merge_kernel_gradient(float *restrict dg, const float *restrict parts, ptrdiff_t outC,
                                        ptrdiff_t inC, ptrdiff_t k) {
  ptrdiff_t across = (k + 2) / 3, partCount = across * across;
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t part = 0; part < partCount; part++) {
      ptrdiff_t a = 3 * (part / across), b = 3 * (part % across);
      for (ptrdiff_t c = 0; c < inC; c++) {
        const float *h = parts + ((o * partCount + part) * inC + c) * 9;
        float *kernel = dg + (o * inC + c) * k * k;
        for (ptrdiff_t i = 0; i < 3 && a + i < k; i++) {
          for (ptrdiff_t j = 0; j < 3 && b + j < k; j++) kernel[(a + i) * k + b + j] += h[3 * i + j];
        }
      }
    }
  }
}

// Eight samples at a time: lane l of a vector is sample l of a group (lanes past the group's samples hold zeros
// on the way in and are dropped on the way out). Images are interleaved into [pixel][8] planes first, so every
// tile's loads and stores are whole vectors, whatever the image's width.
typedef float f8 __attribute__((ext_vector_type(8)));
typedef int i8 __attribute__((ext_vector_type(8)));
// Vector loads and stores as macros: a helper function taking or returning a vector would pass it in the
// registers of one instruction set, which the compiler refuses across clones.
#define LOAD8(p)                       \
  ({                                   \
    f8 loaded_;                        \
    memcpy(&loaded_, (p), sizeof(f8)); \
    loaded_;                           \
  })
#define STORE8(p, v)                   \
  do {                                 \
    f8 stored_ = (v);                  \
    memcpy((p), &stored_, sizeof(f8)); \
  } while (0)
#define ADD8(p, v)                    \
  do {                                \
    f8 old_;                          \
    memcpy(&old_, (p), sizeof(f8));   \
    old_ = old_ + (v);                \
    memcpy((p), &old_, sizeof(f8));   \
  } while (0)
// v where the lane's bits in mask are set, +0 elsewhere (a select: NaN garbage in masked lanes goes away too).
#define KEEP(v, mask) ((f8)((i8)(v) & (mask)))

// r[a][b] ← r[b][a] for an 8×8 block held as eight row vectors.
static inline __attribute__((always_inline)) void transpose8(f8 r[8]) {
  f8 t[8], u[8];
  for (int k = 0; k < 4; k++) {
    t[2 * k] = __builtin_shufflevector(r[2 * k], r[2 * k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[2 * k + 1] = __builtin_shufflevector(r[2 * k], r[2 * k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int k = 0; k < 2; k++) {
    u[4 * k] = __builtin_shufflevector(t[4 * k], t[4 * k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[4 * k + 1] = __builtin_shufflevector(t[4 * k], t[4 * k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[4 * k + 2] = __builtin_shufflevector(t[4 * k + 1], t[4 * k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[4 * k + 3] = __builtin_shufflevector(t[4 * k + 1], t[4 * k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int k = 0; k < 4; k++) {
    r[k] = __builtin_shufflevector(u[k], u[4 + k], 0, 1, 2, 3, 8, 9, 10, 11);
    r[4 + k] = __builtin_shufflevector(u[k], u[4 + k], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// dst[i][l] = src[l·stride + i] for i < n and the group's samples l < samples; 0 in the other lanes.
static inline __attribute__((always_inline)) void interleave(float *restrict dst, const float *restrict src,
                                                             ptrdiff_t stride, ptrdiff_t samples, ptrdiff_t n) {
  ptrdiff_t i = 0;
  for (; i + 8 <= n; i += 8) {
    f8 r[8];
    for (int l = 0; l < 8; l++) r[l] = l < samples ? LOAD8(src + l * stride + i) : (f8)0;
    transpose8(r);
    for (int k = 0; k < 8; k++) STORE8(dst + (i + k) * 8, r[k]);
  }
  for (; i < n; i++) {
    for (int l = 0; l < 8; l++) dst[i * 8 + l] = l < samples ? src[l * stride + i] : 0;
  }
}

// dst[l·stride + i] = src[i][l] for i < n and l < samples: the inverse of interleave.
static inline __attribute__((always_inline)) void deinterleave(float *restrict dst, ptrdiff_t stride,
                                                               ptrdiff_t samples, const float *restrict src,
                                                               ptrdiff_t n) {
  ptrdiff_t i = 0;
  for (; i + 8 <= n; i += 8) {
    f8 r[8];
    for (int k = 0; k < 8; k++) r[k] = LOAD8(src + (i + k) * 8);
    transpose8(r);
    for (int l = 0; l < samples; l++) STORE8(dst + l * stride + i, r[l]);
  }
  for (; i < n; i++) {
    for (int l = 0; l < samples; l++) dst[l * stride + i] = src[i * 8 + l];
  }
}

// The kernel's 3×3 parts across (and down): 1 for a 3×3 or 5×5 kernel (F(4×4, 5×5) takes the latter whole), 2
// for 4×4, 3 for 7×7.
static inline ptrdiff_t partsAcross(ptrdiff_t k) { return ddp_winograd_parts_across(k); }

// The zero-framed plane of one channel: the image at (pad, pad), and room for the windows of every tile of every
// part (part (a, b)'s tile (ty, tx) starts at row 4ty + a, column 4tx + b, and spans the tile side).
static inline ptrdiff_t planeRows(ptrdiff_t tiles, ptrdiff_t k) {
  return 4 * tiles + ddp_winograd_tile_side(k) - 4 + 3 * (partsAcross(k) - 1);
}

ptrdiff_t ddp_winograd_plane_stride(ptrdiff_t channels, ptrdiff_t ld) { return channels * ld + 16; }

// A zero-framed interleaved plane [rows][cols][8] and an interleaved image [pixels][8] beside it.
ptrdiff_t ddp_winograd_scratch_floats(ptrdiff_t tilesY, ptrdiff_t tilesX, ptrdiff_t k) {
  return 16 * planeRows(tilesY, k) * planeRows(tilesX, k);
}

static inline __attribute__((always_inline)) void transformInput6(float *restrict v, ptrdiff_t ld, ptrdiff_t plane, const float *restrict x,
                                                         ptrdiff_t samples, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                                                         ptrdiff_t pad, ptrdiff_t k, ptrdiff_t tilesY,
                                                         ptrdiff_t tilesX, float *restrict scratch) {
  ptrdiff_t rows = planeRows(tilesY, k), cols = planeRows(tilesX, k), across = partsAcross(k);
  float *padded = scratch;                 // [rows][cols][8]: the channel's images inside a frame of zeros
  float *flat = scratch + 8 * rows * cols;  // [h·w][8]
  memset(padded, 0, sizeof(float) * 8 * rows * cols);
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    interleave(flat, x + ci * h * w, c * h * w, samples, h * w);
    // Only the images' own rectangle changes from channel to channel: the frame stays zero.
    for (ptrdiff_t iy = 0; iy < h; iy++) {
      memcpy(padded + ((iy + pad) * cols + pad) * 8, flat + iy * w * 8, sizeof(float) * 8 * w);
    }
    for (ptrdiff_t part = 0; part < across * across; part++) {
      ptrdiff_t a = 3 * (part / across), b = 3 * (part % across);
      float *out = v + (part * c + ci) * ld;
      for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
        for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
          const float *window = padded + ((4 * ty + a) * cols + 4 * tx + b) * 8;
          f8 down[6][6];  // Bᵀ d: column j of the window taken down to six rows
          for (int j = 0; j < 6; j++) {
            f8 column[6], r[6];
            for (int i = 0; i < 6; i++) column[i] = LOAD8(window + (i * cols + j) * 8);
            INPUT_ROW(f8, column, r);
            for (int q = 0; q < 6; q++) down[q][j] = r[q];
          }
          float *tile = out + (ty * tilesX + tx) * 8;
          for (int q = 0; q < 6; q++) {
            f8 r[6];
            INPUT_ROW(f8, down[q], r);
            for (int j = 0; j < 6; j++) STORE8(tile + (6 * q + j) * plane, r[j]);
          }
        }
      }
    }
  }
}

static inline __attribute__((always_inline)) void transformOutput6(float *restrict y, const float *restrict m, ptrdiff_t ld,
                                                          ptrdiff_t samples, const float *restrict bias,
                                                          ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow,
                                                          ptrdiff_t tilesY, ptrdiff_t tilesX, bool relu,
                                                          float *restrict scratch) {
  ptrdiff_t plane = ddp_winograd_plane_stride(outC, ld);
  float *flat = scratch;  // [oh·ow][8]
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        const float *tile = m + o * ld + (ty * tilesX + tx) * 8;
        f8 s[4][6];  // Aᵀ M: column j of the tile taken down to four rows
        for (int j = 0; j < 6; j++) {
          f8 column[6], down[4];
          for (int i = 0; i < 6; i++) column[i] = LOAD8(tile + (6 * i + j) * plane);
          OUTPUT_ROW(f8, column, down);
          for (int k = 0; k < 4; k++) s[k][j] = down[k];
        }
        for (ptrdiff_t k = 0; k < 4 && 4 * ty + k < oh; k++) {
          f8 out[4];
          OUTPUT_ROW(f8, s[k], out);
          for (ptrdiff_t l = 0; l < 4 && 4 * tx + l < ow; l++) {
            f8 value = out[l] + bias[o];
            if (relu) value = KEEP(value, (i8)(value > (f8)0));
            STORE8(flat + ((4 * ty + k) * ow + 4 * tx + l) * 8, value);
          }
        }
      }
    }
    deinterleave(y + o * oh * ow, outC * oh * ow, samples, flat, oh * ow);
  }
}

static inline __attribute__((always_inline)) void transformOutputGradient6(float *restrict dm, ptrdiff_t ld, const float *restrict dy,
                                                                  ptrdiff_t samples, ptrdiff_t outC, ptrdiff_t oh,
                                                                  ptrdiff_t ow, ptrdiff_t tilesY, ptrdiff_t tilesX,
                                                                  float *restrict scratch) {
  ptrdiff_t plane = ddp_winograd_plane_stride(outC, ld);
  ptrdiff_t cols = 4 * tilesX;
  float *grid = scratch;                             // [4·tilesY][cols][8]: zero past oh and ow
  float *flat = scratch + 8 * 4 * tilesY * cols;  // [oh·ow][8]
  memset(grid, 0, sizeof(float) * 8 * 4 * tilesY * cols);
  for (ptrdiff_t o = 0; o < outC; o++) {
    interleave(flat, dy + o * oh * ow, outC * oh * ow, samples, oh * ow);
    for (ptrdiff_t oy = 0; oy < oh; oy++) memcpy(grid + oy * cols * 8, flat + oy * ow * 8, sizeof(float) * 8 * ow);
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        const float *window = grid + (4 * ty * cols + 4 * tx) * 8;
        f8 across[4][6];  // dY Aᵀ: row i of the tile's gradient taken out to six columns
        for (int i = 0; i < 4; i++) {
          f8 row[4];
          for (int j = 0; j < 4; j++) row[j] = LOAD8(window + (i * cols + j) * 8);
          OUTPUT_ROW_ADJOINT(f8, row, across[i]);
        }
        float *tile = dm + o * ld + (ty * tilesX + tx) * 8;
        for (int j = 0; j < 6; j++) {
          f8 column[4] = {across[0][j], across[1][j], across[2][j], across[3][j]}, up[6];
          OUTPUT_ROW_ADJOINT(f8, column, up);
          for (int i = 0; i < 6; i++) STORE8(tile + (6 * i + j) * plane, up[i]);
        }
      }
    }
  }
}

static inline __attribute__((always_inline)) void transformInputGradient6(float *restrict dx, const float *restrict dv, ptrdiff_t ld,
                                                                 ptrdiff_t plane, ptrdiff_t samples, ptrdiff_t c,
                                                                 ptrdiff_t h, ptrdiff_t w, ptrdiff_t pad, ptrdiff_t k,
                                                                 ptrdiff_t tilesY, ptrdiff_t tilesX,
                                                                 float *restrict scratch) {
  ptrdiff_t rows = planeRows(tilesY, k), cols = planeRows(tilesX, k), across = partsAcross(k);
  float *padded = scratch;                 // [rows][cols][8]: the padded images' gradient
  float *flat = scratch + 8 * rows * cols;  // [h·w][8]
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    memset(padded, 0, sizeof(float) * 8 * rows * cols);
    for (ptrdiff_t part = 0; part < across * across; part++) {
      ptrdiff_t a = 3 * (part / across), b = 3 * (part % across);
      for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
        for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
          const float *tile = dv + (part * c + ci) * ld + (ty * tilesX + tx) * 8;
          f8 across6[6][6];  // dV Bᵀ: row q of dV taken back to six columns
          for (int q = 0; q < 6; q++) {
            f8 e[6];
            for (int j = 0; j < 6; j++) e[j] = LOAD8(tile + (6 * q + j) * plane);
            INPUT_ROW_ADJOINT(f8, e, across6[q]);
          }
          float *window = padded + ((4 * ty + a) * cols + 4 * tx + b) * 8;
          for (int j = 0; j < 6; j++) {
            f8 column[6] = {across6[0][j], across6[1][j], across6[2][j], across6[3][j], across6[4][j], across6[5][j]},
               up[6];
            INPUT_ROW_ADJOINT(f8, column, up);
            for (int i = 0; i < 6; i++) ADD8(window + (i * cols + j) * 8, up[i]);
          }
        }
      }
    }
    for (ptrdiff_t iy = 0; iy < h; iy++) {
      memcpy(flat + iy * w * 8, padded + ((iy + pad) * cols + pad) * 8, sizeof(float) * 8 * w);
    }
    deinterleave(dx + ci * h * w, c * h * w, samples, flat, h * w);
  }
}

// F(4×4, 5×5): the same four transforms with 8×8 tiles (ξ = 8i + j in 0..<64), one window per tile (no parts).

static inline __attribute__((always_inline)) void transformInput8(float *restrict v, ptrdiff_t ld, ptrdiff_t plane,
                                                                  const float *restrict x, ptrdiff_t samples,
                                                                  ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t pad,
                                                                  ptrdiff_t tilesY, ptrdiff_t tilesX,
                                                                  float *restrict scratch) {
  ptrdiff_t rows = planeRows(tilesY, 5), cols = planeRows(tilesX, 5);
  float *padded = scratch;                  // [rows][cols][8]: the channel's images inside a frame of zeros
  float *flat = scratch + 8 * rows * cols;  // [h·w][8]
  memset(padded, 0, sizeof(float) * 8 * rows * cols);
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    interleave(flat, x + ci * h * w, c * h * w, samples, h * w);
    for (ptrdiff_t iy = 0; iy < h; iy++) {
      memcpy(padded + ((iy + pad) * cols + pad) * 8, flat + iy * w * 8, sizeof(float) * 8 * w);
    }
    float *out = v + ci * ld;
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        const float *window = padded + (4 * ty * cols + 4 * tx) * 8;
        f8 down[8][8];  // Bᵀ d: column j of the window taken down to eight rows
        for (int j = 0; j < 8; j++) {
          f8 column[8], r[8];
          for (int i = 0; i < 8; i++) column[i] = LOAD8(window + (i * cols + j) * 8);
          INPUT8_ROW(f8, column, r);
          for (int q = 0; q < 8; q++) down[q][j] = r[q];
        }
        float *tile = out + (ty * tilesX + tx) * 8;
        for (int q = 0; q < 8; q++) {
          f8 r[8];
          INPUT8_ROW(f8, down[q], r);
          for (int j = 0; j < 8; j++) STORE8(tile + (8 * q + j) * plane, r[j]);
        }
      }
    }
  }
}

static inline __attribute__((always_inline)) void transformOutput8(float *restrict y, const float *restrict m,
                                                                   ptrdiff_t ld, ptrdiff_t samples,
                                                                   const float *restrict bias, ptrdiff_t outC,
                                                                   ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t tilesY,
                                                                   ptrdiff_t tilesX, bool relu,
                                                                   float *restrict scratch) {
  ptrdiff_t plane = ddp_winograd_plane_stride(outC, ld);
  float *flat = scratch;  // [oh·ow][8]
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        const float *tile = m + o * ld + (ty * tilesX + tx) * 8;
        f8 s[4][8];  // Aᵀ M: column j of the tile taken down to four rows
        for (int j = 0; j < 8; j++) {
          f8 column[8], down[4];
          for (int i = 0; i < 8; i++) column[i] = LOAD8(tile + (8 * i + j) * plane);
          OUTPUT8_ROW(f8, column, down);
          for (int k = 0; k < 4; k++) s[k][j] = down[k];
        }
        for (ptrdiff_t k = 0; k < 4 && 4 * ty + k < oh; k++) {
          f8 out[4];
          OUTPUT8_ROW(f8, s[k], out);
          for (ptrdiff_t l = 0; l < 4 && 4 * tx + l < ow; l++) {
            f8 value = out[l] + bias[o];
            if (relu) value = KEEP(value, (i8)(value > (f8)0));
            STORE8(flat + ((4 * ty + k) * ow + 4 * tx + l) * 8, value);
          }
        }
      }
    }
    deinterleave(y + o * oh * ow, outC * oh * ow, samples, flat, oh * ow);
  }
}

static inline __attribute__((always_inline)) void transformOutputGradient8(float *restrict dm, ptrdiff_t ld,
                                                                           const float *restrict dy, ptrdiff_t samples,
                                                                           ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow,
                                                                           ptrdiff_t tilesY, ptrdiff_t tilesX,
                                                                           float *restrict scratch) {
  ptrdiff_t plane = ddp_winograd_plane_stride(outC, ld);
  ptrdiff_t cols = 4 * tilesX;
  float *grid = scratch;                          // [4·tilesY][cols][8]: zero past oh and ow
  float *flat = scratch + 8 * 4 * tilesY * cols;  // [oh·ow][8]
  memset(grid, 0, sizeof(float) * 8 * 4 * tilesY * cols);
  for (ptrdiff_t o = 0; o < outC; o++) {
    interleave(flat, dy + o * oh * ow, outC * oh * ow, samples, oh * ow);
    for (ptrdiff_t oy = 0; oy < oh; oy++) memcpy(grid + oy * cols * 8, flat + oy * ow * 8, sizeof(float) * 8 * ow);
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        const float *window = grid + (4 * ty * cols + 4 * tx) * 8;
        f8 across[4][8];  // dY Aᵀ: row i of the tile's gradient taken out to eight columns
        for (int i = 0; i < 4; i++) {
          f8 row[4];
          for (int j = 0; j < 4; j++) row[j] = LOAD8(window + (i * cols + j) * 8);
          OUTPUT8_ROW_ADJOINT(f8, row, across[i]);
        }
        float *tile = dm + o * ld + (ty * tilesX + tx) * 8;
        for (int j = 0; j < 8; j++) {
          f8 column[4] = {across[0][j], across[1][j], across[2][j], across[3][j]}, up[8];
          OUTPUT8_ROW_ADJOINT(f8, column, up);
          for (int i = 0; i < 8; i++) STORE8(tile + (8 * i + j) * plane, up[i]);
        }
      }
    }
  }
}

static inline __attribute__((always_inline)) void transformInputGradient8(float *restrict dx,
                                                                          const float *restrict dv, ptrdiff_t ld,
                                                                          ptrdiff_t plane, ptrdiff_t samples,
                                                                          ptrdiff_t c, ptrdiff_t h, ptrdiff_t w,
                                                                          ptrdiff_t pad, ptrdiff_t tilesY,
                                                                          ptrdiff_t tilesX, float *restrict scratch) {
  ptrdiff_t rows = planeRows(tilesY, 5), cols = planeRows(tilesX, 5);
  float *padded = scratch;                  // [rows][cols][8]: the padded images' gradient
  float *flat = scratch + 8 * rows * cols;  // [h·w][8]
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    memset(padded, 0, sizeof(float) * 8 * rows * cols);
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        const float *tile = dv + ci * ld + (ty * tilesX + tx) * 8;
        f8 across[8][8];  // dV Bᵀ: row q of dV taken back to eight columns
        for (int q = 0; q < 8; q++) {
          f8 e[8];
          for (int j = 0; j < 8; j++) e[j] = LOAD8(tile + (8 * q + j) * plane);
          INPUT8_ROW_ADJOINT(f8, e, across[q]);
        }
        float *window = padded + (4 * ty * cols + 4 * tx) * 8;
        for (int j = 0; j < 8; j++) {
          f8 column[8] = {across[0][j], across[1][j], across[2][j], across[3][j],
                          across[4][j], across[5][j], across[6][j], across[7][j]},
             up[8];
          INPUT8_ROW_ADJOINT(f8, column, up);
          for (int i = 0; i < 8; i++) ADD8(window + (i * cols + j) * 8, up[i]);
        }
      }
    }
    for (ptrdiff_t iy = 0; iy < h; iy++) {
      memcpy(flat + iy * w * 8, padded + ((iy + pad) * cols + pad) * 8, sizeof(float) * 8 * w);
    }
    deinterleave(dx + ci * h * w, c * h * w, samples, flat, h * w);
  }
}

// The exported transforms: F(4×4, 5×5) for a 5×5 kernel, F(4×4, 3×3) (in parts for other sizes) otherwise.

DDP_CLONES
void ddp_winograd_transform_input(float *restrict v, ptrdiff_t ld, ptrdiff_t plane, const float *restrict x,
                                  ptrdiff_t samples, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t pad, ptrdiff_t k,
                                  ptrdiff_t tilesY, ptrdiff_t tilesX, float *restrict scratch) {
  if (k == 5) {
    transformInput8(v, ld, plane, x, samples, c, h, w, pad, tilesY, tilesX, scratch);
  } else {
    transformInput6(v, ld, plane, x, samples, c, h, w, pad, k, tilesY, tilesX, scratch);
  }
}

DDP_CLONES
void ddp_winograd_transform_output(float *restrict y, const float *restrict m, ptrdiff_t ld, ptrdiff_t samples,
                                   const float *restrict bias, ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t k,
                                   ptrdiff_t tilesY, ptrdiff_t tilesX, bool relu, float *restrict scratch) {
  if (k == 5) {
    transformOutput8(y, m, ld, samples, bias, outC, oh, ow, tilesY, tilesX, relu, scratch);
  } else {
    transformOutput6(y, m, ld, samples, bias, outC, oh, ow, tilesY, tilesX, relu, scratch);
  }
}

DDP_CLONES
void ddp_winograd_transform_output_gradient(float *restrict dm, ptrdiff_t ld, const float *restrict dy,
                                            ptrdiff_t samples, ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t k,
                                            ptrdiff_t tilesY, ptrdiff_t tilesX, float *restrict scratch) {
  if (k == 5) {
    transformOutputGradient8(dm, ld, dy, samples, outC, oh, ow, tilesY, tilesX, scratch);
  } else {
    transformOutputGradient6(dm, ld, dy, samples, outC, oh, ow, tilesY, tilesX, scratch);
  }
}

DDP_CLONES
void ddp_winograd_transform_input_gradient(float *restrict dx, const float *restrict dv, ptrdiff_t ld,
                                           ptrdiff_t plane, ptrdiff_t samples, ptrdiff_t c, ptrdiff_t h,
                                           ptrdiff_t w, ptrdiff_t pad, ptrdiff_t k, ptrdiff_t tilesY,
                                           ptrdiff_t tilesX, float *restrict scratch) {
  if (k == 5) {
    transformInputGradient8(dx, dv, ld, plane, samples, c, h, w, pad, tilesY, tilesX, scratch);
  } else {
    transformInputGradient6(dx, dv, ld, plane, samples, c, h, w, pad, k, tilesY, tilesX, scratch);
  }
}
