/* emu_gdn.cpp: runs gdn_fwd / gdn_bwd (kernels/cuda/gdn.cu) and the naive
 * variant (kernels/cuda/dev/gdn_naive.cuh) under the CPU emulator and checks
 * them against an independent double-precision reference (sequential
 * recurrence, backpropagation through time, itself checked by finite
 * differences).  No GPU needed.  Build and run: kernels/cuda/dev/emu/run.sh
 *
 *   emu_gdn                 the built-in list of cases, all scheduling policies
 *   emu_gdn T Hk Hv K V ndocs seed [policy]   one case */
#include "kernels/cuda/dev/gdn_naive.cuh"
#include "kernels/cuda/gdn.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

typedef std::vector<double> vec;

static uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------ reference */

struct Shape {
    int T, Hk, Hv, K, V, ndocs;
    std::vector<int> cu;
};

struct Inputs {
    vec q, k, v, g, beta, s0, dout, dsf; /* q, k raw (bf16 values); s0/dsf may be empty */
};

struct Grads {
    vec out, sfin, dq, dk, dv, dg, dbeta, ds0;
};

/* l2norm rows of D: y = x r s, r = 1/sqrt(|x|^2 + eps) */
static void l2n(vec &y, vec &r, const vec &x, int N, int D, double s) {
    y.assign(x.size(), 0);
    r.assign(N, 0);
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int d = 0; d < D; d++) ss += x[(size_t)n * D + d] * x[(size_t)n * D + d];
        r[n] = 1.0 / std::sqrt(ss + 1e-6);
        for (int d = 0; d < D; d++) y[(size_t)n * D + d] = x[(size_t)n * D + d] * r[n] * s;
    }
}
static void l2n_bwd(vec &dx, const vec &dy, const vec &x, const vec &r, int N, int D, double s) {
    dx.assign(x.size(), 0);
    for (int n = 0; n < N; n++) {
        double dot = 0;
        for (int d = 0; d < D; d++) dot += x[(size_t)n * D + d] * r[n] * s * dy[(size_t)n * D + d];
        for (int d = 0; d < D; d++) {
            double y = x[(size_t)n * D + d] * r[n];
            dx[(size_t)n * D + d] = r[n] * (s * dy[(size_t)n * D + d] - y * dot);
        }
    }
}

