/* optim.h: AdamW with decoupled weight decay, learning-rate schedules and
 * gradient clipping by global norm, on flat fp32 buffers (CPU backend).
 *
 * Parameters, gradients and the two moments share one layout: n floats,
 * split into groups that say whether weight decay applies. */
#ifndef OH_OPTIM_H
#define OH_OPTIM_H

#include <stddef.h>
#include <stdbool.h>
#include "util/util.h"

typedef struct oh_adamw_cfg {
    double lr;            /* peak learning rate */
    double beta1, beta2;  /* 0.9, 0.95 for Olmo recipes */
    double eps;           /* 1e-8 */
    double weight_decay;  /* decoupled: w -= lr * wd * w */
} oh_adamw_cfg;

typedef struct oh_span { size_t offset, n; bool decay; } oh_span;

/* One AdamW step at learning rate lr, step number t (1-based) for the bias
 * correction, over the spans. m, v are updated in place. */
void oh_adamw_step(float *w, const float *g, float *m, float *v, const oh_span *spans, int nspans,
                   const oh_adamw_cfg *c, double lr, long t);

/* sqrt(sum g^2) over the spans, accumulated in double. */
double oh_grad_norm(const float *g, const oh_span *spans, int nspans);
/* Scale gradients so their global norm is at most max_norm; returns the norm
 * before clipping. max_norm <= 0 disables clipping. */
double oh_clip_grad_norm(float *g, const oh_span *spans, int nspans, double max_norm);

typedef enum oh_sched_kind { SCHED_CONSTANT, SCHED_LINEAR, SCHED_COSINE, SCHED_WSD } oh_sched_kind;

typedef struct oh_schedule {
    oh_sched_kind kind;
    double peak_lr;
    long warmup_steps;   /* linear warmup from 0 to peak over these steps */
    long total_steps;
    double min_lr_ratio; /* final lr = peak * ratio (linear, cosine, wsd) */
    double decay_frac;   /* wsd: fraction of total steps spent decaying at the end */
} oh_schedule;

/* The learning rate of optimizer step `step` (0-based, the first update is
 * step 0). Warmup: lr = peak * (step + 1) / warmup_steps. */
double oh_schedule_lr(const oh_schedule *s, long step);
/* "constant", "linear", "cosine", "wsd" -> kind; -1 if unknown. */
int oh_schedule_parse(const char *name, oh_sched_kind *out);

#endif
