// test_ops.cu: every CUDA op of kernels/cuda/{gemm,norms,elementwise,adamw,
// cross_entropy,attention} forward and backward against the CPU reference
// (cpu_*_f32) on random inputs of awkward sizes.  Inputs are drawn in fp32,
// rounded to bf16 where the GPU op takes bf16, and the reference runs on the
// rounded values.  Outputs are poisoned (NaN) before each run, so an element
// left unwritten fails.  Metric: ||got - ref|| / ||ref|| (L2), plus max abs
// error; any NaN/Inf fails.  Prints one table row per check; exit status 1 if
// any check fails.  Needs one CUDA GPU (sm_90).
//
//   test_ops [--seed N] [--only SUBSTR]
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norms.h"

extern "C" {
#include "kernels/cpu/cpu_ops.h"
#include "util/util.h"
}

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <string>
#include <vector>

typedef std::vector<float> vecf;
typedef std::vector<uint16_t> vech;

#define CK(call)                                                                                           \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)
// An op entry must return OH_CUDA_OK and the stream must then complete without error.
#define OP(call)                                                                                           \
    do {                                                                                                   \
        int s_ = (call);                                                                                   \
        if (s_ != OH_CUDA_OK) {                                                                            \
            fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, #call, s_,             \
                    oh_cuda_status_str(s_), oh_cuda_last_error());                                         \
            g_failures++;                                                                                  \
            return;                                                                                        \
        }                                                                                                  \
        CK(cudaDeviceSynchronize());                                                                       \
    } while (0)

static int g_failures = 0, g_checks = 0;
static oh_rng g_rng;
static const char *g_only = NULL;
static char g_attn_variant[24] = "default"; // forward/backward variant of attention.cu, in check names

// ---- host helpers ----
static vecf randn(size_t n, float sd = 1.f) {
    vecf v(n);
    for (size_t i = 0; i < n; i++) v[i] = (float)oh_rng_normal(&g_rng) * sd;
    return v;
}
static vecf randu(size_t n, float lo, float hi) {
    vecf v(n);
    for (size_t i = 0; i < n; i++) v[i] = lo + (hi - lo) * (float)oh_rng_uniform(&g_rng);
    return v;
}
static void round_bf16(vecf &v) {
    for (float &x : v) x = oh_bf16_to_f32(oh_f32_to_bf16(x));
}
static vech to_bf16(const vecf &v) {
    vech h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = oh_f32_to_bf16(v[i]);
    return h;
}
static vecf from_bf16(const vech &h) {
    vecf v(h.size());
    for (size_t i = 0; i < h.size(); i++) v[i] = oh_bf16_to_f32(h[i]);
    return v;
}

