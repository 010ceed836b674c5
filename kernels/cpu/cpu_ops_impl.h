/* cpu_ops_impl.h: the one implementation of the CPU reference ops, written
 * for a generic real type.  Included by cpu_ops_f32.c and cpu_ops_f64.c after
 * cpu_ops.h, with OH_CPU_R (float or double) and OH_CPU_F(name) (the name
 * mangler) defined.  Contracts are in cpu_ops_decl.h.
 *
 * Precision: scalar reductions (norms, dot products, softmax sums, parameter
 * gradients summed over tokens) accumulate in double and round once;
 * transcendental functions are evaluated in double and rounded to R.  The
 * GDN state and its gradient are kept in R, as the declaration says.
 * No include guard on purpose. */
#ifndef OH_CPU_OPS_H
#error "include kernels/cpu/cpu_ops.h before cpu_ops_impl.h"
#endif

#include <assert.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS's cblas.h pulls in <complex.h>, whose macro I would clash with the
 * size argument named I below; nothing here uses complex numbers. */
#undef I

#define R OH_CPU_R
#define F OH_CPU_F

/* cblas_sgemm or cblas_dgemm, by the type R */
#define OH_CPU_GEMM(...) _Generic((R)0, float: cblas_sgemm, double: cblas_dgemm)(__VA_ARGS__)

/* GDN backward: the state is checkpointed every OH_CPU_GDN_CHUNK tokens */
#ifndef OH_CPU_GDN_CHUNK
#define OH_CPU_GDN_CHUNK 64
#endif

/* ---- helpers (static, mangled so both inclusions stay apart) ---- */

static void *F(xmalloc)(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) abort(); /* out of memory is a broken invariant here */
    return p;
}

static void *F(xcalloc)(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) abort();
    return p;
}

static inline double F(sigmoid)(double x) { return 1.0 / (1.0 + exp(-x)); }

/* silu(x) = x * sigmoid(x) and its derivative sigmoid(x) * (1 + x (1 - sigmoid(x))) */
static inline double F(silu)(double x) { return x / (1.0 + exp(-x)); }
static inline double F(dsilu)(double x) {
    double s = F(sigmoid)(x);
    return s * (1.0 + x * (1.0 - s));
}

/* torch.nn.functional.softplus with beta 1, threshold 20 */
static inline double F(softplus)(double x) { return x > 20.0 ? x : log1p(exp(x)); }
static inline double F(dsoftplus)(double x) { return x > 20.0 ? 1.0 : F(sigmoid)(x); }

static inline double F(dot)(const R *a, const R *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

/* longest document of a packed stream */
static int F(max_doclen)(const int32_t *cu_seqlens, int ndocs, int T) {
    assert(ndocs >= 0 && cu_seqlens[0] == 0 && cu_seqlens[ndocs] == T);
    int m = 0;
    for (int d = 0; d < ndocs; d++) {
        assert(cu_seqlens[d + 1] > cu_seqlens[d]);
        int L = cu_seqlens[d + 1] - cu_seqlens[d];
        if (L > m) m = L;
    }
    return m;
}

/* ---- elementwise ---- */

void F(add)(R *out, const R *a, const R *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void F(acc)(R *y, const R *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

/* ---- linear ---- */

void F(linear_fwd)(R *out, const R *in, const R *W, int T, int I, int O) {
    if (T <= 0 || O <= 0) return;
    if (I <= 0) {
        memset(out, 0, (size_t)T * O * sizeof(R));
        return;
    }
    /* out[T,O] = in[T,I] @ W[O,I]^T */
    OH_CPU_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, T, O, I, (R)1, in, I, W, I, (R)0, out, O);
}

void F(linear_bwd)(R *din, R *dW, const R *dout, const R *in, const R *W, int T, int I, int O) {
    if (T <= 0 || I <= 0 || O <= 0) return;
    /* din[T,I] += dout[T,O] @ W[O,I] */
    if (din) OH_CPU_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, I, O, (R)1, dout, O, W, I, (R)1, din, I);
    /* dW[O,I] += dout[T,O]^T @ in[T,I] */
    if (dW) OH_CPU_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, T, (R)1, dout, O, in, I, (R)1, dW, I);
}

