/* LoRA: the adapted forward equals the forward of the merged weights, the
 * adapter gradients match finite differences, PEFT files round trip. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "finetune/commands.h"
#include "lora/lora.h"
#include "model/model.h"

static void tiny(oh_model *m) {
    oh_config c;
    oh_err e;
    cr_assert_eq(oh_config_preset(&c, "tiny", &e), 0);
    oh_model_build(m, &c, true);
    oh_model_init_random(m, 3);
}

static void lora_all(oh_lora *lo, const oh_model *m, int rank) {
    oh_lora_cfg c = {.rank = rank, .alpha = 2.0 * rank, .dropout = 0};
    const char *t[] = {"all-linear"};
    oh_err e;
    cr_assert_eq(oh_lora_cfg_set_targets(&c, t, 1, &e), 0);
    cr_assert_eq(oh_lora_create(lo, m, &c, 5, &e), 0, "%s", e.msg);
    /* B is zero at init: give it values so the adapter matters */
    oh_rng r;
    oh_rng_seed(&r, 8);
    for (int i = 0; i < lo->n; i++)
        for (size_t k = 0; k < (size_t)lo->ad[i].out * rank; k++) lo->w[lo->ad[i].b_off + k] = (float)(0.05 * oh_rng_normal(&r));
}

static double rel(const float *a, const float *b, size_t n) {
    double x = 0, y = 0;
    for (size_t i = 0; i < n; i++) { x += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); y += (double)b[i] * b[i]; }
    return sqrt(x / y);
}

