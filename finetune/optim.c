#include "finetune/optim.h"

#include <math.h>
#include <string.h>

void oh_adamw_step(float *w, const float *g, float *m, float *v, const oh_span *spans, int nspans,
                   const oh_adamw_cfg *c, double lr, long t) {
    double b1 = c->beta1, b2 = c->beta2;
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    for (int s = 0; s < nspans; s++) {
        size_t o = spans[s].offset, n = spans[s].n;
        double wd = spans[s].decay ? c->weight_decay : 0.0;
        for (size_t i = o; i < o + n; i++) {
            double gi = g[i];
            double mi = b1 * m[i] + (1.0 - b1) * gi;
            double vi = b2 * v[i] + (1.0 - b2) * gi * gi;
            m[i] = (float)mi;
            v[i] = (float)vi;
            double upd = (mi / bc1) / (sqrt(vi / bc2) + c->eps);
            double wi = w[i];
            wi -= lr * wd * wi;  /* decoupled decay, as torch.optim.AdamW */
            wi -= lr * upd;
            w[i] = (float)wi;
        }
    }
}

double oh_grad_norm(const float *g, const oh_span *spans, int nspans) {
    double s = 0;
    for (int k = 0; k < nspans; k++)
        for (size_t i = spans[k].offset; i < spans[k].offset + spans[k].n; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

double oh_clip_grad_norm(float *g, const oh_span *spans, int nspans, double max_norm) {
    double norm = oh_grad_norm(g, spans, nspans);
    if (max_norm > 0 && norm > max_norm && isfinite(norm)) {
        float scale = (float)(max_norm / (norm + 1e-6)); /* torch's clip_grad_norm_ */
        for (int k = 0; k < nspans; k++)
            for (size_t i = spans[k].offset; i < spans[k].offset + spans[k].n; i++) g[i] *= scale;
    }
    return norm;
}

double oh_schedule_lr(const oh_schedule *s, long step) {
    double peak = s->peak_lr, lo = peak * s->min_lr_ratio;
    if (s->warmup_steps > 0 && step < s->warmup_steps) return peak * (double)(step + 1) / (double)s->warmup_steps;
    if (s->kind == SCHED_CONSTANT) return peak;
    long rest = s->total_steps - s->warmup_steps;
    if (rest <= 0) return peak;
    double p = (double)(step - s->warmup_steps) / (double)rest; /* 0 at the first post-warmup step */
    if (p < 0) p = 0;
    if (p > 1) p = 1;
    switch (s->kind) {
    case SCHED_LINEAR: return lo + (peak - lo) * (1.0 - p);
    case SCHED_COSINE: return lo + (peak - lo) * 0.5 * (1.0 + cos(M_PI * p));
    case SCHED_WSD: {
        long decay_steps = (long)llround(s->decay_frac * (double)s->total_steps);
        long decay_start = s->total_steps - decay_steps;
        if (step < decay_start || decay_steps <= 0) return peak;
        double q = (double)(step - decay_start + 1) / (double)decay_steps;
        if (q > 1) q = 1;
        return lo + (peak - lo) * (1.0 - q);
    }
    default: return peak;
    }
}

int oh_schedule_parse(const char *name, oh_sched_kind *out) {
    static const char *names[] = {"constant", "linear", "cosine", "wsd"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) { *out = (oh_sched_kind)i; return 0; }
    return -1;
}