/* ---- embedding ---- */

void F(embedding_fwd)(R *out, const int32_t *ids, const R *E, int T, int C) {
    for (int t = 0; t < T; t++) {
        assert(ids[t] >= 0);
        memcpy(out + (size_t)t * C, E + (size_t)ids[t] * C, (size_t)C * sizeof(R));
    }
}

void F(embedding_bwd)(R *dE, const R *dout, const int32_t *ids, int T, int C, int pad_id) {
    if (!dE) return;
    for (int t = 0; t < T; t++) {
        if (pad_id >= 0 && ids[t] == pad_id) continue;
        assert(ids[t] >= 0);
        R *row = dE + (size_t)ids[t] * C;
        const R *d = dout + (size_t)t * C;
        for (int c = 0; c < C; c++) row[c] += d[c];
    }
}

/* ---- RMSNorm ---- */

void F(rmsnorm_fwd)(R *out, R *rstd, const R *x, const R *w, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const R *xr = x + (size_t)n * C;
        R *o = out + (size_t)n * C;
        R r = (R)(1.0 / sqrt(F(dot)(xr, xr, C) / C + eps));
        for (int c = 0; c < C; c++) o[c] = w[c] * (xr[c] * r);
        if (rstd) rstd[n] = r;
    }
}

/* y = w * x * r with r = (mean(x^2) + eps)^-1/2:
 * dx = r * (w dy) - r^3 / C * x * sum(w dy x),  dw += dy * x * r */
void F(rmsnorm_bwd)(R *dx, R *dw, const R *dout, const R *x, const R *w, const R *rstd, int N, int C) {
    double *dwacc = dw ? F(xcalloc)((size_t)C, sizeof(double)) : NULL;
    for (int n = 0; n < N; n++) {
        const R *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
        double r = rstd[n];
        if (dx) {
            double s = 0.0;
            for (int c = 0; c < C; c++) s += (double)w[c] * dy[c] * xr[c];
            double k = r * r * r * s / C;
            R *d = dx + (size_t)n * C;
            for (int c = 0; c < C; c++) d[c] += (R)(r * ((double)w[c] * dy[c]) - k * xr[c]);
        }
        if (dwacc)
            for (int c = 0; c < C; c++) dwacc[c] += (double)dy[c] * xr[c] * r;
    }
    if (dwacc) {
        for (int c = 0; c < C; c++) dw[c] += (R)dwacc[c];
        free(dwacc);
    }
}

/* ---- gated RMSNorm ---- */

void F(gated_rmsnorm_fwd)(R *out, R *rstd, const R *x, const R *gate, const R *w, int N, int V, double eps) {
    for (int n = 0; n < N; n++) {
        const R *xr = x + (size_t)n * V, *gr = gate + (size_t)n * V;
        R *o = out + (size_t)n * V;
        R r = (R)(1.0 / sqrt(F(dot)(xr, xr, V) / V + eps));
        for (int c = 0; c < V; c++) o[c] = (w[c] * (xr[c] * r)) * (R)F(silu)(gr[c]);
        if (rstd) rstd[n] = r;
    }
}

/* y = w * n * s with n = x r, s = silu(gate):
 * dgate = dy w n silu'(gate);  dn = dy w s;  dx = r dn - r^3 / V * x * sum(dn x);  dw += dy n s */
