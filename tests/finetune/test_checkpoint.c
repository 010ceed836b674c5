#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "finetune/checkpoint.h"

static void small_model(oh_model *m) {
    oh_config c;
    oh_err e;
    cr_assert_eq(oh_config_preset(&c, "tiny", &e), 0);
    c.vocab_size = 4096; /* a few MB per checkpoint so a write takes a while */
    oh_model_build(m, &c, true);
}

static void fill(oh_model *m, float *m1, float *m2, long step) {
    for (size_t i = 0; i < m->nfloats; i++) { m->w[i] = (float)step; m1[i] = (float)step + 0.5f; m2[i] = (float)step + 0.25f; }
}

Test(checkpoint, save_load_and_keep_last) {
    oh_model m;
    small_model(&m);
    float *m1 = calloc(m.nfloats, 4), *m2 = calloc(m.nfloats, 4);
    char dir[] = "/tmp/oh_ckpt_XXXXXX";
    cr_assert(mkdtemp(dir));
    oh_err e;
    for (long s = 1; s <= 4; s++) {
        fill(&m, m1, m2, s);
        ckpt_state st = {.step = s, .tokens = 100 * s, .data_pos = {1, 2, 3, (uint64_t)s, 0xdeadbeefcafef00dull}};
        oh_rng_seed(&st.rng, (uint64_t)s);
        snprintf(st.method, sizeof st.method, "full");
        cr_assert_eq(ckpt_save(dir, &st, &m, NULL, m1, m2, 2, &e), 0, "%s", e.msg);
    }
    char *latest = ckpt_latest(dir);
    cr_assert(latest && strstr(latest, "step-00000004"), "%s", latest ? latest : "(none)");
    char *old = oh_sprintf("%s/checkpoints/step-00000002", dir), *kept = oh_sprintf("%s/checkpoints/step-00000003", dir);
    cr_assert(!oh_file_exists(old), "keep_last = 2 should have removed step 2");
    cr_assert(oh_file_exists(kept));
    ckpt_state st;
    cr_assert_eq(ckpt_read_state(latest, &st, &e), 0, "%s", e.msg);
    cr_assert_eq(st.step, 4);
    cr_assert_eq(st.data_pos[4], 0xdeadbeefcafef00dull);
    oh_rng r4;
    oh_rng_seed(&r4, 4);
    cr_assert_eq(memcmp(&st.rng, &r4, sizeof r4), 0);
    fill(&m, m1, m2, 0);
    cr_assert_eq(ckpt_load(latest, &m, NULL, m1, m2, &e), 0, "%s", e.msg);
    cr_assert_eq(m.w[0], 4.0f);
    cr_assert_eq(m1[m.nfloats - 1], 4.5f);
    cr_assert_eq(m2[7], 4.25f);
    free(latest); free(old); free(kept);
    oh_rmtree(dir);
    free(m1); free(m2);
    oh_model_free(&m);
}

Test(checkpoint, killed_writer_leaves_previous_intact) {
    oh_model m;
    small_model(&m);
    float *m1 = calloc(m.nfloats, 4), *m2 = calloc(m.nfloats, 4);
    char dir[] = "/tmp/oh_ckpt_kill_XXXXXX";
    cr_assert(mkdtemp(dir));
    oh_err e;
    fill(&m, m1, m2, 1);
    ckpt_state st = {.step = 1};
    snprintf(st.method, sizeof st.method, "full");
    cr_assert_eq(ckpt_save(dir, &st, &m, NULL, m1, m2, 1000, &e), 0, "%s", e.msg);
    for (int round = 0; round < 5; round++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (long s = 2;; s++) { /* keep writing until killed */
                fill(&m, m1, m2, s);
                ckpt_state cs = {.step = s};
                snprintf(cs.method, sizeof cs.method, "full");
                ckpt_save(dir, &cs, &m, NULL, m1, m2, 1000, NULL);
            }
        }
        usleep(20000 + 7000 * round);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        /* the newest complete checkpoint loads, and holds exactly its own step's values */
        char *latest = ckpt_latest(dir);
        cr_assert(latest);
        ckpt_state ls;
        cr_assert_eq(ckpt_read_state(latest, &ls, &e), 0, "%s", e.msg);
        fill(&m, m1, m2, 0);
        cr_assert_eq(ckpt_load(latest, &m, NULL, m1, m2, &e), 0, "round %d: %s", round, e.msg);
        for (size_t i = 0; i < m.nfloats; i += 997) {
            cr_assert_eq(m.w[i], (float)ls.step, "round %d: torn checkpoint %s", round, latest);
            cr_assert_eq(m2[i], (float)ls.step + 0.25f);
        }
        free(latest);
    }
    oh_rmtree(dir);
    free(m1); free(m2);
    oh_model_free(&m);
}
