/* Tests of the CPU reference ops (kernels/cpu/cpu_ops.h).
 *
 * Every backward is checked against central finite differences of the f64
 * forward: with a random projection L = sum(dout * out), the analytic
 * gradient of every input element is compared to (L(x+h) - L(x-h)) / 2h,
 * relative error ||a - b|| / ||b|| < 1e-6.  Gradient buffers start at G0,
 * not 0, so the checks also verify that every gradient accumulates (+=).
 * Forward semantics are checked against naive restatements written here, and
 * packing against each document run alone.  OH_TEST_VERBOSE=1 prints every
 * error measured. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_ops.h"

#define FD_H 1e-5
#define FD_TOL 1e-6
#define G0 0.25 /* initial value of every gradient buffer */

/* ---- helpers ---- */

typedef struct {
    uint64_t s;
} rng_t;

static double urand(rng_t *r) { /* splitmix64 -> [0, 1) */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (double)(z >> 11) * 0x1p-53;
}

/* test allocations: zeroed, released after each test by the suite's fini */
static void *allocs[256];
static int nallocs;

static void *talloc(size_t n, size_t size) {
    cr_assert(nallocs < (int)(sizeof allocs / sizeof *allocs));
    void *p = calloc(n ? n : 1, size);
    cr_assert(p);
    return allocs[nallocs++] = p;
}

static void free_all(void) {
    while (nallocs > 0) free(allocs[--nallocs]);
}

TestSuite(cpu_ops, .fini = free_all);

static double *dalloc(size_t n) { return talloc(n, sizeof(double)); }
static float *falloc(size_t n) { return talloc(n, sizeof(float)); }

static double *rnd(size_t n, rng_t *r, double lo, double hi) {
    double *p = dalloc(n);
    for (size_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * urand(r);
    return p;
}

static double *galloc(size_t n) {
    double *p = dalloc(n);
    for (size_t i = 0; i < n; i++) p[i] = G0;
    return p;
}

static void gfix(double *g, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] -= G0;
}

static double dotn(const double *a, const double *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static double norm(const double *a, size_t n) { return sqrt(dotn(a, a, n)); }

/* ||a - b|| / ||b|| (absolute when b is zero) */
static double rel(const double *a, const double *b, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e += (a[i] - b[i]) * (a[i] - b[i]);
        m += b[i] * b[i];
    }
    return m > 0 ? sqrt(e / m) : sqrt(e);
}

static double relf(const float *a, const double *b, size_t n) {
    double e = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        m += b[i] * b[i];
    }
    return m > 0 ? sqrt(e / m) : sqrt(e);
}

static float *tof(const double *x, size_t n) {
    float *p = falloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (float)x[i];
    return p;
}

static float *fgalloc(size_t n) {
    float *p = falloc(n);
    for (size_t i = 0; i < n; i++) p[i] = (float)G0;
    return p;
}

static void fgfix(float *g, size_t n) {
    for (size_t i = 0; i < n; i++) g[i] -= (float)G0;
}

static int verbose(void) {
    const char *v = getenv("OH_TEST_VERBOSE");
    return v && *v && *v != '0';
}

typedef double (*loss_fn)(void *ctx);

/* central finite differences of f over every element of x, against ana */
static void fd_check(const char *name, loss_fn f, void *ctx, double *x, size_t n, const double *ana) {
    double *fd = dalloc(n);
    for (size_t i = 0; i < n; i++) {
        double xi = x[i];
        x[i] = xi + FD_H;
        double lp = f(ctx);
        x[i] = xi - FD_H;
        double lm = f(ctx);
        x[i] = xi;
        fd[i] = (lp - lm) / (2 * FD_H);
    }
    double e = rel(ana, fd, n);
    if (verbose()) fprintf(stderr, "fd %-26s n=%5zu |grad|=%9.3e rel=%.2e\n", name, n, norm(fd, n), e);
    cr_expect(norm(fd, n) > 0, "%s: zero gradient, the check is vacuous", name);
    cr_expect(e < FD_TOL, "%s: relative error %.3e", name, e);
}

/* f32 twin of an f64 result */
static void agree(const char *name, const float *a, const double *b, size_t n, double tol) {
    double e = relf(a, b, n);
    if (verbose()) fprintf(stderr, "f32/f64 %-21s rel=%.2e\n", name, e);
    cr_expect(e < tol, "%s: f32 vs f64 relative error %.3e", name, e);
}

/* three documents of awkward lengths 1, 5, 13 */
static const int32_t CU3[] = {0, 1, 6, 19};

/* ---- elementwise ---- */

Test(cpu_ops, add_acc) {
    double a[5] = {1, 2, 3, 4, 5}, b[5] = {0.5, -1, 2, 0, 7}, y[5];
    cpu_add_f64(y, a, b, 5);
    for (int i = 0; i < 5; i++) cr_expect_eq(y[i], a[i] + b[i]);
    cpu_add_f64(a, a, b, 5); /* aliasing */
    for (int i = 0; i < 5; i++) cr_expect_eq(a[i], y[i]);
    cpu_acc_f64(y, b, 5);
    for (int i = 0; i < 5; i++) cr_expect_eq(y[i], a[i] + b[i]);
    float fa[3] = {1, 2, 3}, fb[3] = {1, 1, 1}, fy[3];
    cpu_add_f32(fy, fa, fb, 3);
    cpu_acc_f32(fy, fb, 3);
    for (int i = 0; i < 3; i++) cr_expect_eq(fy[i], fa[i] + 2);
}

/* ---- linear ---- */

typedef struct {
    int T, I, O;
    double *in, *W, *out, *dout;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    cpu_linear_fwd_f64(c->out, c->in, c->W, c->T, c->I, c->O);
    return dotn(c->dout, c->out, (size_t)c->T * c->O);
}

Test(cpu_ops, linear) {
    rng_t r = {1};
    lin_ctx c = {.T = 7, .I = 5, .O = 3};
    int T = c.T, I = c.I, O = c.O;
    c.in = rnd(T * I, &r, -1, 1), c.W = rnd(O * I, &r, -1, 1), c.out = dalloc(T * O);
    c.dout = rnd(T * O, &r, -1, 1);
    lin_loss(&c);
    for (int t = 0; t < T; t++)
        for (int o = 0; o < O; o++) {
            double s = 0;
            for (int i = 0; i < I; i++) s += c.in[t * I + i] * c.W[o * I + i];
            cr_expect(fabs(c.out[t * O + o] - s) < 1e-12);
        }
    double *din = galloc(T * I), *dW = galloc(O * I);
    cpu_linear_bwd_f64(din, dW, c.dout, c.in, c.W, T, I, O);
    gfix(din, T * I), gfix(dW, O * I);
    fd_check("linear din", lin_loss, &c, c.in, T * I, din);
    fd_check("linear dW", lin_loss, &c, c.W, O * I, dW);
    lin_loss(&c); /* the FD left a perturbed forward in c.out */
    /* NULL gradients are skipped */
    double *din2 = galloc(T * I);
    cpu_linear_bwd_f64(din2, NULL, c.dout, c.in, c.W, T, I, O);
    gfix(din2, T * I);
    cr_expect(rel(din2, din, T * I) < 1e-15);
    /* f32 */
    float *fin = tof(c.in, T * I), *fW = tof(c.W, O * I), *fdo = tof(c.dout, T * O), *fout = falloc(T * O);
    float *fdin = fgalloc(T * I), *fdW = fgalloc(O * I);
    cpu_linear_fwd_f32(fout, fin, fW, T, I, O);
    cpu_linear_bwd_f32(fdin, fdW, fdo, fin, fW, T, I, O);
    fgfix(fdin, T * I), fgfix(fdW, O * I);
    agree("linear out", fout, c.out, T * O, 1e-5);
    agree("linear din", fdin, din, T * I, 1e-5);
    agree("linear dW", fdW, dW, O * I, 1e-5);
}

