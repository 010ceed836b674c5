/* gemm.h: matrix products through cuBLASLt, bf16 inputs, fp32 accumulation,
 * bf16 or fp32 outputs, in row-major terms.
 *
 * The general entry computes, for row-major matrices,
 *     C[M, N] = alpha * op(A) @ op(B) + beta * C
 * where op(A) is [M, K] (A stored [M, K], or [K, M] when trans_a) and op(B)
 * is [K, N] (B stored [K, N], or [N, K] when trans_b).  Leading dimensions
 * are row strides in elements; 0 means packed.  C is bf16 or fp32 (c_dtype);
 * beta != 0 reads C (accumulation, e.g. parameter gradients).
 *
 * The three products of a linear layer (weights W[O, I], PyTorch layout):
 *     forward      Y[T, O]  = X[T, I] @ W^T
 *     input grad   dX[T, I] = dY[T, O] @ W        (beta 0 or 1)
 *     weight grad  dW[O, I] = dY^T @ X            (beta 1: accumulates)
 *
 * Per device and stream a 32 MiB workspace is kept; per shape (sizes,
 * transposes, dtypes, alignment) the matmul descriptors and an algorithm are
 * cached, so a repeated shape costs one lookup.  The algorithm is the fastest
 * of up to 48 candidates (cuBLASLt's heuristic's first 12, then configurations
 * built from them: split-K, other tiles, swizzle, cluster shapes, per algorithm
 * id; each built one checked against the heuristic's first on a sample of the
 * output, beta 0 and 1), timed on the first call of the shape (a few runs each
 * on the real A, B and a scratch output, so C and beta accumulation are
 * untouched; the first call then synchronises the stream and briefly
 * allocates a C-sized scratch buffer; ~0.2 s for a 7B shape).  OH_GEMM_TUNE=0
 * takes the heuristic's first choice instead; no tuning happens while the
 * stream is being captured into a graph.  Thread-safe.  Everything is freed by oh_cuda_gemm_release(). */
#ifndef OH_CUDA_GEMM_H
#define OH_CUDA_GEMM_H
#include "kernels/cuda/ops_common.h"
#ifdef __cplusplus
extern "C" {
#endif

int oh_cuda_gemm(void *C, int c_dtype, const uint16_t *A, const uint16_t *B, int M, int N, int K, int trans_a,
                 int trans_b, float alpha, float beta, int lda, int ldb, int ldc, oh_stream stream);

/* Y[T, O] = X[T, I] @ W[O, I]^T; Y bf16 or fp32 (overwritten). */
int oh_cuda_linear_fwd(void *Y, int y_dtype, const uint16_t *X, const uint16_t *W, int T, int I, int O,
                       oh_stream stream);
/* dX[T, I] = dY[T, O] @ W[O, I] (+ dX when accumulate); dX bf16 or fp32. */
int oh_cuda_linear_bwd_data(void *dX, int dx_dtype, const uint16_t *dY, const uint16_t *W, int T, int I, int O,
                            int accumulate, oh_stream stream);
/* dW[O, I] += dY[T, O]^T @ X[T, I]; dW bf16 or fp32. */
int oh_cuda_linear_bwd_weight(void *dW, int dw_dtype, const uint16_t *dY, const uint16_t *X, int T, int I, int O,
                              oh_stream stream);

/* Frees the cached descriptors, workspaces and handles (call with no GEMM in flight). */
void oh_cuda_gemm_release(void);

#ifdef __cplusplus
}
#endif
#endif
