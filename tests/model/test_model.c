/* The model against golden files made by transformers' OlmoHybridForCausalLM
 * (tests/fixtures/make_model_fixtures.py), packing, init and loading errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "finetune/commands.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "util/json.h"

static const char *CASES[] = {"nope_released_f32", "rope_save_bf16_tied", "nope_sharded_bf16_layers",
                              "rope_save_sharded_f32", "nope_defaults_tied_f32"};
#define NCASES (int)(sizeof CASES / sizeof *CASES)

typedef struct { int32_t *ids[16]; int lens[16]; int n; } lines_t;

static void read_inputs(const char *dir, lines_t *L) {
    char *p = oh_sprintf("%s/inputs.jsonl", dir), *text;
    size_t len;
    oh_err e;
    cr_assert_eq(oh_read_file(p, &text, &len, &e), 0, "%s", e.msg);
    L->n = 0;
    for (char *s = strtok(text, "\n"); s; s = strtok(NULL, "\n")) {
        oh_json j;
        cr_assert_eq(oh_json_parse(&j, s, strlen(s), p, &e), 0, "%s", e.msg);
        int a = oh_json_get(&j, 0, "input_ids"), n = oh_json_size(&j, a);
        L->ids[L->n] = malloc(sizeof(int32_t) * (size_t)n);
        for (int k = 0; k < n; k++) {
            long long v;
            oh_json_int(&j, oh_json_at(&j, a, k), &v);
            L->ids[L->n][k] = (int32_t)v;
        }
        L->lens[L->n++] = n;
        oh_json_free(&j);
    }
    free(text); free(p);
}

static double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
        if (isnan(a[i])) return INFINITY;
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static float *ref_tensor(st_archive *a, const char *name, size_t *numel) {
    const st_tensor *t = st_find(a, name);
    cr_assert(t, "reference tensor %s missing", name);
    float *v = malloc(sizeof(float) * (size_t)t->numel);
    oh_err e;
    cr_assert_eq(st_read_f32(a, t, v, &e), 0, "%s", e.msg);
    if (numel) *numel = (size_t)t->numel;
    return v;
}

Test(model_golden, logits_match_transformers) {
    for (int c = 0; c < NCASES; c++) {
        char *dir = oh_sprintf("%s/tests/fixtures/model/%s", OH_SOURCE_DIR, CASES[c]);
        oh_model m;
        oh_err e;
        cr_assert_eq(oh_model_load(&m, dir, &e), 0, "%s: %s", CASES[c], e.msg);
        lines_t L;
        read_inputs(dir, &L);
        char *rp = oh_sprintf("%s/reference.safetensors", dir);
        st_archive ref;
        cr_assert_eq(st_open(&ref, rp, &e), 0, "%s", e.msg);
        for (int i = 0; i < L.n; i++) {
            oh_batch b;
            oh_batch_from_docs(&b, (const int32_t *const *)&L.ids[i], &L.lens[i], 1);
            oh_fwd_out fo;
            cr_assert_eq(oh_forward(&m, &b, &fo, NULL, &e), 0, "%s", e.msg);
            char name[64];
            snprintf(name, sizeof name, "logits_%d", i);
            size_t n;
            float *rl = ref_tensor(&ref, name, &n);
            cr_assert_eq(n, (size_t)L.lens[i] * m.cfg.vocab_size);
            double r = rel_err(fo.logits, rl, n);
            cr_expect(r < 1e-4, "%s line %d (T=%d): logits rel err %.3g", CASES[c], i, L.lens[i], r);
            snprintf(name, sizeof name, "loss_%d", i);
            float *rloss = ref_tensor(&ref, name, NULL);
            double s = 0;
            for (int t = 0; t < L.lens[i] - 1; t++) s += fo.loss[t];
            s /= L.lens[i] - 1;
            cr_expect(fabs(s - rloss[0]) < 1e-4 * fabs(rloss[0]), "%s line %d: loss %.7f vs %.7f", CASES[c], i, s, rloss[0]);
            free(rl); free(rloss);
            oh_fwd_free(&fo);
            oh_batch_free(&b);
        }
        st_close(&ref);
        for (int i = 0; i < L.n; i++) free(L.ids[i]);
        oh_model_free(&m);
        free(rp); free(dir);
    }
}

Test(model_golden, grads_match_transformers_autograd) {
    for (int c = 0; c < NCASES; c++) {
        char *dir = oh_sprintf("%s/tests/fixtures/model/%s", OH_SOURCE_DIR, CASES[c]);
        oh_model m;
        oh_err e;
        cr_assert_eq(oh_model_load(&m, dir, &e), 0, "%s: %s", CASES[c], e.msg);
        lines_t L;
        read_inputs(dir, &L);
        char *rp = oh_sprintf("%s/reference.safetensors", dir);
        st_archive ref;
        cr_assert_eq(st_open(&ref, rp, &e), 0, "%s", e.msg);
        float *G = calloc(m.nfloats, sizeof(float)), loss;
        cr_assert_eq(oh_compute_grads(&m, (const int32_t *const *)L.ids, L.lens, L.n, G, &loss, &e), 0, "%s", e.msg);
        float *rloss = ref_tensor(&ref, "loss", NULL);
        cr_expect(fabsf(loss - rloss[0]) < 1e-4f * fabsf(rloss[0]), "%s: loss %.7f vs %.7f", CASES[c], loss, rloss[0]);
        free(rloss);
        for (int i = 0; i < m.nparams; i++) {
            char *name = oh_sprintf("grad.%s", m.params[i].name);
            size_t n;
            float *rg = ref_tensor(&ref, name, &n);
            cr_assert_eq(n, m.params[i].numel, "%s: %s numel", CASES[c], name);
            double r = rel_err(G + m.params[i].offset, rg, n);
            cr_expect(r < 1e-4, "%s: %s rel err %.3g", CASES[c], name, r);
            free(rg); free(name);
        }
        free(G);
        st_close(&ref);
        for (int i = 0; i < L.n; i++) free(L.ids[i]);
        oh_model_free(&m);
        free(rp); free(dir);
    }
}

/* A model in memory: the tiny preset with random (non-unit) norm weights. */
static void tiny_model(oh_model *m, bool rope) {
    oh_config c;
    oh_err e;
    cr_assert_eq(oh_config_preset(&c, "tiny", &e), 0);
    c.use_rope = rope;
    c.rope_theta = rope ? 10000.0 : 0;
    oh_model_build(m, &c, true);
    oh_model_init_random(m, 7);
    oh_rng r;
    oh_rng_seed(&r, 99);
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].ndim == 1 && m->params[i].slot != SLOT_A_LOG && m->params[i].slot != SLOT_DT_BIAS)
            for (size_t k = 0; k < m->params[i].numel; k++) m->w[m->params[i].offset + k] += 0.3f * (float)oh_rng_normal(&r);
}

