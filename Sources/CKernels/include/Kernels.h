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
#include <stdint.h>

#include "Compression.h"
#include "Winograd.h"

/// torch.optim.SGD (dampening 0) with momentum μ > 0 over n elements:
///   d = g + wd·w;  v = μ·v + d;  w = w − lr·(nesterov ? d + μ·v : v)
/// Returns false when some g[i] is NaN or ±Inf (the parameters are then not to be used: training has diverged).
bool ddp_sgd_momentum_step(float *_Nonnull w, const float *_Nonnull g, float *_Nonnull v, ptrdiff_t n, float lr,
                           float wd, float mu, bool nesterov);

/// torch.optim.SGD without momentum: w = w − lr·(g + wd·w). Returns false when some g[i] is NaN or ±Inf.
bool ddp_sgd_plain_step(float *_Nonnull w, const float *_Nonnull g, ptrdiff_t n, float lr, float wd);

/// ddp_sgd_momentum_step and ddp_sgd_plain_step on the gradient g[i] + g2[i] (two ranks' gradients, summed in
/// rank order inside the update's pass): bit for bit the same as summing into a buffer first and updating from it.
bool ddp_sgd_momentum_step2(float *_Nonnull w, const float *_Nonnull g, const float *_Nonnull g2, float *_Nonnull v,
                            ptrdiff_t n, float lr, float wd, float mu, bool nesterov);
bool ddp_sgd_plain_step2(float *_Nonnull w, const float *_Nonnull g, const float *_Nonnull g2, ptrdiff_t n, float lr,
                         float wd);

/// The scalars of one AdamW step t (torch.optim.AdamW, amsgrad off), computed in double as PyTorch's Python code
/// computes them and rounded to float as its CPU kernels take them: decay = 1 − lr·wd, beta1Complement = 1 − β1,
/// beta2Complement = 1 − β2, correction2Root = √(1 − β2^t), negativeStepSize = −lr/(1 − β1^t).
struct ddp_adamw_scalars {
  float decay, beta1Complement, beta2, beta2Complement, correction2Root, eps, negativeStepSize;
};

/// AdamW over n elements, in torch.optim.AdamW's order:
///   w = w·decay;  m = m + (1−β1)·(g − m);  v = v·β2 + ((1−β2)·g)·g;  w = w + (−stepSize·m)/(√v/correction2Root + eps)
/// with g = g[i] (+ g2[i] for the two-addend form, the rank-order sum). PyTorch's vectorised kernels may fuse
/// some of these into FMAs; this does one rounding per operation on every CPU. Returns false when some gradient is
/// NaN or ±Inf.
bool ddp_adamw_step(float *_Nonnull w, const float *_Nonnull g, float *_Nonnull m, float *_Nonnull v, ptrdiff_t n,
                    const struct ddp_adamw_scalars *_Nonnull s);
bool ddp_adamw_step2(float *_Nonnull w, const float *_Nonnull g, const float *_Nonnull g2, float *_Nonnull m,
                     float *_Nonnull v, ptrdiff_t n, const struct ddp_adamw_scalars *_Nonnull s);

/// The scalars of one LAMB step t (apex's multi_tensor_lamb, AdamW mode, gradient averaging): clip = the global
/// gradient norm ÷ max_grad_norm when above it, else 1; beta3 = 1 − β1; correction1 = 1 − β1^t,
/// correction2 = 1 − β2^t; wd this tensor's weight decay.
struct ddp_lamb_scalars {
  float clip, beta1, beta3, beta2, beta2Complement, correction1, correction2, eps, wd;
};

/// LAMB's first pass over one tensor of n elements (apex's stage 1): with s = g/clip,
///   m = m·β1 + beta3·s;  v = v·β2 + ((1−β2)·s)·s;  u = (m/correction1)/(√(v/correction2) + eps) + wd·w
/// and norms[0] = Σw², norms[1] = Σu² (in double, before w changes).
void ddp_lamb_update(float *_Nonnull u, const float *_Nonnull w, const float *_Nonnull g, float *_Nonnull m,
                     float *_Nonnull v, ptrdiff_t n, const struct ddp_lamb_scalars *_Nonnull s,
                     double *_Nonnull norms);

/// w[i] = w[i] − ratio·u[i] (LAMB's second pass: ratio = lr, times ‖w‖/‖u‖ where the trust ratio applies).
void ddp_scaled_subtract(float *_Nonnull w, const float *_Nonnull u, ptrdiff_t n, float ratio);

/// Σx[i]² accumulated in double, in index order; *finite = no element is NaN or ±Inf.
double ddp_sum_of_squares(const float *_Nonnull x, ptrdiff_t n, bool *_Nonnull finite);

/// True when no element of x[0..<n] is NaN or ±Inf (an integer max over the exponent bits, which vectorises).
bool ddp_all_finite(const float *_Nonnull x, ptrdiff_t n);

