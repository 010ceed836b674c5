/* End to end on the CPU: a run trains, resume continues the same curve
 * bitwise, a NaN stops the run with a message, gradient accumulation is
 * the same as one big batch. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "finetune/recipe.h"
#include "finetune/train.h"
#include "model/model.h"
#include "util/json.h"

static char *make_recipe(const char *dir, const char *method, const char *extra) {
    char *p = oh_sprintf("%s/recipe.toml", dir);
    FILE *f = fopen(p, "w");
    fprintf(f,
            "[model]\npath = \"%s/base\"\ninit = \"tiny\"\nseed = 3\n"
            "[tokenizer]\npath = \"%s/recipes/quickstart/tokenizer.json\"\n"
            "[data]\nmax_seq_len = 192\neval_split = 16\n"
            "[[data.sources]]\npath = \"%s/recipes/quickstart/arithmetic.jsonl\"\nweight = 300\n"
            "[train]\nmethod = \"%s\"\nmax_steps = 12\ngrad_accum = 2\nlr = 2e-3\nschedule = \"cosine\"\nwarmup_steps = 2\n"
            "save_every = 4\nkeep_last = 5\neval_every = 6\n"
            "[lora]\nrank = 4\ndropout = 0.1\ntargets = [\"q_proj\", \"v_proj\", \"down_proj\"]\n"
            "[output]\ndir = \"%s/run\"\n%s\n",
            dir, OH_SOURCE_DIR, OH_SOURCE_DIR, method, dir, extra);
    fclose(f);
    return p;
}

static char *read_all(const char *path) {
    char *t;
    size_t n;
    oh_err e;
    cr_assert_eq(oh_read_file(path, &t, &n, &e), 0, "%s", e.msg);
    return t;
}

/* metrics rows without the timing fields */
static char *strip_timing(const char *text) {
    oh_buf b = {0};
    for (const char *l = text; *l;) {
        const char *nl = strchr(l, '\n');
        size_t n = nl ? (size_t)(nl - l) : strlen(l);
        const char *t = strstr(l, ", \"tokens_per_s\"");
        oh_buf_put(&b, l, t && t < l + n ? (size_t)(t - l) : n);
        oh_buf_puts(&b, "\n");
        l += n + (nl ? 1 : 0);
    }
    return b.p ? b.p : strdup("");
}