/* full reference: forward and, when want_grad, backward (BPTT keeping all states) */
static void reference(const Shape &sh, const Inputs &in, Grads &G, bool want_grad) {
    const int T = sh.T, Hk = sh.Hk, Hv = sh.Hv, K = sh.K, V = sh.V, grp = Hv / Hk;
    const double sc = 1.0 / std::sqrt((double)K);
    vec qn, kn, rq, rk;
    l2n(qn, rq, in.q, T * Hk, K, sc);
    l2n(kn, rk, in.k, T * Hk, K, 1.0);
    G.out.assign((size_t)T * Hv * V, 0);
    G.sfin.assign((size_t)sh.ndocs * Hv * K * V, 0);
    vec dqn((size_t)T * Hk * K, 0), dkn((size_t)T * Hk * K, 0);
    G.dv.assign((size_t)T * Hv * V, 0);
    G.dg.assign((size_t)T * Hv, 0);
    G.dbeta.assign((size_t)T * Hv, 0);
    G.ds0.assign((size_t)sh.ndocs * Hv * K * V, 0);
    for (int n = 0; n < sh.ndocs; n++)
        for (int h = 0; h < Hv; h++) {
            const int hk = h / grp, t0 = sh.cu[n], L = sh.cu[n + 1] - t0;
            std::vector<vec> S(L + 1, vec((size_t)K * V, 0));
            std::vector<vec> U(L, vec(V, 0));
            const size_t sb = (((size_t)n * Hv + h) * K) * V;
            if (!in.s0.empty())
                for (int i = 0; i < K * V; i++) S[0][i] = in.s0[sb + i];
            for (int l = 0; l < L; l++) {
                const int t = t0 + l;
                const double *kk = &kn[((size_t)t * Hk + hk) * K], *qq = &qn[((size_t)t * Hk + hk) * K];
                const double dec = std::exp(in.g[(size_t)t * Hv + h]), b = in.beta[(size_t)t * Hv + h];
                vec &Sn = S[l + 1];
                for (int i = 0; i < K * V; i++) Sn[i] = dec * S[l][i];
                for (int vv = 0; vv < V; vv++) {
                    double r = 0;
                    for (int d = 0; d < K; d++) r += Sn[(size_t)d * V + vv] * kk[d];
                    U[l][vv] = b * (in.v[((size_t)t * Hv + h) * V + vv] - r);
                }
                for (int d = 0; d < K; d++)
                    for (int vv = 0; vv < V; vv++) Sn[(size_t)d * V + vv] += kk[d] * U[l][vv];
                for (int vv = 0; vv < V; vv++) {
                    double o = 0;
                    for (int d = 0; d < K; d++) o += Sn[(size_t)d * V + vv] * qq[d];
                    G.out[((size_t)t * Hv + h) * V + vv] = o;
                }
            }
            for (int i = 0; i < K * V; i++) G.sfin[sb + i] = S[L][i];
            if (!want_grad) continue;
            vec dS((size_t)K * V, 0);
            if (!in.dsf.empty())
                for (int i = 0; i < K * V; i++) dS[i] = in.dsf[sb + i];
            for (int l = L - 1; l >= 0; l--) {
                const int t = t0 + l;
                const size_t th = (size_t)t * Hv + h, kq = ((size_t)t * Hk + hk) * K;
                const double *kk = &kn[kq], *qq = &qn[kq];
                const double dec = std::exp(in.g[th]), b = in.beta[th];
                const vec &St = S[l + 1], &Sp = S[l];
                for (int d = 0; d < K; d++)
                    for (int vv = 0; vv < V; vv++) {
                        const double dov = in.dout[th * V + vv];
                        dS[(size_t)d * V + vv] += qq[d] * dov;
                        dqn[kq + d] += St[(size_t)d * V + vv] * dov;
                    }
                double dgt = 0;
                for (int vv = 0; vv < V; vv++) {
                    double du = 0, r = 0;
                    for (int d = 0; d < K; d++) {
                        du += dS[(size_t)d * V + vv] * kk[d];
                        r += dec * Sp[(size_t)d * V + vv] * kk[d];
                    }
                    const double u = U[l][vv], dr = -b * du;
                    G.dv[th * V + vv] = b * du;
                    G.dbeta[th] += du * (in.v[th * V + vv] - r);
                    for (int d = 0; d < K; d++) {
                        const double sp = dec * Sp[(size_t)d * V + vv];
                        dkn[kq + d] += dS[(size_t)d * V + vv] * u + sp * dr;
                        const double dsp = dS[(size_t)d * V + vv] + kk[d] * dr;
                        dgt += dsp * sp;
                        dS[(size_t)d * V + vv] = dec * dsp;
                    }
                }
                G.dg[th] = dgt;
            }
            for (int i = 0; i < K * V; i++) G.ds0[sb + i] = dS[i];
        }
    if (want_grad) {
        l2n_bwd(G.dq, dqn, in.q, rq, T * Hk, K, sc);
        l2n_bwd(G.dk, dkn, in.k, rk, T * Hk, K, 1.0);
    }
}

static double loss_of(const Shape &sh, const Inputs &in) {
    Grads G;
    reference(sh, in, G, false);
    double L = 0;
    for (size_t i = 0; i < G.out.size(); i++) L += G.out[i] * in.dout[i];
    if (!in.dsf.empty())
        for (size_t i = 0; i < G.sfin.size(); i++) L += G.sfin[i] * in.dsf[i];
    return L;
}