Test(lora, targets_cover_both_layer_kinds) {
    oh_model m;
    tiny(&m);
    oh_lora lo;
    lora_all(&lo, &m, 4);
    /* tiny: 3 GDN layers (7 projections + 3 MLP) + 1 attention layer (4 + 3) */
    cr_assert_eq(lo.n, 3 * 10 + 7);
    oh_lora_free(&lo);
    oh_lora_cfg c = {.rank = 2, .alpha = 4};
    const char *names[] = {"q_proj", "gate_proj"};
    oh_err e;
    oh_lora_cfg_set_targets(&c, names, 2, &e);
    cr_assert_eq(oh_lora_create(&lo, &m, &c, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(lo.n, 4 + 4);
    oh_lora_free(&lo);
    const char *re[] = {"model\\.layers\\.3\\.self_attn\\.(q|k)_proj"};
    oh_lora_cfg_set_targets(&c, re, 1, &e);
    cr_assert_eq(oh_lora_create(&lo, &m, &c, 1, &e), 0, "%s", e.msg);
    cr_assert_eq(lo.n, 2);
    oh_lora_free(&lo);
    const char *bad[] = {"qproj"};
    oh_lora_cfg_set_targets(&c, bad, 1, &e);
    cr_assert_eq(oh_lora_create(&lo, &m, &c, 1, &e), -1);
    cr_assert(strstr(e.msg, "qproj"), "%s", e.msg);
    oh_model_free(&m);
}

Test(lora, forward_equals_merged_forward) {
    oh_model m;
    tiny(&m);
    oh_lora lo;
    lora_all(&lo, &m, 4);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (i * 37 + 11) % m.cfg.vocab_size;
    const int32_t *docs[2] = {ids, ids + 25};
    int lens[2] = {25, 15};
    oh_batch b;
    oh_batch_from_docs(&b, docs, lens, 2);
    oh_err e;
    oh_fwd_out base, ad, merged;
    cr_assert_eq(oh_forward(&m, &b, &base, NULL, &e), 0);
    m.lora = &lo;
    cr_assert_eq(oh_forward(&m, &b, &ad, NULL, &e), 0);
    m.lora = NULL;
    oh_lora_merge(&lo, &m);
    cr_assert_eq(oh_forward(&m, &b, &merged, NULL, &e), 0);
    size_t n = (size_t)b.T * m.cfg.vocab_size;
    cr_assert(rel(ad.logits, base.logits, n) > 1e-3, "the adapter changes nothing");
    cr_assert(rel(ad.logits, merged.logits, n) < 1e-5, "adapter vs merged rel err %.3g", rel(ad.logits, merged.logits, n));
    oh_fwd_free(&base); oh_fwd_free(&ad); oh_fwd_free(&merged);
    oh_batch_free(&b);
    oh_lora_free(&lo);
    oh_model_free(&m);
}

Test(lora, adapter_grads_match_finite_differences_and_base_is_frozen) {
    oh_model m;
    tiny(&m);
    oh_lora lo;
    lora_all(&lo, &m, 2);
    m.lora = &lo;
    lo.g = calloc(lo.nfloats, sizeof(float));
    int32_t ids[30];
    for (int i = 0; i < 30; i++) ids[i] = (i * 53 + 7) % m.cfg.vocab_size;
    const int32_t *docs[1] = {ids};
    int lens[1] = {30};
    float loss;
    oh_err e;
    /* grads == NULL: the base takes no gradient memory */
    oh_batch b;
    oh_batch_from_docs(&b, docs, lens, 1);
    oh_fwd_out fo;
    oh_acts *acts;
    cr_assert_eq(oh_forward(&m, &b, &fo, &acts, &e), 0);
    float *w = calloc(30, sizeof(float));
    for (int t = 0; t < 29; t++) w[t] = 1.0f / 29;
    oh_backward(&m, &b, &fo, acts, w, NULL);
    oh_acts_free(acts);
    oh_fwd_free(&fo);
    /* check a few coordinates of A and B in several adapters by central differences */
    float *G = lo.g;
    lo.g = NULL; /* the evaluations below must not add to the gradient under test */
    int checked = 0;
    for (int i = 0; i < lo.n; i += 5) {
        size_t offs[2] = {lo.ad[i].a_off + 1, lo.ad[i].b_off + 2};
        for (int k = 0; k < 2; k++) {
            float *p = &lo.w[offs[k]], keep = *p, h = 1e-2f;
            double lp, lm;
            *p = keep + h;
            cr_assert_eq(oh_compute_grads(&m, docs, lens, 1, NULL, &loss, &e), 0);
            lp = loss;
            *p = keep - h;
            oh_compute_grads(&m, docs, lens, 1, NULL, &loss, &e);
            lm = loss;
            *p = keep;
            double fd = (lp - lm) / (2 * h), an = G[offs[k]];
            cr_expect(fabs(fd - an) <= 1e-2 * fabs(an) + 5e-5, "%s %c: analytic %.6g vs fd %.6g", lo.ad[i].module,
                      k ? 'B' : 'A', an, fd);
            checked++;
        }
    }
    cr_assert(checked >= 10);
    lo.g = G;
    free(w);
    oh_batch_free(&b);
    oh_lora_free(&lo);
    oh_model_free(&m);
}

Test(lora, peft_files_round_trip) {
    oh_model m;
    tiny(&m);
    oh_lora lo, back;
    lora_all(&lo, &m, 4);
    char dir[] = "/tmp/oh_peft_XXXXXX";
    cr_assert(mkdtemp(dir));
    oh_err e;
    cr_assert_eq(oh_lora_save_peft(&lo, dir, "base", &e), 0, "%s", e.msg);
    cr_assert_eq(oh_lora_load_peft(&back, &m, dir, &e), 0, "%s", e.msg);
    cr_assert_eq(back.n, lo.n);
    cr_assert_eq(back.nfloats, lo.nfloats);
    cr_assert_eq(memcmp(back.w, lo.w, sizeof(float) * lo.nfloats), 0);
    cr_assert_float_eq(back.scale, lo.scale, 1e-12);
    oh_lora_free(&back);
    oh_lora_free(&lo);
    oh_rmtree(dir);
    oh_model_free(&m);
}
