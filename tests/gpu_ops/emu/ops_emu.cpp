// ops_emu.cpp: the kernels of kernels/cuda/{norms,elementwise,adamw,cross_entropy}.cu
// run on the CPU through kernels/cuda/dev/emu/cuda_emu.h, against the CPU
// reference.  oh_cuda_gemm (cuBLASLt) is replaced here by a plain loop with
// the contract of gemm.h, so the fused cross-entropy runs end to end (its
// cuBLASLt mapping itself is only checked on the GPU, tests/gpu_ops/test_ops.cu).
// Built and run by tests/gpu_ops/emu/run_emu.sh.
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/norms.h"

extern "C" {
#include "kernels/cpu/cpu_ops.h"
#include "util/util.h"
}

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

extern int oh_cuda_fused_ce_test_chunk_cols;

typedef std::vector<float> vecf;
static int g_fail = 0;
static oh_rng g_rng;

// ---- gemm.h contract on the CPU ----
extern "C" int oh_cuda_gemm(void *C, int c_dtype, const uint16_t *A, const uint16_t *B, int M, int N, int K,
                            int trans_a, int trans_b, float alpha, float beta, int lda, int ldb, int ldc, oh_stream) {
    if (!lda) lda = trans_a ? M : K;
    if (!ldb) ldb = trans_b ? K : N;
    if (!ldc) ldc = N;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++) {
                float a = oh_bf16_to_f32(trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                float b = oh_bf16_to_f32(trans_b ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                acc += (double)a * b;
            }
            size_t o = (size_t)i * ldc + j;
            if (c_dtype == OH_DTYPE_F32) {
                float *c = (float *)C;
                c[o] = (float)(alpha * acc + (beta != 0.f ? beta * c[o] : 0.0));
            } else {
                uint16_t *c = (uint16_t *)C;
                c[o] = oh_f32_to_bf16((float)(alpha * acc + (beta != 0.f ? beta * oh_bf16_to_f32(c[o]) : 0.0)));
            }
        }
    return OH_CUDA_OK;
}

