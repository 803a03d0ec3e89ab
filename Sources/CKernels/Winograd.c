#include "Winograd.h"

#include <string.h>

// One rounding per operation, in the order written: no FMA contraction (see Kernels.c).
#pragma clang fp contract(off)

#define DDP_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// G g Gᵀ for one 3×3 kernel: the rows of G g, then G applied to each row's three columns.
static inline void kernelTransform(const float *restrict g, float u[16]) {
  float t[4][3];
  for (int j = 0; j < 3; j++) {
    t[0][j] = g[j];
    t[1][j] = 0.5f * ((g[j] + g[3 + j]) + g[6 + j]);
    t[2][j] = 0.5f * ((g[j] - g[3 + j]) + g[6 + j]);
    t[3][j] = g[6 + j];
  }
  for (int i = 0; i < 4; i++) {
    u[4 * i + 0] = t[i][0];
    u[4 * i + 1] = 0.5f * ((t[i][0] + t[i][1]) + t[i][2]);
    u[4 * i + 2] = 0.5f * ((t[i][0] - t[i][1]) + t[i][2]);
    u[4 * i + 3] = t[i][2];
  }
}

void ddp_winograd_transform_weights(float *restrict u, const float *restrict g, ptrdiff_t outC, ptrdiff_t inC) {
  ptrdiff_t plane = outC * inC;
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t c = 0; c < inC; c++) {
      float tile[16];
      kernelTransform(g + (o * inC + c) * 9, tile);
      for (int xi = 0; xi < 16; xi++) u[xi * plane + o * inC + c] = tile[xi];
    }
  }
}

void ddp_winograd_accumulate_weight_gradient(float *restrict dg, const float *restrict du, ptrdiff_t outC,
                                             ptrdiff_t inC) {
  ptrdiff_t plane = outC * inC;
  for (ptrdiff_t o = 0; o < outC; o++) {
    for (ptrdiff_t c = 0; c < inC; c++) {
      float d[16];
      for (int xi = 0; xi < 16; xi++) d[xi] = du[xi * plane + o * inC + c];
      // Gᵀ d: rows a = 0, 1, 2 of the 3×4 product.
      float w[3][4];
      for (int j = 0; j < 4; j++) {
        float half = 0.5f * (d[4 + j] + d[8 + j]);
        w[0][j] = d[j] + half;
        w[1][j] = 0.5f * (d[4 + j] - d[8 + j]);
        w[2][j] = half + d[12 + j];
      }
      float *out = dg + (o * inC + c) * 9;
      for (int a = 0; a < 3; a++) {
        float half = 0.5f * (w[a][1] + w[a][2]);
        out[3 * a + 0] += w[a][0] + half;
        out[3 * a + 1] += 0.5f * (w[a][1] - w[a][2]);
        out[3 * a + 2] += half + w[a][3];
      }
    }
  }
}

// Eight tiles of a tile row at a time: lane l of a vector is tile tx0 + l. Loads may read past a row's last tile
// and stores may write past it (see `ddp_winograd_row_padding` in Winograd.h): what they write there is written
// again, in the right place, before anything reads it.
typedef float f8 __attribute__((ext_vector_type(8)));
typedef int i8 __attribute__((ext_vector_type(8)));
typedef float f16 __attribute__((ext_vector_type(16)));
// Vector loads, stores and shuffles as macros: a helper function taking or returning a vector would pass it in
// the registers of one instruction set, which the compiler refuses across clones.
#define LOAD8(p)                      \
  ({                                  \
    f8 loaded_;                       \
    memcpy(&loaded_, (p), sizeof(f8)); \
    loaded_;                          \
  })
#define STORE8(p, v)               \
  do {                             \
    f8 stored_ = (v);              \
    memcpy((p), &stored_, sizeof(f8)); \
  } while (0)
#define STORE16(p, v)               \
  do {                              \
    f16 stored_ = (v);              \
    memcpy((p), &stored_, sizeof(f16)); \
  } while (0)
#define ADD16(p, v)                     \
  do {                                  \
    f16 old_;                           \
    memcpy(&old_, (p), sizeof(f16));     \
    old_ = old_ + (v);                  \
    memcpy((p), &old_, sizeof(f16));     \
  } while (0)