static void random_docs(int32_t **docs, const int *lens, int n, int vocab, uint64_t seed) {
    oh_rng r;
    oh_rng_seed(&r, seed);
    for (int d = 0; d < n; d++) {
        docs[d] = malloc(sizeof(int32_t) * (size_t)lens[d]);
        for (int t = 0; t < lens[d]; t++) docs[d][t] = (int32_t)(oh_rng_u64(&r) % (uint64_t)vocab);
    }
}

Test(model_packing, packed_equals_separate) {
    for (int rope = 0; rope < 2; rope++) {
        oh_model m;
        tiny_model(&m, rope);
        int lens[] = {13, 1, 70, 5, 64};
        int n = 5, V = m.cfg.vocab_size;
        int32_t *docs[5];
        random_docs(docs, lens, n, V, 5);
        oh_batch pb;
        oh_batch_from_docs(&pb, (const int32_t *const *)docs, lens, n);
        oh_fwd_out po;
        oh_err e;
        cr_assert_eq(oh_forward(&m, &pb, &po, NULL, &e), 0, "%s", e.msg);
        for (int d = 0; d < n; d++) {
            oh_batch b;
            oh_batch_from_docs(&b, (const int32_t *const *)&docs[d], &lens[d], 1);
            oh_fwd_out o;
            cr_assert_eq(oh_forward(&m, &b, &o, NULL, &e), 0);
            double r = rel_err(po.logits + (size_t)pb.cu_seqlens[d] * V, o.logits, (size_t)lens[d] * V);
            cr_expect(r < 1e-6, "rope=%d doc %d: packed vs alone rel err %.3g", rope, d, r);
            oh_fwd_free(&o);
            oh_batch_free(&b);
        }
        oh_fwd_free(&po);
        oh_batch_free(&pb);
        for (int d = 0; d < n; d++) free(docs[d]);
        oh_model_free(&m);
    }
}

