#include "model/decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_decode.h"
#include "kernels/cpu/cpu_ops.h"

typedef struct {
    float *cq, *ck, *cv;   /* conv states [C, K-1] */
    float *S;              /* [Hv, K, V] */
    float *kc, *vc;        /* attention caches [max, Hkv*D] */
} layer_state;

struct oh_decoder {
    const oh_model *m;
    int n, max;
    layer_state *ls;
    float *buf;            /* scratch */
};

oh_decoder *oh_decoder_new(const oh_model *m, int max_tokens) {
    const oh_config *c = &m->cfg;
    oh_decoder *d = oh_calloc(1, sizeof *d);
    d->m = m;
    d->max = max_tokens;
    d->ls = oh_calloc((size_t)c->num_hidden_layers, sizeof(layer_state));
    int KC = c->linear_conv_kernel_dim;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        layer_state *s = &d->ls[l];
        if (c->is_attn[l]) {
            s->kc = oh_calloc((size_t)max_tokens * oh_cfg_kv_dim(c), sizeof(float));
            s->vc = oh_calloc((size_t)max_tokens * oh_cfg_kv_dim(c), sizeof(float));
        } else {
            s->cq = oh_calloc((size_t)oh_cfg_key_dim(c) * (KC - 1) + 1, sizeof(float));
            s->ck = oh_calloc((size_t)oh_cfg_key_dim(c) * (KC - 1) + 1, sizeof(float));
            s->cv = oh_calloc((size_t)oh_cfg_value_dim(c) * (KC - 1) + 1, sizeof(float));
            s->S = oh_calloc((size_t)c->linear_num_value_heads * c->linear_key_head_dim * c->linear_value_head_dim, sizeof(float));
        }
    }
    size_t big = (size_t)c->hidden_size * 8 + (size_t)c->intermediate_size * 4 + (size_t)oh_cfg_value_dim(c) * 8 +
                 (size_t)oh_cfg_key_dim(c) * 8 + (size_t)oh_cfg_q_dim(c) * 6 + (size_t)c->num_attention_heads * 4 + 64 +
                 (size_t)c->linear_num_value_heads * c->linear_key_head_dim * c->linear_value_head_dim;
    d->buf = oh_malloc(sizeof(float) * big);
    return d;
}

void oh_decoder_free(oh_decoder *d) {
    if (!d) return;
    for (int l = 0; l < d->m->cfg.num_hidden_layers; l++) {
        layer_state *s = &d->ls[l];
        free(s->cq); free(s->ck); free(s->cv); free(s->S); free(s->kc); free(s->vc);
    }
    free(d->ls); free(d->buf); free(d);
}