void F(gated_rmsnorm_bwd)(R *dx, R *dgate, R *dw, const R *dout, const R *x, const R *gate, const R *w,
                          const R *rstd, int N, int V) {
    double *dwacc = dw ? F(xcalloc)((size_t)V, sizeof(double)) : NULL;
    for (int n = 0; n < N; n++) {
        const R *xr = x + (size_t)n * V, *gr = gate + (size_t)n * V, *dy = dout + (size_t)n * V;
        double r = rstd[n];
        double s = 0.0;
        for (int c = 0; c < V; c++) {
            double nv = (double)xr[c] * r, sg = F(silu)(gr[c]);
            if (dgate) dgate[(size_t)n * V + c] += (R)((double)dy[c] * w[c] * nv * F(dsilu)(gr[c]));
            if (dwacc) dwacc[c] += (double)dy[c] * nv * sg;
            s += (double)dy[c] * w[c] * sg * xr[c];
        }
        if (dx) {
            double k = r * r * r * s / V;
            R *d = dx + (size_t)n * V;
            for (int c = 0; c < V; c++) d[c] += (R)(r * ((double)dy[c] * w[c] * F(silu)(gr[c])) - k * xr[c]);
        }
    }
    if (dwacc) {
        for (int c = 0; c < V; c++) dw[c] += (R)dwacc[c];
        free(dwacc);
    }
}

/* ---- RoPE ---- */

/* cos/sin of pos * inv_freq_i for i < D/2, as transformers computes them in
 * float32: inv_freq = 1 / theta^(float(2i) / D), angle = float(pos) * inv_freq. */
static void F(rope_table)(R *cs, R *sn, const float *inv_freq, int32_t pos, int half) {
    for (int i = 0; i < half; i++) {
        float ang = (float)pos * inv_freq[i];
        cs[i] = (R)(float)cos((double)ang);
        sn[i] = (R)(float)sin((double)ang);
    }
}

static float *F(rope_inv_freq)(int D, double theta) {
    int half = D / 2;
    float *inv = F(xmalloc)((size_t)half * sizeof(float));
    for (int i = 0; i < half; i++) inv[i] = 1.0f / powf((float)theta, (float)(2 * i) / (float)D);
    return inv;
}

/* dir = +1: forward rotation; dir = -1: its transpose (the backward) */
static void F(rope_apply)(R *x, const int32_t *pos, int T, int H, int D, double theta, int dir) {
    assert(D % 2 == 0);
    int half = D / 2;
    float *inv = F(rope_inv_freq)(D, theta);
    R *cs = F(xmalloc)((size_t)D * sizeof(R)), *sn = cs + half;
    for (int t = 0; t < T; t++) {
        F(rope_table)(cs, sn, inv, pos[t], half);
        for (int h = 0; h < H; h++) {
            R *x1 = x + ((size_t)t * H + h) * D, *x2 = x1 + half;
            for (int i = 0; i < half; i++) {
                R a = x1[i], b = x2[i], c = cs[i], s = dir > 0 ? sn[i] : -sn[i];
                x1[i] = a * c - b * s;
                x2[i] = b * c + a * s;
            }
        }
    }
    free(cs);
    free(inv);
}

void F(rope_fwd)(R *x, const int32_t *pos, int T, int H, int D, double theta) {
    F(rope_apply)(x, pos, T, H, D, theta, +1);
}

void F(rope_bwd)(R *dx, const int32_t *pos, int T, int H, int D, double theta) {
    F(rope_apply)(dx, pos, T, H, D, theta, -1);
}

/* ---- causal attention ---- */

void F(attention_fwd)(R *out, R *lse, const R *q, const R *k, const R *v, const int32_t *cu_seqlens,
                      int ndocs, int T, int Hq, int Hkv, int D, double scale) {
    assert(Hkv > 0 && Hq % Hkv == 0);
    int maxL = F(max_doclen)(cu_seqlens, ndocs, T), grp = Hq / Hkv;
    double *sc = F(xmalloc)((size_t)maxL * sizeof(double));
    double *acc = F(xmalloc)((size_t)D * sizeof(double));
    for (int d = 0; d < ndocs; d++) {
        int t0 = cu_seqlens[d], t1 = cu_seqlens[d + 1];
        for (int t = t0; t < t1; t++) {
            for (int h = 0; h < Hq; h++) {
                int g = h / grp;
                const R *qv = q + ((size_t)t * Hq + h) * D;
                double m = -INFINITY;
                for (int s = t0; s <= t; s++) {
                    double x = scale * F(dot)(qv, k + ((size_t)s * Hkv + g) * D, D);
                    sc[s - t0] = x;
                    if (x > m) m = x;
                }
                double l = 0.0;
                for (int i = 0; i < D; i++) acc[i] = 0.0;
                for (int s = t0; s <= t; s++) {
                    double p = exp(sc[s - t0] - m);
                    const R *vv = v + ((size_t)s * Hkv + g) * D;
                    l += p;
                    for (int i = 0; i < D; i++) acc[i] += p * vv[i];
                }
                R *o = out + ((size_t)t * Hq + h) * D;
                for (int i = 0; i < D; i++) o[i] = (R)(acc[i] / l);
                if (lse) lse[(size_t)t * Hq + h] = (R)(m + log(l));
            }
        }
    }
    free(acc);
    free(sc);
}

