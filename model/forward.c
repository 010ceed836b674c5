/* The Olmo Hybrid forward and backward passes on the CPU reference backend,
 * as a sequence of op calls (kernels/cpu). Every intermediate the backward
 * needs is kept in oh_acts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
#include "lora/lora.h"
#include "model/model.h"

typedef struct layer_acts {
    float *x;        /* [T,C] layer input (residual stream) */
    float *h;        /* [T,C] after the mixer's residual add */
    /* GDN */
    float *xn, *rstd_in;              /* input norm */
    float *qp, *kp, *vp;              /* projections before conv [T,Kd] [T,Kd] [T,Vd] */
    float *qc, *kc, *vc;              /* after conv + silu */
    float *qn, *kn, *rq, *rk;         /* l2-normalised (q scaled) [T,Kd], rnorm [T*Hk] */
    float *braw, *araw, *beta, *g;    /* [T,Hv] */
    float *o, *gate, *on, *rstd_o;    /* gdn out [T,Vd], gate [T,Vd], normed [T,Vd], [T*Hv] */
    /* attention */
    float *aq, *ak, *av;              /* projections [T,Dq] [T,Dkv] [T,Dkv] */
    float *aqn, *akn, *rstd_q, *rstd_k; /* after q/k norm (and RoPE, in place) */
    float *ao, *lse;                  /* attention out [T,Dq], lse [T,Hq] */
    float *ay, *ayn, *rstd_ay;        /* o_proj out, post-attention norm */
    /* MLP (both kinds) */
    float *mx, *rstd_m;               /* MLP input: normed h (GDN) or h itself (attention: points at h) */
    float *mg, *mu, *mm, *md;         /* gate, up, silu(gate)*up, down */
    float *mdn, *rstd_md;             /* attention: post-feedforward norm of md */
    /* LoRA, per adapted slot: h = xd A^T [T,r]; xd and the dropout mask when dropout is on */
    float *lh[SLOT_COUNT], *lx[SLOT_COUNT], *lmask[SLOT_COUNT];
} layer_acts;

struct oh_acts {
    int T, L;
    layer_acts *la;
    float *xL;       /* [T,C] final residual stream */
    float *xf;       /* [T,C] after the final norm */
    float *rstd_f;
    float *arena;    /* one allocation for everything */
};

void oh_acts_free(oh_acts *a) {
    if (!a) return;
    for (int l = 0; l < a->L; l++)
        for (int s = 0; s < SLOT_COUNT; s++) { free(a->la[l].lh[s]); free(a->la[l].lx[s]); free(a->la[l].lmask[s]); }
    free(a->la);
    free(a->arena);
    free(a);
}

/* Sizes of a layer's activations, in floats, laid out in one arena. */
typedef struct { float **dst; size_t n; } slot_t;

static size_t layout_acts(const oh_model *m, oh_acts *a, int T, float *base) {
    const oh_config *c = &m->cfg;
    size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    size_t Kd = (size_t)oh_cfg_key_dim(c), Vd = (size_t)oh_cfg_value_dim(c), Hk = (size_t)c->linear_num_key_heads;
    size_t Hv = (size_t)c->linear_num_value_heads, Dq = (size_t)oh_cfg_q_dim(c), Dkv = (size_t)oh_cfg_kv_dim(c);
    size_t Hq = (size_t)c->num_attention_heads, t = (size_t)T, off = 0;
#define PUT(ptr, count) do { if (base) (ptr) = base + off; off += ((count) + 15) & ~(size_t)15; } while (0)
    for (int l = 0; l < c->num_hidden_layers; l++) {
        layer_acts *A = &a->la[l];
        PUT(A->x, t * C);
        PUT(A->h, t * C);
        if (!c->is_attn[l]) {
            PUT(A->xn, t * C); PUT(A->rstd_in, t);
            PUT(A->qp, t * Kd); PUT(A->kp, t * Kd); PUT(A->vp, t * Vd);
            PUT(A->qc, t * Kd); PUT(A->kc, t * Kd); PUT(A->vc, t * Vd);
            PUT(A->qn, t * Kd); PUT(A->kn, t * Kd); PUT(A->rq, t * Hk); PUT(A->rk, t * Hk);
            PUT(A->braw, t * Hv); PUT(A->araw, t * Hv); PUT(A->beta, t * Hv); PUT(A->g, t * Hv);
            PUT(A->o, t * Vd); PUT(A->gate, t * Vd); PUT(A->on, t * Vd); PUT(A->rstd_o, t * Hv);
            PUT(A->mx, t * C); PUT(A->rstd_m, t);
        } else {
            PUT(A->aq, t * Dq); PUT(A->ak, t * Dkv); PUT(A->av, t * Dkv);
            PUT(A->aqn, t * Dq); PUT(A->akn, t * Dkv); PUT(A->rstd_q, t); PUT(A->rstd_k, t);
            PUT(A->ao, t * Dq); PUT(A->lse, t * Hq);
            PUT(A->ay, t * C); PUT(A->ayn, t * C); PUT(A->rstd_ay, t);
            PUT(A->mdn, t * C); PUT(A->rstd_md, t);
            if (base) A->mx = A->h;
        }
        PUT(A->mg, t * F); PUT(A->mu, t * F); PUT(A->mm, t * F); PUT(A->md, t * C);
    }
    PUT(a->xL, t * C);
    PUT(a->xf, t * C);
    PUT(a->rstd_f, t);
#undef PUT
    return off;
}