/* ---- embedding ---- */

typedef struct {
    int T, C;
    const int32_t *ids;
    double *E, *out, *dout;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    cpu_embedding_fwd_f64(c->out, c->ids, c->E, c->T, c->C);
    return dotn(c->dout, c->out, (size_t)c->T * c->C);
}

Test(cpu_ops, embedding) {
    rng_t r = {2};
    enum { NV = 6, C = 4, T = 9 };
    static const int32_t ids[T] = {3, 2, 0, 3, 5, 2, 2, 1, 3};
    emb_ctx c = {.T = T, .C = C, .ids = ids};
    c.E = rnd(NV * C, &r, -1, 1), c.out = dalloc(T * C), c.dout = rnd(T * C, &r, -1, 1);
    emb_loss(&c);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < C; j++) cr_expect_eq(c.out[t * C + j], c.E[ids[t] * C + j]);
    double *dE = galloc(NV * C);
    cpu_embedding_bwd_f64(dE, c.dout, ids, T, C, -1);
    gfix(dE, NV * C);
    fd_check("embedding dE", emb_loss, &c, c.E, NV * C, dE);
    /* pad_id 2: its row gets no gradient, the others are unchanged */
    double *dEp = galloc(NV * C);
    cpu_embedding_bwd_f64(dEp, c.dout, ids, T, C, 2);
    gfix(dEp, NV * C);
    for (int v = 0; v < NV; v++)
        for (int j = 0; j < C; j++) cr_expect_eq(dEp[v * C + j], v == 2 ? 0.0 : dE[v * C + j]);
    cr_expect(norm(dE + 2 * C, C) > 0);
}

/* ---- RMSNorm ---- */

typedef struct {
    int N, C;
    double eps, *x, *w, *out, *dout;
} rms_ctx;

static double rms_loss(void *p) {
    rms_ctx *c = p;
    cpu_rmsnorm_fwd_f64(c->out, NULL, c->x, c->w, c->N, c->C, c->eps);
    return dotn(c->dout, c->out, (size_t)c->N * c->C);
}

Test(cpu_ops, rmsnorm) {
    rng_t r = {3};
    rms_ctx c = {.N = 5, .C = 7, .eps = 1e-2}; /* a large eps so that its term matters */
    int N = c.N, C = c.C;
    c.x = rnd(N * C, &r, -1, 1), c.w = rnd(C, &r, 0.5, 1.5), c.out = dalloc(N * C), c.dout = rnd(N * C, &r, -1, 1);
    double *rstd = dalloc(N);
    cpu_rmsnorm_fwd_f64(c.out, rstd, c.x, c.w, N, C, c.eps);
    for (int n = 0; n < N; n++) {
        double ms = 0;
        for (int j = 0; j < C; j++) ms += c.x[n * C + j] * c.x[n * C + j] / C;
        cr_expect(fabs(rstd[n] - 1 / sqrt(ms + c.eps)) < 1e-12);
        for (int j = 0; j < C; j++)
            cr_expect(fabs(c.out[n * C + j] - c.w[j] * c.x[n * C + j] / sqrt(ms + c.eps)) < 1e-12);
    }
    double *dx = galloc(N * C), *dw = galloc(C);
    cpu_rmsnorm_bwd_f64(dx, dw, c.dout, c.x, c.w, rstd, N, C);
    gfix(dx, N * C), gfix(dw, C);
    fd_check("rmsnorm dx", rms_loss, &c, c.x, N * C, dx);
    fd_check("rmsnorm dw", rms_loss, &c, c.w, C, dw);
    rms_loss(&c);
    float *fx = tof(c.x, N * C), *fw = tof(c.w, C), *fdo = tof(c.dout, N * C), *fo = falloc(N * C),
          *frs = falloc(N), *fdx = fgalloc(N * C), *fdw = fgalloc(C);
    cpu_rmsnorm_fwd_f32(fo, frs, fx, fw, N, C, c.eps);
    cpu_rmsnorm_bwd_f32(fdx, fdw, fdo, fx, fw, frs, N, C);
    fgfix(fdx, N * C), fgfix(fdw, C);
    agree("rmsnorm out", fo, c.out, N * C, 1e-6);
    agree("rmsnorm dx", fdx, dx, N * C, 1e-5);
    agree("rmsnorm dw", fdw, dw, C, 1e-5);
}

/* ---- gated RMSNorm ---- */

typedef struct {
    int N, V;
    double *x, *gate, *w, *out, *dout;
} grms_ctx;

static double grms_loss(void *p) {
    grms_ctx *c = p;
    cpu_gated_rmsnorm_fwd_f64(c->out, NULL, c->x, c->gate, c->w, c->N, c->V, 1e-5);
    return dotn(c->dout, c->out, (size_t)c->N * c->V);
}