/* P_s = exp(scale q.k_s - lse);  dP_s = dout.v_s;  dS_s = P_s (dP_s - dout.out);
 * dq += scale sum_s dS_s k_s;  dk_s += scale dS_s q;  dv_s += P_s dout */
void F(attention_bwd)(R *dq, R *dk, R *dv, const R *dout, const R *out, const R *lse, const R *q, const R *k,
                      const R *v, const int32_t *cu_seqlens, int ndocs, int T, int Hq, int Hkv, int D,
                      double scale) {
    assert(Hkv > 0 && Hq % Hkv == 0);
    F(max_doclen)(cu_seqlens, ndocs, T);
    int grp = Hq / Hkv;
    double *dqa = F(xmalloc)((size_t)D * sizeof(double));
    for (int d = 0; d < ndocs; d++) {
        int t0 = cu_seqlens[d], t1 = cu_seqlens[d + 1];
        for (int t = t0; t < t1; t++) {
            for (int h = 0; h < Hq; h++) {
                int g = h / grp;
                size_t qi = ((size_t)t * Hq + h) * D;
                const R *qv = q + qi, *dov = dout + qi;
                double L = lse[(size_t)t * Hq + h], Di = F(dot)(dov, out + qi, D);
                for (int i = 0; i < D; i++) dqa[i] = 0.0;
                for (int s = t0; s <= t; s++) {
                    size_t ki = ((size_t)s * Hkv + g) * D;
                    const R *kv = k + ki;
                    double p = exp(scale * F(dot)(qv, kv, D) - L);
                    double ds = p * (F(dot)(dov, v + ki, D) - Di) * scale;
                    if (dv)
                        for (int i = 0; i < D; i++) dv[ki + i] += (R)(p * dov[i]);
                    if (dk)
                        for (int i = 0; i < D; i++) dk[ki + i] += (R)(ds * qv[i]);
                    for (int i = 0; i < D; i++) dqa[i] += ds * kv[i];
                }
                if (dq)
                    for (int i = 0; i < D; i++) dq[qi + i] += (R)dqa[i];
            }
        }
    }
    free(dqa);
}

/* ---- depthwise causal conv1d + SiLU ---- */

/* pre-activation of row t (document starting at t0) into pre[C] */
static void F(conv_pre)(double *pre, const R *x, const R *w, int t, int t0, int C, int K) {
    for (int c = 0; c < C; c++) {
        double a = 0.0;
        for (int j = 0; j < K; j++) {
            int s = t - (K - 1) + j;
            if (s >= t0) a += (double)w[(size_t)c * K + j] * x[(size_t)s * C + c];
        }
        pre[c] = a;
    }
}

void F(conv1d_silu_fwd)(R *out, const R *x, const R *w, const int32_t *cu_seqlens, int ndocs, int T, int C,
                        int K) {
    F(max_doclen)(cu_seqlens, ndocs, T);
    double *pre = F(xmalloc)((size_t)C * sizeof(double));
    for (int d = 0; d < ndocs; d++)
        for (int t = cu_seqlens[d]; t < cu_seqlens[d + 1]; t++) {
            F(conv_pre)(pre, x, w, t, cu_seqlens[d], C, K);
            for (int c = 0; c < C; c++) out[(size_t)t * C + c] = (R)F(silu)(pre[c]);
        }
    free(pre);
}