static oh_acts *acts_alloc(const oh_model *m, int T) {
    oh_acts *a = oh_calloc(1, sizeof *a);
    a->T = T;
    a->L = m->cfg.num_hidden_layers;
    a->la = oh_calloc((size_t)a->L, sizeof(layer_acts));
    size_t n = layout_acts(m, a, T, NULL);
    a->arena = oh_malloc(sizeof(float) * n);
    layout_acts(m, a, T, a->arena);
    return a;
}


/* out[T,O] = x W^T (+ s * B A xd with a LoRA adapter on this slot) */
static void lin_fwd(const oh_model *m, layer_acts *A, int l, oh_slot s, float *out, const float *x, int T, int I, int O) {
    cpu_linear_fwd_f32(out, x, oh_lw(m, l, s), T, I, O);
    const oh_lora *lo = m->lora;
    int ai = lo ? lo->map[l][s] : -1;
    if (ai < 0) return;
    const oh_lora_adapter *ad = &lo->ad[ai];
    int r = lo->cfg.rank;
    size_t TI = (size_t)T * I;
    const float *xd = x;
    if (lo->cfg.dropout > 0 && m->dropout_rng) {
        float keep = (float)(1.0 / (1.0 - lo->cfg.dropout));
        float *mask = oh_malloc(sizeof(float) * TI), *xx = oh_malloc(sizeof(float) * TI);
        for (size_t i = 0; i < TI; i++) {
            mask[i] = oh_rng_uniform(m->dropout_rng) < lo->cfg.dropout ? 0.0f : keep;
            xx[i] = x[i] * mask[i];
        }
        free(A->lmask[s]); free(A->lx[s]);
        A->lmask[s] = mask;
        A->lx[s] = xx;
        xd = xx;
    }
    float *h = oh_malloc(sizeof(float) * (size_t)T * r), *tmp = oh_malloc(sizeof(float) * (size_t)T * O);
    cpu_linear_fwd_f32(h, xd, lo->w + ad->a_off, T, I, r);
    cpu_linear_fwd_f32(tmp, h, lo->w + ad->b_off, T, r, O);
    float sc = (float)lo->scale;
    for (size_t i = 0; i < (size_t)T * O; i++) out[i] += sc * tmp[i];
    free(tmp);
    free(A->lh[s]);
    A->lh[s] = h;
}