Test(cpu_ops, gated_rmsnorm) {
    rng_t r = {4};
    grms_ctx c = {.N = 6, .V = 5};
    int N = c.N, V = c.V;
    c.x = rnd(N * V, &r, -1, 1), c.gate = rnd(N * V, &r, -4, 4), c.w = rnd(V, &r, 0.5, 1.5);
    c.out = dalloc(N * V), c.dout = rnd(N * V, &r, -1, 1);
    double *rstd = dalloc(N);
    cpu_gated_rmsnorm_fwd_f64(c.out, rstd, c.x, c.gate, c.w, N, V, 1e-5);
    for (int n = 0; n < N; n++) {
        double ms = 0;
        for (int j = 0; j < V; j++) ms += c.x[n * V + j] * c.x[n * V + j] / V;
        for (int j = 0; j < V; j++) {
            double gt = c.gate[n * V + j], want = c.w[j] * c.x[n * V + j] / sqrt(ms + 1e-5) * gt / (1 + exp(-gt));
            cr_expect(fabs(c.out[n * V + j] - want) < 1e-12);
        }
    }
    double *dx = galloc(N * V), *dg = galloc(N * V), *dw = galloc(V);
    cpu_gated_rmsnorm_bwd_f64(dx, dg, dw, c.dout, c.x, c.gate, c.w, rstd, N, V);
    gfix(dx, N * V), gfix(dg, N * V), gfix(dw, V);
    fd_check("gated_rmsnorm dx", grms_loss, &c, c.x, N * V, dx);
    fd_check("gated_rmsnorm dgate", grms_loss, &c, c.gate, N * V, dg);
    fd_check("gated_rmsnorm dw", grms_loss, &c, c.w, V, dw);
    grms_loss(&c);
    float *fx = tof(c.x, N * V), *fg = tof(c.gate, N * V), *fw = tof(c.w, V), *fdo = tof(c.dout, N * V),
          *fo = falloc(N * V), *frs = falloc(N), *fdx = fgalloc(N * V), *fdg = fgalloc(N * V),
          *fdw = fgalloc(V);
    cpu_gated_rmsnorm_fwd_f32(fo, frs, fx, fg, fw, N, V, 1e-5);
    cpu_gated_rmsnorm_bwd_f32(fdx, fdg, fdw, fdo, fx, fg, fw, frs, N, V);
    fgfix(fdx, N * V), fgfix(fdg, N * V), fgfix(fdw, V);
    agree("gated_rmsnorm out", fo, c.out, N * V, 1e-6);
    agree("gated_rmsnorm dx", fdx, dx, N * V, 1e-5);
    agree("gated_rmsnorm dgate", fdg, dg, N * V, 1e-5);
    agree("gated_rmsnorm dw", fdw, dw, V, 1e-5);
}

/* ---- RoPE ---- */

typedef struct {
    int T, H, D;
    const int32_t *pos;
    double theta, *x, *out, *dout;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->T * c->H * c->D;
    memcpy(c->out, c->x, n * sizeof(double));
    cpu_rope_fwd_f64(c->out, c->pos, c->T, c->H, c->D, c->theta);
    return dotn(c->dout, c->out, n);
}

Test(cpu_ops, rope) {
    rng_t r = {5};
    enum { T = 6, H = 3, D = 8 };
    static const int32_t pos[T] = {0, 1, 2, 7, 40, 1000};
    rope_ctx c = {.T = T, .H = H, .D = D, .pos = pos, .theta = 10000.0};
    size_t n = T * H * D;
    c.x = rnd(n, &r, -1, 1), c.out = dalloc(n), c.dout = rnd(n, &r, -1, 1);
    rope_loss(&c);
    /* forward: rotate-half with the fp32 angles of transformers */
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < D / 2; i++) {
                float inv = 1.0f / powf(10000.0f, (float)(2 * i) / (float)D);
                float ang = (float)pos[t] * inv;
                double cs = (float)cos(ang), sn = (float)sin(ang);
                const double *x = c.x + (t * H + h) * D;
                const double *o = c.out + (t * H + h) * D;
                cr_expect(fabs(o[i] - (x[i] * cs - x[i + D / 2] * sn)) < 1e-15);
                cr_expect(fabs(o[i + D / 2] - (x[i + D / 2] * cs + x[i] * sn)) < 1e-15);
                /* and close to the exact double angle at small positions */
                if (pos[t] < 50) {
                    double a = pos[t] * pow(10000.0, -2.0 * i / D);
                    cr_expect(fabs(o[i] - (x[i] * cos(a) - x[i + D / 2] * sin(a))) < 1e-5);
                }
            }
    /* position 0 is the identity */
    for (int j = 0; j < H * D; j++) cr_expect_eq(c.out[j], c.x[j]);
    double *dx = dalloc(n);
    memcpy(dx, c.dout, n * sizeof(double));
    cpu_rope_bwd_f64(dx, pos, T, H, D, c.theta);
    fd_check("rope dx", rope_loss, &c, c.x, n, dx);
    rope_loss(&c);
    /* the backward undoes the forward (a rotation) */
    double *y = dalloc(n);
    memcpy(y, c.out, n * sizeof(double));
    cpu_rope_bwd_f64(y, pos, T, H, D, c.theta);
    cr_expect(rel(y, c.x, n) < 1e-7); /* cos/sin are rounded through float */
    float *fx = tof(c.x, n), *fd = tof(c.dout, n);
    cpu_rope_fwd_f32(fx, pos, T, H, D, c.theta);
    cpu_rope_bwd_f32(fd, pos, T, H, D, c.theta);
    agree("rope out", fx, c.out, n, 1e-6);
    agree("rope dx", fd, dx, n, 1e-6);
}

/* ---- attention ---- */

typedef struct {
    const int32_t *cu;
    int ndocs, T, Hq, Hkv, D;
    double scale, *q, *k, *v, *out, *lse, *dout;
} attn_ctx;

static double attn_loss(void *p) {
    attn_ctx *c = p;
    cpu_attention_fwd_f64(c->out, c->lse, c->q, c->k, c->v, c->cu, c->ndocs, c->T, c->Hq, c->Hkv, c->D, c->scale);
    return dotn(c->dout, c->out, (size_t)c->T * c->Hq * c->D);
}

static attn_ctx attn_make(rng_t *r) {
    attn_ctx c = {.cu = CU3, .ndocs = 3, .T = 19, .Hq = 4, .Hkv = 2, .D = 3};
    c.scale = 1.0 / sqrt((double)c.D);
    size_t nq = (size_t)c.T * c.Hq * c.D, nk = (size_t)c.T * c.Hkv * c.D;
    c.q = rnd(nq, r, -2, 2), c.k = rnd(nk, r, -2, 2), c.v = rnd(nk, r, -1, 1);
    c.out = dalloc(nq), c.lse = dalloc((size_t)c.T * c.Hq), c.dout = rnd(nq, r, -1, 1);
    return c;
}

Test(cpu_ops, attention_matches_naive_softmax) {
    rng_t r = {6};
    attn_ctx c = attn_make(&r);
    attn_loss(&c);
    int Hq = c.Hq, Hkv = c.Hkv, D = c.D;
    for (int d = 0; d < c.ndocs; d++)
        for (int t = c.cu[d]; t < c.cu[d + 1]; t++)
            for (int h = 0; h < Hq; h++) {
                int g = h * Hkv / Hq; /* GQA: consecutive query heads share a kv head */
                double p[32], z = 0, o[8] = {0};
                for (int s = c.cu[d]; s <= t; s++) {
                    double x = 0;
                    for (int i = 0; i < D; i++) x += c.q[(t * Hq + h) * D + i] * c.k[(s * Hkv + g) * D + i];
                    p[s - c.cu[d]] = exp(x * c.scale);
                    z += p[s - c.cu[d]];
                }
                for (int s = c.cu[d]; s <= t; s++)
                    for (int i = 0; i < D; i++) o[i] += p[s - c.cu[d]] / z * c.v[(s * Hkv + g) * D + i];
                for (int i = 0; i < D; i++) cr_expect(fabs(c.out[(t * Hq + h) * D + i] - o[i]) < 1e-12);
                cr_expect(fabs(c.lse[t * Hq + h] - log(z)) < 1e-12);
            }
    /* the first token of a document sees only itself */
    for (int h = 0; h < Hq; h++)
        for (int i = 0; i < D; i++) cr_expect(fabs(c.out[(6 * Hq + h) * D + i] - c.v[(6 * Hkv + h / 2) * D + i]) < 1e-14);
}