void F(conv1d_silu_bwd)(R *dx, R *dw, const R *dout, const R *x, const R *w, const int32_t *cu_seqlens,
                        int ndocs, int T, int C, int K) {
    F(max_doclen)(cu_seqlens, ndocs, T);
    double *pre = F(xmalloc)((size_t)C * sizeof(double));
    double *dwacc = dw ? F(xcalloc)((size_t)C * K, sizeof(double)) : NULL;
    for (int d = 0; d < ndocs; d++) {
        int t0 = cu_seqlens[d];
        for (int t = t0; t < cu_seqlens[d + 1]; t++) {
            F(conv_pre)(pre, x, w, t, t0, C, K);
            for (int c = 0; c < C; c++) pre[c] = (double)dout[(size_t)t * C + c] * F(dsilu)(pre[c]);
            for (int j = 0; j < K; j++) {
                int s = t - (K - 1) + j;
                if (s < t0) continue;
                for (int c = 0; c < C; c++) {
                    if (dx) dx[(size_t)s * C + c] += (R)(w[(size_t)c * K + j] * pre[c]);
                    if (dwacc) dwacc[(size_t)c * K + j] += x[(size_t)s * C + c] * pre[c];
                }
            }
        }
    }
    if (dwacc) {
        for (size_t i = 0; i < (size_t)C * K; i++) dw[i] += (R)dwacc[i];
        free(dwacc);
    }
    free(pre);
}

/* ---- GDN gates ---- */

void F(gdn_gates_fwd)(R *beta, R *g, const R *b, const R *a, const R *A_log, const R *dt_bias, int T, int H,
                      int neg_eigval) {
    double bs = neg_eigval ? 2.0 : 1.0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            size_t i = (size_t)t * H + h;
            beta[i] = (R)(bs * F(sigmoid)(b[i]));
            g[i] = (R)(-exp((double)A_log[h]) * F(softplus)((double)a[i] + dt_bias[h]));
        }
}

void F(gdn_gates_bwd)(R *db, R *da, R *dA_log, R *ddt_bias, const R *dbeta, const R *dg, const R *b,
                      const R *a, const R *A_log, const R *dt_bias, int T, int H, int neg_eigval) {
    double bs = neg_eigval ? 2.0 : 1.0;
    double *acc = F(xcalloc)((size_t)2 * H, sizeof(double)); /* dA_log[H], ddt_bias[H] */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            size_t i = (size_t)t * H + h;
            if (db && dbeta) {
                double s = F(sigmoid)(b[i]);
                db[i] += (R)(dbeta[i] * bs * s * (1.0 - s));
            }
            if (dg) {
                double e = exp((double)A_log[h]), z = (double)a[i] + dt_bias[h];
                double dz = -(double)dg[i] * e * F(dsoftplus)(z); /* dL/d(a + dt_bias) */
                if (da) da[i] += (R)dz;
                acc[H + h] += dz;
                acc[h] += -(double)dg[i] * e * F(softplus)(z); /* dg/dA_log = g */
            }
        }
    for (int h = 0; h < H; h++) {
        if (dA_log) dA_log[h] += (R)acc[h];
        if (ddt_bias) ddt_bias[h] += (R)acc[H + h];
    }
    free(acc);
}

/* ---- l2norm ---- */

void F(l2norm_fwd)(R *out, R *rnorm, const R *x, int N, int D, double eps, double scale) {
    R sc = (R)scale;
    for (int n = 0; n < N; n++) {
        const R *xr = x + (size_t)n * D;
        R *o = out + (size_t)n * D;
        R r = (R)(1.0 / sqrt(F(dot)(xr, xr, D) + eps));
        for (int i = 0; i < D; i++) o[i] = (xr[i] * r) * sc;
        if (rnorm) rnorm[n] = r;
    }
}

