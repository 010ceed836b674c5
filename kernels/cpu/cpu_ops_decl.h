/* Declarations of the CPU ops for one real type; included by cpu_ops.h with
 * OH_CPU_R (the type) and OH_CPU_F(name) (the name mangler) defined.
 * No include guard on purpose. */
#define R OH_CPU_R
#define F OH_CPU_F

/* ---- elementwise ---- */
/* out[n] = a[n] + b[n] (out may alias a or b) */
void F(add)(R *out, const R *a, const R *b, size_t n);
/* y[n] += x[n] (gradient routing helper) */
void F(acc)(R *y, const R *x, size_t n);

/* ---- linear: out[T,O] = in[T,I] @ W[O,I]^T (overwrites out) ---- */
void F(linear_fwd)(R *out, const R *in, const R *W, int T, int I, int O);
/* din[T,I] += dout @ W ; dW[O,I] += dout^T @ in */
void F(linear_bwd)(R *din, R *dW, const R *dout, const R *in, const R *W, int T, int I, int O);

/* ---- embedding: out[t,:] = E[ids[t], :] ---- */
void F(embedding_fwd)(R *out, const int32_t *ids, const R *E, int T, int C);
/* dE[ids[t], :] += dout[t, :], except rows equal to pad_id (transformers'
 * nn.Embedding padding_idx gets no gradient); pad_id < 0: no exception. */
void F(embedding_bwd)(R *dE, const R *dout, const int32_t *ids, int T, int C, int pad_id);

/* ---- RMSNorm over the last dim C: out = w * x * rstd, rstd = 1/sqrt(mean(x^2)+eps) ----
 * rstd[N] is saved for the backward (may be NULL in the forward). */
void F(rmsnorm_fwd)(R *out, R *rstd, const R *x, const R *w, int N, int C, double eps);
void F(rmsnorm_bwd)(R *dx, R *dw, const R *dout, const R *x, const R *w, const R *rstd, int N, int C);

/* ---- gated RMSNorm (GDN output norm), rows of V channels:
 *      out = w * (x * rstd) * silu(gate) ---- */
void F(gated_rmsnorm_fwd)(R *out, R *rstd, const R *x, const R *gate, const R *w, int N, int V, double eps);
void F(gated_rmsnorm_bwd)(R *dx, R *dgate, R *dw, const R *dout, const R *x, const R *gate, const R *w,
                          const R *rstd, int N, int V);

/* ---- RoPE (rotate-half) in place on x[T, H, D], angle pos[t] * theta^(-2i/D),
 *      angles computed in fp32 as transformers does (also in the f64 build,
 *      the cos/sin are rounded through float) ---- */
void F(rope_fwd)(R *x, const int32_t *pos, int T, int H, int D, double theta);
/* dx (in place): applies the transpose rotation to the gradient. */
void F(rope_bwd)(R *dx, const int32_t *pos, int T, int H, int D, double theta);

/* ---- causal softmax attention with GQA over packed documents ----
 * q[T,Hq,D], k[T,Hkv,D], v[T,Hkv,D] -> out[T,Hq,D]; query head h uses kv head
 * h / (Hq/Hkv); token t attends to tokens s of its own document with s <= t.
 * lse[T,Hq] (natural-log log-sum-exp of the scaled scores) is saved. */
void F(attention_fwd)(R *out, R *lse, const R *q, const R *k, const R *v, const int32_t *cu_seqlens,
                      int ndocs, int T, int Hq, int Hkv, int D, double scale);
void F(attention_bwd)(R *dq, R *dk, R *dv, const R *dout, const R *out, const R *lse, const R *q, const R *k,
                      const R *v, const int32_t *cu_seqlens, int ndocs, int T, int Hq, int Hkv, int D,
                      double scale);

/* ---- depthwise causal conv1d (kernel K, left zero padding K-1, no bias),
 *      then SiLU; the window restarts at each document ----
 * x[T,C], w[C,K] (tap K-1 multiplies the current token) -> out[T,C]. */