static void resume_is_bitwise(const char *method) {
    char d1[] = "/tmp/oh_train_a_XXXXXX", d2[] = "/tmp/oh_train_b_XXXXXX";
    cr_assert(mkdtemp(d1) && mkdtemp(d2));
    char *r1 = make_recipe(d1, method, strcmp(method, "lora") ? "" : "merge = true"),
         *r2 = make_recipe(d2, method, strcmp(method, "lora") ? "" : "merge = true");
    recipe r;
    oh_err e;
    cr_assert_eq(recipe_load(&r, r1, NULL, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(train_run(&r, false, &e), 0, "%s", e.msg);
    /* the second run is "killed" after step 8: drop its last checkpoint, then resume */
    cr_assert_eq(recipe_load(&r, r2, NULL, 0, &e), 0, "%s", e.msg);
    cr_assert_eq(train_run(&r, false, &e), 0, "%s", e.msg);
    char *last = oh_sprintf("%s/run/checkpoints/step-00000012", d2);
    cr_assert(oh_is_dir(last));
    oh_rmtree(last);
    cr_assert_eq(train_run(&r, true, &e), 0, "%s", e.msg);
    char *m1 = oh_sprintf("%s/run/metrics.jsonl", d1), *m2 = oh_sprintf("%s/run/metrics.jsonl", d2);
    char *t1 = read_all(m1), *t2 = read_all(m2);
    char *s1 = strip_timing(t1), *s2 = strip_timing(t2);
    cr_assert_str_eq(s1, s2, "the resumed run's curve differs:\n%s\nvs\n%s", s1, s2);
    cr_assert(strstr(s1, "\"step\": 12, \"loss\""));
    cr_assert(strstr(s1, "eval_loss"));
    /* the loss fell */
    double first = 0, lastl = 0;
    sscanf(strstr(s1, "\"loss\": ") + 8, "%lf", &first);
    sscanf(strstr(s1, "\"step\": 12, \"loss\": ") + 20, "%lf", &lastl);
    cr_assert(lastl < first, "loss %g -> %g", first, lastl);
    /* final weights identical */
    const char *fin = strcmp(method, "lora") ? "final/model.safetensors" : "final/adapter_model.safetensors";
    char *f1 = oh_sprintf("%s/run/%s", d1, fin), *f2 = oh_sprintf("%s/run/%s", d2, fin);
    char *b1, *b2;
    size_t n1, n2;
    cr_assert_eq(oh_read_file(f1, &b1, &n1, &e), 0, "%s", e.msg);
    cr_assert_eq(oh_read_file(f2, &b2, &n2, &e), 0, "%s", e.msg);
    cr_assert(n1 == n2 && !memcmp(b1, b2, n1), "final weights differ after resume");
    char *svg = oh_sprintf("%s/run/loss.svg", d1);
    cr_assert(oh_file_exists(svg));
    if (!strcmp(method, "lora")) {
        char *merged = oh_sprintf("%s/run/final-merged/config.json", d1);
        cr_assert(oh_file_exists(merged), "output.merge = true wrote no final-merged");
        free(merged);
    }
    free(svg); free(b1); free(b2); free(f1); free(f2); free(s1); free(s2); free(t1); free(t2); free(m1); free(m2);
    free(last); free(r1); free(r2);
    oh_rmtree(d1);
    oh_rmtree(d2);
}

Test(train, full_sft_resume_is_bitwise, .timeout = 120) { resume_is_bitwise("full"); }
Test(train, lora_resume_is_bitwise, .timeout = 120) { resume_is_bitwise("lora"); }

Test(train, nan_loss_stops_with_a_message_and_keeps_checkpoints, .timeout = 120) {
    char d[] = "/tmp/oh_train_nan_XXXXXX";
    cr_assert(mkdtemp(d));
    char *rp = make_recipe(d, "full", "");
    recipe r;
    oh_err e;
    cr_assert_eq(recipe_load(&r, rp, NULL, 0, &e), 0, "%s", e.msg);
    /* lr 1e9: the weights blow up within a few steps */
    r.train.lr = 1e9;
    r.train.grad_clip = 0;
    r.train.save_every = 1;
    int rc = train_run(&r, false, &e);
    cr_assert_eq(rc, -1, "a diverging run did not stop");
    cr_assert(strstr(e.msg, "not finite") || strstr(e.msg, "the gradient is not"), "%s", e.msg);
    cr_assert(strstr(e.msg, "nan_policy"), "%s", e.msg);
    char *ck = oh_sprintf("%s/run/checkpoints", d);
    cr_assert(oh_is_dir(ck), "no checkpoint survived");
    free(ck);
    /* skip policy: the run goes on to the end */
    r.train.lr = 1e9;
    snprintf(r.train.nan_policy, sizeof r.train.nan_policy, "skip");
    snprintf(r.output.dir, sizeof r.output.dir, "%s/run2", d);
    cr_assert_eq(train_run(&r, false, &e), 0, "%s", e.msg);
    char *m = oh_sprintf("%s/run2/metrics.jsonl", d);
    char *t = read_all(m);
    cr_assert(strstr(t, "\"skipped\": true"));
    free(t); free(m); free(rp);
    oh_rmtree(d);
}

Test(train, accumulation_equals_one_batch) {
    /* one step over a batch of two documents normalised by all trained tokens
     * equals two micro-steps of one document each with the same normaliser */
    oh_config c;
    oh_err e;
    cr_assert_eq(oh_config_preset(&c, "tiny", &e), 0);
    oh_model m;
    oh_model_build(&m, &c, true);
    oh_model_init_random(&m, 9);
    int32_t a[17], b[29];
    for (int i = 0; i < 17; i++) a[i] = (i * 31 + 3) % c.vocab_size;
    for (int i = 0; i < 29; i++) b[i] = (i * 17 + 5) % c.vocab_size;
    const int32_t *docs[2] = {a, b};
    int lens[2] = {17, 29};
    float N = 16 + 28;
    float *g1 = calloc(m.nfloats, 4), *g2 = calloc(m.nfloats, 4);
    oh_batch both;
    oh_batch_from_docs(&both, docs, lens, 2);
    oh_fwd_out fo;
    oh_acts *acts;
    cr_assert_eq(oh_forward(&m, &both, &fo, &acts, &e), 0);
    float *w = calloc((size_t)both.T, 4);
    for (int t = 0; t < both.T; t++) w[t] = both.targets[t] >= 0 ? 1.0f / N : 0;
    oh_backward(&m, &both, &fo, acts, w, g1);
    oh_acts_free(acts);
    oh_fwd_free(&fo);
    for (int k = 0; k < 2; k++) {
        oh_batch one;
        oh_batch_from_docs(&one, &docs[k], &lens[k], 1);
        cr_assert_eq(oh_forward(&m, &one, &fo, &acts, &e), 0);
        for (int t = 0; t < one.T; t++) w[t] = one.targets[t] >= 0 ? 1.0f / N : 0;
        oh_backward(&m, &one, &fo, acts, w, g2);
        oh_acts_free(acts);
        oh_fwd_free(&fo);
        oh_batch_free(&one);
    }
    double num = 0, den = 0;
    for (size_t i = 0; i < m.nfloats; i++) { num += ((double)g1[i] - g2[i]) * ((double)g1[i] - g2[i]); den += (double)g1[i] * g1[i]; }
    cr_assert(sqrt(num / den) < 1e-6, "rel err %.3g", sqrt(num / den));
    free(w); free(g1); free(g2);
    oh_batch_free(&both);
    oh_model_free(&m);
}

Test(train, continued_pretraining_trains_every_token, .timeout = 120) {
    char d[] = "/tmp/oh_train_cpt_XXXXXX";
    cr_assert(mkdtemp(d));
    char *data = oh_sprintf("%s/text.jsonl", d);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 200; i++) fprintf(f, "{\"text\": \"%d plus %d makes %d.\"}\n", i % 10, i % 7, i % 10 + i % 7);
    fclose(f);
    char *rp = make_recipe(d, "full", "");
    recipe r;
    oh_err e;
    const char *ov[] = {"train.objective=cpt", "data.eval_split=0"};
    cr_assert_eq(recipe_load(&r, rp, ov, 2, &e), 0, "%s", e.msg);
    r.data.nsources = 1;
    snprintf(r.data.sources[0].path, sizeof r.data.sources[0].path, "%s", data);
    r.data.sources[0].weight = 1.0;
    snprintf(r.data.sources[0].format, sizeof r.data.sources[0].format, "text");
    cr_assert_eq(train_run(&r, false, &e), 0, "%s", e.msg);
    char *m = oh_sprintf("%s/run/metrics.jsonl", d);
    char *t = read_all(m);
    /* every token but each document's last is trained: trained_tokens == tokens - documents */
    long tokens = 0, trained = 0;
    const char *row = strstr(t, "\"step\": 1,");
    cr_assert(row);
    sscanf(strstr(row, "\"tokens\": ") + 10, "%ld", &tokens);
    sscanf(strstr(row, "\"trained_tokens\": ") + 18, "%ld", &trained);
    cr_assert(trained > 0.8 * tokens && trained < tokens, "trained %ld of %ld tokens", trained, tokens);
    free(t); free(m); free(rp); free(data);
    oh_rmtree(d);
}