/* x -> out for one GDN layer */
static void gdn_layer_fwd(const oh_model *m, int l, const oh_batch *b, layer_acts *A, float *out) {
    const oh_config *c = &m->cfg;
    int T = b->T, C = c->hidden_size, F = c->intermediate_size, Kd = oh_cfg_key_dim(c), Vd = oh_cfg_value_dim(c);
    int Hk = c->linear_num_key_heads, Hv = c->linear_num_value_heads, K = c->linear_key_head_dim;
    int V = c->linear_value_head_dim, KC = c->linear_conv_kernel_dim;
    cpu_rmsnorm_fwd_f32(A->xn, A->rstd_in, A->x, oh_lw(m, l, SLOT_IN_NORM), T, C, c->rms_norm_eps);
    lin_fwd(m, A, l, SLOT_Q, A->qp, A->xn, T, C, Kd);
    lin_fwd(m, A, l, SLOT_K, A->kp, A->xn, T, C, Kd);
    lin_fwd(m, A, l, SLOT_V, A->vp, A->xn, T, C, Vd);
    cpu_conv1d_silu_fwd_f32(A->qc, A->qp, oh_lw(m, l, SLOT_QCONV), b->cu_seqlens, b->ndocs, T, Kd, KC);
    cpu_conv1d_silu_fwd_f32(A->kc, A->kp, oh_lw(m, l, SLOT_KCONV), b->cu_seqlens, b->ndocs, T, Kd, KC);
    cpu_conv1d_silu_fwd_f32(A->vc, A->vp, oh_lw(m, l, SLOT_VCONV), b->cu_seqlens, b->ndocs, T, Vd, KC);
    cpu_l2norm_fwd_f32(A->qn, A->rq, A->qc, T * Hk, K, 1e-6, 1.0 / sqrt((double)K));
    cpu_l2norm_fwd_f32(A->kn, A->rk, A->kc, T * Hk, K, 1e-6, 1.0);
    lin_fwd(m, A, l, SLOT_B, A->braw, A->xn, T, C, Hv);
    lin_fwd(m, A, l, SLOT_A, A->araw, A->xn, T, C, Hv);
    cpu_gdn_gates_fwd_f32(A->beta, A->g, A->braw, A->araw, oh_lw(m, l, SLOT_A_LOG), oh_lw(m, l, SLOT_DT_BIAS), T, Hv,
                          c->linear_allow_neg_eigval);
    cpu_gdn_fwd_f32(A->o, NULL, A->qn, A->kn, A->vc, A->g, A->beta, NULL, b->cu_seqlens, b->ndocs, T, Hk, Hv, K, V);
    lin_fwd(m, A, l, SLOT_G, A->gate, A->xn, T, C, Vd);
    cpu_gated_rmsnorm_fwd_f32(A->on, A->rstd_o, A->o, A->gate, oh_lw(m, l, SLOT_O_NORM), T * Hv, V, 1e-5);
    float *y = out; /* o_proj output, then the residual add in place */
    lin_fwd(m, A, l, SLOT_O, y, A->on, T, Vd, C);
    cpu_add_f32(A->h, A->x, y, (size_t)T * C);
    cpu_rmsnorm_fwd_f32(A->mx, A->rstd_m, A->h, oh_lw(m, l, SLOT_POST_ATTN_NORM), T, C, c->rms_norm_eps);
    lin_fwd(m, A, l, SLOT_MLP_GATE, A->mg, A->mx, T, C, F);
    lin_fwd(m, A, l, SLOT_MLP_UP, A->mu, A->mx, T, C, F);
    cpu_swiglu_fwd_f32(A->mm, A->mg, A->mu, (size_t)T * F);
    lin_fwd(m, A, l, SLOT_MLP_DOWN, A->md, A->mm, T, F, C);
    cpu_add_f32(out, A->h, A->md, (size_t)T * C);
}