Test(cpu_ops, attention_packing) {
    rng_t r = {7};
    attn_ctx c = attn_make(&r);
    attn_loss(&c);
    int Hq = c.Hq, Hkv = c.Hkv, D = c.D;
    for (int d = 0; d < c.ndocs; d++) {
        int t0 = c.cu[d], L = c.cu[d + 1] - t0;
        int32_t cu1[2] = {0, L};
        double *o = dalloc(L * Hq * D), *l = dalloc(L * Hq);
        cpu_attention_fwd_f64(o, l, c.q + t0 * Hq * D, c.k + t0 * Hkv * D, c.v + t0 * Hkv * D, cu1, 1, L, Hq, Hkv, D,
                              c.scale);
        cr_expect(rel(o, c.out + t0 * Hq * D, L * Hq * D) < 1e-15, "doc %d", d);
        cr_expect(rel(l, c.lse + t0 * Hq, L * Hq) < 1e-15, "doc %d", d);
    }
}

Test(cpu_ops, attention_backward) {
    rng_t r = {8};
    attn_ctx c = attn_make(&r);
    size_t nq = (size_t)c.T * c.Hq * c.D, nk = (size_t)c.T * c.Hkv * c.D;
    attn_loss(&c);
    double *dq = galloc(nq), *dk = galloc(nk), *dv = galloc(nk);
    cpu_attention_bwd_f64(dq, dk, dv, c.dout, c.out, c.lse, c.q, c.k, c.v, c.cu, c.ndocs, c.T, c.Hq, c.Hkv, c.D, c.scale);
    gfix(dq, nq), gfix(dk, nk), gfix(dv, nk);
    fd_check("attention dq", attn_loss, &c, c.q, nq, dq);
    fd_check("attention dk", attn_loss, &c, c.k, nk, dk);
    fd_check("attention dv", attn_loss, &c, c.v, nk, dv);
    attn_loss(&c);
    /* NULL gradients are skipped, the others unchanged */
    double *dk2 = galloc(nk);
    cpu_attention_bwd_f64(NULL, dk2, NULL, c.dout, c.out, c.lse, c.q, c.k, c.v, c.cu, c.ndocs, c.T, c.Hq, c.Hkv, c.D,
                          c.scale);
    gfix(dk2, nk);
    cr_expect(rel(dk2, dk, nk) < 1e-15);
    /* f32 */
    float *fq = tof(c.q, nq), *fk = tof(c.k, nk), *fv = tof(c.v, nk), *fdo = tof(c.dout, nq), *fo = falloc(nq),
          *fl = falloc(c.T * c.Hq), *fdq = fgalloc(nq), *fdk = fgalloc(nk), *fdv = fgalloc(nk);
    cpu_attention_fwd_f32(fo, fl, fq, fk, fv, c.cu, c.ndocs, c.T, c.Hq, c.Hkv, c.D, c.scale);
    cpu_attention_bwd_f32(fdq, fdk, fdv, fdo, fo, fl, fq, fk, fv, c.cu, c.ndocs, c.T, c.Hq, c.Hkv, c.D, c.scale);
    fgfix(fdq, nq), fgfix(fdk, nk), fgfix(fdv, nk);
    agree("attention out", fo, c.out, nq, 1e-6);
    agree("attention lse", fl, c.lse, c.T * c.Hq, 1e-6);
    agree("attention dq", fdq, dq, nq, 1e-5);
    agree("attention dk", fdk, dk, nk, 1e-5);
    agree("attention dv", fdv, dv, nk, 1e-5);
}

/* ---- conv1d + SiLU ---- */

typedef struct {
    const int32_t *cu;
    int ndocs, T, C, K;
    double *x, *w, *out, *dout;
} conv_ctx;

static double conv_loss(void *p) {
    conv_ctx *c = p;
    cpu_conv1d_silu_fwd_f64(c->out, c->x, c->w, c->cu, c->ndocs, c->T, c->C, c->K);
    return dotn(c->dout, c->out, (size_t)c->T * c->C);
}

Test(cpu_ops, conv1d_silu) {
    rng_t r = {9};
    conv_ctx c = {.cu = CU3, .ndocs = 3, .T = 19, .C = 3, .K = 4};
    int T = c.T, C = c.C, K = c.K;
    c.x = rnd(T * C, &r, -2, 2), c.w = rnd(C * K, &r, -1, 1), c.out = dalloc(T * C), c.dout = rnd(T * C, &r, -1, 1);
    conv_loss(&c);
    /* naive: each document left-padded with K-1 zeros */
    for (int d = 0; d < c.ndocs; d++) {
        int t0 = c.cu[d], L = c.cu[d + 1] - t0;
        double *pad = dalloc((L + K - 1) * C);
        memcpy(pad + (K - 1) * C, c.x + t0 * C, L * C * sizeof(double));
        for (int t = 0; t < L; t++)
            for (int ch = 0; ch < C; ch++) {
                double a = 0;
                for (int j = 0; j < K; j++) a += c.w[ch * K + j] * pad[(t + j) * C + ch];
                cr_expect(fabs(c.out[(t0 + t) * C + ch] - a / (1 + exp(-a))) < 1e-14);
            }
        /* packing: the document alone gives the same rows */
        int32_t cu1[2] = {0, L};
        double *o = dalloc(L * C);
        cpu_conv1d_silu_fwd_f64(o, c.x + t0 * C, c.w, cu1, 1, L, C, K);
        cr_expect(rel(o, c.out + t0 * C, L * C) < 1e-15);
    }
    double *dx = galloc(T * C), *dw = galloc(C * K);
    cpu_conv1d_silu_bwd_f64(dx, dw, c.dout, c.x, c.w, c.cu, c.ndocs, T, C, K);
    gfix(dx, T * C), gfix(dw, C * K);
    fd_check("conv1d_silu dx", conv_loss, &c, c.x, T * C, dx);
    fd_check("conv1d_silu dw", conv_loss, &c, c.w, C * K, dw);
    conv_loss(&c);
    float *fx = tof(c.x, T * C), *fw = tof(c.w, C * K), *fdo = tof(c.dout, T * C), *fo = falloc(T * C),
          *fdx = fgalloc(T * C), *fdw = fgalloc(C * K);
    cpu_conv1d_silu_fwd_f32(fo, fx, fw, c.cu, c.ndocs, T, C, K);
    cpu_conv1d_silu_bwd_f32(fdx, fdw, fdo, fx, fw, c.cu, c.ndocs, T, C, K);
    fgfix(fdx, T * C), fgfix(fdw, C * K);
    agree("conv1d_silu out", fo, c.out, T * C, 1e-6);
    agree("conv1d_silu dx", fdx, dx, T * C, 1e-5);
    agree("conv1d_silu dw", fdw, dw, C * K, 1e-5);
}

