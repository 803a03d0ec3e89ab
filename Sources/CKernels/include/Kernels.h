// Hot elementwise loops over the flat parameter/gradient buffers, in C so that each is compiled for several
// instruction sets and the best one is picked at load time (GNU ifunc through `target_clones`): Swift has no
// per-function multiversioning, and building the whole binary for AVX-512 would stop it running elsewhere.
//
// Every kernel does one IEEE rounding per operation, in the order the Swift reference in the doc comment
// gives (no FMA contraction, see Kernels.c), so results are bit-identical whichever clone runs and match
// torch.optim.SGD's arithmetic.
#ifndef DDP_KERNELS_H
#define DDP_KERNELS_H

#include <stdbool.h>
#include <stddef.h>

/// torch.optim.SGD (dampening 0) with momentum μ > 0 over n elements:
///   d = g + wd·w;  v = μ·v + d;  w = w − lr·(nesterov ? d + μ·v : v)
/// Returns false when some g[i] is NaN or ±Inf (the parameters are then not to be used: training has diverged).
bool ddp_sgd_momentum_step(float *_Nonnull w, const float *_Nonnull g, float *_Nonnull v, ptrdiff_t n, float lr,
                           float wd, float mu, bool nesterov);

/// torch.optim.SGD without momentum: w = w − lr·(g + wd·w). Returns false when some g[i] is NaN or ±Inf.
bool ddp_sgd_plain_step(float *_Nonnull w, const float *_Nonnull g, ptrdiff_t n, float lr, float wd);

/// True when no element of x[0..<n] is NaN or ±Inf (an integer max over the exponent bits, which vectorises).
bool ddp_all_finite(const float *_Nonnull x, ptrdiff_t n);

/// out[i] += part[i] for i in 0..<n (one step of a rank-order sum).
void ddp_add(float *_Nonnull out, const float *_Nonnull part, ptrdiff_t n);

/// out[i] = a[i] + b[i] for i in 0..<n: the first step of a rank-order sum in one pass (out aliases neither).
void ddp_sum(float *_Nonnull out, const float *_Nonnull a, const float *_Nonnull b, ptrdiff_t n);

/// dst[i] = (float)src[i] / 255 for i in 0..<n: pixels to [0, 1] as PyTorch's ToTensor does (a correctly rounded
/// division, so every clone gives the same bits).
void ddp_unit_floats_from_bytes(float *_Nonnull dst, const unsigned char *_Nonnull src, ptrdiff_t n);

/// True when the CPU (and the OS) support AVX-512F, the widest vectors the kernels here use.
bool ddp_cpu_has_avx512(void);

#endif