static vecf randn(size_t n, float sd = 1.f) {
    vecf v(n);
    for (auto &x : v) x = oh_bf16_to_f32(oh_f32_to_bf16((float)oh_rng_normal(&g_rng) * sd));
    return v;
}
static std::vector<uint16_t> bf(const vecf &v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = oh_f32_to_bf16(v[i]);
    return h;
}
static uint16_t *dbf(const vecf &v) {
    auto h = bf(v);
    uint16_t *p;
    cudaMalloc(&p, h.size() * 2 + 16);
    memcpy(p, h.data(), h.size() * 2);
    return p;
}
static uint16_t *dnan(size_t n) {
    uint16_t *p;
    cudaMalloc(&p, n * 2 + 16);
    memset(p, 0xFF, n * 2);
    return p;
}
static float *df(const vecf &v) {
    float *p;
    cudaMalloc(&p, v.size() * 4 + 16);
    memcpy(p, v.data(), v.size() * 4);
    return p;
}
static vecf gbf(const uint16_t *p, size_t n) {
    vecf v(n);
    for (size_t i = 0; i < n; i++) v[i] = oh_bf16_to_f32(p[i]);
    return v;
}
static void cmp(const char *what, const vecf &got, const vecf &ref, double tol) {
    double num = 0, den = 0;
    size_t bad = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        if (!isfinite(got[i])) {
            bad++;
            continue;
        }
        num += (got[i] - ref[i]) * (double)(got[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    bool ok = bad == 0 && rel <= tol;
    if (!ok) g_fail++;
    printf("  %-40s rel %.3e nonfinite %zu  %s\n", what, rel, bad, ok ? "ok" : "FAIL");
}
#define ST(call)                                                                                           \
    do {                                                                                                   \
        int s_ = (call);                                                                                   \
        if (s_) {                                                                                          \
            printf("  %s: status %d %s\n", #call, s_, oh_cuda_last_error());                               \
            g_fail++;                                                                                      \
            return;                                                                                        \
        }                                                                                                  \
    } while (0)

static void norms(int N, int C) {
    printf("rmsnorm N %d C %d\n", N, C);
    vecf x = randn((size_t)N * C, 2.f), w = randn(C), dout = randn((size_t)N * C), y = randn((size_t)N * C);
    vecf out((size_t)N * C), rstd(N);
    cpu_rmsnorm_fwd_f32(out.data(), rstd.data(), x.data(), w.data(), N, C, 1e-6);
    uint16_t *gx = dbf(x), *gw = dbf(w), *gd = dbf(dout), *gy = dbf(y), *go = dnan(out.size());
    float *gr = df(vecf(N, NAN));
    ST(oh_cuda_rmsnorm_fwd(go, gr, gx, gw, N, C, 1e-6f, 0));
    cmp("fwd", gbf(go, out.size()), out, 1e-2);
    cmp("rstd", vecf(gr, gr + N), rstd, 1e-5);
    vecf dx((size_t)N * C, 0.f), dw = randn(C);
    float *gdw = df(dw);
    cpu_rmsnorm_bwd_f32(dx.data(), dw.data(), dout.data(), x.data(), w.data(), rstd.data(), N, C);
    uint16_t *gdx = dnan(dx.size());
    ST(oh_cuda_rmsnorm_bwd(gdx, gdw, gd, gx, gw, NULL, N, C, 1e-6f, 0, 0));
    cmp("bwd dx", gbf(gdx, dx.size()), dx, 1e-2);
    cmp("bwd dw", vecf(gdw, gdw + C), dw, 1e-5);
    vecf h((size_t)N * C), o2((size_t)N * C);
    for (size_t i = 0; i < h.size(); i++) h[i] = oh_bf16_to_f32(oh_f32_to_bf16(x[i] + y[i]));
    cpu_rmsnorm_fwd_f32(o2.data(), NULL, h.data(), w.data(), N, C, 1e-6);
    uint16_t *gh = dnan(h.size()), *go2 = dnan(h.size());
    ST(oh_cuda_add_rmsnorm_fwd(gh, go2, NULL, gx, gy, gw, N, C, 1e-6f, 0));
    cmp("add_rmsnorm h", gbf(gh, h.size()), h, 1e-2);
    cmp("add_rmsnorm out", gbf(go2, h.size()), o2, 1e-2);
    vecf n((size_t)N * C);
    cpu_rmsnorm_fwd_f32(n.data(), NULL, y.data(), w.data(), N, C, 1e-6);
    for (size_t i = 0; i < h.size(); i++) h[i] = x[i] + oh_bf16_to_f32(oh_f32_to_bf16(n[i]));
    ST(oh_cuda_rmsnorm_add_fwd(gh, NULL, gx, gy, gw, N, C, 1e-6f, 0));
    cmp("rmsnorm_add h", gbf(gh, h.size()), h, 1e-2);
}

static void gated(int N, int V) {
    printf("gated_rmsnorm N %d V %d\n", N, V);
    vecf x = randn((size_t)N * V), g = randn((size_t)N * V, 2.f), w = randn(V), dout = randn((size_t)N * V);
    vecf out((size_t)N * V), rstd(N);
    cpu_gated_rmsnorm_fwd_f32(out.data(), rstd.data(), x.data(), g.data(), w.data(), N, V, 1e-5);
    uint16_t *gx = dbf(x), *gg = dbf(g), *gw = dbf(w), *gd = dbf(dout), *go = dnan(out.size());
    ST(oh_cuda_gated_rmsnorm_fwd(go, NULL, gx, gg, gw, N, V, 1e-5f, 0));
    cmp("fwd", gbf(go, out.size()), out, 1e-2);
    vecf dx(out.size(), 0.f), dg(out.size(), 0.f), dw(V, 0.f);
    cpu_gated_rmsnorm_bwd_f32(dx.data(), dg.data(), dw.data(), dout.data(), x.data(), g.data(), w.data(), rstd.data(), N,
                              V);
    uint16_t *gdx = dnan(dx.size()), *gdg = dnan(dx.size());
    float *gdw = df(vecf(V, 0.f));
    ST(oh_cuda_gated_rmsnorm_bwd(gdx, gdg, gdw, gd, gx, gg, gw, NULL, N, V, 1e-5f, 0, 0));
    cmp("bwd dx", gbf(gdx, dx.size()), dx, 1e-2);
    cmp("bwd dgate", gbf(gdg, dx.size()), dg, 1e-2);
    cmp("bwd dw", vecf(gdw, gdw + V), dw, 1e-5);
}

static void elementwise(size_t n) {
    printf("swiglu/casts n %zu, embedding\n", n);
    vecf g = randn(n, 2.f), u = randn(n), d = randn(n), out(n), dg(n, 0.f), du(n, 0.f);
    cpu_swiglu_fwd_f32(out.data(), g.data(), u.data(), n);
    cpu_swiglu_bwd_f32(dg.data(), du.data(), d.data(), g.data(), u.data(), n);
    uint16_t *gg = dbf(g), *gu = dbf(u), *gd = dbf(d), *go = dnan(n), *gdg = dnan(n), *gdu = dnan(n);
    ST(oh_cuda_swiglu_fwd(go, gg, gu, n, 0));
    ST(oh_cuda_swiglu_bwd(gdg, gdu, gd, gg, gu, n, 0, 0));
    cmp("swiglu fwd", gbf(go, n), out, 1e-2);
    cmp("swiglu bwd dgate", gbf(gdg, n), dg, 1e-2);
    cmp("swiglu bwd dup", gbf(gdu, n), du, 1e-2);
    vecf f = randn(n, 3.f);
    float *gf = df(f);
    uint16_t *gh = dnan(n);
    ST(oh_cuda_f32_to_bf16(gh, gf, n, 0));
    ST(oh_cuda_bf16_to_f32(gf, gh, n, 0));
    cmp("cast round trip", vecf(gf, gf + n), f, 0.0); // f is bf16-exact already
    const int T = 41, V = 30, C = 24, pad = 3;
    vecf E = randn((size_t)V * C), dout = randn((size_t)T * C), dE((size_t)V * C, 0.f), eo((size_t)T * C);
    std::vector<int32_t> ids(T);
    for (int t = 0; t < T; t++) ids[t] = (t * 7) % V;
    cpu_embedding_fwd_f32(eo.data(), ids.data(), E.data(), T, C);
    cpu_embedding_bwd_f32(dE.data(), dout.data(), ids.data(), T, C, pad);
    int32_t *gi;
    cudaMalloc(&gi, T * 4);
    memcpy(gi, ids.data(), T * 4);
    uint16_t *gE = dbf(E), *geo = dnan(eo.size()), *gdo = dbf(dout);
    float *gdE = df(vecf(dE.size(), 0.f));
    ST(oh_cuda_embedding_fwd(geo, gi, gE, T, V, C, 0));
    ST(oh_cuda_embedding_bwd(gdE, gdo, gi, T, V, C, pad, 0));
    cmp("embedding fwd", gbf(geo, eo.size()), eo, 0.0);
    cmp("embedding bwd", vecf(gdE, gdE + dE.size()), dE, 1e-6);
}

static void adamw() {
    printf("adamw + grad norm\n");
    const int64_t sizes[2] = {70000, 37};
    oh_adamw_tensor t[2];
    vecf p[2], m[2], v[2], g[2];
    for (int i = 0; i < 2; i++) {
        p[i] = randn(sizes[i]), m[i] = randn(sizes[i], 0.1f), g[i] = randn(sizes[i]);
        v[i] = vecf(sizes[i], 0.01f);
        t[i].param = df(p[i]);
        t[i].m = df(m[i]);
        t[i].v = df(v[i]);
        t[i].grad = i ? (const void *)dbf(g[i]) : (const void *)df(g[i]);
        t[i].param_bf16 = dnan(sizes[i]);
        t[i].n = sizes[i];
        t[i].grad_dtype = i ? OH_DTYPE_BF16 : OH_DTYPE_F32;
        t[i].decay = i == 0;
    }
    oh_adamw_plan *plan;
    ST(oh_cuda_adamw_plan_create(&plan, t, 2));
    float *nrm = df(vecf(1, NAN)), *scl = df(vecf(1, NAN));
    ST(oh_cuda_grad_norm(plan, nrm, scl, 1.0f, 0));
    oh_adamw_hparams hp = {1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1};
    ST(oh_cuda_adamw_step(plan, &hp, scl, 0));
    double ss = 0;
    for (int i = 0; i < 2; i++)
        for (float x : g[i]) ss += (double)x * x;
    double norm = sqrt(ss), sc = fmin(1.0, 1.0 / (norm + 1e-6));
    cmp("grad norm", vecf{*nrm}, vecf{(float)norm}, 1e-5);
    for (int i = 0; i < 2; i++) {
        vecf rp(sizes[i]);
        for (int64_t j = 0; j < sizes[i]; j++) {
            double gj = g[i][j] * sc, pj = p[i][j];
            if (i == 0) pj -= 1e-3 * 0.1 * pj;
            double mj = 0.9 * m[i][j] + 0.1 * gj, vj = 0.95 * v[i][j] + 0.05 * gj * gj;
            pj -= 1e-3 / 0.1 * mj / (sqrt(vj) / sqrt(0.05) + 1e-8);
            rp[j] = (float)pj;
        }
        cmp(i ? "adamw param (bf16 grad, scalar)" : "adamw param (f32 grad)", vecf(t[i].param, t[i].param + sizes[i]), rp,
            1e-6);
        cmp("adamw bf16 copy", gbf(t[i].param_bf16, sizes[i]), rp, 1e-2);
    }
    oh_cuda_adamw_plan_free(plan);
}

static void fused_ce(int N, int V, int C, int chunk) {
    printf("fused_ce N %d V %d C %d chunk %d\n", N, V, C, chunk);
    oh_cuda_fused_ce_test_chunk_cols = chunk;
    vecf h = randn((size_t)N * C), W = randn((size_t)V * C, 0.3f), wt = randn(N);
    std::vector<int32_t> tg(N);
    for (int i = 0; i < N; i++) tg[i] = i % 5 == 2 ? -1 : (int32_t)((i * 131) % V);
    vecf logits((size_t)N * V), loss(N), dlog((size_t)N * V, 0.f), dh((size_t)N * C, 0.f), dW((size_t)V * C, 0.f);
    cpu_linear_fwd_f32(logits.data(), h.data(), W.data(), N, C, V);
    cpu_cross_entropy_fwd_f32(loss.data(), logits.data(), tg.data(), N, V);
    cpu_cross_entropy_bwd_f32(dlog.data(), wt.data(), logits.data(), tg.data(), N, V);
    cpu_linear_bwd_f32(dh.data(), dW.data(), dlog.data(), h.data(), W.data(), N, C, V);
    uint16_t *gh = dbf(h), *gW = dbf(W), *gdh = dbf(vecf(dh.size(), 0.f));
    float *gwt = df(wt), *gl = df(vecf(N, NAN)), *glp = df(vecf(N, NAN)), *glse = df(vecf(N, NAN)),
          *gdW = df(vecf(dW.size(), 0.f));
    int32_t *gt;
    cudaMalloc(&gt, N * 4);
    memcpy(gt, tg.data(), N * 4);
    size_t wsb = oh_cuda_fused_ce_workspace_bytes(N, V, C);
    void *ws;
    cudaMalloc(&ws, wsb);
    memset(ws, 0xFF, wsb);
    ST(oh_cuda_fused_ce_fwd(gl, glp, glse, gh, gW, gt, N, V, C, ws, wsb, 0));
    cmp("loss", vecf(gl, gl + N), loss, 1e-5);
    vecf nl(N);
    for (int i = 0; i < N; i++) nl[i] = -loss[i];
    cmp("logprob", vecf(glp, glp + N), nl, 1e-5);
    ST(oh_cuda_fused_ce_bwd(gdh, OH_DTYPE_BF16, gdW, OH_DTYPE_F32, gwt, glse, gh, gW, gt, N, V, C, ws, wsb, 0));
    cmp("dh (bf16)", gbf(gdh, dh.size()), dh, 1e-2);
    cmp("dW (f32)", vecf(gdW, gdW + dW.size()), dW, 1e-2);
    oh_cuda_fused_ce_test_chunk_cols = 0;
}

int main(int argc, char **argv) {
    oh_rng_seed(&g_rng, argc > 1 ? strtoull(argv[1], NULL, 10) : 11);
    emu::st().policy = emu::POLICY_RANDOM;
    norms(7, 264);
    norms(5, 100);
    gated(9, 192);
    gated(6, 36);
    elementwise(1003);
    adamw();
    fused_ce(37, 700, 40, 256); // 3 chunks, the last one partial
    fused_ce(20, 130, 16, 0);
    printf("%s\n", g_fail ? "FAILED" : "all ok");
    return g_fail ? 1 : 0;
}