static void attn_layer_fwd(const oh_model *m, int l, const oh_batch *b, layer_acts *A, float *out) {
    const oh_config *c = &m->cfg;
    int T = b->T, C = c->hidden_size, F = c->intermediate_size, Dq = oh_cfg_q_dim(c), Dkv = oh_cfg_kv_dim(c);
    int Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, D = c->head_dim;
    lin_fwd(m, A, l, SLOT_Q, A->aq, A->x, T, C, Dq);
    lin_fwd(m, A, l, SLOT_K, A->ak, A->x, T, C, Dkv);
    lin_fwd(m, A, l, SLOT_V, A->av, A->x, T, C, Dkv);
    cpu_rmsnorm_fwd_f32(A->aqn, A->rstd_q, A->aq, oh_lw(m, l, SLOT_Q_NORM), T, Dq, c->rms_norm_eps);
    cpu_rmsnorm_fwd_f32(A->akn, A->rstd_k, A->ak, oh_lw(m, l, SLOT_K_NORM), T, Dkv, c->rms_norm_eps);
    if (c->use_rope) {
        cpu_rope_fwd_f32(A->aqn, b->pos, T, Hq, D, c->rope_theta);
        cpu_rope_fwd_f32(A->akn, b->pos, T, Hkv, D, c->rope_theta);
    }
    cpu_attention_fwd_f32(A->ao, A->lse, A->aqn, A->akn, A->av, b->cu_seqlens, b->ndocs, T, Hq, Hkv, D,
                          1.0 / sqrt((double)D));
    lin_fwd(m, A, l, SLOT_O, A->ay, A->ao, T, Dq, C);
    cpu_rmsnorm_fwd_f32(A->ayn, A->rstd_ay, A->ay, oh_lw(m, l, SLOT_POST_ATTN_NORM), T, C, c->rms_norm_eps);
    cpu_add_f32(A->h, A->x, A->ayn, (size_t)T * C);
    lin_fwd(m, A, l, SLOT_MLP_GATE, A->mg, A->h, T, C, F);
    lin_fwd(m, A, l, SLOT_MLP_UP, A->mu, A->h, T, C, F);
    cpu_swiglu_fwd_f32(A->mm, A->mg, A->mu, (size_t)T * F);
    lin_fwd(m, A, l, SLOT_MLP_DOWN, A->md, A->mm, T, F, C);
    cpu_rmsnorm_fwd_f32(A->mdn, A->rstd_md, A->md, oh_lw(m, l, SLOT_POST_FF_NORM), T, C, c->rms_norm_eps);
    cpu_add_f32(out, A->h, A->mdn, (size_t)T * C);
}

int oh_forward(const oh_model *m, const oh_batch *b, oh_fwd_out *out, oh_acts **acts_out, oh_err *err) {
    const oh_config *c = &m->cfg;
    memset(out, 0, sizeof *out);
    if (b->T <= 0) return oh_errf(err, "empty batch");
    if (oh_batch_check(b, c->vocab_size, err)) return -1;
    int T = b->T, C = c->hidden_size, Vv = c->vocab_size;
    oh_acts *a = acts_alloc(m, T);
    cpu_embedding_fwd_f32(a->la[0].x, b->ids, oh_param_ptr(m, m->w, m->embed), T, C);
    for (int l = 0; l < c->num_hidden_layers; l++) {
        float *next = l + 1 < c->num_hidden_layers ? a->la[l + 1].x : a->xL;
        if (c->is_attn[l]) attn_layer_fwd(m, l, b, &a->la[l], next);
        else gdn_layer_fwd(m, l, b, &a->la[l], next);
    }
    cpu_rmsnorm_fwd_f32(a->xf, a->rstd_f, a->xL, oh_param_ptr(m, m->w, m->final_norm), T, C, c->rms_norm_eps);
    out->logits = oh_malloc(sizeof(float) * (size_t)T * (size_t)Vv);
    out->loss = oh_malloc(sizeof(float) * (size_t)T);
    cpu_linear_fwd_f32(out->logits, a->xf, oh_param_ptr(m, m->w, m->lm_head), T, C, Vv);
    cpu_cross_entropy_fwd_f32(out->loss, out->logits, b->targets, T, Vv);
    if (acts_out) *acts_out = a;
    else oh_acts_free(a);
    return 0;
}

void oh_fwd_free(oh_fwd_out *o) {
    free(o->logits);
    free(o->loss);
    memset(o, 0, sizeof *o);
}

/* ---------------- backward ---------------- */

#define Z(n) ((float *)oh_calloc((size_t)(n), sizeof(float)))


static float *gptr(const oh_model *m, float *grads, int l, oh_slot s) {
    return grads ? grads + m->params[m->slot[l][s]].offset : NULL;
}

