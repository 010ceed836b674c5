/* norms.h: RMSNorm forward/backward on the GPU (bf16 storage, fp32 math).
 *
 *   rmsnorm:        out = bf16(w * x * rstd),  rstd = 1 / sqrt(mean(x^2) + eps)
 *   add_rmsnorm:    h = bf16(x + y);           out = bf16(w * h * rstd(h))
 *                   (pre-norm residual: the sum is stored, then normed)
 *   rmsnorm_add:    h = bf16(x + bf16(w * y * rstd(y)))
 *                   (post-norm residual of the attention layers; rstd of y)
 *   gated_rmsnorm:  out = bf16(w * x * rstd * silu(gate))   (GDN output norm)
 *
 * Rows are the last dimension: x[N, C]; C up to 65536 (any C; C % 8 == 0 with
 * 16-byte aligned pointers takes the vector path).  rstd[N] (fp32) is saved by
 * the forward when non-NULL; the backward recomputes it when given NULL.
 *
 * Backward: dx (bf16) is overwritten, or accumulated into when `accumulate`
 * (dx += ...); the weight gradient dw[C] (fp32) always accumulates (+=) and
 * is skipped when NULL.  The fused forwards have no own backward: for
 * add_rmsnorm, run rmsnorm_bwd on h (its dx is the gradient of both x and y,
 * accumulate it into the residual gradient); for rmsnorm_add, dx = dh and
 * dy = rmsnorm_bwd(dout = dh, x = y).
 * Parameter-gradient accumulation uses fp32 atomics: the order of additions,
 * hence the last bits of dw, can differ between runs. */
#ifndef OH_CUDA_NORMS_H
#define OH_CUDA_NORMS_H
#include "kernels/cuda/ops_common.h"
#ifdef __cplusplus
extern "C" {
#endif

/* out[N, C], rstd[N] (or NULL) <- x[N, C], w[C] */
int oh_cuda_rmsnorm_fwd(uint16_t *out, float *rstd, const uint16_t *x, const uint16_t *w, int N, int C, float eps,
                        oh_stream stream);
/* dx[N, C] (= or +=), dw[C] (+=, fp32, or NULL) <- dout[N, C], x[N, C], w[C], rstd[N] (or NULL) */
int oh_cuda_rmsnorm_bwd(uint16_t *dx, float *dw, const uint16_t *dout, const uint16_t *x, const uint16_t *w,
                        const float *rstd, int N, int C, float eps, int accumulate, oh_stream stream);

/* h[N, C] = x + y; out[N, C] = rmsnorm(h); rstd[N] of h (or NULL). h may alias x or y. */
int oh_cuda_add_rmsnorm_fwd(uint16_t *h, uint16_t *out, float *rstd, const uint16_t *x, const uint16_t *y,
                            const uint16_t *w, int N, int C, float eps, oh_stream stream);
/* h[N, C] = x + rmsnorm(y); rstd[N] of y (or NULL). h may alias x. */
int oh_cuda_rmsnorm_add_fwd(uint16_t *h, float *rstd, const uint16_t *x, const uint16_t *y, const uint16_t *w, int N,
                            int C, float eps, oh_stream stream);

/* out[N, V], rstd[N] (or NULL) <- x[N, V], gate[N, V], w[V] (GDN: N = tokens * heads, V = 192, eps 1e-5) */
int oh_cuda_gated_rmsnorm_fwd(uint16_t *out, float *rstd, const uint16_t *x, const uint16_t *gate, const uint16_t *w,
                              int N, int V, float eps, oh_stream stream);
/* dx, dgate [N, V] (= or +=), dw[V] (+=, fp32, or NULL) */
int oh_cuda_gated_rmsnorm_bwd(uint16_t *dx, uint16_t *dgate, float *dw, const uint16_t *dout, const uint16_t *x,
                              const uint16_t *gate, const uint16_t *w, const float *rstd, int N, int V, float eps,
                              int accumulate, oh_stream stream);

#ifdef __cplusplus
}
#endif
#endif