Test(model_packing, packed_grads_equal_sum_of_separate) {
    oh_model m;
    tiny_model(&m, true);
    int lens[] = {9, 66, 3, 20};
    int n = 4;
    int32_t *docs[4];
    random_docs(docs, lens, n, m.cfg.vocab_size, 11);
    float *Gp = calloc(m.nfloats, sizeof(float)), *Gs = calloc(m.nfloats, sizeof(float)), *G1 = calloc(m.nfloats, sizeof(float));
    float lp, l1;
    oh_err e;
    cr_assert_eq(oh_compute_grads(&m, (const int32_t *const *)docs, lens, n, Gp, &lp, &e), 0, "%s", e.msg);
    double ls = 0;
    for (int d = 0; d < n; d++) {
        memset(G1, 0, sizeof(float) * m.nfloats);
        cr_assert_eq(oh_compute_grads(&m, (const int32_t *const *)&docs[d], &lens[d], 1, G1, &l1, &e), 0);
        for (size_t k = 0; k < m.nfloats; k++) Gs[k] += G1[k] / n; /* L is the mean over documents */
        ls += l1 / n;
    }
    cr_expect(fabs(lp - ls) < 1e-5 * fabs(ls), "loss %.7f vs %.7f", lp, ls);
    for (int i = 0; i < m.nparams; i++) {
        double r = rel_err(Gp + m.params[i].offset, Gs + m.params[i].offset, m.params[i].numel);
        cr_expect(r < 1e-5, "%s: packed vs separate rel err %.3g", m.params[i].name, r);
    }
    free(Gp); free(Gs); free(G1);
    for (int d = 0; d < n; d++) free(docs[d]);
    oh_model_free(&m);
}

Test(model_io, init_checkpoint_loads_back_identical) {
    oh_config c;
    oh_err e;
    cr_assert_eq(oh_config_preset(&c, "tiny", &e), 0);
    char dir[] = "/tmp/oh_test_init_XXXXXX";
    cr_assert(mkdtemp(dir));
    cr_assert_eq(oh_init_checkpoint(&c, 42, dir, ST_F32, 1 << 20, &e), 0, "%s", e.msg);
    oh_model a, b;
    cr_assert_eq(oh_model_load(&a, dir, &e), 0, "%s", e.msg);
    oh_model_build(&b, &c, true);
    oh_model_init_random(&b, 42);
    cr_assert_eq(a.nfloats, b.nfloats);
    cr_assert_eq(memcmp(a.w, b.w, sizeof(float) * a.nfloats), 0, "streamed init differs from in-memory init");
    /* the pad row is zero, norms are ones, embeddings have std ~0.02 */
    float *E = a.w + a.params[a.embed].offset;
    for (int k = 0; k < c.hidden_size; k++) cr_assert_eq(E[(size_t)c.pad_token_id * c.hidden_size + k], 0.0f);
    double s = 0;
    for (size_t k = 0; k < a.params[a.embed].numel; k++) s += (double)E[k] * E[k];
    double sd = sqrt(s / (double)a.params[a.embed].numel);
    cr_expect(sd > 0.018 && sd < 0.022, "embedding std %.4f", sd);
    /* bf16 save + reload equals bf16-rounded weights */
    char *d2 = oh_sprintf("%s/bf16", dir);
    cr_assert_eq(oh_model_save(&a, d2, ST_BF16, 64 << 10, &e), 0, "%s", e.msg);
    oh_model r;
    cr_assert_eq(oh_model_load(&r, d2, &e), 0, "%s", e.msg);
    for (size_t k = 0; k < a.nfloats; k++) cr_assert_eq(r.w[k], oh_bf16_to_f32(oh_f32_to_bf16(a.w[k])));
    oh_model_free(&a); oh_model_free(&b); oh_model_free(&r);
    oh_rmtree(dir);
    free(d2);
}

