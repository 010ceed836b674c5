/* adamw.h: AdamW over many tensors in one launch, and the global gradient
 * norm with its clipping scale.
 *
 * A plan holds, on the device, the table of tensors (fp32 master weights,
 * fp32 moments, gradients, optional bf16 working copy) cut into fixed chunks;
 * it is made once (after the buffers are allocated) and reused every step.
 * The caller owns every tensor buffer; the plan owns only its tables.
 *
 * Step (PyTorch's AdamW, decoupled weight decay), per element with
 * g = grad * scale (scale = *grad_scale, or 1 when NULL):
 *     p -= lr * weight_decay * p            (only tensors with decay != 0)
 *     m  = beta1 m + (1 - beta1) g
 *     v  = beta2 v + (1 - beta2) g^2
 *     p -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
 *     param_bf16 = bf16(p)                  (when param_bf16 != NULL)
 * step counts from 1.
 *
 * Gradient norm: sumsq = sum of g^2 over all tensors (fp32 per block, the
 * blocks' partial sums added in a fixed order in double: deterministic);
 * norm = sqrt(sumsq); clip scale = min(1, max_norm / (norm + 1e-6)), 1 when
 * max_norm <= 0, NaN when the norm is not finite (skip such a step).  With
 * sharded gradients, all-reduce sumsq between oh_cuda_grad_sumsq and
 * oh_cuda_clip_scale. */
#ifndef OH_CUDA_ADAMW_H
#define OH_CUDA_ADAMW_H
#include "kernels/cuda/ops_common.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct oh_adamw_tensor {
    float *param;         /* fp32 master weights [n] */
    float *m;             /* fp32 first moment [n] */
    float *v;             /* fp32 second moment [n] */
    const void *grad;     /* gradient [n], grad_dtype */
    uint16_t *param_bf16; /* bf16 working copy [n], written after the update; or NULL */
    int64_t n;
    int32_t grad_dtype;   /* OH_DTYPE_F32 or OH_DTYPE_BF16 */
    int32_t decay;        /* nonzero: weight decay applies to this tensor */
} oh_adamw_tensor;

typedef struct oh_adamw_hparams {
    float lr, beta1, beta2, eps, weight_decay;
    int64_t step; /* >= 1 */
} oh_adamw_hparams;

typedef struct oh_adamw_plan oh_adamw_plan;

/* Copies the table to the device (synchronous). Tensors with n == 0 are skipped. */
int oh_cuda_adamw_plan_create(oh_adamw_plan **plan, const oh_adamw_tensor *tensors, int ntensors);
void oh_cuda_adamw_plan_free(oh_adamw_plan *plan);

/* One AdamW step over every tensor of the plan. grad_scale: device float or NULL. */
int oh_cuda_adamw_step(oh_adamw_plan *plan, const oh_adamw_hparams *hp, const float *grad_scale, oh_stream stream);

/* sumsq_out (device float) = sum of squared gradients of the plan. */
int oh_cuda_grad_sumsq(oh_adamw_plan *plan, float *sumsq_out, oh_stream stream);
/* norm_out, scale_out (device floats, either may be NULL) from sumsq (device float). */
int oh_cuda_clip_scale(float *norm_out, float *scale_out, const float *sumsq, float max_norm, oh_stream stream);
/* Both of the above: norm and clipping scale of the plan's gradients. */
int oh_cuda_grad_norm(oh_adamw_plan *plan, float *norm_out, float *scale_out, float max_norm, oh_stream stream);

#ifdef __cplusplus
}
#endif
#endif