/* finite differences of the reference on a tiny case */
static bool check_reference() {
    Shape sh{7, 1, 2, 4, 3, 2, {0, 3, 7}};
    std::mt19937_64 rng(7);
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> ud(0, 1);
    Inputs in;
    auto fill = [&](vec &x, size_t n, double s) {
        x.resize(n);
        for (auto &e : x) e = nd(rng) * s;
    };
    fill(in.q, 7 * 4, 1);
    fill(in.k, 7 * 4, 1);
    fill(in.v, 7 * 2 * 3, 1);
    fill(in.dout, 7 * 2 * 3, 1);
    fill(in.s0, 2 * 2 * 4 * 3, 0.5);
    fill(in.dsf, 2 * 2 * 4 * 3, 1);
    in.g.resize(14);
    in.beta.resize(14);
    for (auto &e : in.g) e = -ud(rng);
    for (auto &e : in.beta) e = 2 * ud(rng);
    Grads G;
    reference(sh, in, G, true);
    double worst = 0;
    auto probe = [&](vec &x, const vec &gr, const char *name) {
        for (size_t i = 0; i < x.size(); i++) {
            const double h = 1e-6, x0 = x[i];
            x[i] = x0 + h;
            double lp = loss_of(sh, in);
            x[i] = x0 - h;
            double lm = loss_of(sh, in);
            x[i] = x0;
            double fd = (lp - lm) / (2 * h), err = std::fabs(fd - gr[i]) / (1e-6 + std::fabs(fd));
            if (err > worst) worst = err;
            if (err > 1e-5) {
                printf("reference FD mismatch %s[%zu]: fd %.9g bptt %.9g\n", name, i, fd, gr[i]);
                return false;
            }
        }
        return true;
    };
    bool ok = probe(in.q, G.dq, "q") && probe(in.k, G.dk, "k") && probe(in.v, G.dv, "v") && probe(in.g, G.dg, "g") &&
              probe(in.beta, G.dbeta, "beta") && probe(in.s0, G.ds0, "s0");
    printf("reference vs finite differences: %s (worst rel %.2e)\n", ok ? "ok" : "FAIL", worst);
    return ok;
}

/* ------------------------------------------------------------ device side */