Test(model_io, missing_unexpected_and_misshaped_tensors_are_named) {
    oh_config c;
    oh_err e;
    cr_assert_eq(oh_config_preset(&c, "tiny", &e), 0);
    oh_model m;
    oh_model_build(&m, &c, true);
    oh_model_init_random(&m, 1);
    char dir[] = "/tmp/oh_test_names_XXXXXX";
    cr_assert(mkdtemp(dir));
    cr_assert_eq(oh_model_save(&m, dir, ST_F32, 1 << 30, &e), 0, "%s", e.msg);
    /* rewrite the checkpoint without one tensor and with a stranger */
    st_entry *ent = calloc((size_t)m.nparams + 1, sizeof(st_entry));
    int n = 0;
    for (int i = 0; i < m.nparams; i++) {
        if (!strcmp(m.params[i].name, "model.layers.0.linear_attn.A_log")) continue;
        ent[n] = (st_entry){.name = m.params[i].name, .dtype = ST_F32, .ndim = m.params[i].ndim, .data = m.w + m.params[i].offset};
        for (int d = 0; d < m.params[i].ndim; d++) ent[n].shape[d] = m.params[i].shape[d];
        n++;
    }
    float one = 1;
    ent[n++] = (st_entry){.name = "model.layers.0.mystery.weight", .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = &one};
    char *p = oh_sprintf("%s/model.safetensors", dir);
    cr_assert_eq(st_save(p, ent, n, NULL, &e), 0);
    oh_model x;
    cr_assert_eq(oh_model_load(&x, dir, &e), -1);
    cr_expect(strstr(e.msg, "model.layers.0.linear_attn.A_log"), "%s", e.msg);
    cr_expect(strstr(e.msg, "missing"), "%s", e.msg);
    /* only the stranger */
    ent[n - 1] = ent[0];
    for (int i = 0; i < m.nparams; i++)
        if (!strcmp(m.params[i].name, "model.layers.0.linear_attn.A_log"))
            ent[0] = (st_entry){.name = m.params[i].name, .dtype = ST_F32, .ndim = 1, .shape = {m.params[i].shape[0]}, .data = m.w + m.params[i].offset};
    ent[n++] = (st_entry){.name = "model.layers.0.mystery.weight", .dtype = ST_F32, .ndim = 1, .shape = {1}, .data = &one};
    cr_assert_eq(st_save(p, ent, n, NULL, &e), 0);
    cr_assert_eq(oh_model_load(&x, dir, &e), -1);
    cr_expect(strstr(e.msg, "unexpected") && strstr(e.msg, "mystery"), "%s", e.msg);
    /* a shape mismatch names the tensor and both shapes */
    n--;
    for (int i = 0; i < n; i++)
        if (!strcmp(ent[i].name, "model.norm.weight")) ent[i].shape[0] = 32;
    cr_assert_eq(st_save(p, ent, n, NULL, &e), 0);
    cr_assert_eq(oh_model_load(&x, dir, &e), -1);
    cr_expect(strstr(e.msg, "model.norm.weight") && strstr(e.msg, "[32]") && strstr(e.msg, "[64]"), "%s", e.msg);
    free(p); free(ent);
    oh_model_free(&m);
    oh_rmtree(dir);
}