// ---- device buffers (freed at exit of the test function) ----
struct Dev {
    std::vector<void *> ptrs;
    ~Dev() {
        for (void *p : ptrs) cudaFree(p);
    }
    void *alloc(size_t bytes) {
        void *p = nullptr;
        CK(cudaMalloc(&p, bytes < 16 ? 16 : bytes));
        ptrs.push_back(p);
        return p;
    }
    uint16_t *bf16(const vecf &v) { // uploads bf16(v)
        uint16_t *p = (uint16_t *)alloc(v.size() * 2);
        vech h = to_bf16(v);
        CK(cudaMemcpy(p, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
        return p;
    }
    float *f32(const vecf &v) {
        float *p = (float *)alloc(v.size() * 4);
        CK(cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
        return p;
    }
    int32_t *i32(const std::vector<int32_t> &v) {
        int32_t *p = (int32_t *)alloc(v.size() * 4 + 4);
        CK(cudaMemcpy(p, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
        return p;
    }
    uint16_t *bf16_poison(size_t n) { // NaN everywhere (0xFFFF)
        uint16_t *p = (uint16_t *)alloc(n * 2);
        CK(cudaMemset(p, 0xFF, n * 2));
        return p;
    }
    float *f32_poison(size_t n) {
        float *p = (float *)alloc(n * 4);
        CK(cudaMemset(p, 0xFF, n * 4));
        return p;
    }
};
static vecf get_bf16(const uint16_t *d, size_t n) {
    vech h(n);
    CK(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
    return from_bf16(h);
}
static vecf get_f32(const float *d, size_t n) {
    vecf v(n);
    CK(cudaMemcpy(v.data(), d, n * 4, cudaMemcpyDeviceToHost));
    return v;
}

// ---- comparison and the table ----
static bool selected(const char *name) { return !g_only || strstr(name, g_only); }

static void check(const char *name, const vecf &got, const vecf &ref, double tol) {
    double num = 0, den = 0, maxabs = 0;
    size_t bad = 0;
    size_t n = got.size() < ref.size() ? got.size() : ref.size();
    for (size_t i = 0; i < n; i++) {
        double g = got[i], r = ref[i];
        if (!isfinite(g)) {
            bad++;
            continue;
        }
        double d = g - r;
        num += d * d;
        den += r * r;
        if (fabs(d) > maxabs) maxabs = fabs(d);
    }
    double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    bool ok = bad == 0 && got.size() == ref.size() && rel <= tol;
    g_checks++;
    if (!ok) g_failures++;
    printf("%-44s %10.3e %10.3e %8.0e %6zu  %s\n", name, rel, maxabs, tol, bad, ok ? "ok" : "FAIL");
    fflush(stdout);
}
static void check_status(const char *name, int got, int want) {
    bool ok = got == want;
    g_checks++;
    if (!ok) g_failures++;
    printf("%-44s %10s %10s %8s %6s  %s (status %d, want %d)\n", name, "-", "-", "-", "-", ok ? "ok" : "FAIL", got,
           want);
}

static const double TOL_BF16 = 1e-2; // outputs stored in bf16 (relative rounding 2^-8 = 3.9e-3 per element)
static const double TOL_F32 = 1e-4;  // fp32 outputs from bf16 inputs, fp32 math
static const double TOL_ATTN_BWD = 2e-2; // bf16 P and dS feed the tensor cores

// ================================================================ GEMM
// tag: printed after "gemm" (the OH_GEMM_TUNE_PICK setting of the run, or "").
static void test_gemm(int T, int I, int O, const char *tag = "") {
    char nm[96];
    Dev d;
    vecf x = randn((size_t)T * I), w = randn((size_t)O * I, 0.05f), dy = randn((size_t)T * O);
    round_bf16(x), round_bf16(w), round_bf16(dy);
    uint16_t *dx_ = d.bf16(x), *dw_ = d.bf16(w), *ddy = d.bf16(dy);
    vecf ref((size_t)T * O);
    cpu_linear_fwd_f32(ref.data(), x.data(), w.data(), T, I, O);
    {
        uint16_t *y = d.bf16_poison((size_t)T * O);
        float *yf = d.f32_poison((size_t)T * O);
        OP(oh_cuda_linear_fwd(y, OH_DTYPE_BF16, dx_, dw_, T, I, O, 0));
        OP(oh_cuda_linear_fwd(yf, OH_DTYPE_F32, dx_, dw_, T, I, O, 0));
        snprintf(nm, sizeof nm, "gemm%s fwd bf16 T%d I%d O%d", tag, T, I, O);
        check(nm, get_bf16(y, ref.size()), ref, TOL_BF16);
        snprintf(nm, sizeof nm, "gemm%s fwd f32 T%d I%d O%d", tag, T, I, O);
        check(nm, get_f32(yf, ref.size()), ref, TOL_F32);
    }
    {
        vecf din0 = randn((size_t)T * I);
        round_bf16(din0);
        vecf rin = din0, rw = randn((size_t)O * I);
        vecf rw0 = rw;
        cpu_linear_bwd_f32(rin.data(), rw.data(), dy.data(), x.data(), w.data(), T, I, O);
        uint16_t *gin = d.bf16(din0);
        float *gw = d.f32(rw0);
        uint16_t *gin0 = d.bf16_poison((size_t)T * I);
        OP(oh_cuda_linear_bwd_data(gin, OH_DTYPE_BF16, ddy, dw_, T, I, O, 1, 0));
        OP(oh_cuda_linear_bwd_data(gin0, OH_DTYPE_BF16, ddy, dw_, T, I, O, 0, 0));
        OP(oh_cuda_linear_bwd_weight(gw, OH_DTYPE_F32, ddy, dx_, T, I, O, 0));
        snprintf(nm, sizeof nm, "gemm%s bwd dX += (bf16) T%d I%d O%d", tag, T, I, O);
        check(nm, get_bf16(gin, rin.size()), rin, TOL_BF16);
        vecf r0((size_t)T * I, 0.f);
        cpu_linear_bwd_f32(r0.data(), NULL, dy.data(), x.data(), w.data(), T, I, O);
        snprintf(nm, sizeof nm, "gemm%s bwd dX = (bf16) T%d I%d O%d", tag, T, I, O);
        check(nm, get_bf16(gin0, r0.size()), r0, TOL_BF16);
        snprintf(nm, sizeof nm, "gemm%s bwd dW += (f32) T%d I%d O%d", tag, T, I, O);
        check(nm, get_f32(gw, rw.size()), rw, TOL_F32);
    }
}

// ================================================================ norms
static void test_rmsnorm(int N, int C) {
    char nm[96];
    Dev d;
    const float eps = 1e-6f;
    vecf x = randn((size_t)N * C, 2.f), w = randu(C, 0.5f, 1.5f), dout = randn((size_t)N * C);
    round_bf16(x), round_bf16(w), round_bf16(dout);
    vecf out((size_t)N * C), rstd(N);
    cpu_rmsnorm_fwd_f32(out.data(), rstd.data(), x.data(), w.data(), N, C, eps);
    uint16_t *gx = d.bf16(x), *gw = d.bf16(w), *gd = d.bf16(dout);
    uint16_t *go = d.bf16_poison((size_t)N * C);
    float *gr = d.f32_poison(N);
    OP(oh_cuda_rmsnorm_fwd(go, gr, gx, gw, N, C, eps, 0));
    snprintf(nm, sizeof nm, "rmsnorm fwd N%d C%d", N, C);
    check(nm, get_bf16(go, out.size()), out, TOL_BF16);
    snprintf(nm, sizeof nm, "rmsnorm fwd rstd N%d C%d", N, C);
    check(nm, get_f32(gr, N), rstd, TOL_F32);

    vecf dx0 = randn((size_t)N * C);
    round_bf16(dx0);
    vecf dw0 = randn(C);
    vecf rdx = dx0, rdw = dw0;
    cpu_rmsnorm_bwd_f32(rdx.data(), rdw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
    uint16_t *gdx = d.bf16(dx0);
    float *gdw = d.f32(dw0);
    OP(oh_cuda_rmsnorm_bwd(gdx, gdw, gd, gx, gw, gr, N, C, eps, 1, 0));
    snprintf(nm, sizeof nm, "rmsnorm bwd dx += N%d C%d", N, C);
    check(nm, get_bf16(gdx, rdx.size()), rdx, TOL_BF16);
    snprintf(nm, sizeof nm, "rmsnorm bwd dw += N%d C%d", N, C);
    check(nm, get_f32(gdw, C), rdw, TOL_F32);
    // overwrite mode, rstd recomputed
    vecf r0((size_t)N * C, 0.f);
    cpu_rmsnorm_bwd_f32(r0.data(), NULL, dout.data(), x.data(), w.data(), rstd.data(), N, C);
    uint16_t *gdx0 = d.bf16_poison((size_t)N * C);
    OP(oh_cuda_rmsnorm_bwd(gdx0, NULL, gd, gx, gw, NULL, N, C, eps, 0, 0));
    snprintf(nm, sizeof nm, "rmsnorm bwd dx = (no rstd) N%d C%d", N, C);
    check(nm, get_bf16(gdx0, r0.size()), r0, TOL_BF16);

    // fused residual forms
    vecf y = randn((size_t)N * C);
    round_bf16(y);
    uint16_t *gy = d.bf16(y);
    {
        vecf h((size_t)N * C);
        for (size_t i = 0; i < h.size(); i++) h[i] = x[i] + y[i];
        round_bf16(h);
        vecf o2((size_t)N * C);
        cpu_rmsnorm_fwd_f32(o2.data(), NULL, h.data(), w.data(), N, C, eps);
        uint16_t *gh = d.bf16_poison((size_t)N * C), *go2 = d.bf16_poison((size_t)N * C);
        OP(oh_cuda_add_rmsnorm_fwd(gh, go2, NULL, gx, gy, gw, N, C, eps, 0));
        snprintf(nm, sizeof nm, "add_rmsnorm fwd h N%d C%d", N, C);
        check(nm, get_bf16(gh, h.size()), h, TOL_BF16);
        snprintf(nm, sizeof nm, "add_rmsnorm fwd out N%d C%d", N, C);
        check(nm, get_bf16(go2, o2.size()), o2, TOL_BF16);
    }
    {
        vecf n((size_t)N * C);
        cpu_rmsnorm_fwd_f32(n.data(), NULL, y.data(), w.data(), N, C, eps);
        round_bf16(n);
        vecf h((size_t)N * C);
        for (size_t i = 0; i < h.size(); i++) h[i] = x[i] + n[i];
        uint16_t *gh = d.bf16_poison((size_t)N * C);
        OP(oh_cuda_rmsnorm_add_fwd(gh, NULL, gx, gy, gw, N, C, eps, 0));
        snprintf(nm, sizeof nm, "rmsnorm_add fwd h N%d C%d", N, C);
        check(nm, get_bf16(gh, h.size()), h, TOL_BF16);
    }
}

static void test_gated(int N, int V) {
    char nm[96];
    Dev d;
    const float eps = 1e-5f;
    vecf x = randn((size_t)N * V), g = randn((size_t)N * V, 2.f), w = randu(V, 0.5f, 1.5f),
         dout = randn((size_t)N * V);
    round_bf16(x), round_bf16(g), round_bf16(w), round_bf16(dout);
    vecf out((size_t)N * V), rstd(N);
    cpu_gated_rmsnorm_fwd_f32(out.data(), rstd.data(), x.data(), g.data(), w.data(), N, V, eps);
    uint16_t *gx = d.bf16(x), *gg = d.bf16(g), *gw = d.bf16(w), *gd = d.bf16(dout);
    uint16_t *go = d.bf16_poison((size_t)N * V);
    float *gr = d.f32_poison(N);
    OP(oh_cuda_gated_rmsnorm_fwd(go, gr, gx, gg, gw, N, V, eps, 0));
    snprintf(nm, sizeof nm, "gated_rmsnorm fwd N%d V%d", N, V);
    check(nm, get_bf16(go, out.size()), out, TOL_BF16);
    vecf dx((size_t)N * V, 0.f), dg((size_t)N * V, 0.f), dw = randn(V);
    vecf dw0 = dw;
    cpu_gated_rmsnorm_bwd_f32(dx.data(), dg.data(), dw.data(), dout.data(), x.data(), g.data(), w.data(), rstd.data(),
                              N, V);
    uint16_t *gdx = d.bf16_poison((size_t)N * V), *gdg = d.bf16_poison((size_t)N * V);
    float *gdw = d.f32(dw0);
    OP(oh_cuda_gated_rmsnorm_bwd(gdx, gdg, gdw, gd, gx, gg, gw, gr, N, V, eps, 0, 0));
    snprintf(nm, sizeof nm, "gated_rmsnorm bwd dx N%d V%d", N, V);
    check(nm, get_bf16(gdx, dx.size()), dx, TOL_BF16);
    snprintf(nm, sizeof nm, "gated_rmsnorm bwd dgate N%d V%d", N, V);
    check(nm, get_bf16(gdg, dg.size()), dg, TOL_BF16);
    snprintf(nm, sizeof nm, "gated_rmsnorm bwd dw += N%d V%d", N, V);
    check(nm, get_f32(gdw, V), dw, TOL_F32);
    // accumulate mode, rstd recomputed: dx, dgate += the same again
    OP(oh_cuda_gated_rmsnorm_bwd(gdx, gdg, NULL, gd, gx, gg, gw, NULL, N, V, eps, 1, 0));
    vecf dx2 = dx, dg2 = dg;
    for (size_t i = 0; i < dx2.size(); i++) dx2[i] *= 2.f, dg2[i] *= 2.f;
    snprintf(nm, sizeof nm, "gated_rmsnorm bwd dx += (no rstd) N%d V%d", N, V);
    check(nm, get_bf16(gdx, dx2.size()), dx2, TOL_BF16);
    snprintf(nm, sizeof nm, "gated_rmsnorm bwd dgate += N%d V%d", N, V);
    check(nm, get_bf16(gdg, dg2.size()), dg2, TOL_BF16);
}

// ================================================================ elementwise
static void test_swiglu(size_t n) {
    char nm[96];
    Dev d;
    vecf g = randn(n, 2.f), u = randn(n), dout = randn(n);
    round_bf16(g), round_bf16(u), round_bf16(dout);
    vecf out(n);
    cpu_swiglu_fwd_f32(out.data(), g.data(), u.data(), n);
    uint16_t *gg = d.bf16(g), *gu = d.bf16(u), *gd = d.bf16(dout), *go = d.bf16_poison(n);
    OP(oh_cuda_swiglu_fwd(go, gg, gu, n, 0));
    snprintf(nm, sizeof nm, "swiglu fwd n%zu", n);
    check(nm, get_bf16(go, n), out, TOL_BF16);
    vecf a0 = randn(n), b0 = randn(n);
    round_bf16(a0), round_bf16(b0);
    vecf ra = a0, rb = b0;
    cpu_swiglu_bwd_f32(ra.data(), rb.data(), dout.data(), g.data(), u.data(), n);
    uint16_t *ga = d.bf16(a0), *gb = d.bf16(b0);
    OP(oh_cuda_swiglu_bwd(ga, gb, gd, gg, gu, n, 1, 0));
    snprintf(nm, sizeof nm, "swiglu bwd dgate += n%zu", n);
    check(nm, get_bf16(ga, n), ra, TOL_BF16);
    snprintf(nm, sizeof nm, "swiglu bwd dup += n%zu", n);
    check(nm, get_bf16(gb, n), rb, TOL_BF16);
    vecf za(n, 0.f), zb(n, 0.f);
    cpu_swiglu_bwd_f32(za.data(), zb.data(), dout.data(), g.data(), u.data(), n);
    uint16_t *ga0 = d.bf16_poison(n), *gb0 = d.bf16_poison(n);
    OP(oh_cuda_swiglu_bwd(ga0, gb0, gd, gg, gu, n, 0, 0));
    snprintf(nm, sizeof nm, "swiglu bwd dgate = n%zu", n);
    check(nm, get_bf16(ga0, n), za, TOL_BF16);
    snprintf(nm, sizeof nm, "swiglu bwd dup = n%zu", n);
    check(nm, get_bf16(gb0, n), zb, TOL_BF16);
}

static void test_embedding(int T, int V, int C, int pad) {
    char nm[96];
    Dev d;
    vecf E = randn((size_t)V * C), dout = randn((size_t)T * C);
    round_bf16(E), round_bf16(dout);
    std::vector<int32_t> ids(T);
    for (int t = 0; t < T; t++) ids[t] = (t % 5 == 0 && pad >= 0) ? pad : (int32_t)(oh_rng_u64(&g_rng) % (uint64_t)(V / 4 + 1));
    vecf out((size_t)T * C);
    cpu_embedding_fwd_f32(out.data(), ids.data(), E.data(), T, C);
    uint16_t *gE = d.bf16(E), *gd = d.bf16(dout), *go = d.bf16_poison((size_t)T * C);
    int32_t *gi = d.i32(ids);
    OP(oh_cuda_embedding_fwd(go, gi, gE, T, V, C, 0));
    snprintf(nm, sizeof nm, "embedding fwd T%d V%d C%d", T, V, C);
    check(nm, get_bf16(go, out.size()), out, 0.0);
    vecf dE = randn((size_t)V * C);
    float *gdE = d.f32(dE);
    cpu_embedding_bwd_f32(dE.data(), dout.data(), ids.data(), T, C, pad);
    OP(oh_cuda_embedding_bwd(gdE, gd, gi, T, V, C, pad, 0));
    snprintf(nm, sizeof nm, "embedding bwd dE += (pad %d) T%d V%d C%d", pad, T, V, C);
    check(nm, get_f32(gdE, dE.size()), dE, 1e-6);
}

static void test_casts(size_t n) {
    char nm[96];
    Dev d;
    vecf x = randn(n, 3.f);
    float *gx = d.f32(x);
    uint16_t *gh = d.bf16_poison(n);
    float *gf = d.f32_poison(n);
    OP(oh_cuda_f32_to_bf16(gh, gx, n, 0));
    vech h(n);
    CK(cudaMemcpy(h.data(), gh, n * 2, cudaMemcpyDeviceToHost));
    size_t mism = 0;
    for (size_t i = 0; i < n; i++) mism += h[i] != oh_f32_to_bf16(x[i]);
    g_checks++;
    if (mism) g_failures++;
    snprintf(nm, sizeof nm, "cast f32->bf16 n%zu (bit-exact)", n);
    printf("%-44s %10zu %10s %8s %6s  %s\n", nm, mism, "-", "-", "-", mism ? "FAIL" : "ok");
    OP(oh_cuda_bf16_to_f32(gf, gh, n, 0));
    vecf r = x;
    round_bf16(r);
    snprintf(nm, sizeof nm, "cast bf16->f32 n%zu", n);
    check(nm, get_f32(gf, n), r, 0.0);
}

// ================================================================ AdamW
static void test_adamw() {
    Dev d;
    const int64_t sizes[4] = {1000, 2 * 65536 + 13, 7, 4099};
    const int gdt[4] = {OH_DTYPE_F32, OH_DTYPE_BF16, OH_DTYPE_F32, OH_DTYPE_F32};
    const int decay[4] = {1, 0, 1, 1};
    oh_adamw_tensor t[4];
    std::vector<vecf> p(4), m(4), v(4), g(4);
    std::vector<uint16_t *> pb(4);
    // tensor 3 starts at an odd offset inside a buffer: scalar path
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)sizes[i];
        p[i] = randn(n);
        m[i] = randn(n, 0.1f);
        v[i] = randu(n, 0.f, 0.01f);
        g[i] = randn(n, 0.5f);
        if (gdt[i] == OH_DTYPE_BF16) round_bf16(g[i]);
        int off = i == 3 ? 1 : 0;
        vecf pp(n + off), mm(n + off), vv(n + off), gg(n + off);
        std::copy(p[i].begin(), p[i].end(), pp.begin() + off);
        std::copy(m[i].begin(), m[i].end(), mm.begin() + off);
        std::copy(v[i].begin(), v[i].end(), vv.begin() + off);
        std::copy(g[i].begin(), g[i].end(), gg.begin() + off);
        t[i].param = d.f32(pp) + off;
        t[i].m = d.f32(mm) + off;
        t[i].v = d.f32(vv) + off;
        t[i].grad = gdt[i] == OH_DTYPE_BF16 ? (const void *)d.bf16(gg) : (const void *)(d.f32(gg) + off);
        pb[i] = d.bf16_poison(n);
        t[i].param_bf16 = i == 2 ? NULL : pb[i];
        t[i].n = (int64_t)n;
        t[i].grad_dtype = gdt[i];
        t[i].decay = decay[i];
    }
    oh_adamw_plan *plan = NULL;
    OP(oh_cuda_adamw_plan_create(&plan, t, 4));
    const float max_norm = 1.0f;
    float *gnorm = d.f32_poison(1), *gscale = d.f32_poison(1);
    OP(oh_cuda_grad_norm(plan, gnorm, gscale, max_norm, 0));
    oh_adamw_hparams hp = {3e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 3};
    OP(oh_cuda_adamw_step(plan, &hp, gscale, 0));
    // reference in double
    double ss = 0;
    for (int i = 0; i < 4; i++)
        for (float x : g[i]) ss += (double)x * x;
    double norm = sqrt(ss), scale = fmin(1.0, max_norm / (norm + 1e-6));
    check("grad norm", get_f32(gnorm, 1), vecf{(float)norm}, 1e-5);
    check("grad clip scale", get_f32(gscale, 1), vecf{(float)scale}, 1e-5);
    double bc1 = 1 - pow(0.9, 3), bc2 = 1 - pow(0.95, 3);
    for (int i = 0; i < 4; i++) {
        size_t n = (size_t)sizes[i];
        vecf rp(n), rm(n), rv(n);
        for (size_t j = 0; j < n; j++) {
            double gj = g[i][j] * scale, pj = p[i][j], mj = m[i][j], vj = v[i][j];
            if (decay[i]) pj -= 3e-3 * 0.1 * pj;
            mj = 0.9 * mj + 0.1 * gj;
            vj = 0.95 * vj + 0.05 * gj * gj;
            pj -= 3e-3 / bc1 * mj / (sqrt(vj) / sqrt(bc2) + 1e-8);
            rp[j] = (float)pj, rm[j] = (float)mj, rv[j] = (float)vj;
        }
        char nm[96];
        snprintf(nm, sizeof nm, "adamw param t%d n%zu", i, n);
        check(nm, get_f32(t[i].param, n), rp, 1e-6);
        snprintf(nm, sizeof nm, "adamw m t%d", i);
        check(nm, get_f32(t[i].m, n), rm, 1e-5);
        snprintf(nm, sizeof nm, "adamw v t%d", i);
        check(nm, get_f32(t[i].v, n), rv, 1e-5);
        if (t[i].param_bf16) {
            snprintf(nm, sizeof nm, "adamw bf16 copy t%d", i);
            check(nm, get_bf16(pb[i], n), rp, TOL_BF16);
        }
    }
    oh_cuda_adamw_plan_free(plan);
}

// ================================================================ fused linear + CE
static void test_fused_ce(int N, int V, int C, int dh_dtype, int dw_dtype) {
    char nm[128];
    Dev d;
    vecf h = randn((size_t)N * C), W = randn((size_t)V * C, 0.2f);
    round_bf16(h), round_bf16(W);
    std::vector<int32_t> tgt(N);
    for (int i = 0; i < N; i++) tgt[i] = (i % 7 == 3) ? -1 : (int32_t)(oh_rng_u64(&g_rng) % (uint64_t)V);
    vecf wt = randu(N, 0.1f, 1.f);
    // reference
    vecf logits((size_t)N * V), loss(N);
    cpu_linear_fwd_f32(logits.data(), h.data(), W.data(), N, C, V);
    cpu_cross_entropy_fwd_f32(loss.data(), logits.data(), tgt.data(), N, V);
    vecf dlog((size_t)N * V, 0.f);
    cpu_cross_entropy_bwd_f32(dlog.data(), wt.data(), logits.data(), tgt.data(), N, V);
    logits.clear();
    logits.shrink_to_fit();
    vecf dh0 = randn((size_t)N * C), dW0 = randn((size_t)V * C);
    if (dh_dtype == OH_DTYPE_BF16) round_bf16(dh0);
    if (dw_dtype == OH_DTYPE_BF16) std::fill(dW0.begin(), dW0.end(), 0.f); // bf16 += would swamp the increment
    vecf rdh = dh0, rdW = dW0;
    cpu_linear_bwd_f32(rdh.data(), rdW.data(), dlog.data(), h.data(), W.data(), N, C, V);
    dlog.clear();
    dlog.shrink_to_fit();
    vecf lp(N);
    for (int i = 0; i < N; i++) lp[i] = -loss[i];
    // GPU
    uint16_t *gh = d.bf16(h), *gW = d.bf16(W);
    int32_t *gt = d.i32(tgt);
    float *gwt = d.f32(wt);
    float *gloss = d.f32_poison(N), *glp = d.f32_poison(N), *glse = d.f32_poison(N);
    size_t wsb = oh_cuda_fused_ce_workspace_bytes(N, V, C);
    void *ws = d.alloc(wsb);
    OP(oh_cuda_fused_ce_fwd(gloss, glp, glse, gh, gW, gt, N, V, C, ws, wsb, 0));
    snprintf(nm, sizeof nm, "fused_ce fwd loss N%d V%d C%d", N, V, C);
    check(nm, get_f32(gloss, N), loss, TOL_F32);
    snprintf(nm, sizeof nm, "fused_ce fwd logprob N%d V%d C%d", N, V, C);
    check(nm, get_f32(glp, N), lp, TOL_F32);
    void *gdh = dh_dtype == OH_DTYPE_BF16 ? (void *)d.bf16(dh0) : (void *)d.f32(dh0);
    void *gdW = dw_dtype == OH_DTYPE_BF16 ? (void *)d.bf16(dW0) : (void *)d.f32(dW0);
    OP(oh_cuda_fused_ce_bwd(gdh, dh_dtype, gdW, dw_dtype, gwt, glse, gh, gW, gt, N, V, C, ws, wsb, 0));
    // the gradients come from bf16 dlogits: bf16 tolerance even for fp32 outputs
    snprintf(nm, sizeof nm, "fused_ce bwd dh += (%s) N%d", dh_dtype == OH_DTYPE_BF16 ? "bf16" : "f32", N);
    check(nm, dh_dtype == OH_DTYPE_BF16 ? get_bf16((uint16_t *)gdh, rdh.size()) : get_f32((float *)gdh, rdh.size()),
          rdh, TOL_BF16);
    // compare the increments of dW (dW0 is large next to the increment)
    vecf gotW = dw_dtype == OH_DTYPE_BF16 ? get_bf16((uint16_t *)gdW, rdW.size()) : get_f32((float *)gdW, rdW.size());
    for (size_t i = 0; i < gotW.size(); i++) gotW[i] -= dW0[i], rdW[i] -= dW0[i];
    snprintf(nm, sizeof nm, "fused_ce bwd dW += (%s) V%d", dw_dtype == OH_DTYPE_BF16 ? "bf16" : "f32", V);
    check(nm, gotW, rdW, TOL_BF16);
}

// ================================================================ attention
static void test_attention(const std::vector<int> &docs, int Hq, int Hkv, int D, double theta, int pos_offset) {
    char nm[160], cfg[96];
    Dev d;
    int T = 0, maxlen = 0;
    std::vector<int32_t> cu(1, 0);
    for (int L : docs) {
        T += L;
        cu.push_back(T);
        if (L > maxlen) maxlen = L;
    }
    int nd = (int)docs.size();
    snprintf(cfg, sizeof cfg, "T%d docs%d Hq%d Hkv%d D%d%s %s", T, nd, Hq, Hkv, D, theta > 0 ? " rope" : "",
             g_attn_variant);
    const double scale = 1.0 / sqrt((double)D);
    vecf q = randn((size_t)T * Hq * D), k = randn((size_t)T * Hkv * D), v = randn((size_t)T * Hkv * D),
         dout = randn((size_t)T * Hq * D);
    round_bf16(q), round_bf16(k), round_bf16(v), round_bf16(dout);
    std::vector<int32_t> pos(T);
    for (int i = 0; i < nd; i++)
        for (int t = cu[i]; t < cu[i + 1]; t++) pos[t] = pos_offset + (t - cu[i]);
    vecf qr = q, kr = k;
    if (theta > 0) {
        cpu_rope_fwd_f32(qr.data(), pos.data(), T, Hq, D, theta);
        cpu_rope_fwd_f32(kr.data(), pos.data(), T, Hkv, D, theta);
    }
    vecf out((size_t)T * Hq * D), lse((size_t)T * Hq);
    cpu_attention_fwd_f32(out.data(), lse.data(), qr.data(), kr.data(), v.data(), cu.data(), nd, T, Hq, Hkv, D, scale);
    vecf dq(q.size(), 0.f), dk(k.size(), 0.f), dv(v.size(), 0.f);
    cpu_attention_bwd_f32(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(), qr.data(), kr.data(),
                          v.data(), cu.data(), nd, T, Hq, Hkv, D, scale);
    if (theta > 0) {
        cpu_rope_bwd_f32(dq.data(), pos.data(), T, Hq, D, theta);
        cpu_rope_bwd_f32(dk.data(), pos.data(), T, Hkv, D, theta);
    }
    uint16_t *gq = d.bf16(q), *gk = d.bf16(k), *gv = d.bf16(v), *gdo = d.bf16(dout);
    int32_t *gcu = d.i32(cu), *gpos = d.i32(pos);
    uint16_t *go = d.bf16_poison(out.size());
    float *glse = d.f32_poison(lse.size());
    const int32_t *pp = theta > 0 ? gpos : NULL;
    OP(oh_cuda_attention_fwd(go, glse, gq, gk, gv, gcu, nd, maxlen, T, Hq, Hkv, D, (float)scale, pp, (float)theta, 0));
    snprintf(nm, sizeof nm, "attn fwd out %s", cfg);
    check(nm, get_bf16(go, out.size()), out, TOL_BF16);
    snprintf(nm, sizeof nm, "attn fwd lse %s", cfg);
    check(nm, get_f32(glse, lse.size()), lse, 3e-3);
    uint16_t *gdq = d.bf16_poison(q.size()), *gdk = d.bf16_poison(k.size()), *gdv = d.bf16_poison(v.size());
    size_t wsb = oh_cuda_attention_bwd_workspace_bytes(T, Hq, D);
    void *ws = d.alloc(wsb);
    CK(cudaMemset(ws, 0xFF, wsb));
    OP(oh_cuda_attention_bwd(gdq, gdk, gdv, gdo, go, glse, gq, gk, gv, gcu, nd, maxlen, T, Hq, Hkv, D, (float)scale, pp,
                             (float)theta, ws, wsb, 0));
    snprintf(nm, sizeof nm, "attn bwd dq %s", cfg);
    check(nm, get_bf16(gdq, dq.size()), dq, TOL_ATTN_BWD);
    snprintf(nm, sizeof nm, "attn bwd dk %s", cfg);
    check(nm, get_bf16(gdk, dk.size()), dk, TOL_ATTN_BWD);
    snprintf(nm, sizeof nm, "attn bwd dv %s", cfg);
    check(nm, get_bf16(gdv, dv.size()), dv, TOL_ATTN_BWD);
}

static void test_attention_refusals() {
    Dev d;
    vecf x((size_t)64 * 96, 0.5f);
    uint16_t *q = d.bf16(x);
    int32_t *cu = d.i32({0, 64});
    float *lse = d.f32_poison(64);
    uint16_t *o = d.bf16_poison(x.size());
    check_status("attn D=96 refused", oh_cuda_attention_fwd(o, lse, q, q, q, cu, 1, 64, 64, 1, 1, 96, 0.1f, NULL, 0.f, 0),
                 OH_CUDA_ERR_UNSUPPORTED);
    check_status("attn Hq % Hkv != 0 refused",
                 oh_cuda_attention_fwd(o, lse, q, q, q, cu, 1, 64, 64, 3, 2, 64, 0.1f, NULL, 0.f, 0), OH_CUDA_ERR_ARG);
}

int main(int argc, char **argv) {
    uint64_t seed = 1234;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--seed N] [--only SUBSTR]\n", argv[0]);
            return 2;
        }
    }
    oh_rng_seed(&g_rng, seed);
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev < 1) {
        fprintf(stderr, "test_ops: no CUDA device\n");
        return 2;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d, %d SMs), seed %llu\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           (unsigned long long)seed);
    printf("%-44s %10s %10s %8s %6s  %s\n", "check", "rel L2", "max abs", "tol", "nonfin", "result");