void F(conv1d_silu_fwd)(R *out, const R *x, const R *w, const int32_t *cu_seqlens, int ndocs, int T, int C,
                        int K);
void F(conv1d_silu_bwd)(R *dx, R *dw, const R *dout, const R *x, const R *w, const int32_t *cu_seqlens,
                        int ndocs, int T, int C, int K);

/* ---- GDN gates, per token and value head:
 *      beta = sigmoid(b) * (neg_eigval ? 2 : 1)
 *      g    = -exp(A_log[h]) * softplus(a + dt_bias[h])   (softplus as torch: x > 20 -> x) ---- */
void F(gdn_gates_fwd)(R *beta, R *g, const R *b, const R *a, const R *A_log, const R *dt_bias, int T, int H,
                      int neg_eigval);
void F(gdn_gates_bwd)(R *db, R *da, R *dA_log, R *ddt_bias, const R *dbeta, const R *dg, const R *b,
                      const R *a, const R *A_log, const R *dt_bias, int T, int H, int neg_eigval);

/* ---- l2norm over rows of D: out = x * rsqrt(sum(x^2) + eps) * scale ----
 * rnorm[N] = rsqrt(sum(x^2) + eps) is saved (may be NULL in the forward). */
void F(l2norm_fwd)(R *out, R *rnorm, const R *x, int N, int D, double eps, double scale);
void F(l2norm_bwd)(R *dx, const R *dout, const R *x, const R *rnorm, int N, int D, double scale);

/* ---- gated delta rule, sequential recurrence (exact), state fp32/f64 ----
 * q[T,Hk,K], k[T,Hk,K] (already l2-normalised and scaled), v[T,Hv,V],
 * g[T,Hv] (log decay, <= 0), beta[T,Hv]; value head h uses key head
 * h / (Hv/Hk).  Per document and head, S[K,V] starts at s0 (or 0) and
 *     S = exp(g_t) S;  u = beta_t (v_t - S^T k_t);  S += k_t u^T;  o_t = S^T q_t
 * out[T,Hv,V].  s0 / s_final: [ndocs, Hv, K, V] or NULL.
 * The backward is backpropagation through time; it recomputes states from
 * checkpoints so its memory is O(chunk * Hv * K * V), not O(T * ...). */
void F(gdn_fwd)(R *out, R *s_final, const R *q, const R *k, const R *v, const R *g, const R *beta,
                const R *s0, const int32_t *cu_seqlens, int ndocs, int T, int Hk, int Hv, int K, int V);
void F(gdn_bwd)(R *dq, R *dk, R *dv, R *dg, R *dbeta, R *ds0, const R *dout, const R *ds_final, const R *q,
                const R *k, const R *v, const R *g, const R *beta, const R *s0, const int32_t *cu_seqlens,
                int ndocs, int T, int Hk, int Hv, int K, int V);

/* ---- SwiGLU: out = silu(gate) * up, all [N] ---- */
void F(swiglu_fwd)(R *out, const R *gate, const R *up, size_t N);
void F(swiglu_bwd)(R *dgate, R *dup, const R *dout, const R *gate, const R *up, size_t N);

/* ---- softmax cross-entropy over rows of V logits ----
 * loss[t] = logsumexp(logits[t]) - logits[t, target[t]] for target >= 0;
 * target < 0 means "not trained": loss[t] = 0.
 * Backward: dlogits[t] += weight[t] * (softmax(logits[t]) - onehot(target[t]))
 * for trained rows (weight[t] is dL/dloss[t]). */
void F(cross_entropy_fwd)(R *loss, const R *logits, const int32_t *target, int T, int V);
void F(cross_entropy_bwd)(R *dlogits, const R *weight, const R *logits, const int32_t *target, int T, int V);

#undef R
#undef F