/* ---- GDN gates ---- */

typedef struct {
    int T, H, neg;
    double *b, *a, *A_log, *dt_bias, *beta, *g, *dbeta, *dg;
} gate_ctx;

static double gate_loss(void *p) {
    gate_ctx *c = p;
    cpu_gdn_gates_fwd_f64(c->beta, c->g, c->b, c->a, c->A_log, c->dt_bias, c->T, c->H, c->neg);
    size_t n = (size_t)c->T * c->H;
    return dotn(c->dbeta, c->beta, n) + dotn(c->dg, c->g, n);
}

Test(cpu_ops, gdn_gates) {
    for (int neg = 0; neg <= 1; neg++) {
        rng_t r = {10 + neg};
        gate_ctx c = {.T = 6, .H = 3, .neg = neg};
        int T = c.T, H = c.H, n = T * H;
        c.b = rnd(n, &r, -4, 4), c.a = rnd(n, &r, -4, 4), c.A_log = rnd(H, &r, -1, 1), c.dt_bias = rnd(H, &r, -1, 1);
        c.a[1 * H + 2] = 30;  /* softplus' linear branch (x > 20) */
        c.a[4 * H + 0] = -15; /* tiny softplus */
        c.beta = dalloc(n), c.g = dalloc(n), c.dbeta = rnd(n, &r, -1, 1), c.dg = rnd(n, &r, -1, 1);
        gate_loss(&c);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                double z = c.a[t * H + h] + c.dt_bias[h], sp = z > 20 ? z : log(1 + exp(z));
                cr_expect(fabs(c.beta[t * H + h] - (neg ? 2.0 : 1.0) / (1 + exp(-c.b[t * H + h]))) < 1e-15);
                cr_expect(fabs(c.g[t * H + h] + exp(c.A_log[h]) * sp) < 1e-13 * (1 + fabs(c.g[t * H + h])));
                cr_expect(c.g[t * H + h] <= 0);
            }
        cr_expect_eq(c.g[1 * H + 2], -exp(c.A_log[2]) * (30 + c.dt_bias[2]));
        double *db = galloc(n), *da = galloc(n), *dA = galloc(H), *ddt = galloc(H);
        cpu_gdn_gates_bwd_f64(db, da, dA, ddt, c.dbeta, c.dg, c.b, c.a, c.A_log, c.dt_bias, T, H, neg);
        gfix(db, n), gfix(da, n), gfix(dA, H), gfix(ddt, H);
        fd_check(neg ? "gdn_gates db (neg)" : "gdn_gates db", gate_loss, &c, c.b, n, db);
        fd_check(neg ? "gdn_gates da (neg)" : "gdn_gates da", gate_loss, &c, c.a, n, da);
        fd_check(neg ? "gdn_gates dA_log (neg)" : "gdn_gates dA_log", gate_loss, &c, c.A_log, H, dA);
        fd_check(neg ? "gdn_gates ddt_bias (neg)" : "gdn_gates ddt_bias", gate_loss, &c, c.dt_bias, H, ddt);
        gate_loss(&c);
        float *fb = tof(c.b, n), *fa = tof(c.a, n), *fA = tof(c.A_log, H), *fdt = tof(c.dt_bias, H),
              *fbeta = falloc(n), *fg = falloc(n), *fdbeta = tof(c.dbeta, n), *fdg = tof(c.dg, n),
              *fdb = fgalloc(n), *fda = fgalloc(n), *fdA = fgalloc(H), *fddt = fgalloc(H);
        cpu_gdn_gates_fwd_f32(fbeta, fg, fb, fa, fA, fdt, T, H, neg);
        cpu_gdn_gates_bwd_f32(fdb, fda, fdA, fddt, fdbeta, fdg, fb, fa, fA, fdt, T, H, neg);
        fgfix(fdb, n), fgfix(fda, n), fgfix(fdA, H), fgfix(fddt, H);
        agree("gdn_gates beta", fbeta, c.beta, n, 1e-6);
        agree("gdn_gates g", fg, c.g, n, 1e-6);
        agree("gdn_gates db", fdb, db, n, 1e-5);
        agree("gdn_gates da", fda, da, n, 1e-5);
        agree("gdn_gates dA_log", fdA, dA, H, 1e-5);
        agree("gdn_gates ddt_bias", fddt, ddt, H, 1e-5);
    }
}

/* ---- l2norm ---- */

typedef struct {
    int N, D;
    double scale, *x, *out, *dout;
} l2_ctx;

static double l2_loss(void *p) {
    l2_ctx *c = p;
    cpu_l2norm_fwd_f64(c->out, NULL, c->x, c->N, c->D, 1e-6, c->scale);
    return dotn(c->dout, c->out, (size_t)c->N * c->D);
}

Test(cpu_ops, l2norm) {
    rng_t r = {12};
    l2_ctx c = {.N = 6, .D = 5, .scale = 1.0 / sqrt(5.0)};
    int N = c.N, D = c.D;
    c.x = rnd(N * D, &r, -1, 1), c.out = dalloc(N * D), c.dout = rnd(N * D, &r, -1, 1);
    double *rn = dalloc(N);
    cpu_l2norm_fwd_f64(c.out, rn, c.x, N, D, 1e-6, c.scale);
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int i = 0; i < D; i++) s += c.x[n * D + i] * c.x[n * D + i];
        cr_expect(fabs(rn[n] - 1 / sqrt(s + 1e-6)) < 1e-12);
        for (int i = 0; i < D; i++) cr_expect(fabs(c.out[n * D + i] - c.x[n * D + i] / sqrt(s + 1e-6) * c.scale) < 1e-14);
    }
    double *dx = galloc(N * D);
    cpu_l2norm_bwd_f64(dx, c.dout, c.x, rn, N, D, c.scale);
    gfix(dx, N * D);
    fd_check("l2norm dx", l2_loss, &c, c.x, N * D, dx);
    l2_loss(&c);
    float *fx = tof(c.x, N * D), *fdo = tof(c.dout, N * D), *fo = falloc(N * D), *frn = falloc(N),
          *fdx = fgalloc(N * D);
    cpu_l2norm_fwd_f32(fo, frn, fx, N, D, 1e-6, c.scale);
    cpu_l2norm_bwd_f32(fdx, fdo, fx, frn, N, D, c.scale);
    fgfix(fdx, N * D);
    agree("l2norm out", fo, c.out, N * D, 1e-6);
    agree("l2norm dx", fdx, dx, N * D, 1e-5);
}

