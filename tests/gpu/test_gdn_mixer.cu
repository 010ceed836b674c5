/* test_gdn_mixer.cu: the GDN gates and conv1d + SiLU kernels
 * (kernels/cuda/gdn_mixer.h) against the CPU reference (cpu_gdn_gates_*_f32,
 * cpu_conv1d_silu_*_f32) on the same bf16-rounded inputs.  Plain main(), no
 * Criterion.
 *
 * Per tensor: err = ||ours - ref|| / ||ref|| (Frobenius, in double); pass when
 * err <= tol and every element of both is finite.  Tolerances: 1e-5 for fp32
 * elementwise outputs (beta, g), 1e-2 for bf16 outputs (out, dx, db, da: bf16
 * rounding alone costs ~1.5e-3), 1e-4 for fp32 sums over T (dw, dA_log,
 * ddt_bias).  Outputs are poisoned (NaN) before every run, workspaces filled
 * with garbage.  Also: the backward gives the same bits twice; partial
 * requests (NULL outputs) give the same bits; an empty document changes
 * nothing; a NaN in an input shows exactly where it should and the checker
 * flags it; bad arguments are refused.
 *
 * usage: test_gdn_mixer [--quick] [--bench T]
 *   --quick: two small cases of each op (compute-sanitizer, the CPU emulator);
 *   --bench T: after the checks, time the ops at the 7B shapes with T tokens.
 * Prints "N checks, M failed"; exit status 0 only when everything passed. */
#include "kernels/cuda/gdn_mixer.h"
#include "tests/gpu/gpu_host.h"
extern "C" {
#include "kernels/cpu/cpu_ops.h"
}

#ifndef OH_EMU
#include <cuda_runtime.h>
#endif
#include <cmath>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <vector>

#define MIX_CHECK(expr) LIB_CHECK(expr, gdn_mixer_last_error())

typedef std::vector<float> vecf;
typedef std::vector<uint16_t> vecb;

/* ------------------------------------------------------------------ host utils */

static const uint16_t BF_NAN = 0x7fc0;

static vecb randb(Rng &r, size_t n, double sd) {
    vecb v(n);
    for (auto &x : v) x = f2bf((float)(sd * r.normal()));
    return v;
}

static vecf hcopyb(const uint16_t *d, size_t n) { return widen(hcopy(d, n)); }
template <typename T> static void poison(T *d, size_t n) { CUDA_CHECK(cudaMemset(d, 0xff, n * sizeof(T))); }

/* ------------------------------------------------------------------ checking */

static int g_checks = 0, g_failed = 0;