// The even and the odd elements of p[0..<16].
#define DEINTERLEAVE(p, even, odd)                                              \
  do {                                                                          \
    f8 low_ = LOAD8(p), high_ = LOAD8((p) + 8);                                 \
    (even) = __builtin_shufflevector(low_, high_, 0, 2, 4, 6, 8, 10, 12, 14);  \
    (odd) = __builtin_shufflevector(low_, high_, 1, 3, 5, 7, 9, 11, 13, 15);   \
  } while (0)
// [a0, b0, a1, b1, ..., a7, b7].
#define INTERLEAVE(a, b) __builtin_shufflevector((a), (b), 0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15)
// v where the lane's bits in mask are set, +0 elsewhere (a select: NaN garbage in masked lanes goes away too).
#define KEEP(v, mask) ((f8)((i8)(v) & (mask)))
// All ones in lanes l with tx0 + l < limit.
#define LANES_BELOW(tx0, limit) ((i8)((i8){0, 1, 2, 3, 4, 5, 6, 7} + (int)(tx0) < (int)(limit)))

// Columns of a padded plane row: every vector access of a tile row stays inside it.
static inline ptrdiff_t paddedWidth(ptrdiff_t tilesX) { return 2 * ((tilesX + 7) / 8 * 8) + 2; }

ptrdiff_t ddp_winograd_plane_stride(ptrdiff_t channels, ptrdiff_t ld) { return channels * ld + 16; }

ptrdiff_t ddp_winograd_scratch_floats(ptrdiff_t tilesY, ptrdiff_t tilesX) {
  return (2 * tilesY + 2) * paddedWidth(tilesX) + 4 * paddedWidth(tilesX) + 32;
}

DDP_CLONES
void ddp_winograd_transform_input(float *restrict v, ptrdiff_t ld, const float *restrict x, ptrdiff_t c, ptrdiff_t h,
                                  ptrdiff_t w, ptrdiff_t pad, ptrdiff_t tilesY, ptrdiff_t tilesX,
                                  float *restrict scratch) {
  ptrdiff_t width = paddedWidth(tilesX), rows = 2 * tilesY + 2;
  float *padded = scratch;            // [rows][width]: the channel's image inside a frame of zeros
  float *q = scratch + rows * width;  // [4][width]: Bᵀ applied down the columns of one tile row
  ptrdiff_t plane = ddp_winograd_plane_stride(c, ld);
  for (ptrdiff_t i = 0; i < rows * width; i++) padded[i] = 0;
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    const float *image = x + ci * h * w;
    // Only the image's own rectangle changes from channel to channel: the frame stays zero.
    for (ptrdiff_t iy = 0; iy < h && iy + pad < rows; iy++) {
      float *row = padded + (iy + pad) * width + pad;
      for (ptrdiff_t ix = 0; ix < w; ix++) row[ix] = image[iy * w + ix];
    }
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      const float *r0 = padded + 2 * ty * width, *r1 = r0 + width, *r2 = r1 + width, *r3 = r2 + width;
      for (ptrdiff_t col = 0; col < width; col++) {
        q[col] = r0[col] - r2[col];
        q[width + col] = r1[col] + r2[col];
        q[2 * width + col] = r2[col] - r1[col];
        q[3 * width + col] = r1[col] - r3[col];
      }
      float *out = v + ci * ld + ty * tilesX;
      for (ptrdiff_t i = 0; i < 4; i++) {
        const float *row = q + i * width;
        float *o0 = out + (4 * i) * plane, *o1 = o0 + plane, *o2 = o1 + plane, *o3 = o2 + plane;
        for (ptrdiff_t tx0 = 0; tx0 < tilesX; tx0 += 8) {
          f8 a, b, cc, d;  // row[2tx], row[2tx + 1], row[2tx + 2], row[2tx + 3]
          DEINTERLEAVE(row + 2 * tx0, a, b);
          DEINTERLEAVE(row + 2 * tx0 + 2, cc, d);
          STORE8(o0 + tx0, a - cc);
          STORE8(o1 + tx0, b + cc);
          STORE8(o2 + tx0, cc - b);
          STORE8(o3 + tx0, b - d);
        }
      }
    }
  }
}