/* ---- gated delta rule ---- */

typedef struct {
    const int32_t *cu;
    int ndocs, T, Hk, Hv, K, V;
    double *q, *k, *v, *g, *beta, *s0, *out, *sf, *dout, *dsf;
} gdn_ctx;

static size_t gdn_nq(const gdn_ctx *c) { return (size_t)c->T * c->Hk * c->K; }
static size_t gdn_nv(const gdn_ctx *c) { return (size_t)c->T * c->Hv * c->V; }
static size_t gdn_nh(const gdn_ctx *c) { return (size_t)c->T * c->Hv; }
static size_t gdn_ns(const gdn_ctx *c) { return (size_t)c->ndocs * c->Hv * c->K * c->V; }

static double gdn_loss(void *p) {
    gdn_ctx *c = p;
    cpu_gdn_fwd_f64(c->out, c->sf, c->q, c->k, c->v, c->g, c->beta, c->s0, c->cu, c->ndocs, c->T, c->Hk, c->Hv, c->K,
                    c->V);
    return dotn(c->dout, c->out, gdn_nv(c)) + (c->sf ? dotn(c->dsf, c->sf, gdn_ns(c)) : 0.0);
}

/* documents 1, 5, 13, 64 (one full chunk) and 70 (crosses a checkpoint) */
static const int32_t CU_GDN[] = {0, 1, 6, 19, 83, 153};

/* random GDN inputs: unit-norm keys, beta in (0, 2), heads 0-1 weak and 2-3
 * strong decay */
static gdn_ctx gdn_make(rng_t *r, const int32_t *cu, int ndocs, int with_state) {
    gdn_ctx c = {.cu = cu, .ndocs = ndocs, .T = cu[ndocs], .Hk = 2, .Hv = 4, .K = 3, .V = 4};
    c.q = rnd(gdn_nq(&c), r, -0.6, 0.6), c.k = rnd(gdn_nq(&c), r, -1, 1), c.v = rnd(gdn_nv(&c), r, -1, 1);
    for (size_t i = 0; i < gdn_nq(&c); i += c.K) {
        double n = norm(c.k + i, c.K);
        for (int j = 0; j < c.K; j++) c.k[i + j] /= n;
    }
    c.g = dalloc(gdn_nh(&c)), c.beta = rnd(gdn_nh(&c), r, 0.05, 1.95);
    for (int t = 0; t < c.T; t++)
        for (int h = 0; h < c.Hv; h++)
            c.g[t * c.Hv + h] = h < 2 ? -0.05 * urand(r) : -1 - 3 * urand(r);
    c.out = dalloc(gdn_nv(&c)), c.dout = rnd(gdn_nv(&c), r, -1, 1);
    if (with_state) {
        c.s0 = rnd(gdn_ns(&c), r, -1, 1), c.sf = dalloc(gdn_ns(&c)), c.dsf = rnd(gdn_ns(&c), r, -1, 1);
    }
    return c;
}

Test(cpu_ops, gdn_matches_recurrence) {
    rng_t r = {13};
    gdn_ctx c = gdn_make(&r, CU_GDN, 5, 1);
    gdn_loss(&c);
    int K = c.K, V = c.V, Hk = c.Hk, Hv = c.Hv;
    double S[3][4], o[4];
    for (int d = 0; d < c.ndocs; d++)
        for (int h = 0; h < Hv; h++) {
            int hk = h * Hk / Hv; /* value heads 0,1 -> key head 0; 2,3 -> 1 */
            for (int i = 0; i < K; i++)
                for (int j = 0; j < V; j++) S[i][j] = c.s0[((d * Hv + h) * K + i) * V + j];
            for (int t = c.cu[d]; t < c.cu[d + 1]; t++) {
                const double *q = c.q + (t * Hk + hk) * K, *k = c.k + (t * Hk + hk) * K, *v = c.v + (t * Hv + h) * V;
                double decay = exp(c.g[t * Hv + h]), b = c.beta[t * Hv + h], u[4];
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++) S[i][j] *= decay;
                for (int j = 0; j < V; j++) {
                    double skj = 0;
                    for (int i = 0; i < K; i++) skj += S[i][j] * k[i];
                    u[j] = b * (v[j] - skj);
                }
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++) S[i][j] += k[i] * u[j];
                for (int j = 0; j < V; j++) {
                    o[j] = 0;
                    for (int i = 0; i < K; i++) o[j] += S[i][j] * q[i];
                    cr_expect(fabs(c.out[(t * Hv + h) * V + j] - o[j]) < 1e-12, "t %d h %d", t, h);
                }
            }
            for (int i = 0; i < K; i++)
                for (int j = 0; j < V; j++) cr_expect(fabs(c.sf[((d * Hv + h) * K + i) * V + j] - S[i][j]) < 1e-12);
        }
}