/* ||x - ref|| / ||ref|| (||x|| when ref is 0); *nonfinite = elements not finite in x or ref. */
static double rel_err(const vecf &x, const vecf &ref, size_t *nonfinite) {
    double num = 0, den = 0;
    size_t nf = 0;
    for (size_t i = 0; i < x.size(); i++) {
        if (!std::isfinite(x[i]) || !std::isfinite(ref[i])) {
            nf++;
            continue;
        }
        const double d = (double)x[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    *nonfinite = nf;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}
static bool acceptable(double err, size_t nonfinite, double tol) { return nonfinite == 0 && err <= tol; }

static void verdict(bool ok, const char *what) {
    g_checks++;
    if (!ok) g_failed++;
    printf("  %-44s %s\n", what, ok ? "ok" : "FAIL");
}
static void check(const std::string &name, const vecf &ours, const vecf &ref, double tol) {
    size_t nf = 0;
    const double e = rel_err(ours, ref, &nf);
    const bool ok = acceptable(e, nf, tol) && ours.size() == ref.size();
    g_checks++;
    if (!ok) g_failed++;
    printf("  %-28s err %.3e  tol %.0e%s  %s\n", name.c_str(), e, tol,
           nf ? (" non-finite " + std::to_string(nf)).c_str() : "", ok ? "ok" : "FAIL");
}
static bool same_bits(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

/* ---------------------------------------------------------------------- gates */

struct GatesCase {
    int T, H, neg;
    uint64_t seed;
};

struct GatesIn {
    vecb b, a;
    vecf A_log, dt_bias, dbeta, dg;
};

static GatesIn gates_inputs(const GatesCase &c) {
    Rng r(c.seed);
    const size_t n = (size_t)c.T * c.H;
    GatesIn in;
    in.b = randb(r, n, 2.0);
    in.a = randb(r, n, 2.0);
    for (size_t i = 0; i < n; i += 13) in.a[i] = f2bf(r.uniform() < 0.5 ? 24.f : -40.f); /* softplus branches */
    in.A_log.resize(c.H);
    in.dt_bias.resize(c.H);
    for (int h = 0; h < c.H; h++) {
        in.A_log[h] = (float)log(1.0 + 15.0 * r.uniform());
        in.dt_bias[h] = (float)(0.5 * r.normal());
    }
    in.dbeta.resize(n);
    in.dg.resize(n);
    for (size_t i = 0; i < n; i++) {
        in.dbeta[i] = (float)r.normal();
        in.dg[i] = (float)r.normal();
    }
    return in;
}

struct GatesDev {
    uint16_t *b, *a, *db, *da;
    float *A_log, *dt_bias, *dbeta, *dg, *beta, *g, *dA, *ddt;
    void *ws;
    size_t ws_bytes;
};

static GatesDev gates_upload(const GatesCase &c, const GatesIn &in) {
    const size_t n = (size_t)c.T * c.H;
    GatesDev d;
    d.b = dcopy(in.b);
    d.a = dcopy(in.a);
    d.A_log = dcopy(in.A_log);
    d.dt_bias = dcopy(in.dt_bias);
    d.dbeta = dcopy(in.dbeta);
    d.dg = dcopy(in.dg);
    d.beta = dalloc<float>(n);
    d.g = dalloc<float>(n);
    d.db = dalloc<uint16_t>(n);
    d.da = dalloc<uint16_t>(n);
    d.dA = dalloc<float>(c.H);
    d.ddt = dalloc<float>(c.H);
    d.ws_bytes = gdn_mixer_gates_bwd_workspace_bytes(c.T, c.H);
    d.ws = dalloc<char>(d.ws_bytes);
    return d;
}
static void gates_free(GatesDev &d) {
    for (void *p : {(void *)d.b, (void *)d.a, (void *)d.A_log, (void *)d.dt_bias, (void *)d.dbeta, (void *)d.dg,
                    (void *)d.beta, (void *)d.g, (void *)d.db, (void *)d.da, (void *)d.dA, (void *)d.ddt, d.ws})
        CUDA_CHECK(cudaFree(p));
}

struct GatesOut {
    vecf beta, g, db, da, dA, ddt;
};
static GatesOut gates_run(const GatesCase &c, GatesDev &d) {
    const size_t n = (size_t)c.T * c.H;
    poison(d.beta, n);
    poison(d.g, n);
    poison(d.db, n);
    poison(d.da, n);
    poison(d.dA, c.H);
    poison(d.ddt, c.H);
    CUDA_CHECK(cudaMemset(d.ws, 0x7f, d.ws_bytes));
    MIX_CHECK(gdn_mixer_gates_fwd(d.beta, d.g, d.b, d.a, d.A_log, d.dt_bias, c.T, c.H, c.neg, nullptr));
    MIX_CHECK(gdn_mixer_gates_bwd(d.db, d.da, d.dA, d.ddt, d.dbeta, d.dg, d.b, d.a, d.A_log, d.dt_bias, c.T, c.H,
                                  c.neg, d.ws, d.ws_bytes, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    GatesOut o;
    o.beta = hcopy(d.beta, n);
    o.g = hcopy(d.g, n);
    o.db = hcopyb(d.db, n);
    o.da = hcopyb(d.da, n);
    o.dA = hcopy(d.dA, c.H);
    o.ddt = hcopy(d.ddt, c.H);
    return o;
}

static void test_gates(const GatesCase &c) {
    printf("[gates T=%d H=%d allow_neg_eigval=%d]\n", c.T, c.H, c.neg);
    const size_t n = (size_t)c.T * c.H;
    GatesIn in = gates_inputs(c);
    vecf b = widen(in.b), a = widen(in.a);
    GatesOut ref;
    ref.beta.assign(n, 0.f);
    ref.g.assign(n, 0.f);
    ref.db.assign(n, 0.f);
    ref.da.assign(n, 0.f);
    ref.dA.assign(c.H, 0.f);
    ref.ddt.assign(c.H, 0.f);
    cpu_gdn_gates_fwd_f32(ref.beta.data(), ref.g.data(), b.data(), a.data(), in.A_log.data(), in.dt_bias.data(), c.T,
                          c.H, c.neg);
    cpu_gdn_gates_bwd_f32(ref.db.data(), ref.da.data(), ref.dA.data(), ref.ddt.data(), in.dbeta.data(), in.dg.data(),
                          b.data(), a.data(), in.A_log.data(), in.dt_bias.data(), c.T, c.H, c.neg);

    GatesDev d = gates_upload(c, in);
    GatesOut o = gates_run(c, d);
    check("beta", o.beta, ref.beta, 1e-5);
    check("g", o.g, ref.g, 1e-5);
    check("db (bf16)", o.db, ref.db, 1e-2);
    check("da (bf16)", o.da, ref.da, 1e-2);
    check("dA_log (sum over T)", o.dA, ref.dA, 1e-4);
    check("ddt_bias (sum over T)", o.ddt, ref.ddt, 1e-4);

    GatesOut o2 = gates_run(c, d);
    verdict(same_bits(o.dA.data(), o2.dA.data(), c.H * 4) && same_bits(o.ddt.data(), o2.ddt.data(), c.H * 4) &&
                same_bits(o.da.data(), o2.da.data(), n * 4),
            "backward twice: same bits");

    /* partial requests: beta only; dA_log only (no da, db, ddt_bias) */
    poison(d.beta, n);
    poison(d.dA, c.H);
    MIX_CHECK(gdn_mixer_gates_fwd(d.beta, nullptr, d.b, nullptr, nullptr, nullptr, c.T, c.H, c.neg, nullptr));
    MIX_CHECK(gdn_mixer_gates_bwd(nullptr, nullptr, d.dA, nullptr, nullptr, d.dg, nullptr, d.a, d.A_log, d.dt_bias,
                                  c.T, c.H, c.neg, d.ws, d.ws_bytes, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    vecf pb = hcopy(d.beta, n), pA = hcopy(d.dA, c.H);
    verdict(same_bits(pb.data(), o.beta.data(), n * 4) && same_bits(pA.data(), o.dA.data(), c.H * 4),
            "NULL outputs skipped, the others same bits");

    /* NaN in b[i] and a[i]: beta, g, db, da non-finite there only; dA_log, ddt_bias at head h only */
    if (c.T * c.H >= 3) {
        const size_t i = n / 2;
        const int h = (int)(i % c.H);
        GatesIn bad = in;
        bad.b[i] = BF_NAN;
        bad.a[i] = BF_NAN;
        CUDA_CHECK(cudaMemcpy(d.b, bad.b.data(), n * 2, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(d.a, bad.a.data(), n * 2, cudaMemcpyHostToDevice));
        GatesOut p = gates_run(c, d);
        bool where = true;
        for (size_t j = 0; j < n; j++) {
            const bool want_bad = j == i;
            where = where && (!std::isfinite(p.beta[j]) == want_bad) && (!std::isfinite(p.g[j]) == want_bad) &&
                    (!std::isfinite(p.db[j]) == want_bad) && (!std::isfinite(p.da[j]) == want_bad);
        }
        for (int k = 0; k < c.H; k++)
            where = where && (!std::isfinite(p.dA[k]) == (k == h)) && (!std::isfinite(p.ddt[k]) == (k == h));
        size_t nf = 0;
        const double e = rel_err(p.g, ref.g, &nf);
        verdict(where && !acceptable(e, nf, 1e-5), "NaN in b, a: confined to its element/head, flagged");
        CUDA_CHECK(cudaMemcpy(d.b, in.b.data(), n * 2, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(d.a, in.a.data(), n * 2, cudaMemcpyHostToDevice));
    }
    gates_free(d);
}

/* ----------------------------------------------------------------------- conv */

struct ConvCase {
    const char *name;
    std::vector<int> lens;
    std::vector<int> C;
    int W;
    int misalign; /* x pointers off by one element: the scalar path for any C */
    uint64_t seed;
};

struct ConvData {
    int T, N, n, W;
    std::vector<int32_t> cu;
    std::vector<vecb> x, w, dout;
};

static ConvData conv_inputs(const ConvCase &c) {
    ConvData in;
    in.N = (int)c.lens.size();
    in.n = (int)c.C.size();
    in.W = c.W;
    in.cu.push_back(0);
    for (int l : c.lens) in.cu.push_back(in.cu.back() + l);
    in.T = in.cu.back();
    Rng r(c.seed);
    for (int i = 0; i < in.n; i++) {
        in.x.push_back(randb(r, (size_t)in.T * c.C[i], 1.0));
        in.w.push_back(randb(r, (size_t)c.C[i] * c.W, 0.5));
        in.dout.push_back(randb(r, (size_t)in.T * c.C[i], 1.0));
    }
    return in;
}

struct ConvDev {
    int32_t *cu;
    std::vector<uint16_t *> xbase, x, w, dout, out, dx;
    std::vector<float *> dw;
    void *ws;
    size_t ws_bytes;
};

static ConvDev conv_upload(const ConvCase &c, const ConvData &in) {
    ConvDev d;
    d.cu = dcopy(in.cu);
    for (int i = 0; i < in.n; i++) {
        const size_t nx = (size_t)in.T * c.C[i];
        uint16_t *xb = dalloc<uint16_t>(nx + (c.misalign ? 1 : 0));
        CUDA_CHECK(cudaMemcpy(xb + (c.misalign ? 1 : 0), in.x[i].data(), nx * 2, cudaMemcpyHostToDevice));
        d.xbase.push_back(xb);
        d.x.push_back(xb + (c.misalign ? 1 : 0));
        d.w.push_back(dcopy(in.w[i]));
        d.dout.push_back(dcopy(in.dout[i]));
        d.out.push_back(dalloc<uint16_t>(nx));
        d.dx.push_back(dalloc<uint16_t>(nx));
        d.dw.push_back(dalloc<float>((size_t)c.C[i] * c.W));
    }
    d.ws_bytes = gdn_mixer_conv_bwd_workspace_bytes(in.n, c.C.data(), in.T, in.W);
    d.ws = dalloc<char>(d.ws_bytes);
    return d;
}
static void conv_free(ConvDev &d) {
    CUDA_CHECK(cudaFree(d.cu));
    CUDA_CHECK(cudaFree(d.ws));
    for (size_t i = 0; i < d.x.size(); i++)
        for (void *p : {(void *)d.xbase[i], (void *)d.w[i], (void *)d.dout[i], (void *)d.out[i], (void *)d.dx[i],
                        (void *)d.dw[i]})
            CUDA_CHECK(cudaFree(p));
}

struct ConvOut {
    std::vector<vecf> out, dx, dw;
};

static ConvOut conv_run(const ConvCase &c, const ConvData &in, ConvDev &d, const int32_t *cu, int ndocs) {
    for (int i = 0; i < in.n; i++) {
        poison(d.out[i], (size_t)in.T * c.C[i]);
        poison(d.dx[i], (size_t)in.T * c.C[i]);
        poison(d.dw[i], (size_t)c.C[i] * c.W);
    }
    CUDA_CHECK(cudaMemset(d.ws, 0x7f, d.ws_bytes));
    std::vector<const uint16_t *> x(d.x.begin(), d.x.end()), w(d.w.begin(), d.w.end()),
        dout(d.dout.begin(), d.dout.end());
    MIX_CHECK(gdn_mixer_conv_fwd(in.n, d.out.data(), x.data(), w.data(), c.C.data(), cu, ndocs, in.T, in.W, nullptr));
    MIX_CHECK(gdn_mixer_conv_bwd(in.n, d.dx.data(), d.dw.data(), dout.data(), x.data(), w.data(), c.C.data(), cu,
                                 ndocs, in.T, in.W, d.ws, d.ws_bytes, nullptr));
    CUDA_CHECK(cudaDeviceSynchronize());
    ConvOut o;
    for (int i = 0; i < in.n; i++) {
        o.out.push_back(hcopyb(d.out[i], (size_t)in.T * c.C[i]));
        o.dx.push_back(hcopyb(d.dx[i], (size_t)in.T * c.C[i]));
        o.dw.push_back(hcopy(d.dw[i], (size_t)c.C[i] * c.W));
    }
    return o;
}

static bool same_out(const ConvOut &a, const ConvOut &b) {
    for (size_t i = 0; i < a.out.size(); i++)
        if (!same_bits(a.out[i].data(), b.out[i].data(), a.out[i].size() * 4) ||
            !same_bits(a.dx[i].data(), b.dx[i].data(), a.dx[i].size() * 4) ||
            !same_bits(a.dw[i].data(), b.dw[i].data(), a.dw[i].size() * 4))
            return false;
    return true;
}

static void test_conv(const ConvCase &c) {
    ConvData in = conv_inputs(c);
    bool vec = !c.misalign;
    std::string cs;
    for (int ch : c.C) {
        vec = vec && ch % 8 == 0;
        cs += (cs.empty() ? "" : ",") + std::to_string(ch);
    }
    printf("[conv %s: T=%d docs=%d W=%d C=%s, %s path]\n", c.name, in.T, in.N, c.W, cs.c_str(),
           vec ? "16-byte" : "scalar");
    ConvOut ref;
    for (int i = 0; i < in.n; i++) {
        const size_t nx = (size_t)in.T * c.C[i];
        vecf x = widen(in.x[i]), w = widen(in.w[i]), dout = widen(in.dout[i]);
        vecf out(nx, 0.f), dx(nx, 0.f), dw((size_t)c.C[i] * c.W, 0.f);
        cpu_conv1d_silu_fwd_f32(out.data(), x.data(), w.data(), in.cu.data(), in.N, in.T, c.C[i], c.W);
        cpu_conv1d_silu_bwd_f32(dx.data(), dw.data(), dout.data(), x.data(), w.data(), in.cu.data(), in.N, in.T,
                                c.C[i], c.W);
        ref.out.push_back(out);
        ref.dx.push_back(dx);
        ref.dw.push_back(dw);
    }
    ConvDev d = conv_upload(c, in);
    ConvOut o = conv_run(c, in, d, d.cu, in.N);
    const char *nm[4] = {"q", "k", "v", "#3"};
    for (int i = 0; i < in.n; i++) {
        const std::string p = in.n > 1 ? std::string(nm[i]) + " " : std::string();
        check(p + "out (bf16)", o.out[i], ref.out[i], 1e-2);
        check(p + "dx (bf16)", o.dx[i], ref.dx[i], 1e-2);
        check(p + "dw (sum over T)", o.dw[i], ref.dw[i], 1e-4);
    }
    ConvOut o2 = conv_run(c, in, d, d.cu, in.N);
    verdict(same_out(o, o2), "twice: same bits");

    /* an empty document inserted after the first changes nothing */
    {
        std::vector<int32_t> cu2 = in.cu;
        cu2.insert(cu2.begin() + 1, cu2[1]);
        int32_t *dcu2 = dcopy(cu2);
        ConvOut o3 = conv_run(c, in, d, dcu2, in.N + 1);
        verdict(same_out(o, o3), "an empty document: same bits");
        CUDA_CHECK(cudaFree(dcu2));
    }

    /* dx only, then dw only: same bits as both */
    {
        std::vector<const uint16_t *> x(d.x.begin(), d.x.end()), w(d.w.begin(), d.w.end()),
            dout(d.dout.begin(), d.dout.end());
        std::vector<float *> dw0(in.n, nullptr);
        std::vector<uint16_t *> dx0(in.n, nullptr);
        dw0[0] = d.dw[0];
        for (int i = 0; i < in.n; i++) {
            poison(d.dx[i], (size_t)in.T * c.C[i]);
            poison(d.dw[i], (size_t)c.C[i] * c.W);
        }
        MIX_CHECK(gdn_mixer_conv_bwd(in.n, d.dx.data(), nullptr, dout.data(), x.data(), w.data(), c.C.data(), d.cu,
                                     in.N, in.T, in.W, nullptr, 0, nullptr));
        MIX_CHECK(gdn_mixer_conv_bwd(in.n, dx0.data(), dw0.data(), dout.data(), x.data(), w.data(), c.C.data(), d.cu,
                                     in.N, in.T, in.W, d.ws, d.ws_bytes, nullptr));
        CUDA_CHECK(cudaDeviceSynchronize());
        bool ok = same_bits(hcopy(d.dw[0], (size_t)c.C[0] * c.W).data(), o.dw[0].data(), o.dw[0].size() * 4);
        for (int i = 0; i < in.n; i++)
            ok = ok && same_bits(hcopyb(d.dx[i], (size_t)in.T * c.C[i]).data(), o.dx[i].data(), o.dx[i].size() * 4);
        verdict(ok, "dx only / dw only: same bits");
    }

    /* NaN in x[t*, c*] of the last conv: out non-finite exactly at rows t* .. t*+W-1 of its document,
     * channel c*; the checker flags it. */
    {
        const int i = in.n - 1, C = c.C[i];
        int doc = in.N / 2;
        while (doc > 0 && in.cu[doc + 1] - in.cu[doc] < 2) doc--;
        const int ts = (in.cu[doc] + in.cu[doc + 1]) / 2, cs_ = C / 2 + (C > 1);
        const int cstar = cs_ < C ? cs_ : C - 1;
        vecb bad = in.x[i];
        bad[(size_t)ts * C + cstar] = BF_NAN;
        CUDA_CHECK(cudaMemcpy(d.x[i], bad.data(), bad.size() * 2, cudaMemcpyHostToDevice));
        ConvOut p = conv_run(c, in, d, d.cu, in.N);
        bool where = true;
        for (int t = 0; t < in.T; t++)
            for (int ch = 0; ch < C; ch++) {
                const bool want = ch == cstar && t >= ts && t < ts + c.W && t < in.cu[doc + 1];
                where = where && (!std::isfinite(p.out[i][(size_t)t * C + ch]) == want);
            }
        size_t nf = 0;
        const double e = rel_err(p.out[i], ref.out[i], &nf);
        verdict(where && !acceptable(e, nf, 1e-2), "NaN in x: confined to its window, flagged");
        CUDA_CHECK(cudaMemcpy(d.x[i], in.x[i].data(), bad.size() * 2, cudaMemcpyHostToDevice));
    }
    conv_free(d);
}

/* ------------------------------------------------------------ argument checks */

static void test_args() {
    printf("[argument checks]\n");
    int32_t *cu = dcopy(std::vector<int32_t>{0, 16});
    uint16_t *x = dalloc<uint16_t>(16 * 8), *w = dalloc<uint16_t>(8 * 9), *y = dalloc<uint16_t>(16 * 8);
    float *f = dalloc<float>(16 * 8);
    const uint16_t *xs[5] = {x, x, x, x, x}, *ws[5] = {w, w, w, w, w};
    uint16_t *ys[5] = {y, y, y, y, y};
    float *dws[1] = {f};
    int C[5] = {8, 8, 8, 8, 8}, C0[1] = {0};
    bool ok = true;
    ok = ok && gdn_mixer_conv_fwd(1, ys, xs, ws, C, cu, 1, 16, 0, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_conv_fwd(1, ys, xs, ws, C, cu, 1, 16, 9, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_conv_fwd(0, ys, xs, ws, C, cu, 1, 16, 4, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_conv_fwd(5, ys, xs, ws, C, cu, 1, 16, 4, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_conv_fwd(1, ys, xs, ws, C0, cu, 1, 16, 4, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_conv_fwd(1, ys, xs, ws, C, cu, 1, 0, 4, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_conv_fwd(1, ys, xs, ws, C, nullptr, 1, 16, 4, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_conv_bwd(1, ys, dws, nullptr, xs, ws, C, cu, 1, 16, 4, nullptr, 0, nullptr) ==
                   GDN_MIXER_BAD_ARG;
    const size_t need = gdn_mixer_conv_bwd_workspace_bytes(1, C, 16, 4);
    ok = ok && need > 0 && gdn_mixer_conv_bwd_workspace_bytes(1, C, 16, 9) == 0;
    ok = ok && gdn_mixer_conv_bwd(1, ys, dws, xs, xs, ws, C, cu, 1, 16, 4, f, need - 4, nullptr) ==
                   GDN_MIXER_WORKSPACE;
    ok = ok && gdn_mixer_conv_bwd(1, ys, dws, xs, xs, ws, C, cu, 1, 16, 4, nullptr, need, nullptr) ==
                   GDN_MIXER_WORKSPACE;
    ok = ok && gdn_mixer_gates_fwd(f, f, x, x, f, f, 16, 0, 1, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_gates_fwd(f, f, x, nullptr, f, f, 16, 8, 1, nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_gates_bwd(y, y, f, f, f, f, x, x, f, f, 16, 8, 1, nullptr, 0, nullptr) ==
                   GDN_MIXER_WORKSPACE;
    ok = ok && gdn_mixer_gates_bwd(y, nullptr, nullptr, nullptr, nullptr, f, x, x, f, f, 16, 8, 1, nullptr, 0,
                                   nullptr) == GDN_MIXER_BAD_ARG;
    ok = ok && gdn_mixer_last_error()[0] != 0;
    verdict(ok, "bad arguments refused with the right status");
    for (void *p : {(void *)cu, (void *)x, (void *)w, (void *)y, (void *)f}) CUDA_CHECK(cudaFree(p));
}

/* ------------------------------------------------------------------ --bench */

/* Time of fn per call (ms), over `iters` calls after a warm-up, with CUDA events. */
template <typename F> static float time_ms(F fn, int iters) {
    fn();
    CUDA_CHECK(cudaDeviceSynchronize());
    cudaEvent_t a, b;
    CUDA_CHECK(cudaEventCreate(&a));
    CUDA_CHECK(cudaEventCreate(&b));
    CUDA_CHECK(cudaEventRecord(a, 0));
    for (int i = 0; i < iters; i++) fn();
    CUDA_CHECK(cudaEventRecord(b, 0));
    CUDA_CHECK(cudaEventSynchronize(b));
    float ms = 0.f;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
    CUDA_CHECK(cudaEventDestroy(a));
    CUDA_CHECK(cudaEventDestroy(b));
    return ms / iters;
}

/* The 7B shapes at T tokens in 4 documents: gates (H 30) and the q, k, v convs in one launch.
 * GB/s counts the compulsory traffic (each tensor read or written once; workspace included). */
static void bench(int T) {
    const int H = 30, W = 4, n = 3;
    int C[3] = {2880, 2880, 5760};
    printf("[bench T=%d: gates H=%d; convs C=2880,2880,5760 W=%d in one launch]\n", T, H, W);
    std::vector<int32_t> cu = {0, T / 4, T / 2, 3 * (T / 4), T};
    int32_t *dcu = dcopy(cu);
    Rng r(99);
    const size_t ng = (size_t)T * H;
    uint16_t *b = dcopy(randb(r, ng, 1.0)), *a = dcopy(randb(r, ng, 1.0)), *db = dalloc<uint16_t>(ng),
             *da = dalloc<uint16_t>(ng);
    float *A_log = dcopy(vecf(H, 0.5f)), *dtb = dcopy(vecf(H, 0.1f)), *beta = dalloc<float>(ng),
          *g = dalloc<float>(ng), *dA = dalloc<float>(H), *ddt = dalloc<float>(H);
    CUDA_CHECK(cudaMemset(beta, 0, ng * 4));
    CUDA_CHECK(cudaMemset(g, 0, ng * 4));
    const size_t gws = gdn_mixer_gates_bwd_workspace_bytes(T, H);
    void *gw = dalloc<char>(gws);
    const float gf = time_ms([&] { MIX_CHECK(gdn_mixer_gates_fwd(beta, g, b, a, A_log, dtb, T, H, 1, nullptr)); }, 50);
    const float gb = time_ms([&] {
        MIX_CHECK(gdn_mixer_gates_bwd(db, da, dA, ddt, beta, g, b, a, A_log, dtb, T, H, 1, gw, gws, nullptr));
    }, 50);
    printf("  gates fwd %8.1f us  %6.0f GB/s\n", gf * 1e3, ng * 12 / (gf * 1e6));
    printf("  gates bwd %8.1f us  %6.0f GB/s\n", gb * 1e3, (ng * 16 + gws * 2) / (gb * 1e6));

    std::vector<uint16_t *> x, w, y, dy, dx;
    std::vector<float *> dw;
    size_t elems = 0;
    for (int i = 0; i < n; i++) {
        const size_t nx = (size_t)T * C[i];
        elems += nx;
        x.push_back(dcopy(randb(r, nx, 1.0)));
        w.push_back(dcopy(randb(r, (size_t)C[i] * W, 0.5)));
        y.push_back(dalloc<uint16_t>(nx));
        dy.push_back(dcopy(randb(r, nx, 1.0)));
        dx.push_back(dalloc<uint16_t>(nx));
        dw.push_back(dalloc<float>((size_t)C[i] * W));
    }
    std::vector<const uint16_t *> xc(x.begin(), x.end()), wc(w.begin(), w.end()), dyc(dy.begin(), dy.end());
    const size_t cws = gdn_mixer_conv_bwd_workspace_bytes(n, C, T, W);
    void *cw = dalloc<char>(cws);
    const float cf = time_ms([&] {
        MIX_CHECK(gdn_mixer_conv_fwd(n, y.data(), xc.data(), wc.data(), C, dcu, 4, T, W, nullptr));
    }, 50);
    const float cb = time_ms([&] {
        MIX_CHECK(gdn_mixer_conv_bwd(n, dx.data(), dw.data(), dyc.data(), xc.data(), wc.data(), C, dcu, 4, T, W, cw,
                                     cws, nullptr));
    }, 50);
    printf("  conv fwd  %8.1f us  %6.0f GB/s\n", cf * 1e3, elems * 4 / (cf * 1e6));
    printf("  conv bwd  %8.1f us  %6.0f GB/s  (workspace %.1f MB)\n", cb * 1e3, (elems * 6 + cws * 2) / (cb * 1e6),
           cws / 1e6);
    for (int i = 0; i < n; i++)
        for (void *p : {(void *)x[i], (void *)w[i], (void *)y[i], (void *)dy[i], (void *)dx[i], (void *)dw[i]})
            CUDA_CHECK(cudaFree(p));
    for (void *p : {(void *)dcu, (void *)b, (void *)a, (void *)db, (void *)da, (void *)A_log, (void *)dtb,
                    (void *)beta, (void *)g, (void *)dA, (void *)ddt, gw, cw})
        CUDA_CHECK(cudaFree(p));
}

/* ----------------------------------------------------------------------- main */

int main(int argc, char **argv) {
    bool quick = false;
    int bench_T = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--bench") && i + 1 < argc)
            bench_T = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--bench T]\n", argv[0]);
            return 2;
        }
    }
#ifndef OH_EMU
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    printf("device: %s, sm_%d%d, %d SMs\n", p.name, p.major, p.minor, p.multiProcessorCount);
#endif
    printf("rule: err = ||ours - ref|| / ||ref|| against the CPU reference (fp32, on the same bf16 inputs);\n"
           "      pass when err <= tol and nothing is NaN/inf\n");
    std::vector<GatesCase> gates = {{1, 1, 1, 1},       {37, 7, 0, 2},      {777, 30, 1, 3},
                                    {4099, 30, 1, 4},   {4099, 33, 0, 5},   {20000, 30, 1, 6}};
    std::vector<ConvCase> convs = {
        {"one-token", {1}, {37}, 4, 0, 11},
        {"short-docs", {1, 5, 1, 30}, {13}, 2, 0, 12},
        {"vec-small", {1, 40, 36}, {16, 24}, 4, 0, 13},
        {"7b-q", {100, 1, 1, 675}, {2880}, 4, 0, 14},
        {"7b-qkv", {1, 1000, 3, 1, 2000, 64, 29, 1001}, {2880, 2880, 5760}, 4, 0, 15},
        {"width-1", {777}, {40, 24}, 1, 0, 16},
        {"mixed-C", {2, 2000, 1, 2096}, {2880, 37}, 2, 0, 17},
        {"width-3", {10, 20}, {8}, 3, 0, 18},
        {"width-8", {3, 297, 1}, {16}, 8, 0, 19},
        {"misaligned-x", {50, 1, 200}, {64}, 4, 1, 20},
        {"long", {7000, 1, 12999}, {24, 40, 16, 8}, 4, 0, 21},
    };
    if (quick) {
        gates = {{37, 7, 1, 2}, {300, 33, 0, 5}};
        convs = {convs[1], convs[2]};
    }
    for (const GatesCase &c : gates) test_gates(c);
    for (const ConvCase &c : convs) test_conv(c);
    test_args();
    printf("%d checks, %d failed\n", g_checks, g_failed);
    if (bench_T > 0) bench(bench_T);
    return g_failed ? 1 : 0;
}
