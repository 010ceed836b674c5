#include <criterion/criterion.h>
#include <math.h>

#include "finetune/optim.h"

Test(optim, adamw_matches_hand_computed_step) {
    /* two steps of AdamW by hand (torch.optim.AdamW semantics) */
    float w[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.1f, -0.3f, 2.0f}, m[3] = {0}, v[3] = {0};
    oh_span sp[2] = {{0, 2, true}, {2, 1, false}};
    oh_adamw_cfg c = {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.01};
    double W[3] = {1.0, -2.0, 0.5}, M[3] = {0}, V[3] = {0};
    for (int t = 1; t <= 2; t++) {
        oh_adamw_step(w, g, m, v, sp, 2, &c, 0.1, t);
        for (int i = 0; i < 3; i++) {
            M[i] = 0.9 * M[i] + 0.1 * g[i];
            V[i] = 0.95 * V[i] + 0.05 * (double)g[i] * g[i];
            double mh = M[i] / (1 - pow(0.9, t)), vh = V[i] / (1 - pow(0.95, t));
            double wd = i < 2 ? 0.01 : 0.0;
            W[i] = W[i] * (1 - 0.1 * wd) - 0.1 * mh / (sqrt(vh) + 1e-8);
        }
    }
    for (int i = 0; i < 3; i++) cr_assert_float_eq(w[i], W[i], 1e-6, "w[%d] %.8f vs %.8f", i, w[i], W[i]);
    /* first step of Adam moves each weight by ~lr in the direction of -sign(g) */
    cr_assert(w[2] < 0.5f - 0.15f);
}

Test(optim, clip_by_global_norm) {
    float g[4] = {3, 0, 0, 4};
    oh_span sp[2] = {{0, 2, true}, {2, 2, true}};
    double n = oh_clip_grad_norm(g, sp, 2, 1.0);
    cr_assert_float_eq(n, 5.0, 1e-9);
    cr_assert_float_eq(oh_grad_norm(g, sp, 2), 1.0, 1e-5);
    cr_assert_float_eq(g[0], 0.6f, 1e-5);
    float h[2] = {0.3f, 0.4f};
    oh_span s1 = {0, 2, true};
    oh_clip_grad_norm(h, &s1, 1, 1.0); /* below the limit: unchanged */
    cr_assert_eq(h[0], 0.3f);
}

Test(optim, schedules) {
    oh_schedule s = {.kind = SCHED_LINEAR, .peak_lr = 1.0, .warmup_steps = 10, .total_steps = 110, .min_lr_ratio = 0.0};
    cr_assert_float_eq(oh_schedule_lr(&s, 0), 0.1, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 9), 1.0, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 10), 1.0, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 60), 0.5, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 110), 0.0, 1e-12);
    s.kind = SCHED_COSINE;
    s.min_lr_ratio = 0.1;
    cr_assert_float_eq(oh_schedule_lr(&s, 10), 1.0, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 60), 0.55, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 110), 0.1, 1e-12);
    s.kind = SCHED_CONSTANT;
    cr_assert_float_eq(oh_schedule_lr(&s, 100), 1.0, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 4), 0.5, 1e-12);
    s = (oh_schedule){.kind = SCHED_WSD, .peak_lr = 2.0, .warmup_steps = 0, .total_steps = 100, .decay_frac = 0.2};
    cr_assert_float_eq(oh_schedule_lr(&s, 0), 2.0, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 79), 2.0, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 89), 1.0, 1e-12);
    cr_assert_float_eq(oh_schedule_lr(&s, 99), 0.0, 1e-12);
    /* monotone decay after warmup */
    s = (oh_schedule){.kind = SCHED_COSINE, .peak_lr = 1.0, .warmup_steps = 5, .total_steps = 50};
    for (long t = 5; t < 50; t++) cr_assert(oh_schedule_lr(&s, t + 1) <= oh_schedule_lr(&s, t));
    oh_sched_kind k;
    cr_assert_eq(oh_schedule_parse("wsd", &k), 0);
    cr_assert_eq(k, SCHED_WSD);
    cr_assert_eq(oh_schedule_parse("cosin", &k), -1);
}