Test(cpu_ops, gdn_packing_and_state) {
    rng_t r = {14};
    gdn_ctx c = gdn_make(&r, CU_GDN, 5, 0);
    double *sf = dalloc((size_t)c.ndocs * c.Hv * c.K * c.V);
    c.sf = sf, c.dsf = dalloc((size_t)c.ndocs * c.Hv * c.K * c.V);
    gdn_loss(&c);
    int Hk = c.Hk, Hv = c.Hv, K = c.K, V = c.V;
    size_t KV = (size_t)K * V;
    for (int d = 0; d < c.ndocs; d++) {
        int t0 = c.cu[d], L = c.cu[d + 1] - t0;
        int32_t cu1[2] = {0, L};
        double *o = dalloc(L * Hv * V), *s1 = dalloc(Hv * KV), *z = dalloc(Hv * KV);
        /* s0 = NULL is a zero state */
        cpu_gdn_fwd_f64(o, s1, c.q + t0 * Hk * K, c.k + t0 * Hk * K, c.v + t0 * Hv * V, c.g + t0 * Hv, c.beta + t0 * Hv,
                        z, cu1, 1, L, Hk, Hv, K, V);
        cr_expect(rel(o, c.out + t0 * Hv * V, L * Hv * V) < 1e-15, "doc %d", d);
        cr_expect(rel(s1, sf + d * Hv * KV, Hv * KV) < 1e-15, "doc %d", d);
    }
    /* the last document (70 tokens) in two pieces, 33 + 37, carrying the state */
    int t0 = c.cu[4], L = c.cu[5] - t0, L1 = 33, L2 = L - L1;
    int32_t cua[2] = {0, L1}, cub[2] = {0, L2}, cul[2] = {0, L};
    double *oa = dalloc(L1 * Hv * V), *ob = dalloc(L2 * Hv * V), *smid = dalloc(Hv * KV), *send = dalloc(Hv * KV);
#define GDN_SLICE(t) c.q + (t) * Hk * K, c.k + (t) * Hk * K, c.v + (t) * Hv * V, c.g + (t) * Hv, c.beta + (t) * Hv
    cpu_gdn_fwd_f64(oa, smid, GDN_SLICE(t0), NULL, cua, 1, L1, Hk, Hv, K, V);
    cpu_gdn_fwd_f64(ob, send, GDN_SLICE(t0 + L1), smid, cub, 1, L2, Hk, Hv, K, V);
    cr_expect(rel(oa, c.out + t0 * Hv * V, L1 * Hv * V) < 1e-15);
    cr_expect(rel(ob, c.out + (t0 + L1) * Hv * V, L2 * Hv * V) < 1e-14);
    cr_expect(rel(send, sf + 4 * Hv * KV, Hv * KV) < 1e-14);
    /* and the backward in two pieces: ds0 of the second is ds_final of the first */
    const double *dout = c.dout + t0 * Hv * V;
    size_t nq = (size_t)L * Hk * K, nv = (size_t)L * Hv * V, nh = (size_t)L * Hv;
    double *dq = dalloc(nq), *dk = dalloc(nq), *dv = dalloc(nv), *dg = dalloc(nh), *db = dalloc(nh);
    double *dq2 = dalloc(nq), *dk2 = dalloc(nq), *dv2 = dalloc(nv), *dg2 = dalloc(nh), *db2 = dalloc(nh);
    double *dmid = dalloc(Hv * KV);
    cpu_gdn_bwd_f64(dq, dk, dv, dg, db, NULL, dout, NULL, GDN_SLICE(t0), NULL, cul, 1, L, Hk, Hv, K, V);
    cpu_gdn_bwd_f64(dq2 + L1 * Hk * K, dk2 + L1 * Hk * K, dv2 + L1 * Hv * V, dg2 + L1 * Hv, db2 + L1 * Hv, dmid,
                    dout + L1 * Hv * V, NULL, GDN_SLICE(t0 + L1), smid, cub, 1, L2, Hk, Hv, K, V);
    cpu_gdn_bwd_f64(dq2, dk2, dv2, dg2, db2, NULL, dout, dmid, GDN_SLICE(t0), NULL, cua, 1, L1, Hk, Hv, K, V);
#undef GDN_SLICE
    cr_expect(rel(dq2, dq, nq) < 1e-12);
    cr_expect(rel(dk2, dk, nq) < 1e-12);
    cr_expect(rel(dv2, dv, nv) < 1e-12);
    cr_expect(rel(dg2, dg, nh) < 1e-12);
    cr_expect(rel(db2, db, nh) < 1e-12);
}

Test(cpu_ops, gdn_backward) {
    rng_t r = {15};
    gdn_ctx c = gdn_make(&r, CU_GDN, 5, 1);
    size_t nq = gdn_nq(&c), nv = gdn_nv(&c), nh = gdn_nh(&c), ns = gdn_ns(&c);
    double *dq = galloc(nq), *dk = galloc(nq), *dv = galloc(nv), *dg = galloc(nh), *db = galloc(nh), *ds0 = galloc(ns);
    cpu_gdn_bwd_f64(dq, dk, dv, dg, db, ds0, c.dout, c.dsf, c.q, c.k, c.v, c.g, c.beta, c.s0, c.cu, c.ndocs, c.T, c.Hk,
                    c.Hv, c.K, c.V);
    gfix(dq, nq), gfix(dk, nq), gfix(dv, nv), gfix(dg, nh), gfix(db, nh), gfix(ds0, ns);
    fd_check("gdn dq", gdn_loss, &c, c.q, nq, dq);
    fd_check("gdn dk", gdn_loss, &c, c.k, nq, dk);
    fd_check("gdn dv", gdn_loss, &c, c.v, nv, dv);
    fd_check("gdn dg", gdn_loss, &c, c.g, nh, dg);
    fd_check("gdn dbeta", gdn_loss, &c, c.beta, nh, db);
    fd_check("gdn ds0", gdn_loss, &c, c.s0, ns, ds0);
    /* NULL gradients are skipped, the others unchanged */
    double *dv2 = galloc(nv);
    cpu_gdn_bwd_f64(NULL, NULL, dv2, NULL, NULL, NULL, c.dout, c.dsf, c.q, c.k, c.v, c.g, c.beta, c.s0, c.cu, c.ndocs,
                    c.T, c.Hk, c.Hv, c.K, c.V);
    gfix(dv2, nv);
    cr_expect(rel(dv2, dv, nv) < 1e-15);
    /* f32 */
    float *fq = tof(c.q, nq), *fk = tof(c.k, nq), *fv = tof(c.v, nv), *fg = tof(c.g, nh), *fb = tof(c.beta, nh),
          *fs0 = tof(c.s0, ns), *fdo = tof(c.dout, nv), *fdsf = tof(c.dsf, ns), *fo = falloc(nv),
          *fsf = falloc(ns), *fdq = fgalloc(nq), *fdk = fgalloc(nq), *fdv = fgalloc(nv), *fdg = fgalloc(nh),
          *fdb = fgalloc(nh), *fds0 = fgalloc(ns);
    gdn_loss(&c);
    cpu_gdn_fwd_f32(fo, fsf, fq, fk, fv, fg, fb, fs0, c.cu, c.ndocs, c.T, c.Hk, c.Hv, c.K, c.V);
    cpu_gdn_bwd_f32(fdq, fdk, fdv, fdg, fdb, fds0, fdo, fdsf, fq, fk, fv, fg, fb, fs0, c.cu, c.ndocs, c.T, c.Hk, c.Hv,
                    c.K, c.V);
    fgfix(fdq, nq), fgfix(fdk, nq), fgfix(fdv, nv), fgfix(fdg, nh), fgfix(fdb, nh), fgfix(fds0, ns);
    /* the f32 inputs are the f64 ones rounded: compare against f64 run on those */
    double *q2 = dalloc(nq), *k2 = dalloc(nq), *v2 = dalloc(nv), *g2 = dalloc(nh), *b2 = dalloc(nh), *s02 = dalloc(ns);
    for (size_t i = 0; i < nq; i++) q2[i] = fq[i], k2[i] = fk[i];
    for (size_t i = 0; i < nv; i++) v2[i] = fv[i];
    for (size_t i = 0; i < nh; i++) g2[i] = fg[i], b2[i] = fb[i];
    for (size_t i = 0; i < ns; i++) s02[i] = fs0[i];
    gdn_ctx c2 = c;
    c2.q = q2, c2.k = k2, c2.v = v2, c2.g = g2, c2.beta = b2, c2.s0 = s02;
    gdn_loss(&c2);
    double *eq = galloc(nq), *ek = galloc(nq), *ev = galloc(nv), *eg = galloc(nh), *eb = galloc(nh), *es = galloc(ns);
    cpu_gdn_bwd_f64(eq, ek, ev, eg, eb, es, c.dout, c.dsf, q2, k2, v2, g2, b2, s02, c.cu, c.ndocs, c.T, c.Hk, c.Hv, c.K,
                    c.V);
    gfix(eq, nq), gfix(ek, nq), gfix(ev, nv), gfix(eg, nh), gfix(eb, nh), gfix(es, ns);
    agree("gdn out", fo, c2.out, nv, 1e-5);
    agree("gdn s_final", fsf, c2.sf, ns, 1e-5);
    agree("gdn dq", fdq, eq, nq, 1e-5);
    agree("gdn dk", fdk, ek, nq, 1e-5);
    agree("gdn dv", fdv, ev, nv, 1e-5);
    agree("gdn dg", fdg, eg, nh, 1e-5);
    agree("gdn dbeta", fdb, eb, nh, 1e-5);
    agree("gdn ds0", fds0, es, ns, 1e-5);
}

