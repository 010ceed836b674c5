/* attention.h: flash-style causal softmax attention over packed documents,
 * forward and backward, on the GPU (bf16 storage, fp32 softmax and
 * accumulation, tensor cores through mma.sync m16n8k16).
 *
 * q[T, Hq, D], k[T, Hkv, D], v[T, Hkv, D] -> out[T, Hq, D]: query head h uses
 * kv head h / (Hq / Hkv) (GQA); token t attends to the tokens s <= t of its
 * own document (block-diagonal causal, documents from cu_seqlens, a device
 * array of ndocs + 1 int32; max_seqlen is the longest document, a host int).
 * Scores are scale * q.k; lse[T, Hq] (fp32, natural log of the sum of
 * exp(scores) of the row) is saved for the backward.  D is 64 or 128 (others:
 * OH_CUDA_ERR_UNSUPPORTED).
 *
 * RoPE (optional): when pos != NULL and rope_theta > 0, q and k are rotated
 * inside the kernels before the product (rotate-half, angle =
 * pos[t] * rope_theta^(-2i/D) for i < D/2, computed in fp32; pos is a device
 * int32 [T] of per-token positions); the backward returns the gradients of
 * the un-rotated q and k.  The kernels never write q or k.
 *
 * Backward: dq[T, Hq, D], dk, dv[T, Hkv, D] (bf16) are overwritten (not
 * accumulated).  It needs a caller-owned device workspace of
 * oh_cuda_attention_bwd_workspace_bytes(T, Hq, D) bytes (fp32 dq accumulator
 * and the row sums of dout * out).  The dq accumulation uses fp32 atomics:
 * its last bits can differ between runs. */
#ifndef OH_CUDA_ATTENTION_H
#define OH_CUDA_ATTENTION_H
#include "kernels/cuda/ops_common.h"
#ifdef __cplusplus
extern "C" {
#endif

int oh_cuda_attention_fwd(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                          const int32_t *cu_seqlens, int ndocs, int max_seqlen, int T, int Hq, int Hkv, int D,
                          float scale, const int32_t *pos, float rope_theta, oh_stream stream);

size_t oh_cuda_attention_bwd_workspace_bytes(int T, int Hq, int D);

int oh_cuda_attention_bwd(uint16_t *dq, uint16_t *dk, uint16_t *dv, const uint16_t *dout, const uint16_t *out,
                          const float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                          const int32_t *cu_seqlens, int ndocs, int max_seqlen, int T, int Hq, int Hkv, int D,
                          float scale, const int32_t *pos, float rope_theta, void *workspace, size_t workspace_bytes,
                          oh_stream stream);

#ifdef __cplusplus
}
#endif
#endif
