// Winograd's minimal filtering F(4×4, 3×3) for 3×3 convolutions at stride 1, and F(4×4, 5×5) for 5×5 ones (below) (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016): each 4×4 block of outputs of one (output, input) channel pair costs 36
// multiplications instead of 144. The transforms here move one sample between the image and the transformed
// domain; the multiplications themselves are 36 GEMMs over all channel pairs and tiles, done by the caller.
//
// With g a 3×3 kernel, d a 6×6 input tile and Y its 4×4 output tile (one channel pair):
//   U = G g Gᵀ, V = Bᵀ d B (6×6 each), Y = Aᵀ [Σ_channels U ⊙ V] A, where, for the interpolation points
//   0, 1, −1, 2, −½ and ∞,
//   Bᵀ = [1 1.5 −2 −1.5 1 0; 0 −1 −2.5 −0.5 1 0; 0 1 0.5 −2.5 1 0; 0 −0.5 −1 0.5 1 0; 0 2 −1 −2 1 0;
//         0 1 1.5 −2 −1.5 1],
//   G = [1 0 0; −⅓ −⅓ −⅓; ⅓ −⅓ ⅓; 1⁄15 2⁄15 4⁄15; −16⁄15 8⁄15 −4⁄15; 0 0 1],
//   Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −½ 0; 0 1 1 4 ¼ 0; 0 1 −1 8 −⅛ 1].
// These points, rather than the usual 0, ±1, ±2, keep float32's error 2-4x smaller (`bench/winograd_error.py`);
// with ±2 the layer tests saw 1.4-2.2e-5 of outputs near 1 (BENCHMARKS.md).
// The backward is the adjoint of each step: dM = A dY Aᵀ, dU = Σ_tiles dM ⊙ V, dg = Gᵀ dU G, dV = Σ_out U ⊙ dM,
// dd = B dV Bᵀ (tiles overlap by two rows and columns: their dd add up).
//
// Tiles: output tile (ty, tx), ty < tilesY = ⌈oh/4⌉, tx < tilesX = ⌈ow/4⌉, covers outputs [4ty, 4ty + 4) ×
// [4tx, 4tx + 4) (those inside oh × ow) and reads the input window rows 4ty − pad ..< 4ty − pad + 6, columns
// likewise (0 outside the image). One sample's tiles are numbered p = ty·tilesX + tx.
//
// The transforms take a group of up to eight consecutive samples at once, one per vector lane: the images are
// interleaved into [pixel][8] planes, so every load and store of a tile is a whole vector whatever the image's
// width. The transformed domain is stored ξ-major for the GEMMs: X[ξ][ch][column] with ξ = 6i + j in 0..<36 the
// position in the 6×6 tile and ch a channel; a group's columns are 8·p + l for its tile p and lane (sample) l, and
// a chunk's groups follow each other. `ld` is the row length (at least the chunk's columns), and consecutive ξ are
// `ddp_winograd_plane_stride(channels, ld)` apart. A group's pointer is the chunk's plus its first column. Lanes
// past a group's `samples` get zeros (so they add nothing to a weight gradient), and their outputs are dropped.
//
// 5×5 kernels run F(4×4, 5×5): 8×8 tiles, 64 multiplications per 4×4 output block and channel pair instead of
// 400, at the points 0, 1, −1, 2, −2, ½, −½ and ∞ (`bench/winograd_error.py`: 4-10e-6 of the outputs in float32,
// about 2.5x F(4×4, 3×3)'s). The same conventions with 6 → 8 and ξ = 8i + j in 0..<64:
//   Bᵀ = [1 0 −21⁄4 0 21⁄4 0 −1 0; 0 1 1 −17⁄4 −17⁄4 1 1 0; 0 −1 1 17⁄4 −17⁄4 −1 1 0;
//         0 ½ ¼ −5⁄2 −5⁄4 2 1 0; 0 −½ ¼ 5⁄2 −5⁄4 −2 1 0; 0 2 4 −5⁄2 −5 ½ 1 0; 0 −2 4 5⁄2 −5 −½ 1 0;
//         0 −1 0 21⁄4 0 −21⁄4 0 1],
//   G = [1 0 0 0 0; −2⁄9 (1 1 1 1 1); −2⁄9 (1 −1 1 −1 1); 1⁄90 (1 2 4 8 16); 1⁄90 (1 −2 4 −8 16);
//        2⁄45 (16 8 4 2 1); 2⁄45 (16 −8 4 −2 1); 0 0 0 0 1],
//   Aᵀ = [1 1 1 1 1 1 1 0; 0 1 −1 2 −2 ½ −½ 0; 0 1 1 4 4 ¼ ¼ 0; 0 1 −1 8 −8 ⅛ −⅛ 1].
// Its tile (ty, tx) reads the input rows 4ty − pad ..< 4ty − pad + 8, columns likewise. Other kernel sizes (forced:
// the default picks 3 and 5) go through F(4×4, 3×3) in 3×3 parts.
//
// Every kernel does its additions in the order written in Winograd.c and one rounding per operation (no FMA
// contraction), so each instruction-set clone gives the same bits.
#ifndef DDP_WINOGRAD_H
#define DDP_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>

