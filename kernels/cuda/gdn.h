/* gdn.h: the gated delta rule (Gated DeltaNet mixer, MODEL.md step 6-7) on
 * the GPU: chunked forward and backward for Hopper (sm_90a), variable-length
 * documents, the q/k l2 normalisation and the K^-0.5 scale on q fused in.
 *
 * Per document and value head h (key head h / (Hv/Hk)), with
 *   qn_t = l2norm(q_t) * K^-0.5,   kn_t = l2norm(k_t),
 *   l2norm(x) = x * rsqrt(sum(x^2) + 1e-6),
 * the state S [K, V] (fp32) starts at s0 (or 0) and for each token
 *   S = exp(g_t) S;  u = beta_t (v_t - S^T kn_t);  S += kn_t u^T;  o_t = S^T qn_t.
 * It is computed in chunks of 64 tokens, each document chunked from its own
 * start (the WY / UT-transform form; see gdn.cu).  Nothing crosses a document.
 *
 * Layouts (token-major, heads contiguous inside a token, as kernels/cpu):
 *   q, k [T, Hk, K] bf16;  v, out, dout [T, Hv, V] bf16;  g, beta [T, Hv] fp32;
 *   s0, s_final, ds0, ds_final [ndocs, Hv, K, V] fp32 (each may be NULL:
 *   NULL s0 / ds_final mean zeros, NULL s_final / ds0 are not written);
 *   cu_seqlens: DEVICE int32 [ndocs + 1], 0 = cu[0] <= cu[1] <= ... <= cu[ndocs] = T.
 * bf16 tensors are passed as uint16_t (the raw bf16 bits).
 *
 * Gradients: dq, dk (w.r.t. the raw, un-normalised q and k), dv are bf16;
 * dg, dbeta and ds0 are fp32.  All are WRITTEN, not accumulated (unlike the
 * CPU reference ops, whose gradients accumulate).
 *
 * Preconditions (checked; violations return GDN_STATUS_BAD_ARG or
 * GDN_STATUS_UNSUPPORTED): T >= 1, 1 <= ndocs <= 65535, Hk >= 1,
 * Hv a multiple of Hk, Hv <= 65535, K and V multiples of 16 in [16, 256],
 * tensor pointers 16-byte aligned, a workspace of gdn_workspace_bytes() bytes
 * aligned to 256.  Not checked (device data): cu_seqlens as above; g finite
 * and <= 0 for a stable recurrence; beta in [0, 2].
 *
 * The workspace holds the chunk table and the per-chunk intermediates of the
 * forward that the backward reuses: per 64-token chunk and value head
 * 384 (K + V) + 4 K V + 16.6k bytes, i.e. about 3.1 KB per token and head at
 * K = 96, V = 192 (750 MB for 8192 tokens x 30 heads), plus 8 K bytes per
 * token and value head when Hv != Hk or K > 128; gdn_workspace_bytes() is
 * exact.  gdn_bwd with ws_has_fwd = 1 reuses what gdn_fwd left there (same
 * inputs, workspace untouched since); with ws_has_fwd = 0 it recomputes it.
 *
 * Precision: fp32 state and accumulation; the tensor-core operands are fp16
 * (bounded quantities) or fp16 with a power-of-two exponent per 64-column tile
 * (state, values, gradients), so errors stay within ~1.1x of what bf16 storage
 * of the outputs costs (tests/gpu/test_gdn.cu).  Magnitudes are assumed within
 * about 2^-60..2^60 per tile (state, gradients); contributions attenuated by
 * more than ~2^-24 relative to the largest in the same product lose precision.
 * Deterministic: the same inputs give the same bits (also packed or not).
 *
 * Every function runs on `stream` (a cudaStream_t; NULL is the default
 * stream), enqueues work and returns without synchronising. */
#ifndef OH_GDN_H
#define OH_GDN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gdn_status {
    GDN_STATUS_OK = 0,
    GDN_STATUS_BAD_ARG = -1,     /* a null, misaligned or inconsistent argument */
    GDN_STATUS_UNSUPPORTED = -2, /* a shape this build does not handle */
    GDN_STATUS_WORKSPACE = -3,   /* workspace missing, misaligned or too small */
    GDN_STATUS_CUDA = -4         /* a CUDA call or launch failed */
} gdn_status;

/* Bytes of workspace gdn_fwd / gdn_bwd need for these sizes (0 when the sizes
 * are invalid). */
size_t gdn_workspace_bytes(int T, int ndocs, int Hk, int Hv, int K, int V);

/* Forward: out [T, Hv, V] bf16, s_final [ndocs, Hv, K, V] fp32 (or NULL). */
int gdn_fwd(uint16_t *out, float *s_final, const uint16_t *q, const uint16_t *k, const uint16_t *v, const float *g,
            const float *beta, const float *s0, const int32_t *cu_seqlens, int ndocs, int T, int Hk, int Hv, int K,
            int V, void *workspace, size_t workspace_bytes, void *stream);

/* Backward: given dout [T, Hv, V] bf16 and ds_final [ndocs, Hv, K, V] fp32 (or
 * NULL), writes dq, dk [T, Hk, K] bf16, dv [T, Hv, V] bf16, dg, dbeta [T, Hv]
 * fp32 and ds0 [ndocs, Hv, K, V] fp32 (or NULL). */
int gdn_bwd(uint16_t *dq, uint16_t *dk, uint16_t *dv, float *dg, float *dbeta, float *ds0, const uint16_t *dout,
            const float *ds_final, const uint16_t *q, const uint16_t *k, const uint16_t *v, const float *g,
            const float *beta, const float *s0, const int32_t *cu_seqlens, int ndocs, int T, int Hk, int Hv, int K,
            int V, int ws_has_fwd, void *workspace, size_t workspace_bytes, void *stream);

/* The message of the last failure on this thread ("file:line: what"), or "". */
const char *gdn_last_error(void);

/* Development aid (not thread-safe): while enabled, gdn_fwd / gdn_bwd record a
 * CUDA event after each kernel; gdn_profile_report writes the time per kernel
 * since enabling into buf (a small table) and synchronises.  Off by default;
 * enabling (or disabling) clears the totals.  Both return 0. */
int gdn_profile_enable(int on);
int gdn_profile_report(char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
