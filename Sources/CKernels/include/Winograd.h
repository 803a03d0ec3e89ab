// Winograd's minimal filtering F(2×2, 3×3) for 3×3 convolutions at stride 1 (Lavin and Gray, "Fast Algorithms for
// Convolutional Neural Networks", 2016): each 2×2 block of outputs of one (output, input) channel pair costs 16
// multiplications instead of 36. The transforms here move one sample between the image and the transformed
// domain; the multiplications themselves are 16 GEMMs over all channel pairs and tiles, done by the caller.
//
// With g a 3×3 kernel, d a 4×4 input tile and Y its 2×2 output tile (one channel pair):
//   U = G g Gᵀ, V = Bᵀ d B (4×4 each), Y = Aᵀ [Σ_channels U ⊙ V] A, where
//   Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1], G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1], Aᵀ = [1 1 1 0; 0 1 −1 −1].
// The backward is the adjoint of each step: dM = A dY Aᵀ, dU = Σ_tiles dM ⊙ V, dg = Gᵀ dU G, dV = Σ_out U ⊙ dM,
// dd = B dV Bᵀ (tiles overlap by two rows and columns: their dd add up).
//
// Tiles: output tile (ty, tx), ty < tilesY = ⌈oh/2⌉, tx < tilesX = ⌈ow/2⌉, covers outputs [2ty, 2ty + 2) ×
// [2tx, 2tx + 2) (those inside oh × ow) and reads the input window rows 2ty − pad ..< 2ty − pad + 4, columns
// likewise (0 outside the image). One sample's tiles are numbered t = ty·tilesX + tx.
//
// The transformed domain is stored ξ-major for the GEMMs: X[ξ][ch][t] with ξ = 4i + j in 0..<16 the position in
// the 4×4 tile, ch a channel and t a tile; `ld` is the row length (the tiles of all samples of a chunk), and
// consecutive ξ are `ddp_winograd_plane_stride(channels, ld)` apart. A sample's pointer is the chunk's plus its
// first tile.
//
// The transforms work on eight tiles of a tile row at once, and a row's last vector may run past its last tile:
// into the next row's tiles, or the next sample's, which are written after it, and after a chunk's last sample into
// the padding of its rows. So `ld` must be at least the chunk's tiles + 7. In the image, the output transform
// likewise writes whole vectors past a row's end where later rows of the same sample are written after them, and
// only the image's outputs at the sample's end.
//
// Every kernel does its additions in the order written in Winograd.c and one rounding per operation (no FMA
// contraction), so each instruction-set clone gives the same bits.
#ifndef DDP_WINOGRAD_H
#define DDP_WINOGRAD_H

#include <stdbool.h>
#include <stddef.h>

/// Floats from one ξ's matrix to the next: channels·ld and one cache line more. A transform touches all 16 at once,
/// and at exactly channels·ld floats apart (a multiple of 4 KB for 64 channels of 496 tiles) all 16 would fall in
/// one set of the L1 cache, which holds 8: stores to them measured 2-4x slower.
ptrdiff_t ddp_winograd_plane_stride(ptrdiff_t channels, ptrdiff_t ld);

/// Floats of `scratch` the transforms of one sample need.
ptrdiff_t ddp_winograd_scratch_floats(ptrdiff_t tilesY, ptrdiff_t tilesX);

/// U[ξ][o][c] = (G g[o][c] Gᵀ)[ξ] for a weight g [outC, inC, 3, 3] (PyTorch's layout); U is [16][outC][inC].
void ddp_winograd_transform_weights(float *_Nonnull u, const float *_Nonnull g, ptrdiff_t outC, ptrdiff_t inC);

/// dg[o][c] += Gᵀ dU[·][o][c] G: the weight gradient from its transformed form dU [16][outC][inC].
void ddp_winograd_accumulate_weight_gradient(float *_Nonnull dg, const float *_Nonnull du, ptrdiff_t outC,
                                             ptrdiff_t inC);

/// V[ξ][ci][t] = (Bᵀ d(ci, t) B)[ξ] for one sample x [c, h, w].
void ddp_winograd_transform_input(float *_Nonnull v, ptrdiff_t ld, const float *_Nonnull x, ptrdiff_t c, ptrdiff_t h,
                                  ptrdiff_t w, ptrdiff_t pad, ptrdiff_t tilesY, ptrdiff_t tilesX,
                                  float *_Nonnull scratch);

/// y[o] = Aᵀ M[·][o][t] A for every tile of one sample, plus bias[o], then max(·, 0) when relu; y is [outC, oh, ow].
void ddp_winograd_transform_output(float *_Nonnull y, const float *_Nonnull m, ptrdiff_t ld,
                                   const float *_Nonnull bias, ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow,
                                   ptrdiff_t tilesY, ptrdiff_t tilesX, bool relu);

/// dM[ξ][o][t] = (A dY(o, t) Aᵀ)[ξ] for one sample's output gradient dy [outC, oh, ow] (0 outside oh × ow).
void ddp_winograd_transform_output_gradient(float *_Nonnull dm, ptrdiff_t ld, const float *_Nonnull dy,
                                            ptrdiff_t outC, ptrdiff_t oh, ptrdiff_t ow, ptrdiff_t tilesY,
                                            ptrdiff_t tilesX, float *_Nonnull scratch);

/// dx [c, h, w] = Σ_tiles B dV[·][ci][t] Bᵀ placed at each tile's input window (the parts inside the image), for
/// one sample; tiles add in a fixed order (tile rows in turn; in a row, eight tiles' left halves, then their right).
void ddp_winograd_transform_input_gradient(float *_Nonnull dx, const float *_Nonnull dv, ptrdiff_t ld, ptrdiff_t c,
                                           ptrdiff_t h, ptrdiff_t w, ptrdiff_t pad, ptrdiff_t tilesY,
                                           ptrdiff_t tilesX, float *_Nonnull scratch);

#endif