/* out = scale x r, r = (sum x^2 + eps)^-1/2:  dx = scale (r dout - r^3 x sum(dout x)) */
void F(l2norm_bwd)(R *dx, const R *dout, const R *x, const R *rnorm, int N, int D, double scale) {
    if (!dx) return;
    for (int n = 0; n < N; n++) {
        const R *xr = x + (size_t)n * D, *dy = dout + (size_t)n * D;
        double r = rnorm[n], k = r * r * r * F(dot)(dy, xr, D);
        R *d = dx + (size_t)n * D;
        for (int i = 0; i < D; i++) d[i] += (R)(scale * (r * dy[i] - k * xr[i]));
    }
}

/* ---- gated delta rule ---- */

/* One step of the recurrence on S[K,V] in place; writes o[V] when o != NULL.
 * tmp[V] is scratch (holds u on return). */
static void F(gdn_step)(R *S, R *o, R *tmp, const R *q, const R *k, const R *v, R g, R beta, int K, int V) {
    R a = (R)exp((double)g);
    for (int j = 0; j < V; j++) tmp[j] = 0;
    for (int i = 0; i < K; i++) {
        R *Si = S + (size_t)i * V;
        for (int j = 0; j < V; j++) {
            Si[j] *= a;
            tmp[j] += Si[j] * k[i]; /* S^T k */
        }
    }
    for (int j = 0; j < V; j++) tmp[j] = beta * (v[j] - tmp[j]); /* u */
    if (o)
        for (int j = 0; j < V; j++) o[j] = 0;
    for (int i = 0; i < K; i++) {
        R *Si = S + (size_t)i * V;
        for (int j = 0; j < V; j++) Si[j] += k[i] * tmp[j];
        if (o)
            for (int j = 0; j < V; j++) o[j] += Si[j] * q[i];
    }
}

void F(gdn_fwd)(R *out, R *s_final, const R *q, const R *k, const R *v, const R *g, const R *beta,
                const R *s0, const int32_t *cu_seqlens, int ndocs, int T, int Hk, int Hv, int K, int V) {
    assert(Hk > 0 && Hv % Hk == 0);
    F(max_doclen)(cu_seqlens, ndocs, T);
    int grp = Hv / Hk;
    size_t KV = (size_t)K * V;
    R *S = F(xmalloc)(KV * sizeof(R)), *tmp = F(xmalloc)((size_t)V * sizeof(R));
    for (int d = 0; d < ndocs; d++)
        for (int h = 0; h < Hv; h++) {
            int hk = h / grp;
            size_t si = ((size_t)d * Hv + h) * KV;
            if (s0) memcpy(S, s0 + si, KV * sizeof(R));
            else memset(S, 0, KV * sizeof(R));
            for (int t = cu_seqlens[d]; t < cu_seqlens[d + 1]; t++) {
                size_t ti = (size_t)t * Hv + h, ki = ((size_t)t * Hk + hk) * K;
                F(gdn_step)(S, out + ti * V, tmp, q + ki, k + ki, v + ti * V, g[ti], beta[ti], K, V);
            }
            if (s_final) memcpy(s_final + si, S, KV * sizeof(R));
        }
    free(tmp);
    free(S);
}

/* Backpropagation through time, per document and value head.  Step t maps
 * S_{t-1} to A = a S_{t-1} (a = exp g_t), u = beta (v - A^T k), S_t = A + k u^T,
 * o_t = S_t^T q.  Going backwards with dS = dL/dS_t:
 *   dq += S_t do;  dS += q do^T
 *   du = dS^T k;  dk += dS u;  dbeta += du.(v - A^T k);  dv += beta du
 *   dkv = -beta du:  dA = dS + k dkv^T;  dk += A dkv
 *   dg += sum(dA .* A);  dS_{t-1} = a dA
 * The forward states at every OH_CPU_GDN_CHUNK-th token are checkpointed and
 * the states inside a chunk recomputed from them. */