/* backward of lin_fwd: dx += dout W (+ the adapter path); dW, dA, dB accumulate */
static void lin_bwd(const oh_model *m, const layer_acts *A, int l, oh_slot s, float *dx, float *G, const float *dout,
                    const float *x, int T, int I, int O) {
    cpu_linear_bwd_f32(dx, gptr(m, G, l, s), dout, x, oh_lw(m, l, s), T, I, O);
    const oh_lora *lo = m->lora;
    int ai = lo ? lo->map[l][s] : -1;
    if (ai < 0) return;
    const oh_lora_adapter *ad = &lo->ad[ai];
    int r = lo->cfg.rank;
    float *ds = Z((size_t)T * O), *dh = Z((size_t)T * r);
    float sc = (float)lo->scale;
    for (size_t i = 0; i < (size_t)T * O; i++) ds[i] = sc * dout[i];
    cpu_linear_bwd_f32(dh, lo->g ? lo->g + ad->b_off : NULL, ds, A->lh[s], lo->w + ad->b_off, T, r, O);
    if (A->lmask[s]) {
        size_t TI = (size_t)T * I;
        float *dxd = Z(TI);
        cpu_linear_bwd_f32(dxd, lo->g ? lo->g + ad->a_off : NULL, dh, A->lx[s], lo->w + ad->a_off, T, I, r);
        for (size_t i = 0; i < TI; i++) dx[i] += dxd[i] * A->lmask[s][i];
        free(dxd);
    } else {
        cpu_linear_bwd_f32(dx, lo->g ? lo->g + ad->a_off : NULL, dh, x, lo->w + ad->a_off, T, I, r);
    }
    free(ds); free(dh);
}

/* dout: gradient wrt the layer output; dx (zeroed by caller) receives the
 * gradient wrt the layer input. */