/* a long document: several checkpoints, no initial state */
Test(cpu_ops, gdn_backward_long_document) {
    rng_t r = {16};
    static const int32_t cu[] = {0, 3, 203};
    gdn_ctx c = gdn_make(&r, cu, 2, 0);
    size_t nq = gdn_nq(&c), nv = gdn_nv(&c), nh = gdn_nh(&c);
    double *dq = galloc(nq), *dk = galloc(nq), *dv = galloc(nv), *dg = galloc(nh), *db = galloc(nh);
    cpu_gdn_bwd_f64(dq, dk, dv, dg, db, NULL, c.dout, NULL, c.q, c.k, c.v, c.g, c.beta, NULL, c.cu, c.ndocs, c.T, c.Hk,
                    c.Hv, c.K, c.V);
    gfix(dq, nq), gfix(dk, nq), gfix(dv, nv), gfix(dg, nh), gfix(db, nh);
    fd_check("gdn long dq", gdn_loss, &c, c.q, nq, dq);
    fd_check("gdn long dk", gdn_loss, &c, c.k, nq, dk);
    fd_check("gdn long dv", gdn_loss, &c, c.v, nv, dv);
    fd_check("gdn long dg", gdn_loss, &c, c.g, nh, dg);
    fd_check("gdn long dbeta", gdn_loss, &c, c.beta, nh, db);
}

/* ---- SwiGLU ---- */

typedef struct {
    size_t N;
    double *gate, *up, *out, *dout;
} swi_ctx;

static double swi_loss(void *p) {
    swi_ctx *c = p;
    cpu_swiglu_fwd_f64(c->out, c->gate, c->up, c->N);
    return dotn(c->dout, c->out, c->N);
}

Test(cpu_ops, swiglu) {
    rng_t r = {17};
    swi_ctx c = {.N = 11};
    size_t N = c.N;
    c.gate = rnd(N, &r, -6, 6), c.up = rnd(N, &r, -2, 2), c.out = dalloc(N), c.dout = rnd(N, &r, -1, 1);
    swi_loss(&c);
    for (size_t i = 0; i < N; i++)
        cr_expect(fabs(c.out[i] - c.gate[i] / (1 + exp(-c.gate[i])) * c.up[i]) < 1e-14);
    double *dg = galloc(N), *du = galloc(N);
    cpu_swiglu_bwd_f64(dg, du, c.dout, c.gate, c.up, N);
    gfix(dg, N), gfix(du, N);
    fd_check("swiglu dgate", swi_loss, &c, c.gate, N, dg);
    fd_check("swiglu dup", swi_loss, &c, c.up, N, du);
    swi_loss(&c);
    float *fg = tof(c.gate, N), *fu = tof(c.up, N), *fdo = tof(c.dout, N), *fo = falloc(N), *fdg = fgalloc(N),
          *fdu = fgalloc(N);
    cpu_swiglu_fwd_f32(fo, fg, fu, N);
    cpu_swiglu_bwd_f32(fdg, fdu, fdo, fg, fu, N);
    fgfix(fdg, N), fgfix(fdu, N);
    agree("swiglu out", fo, c.out, N, 1e-6);
    agree("swiglu dgate", fdg, dg, N, 1e-5);
    agree("swiglu dup", fdu, du, N, 1e-5);
}

/* ---- cross-entropy ---- */

typedef struct {
    int T, V;
    const int32_t *target;
    double *logits, *loss, *weight;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    cpu_cross_entropy_fwd_f64(c->loss, c->logits, c->target, c->T, c->V);
    return dotn(c->weight, c->loss, c->T);
}

Test(cpu_ops, cross_entropy) {
    rng_t r = {18};
    enum { T = 6, V = 7 };
    static const int32_t target[T] = {3, -1, 0, 6, -100, 2};
    ce_ctx c = {.T = T, .V = V, .target = target};
    c.logits = rnd(T * V, &r, -3, 3), c.loss = dalloc(T), c.weight = rnd(T, &r, 0.1, 1);
    c.logits[5 * V + 1] = 1000; /* stable logsumexp */
    c.logits[5 * V + 2] = 999;
    for (int t = 0; t < T; t++) c.loss[t] = 123;
    ce_loss(&c);
    for (int t = 0; t < T; t++) {
        if (target[t] < 0) {
            cr_expect_eq(c.loss[t], 0.0);
            continue;
        }
        double m = -INFINITY, s = 0;
        for (int j = 0; j < V; j++) m = fmax(m, c.logits[t * V + j]);
        for (int j = 0; j < V; j++) s += exp(c.logits[t * V + j] - m);
        double want = m + log(s) - c.logits[t * V + target[t]];
        cr_expect(isfinite(c.loss[t]) && fabs(c.loss[t] - want) < 1e-12, "row %d: %g vs %g", t, c.loss[t], want);
    }
    cr_expect(fabs(c.loss[5] - (1 + log1p(exp(-1.0)))) < 1e-9); /* approximately: the other logits are ~e^-1000 */
    c.logits[5 * V + 1] = 2, c.logits[5 * V + 2] = 1;      /* back to ordinary values for the FD */
    double *dl = galloc(T * V);
    cpu_cross_entropy_bwd_f64(dl, c.weight, c.logits, target, T, V);
    gfix(dl, T * V);
    for (int j = 0; j < V; j++) cr_expect_eq(dl[1 * V + j], 0.0); /* untrained rows get nothing */
    fd_check("cross_entropy dlogits", ce_loss, &c, c.logits, T * V, dl);
    float *fl = tof(c.logits, T * V), *fw = tof(c.weight, T), *floss = falloc(T), *fdl = fgalloc(T * V);
    cpu_cross_entropy_fwd_f32(floss, fl, target, T, V);
    cpu_cross_entropy_bwd_f32(fdl, fw, fl, target, T, V);
    fgfix(fdl, T * V);
    ce_loss(&c);
    agree("cross_entropy loss", floss, c.loss, T, 1e-6);
    agree("cross_entropy dlogits", fdl, dl, T * V, 1e-5);
}
