/* The recurrent decode path (conv windows, GDN state, KV cache carried token
 * by token) gives the logits of the full forward pass. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "model/decode.h"
#include "model/model.h"

static void check(bool rope) {
    oh_config c;
    oh_err e;
    cr_assert_eq(oh_config_preset(&c, "tiny", &e), 0);
    c.use_rope = rope;
    c.rope_theta = rope ? 500000.0 : 0;
    oh_model m;
    oh_model_build(&m, &c, true);
    oh_model_init_random(&m, 21);
    for (size_t i = 0; i < m.nfloats; i++) m.w[i] *= 4.0f; /* larger weights: a sensitive check */
    int T = 70;
    int32_t ids[70];
    for (int t = 0; t < T; t++) ids[t] = (t * 41 + 7) % c.vocab_size;
    const int32_t *docs[1] = {ids};
    oh_batch b;
    oh_batch_from_docs(&b, docs, &T, 1);
    oh_fwd_out fo;
    cr_assert_eq(oh_forward(&m, &b, &fo, NULL, &e), 0, "%s", e.msg);
    oh_decoder *d = oh_decoder_new(&m, T);
    float *lg = malloc(sizeof(float) * (size_t)c.vocab_size);
    double worst = 0;
    for (int t = 0; t < T; t++) {
        cr_assert_eq(oh_decoder_step(d, ids[t], lg, &e), 0, "%s", e.msg);
        double num = 0, den = 0;
        for (int v = 0; v < c.vocab_size; v++) {
            double x = (double)lg[v] - fo.logits[(size_t)t * c.vocab_size + v];
            num += x * x;
            den += (double)fo.logits[(size_t)t * c.vocab_size + v] * fo.logits[(size_t)t * c.vocab_size + v];
        }
        if (sqrt(num / den) > worst) worst = sqrt(num / den);
    }
    cr_assert(worst < 1e-5, "rope=%d: decode vs forward rel err %.3g", rope, worst);
    /* the cache is bounded */
    cr_assert_eq(oh_decoder_step(d, 1, lg, &e), -1);
    free(lg);
    oh_decoder_free(d);
    oh_fwd_free(&fo);
    oh_batch_free(&b);
    oh_model_free(&m);
}

Test(decode, matches_forward_nope) { check(false); }
Test(decode, matches_forward_rope) { check(true); }

Test(decode, sampling) {
    float logits[5] = {0.1f, 3.0f, 0.2f, 2.9f, -1.0f};
    oh_rng r;
    oh_rng_seed(&r, 1);
    oh_sample_cfg greedy = {0};
    cr_assert_eq(oh_sample(logits, 5, &greedy, &r), 1);
    /* top-p 0.5 keeps only the best token here */
    oh_sample_cfg tp = {.temperature = 1.0, .top_p = 0.3};
    for (int i = 0; i < 50; i++) cr_assert_eq(oh_sample(logits, 5, &tp, &r), 1);
    /* temperature sampling visits the two likely tokens */
    oh_sample_cfg t1 = {.temperature = 1.0, .top_p = 1.0};
    int seen[5] = {0};
    for (int i = 0; i < 400; i++) seen[oh_sample(logits, 5, &t1, &r)]++;
    cr_assert(seen[1] > 100 && seen[3] > 100, "%d %d", seen[1], seen[3]);
}
