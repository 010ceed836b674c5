/* cross_entropy.h: fused lm_head + softmax cross-entropy, in vocabulary
 * chunks, so the [N, V] logits never exist (only one [N, chunk] slice).
 *
 *   logits = h[N, C] @ W[V, C]^T        (bf16 inputs, fp32 accumulation)
 *   lse[t]     = logsumexp(logits[t])    (online over the chunks)
 *   loss[t]    = lse[t] - logits[t, target[t]]    (0 when target[t] < 0)
 *   logprob[t] = -loss[t]
 * Backward, given weight[t] = dL/dloss[t] (fp32, device):
 *   dlogits = weight[t] * (softmax(logits[t]) - onehot(target[t]))   (0 for target < 0)
 *   dh += dlogits @ W;  dW += dlogits^T @ h
 * recomputing each chunk's logits from the lse saved by the forward.
 * The chunk width is chosen from N so that one fp32 logits slice is about
 * 128 MiB (4096 columns at N = 8192).
 *
 * Workspace: caller-owned device memory of at least
 * oh_cuda_fused_ce_workspace_bytes(N, V, C) bytes (the same value serves the
 * forward and the backward).  target[N] int32 on the device; a target
 * outside [0, V) other than negative is an error the kernel cannot report:
 * its loss is then lse (the target logit is taken as 0).
 * The ops run on `stream` and use the cuBLASLt GEMMs of gemm.h. */
#ifndef OH_CUDA_CROSS_ENTROPY_H
#define OH_CUDA_CROSS_ENTROPY_H
#include "kernels/cuda/ops_common.h"
#ifdef __cplusplus
extern "C" {
#endif

size_t oh_cuda_fused_ce_workspace_bytes(int N, int V, int C);

/* loss[N], logprob[N] (or NULL), lse[N] (saved for the backward; or NULL)
 * <- h[N, C], W[V, C] (bf16), target[N] */
int oh_cuda_fused_ce_fwd(float *loss, float *logprob, float *lse, const uint16_t *h, const uint16_t *W,
                         const int32_t *target, int N, int V, int C, void *workspace, size_t workspace_bytes,
                         oh_stream stream);

/* dh[N, C] += (dh_dtype bf16 or fp32; NULL: not needed), dW[V, C] += (dw_dtype; NULL: frozen head)
 * <- weight[N], lse[N] from the forward, h, W, target. */
int oh_cuda_fused_ce_bwd(void *dh, int dh_dtype, void *dW, int dw_dtype, const float *weight, const float *lse,
                         const uint16_t *h, const uint16_t *W, const int32_t *target, int N, int V, int C,
                         void *workspace, size_t workspace_bytes, oh_stream stream);

#ifdef __cplusplus
}
#endif
#endif