static double rel(const vec &ref, const std::vector<float> &x, int *nan) {
    double num = 0, den = 0;
    *nan = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        if (!std::isfinite(x[i])) (*nan)++;
        num += (x[i] - ref[i]) * (x[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return std::sqrt(num / (den > 0 ? den : 1));
}

template <typename T> static T *dev_from(const std::vector<T> &h) {
    T *p;
    cudaMalloc(&p, h.size() * sizeof(T) + 16);
    memcpy(p, h.data(), h.size() * sizeof(T));
    return p;
}
template <typename T> static T *dev_poison(size_t n) {
    T *p;
    cudaMalloc(&p, n * sizeof(T) + 16);
    memset(p, 0xff, n * sizeof(T)); /* NaN in bf16 and fp32 */
    return p;
}
static std::vector<float> bf_vec(const uint16_t *p, size_t n) {
    std::vector<float> r(n);
    for (size_t i = 0; i < n; i++) r[i] = bf2f(p[i]);
    return r;
}
static std::vector<float> f_vec(const float *p, size_t n) { return std::vector<float>(p, p + n); }

struct Result {
    std::vector<float> out, sfin, dq, dk, dv, dg, dbeta, ds0;
};

struct DevIn {
    uint16_t *q, *k, *v, *dout;
    float *g, *beta, *s0, *dsf;
    int32_t *cu;
};

static Result run_chunked(const Shape &sh, const DevIn &d, bool reuse) {
    const int T = sh.T, Hk = sh.Hk, Hv = sh.Hv, K = sh.K, V = sh.V, N = sh.ndocs;
    size_t wsb = gdn_workspace_bytes(T, N, Hk, Hv, K, V);
    void *ws;
    cudaMalloc(&ws, wsb);
    memset(ws, 0xff, wsb);
    uint16_t *out = dev_poison<uint16_t>((size_t)T * Hv * V), *dq = dev_poison<uint16_t>((size_t)T * Hk * K),
             *dk = dev_poison<uint16_t>((size_t)T * Hk * K), *dv = dev_poison<uint16_t>((size_t)T * Hv * V);
    float *sfin = dev_poison<float>((size_t)N * Hv * K * V), *ds0 = dev_poison<float>((size_t)N * Hv * K * V),
          *dg = dev_poison<float>((size_t)T * Hv), *db = dev_poison<float>((size_t)T * Hv);
    int r = gdn_fwd(out, sfin, d.q, d.k, d.v, d.g, d.beta, d.s0, d.cu, N, T, Hk, Hv, K, V, ws, wsb, nullptr);
    if (r) printf("gdn_fwd: %d %s\n", r, gdn_last_error());
    r = gdn_bwd(dq, dk, dv, dg, db, ds0, d.dout, d.dsf, d.q, d.k, d.v, d.g, d.beta, d.s0, d.cu, N, T, Hk, Hv, K, V,
                reuse ? 1 : 0, ws, wsb, nullptr);
    if (r) printf("gdn_bwd: %d %s\n", r, gdn_last_error());
    Result R;
    R.out = bf_vec(out, (size_t)T * Hv * V);
    R.sfin = f_vec(sfin, (size_t)N * Hv * K * V);
    R.dq = bf_vec(dq, (size_t)T * Hk * K);
    R.dk = bf_vec(dk, (size_t)T * Hk * K);
    R.dv = bf_vec(dv, (size_t)T * Hv * V);
    R.dg = f_vec(dg, (size_t)T * Hv);
    R.dbeta = f_vec(db, (size_t)T * Hv);
    R.ds0 = f_vec(ds0, (size_t)N * Hv * K * V);
    for (void *p : {(void *)out, (void *)dq, (void *)dk, (void *)dv, (void *)sfin, (void *)ds0, (void *)dg,
                    (void *)db, ws})
        cudaFree(p);
    return R;
}

static Result run_naive(const Shape &sh, const DevIn &d) {
    const int T = sh.T, Hk = sh.Hk, Hv = sh.Hv, K = sh.K, V = sh.V, N = sh.ndocs;
    uint16_t *out = dev_poison<uint16_t>((size_t)T * Hv * V), *dq = dev_poison<uint16_t>((size_t)T * Hk * K),
             *dk = dev_poison<uint16_t>((size_t)T * Hk * K), *dv = dev_poison<uint16_t>((size_t)T * Hv * V);
    float *sfin = dev_poison<float>((size_t)N * Hv * K * V), *ds0 = dev_poison<float>((size_t)N * Hv * K * V),
          *dg = dev_poison<float>((size_t)T * Hv), *db = dev_poison<float>((size_t)T * Hv);
    size_t sb = gdn_naive::bwd_scratch_bytes(sh.cu.data(), N, T, Hv, K, V);
    void *scr;
    cudaMalloc(&scr, sb);
    gdn_naive::fwd(out, sfin, d.q, d.k, d.v, d.g, d.beta, d.s0, d.cu, N, T, Hk, Hv, K, V, nullptr);
    gdn_naive::bwd(dq, dk, dv, dg, db, ds0, d.dout, d.dsf, d.q, d.k, d.v, d.g, d.beta, d.s0, d.cu, sh.cu.data(), N,
                   T, Hk, Hv, K, V, scr, nullptr);
    Result R;
    R.out = bf_vec(out, (size_t)T * Hv * V);
    R.sfin = f_vec(sfin, (size_t)N * Hv * K * V);
    R.dq = bf_vec(dq, (size_t)T * Hk * K);
    R.dk = bf_vec(dk, (size_t)T * Hk * K);
    R.dv = bf_vec(dv, (size_t)T * Hv * V);
    R.dg = f_vec(dg, (size_t)T * Hv);
    R.dbeta = f_vec(db, (size_t)T * Hv);
    R.ds0 = f_vec(ds0, (size_t)N * Hv * K * V);
    for (void *p : {(void *)out, (void *)dq, (void *)dk, (void *)dv, (void *)sfin, (void *)ds0, (void *)dg,
                    (void *)db, scr})
        cudaFree(p);
    return R;
}

static bool same(const Result &a, const Result &b) {
    const char *names[8] = {"out", "s_final", "dq", "dk", "dv", "dg", "dbeta", "ds0"};
    const std::vector<float> *x[8] = {&a.out, &a.sfin, &a.dq, &a.dk, &a.dv, &a.dg, &a.dbeta, &a.ds0};
    const std::vector<float> *y[8] = {&b.out, &b.sfin, &b.dq, &b.dk, &b.dv, &b.dg, &b.dbeta, &b.ds0};
    bool ok = true;
    for (int i = 0; i < 8; i++) {
        size_t nd = 0;
        double md = 0;
        for (size_t j = 0; j < x[i]->size(); j++)
            if (memcmp(&(*x[i])[j], &(*y[i])[j], 4)) {
                nd++;
                md = std::max(md, (double)std::fabs((*x[i])[j] - (*y[i])[j]));
            }
        if (nd) {
            printf("    %s: %zu elements differ (max abs %.3g)\n", names[i], nd, md);
            ok = false;
        }
    }
    return ok;
}

struct Opts {
    double vscale = 1, oscale = 1; /* scale of v and of dout */
    int zero_dout_rows = 0;         /* dout = 0 on the first rows of every document (masked prompt) */
};
static Opts g_opts;

static bool run_case(Shape sh, uint64_t seed, double gmu, bool with_state, int policies, bool naive) {
    const Opts &op = g_opts;
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> nd;
    std::uniform_real_distribution<double> ud(0, 1);
    const int T = sh.T, Hk = sh.Hk, Hv = sh.Hv, K = sh.K, V = sh.V, N = sh.ndocs;
    Inputs in;
    std::vector<uint16_t> qb((size_t)T * Hk * K), kb(qb.size()), vb((size_t)T * Hv * V), dob(vb.size());
    in.q.resize(qb.size());
    in.k.resize(qb.size());
    in.v.resize(vb.size());
    in.dout.resize(vb.size());
    for (size_t i = 0; i < qb.size(); i++) {
        qb[i] = f2bf((float)nd(rng));
        in.q[i] = bf2f(qb[i]);
        kb[i] = f2bf((float)nd(rng));
        in.k[i] = bf2f(kb[i]);
    }
    for (size_t i = 0; i < vb.size(); i++) {
        vb[i] = f2bf((float)(op.vscale * nd(rng)));
        in.v[i] = bf2f(vb[i]);
        const int t = (int)(i / ((size_t)Hv * V));
        int n = 0;
        while (sh.cu[n + 1] <= t) n++;
        const bool masked = t - sh.cu[n] < op.zero_dout_rows;
        dob[i] = masked ? 0 : f2bf((float)(op.oscale * nd(rng)));
        in.dout[i] = bf2f(dob[i]);
    }
    std::vector<float> gf((size_t)T * Hv), bfl(gf.size());
    in.g.resize(gf.size());
    in.beta.resize(gf.size());
    for (size_t i = 0; i < gf.size(); i++) {
        gf[i] = (float)-std::exp(gmu + nd(rng));
        in.g[i] = gf[i];
        bfl[i] = (float)(2 * ud(rng));
        in.beta[i] = bfl[i];
    }
    std::vector<float> s0f, dsff;
    if (with_state) {
        s0f.resize((size_t)N * Hv * K * V);
        dsff.resize(s0f.size());
        in.s0.resize(s0f.size());
        in.dsf.resize(s0f.size());
        for (size_t i = 0; i < s0f.size(); i++) {
            s0f[i] = (float)(0.5 * op.vscale * nd(rng));
            in.s0[i] = s0f[i];
            dsff[i] = (float)(op.oscale * nd(rng));
            in.dsf[i] = dsff[i];
        }
    }
    Grads G;
    reference(sh, in, G, true);
    DevIn d;
    d.q = dev_from(qb);
    d.k = dev_from(kb);
    d.v = dev_from(vb);
    d.dout = dev_from(dob);
    d.g = dev_from(gf);
    d.beta = dev_from(bfl);
    d.s0 = with_state ? dev_from(s0f) : nullptr;
    d.dsf = with_state ? dev_from(dsff) : nullptr;
    d.cu = dev_from(sh.cu);

    printf("case T=%d Hk=%d Hv=%d K=%d V=%d docs=[", T, Hk, Hv, K, V);
    for (int n = 0; n < N; n++) printf("%s%d", n ? "," : "", sh.cu[n + 1] - sh.cu[n]);
    printf("] g~-exp(%g+N) state=%d seed=%llu vscale=%g oscale=%g zero_rows=%d\n", gmu, (int)with_state,
           (unsigned long long)seed, op.vscale, op.oscale, op.zero_dout_rows);
    emu::st().policy = emu::POLICY_FORWARD;
    Result C = run_chunked(sh, d, true);
    Result Nv;
    if (naive) Nv = run_naive(sh, d);
    const char *names[8] = {"out", "s_final", "dq", "dk", "dv", "dg", "dbeta", "ds0"};
    const vec *refs[8] = {&G.out, &G.sfin, &G.dq, &G.dk, &G.dv, &G.dg, &G.dbeta, &G.ds0};
    const std::vector<float> *cs[8] = {&C.out, &C.sfin, &C.dq, &C.dk, &C.dv, &C.dg, &C.dbeta, &C.ds0};
    const std::vector<float> *ns[8] = {&Nv.out, &Nv.sfin, &Nv.dq, &Nv.dk, &Nv.dv, &Nv.dg, &Nv.dbeta, &Nv.ds0};
    bool ok = true;
    for (int i = 0; i < 8; i++) {
        int nanc = 0, nann = 0;
        double ec = rel(*refs[i], *cs[i], &nanc), en = naive ? rel(*refs[i], *ns[i], &nann) : 0;
        bool pass = nanc == 0 && ec <= 1e-2 && std::isfinite(ec);
        printf("  %-8s chunked %.3e%s  naive %.3e%s  ratio %.2f  %s\n", names[i], ec, nanc ? " NaN!" : "", en,
               nann ? " NaN!" : "", en > 0 ? ec / en : 0.0, pass ? "" : "FAIL");
        ok = ok && pass;
    }
    /* recompute path and scheduling policies must give identical bits */
    Result R2 = run_chunked(sh, d, false);
    if (!same(C, R2)) {
        printf("  recompute (ws_has_fwd=0) differs from reuse: FAIL\n");
        ok = false;
    }
    for (int p = 1; p <= policies; p++) {
        emu::st().policy = p == 1 ? emu::POLICY_REVERSE : emu::POLICY_RANDOM;
        emu::st().rng.seed(seed * 31 + p);
        Result Rp = run_chunked(sh, d, true);
        if (!same(C, Rp)) {
            printf("  policy %d gives different bits: RACE\n", p);
            ok = false;
        }
    }
    emu::st().policy = emu::POLICY_FORWARD;
    for (void *p : {(void *)d.q, (void *)d.k, (void *)d.v, (void *)d.dout, (void *)d.g, (void *)d.beta, (void *)d.s0,
                    (void *)d.dsf, (void *)d.cu})
        if (p) cudaFree(p);
    printf("  -> %s\n", ok ? "ok" : "FAIL");
    return ok;
}

static Shape make_shape(int T, int Hk, int Hv, int K, int V, std::vector<int> lens) {
    Shape s{T, Hk, Hv, K, V, (int)lens.size(), {0}};
    for (int l : lens) s.cu.push_back(s.cu.back() + l);
    if (s.cu.back() != T) {
        fprintf(stderr, "lengths do not sum to T\n");
        exit(2);
    }
    return s;
}

int main(int argc, char **argv) {
    bool ok = check_reference();
    if (argc >= 8) {
        int T = atoi(argv[1]), Hk = atoi(argv[2]), Hv = atoi(argv[3]), K = atoi(argv[4]), V = atoi(argv[5]),
            nd = atoi(argv[6]);
        uint64_t seed = strtoull(argv[7], 0, 10);
        int pol = argc > 8 ? atoi(argv[8]) : 2;
        double gmu = argc > 9 ? atof(argv[9]) : -2;
        if (argc > 10) g_opts.vscale = atof(argv[10]);
        if (argc > 11) g_opts.oscale = atof(argv[11]);
        if (argc > 12) g_opts.zero_dout_rows = atoi(argv[12]);
        bool naive = argc > 13 ? atoi(argv[13]) != 0 : true;
        std::mt19937_64 rng(seed);
        std::vector<int> lens(nd, 1);
        for (int i = nd; i < T; i++) lens[rng() % nd]++;
        ok = run_case(make_shape(T, Hk, Hv, K, V, lens), seed, gmu, true, pol, naive) && ok;
    } else {
        ok = run_case(make_shape(1, 1, 1, 16, 16, {1}), 1, -2, false, 2, true) && ok;
        ok = run_case(make_shape(130, 1, 2, 32, 48, {130}), 2, -3, true, 2, true) && ok;
        ok = run_case(make_shape(200, 2, 4, 64, 64, {1, 64, 65, 70}), 3, 0.5, true, 2, true) && ok;
        ok = run_case(make_shape(150, 1, 1, 96, 192, {77, 1, 72}), 4, -2, false, 1, true) && ok;
        ok = run_case(make_shape(100, 2, 2, 128, 80, {36, 64}), 5, -4, true, 1, true) && ok;
        ok = run_case(make_shape(90, 1, 1, 192, 32, {90}), 6, -1, true, 1, true) && ok;
        ok = run_case(make_shape(70, 1, 1, 256, 256, {3, 67}), 7, -2, true, 0, false) && ok;
        ok = run_case(make_shape(65, 1, 1, 48, 16, {65}), 8, -2, true, 1, true) && ok;
        /* 6 chunks in one document (K <= 128): the backward state kernel's dO
         * preparation reaches its steady state (chunk it + 3 copied ahead) */
        ok = run_case(make_shape(330, 1, 2, 64, 64, {330}), 9, -2, true, 2, true) && ok;
    }
    printf("%s\n", ok ? "ALL OK" : "FAILURES");
    return ok ? 0 : 1;
}
