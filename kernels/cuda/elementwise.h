/* elementwise.h: SwiGLU, embedding lookup and its gradient, dtype casts.
 * bf16 storage, fp32 math; flat arrays of n elements unless said otherwise. */
#ifndef OH_CUDA_ELEMENTWISE_H
#define OH_CUDA_ELEMENTWISE_H
#include "kernels/cuda/ops_common.h"
#ifdef __cplusplus
extern "C" {
#endif

/* out[n] = silu(gate[n]) * up[n] */
int oh_cuda_swiglu_fwd(uint16_t *out, const uint16_t *gate, const uint16_t *up, size_t n, oh_stream stream);
/* dgate[n], dup[n] (= or += when accumulate) <- dout[n], gate[n], up[n].
 * dgate/dup may alias gate/up (in place) when not accumulating. */
int oh_cuda_swiglu_bwd(uint16_t *dgate, uint16_t *dup, const uint16_t *dout, const uint16_t *gate, const uint16_t *up,
                       size_t n, int accumulate, oh_stream stream);

/* out[T, C] = E[ids[t], :], E[V, C] bf16; an id outside [0, V) gives a zero row. */
int oh_cuda_embedding_fwd(uint16_t *out, const int32_t *ids, const uint16_t *E, int T, int V, int C, oh_stream stream);
/* dE[ids[t], :] += dout[t, :] (dE fp32 [V, C], scatter-add with atomics), skipping
 * ids equal to pad_id (pad_id < 0: none skipped) and ids outside [0, V). */
int oh_cuda_embedding_bwd(float *dE, const uint16_t *dout, const int32_t *ids, int T, int V, int C, int pad_id,
                          oh_stream stream);

/* Casts: bf16 rounds to nearest even (NaN stays NaN). */
int oh_cuda_f32_to_bf16(uint16_t *out, const float *in, size_t n, oh_stream stream);
int oh_cuda_bf16_to_f32(float *out, const uint16_t *in, size_t n, oh_stream stream);

#ifdef __cplusplus
}
#endif
#endif
