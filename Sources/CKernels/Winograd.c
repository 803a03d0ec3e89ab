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

DDP_CLONES
void ddp_winograd_transform_input(float *restrict v, ptrdiff_t ld, const float *restrict x, ptrdiff_t c, ptrdiff_t h,
                                  ptrdiff_t w, ptrdiff_t pad, ptrdiff_t tilesY, ptrdiff_t tilesX,
                                  float *restrict scratch) {
  ptrdiff_t width = 2 * tilesX + 2;  // the padded columns the tiles of a row read
  float *rows = scratch;             // [4][width]: the four input rows of a tile row, 0 outside the image
  float *q = scratch + 4 * width;    // [4][width]: Bᵀ applied down the columns
  ptrdiff_t plane = c * ld;          // from one ξ to the next
  ptrdiff_t copied = w < width - pad ? w : width - pad;
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    const float *image = x + ci * h * w;
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      for (ptrdiff_t r = 0; r < 4; r++) {
        float *row = rows + r * width;
        ptrdiff_t iy = 2 * ty - pad + r;
        for (ptrdiff_t col = 0; col < width; col++) row[col] = 0;
        if (iy < 0 || iy >= h) continue;
        for (ptrdiff_t ix = 0; ix < copied; ix++) row[pad + ix] = image[iy * w + ix];
      }
      for (ptrdiff_t col = 0; col < width; col++) {
        float d0 = rows[col], d1 = rows[width + col], d2 = rows[2 * width + col], d3 = rows[3 * width + col];
        q[col] = d0 - d2;
        q[width + col] = d1 + d2;
        q[2 * width + col] = d2 - d1;
        q[3 * width + col] = d1 - d3;
      }
      float *out = v + ci * ld + ty * tilesX;
      for (ptrdiff_t i = 0; i < 4; i++) {
        const float *row = q + i * width;
        float *o0 = out + (4 * i) * plane, *o1 = o0 + plane, *o2 = o1 + plane, *o3 = o2 + plane;
        for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
          float a = row[2 * tx], b = row[2 * tx + 1], cc = row[2 * tx + 2], d = row[2 * tx + 3];
          o0[tx] = a - cc;
          o1[tx] = b + cc;
          o2[tx] = cc - b;
          o3[tx] = b - d;
        }
      }
    }
  }
}

DDP_CLONES
void ddp_winograd_transform_output(float *restrict y, const float *restrict m, ptrdiff_t ld,
                                   const float *restrict bias, ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow,
                                   ptrdiff_t tilesY, ptrdiff_t tilesX, bool relu) {
  ptrdiff_t plane = outC * ld;
  for (ptrdiff_t o = 0; o < outC; o++) {
    float b = bias[o];
    float *image = y + o * oh * ow;
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      const float *in = m + o * ld + ty * tilesX;
      float *top = image + 2 * ty * ow;
      float *bottom = top + ow;
      bool hasBottom = 2 * ty + 1 < oh;
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        float s0[4], s1[4];
        for (int j = 0; j < 4; j++) {
          float m0 = in[j * plane + tx], m1 = in[(4 + j) * plane + tx], m2 = in[(8 + j) * plane + tx],
                m3 = in[(12 + j) * plane + tx];
          s0[j] = (m0 + m1) + m2;
          s1[j] = (m1 - m2) - m3;
        }
        float y00 = ((s0[0] + s0[1]) + s0[2]) + b, y01 = ((s0[1] - s0[2]) - s0[3]) + b;
        float y10 = ((s1[0] + s1[1]) + s1[2]) + b, y11 = ((s1[1] - s1[2]) - s1[3]) + b;
        if (relu) {
          y00 = y00 > 0 ? y00 : 0;
          y01 = y01 > 0 ? y01 : 0;
          y10 = y10 > 0 ? y10 : 0;
          y11 = y11 > 0 ? y11 : 0;
        }
        ptrdiff_t left = 2 * tx;
        bool hasRight = left + 1 < ow;
        top[left] = y00;
        if (hasRight) top[left + 1] = y01;
        if (hasBottom) {
          bottom[left] = y10;
          if (hasRight) bottom[left + 1] = y11;
        }
      }
    }
  }
}