/// out[i] += part[i] for i in 0..<n (one step of a rank-order sum).
void ddp_add(float *_Nonnull out, const float *_Nonnull part, ptrdiff_t n);

/// out[i] = a[i] + b[i] for i in 0..<n: the first step of a rank-order sum in one pass (out aliases neither).
void ddp_sum(float *_Nonnull out, const float *_Nonnull a, const float *_Nonnull b, ptrdiff_t n);

/// dst[i] = src[i] for i in 0..<n with non-temporal stores: the lines go to memory, not into this core's cache, and
/// any other core's copy of them is invalidated without waiting for it. Ends with a full fence, so the stores are
/// visible before anything this thread writes after it (a flag, a barrier). dst must be 64-byte aligned.
void ddp_stream_copy(float *_Nonnull dst, const float *_Nonnull src, ptrdiff_t n);

/// The round trip between the two ranks of a pair through one cache line they share, and the pair's choice made
/// from it, in one meeting. `line` (64-byte aligned, zero at first) holds a counter and the choice; `*base` is the
/// counter when the meeting starts, the same on both ranks (zero at first; this call advances it). Rank 0 bounces
/// the line `rounds` times after a first, untimed exchange (which waits for rank 1 to arrive), computes the mean
/// round trip in ns, and publishes `choose(round trip)` to rank 1; both return the round trip (rank 1 gets rank
/// 0's) through `*roundTripNanoseconds` and the choice as the result. A wait spins for 20 µs, then yields the CPU.
int32_t ddp_pair_meet(int64_t *_Nonnull line, int32_t rank, int64_t *_Nonnull base, int32_t rounds,
                      double thresholdNanoseconds, double *_Nonnull roundTripNanoseconds);

/// Asks the CPU to start loading rows `rows[0..<n]` of `base` (each `rowBytes` long) into its caches, and returns
/// at once: the next batch's samples arrive while this one trains.
void ddp_prefetch_rows(const unsigned char *_Nonnull base, ptrdiff_t rowBytes, const int32_t *_Nonnull rows,
                       ptrdiff_t n);

/// dst[i] = (float)src[i] / 255 for i in 0..<n: pixels to [0, 1] as PyTorch's ToTensor does (a correctly rounded
/// division, so every clone gives the same bits).
void ddp_unit_floats_from_bytes(float *_Nonnull dst, const unsigned char *_Nonnull src, ptrdiff_t n);

// Convolution and pooling over one sample in NCHW layout (PyTorch's), for the Conv2d and MaxPool2d layers.
// Shapes: x is [c, h, w]; the output grid is [oh, ow] with oh = (h + 2·pad − k) / stride + 1 (likewise ow).

/// cols[(ci·k + ki)·k + kj][oy·ow + ox] = x[ci][oy·stride − pad + ki][ox·stride − pad + kj], 0 outside x:
/// the [c·k·k, oh·ow] matrix whose product with a [out, c·k·k] weight is the convolution.
void ddp_im2col(float *_Nonnull cols, const float *_Nonnull x, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k,
                ptrdiff_t stride, ptrdiff_t pad, ptrdiff_t oh, ptrdiff_t ow);

/// The adjoint of ddp_im2col: dx = 0, then every cols entry is added to the x element it was read from
/// (entries that read padding are dropped). Sums in a fixed order: ci, ki, kj, oy, ox.
void ddp_col2im(float *_Nonnull dx, const float *_Nonnull cols, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k,
                ptrdiff_t stride, ptrdiff_t pad, ptrdiff_t oh, ptrdiff_t ow);

/// y[ch][p] += bias[ch] for a [channels, pixels] block, then y = max(y, 0) when relu.
void ddp_add_channel_bias(float *_Nonnull y, const float *_Nonnull bias, ptrdiff_t channels, ptrdiff_t pixels,
                          bool relu);

/// Batch normalisation over x [batch][channels][pixels] (pixels = h·w, 1 for an [n] input): the sums are in double,
/// each channel's eight running sums (element p of a row goes to sum p mod 8) added pairwise at the end of every
/// row, in a fixed order, so every run and every instruction-set clone gives the same bits.
///
/// sums[ch] += Σ x, sums[channels + ch] += Σ x² over the batch and pixels of channel ch.
void ddp_batch_norm_moments(double *_Nonnull sums, const float *_Nonnull x, ptrdiff_t batch, ptrdiff_t channels,
                            ptrdiff_t pixels);

/// y = (x − mean[ch])·scale[ch] + shift[ch], then max(y, 0) when relu; y may be x.
void ddp_batch_norm_apply(float *_Nonnull y, const float *_Nonnull x, const float *_Nonnull mean,
                          const float *_Nonnull scale, const float *_Nonnull shift, ptrdiff_t batch,
                          ptrdiff_t channels, ptrdiff_t pixels, bool relu);