/// Floats from one ξ's matrix to the next: channels·ld and one cache line more. A transform touches all 36 at
/// once, and at exactly channels·ld floats apart (a multiple of 4 KB for 64 channels of 256 tiles) they would fall
/// in one set of the L1 cache, which holds 8: stores to them measured 2-4x slower.
ptrdiff_t ddp_winograd_plane_stride(ptrdiff_t channels, ptrdiff_t ld);

/// The side of the transformed tiles for a k×k kernel: 8 (F(4×4, 5×5)) for k = 5, else 6 (F(4×4, 3×3)); the
/// transformed domain has side² positions ξ.
ptrdiff_t ddp_winograd_tile_side(ptrdiff_t k);

/// The 3×3 parts across (and down) that a k×k kernel is cut into: 1 for k = 3 and for k = 5 (taken whole), else
/// ⌈k/3⌉.
ptrdiff_t ddp_winograd_parts_across(ptrdiff_t k);

/// Floats of `scratch` the transforms of one group need, for a k×k kernel.
ptrdiff_t ddp_winograd_scratch_floats(ptrdiff_t tilesY, ptrdiff_t tilesX, ptrdiff_t k);

/// U[ξ][o][c] = (G g[o][c] Gᵀ)[ξ] for a weight g [outC, inC, k, k] (PyTorch's layout), k = 3 or 5; U is
/// [side²][outC][inC].
void ddp_winograd_transform_weights(float *_Nonnull u, const float *_Nonnull g, ptrdiff_t outC, ptrdiff_t inC,
                                    ptrdiff_t k);

/// dg[o][c] += Gᵀ dU[·][o][c] G: the weight gradient from its transformed form dU [side²][outC][inC], k = 3 or 5.
void ddp_winograd_accumulate_weight_gradient(float *_Nonnull dg, const float *_Nonnull du, ptrdiff_t outC,
                                             ptrdiff_t inC, ptrdiff_t k);

/// A k×k kernel (k other than 3 and 5) as ⌈k/3⌉² 3×3 parts: part (a, b) = g[a ..< a + 3][b ..< b + 3], a and b
/// multiples of 3, zero past k. A convolution by g is the sum of the parts' 3×3 convolutions, each over the input
/// shifted by (a, b). parts is [outC][parts][inC][3][3], so that the parts are a 3×3 convolution's input
/// channels part·inC + c.
void ddp_winograd_split_kernel(float *_Nonnull parts, const float *_Nonnull g, ptrdiff_t outC, ptrdiff_t inC,
                               ptrdiff_t k);

/// dg[o][c] += the parts' gradients [outC][parts][inC][3][3] put back where `ddp_winograd_split_kernel` took them.
void ddp_winograd_merge_kernel_gradient(float *_Nonnull dg, const float *_Nonnull parts, ptrdiff_t outC,
                                        ptrdiff_t inC, ptrdiff_t k);

/// V[ξ][part·c + ci][8p + l] = (Bᵀ d(part, ci, p) B)[ξ] of sample l of a group x [samples][c, h, w], for each 3×3
/// part (a, b) of a k×k kernel (one part for k = 3 and 5; `ddp_winograd_split_kernel`), ξ planes `plane` floats
/// apart.
/// Part (a, b)'s tile (ty, tx) reads image rows 4ty + a − pad ..< 4ty + a − pad + 6 and columns likewise from
/// 4tx + b − pad (0 outside the image).
void ddp_winograd_transform_input(float *_Nonnull v, ptrdiff_t ld, ptrdiff_t plane, const float *_Nonnull x,
                                  ptrdiff_t samples, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t pad, ptrdiff_t k,
                                  ptrdiff_t tilesY, ptrdiff_t tilesX, float *_Nonnull scratch);

/// y[l][o] = Aᵀ M[·][o][8p + l] A for every tile p, plus bias[o], then max(·, 0) when relu, for a group
/// y [samples][outC, oh, ow].
void ddp_winograd_transform_output(float *_Nonnull y, const float *_Nonnull m, ptrdiff_t ld, ptrdiff_t samples,
                                   const float *_Nonnull bias, ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t k,
                                   ptrdiff_t tilesY, ptrdiff_t tilesX, bool relu, float *_Nonnull scratch);

/// dM[ξ][o][8p + l] = (A dY(l, o, p) Aᵀ)[ξ] for a group's output gradient dy [samples][outC, oh, ow] (0 outside
/// oh × ow).
void ddp_winograd_transform_output_gradient(float *_Nonnull dm, ptrdiff_t ld, const float *_Nonnull dy,
                                            ptrdiff_t samples, ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t k,
                                            ptrdiff_t tilesY, ptrdiff_t tilesX, float *_Nonnull scratch);

/// dx[l] [c, h, w] = Σ_parts Σ_tiles B dV[·][part·c + ci][8p + l] Bᵀ placed at each tile's input window (the parts
/// inside the image; windows as `ddp_winograd_transform_input` places them), for a group dx [samples][c, h, w];
/// parts add in turn, and each part's tiles in row-major order.
void ddp_winograd_transform_input_gradient(float *_Nonnull dx, const float *_Nonnull dv, ptrdiff_t ld,
                                           ptrdiff_t plane, ptrdiff_t samples, ptrdiff_t c, ptrdiff_t h,
                                           ptrdiff_t w, ptrdiff_t pad, ptrdiff_t k, ptrdiff_t tilesY,
                                           ptrdiff_t tilesX, float *_Nonnull scratch);

#endif