    if (selected("gemm")) {
        test_gemm(77, 203, 129);
        test_gemm(250, 256, 384);
        test_gemm(1000, 1024, 768); // several cuBLASLt candidates timed on first use (beta 1 must stay intact)
        // The candidates gemm.cu builds itself (split-K, other tiles, ...): the choice
        // restricted to them (OH_GEMM_TUNE_PICK, where the shape has any), so that their
        // products and beta-1 accumulation (dX +=, dW +=) are checked; long K for split-K.
        for (const char *pick : {"splitk", "extra"}) {
            setenv("OH_GEMM_TUNE_PICK", pick, 1);
            oh_cuda_gemm_release(); // plans are cached per shape: tune again
            char tag[16];
            snprintf(tag, sizeof tag, "[%s]", pick);
            test_gemm(2048, 384, 320, tag);
            test_gemm(1024, 203, 129, tag); // rows of 203 bf16: 2-byte alignment only
        }
        unsetenv("OH_GEMM_TUNE_PICK");
        oh_cuda_gemm_release();
    }
    if (selected("rmsnorm")) {
        test_rmsnorm(37, 3840);
        test_rmsnorm(5, 11008);
        test_rmsnorm(19, 100);
    }
    if (selected("gated")) {
        test_gated(159, 192);
        test_gated(33, 40);
        test_gated(21, 36);
    }
    if (selected("swiglu")) {
        test_swiglu(100003);
        test_swiglu(5);
    }
    if (selected("embedding")) {
        test_embedding(333, 1000, 3840, 7);
        test_embedding(50, 300, 100, -1);
    }
    if (selected("cast")) test_casts(12347);
    if (selected("adamw")) test_adamw();
    if (selected("fused_ce")) {
        test_fused_ce(300, 5000, 264, OH_DTYPE_F32, OH_DTYPE_F32);
        test_fused_ce(4100, 20000, 136, OH_DTYPE_BF16, OH_DTYPE_F32); // 3 vocabulary chunks
        test_fused_ce(97, 1003, 64, OH_DTYPE_BF16, OH_DTYPE_BF16);
    }
    if (selected("attn")) {
        // The tile variants of attention.cu (attn_fwd_variant, attn_bwd_variant): forward, backward.
        const char *variants[][2] = {{"wg", "wg"}, {"wg3", "8"}, {"4x32", "8"}, {"8", "4"}, {"4", "wg"}};
        for (auto &w : variants) {
            setenv("OH_ATTN_FWD_WARPS", w[0], 1);
            setenv("OH_ATTN_BWD_WARPS", w[1], 1);
            snprintf(g_attn_variant, sizeof g_attn_variant, "%s/%s", w[0], w[1]);
            test_attention({1, 70, 129, 200, 63}, 4, 2, 128, 0.0, 0);
            test_attention({300, 45}, 3, 3, 64, 10000.0, 0);
            test_attention({257}, 2, 1, 128, 500000.0, 1000);
            test_attention({64, 64, 128, 5}, 2, 2, 64, 0.0, 0);
            test_attention({700, 33}, 2, 1, 128, 0.0, 0);
        }
        unsetenv("OH_ATTN_FWD_WARPS");
        unsetenv("OH_ATTN_BWD_WARPS");
        test_attention_refusals();
    }
    oh_cuda_gemm_release();
    printf("\n%d checks, %d failed\n", g_checks, g_failures);
    return g_failures ? 1 : 0;
}