/// With x̂ = (x − mean[ch])·invstd[ch]: sums[ch] += Σ dy, sums[channels + ch] += Σ dy·x̂.
void ddp_batch_norm_gradient_sums(double *_Nonnull sums, const float *_Nonnull dy, const float *_Nonnull x,
                                  const float *_Nonnull mean, const float *_Nonnull invstd, ptrdiff_t batch,
                                  ptrdiff_t channels, ptrdiff_t pixels);

/// dx = a[ch]·((dy − b[ch]) − x̂·c[ch]), x̂ = (x − mean[ch])·invstd[ch]: the input gradient with a = γ·invstd,
/// b = mean of dy and c = mean of dy·x̂ over the normalised samples.
void ddp_batch_norm_input_gradient(float *_Nonnull dx, const float *_Nonnull dy, const float *_Nonnull x,
                                   const float *_Nonnull mean, const float *_Nonnull invstd,
                                   const float *_Nonnull a, const float *_Nonnull b, const float *_Nonnull c,
                                   ptrdiff_t batch, ptrdiff_t channels, ptrdiff_t pixels);

/// dbias[ch] += Σ_p dy[ch][p] for a [channels, pixels] block (each row summed in float, in a fixed order).
void ddp_accumulate_channel_sums(float *_Nonnull dbias, const float *_Nonnull dy, ptrdiff_t channels,
                                 ptrdiff_t pixels);

/// Max pooling without padding: y[ci][oy][ox] = max of the k×k window at (oy·stride, ox·stride) of x[ci], and
/// argmax[...] = the index into x (ci·h·w + iy·w + ix) of the first maximum in row-major window order (a NaN
/// wins, the last one when several, as in PyTorch).
void ddp_max_pool(float *_Nonnull y, int32_t *_Nonnull argmax, const float *_Nonnull x, ptrdiff_t c, ptrdiff_t h,
                  ptrdiff_t w, ptrdiff_t k, ptrdiff_t stride, ptrdiff_t oh, ptrdiff_t ow);

/// The adjoint of ddp_max_pool for one sample (the same shapes): dx = 0 ([c, h, w]), then dx[argmax[i]] += dy[i]
/// for every output i; when `y` (the pooling's output) is given, only for outputs whose maximum y[i] is > 0
/// (a preceding ReLU's mask, applied in the same pass).
void ddp_max_pool_backward(float *_Nonnull dx, const float *_Nonnull dy, const int32_t *_Nonnull argmax,
                           const float *_Nullable y, ptrdiff_t c, ptrdiff_t h, ptrdiff_t w, ptrdiff_t k,
                           ptrdiff_t stride, ptrdiff_t oh, ptrdiff_t ow);

#endif

// Stop requests (SIGTERM, SIGINT, SIGUSR1). The handler only records the first signal's number; the training loop
// reads it once a step and every rank agrees on stopping through the step's gradient reduction. A second stop
// signal while the first is pending restores the default action and re-raises it: the process ends at once.
void ddp_install_stop_handlers(void);
// The first stop signal received, or 0.
int ddp_stop_signal(void);

/// From the first line of main until a command takes the stop signals over (ddp_install_stop_handlers) or gives
/// them back (ddp_release_stop_signals): a stop signal is kept pending, neither acted on nor lost, also across
/// ddp_reexec_self. See Note [Stop signals at start-up] in StopSignals.c. Call on the main thread.
void ddp_hold_stop_signals(void);
/// Gives the held stop signals their default action again, then unblocks them: one that came while held acts now.
void ddp_release_stop_signals(void);
/// Re-executes this program (/proc/self/exe) with `argv` (NULL-terminated) and the current environment, in this
/// same process: the pid, the parent and PR_SET_PDEATHSIG stay, and held stop signals stay pending. Returns only on
/// failure, with the errno.
int ddp_reexec_self(char *_Nullable const *_Nonnull argv);

/// Asks the kernel to SIGKILL this process when its parent ends (Linux PR_SET_PDEATHSIG). A rank's parent is
/// Open MPI's daemon on its host: when the daemon is killed, its ranks would otherwise live on, stuck in a
/// collective with nobody left to end them. False where the call is not available.
bool ddp_die_with_parent(void);

/// Under a plain mpirun, ends an mpirun left waiting for a host it cannot reach (Note [A launcher left waiting] in
/// LauncherGuard.c). Call in a rank whose parent is mpirun, before MPI_Init: forks a guard that, unless this
/// process ends through exit(), waits `grace` seconds after its end and then, if the same parent is still running,
/// writes `message` to the parent's stderr and SIGKILLs it. False where the guard could not be started.
bool ddp_guard_launcher(double grace, const char *_Nonnull message);