int oh_decoder_step(oh_decoder *d, int32_t token, float *logits, oh_err *err) {
    const oh_model *m = d->m;
    const oh_config *c = &m->cfg;
    if (token < 0 || token >= c->vocab_size) return oh_errf(err, "token id %d is outside the vocabulary (%d)", token, c->vocab_size);
    if (d->n >= d->max) return oh_errf(err, "decode cache is full (%d tokens)", d->max);
    int C = c->hidden_size, F = c->intermediate_size, Kd = oh_cfg_key_dim(c), Vd = oh_cfg_value_dim(c);
    int Hk = c->linear_num_key_heads, Hv = c->linear_num_value_heads, K = c->linear_key_head_dim, V = c->linear_value_head_dim;
    int KC = c->linear_conv_kernel_dim, Dq = oh_cfg_q_dim(c), Dkv = oh_cfg_kv_dim(c), Hq = c->num_attention_heads;
    int Hkv = c->num_key_value_heads, D = c->head_dim;
    float *p = d->buf;
    float *x = p; p += C;
    float *h = p; p += C;
    float *t0 = p; p += C;
    float *t1 = p; p += C;
    float *mg = p; p += F;
    float *mu = p; p += F;
    float *mm = p; p += F;
    float *qa = p; p += (Kd > Dq ? Kd : Dq) * 2;
    float *ka = p; p += (Kd > Dkv ? Kd : Dkv) * 2;
    float *va = p; p += (Vd > Dkv ? Vd : Dkv) * 2;
    float *gt = p; p += Vd;
    float *o = p; p += Vd * 2;
    float *sc = p; p += 16 + Hq * 2 + Hv * 4;
    float *S2 = p;
    int32_t pos = d->n;
    memcpy(x, m->w + m->params[m->embed].offset + (size_t)token * C, sizeof(float) * (size_t)C);
    int32_t cu[2] = {0, 1};
    for (int l = 0; l < c->num_hidden_layers; l++) {
        layer_state *s = &d->ls[l];
        if (!c->is_attn[l]) {
            cpu_rmsnorm_fwd_f32(t0, NULL, x, oh_lw(m, l, SLOT_IN_NORM), 1, C, c->rms_norm_eps);
            cpu_linear_fwd_f32(t1, t0, oh_lw(m, l, SLOT_Q), 1, C, Kd);
            cpu_conv1d_silu_step_f32(qa, s->cq, t1, oh_lw(m, l, SLOT_QCONV), Kd, KC);
            cpu_linear_fwd_f32(t1, t0, oh_lw(m, l, SLOT_K), 1, C, Kd);
            cpu_conv1d_silu_step_f32(ka, s->ck, t1, oh_lw(m, l, SLOT_KCONV), Kd, KC);
            float *vp = o; /* scratch */
            cpu_linear_fwd_f32(vp, t0, oh_lw(m, l, SLOT_V), 1, C, Vd);
            cpu_conv1d_silu_step_f32(va, s->cv, vp, oh_lw(m, l, SLOT_VCONV), Vd, KC);
            cpu_l2norm_fwd_f32(qa + Kd, NULL, qa, Hk, K, 1e-6, 1.0 / sqrt((double)K));
            cpu_l2norm_fwd_f32(ka + Kd, NULL, ka, Hk, K, 1e-6, 1.0);
            float *braw = sc, *araw = sc + Hv, *beta = sc + 2 * Hv, *g = sc + 3 * Hv;
            cpu_linear_fwd_f32(braw, t0, oh_lw(m, l, SLOT_B), 1, C, Hv);
            cpu_linear_fwd_f32(araw, t0, oh_lw(m, l, SLOT_A), 1, C, Hv);
            cpu_gdn_gates_fwd_f32(beta, g, braw, araw, oh_lw(m, l, SLOT_A_LOG), oh_lw(m, l, SLOT_DT_BIAS), 1, Hv,
                                  c->linear_allow_neg_eigval);
            cpu_gdn_fwd_f32(o, S2, qa + Kd, ka + Kd, va, g, beta, s->S, cu, 1, 1, Hk, Hv, K, V);
            memcpy(s->S, S2, sizeof(float) * (size_t)Hv * K * V);
            cpu_linear_fwd_f32(gt, t0, oh_lw(m, l, SLOT_G), 1, C, Vd);
            cpu_gated_rmsnorm_fwd_f32(o + Vd, NULL, o, gt, oh_lw(m, l, SLOT_O_NORM), Hv, V, 1e-5);
            cpu_linear_fwd_f32(t1, o + Vd, oh_lw(m, l, SLOT_O), 1, Vd, C);
            cpu_add_f32(h, x, t1, (size_t)C);
            cpu_rmsnorm_fwd_f32(t0, NULL, h, oh_lw(m, l, SLOT_POST_ATTN_NORM), 1, C, c->rms_norm_eps);
            cpu_linear_fwd_f32(mg, t0, oh_lw(m, l, SLOT_MLP_GATE), 1, C, F);
            cpu_linear_fwd_f32(mu, t0, oh_lw(m, l, SLOT_MLP_UP), 1, C, F);
            cpu_swiglu_fwd_f32(mm, mg, mu, (size_t)F);
            cpu_linear_fwd_f32(t1, mm, oh_lw(m, l, SLOT_MLP_DOWN), 1, F, C);
            cpu_add_f32(x, h, t1, (size_t)C);
        } else {
            cpu_linear_fwd_f32(qa, x, oh_lw(m, l, SLOT_Q), 1, C, Dq);
            cpu_linear_fwd_f32(ka, x, oh_lw(m, l, SLOT_K), 1, C, Dkv);
            float *kslot = s->kc + (size_t)d->n * Dkv, *vslot = s->vc + (size_t)d->n * Dkv;
            cpu_linear_fwd_f32(vslot, x, oh_lw(m, l, SLOT_V), 1, C, Dkv);
            float *qn = qa + Dq;
            cpu_rmsnorm_fwd_f32(qn, NULL, qa, oh_lw(m, l, SLOT_Q_NORM), 1, Dq, c->rms_norm_eps);
            cpu_rmsnorm_fwd_f32(kslot, NULL, ka, oh_lw(m, l, SLOT_K_NORM), 1, Dkv, c->rms_norm_eps);
            if (c->use_rope) {
                cpu_rope_fwd_f32(qn, &pos, 1, Hq, D, c->rope_theta);
                cpu_rope_fwd_f32(kslot, &pos, 1, Hkv, D, c->rope_theta);
            }
            cpu_attention_decode_f32(o, qn, s->kc, s->vc, d->n + 1, Hq, Hkv, D, 1.0 / sqrt((double)D));
            cpu_linear_fwd_f32(t1, o, oh_lw(m, l, SLOT_O), 1, Dq, C);
            cpu_rmsnorm_fwd_f32(t0, NULL, t1, oh_lw(m, l, SLOT_POST_ATTN_NORM), 1, C, c->rms_norm_eps);
            cpu_add_f32(h, x, t0, (size_t)C);
            cpu_linear_fwd_f32(mg, h, oh_lw(m, l, SLOT_MLP_GATE), 1, C, F);
            cpu_linear_fwd_f32(mu, h, oh_lw(m, l, SLOT_MLP_UP), 1, C, F);
            cpu_swiglu_fwd_f32(mm, mg, mu, (size_t)F);
            cpu_linear_fwd_f32(t1, mm, oh_lw(m, l, SLOT_MLP_DOWN), 1, F, C);
            cpu_rmsnorm_fwd_f32(t0, NULL, t1, oh_lw(m, l, SLOT_POST_FF_NORM), 1, C, c->rms_norm_eps);
            cpu_add_f32(x, h, t0, (size_t)C);
        }
    }
    cpu_rmsnorm_fwd_f32(t0, NULL, x, m->w + m->params[m->final_norm].offset, 1, C, c->rms_norm_eps);
    cpu_linear_fwd_f32(logits, t0, m->w + m->params[m->lm_head].offset, 1, C, c->vocab_size);
    d->n++;
    return 0;
}

typedef struct { float p; int32_t id; } cand;
static int cmp_cand(const void *a, const void *b) {
    float x = ((const cand *)a)->p, y = ((const cand *)b)->p;
    return x < y ? 1 : x > y ? -1 : 0;
}

int32_t oh_sample(const float *logits, int V, const oh_sample_cfg *c, oh_rng *r) {
    int32_t best = 0;
    for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    if (c->temperature <= 0) return best;
    cand *v = oh_malloc(sizeof(cand) * (size_t)V);
    double z = 0;
    for (int i = 0; i < V; i++) {
        v[i].id = i;
        v[i].p = (float)exp((logits[i] - logits[best]) / c->temperature);
        z += v[i].p;
    }
    qsort(v, (size_t)V, sizeof(cand), cmp_cand);
    double keep = 0;
    int n = 0;
    double top = c->top_p > 0 && c->top_p < 1 ? c->top_p : 1.0;
    while (n < V && (n == 0 || keep / z < top)) keep += v[n++].p;
    double u = oh_rng_uniform(r) * keep, acc = 0;
    int32_t pick = v[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += v[i].p;
        if (u < acc) { pick = v[i].id; break; }
    }
    free(v);
    return pick;
}