void F(gdn_bwd)(R *dq, R *dk, R *dv, R *dg, R *dbeta, R *ds0, const R *dout, const R *ds_final, const R *q,
                const R *k, const R *v, const R *g, const R *beta, const R *s0, const int32_t *cu_seqlens,
                int ndocs, int T, int Hk, int Hv, int K, int V) {
    assert(Hk > 0 && Hv % Hk == 0);
    const int CH = OH_CPU_GDN_CHUNK;
    int maxL = F(max_doclen)(cu_seqlens, ndocs, T), grp = Hv / Hk;
    int nck = (maxL + CH - 1) / CH;
    size_t KV = (size_t)K * V;
    R *ckpt = F(xmalloc)((size_t)nck * KV * sizeof(R));      /* state before each chunk */
    R *St = F(xmalloc)((size_t)(CH + 1) * KV * sizeof(R));   /* states inside one chunk */
    R *dS = F(xmalloc)(KV * sizeof(R));
    R *u = F(xmalloc)((size_t)4 * V * sizeof(R)), *kv = u + V, *du = u + 2 * V, *tmp = u + 3 * V;
    double *dqa = F(xmalloc)((size_t)2 * K * sizeof(double)), *dka = dqa + K;
    for (int d = 0; d < ndocs; d++) {
        int t0 = cu_seqlens[d], t1 = cu_seqlens[d + 1], L = t1 - t0;
        int nc = (L + CH - 1) / CH;
        for (int h = 0; h < Hv; h++) {
            int hk = h / grp;
            size_t si = ((size_t)d * Hv + h) * KV;
            /* forward pass: checkpoints */
            R *S = St;
            if (s0) memcpy(S, s0 + si, KV * sizeof(R));
            else memset(S, 0, KV * sizeof(R));
            for (int c = 0; c < nc; c++) {
                memcpy(ckpt + (size_t)c * KV, S, KV * sizeof(R));
                int ca = t0 + c * CH, cb = ca + CH < t1 ? ca + CH : t1;
                for (int t = ca; t < cb; t++) {
                    size_t ti = (size_t)t * Hv + h, ki = ((size_t)t * Hk + hk) * K;
                    F(gdn_step)(S, NULL, tmp, q + ki, k + ki, v + ti * V, g[ti], beta[ti], K, V);
                }
            }
            /* backward pass, chunk by chunk from the end */
            if (ds_final) memcpy(dS, ds_final + si, KV * sizeof(R));
            else memset(dS, 0, KV * sizeof(R));
            for (int c = nc - 1; c >= 0; c--) {
                int ca = t0 + c * CH, cb = ca + CH < t1 ? ca + CH : t1;
                /* St[i] = state before token ca + i; St[cb - ca] = state after the chunk */
                memcpy(St, ckpt + (size_t)c * KV, KV * sizeof(R));
                for (int t = ca; t < cb; t++) {
                    size_t ti = (size_t)t * Hv + h, ki = ((size_t)t * Hk + hk) * K;
                    R *Sn = St + (size_t)(t - ca + 1) * KV;
                    memcpy(Sn, Sn - KV, KV * sizeof(R));
                    F(gdn_step)(Sn, NULL, tmp, q + ki, k + ki, v + ti * V, g[ti], beta[ti], K, V);
                }
                for (int t = cb - 1; t >= ca; t--) {
                    size_t ti = (size_t)t * Hv + h, ki = ((size_t)t * Hk + hk) * K;
                    const R *Sp = St + (size_t)(t - ca) * KV, *Sc = Sp + KV; /* S_{t-1}, S_t */
                    const R *qt = q + ki, *kt = k + ki, *vt = v + ti * V, *dot_ = dout + ti * V;
                    R a = (R)exp((double)g[ti]), bt = beta[ti];
                    /* output: dq += S_t do; dS += q do^T.  Also kv = A^T k and du = dS^T k */
                    for (int j = 0; j < V; j++) kv[j] = du[j] = 0;
                    for (int i = 0; i < K; i++) {
                        const R *Sci = Sc + (size_t)i * V, *Spi = Sp + (size_t)i * V;
                        R *dSi = dS + (size_t)i * V;
                        double sq = 0.0;
                        for (int j = 0; j < V; j++) {
                            sq += (double)Sci[j] * dot_[j];
                            dSi[j] += qt[i] * dot_[j];
                            kv[j] += Spi[j] * kt[i];
                            du[j] += dSi[j] * kt[i];
                        }
                        dqa[i] = sq;
                    }
                    double dbt = 0.0;
                    for (int j = 0; j < V; j++) {
                        kv[j] *= a;                       /* A^T k = a S_{t-1}^T k */
                        R vm = vt[j] - kv[j];
                        u[j] = bt * vm;
                        dbt += (double)du[j] * vm;
                        if (dv) dv[ti * V + j] += bt * du[j];
                        tmp[j] = -bt * du[j];            /* dkv */
                    }
                    if (dbeta) dbeta[ti] += (R)dbt;
                    /* dk += dS u + A dkv;  dA = dS + k dkv^T;  dg += sum(dA .* A);  dS = a dA */
                    double dga = 0.0;
                    for (int i = 0; i < K; i++) {
                        const R *Spi = Sp + (size_t)i * V;
                        R *dSi = dS + (size_t)i * V;
                        double sk = 0.0, sg = 0.0;
                        for (int j = 0; j < V; j++) {
                            sk += (double)dSi[j] * u[j] + (double)a * Spi[j] * tmp[j];
                            dSi[j] += kt[i] * tmp[j];
                            sg += (double)dSi[j] * Spi[j];
                            dSi[j] *= a;
                        }
                        dka[i] = sk;
                        dga += sg;
                    }
                    if (dg) dg[ti] += (R)(dga * a);
                    if (dq)
                        for (int i = 0; i < K; i++) dq[ki + i] += (R)dqa[i];
                    if (dk)
                        for (int i = 0; i < K; i++) dk[ki + i] += (R)dka[i];
                }
            }
            if (ds0)
                for (size_t i = 0; i < KV; i++) ds0[si + i] += dS[i];
        }
    }
    free(dqa);
    free(u);
    free(dS);
    free(St);
    free(ckpt);
}