static void gdn_layer_bwd(const oh_model *m, int l, const oh_batch *b, const layer_acts *A, const float *dout, float *dx,
                          float *G) {
    const oh_config *c = &m->cfg;
    int T = b->T, C = c->hidden_size, F = c->intermediate_size, Kd = oh_cfg_key_dim(c), Vd = oh_cfg_value_dim(c);
    int Hk = c->linear_num_key_heads, Hv = c->linear_num_value_heads, K = c->linear_key_head_dim;
    int V = c->linear_value_head_dim, KC = c->linear_conv_kernel_dim;
    size_t TC = (size_t)T * C;
    /* MLP branch: out = h + down(swiglu(gate(mx), up(mx))), mx = norm(h) */
    float *dh = Z(TC), *dmm = Z((size_t)T * F), *dmg = Z((size_t)T * F), *dmu = Z((size_t)T * F), *dmx = Z(TC);
    cpu_acc_f32(dh, dout, TC);
    lin_bwd(m, A, l, SLOT_MLP_DOWN, dmm, G, dout, A->mm, T, F, C);
    cpu_swiglu_bwd_f32(dmg, dmu, dmm, A->mg, A->mu, (size_t)T * F);
    lin_bwd(m, A, l, SLOT_MLP_GATE, dmx, G, dmg, A->mx, T, C, F);
    lin_bwd(m, A, l, SLOT_MLP_UP, dmx, G, dmu, A->mx, T, C, F);
    cpu_rmsnorm_bwd_f32(dh, gptr(m, G, l, SLOT_POST_ATTN_NORM), dmx, A->h, oh_lw(m, l, SLOT_POST_ATTN_NORM),
                        A->rstd_m, T, C);
    free(dmm); free(dmg); free(dmu); free(dmx);
    /* mixer branch: h = x + o_proj(gnorm(gdn(...), gate(xn))) */
    cpu_acc_f32(dx, dh, TC);
    float *don = Z((size_t)T * Vd), *dO = Z((size_t)T * Vd), *dgate = Z((size_t)T * Vd), *dxn = Z(TC);
    lin_bwd(m, A, l, SLOT_O, don, G, dh, A->on, T, Vd, C);
    cpu_gated_rmsnorm_bwd_f32(dO, dgate, gptr(m, G, l, SLOT_O_NORM), don, A->o, A->gate, oh_lw(m, l, SLOT_O_NORM),
                              A->rstd_o, T * Hv, V);
    lin_bwd(m, A, l, SLOT_G, dxn, G, dgate, A->xn, T, C, Vd);
    float *dqn = Z((size_t)T * Kd), *dkn = Z((size_t)T * Kd), *dvc = Z((size_t)T * Vd);
    float *dg = Z((size_t)T * Hv), *dbeta = Z((size_t)T * Hv), *dbraw = Z((size_t)T * Hv), *daraw = Z((size_t)T * Hv);
    cpu_gdn_bwd_f32(dqn, dkn, dvc, dg, dbeta, NULL, dO, NULL, A->qn, A->kn, A->vc, A->g, A->beta, NULL, b->cu_seqlens,
                    b->ndocs, T, Hk, Hv, K, V);
    cpu_gdn_gates_bwd_f32(dbraw, daraw, gptr(m, G, l, SLOT_A_LOG), gptr(m, G, l, SLOT_DT_BIAS), dbeta, dg, A->braw,
                          A->araw, oh_lw(m, l, SLOT_A_LOG), oh_lw(m, l, SLOT_DT_BIAS), T, Hv, c->linear_allow_neg_eigval);
    lin_bwd(m, A, l, SLOT_B, dxn, G, dbraw, A->xn, T, C, Hv);
    lin_bwd(m, A, l, SLOT_A, dxn, G, daraw, A->xn, T, C, Hv);
    float *dqc = Z((size_t)T * Kd), *dkc = Z((size_t)T * Kd);
    cpu_l2norm_bwd_f32(dqc, dqn, A->qc, A->rq, T * Hk, K, 1.0 / sqrt((double)K));
    cpu_l2norm_bwd_f32(dkc, dkn, A->kc, A->rk, T * Hk, K, 1.0);
    float *dqp = Z((size_t)T * Kd), *dkp = Z((size_t)T * Kd), *dvp = Z((size_t)T * Vd);
    cpu_conv1d_silu_bwd_f32(dqp, gptr(m, G, l, SLOT_QCONV), dqc, A->qp, oh_lw(m, l, SLOT_QCONV), b->cu_seqlens, b->ndocs,
                            T, Kd, KC);
    cpu_conv1d_silu_bwd_f32(dkp, gptr(m, G, l, SLOT_KCONV), dkc, A->kp, oh_lw(m, l, SLOT_KCONV), b->cu_seqlens, b->ndocs,
                            T, Kd, KC);
    cpu_conv1d_silu_bwd_f32(dvp, gptr(m, G, l, SLOT_VCONV), dvc, A->vp, oh_lw(m, l, SLOT_VCONV), b->cu_seqlens, b->ndocs,
                            T, Vd, KC);
    lin_bwd(m, A, l, SLOT_Q, dxn, G, dqp, A->xn, T, C, Kd);
    lin_bwd(m, A, l, SLOT_K, dxn, G, dkp, A->xn, T, C, Kd);
    lin_bwd(m, A, l, SLOT_V, dxn, G, dvp, A->xn, T, C, Vd);
    cpu_rmsnorm_bwd_f32(dx, gptr(m, G, l, SLOT_IN_NORM), dxn, A->x, oh_lw(m, l, SLOT_IN_NORM), A->rstd_in, T, C);
    free(dh); free(don); free(dO); free(dgate); free(dxn); free(dqn); free(dkn); free(dvc); free(dg); free(dbeta);
    free(dbraw); free(daraw); free(dqc); free(dkc); free(dqp); free(dkp); free(dvp);
}

