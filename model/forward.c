/* The Olmo Hybrid forward and backward passes on the CPU reference backend,
 * as a sequence of op calls (kernels/cpu). Every intermediate the backward
 * needs is kept in oh_acts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"
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

/* x -> out for one GDN layer */
static void gdn_layer_fwd(const oh_model *m, int l, const oh_batch *b, layer_acts *A, float *out) {
    const oh_config *c = &m->cfg;
    int T = b->T, C = c->hidden_size, F = c->intermediate_size, Kd = oh_cfg_key_dim(c), Vd = oh_cfg_value_dim(c);
    int Hk = c->linear_num_key_heads, Hv = c->linear_num_value_heads, K = c->linear_key_head_dim;
    int V = c->linear_value_head_dim, KC = c->linear_conv_kernel_dim;
    cpu_rmsnorm_fwd_f32(A->xn, A->rstd_in, A->x, oh_lw(m, l, SLOT_IN_NORM), T, C, c->rms_norm_eps);
    cpu_linear_fwd_f32(A->qp, A->xn, oh_lw(m, l, SLOT_Q), T, C, Kd);
    cpu_linear_fwd_f32(A->kp, A->xn, oh_lw(m, l, SLOT_K), T, C, Kd);
    cpu_linear_fwd_f32(A->vp, A->xn, oh_lw(m, l, SLOT_V), T, C, Vd);
    cpu_conv1d_silu_fwd_f32(A->qc, A->qp, oh_lw(m, l, SLOT_QCONV), b->cu_seqlens, b->ndocs, T, Kd, KC);
    cpu_conv1d_silu_fwd_f32(A->kc, A->kp, oh_lw(m, l, SLOT_KCONV), b->cu_seqlens, b->ndocs, T, Kd, KC);
    cpu_conv1d_silu_fwd_f32(A->vc, A->vp, oh_lw(m, l, SLOT_VCONV), b->cu_seqlens, b->ndocs, T, Vd, KC);
    cpu_l2norm_fwd_f32(A->qn, A->rq, A->qc, T * Hk, K, 1e-6, 1.0 / sqrt((double)K));
    cpu_l2norm_fwd_f32(A->kn, A->rk, A->kc, T * Hk, K, 1e-6, 1.0);
    cpu_linear_fwd_f32(A->braw, A->xn, oh_lw(m, l, SLOT_B), T, C, Hv);
    cpu_linear_fwd_f32(A->araw, A->xn, oh_lw(m, l, SLOT_A), T, C, Hv);
    cpu_gdn_gates_fwd_f32(A->beta, A->g, A->braw, A->araw, oh_lw(m, l, SLOT_A_LOG), oh_lw(m, l, SLOT_DT_BIAS), T, Hv,
                          c->linear_allow_neg_eigval);
    cpu_gdn_fwd_f32(A->o, NULL, A->qn, A->kn, A->vc, A->g, A->beta, NULL, b->cu_seqlens, b->ndocs, T, Hk, Hv, K, V);
    cpu_linear_fwd_f32(A->gate, A->xn, oh_lw(m, l, SLOT_G), T, C, Vd);
    cpu_gated_rmsnorm_fwd_f32(A->on, A->rstd_o, A->o, A->gate, oh_lw(m, l, SLOT_O_NORM), T * Hv, V, 1e-5);
    float *y = out; /* o_proj output, then the residual add in place */
    cpu_linear_fwd_f32(y, A->on, oh_lw(m, l, SLOT_O), T, Vd, C);
    cpu_add_f32(A->h, A->x, y, (size_t)T * C);
    cpu_rmsnorm_fwd_f32(A->mx, A->rstd_m, A->h, oh_lw(m, l, SLOT_POST_ATTN_NORM), T, C, c->rms_norm_eps);
    cpu_linear_fwd_f32(A->mg, A->mx, oh_lw(m, l, SLOT_MLP_GATE), T, C, F);
    cpu_linear_fwd_f32(A->mu, A->mx, oh_lw(m, l, SLOT_MLP_UP), T, C, F);
    cpu_swiglu_fwd_f32(A->mm, A->mg, A->mu, (size_t)T * F);
    cpu_linear_fwd_f32(A->md, A->mm, oh_lw(m, l, SLOT_MLP_DOWN), T, F, C);
    cpu_add_f32(out, A->h, A->md, (size_t)T * C);
}

static void attn_layer_fwd(const oh_model *m, int l, const oh_batch *b, layer_acts *A, float *out) {
    const oh_config *c = &m->cfg;
    int T = b->T, C = c->hidden_size, F = c->intermediate_size, Dq = oh_cfg_q_dim(c), Dkv = oh_cfg_kv_dim(c);
    int Hq = c->num_attention_heads, Hkv = c->num_key_value_heads, D = c->head_dim;
    cpu_linear_fwd_f32(A->aq, A->x, oh_lw(m, l, SLOT_Q), T, C, Dq);
    cpu_linear_fwd_f32(A->ak, A->x, oh_lw(m, l, SLOT_K), T, C, Dkv);
    cpu_linear_fwd_f32(A->av, A->x, oh_lw(m, l, SLOT_V), T, C, Dkv);
    cpu_rmsnorm_fwd_f32(A->aqn, A->rstd_q, A->aq, oh_lw(m, l, SLOT_Q_NORM), T, Dq, c->rms_norm_eps);
    cpu_rmsnorm_fwd_f32(A->akn, A->rstd_k, A->ak, oh_lw(m, l, SLOT_K_NORM), T, Dkv, c->rms_norm_eps);
    if (c->use_rope) {
        cpu_rope_fwd_f32(A->aqn, b->pos, T, Hq, D, c->rope_theta);
        cpu_rope_fwd_f32(A->akn, b->pos, T, Hkv, D, c->rope_theta);
    }
    cpu_attention_fwd_f32(A->ao, A->lse, A->aqn, A->akn, A->av, b->cu_seqlens, b->ndocs, T, Hq, Hkv, D,
                          1.0 / sqrt((double)D));
    cpu_linear_fwd_f32(A->ay, A->ao, oh_lw(m, l, SLOT_O), T, Dq, C);
    cpu_rmsnorm_fwd_f32(A->ayn, A->rstd_ay, A->ay, oh_lw(m, l, SLOT_POST_ATTN_NORM), T, C, c->rms_norm_eps);
    cpu_add_f32(A->h, A->x, A->ayn, (size_t)T * C);
    cpu_linear_fwd_f32(A->mg, A->h, oh_lw(m, l, SLOT_MLP_GATE), T, C, F);
    cpu_linear_fwd_f32(A->mu, A->h, oh_lw(m, l, SLOT_MLP_UP), T, C, F);
    cpu_swiglu_fwd_f32(A->mm, A->mg, A->mu, (size_t)T * F);
    cpu_linear_fwd_f32(A->md, A->mm, oh_lw(m, l, SLOT_MLP_DOWN), T, F, C);
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