DDP_CLONES
void ddp_winograd_transform_output_gradient(float *restrict dm, ptrdiff_t ld, const float *restrict dy,
                                            ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t tilesY,
                                            ptrdiff_t tilesX) {
  ptrdiff_t plane = outC * ld;
  for (ptrdiff_t o = 0; o < outC; o++) {
    const float *image = dy + o * oh * ow;
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      const float *top = image + 2 * ty * ow;
      const float *bottom = top + ow;
      bool hasBottom = 2 * ty + 1 < oh;
      float *out = dm + o * ld + ty * tilesX;
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        ptrdiff_t left = 2 * tx;
        bool hasRight = left + 1 < ow;
        float r00 = top[left], r01 = hasRight ? top[left + 1] : 0;
        float r10 = hasBottom ? bottom[left] : 0, r11 = hasBottom && hasRight ? bottom[left + 1] : 0;
        // A dY: rows u0 = dY₀, u1 = dY₀ + dY₁, u2 = dY₀ − dY₁, u3 = −dY₁; then each row [a, b] → [a, a+b, a−b, −b].
        float u[4][2] = {{r00, r01}, {r00 + r10, r01 + r11}, {r00 - r10, r01 - r11}, {-r10, -r11}};
        for (int i = 0; i < 4; i++) {
          out[(4 * i + 0) * plane + tx] = u[i][0];
          out[(4 * i + 1) * plane + tx] = u[i][0] + u[i][1];
          out[(4 * i + 2) * plane + tx] = u[i][0] - u[i][1];
          out[(4 * i + 3) * plane + tx] = -u[i][1];
        }
      }
    }
  }
}

DDP_CLONES
void ddp_winograd_transform_input_gradient(float *restrict dx, const float *restrict dv, ptrdiff_t ld, ptrdiff_t c,
                                           ptrdiff_t h, ptrdiff_t w, ptrdiff_t pad, ptrdiff_t tilesY,
                                           ptrdiff_t tilesX, float *restrict scratch) {
  ptrdiff_t width = 2 * tilesX + 2, height = 2 * tilesY + 2;
  ptrdiff_t plane = c * ld;
  for (ptrdiff_t ci = 0; ci < c; ci++) {
    // The padded image's gradient [height, width], then its inside copied out.
    float *padded = scratch;
    for (ptrdiff_t i = 0; i < height * width; i++) padded[i] = 0;
    for (ptrdiff_t ty = 0; ty < tilesY; ty++) {
      const float *in = dv + ci * ld + ty * tilesX;
      float *rows = padded + 2 * ty * width;
      for (ptrdiff_t tx = 0; tx < tilesX; tx++) {
        float d[16];
        for (int xi = 0; xi < 16; xi++) d[xi] = in[xi * plane + tx];
        // B dV: row 0 = dV₀, row 1 = dV₁ − dV₂ + dV₃, row 2 = −dV₀ + dV₁ + dV₂, row 3 = −dV₃; the same across.
        float t[4][4];
        for (int j = 0; j < 4; j++) {
          t[0][j] = d[j];
          t[1][j] = (d[4 + j] - d[8 + j]) + d[12 + j];
          t[2][j] = (d[4 + j] + d[8 + j]) - d[j];
          t[3][j] = -d[12 + j];
        }
        float *at = rows + 2 * tx;
        for (int i = 0; i < 4; i++) {
          float *row = at + i * width;
          row[0] += t[i][0];
          row[1] += (t[i][1] - t[i][2]) + t[i][3];
          row[2] += (t[i][1] + t[i][2]) - t[i][0];
          row[3] += -t[i][3];
        }
      }
    }
    float *image = dx + ci * h * w;
    ptrdiff_t rowsInside = h < height - pad ? h : height - pad;
    ptrdiff_t columnsInside = w < width - pad ? w : width - pad;
    for (ptrdiff_t iy = 0; iy < h; iy++) {
      float *out = image + iy * w;
      if (iy >= rowsInside) {
        for (ptrdiff_t ix = 0; ix < w; ix++) out[ix] = 0;
        continue;
      }
      const float *in = padded + (iy + pad) * width + pad;
      for (ptrdiff_t ix = 0; ix < columnsInside; ix++) out[ix] = in[ix];
      for (ptrdiff_t ix = columnsInside; ix < w; ix++) out[ix] = 0;
    }
  }
}
