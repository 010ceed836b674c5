/* gdn_mixer.h: the elementwise and stencil parts of the Gated DeltaNet mixer
 * (MODEL.md, GDN steps 2, 4 and 5) on the GPU, forward and backward: the
 * gates (beta, g) and the depthwise causal conv1d + SiLU of q, k and v over
 * packed documents.  The recurrence itself is kernels/cuda/gdn.h.
 *
 * Semantics are those of the CPU reference (kernels/cpu/cpu_ops_decl.h:
 * cpu_gdn_gates_*, cpu_conv1d_silu_*), with one difference: every gradient
 * here is WRITTEN (=), not accumulated (+=) as the CPU ops do.  A NULL output
 * or gradient pointer means "not needed" and is skipped.
 *
 * Layouts (token-major, as kernels/cpu): b, a, db, da [T, H] bf16;
 * beta, g, dbeta, dg [T, H] fp32; A_log, dt_bias, dA_log, ddt_bias [H] fp32;
 * conv x, out, dout, dx [T, C] bf16 (row stride C); conv weight w [C, W] bf16
 * (PyTorch's [C, 1, W] squeezed: tap W-1 multiplies the current token);
 * dw [C, W] fp32.  bf16 tensors are passed as uint16_t (the raw bf16 bits).
 * cu_seqlens: DEVICE int32 [ndocs + 1], 0 = cu[0] <= cu[1] <= ... <= cu[ndocs]
 * = T (empty documents allowed); the conv window restarts (zero left padding)
 * at each document start.  Not checked (device data); a malformed table
 * cannot make the kernels read or write out of bounds, but gives garbage.
 *
 * Precision: fp32 math on bf16 storage; parameter gradients (dA_log,
 * ddt_bias, dw) are fp32 sums over T.  The conv's padding taps are computed
 * as w * 0 (the CPU reference skips them), so a non-finite weight also makes
 * the first W-1 rows of each document non-finite.
 * Deterministic: no float atomics; the reductions over T are per-tile
 * partial sums in a workspace, added in a fixed order by a second kernel, and
 * the tiling depends on the sizes only, so the same inputs give the same bits.
 *
 * Every function runs on `stream` (a cudaStream_t; NULL is the default
 * stream), enqueues work and returns without synchronising.  It returns
 * GDN_MIXER_OK (0) or a negative gdn_mixer_status, with a message for
 * gdn_mixer_last_error().
 *
 * Preconditions (checked): sizes as stated per function; bf16 and fp32
 * tensors 2- and 4-byte aligned; workspaces 16-byte aligned and at least the
 * size the matching *_workspace_bytes() returns.  Outputs must not alias
 * inputs.  The fast (16-byte) paths are taken when the pointers are 16-byte
 * aligned and (conv) every C is a multiple of 8; otherwise a scalar path runs. */
#ifndef OH_GDN_MIXER_H
#define OH_GDN_MIXER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum gdn_mixer_status {
    GDN_MIXER_OK = 0,
    GDN_MIXER_BAD_ARG = -1,     /* a null, misaligned or inconsistent argument */
    GDN_MIXER_UNSUPPORTED = -2, /* a shape this build does not handle */
    GDN_MIXER_WORKSPACE = -3,   /* workspace missing, misaligned or too small */
    GDN_MIXER_CUDA = -4         /* a CUDA call or launch failed */
} gdn_mixer_status;

/* Most convs one gdn_mixer_conv_* call handles (q, k, v: 3). */
#define GDN_MIXER_MAX_CONVS 4
/* Widest conv kernel supported (the model uses 4). */
#define GDN_MIXER_MAX_WIDTH 8

/* ---- gates, per token t and value head h (1 <= H <= 65535, T >= 1):
 *      beta = sigmoid(b) * (allow_neg_eigval ? 2 : 1)
 *      g    = -exp(A_log[h]) * softplus(a + dt_bias[h])   (softplus as torch: z > 20 -> z) ---- */

/* beta, g [T, H] fp32 (either may be NULL) <- b, a [T, H] bf16, A_log, dt_bias [H] fp32.
 * b may be NULL when beta is; a, A_log, dt_bias may be NULL when g is. */
int gdn_mixer_gates_fwd(float *beta, float *g, const uint16_t *b, const uint16_t *a, const float *A_log,
                        const float *dt_bias, int T, int H, int allow_neg_eigval, void *stream);

/* Bytes of workspace gdn_mixer_gates_bwd needs (0 for invalid sizes). */
size_t gdn_mixer_gates_bwd_workspace_bytes(int T, int H);

/* db [T, H] bf16 <- dbeta, b;  da [T, H] bf16, dA_log [H], ddt_bias [H] fp32 <- dg, a, A_log, dt_bias.
 *   db = dbeta * s (1 - s) * (allow_neg_eigval ? 2 : 1),  s = sigmoid(b)
 *   da = dz = -dg * exp(A_log[h]) * dsoftplus(a + dt_bias[h]),   ddt_bias[h] = sum_t dz,
 *   dA_log[h] = sum_t dg * g.
 * Each output may be NULL; the inputs it needs must not be.  The workspace
 * (only used when dA_log or ddt_bias is wanted; may be NULL otherwise) is
 * scratch, clobbered. */
int gdn_mixer_gates_bwd(uint16_t *db, uint16_t *da, float *dA_log, float *ddt_bias, const float *dbeta,
                        const float *dg, const uint16_t *b, const uint16_t *a, const float *A_log,
                        const float *dt_bias, int T, int H, int allow_neg_eigval, void *workspace,
                        size_t workspace_bytes, void *stream);

/* ---- depthwise causal conv1d (width W, left zero padding W-1 per document,
 *      no bias) + SiLU, for nconv (1..GDN_MIXER_MAX_CONVS) tensors at once
 *      (one launch), all with the same T, documents and W (1..8):
 *      out_i[t, c] = silu(sum_j w_i[c, j] x_i[t - (W-1) + j, c]),
 *      terms before the start of t's document being zero.
 * The array arguments are HOST arrays of nconv device pointers / channel
 * counts (C[i] >= 1).  A fused q|k|v projection ([T, Cq+Ck+Cv] in one
 * buffer) is one conv of C = Cq+Ck+Cv when its weights are stored together. ---- */

/* out[i] [T, C[i]] bf16 <- x[i] [T, C[i]] bf16, w[i] [C[i], W] bf16. */
int gdn_mixer_conv_fwd(int nconv, uint16_t *const *out, const uint16_t *const *x, const uint16_t *const *w,
                       const int *C, const int32_t *cu_seqlens, int ndocs, int T, int W, void *stream);

/* Bytes of workspace gdn_mixer_conv_bwd needs (0 for invalid sizes). */
size_t gdn_mixer_conv_bwd_workspace_bytes(int nconv, const int *C, int T, int W);

/* dx[i] [T, C[i]] bf16 and dw[i] [C[i], W] fp32 <- dout[i] [T, C[i]] bf16 (the
 * gradient of out), x[i], w[i] (the forward's inputs; the pre-activation is
 * recomputed).  The arrays dx and dw may be NULL, or hold NULL entries
 * (that gradient is not computed).  The workspace is scratch, clobbered. */
int gdn_mixer_conv_bwd(int nconv, uint16_t *const *dx, float *const *dw, const uint16_t *const *dout,
                       const uint16_t *const *x, const uint16_t *const *w, const int *C, const int32_t *cu_seqlens,
                       int ndocs, int T, int W, void *workspace, size_t workspace_bytes, void *stream);

/* The message of the last failure on this thread ("file:line: what"), or "". */
const char *gdn_mixer_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