Test(model_io, olmo_core_names_load) {
    /* an OLMo-core state dict (blocks.{i}.attention.w_q, feed_forward.w1, ...)
     * made by renaming a saved model's tensors loads to the same weights */
    oh_config c;
    oh_err e;
    cr_assert_eq(oh_config_preset(&c, "tiny", &e), 0);
    oh_model m;
    oh_model_build(&m, &c, true);
    oh_model_init_random(&m, 4);
    char dir[] = "/tmp/oh_core_XXXXXX";
    cr_assert(mkdtemp(dir));
    cr_assert_eq(oh_model_save(&m, dir, ST_F32, 1 << 30, &e), 0, "%s", e.msg);
    static const char *map[][3] = { /* released suffix, core name on GDN layers, core name on attention layers */
        {"input_layernorm.weight", "attention_norm.weight", NULL},
        {"post_attention_layernorm.weight", "feed_forward_norm.weight", "attention_norm.weight"},
        {"post_feedforward_layernorm.weight", NULL, "feed_forward_norm.weight"},
        {"mlp.gate_proj.weight", "feed_forward.w1.weight", "feed_forward.w1.weight"},
        {"mlp.up_proj.weight", "feed_forward.w3.weight", "feed_forward.w3.weight"},
        {"mlp.down_proj.weight", "feed_forward.w2.weight", "feed_forward.w2.weight"},
        {"self_attn.q_proj.weight", NULL, "attention.w_q.weight"}, {"self_attn.k_proj.weight", NULL, "attention.w_k.weight"},
        {"self_attn.v_proj.weight", NULL, "attention.w_v.weight"}, {"self_attn.o_proj.weight", NULL, "attention.w_out.weight"},
        {"self_attn.q_norm.weight", NULL, "attention.q_norm.weight"}, {"self_attn.k_norm.weight", NULL, "attention.k_norm.weight"},
        {"linear_attn.q_proj.weight", "attention.w_q.weight", NULL}, {"linear_attn.k_proj.weight", "attention.w_k.weight", NULL},
        {"linear_attn.v_proj.weight", "attention.w_v.weight", NULL}, {"linear_attn.g_proj.weight", "attention.w_g.weight", NULL},
        {"linear_attn.o_proj.weight", "attention.w_out.weight", NULL}, {"linear_attn.a_proj.weight", "attention.w_a.weight", NULL},
        {"linear_attn.b_proj.weight", "attention.w_b.weight", NULL},
        {"linear_attn.q_conv1d.weight", "attention.q_conv1d.weight", NULL},
        {"linear_attn.k_conv1d.weight", "attention.k_conv1d.weight", NULL},
        {"linear_attn.v_conv1d.weight", "attention.v_conv1d.weight", NULL},
        {"linear_attn.A_log", "attention.A_log", NULL}, {"linear_attn.dt_bias", "attention.dt_bias", NULL},
        {"linear_attn.o_norm.weight", "attention.o_norm.weight", NULL},
    };
    st_entry *ent = calloc((size_t)m.nparams, sizeof(st_entry));
    char **names = calloc((size_t)m.nparams, sizeof(char *));
    for (int i = 0; i < m.nparams; i++) {
        const oh_param *p = &m.params[i];
        if (i == m.embed) names[i] = strdup("embeddings.weight");
        else if (i == m.final_norm) names[i] = strdup("lm_head.norm.weight");
        else if (i == m.lm_head) names[i] = strdup("lm_head.w_out.weight");
        else {
            const char *suffix = strchr(strchr(p->name, '.') + 1, '.') + 1;
            suffix = strchr(suffix, '.') + 1; /* after "model.layers.N." */
            for (size_t k = 0; k < sizeof map / sizeof *map && !names[i]; k++)
                if (!strcmp(map[k][0], suffix)) {
                    const char *core = map[k][c.is_attn[p->layer] ? 2 : 1];
                    cr_assert(core, "no core name for %s", p->name);
                    names[i] = oh_sprintf("blocks.%d.%s", p->layer, core);
                }
            cr_assert(names[i], "unmapped %s", p->name);
        }
        ent[i] = (st_entry){.name = names[i], .dtype = ST_F32, .ndim = p->ndim, .data = m.w + p->offset};
        for (int d = 0; d < p->ndim; d++) ent[i].shape[d] = p->shape[d];
    }
    char *path = oh_sprintf("%s/model.safetensors", dir);
    cr_assert_eq(st_save(path, ent, m.nparams, NULL, &e), 0, "%s", e.msg);
    oh_model back;
    cr_assert_eq(oh_model_load(&back, dir, &e), 0, "%s", e.msg);
    cr_assert_str_eq(back.source_layout, "olmo-core");
    cr_assert_eq(memcmp(back.w, m.w, sizeof(float) * m.nfloats), 0);
    for (int i = 0; i < m.nparams; i++) free(names[i]);
    free(names); free(ent); free(path);
    oh_model_free(&back);
    oh_model_free(&m);
    oh_rmtree(dir);
}