// One tile row's outputs Aᵀ M A + bias (then ReLU) for tiles tx0..<tx0+8: the top and bottom output rows,
// interleaved [y(2tx), y(2tx + 1), ...].
static inline __attribute__((always_inline)) void outputTiles(const float *in, ptrdiff_t plane, ptrdiff_t tx0, float bias, bool relu, f16 *top,
                               f16 *bottom) {
  f8 s0[4], s1[4];
  for (int j = 0; j < 4; j++) {
    f8 m0 = LOAD8(in + j * plane + tx0), m1 = LOAD8(in + (4 + j) * plane + tx0),
       m2 = LOAD8(in + (8 + j) * plane + tx0), m3 = LOAD8(in + (12 + j) * plane + tx0);
    s0[j] = (m0 + m1) + m2;
    s1[j] = (m1 - m2) - m3;
  }
  f8 y00 = ((s0[0] + s0[1]) + s0[2]) + bias, y01 = ((s0[1] - s0[2]) - s0[3]) + bias;
  f8 y10 = ((s1[0] + s1[1]) + s1[2]) + bias, y11 = ((s1[1] - s1[2]) - s1[3]) + bias;
  if (relu) {
    f8 zero = 0;
    y00 = KEEP(y00, (i8)(y00 > zero));
    y01 = KEEP(y01, (i8)(y01 > zero));
    y10 = KEEP(y10, (i8)(y10 > zero));
    y11 = KEEP(y11, (i8)(y11 > zero));
  }
  *top = INTERLEAVE(y00, y01);
  *bottom = INTERLEAVE(y10, y11);
}

DDP_CLONES
void ddp_winograd_transform_output(float *restrict y, const float *restrict m, ptrdiff_t ld,
                                   const float *restrict bias, ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow,
                                   ptrdiff_t tilesY, ptrdiff_t tilesX, bool relu) {
  ptrdiff_t plane = ddp_winograd_plane_stride(outC, ld);
  const float *sampleEnd = y + outC * oh * ow;
  for (ptrdiff_t o = 0; o < outC; o++) {
    float *image = y + o * oh * ow;
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      const float *in = m + o * ld + ty * tilesX;
      float *top = image + 2 * ty * ow;
      float *bottom = top + ow;
      bool hasBottom = 2 * ty + 1 < oh;
      if (bottom + 2 * ((tilesX + 7) / 8 * 8) > sampleEnd) {
        // Whole vectors would run past this sample's output, where nothing in this call writes after them: only
        // the outputs inside the image are written.
        for (ptrdiff_t tx0 = 0; tx0 < tilesX; tx0 += 8) {
          f16 upper, lower;
          outputTiles(in, plane, tx0, bias[o], relu, &upper, &lower);
          for (ptrdiff_t l = 0; l < 16 && 2 * tx0 + l < ow; l++) {
            top[2 * tx0 + l] = upper[l];
            if (hasBottom) bottom[2 * tx0 + l] = lower[l];
          }
        }
        continue;
      }
      // Whole vectors: an overshoot past the row lands on outputs written after it (the next row or channel).
      f16 upper, lower;
      for (ptrdiff_t tx0 = 0; tx0 < tilesX; tx0 += 8) {
        outputTiles(in, plane, tx0, bias[o], relu, &upper, &lower);
        STORE16(top + 2 * tx0, upper);
      }
      for (ptrdiff_t tx0 = 0; tx0 < tilesX; tx0 += 8) {
        outputTiles(in, plane, tx0, bias[o], relu, &upper, &lower);
        STORE16(bottom + 2 * tx0, lower);
      }
    }
  }
}