/* ---- SwiGLU ---- */

void F(swiglu_fwd)(R *out, const R *gate, const R *up, size_t N) {
    for (size_t i = 0; i < N; i++) out[i] = (R)F(silu)(gate[i]) * up[i];
}

void F(swiglu_bwd)(R *dgate, R *dup, const R *dout, const R *gate, const R *up, size_t N) {
    for (size_t i = 0; i < N; i++) {
        double gi = gate[i];
        if (dgate) dgate[i] += (R)((double)dout[i] * up[i] * F(dsilu)(gi));
        if (dup) dup[i] += (R)((double)dout[i] * F(silu)(gi));
    }
}

/* ---- cross-entropy ---- */

static double F(logsumexp)(const R *x, int V) {
    double m = -INFINITY, s = 0.0;
    for (int i = 0; i < V; i++)
        if (x[i] > m) m = x[i];
    for (int i = 0; i < V; i++) s += exp((double)x[i] - m);
    return m + log(s);
}

void F(cross_entropy_fwd)(R *loss, const R *logits, const int32_t *target, int T, int V) {
    for (int t = 0; t < T; t++) {
        if (target[t] < 0) {
            loss[t] = 0;
            continue;
        }
        assert(target[t] < V);
        const R *x = logits + (size_t)t * V;
        loss[t] = (R)(F(logsumexp)(x, V) - x[target[t]]);
    }
}

void F(cross_entropy_bwd)(R *dlogits, const R *weight, const R *logits, const int32_t *target, int T, int V) {
    if (!dlogits) return;
    for (int t = 0; t < T; t++) {
        if (target[t] < 0) continue;
        assert(target[t] < V);
        const R *x = logits + (size_t)t * V;
        R *d = dlogits + (size_t)t * V;
        double lse = F(logsumexp)(x, V), w = weight[t];
        for (int i = 0; i < V; i++) d[i] += (R)(w * exp((double)x[i] - lse));
        d[target[t]] -= (R)w;
    }
}

#undef OH_CPU_GEMM
#undef R
#undef F