static void attn_layer_bwd(const oh_model *m, int l, const oh_batch *b, const layer_acts *A, const float *dout, float *dx,
                           float *G) {
    const oh_config *c = &m->cfg;
    int T = b->T, C = c->hidden_size, F = c->intermediate_size, Dq = oh_cfg_q_dim(c), Dkv = oh_cfg_kv_dim(c);
    int Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, D = c->head_dim;
    size_t TC = (size_t)T * C;
    /* MLP branch: out = h + norm_ff(down(swiglu(gate(h), up(h)))) */
    float *dh = Z(TC), *dmd = Z(TC), *dmm = Z((size_t)T * F), *dmg = Z((size_t)T * F), *dmu = Z((size_t)T * F);
    cpu_acc_f32(dh, dout, TC);
    cpu_rmsnorm_bwd_f32(dmd, gptr(m, G, l, SLOT_POST_FF_NORM), dout, A->md, oh_lw(m, l, SLOT_POST_FF_NORM), A->rstd_md, T, C);
    lin_bwd(m, A, l, SLOT_MLP_DOWN, dmm, G, dmd, A->mm, T, F, C);
    cpu_swiglu_bwd_f32(dmg, dmu, dmm, A->mg, A->mu, (size_t)T * F);
    lin_bwd(m, A, l, SLOT_MLP_GATE, dh, G, dmg, A->h, T, C, F);
    lin_bwd(m, A, l, SLOT_MLP_UP, dh, G, dmu, A->h, T, C, F);
    free(dmd); free(dmm); free(dmg); free(dmu);
    /* attention branch: h = x + norm_pa(o_proj(attn(rope(qnorm(q(x))), rope(knorm(k(x))), v(x)))) */
    cpu_acc_f32(dx, dh, TC);
    float *day = Z(TC), *dao = Z((size_t)T * Dq), *daqn = Z((size_t)T * Dq), *dakn = Z((size_t)T * Dkv);
    float *dav = Z((size_t)T * Dkv), *daq = Z((size_t)T * Dq), *dak = Z((size_t)T * Dkv);
    cpu_rmsnorm_bwd_f32(day, gptr(m, G, l, SLOT_POST_ATTN_NORM), dh, A->ay, oh_lw(m, l, SLOT_POST_ATTN_NORM), A->rstd_ay, T, C);
    lin_bwd(m, A, l, SLOT_O, dao, G, day, A->ao, T, Dq, C);
    cpu_attention_bwd_f32(daqn, dakn, dav, dao, A->ao, A->lse, A->aqn, A->akn, A->av, b->cu_seqlens, b->ndocs, T, Hq, Hkv,
                          D, 1.0 / sqrt((double)D));
    if (c->use_rope) {
        cpu_rope_bwd_f32(daqn, b->pos, T, Hq, D, c->rope_theta);
        cpu_rope_bwd_f32(dakn, b->pos, T, Hkv, D, c->rope_theta);
    }
    cpu_rmsnorm_bwd_f32(daq, gptr(m, G, l, SLOT_Q_NORM), daqn, A->aq, oh_lw(m, l, SLOT_Q_NORM), A->rstd_q, T, Dq);
    cpu_rmsnorm_bwd_f32(dak, gptr(m, G, l, SLOT_K_NORM), dakn, A->ak, oh_lw(m, l, SLOT_K_NORM), A->rstd_k, T, Dkv);
    lin_bwd(m, A, l, SLOT_Q, dx, G, daq, A->x, T, C, Dq);
    lin_bwd(m, A, l, SLOT_K, dx, G, dak, A->x, T, C, Dkv);
    lin_bwd(m, A, l, SLOT_V, dx, G, dav, A->x, T, C, Dkv);
    free(dh); free(day); free(dao); free(daqn); free(dakn); free(dav); free(daq); free(dak);
}

void oh_backward(const oh_model *m, const oh_batch *b, const oh_fwd_out *fo, oh_acts *a, const float *weight,
                 float *grads) {
    const oh_config *c = &m->cfg;
    int T = b->T, C = c->hidden_size, Vv = c->vocab_size;
    size_t TC = (size_t)T * C;
    float *dlogits = Z((size_t)T * Vv), *dxf = Z(TC), *dcur = Z(TC), *dprev = Z(TC);
    cpu_cross_entropy_bwd_f32(dlogits, weight, fo->logits, b->targets, T, Vv);
    cpu_linear_bwd_f32(dxf, grads ? grads + m->params[m->lm_head].offset : NULL, dlogits, a->xf, oh_param_ptr(m, m->w, m->lm_head), T, C, Vv);
    free(dlogits);
    cpu_rmsnorm_bwd_f32(dcur, grads ? grads + m->params[m->final_norm].offset : NULL, dxf, a->xL, oh_param_ptr(m, m->w, m->final_norm),
                        a->rstd_f, T, C);
    free(dxf);
    for (int l = c->num_hidden_layers - 1; l >= 0; l--) {
        memset(dprev, 0, sizeof(float) * TC);
        if (c->is_attn[l]) attn_layer_bwd(m, l, b, &a->la[l], dcur, dprev, grads);
        else gdn_layer_bwd(m, l, b, &a->la[l], dcur, dprev, grads);
        float *t = dcur; dcur = dprev; dprev = t;
    }
    if (grads) cpu_embedding_bwd_f32(grads + m->params[m->embed].offset, dcur, b->ids, T, C, c->pad_token_id);
    free(dcur); free(dprev);
}