DDP_CLONES
void ddp_winograd_transform_output_gradient(float *restrict dm, ptrdiff_t ld, const float *restrict dy,
                                            ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t tilesY,
                                            ptrdiff_t tilesX, float *restrict scratch) {
  ptrdiff_t plane = ddp_winograd_plane_stride(outC, ld);
  ptrdiff_t width = paddedWidth(tilesX);
  const float *sampleEnd = dy + outC * oh * ow;
  for (ptrdiff_t o = 0; o < outC; o++) {
    const float *image = dy + o * oh * ow;
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      const float *top = image + 2 * ty * ow;
      const float *bottom = top + ow;
      bool hasBottom = 2 * ty + 1 < oh;
      if (!hasBottom || bottom + 2 * ((tilesX + 7) / 8 * 8) > sampleEnd) {
        // A missing bottom row, or whole vectors that would read past this sample's gradient: read through a
        // zero-padded copy.
        float *upper = scratch, *lower = scratch + width;
        for (ptrdiff_t i = 0; i < 2 * width; i++) scratch[i] = 0;
        for (ptrdiff_t ix = 0; ix < ow; ix++) upper[ix] = top[ix];
        if (hasBottom)
          for (ptrdiff_t ix = 0; ix < ow; ix++) lower[ix] = bottom[ix];
        top = upper;
        bottom = lower;
      }
      float *out = dm + o * ld + ty * tilesX;
      for (ptrdiff_t tx0 = 0; tx0 < tilesX; tx0 += 8) {
        f8 r00, r01, r10, r11;
        DEINTERLEAVE(top + 2 * tx0, r00, r01);
        DEINTERLEAVE(bottom + 2 * tx0, r10, r11);
        if (ow % 2 == 1) {
          // The last tile's right column is outside the image (what was read there is the next row's start).
          i8 inside = LANES_BELOW(tx0, tilesX - 1);
          r01 = KEEP(r01, inside);
          r11 = KEEP(r11, inside);
        }
        // A dY: rows u0 = dY₀, u1 = dY₀ + dY₁, u2 = dY₀ − dY₁, u3 = −dY₁; then each row [a, b] → [a, a+b, a−b, −b].
        f8 u[4][2] = {{r00, r01}, {r00 + r10, r01 + r11}, {r00 - r10, r01 - r11}, {-r10, -r11}};
        for (int i = 0; i < 4; i++) {
          STORE8(out + (4 * i + 0) * plane + tx0, u[i][0]);
          STORE8(out + (4 * i + 1) * plane + tx0, u[i][0] + u[i][1]);
          STORE8(out + (4 * i + 2) * plane + tx0, u[i][0] - u[i][1]);
          STORE8(out + (4 * i + 3) * plane + tx0, -u[i][1]);
        }
      }
    }
  }
}

DDP_CLONES
void ddp_winograd_transform_input_gradient(float *restrict dx, const float *restrict dv, ptrdiff_t ld, ptrdiff_t c,
                                           ptrdiff_t h, ptrdiff_t w, ptrdiff_t pad, ptrdiff_t tilesY,
                                           ptrdiff_t tilesX, float *restrict scratch) {
  ptrdiff_t width = paddedWidth(tilesX), rows = 2 * tilesY + 2;
  ptrdiff_t plane = ddp_winograd_plane_stride(c, ld);
  float *padded = scratch;  // [rows][width]: the padded image's gradient
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    for (ptrdiff_t i = 0; i < rows * width; i++) padded[i] = 0;
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      const float *in = dv + ci * ld + ty * tilesX;
      float *at = padded + 2 * ty * width;
      for (ptrdiff_t tx0 = 0; tx0 < tilesX; tx0 += 8) {
        // Lanes past the last tile read other tiles' values: zero them, or they would add into the last tile's
        // columns.
        i8 inside = LANES_BELOW(tx0, tilesX);
        f8 d[16];
        for (int xi = 0; xi < 16; xi++) d[xi] = KEEP(LOAD8(in + xi * plane + tx0), inside);
        // B dV: row 0 = dV₀, row 1 = dV₁ − dV₂ + dV₃, row 2 = −dV₀ + dV₁ + dV₂, row 3 = −dV₃; the same across.
        for (int i = 0; i < 4; i++) {
          f8 t0, t1, t2, t3;
          if (i == 0) {
            t0 = d[0], t1 = d[1], t2 = d[2], t3 = d[3];
          } else if (i == 1) {
            t0 = (d[4] - d[8]) + d[12], t1 = (d[5] - d[9]) + d[13], t2 = (d[6] - d[10]) + d[14],
            t3 = (d[7] - d[11]) + d[15];
          } else if (i == 2) {
            t0 = (d[4] + d[8]) - d[0], t1 = (d[5] + d[9]) - d[1], t2 = (d[6] + d[10]) - d[2],
            t3 = (d[7] + d[11]) - d[3];
          } else {
            t0 = -d[12], t1 = -d[13], t2 = -d[14], t3 = -d[15];
          }
          // Columns 2tx and 2tx + 1 of this tile, then 2tx + 2 and 2tx + 3 (added after, in that order).
          float *row = at + i * width + 2 * tx0;
          ADD16(row, INTERLEAVE(t0, (t1 - t2) + t3));
          ADD16(row + 2, INTERLEAVE((t1 + t2) - t0, -t3));
        }
      }
    }
    float *image = dx + ci * h * w;
    for (ptrdiff_t iy = 0; iy < h; iy++) {
      float *out = image + iy * w;
      if (iy + pad >= rows) {
        for (ptrdiff_t ix = 0; ix < w; ix++) out[ix] = 0;
        continue;
      }
      const float *in = padded + (iy + pad) * width + pad;
      for (ptrdiff_t ix = 0; ix < w; ix++) out[ix] = in[ix];
    }
  }
}
