// 16-bit wire formats for the gradients that cross hosts (`--compress bf16|fp16`), with error feedback: what a
// value loses to rounding is kept by the sender and added to the same element at the next step, so over steps
// nothing is lost (Seide et al. 2014; Karimireddy et al. 2019). Sums are always taken in fp32.
#ifndef DDP_COMPRESSION_H
#define DDP_COMPRESSION_H

#include <stddef.h>
#include <stdint.h>

/// v = x[i] + residual[i]; out[i] = v rounded to bfloat16 (nearest, ties to even; NaN stays NaN; a finite v never
/// becomes infinite: past the largest bfloat16 it is sent as ±that); residual[i] = v − out[i] as fp32.
void ddp_encode_bf16(uint16_t *_Nonnull out, const float *_Nonnull x, float *_Nonnull residual, ptrdiff_t n);
/// The same with IEEE half precision; |v| beyond 65504 (the largest half) is sent as ±65504, the rest kept in the
/// residual, so a finite gradient never becomes infinite on the wire.
void ddp_encode_fp16(uint16_t *_Nonnull out, const float *_Nonnull x, float *_Nonnull residual, ptrdiff_t n);
/// out[i] += in[i] (a bfloat16 / half value, exactly representable in fp32).
void ddp_add_bf16(float *_Nonnull out, const uint16_t *_Nonnull in, ptrdiff_t n);
void ddp_add_fp16(float *_Nonnull out, const uint16_t *_Nonnull in, ptrdiff_t n);
/// out[i] = in[i] as fp32.
void ddp_decode_bf16(float *_Nonnull out, const uint16_t *_Nonnull in, ptrdiff_t n);
void ddp_decode_fp16(float *_Nonnull out, const uint16_t *_Nonnull in, ptrdiff_t n);

#endif
