/* gdn_dev.cu: the GDN kernel sandbox (llm.c dev/cuda style).  Variants:
 *   0  naive CUDA: token by token, fp32, one warp per (document, head, 32 columns)
 *      (kernels/cuda/dev/gdn_naive.cuh)
 *   1  chunked, tensor cores (kernels/cuda/gdn.cu: gdn_fwd / gdn_bwd)
 * Each variant runs forward + backward on the same random inputs, is checked
 * against the CPU reference (cpu_gdn_*_f32 with cpu_l2norm_*) when the shape
 * is small enough, and timed (median).  The product test is tests/gpu/test_gdn.cu.
 *
 * usage: gdn_dev [variant|all] [T ndocs Hk Hv K V] [iters]
 *   e.g. gdn_dev all 1000 3 4 4 96 192 5 */
#include "kernels/cuda/dev/gdn_naive.cuh"
#include "kernels/cuda/gdn.h"
extern "C" {
#include "kernels/cpu/cpu_ops.h"
}

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <algorithm>
#include <vector>
#include "tests/gpu/gpu_host.h"


static uint64_t rng_state = 88172645463325252ull;
static double unif() {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static double gauss() { return sqrt(-2 * log(unif())) * cos(6.283185307179586 * unif()); }

template <typename T> static T *up(const std::vector<T> &h) {
    T *p;
    CUDA_CHECK(cudaMalloc(&p, h.size() * sizeof(T) + 16));
    CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}
template <typename T> static std::vector<float> down(const T *d, size_t n) {
    std::vector<T> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> r(n);
    for (size_t i = 0; i < n; i++) r[i] = sizeof(T) == 2 ? bf2f((uint16_t)h[i]) : (float)h[i];
    return r;
}
static double rel(const std::vector<float> &x, const std::vector<float> &r) {
    double a = 0, b = 0;
    for (size_t i = 0; i < r.size(); i++) {
        if (!isfinite(x[i])) return NAN;
        a += ((double)x[i] - r[i]) * ((double)x[i] - r[i]);
        b += (double)r[i] * r[i];
    }
    return sqrt(a / (b > 0 ? b : 1));
}

int main(int argc, char **argv) {
    int variant = -1; /* all */
    if (argc > 1 && strcmp(argv[1], "all")) variant = atoi(argv[1]);
    int T = 1000, N = 3, Hk = 4, Hv = 4, K = 96, V = 192, iters = 5;
    if (argc >= 8) {
        T = atoi(argv[2]);
        N = atoi(argv[3]);
        Hk = atoi(argv[4]);
        Hv = atoi(argv[5]);
        K = atoi(argv[6]);
        V = atoi(argv[7]);
    }
    if (argc >= 9) iters = atoi(argv[8]);
    if (N < 1 || T < N || Hk < 1 || Hv % Hk) {
        fprintf(stderr, "bad shape\n");
        return 2;
    }
    std::vector<int32_t> cu(1, 0);
    for (int n = 0; n < N; n++) cu.push_back(n + 1 == N ? T : cu.back() + (int)(T / N * (0.5 + unif())));
    const size_t nqk = (size_t)T * Hk * K, nv = (size_t)T * Hv * V, ng = (size_t)T * Hv, ns = (size_t)N * Hv * K * V;
    std::vector<uint16_t> q(nqk), k(nqk), v(nv), dout(nv);
    std::vector<float> g(ng), beta(ng), s0(ns), dsf(ns);
    for (auto &x : q) x = f2bf((float)gauss());
    for (auto &x : k) x = f2bf((float)gauss());
    for (auto &x : v) x = f2bf((float)gauss());
    for (auto &x : dout) x = f2bf((float)gauss());
    for (size_t i = 0; i < ng; i++) {
        g[i] = (float)-exp(-2 + gauss());
        beta[i] = (float)(2 * unif());
    }
    for (size_t i = 0; i < ns; i++) {
        s0[i] = (float)(0.5 * gauss());
        dsf[i] = (float)gauss();
    }
    printf("GDN sandbox: T=%d docs=%d Hk=%d Hv=%d K=%d V=%d\n", T, N, Hk, Hv, K, V);

    /* CPU reference (skipped when large) */
    std::vector<float> ref[8];
    const bool check = (double)T * Hv * K * V <= 2e8;
    if (check) {
        std::vector<float> qf(nqk), kf(nqk), vf(nv), df(nv), qn(nqk), kn(nqk), rq(T * Hk), rk(T * Hk), dqn(nqk, 0),
            dkn(nqk, 0);
        for (size_t i = 0; i < nqk; i++) {
            qf[i] = bf2f(q[i]);
            kf[i] = bf2f(k[i]);
        }
        for (size_t i = 0; i < nv; i++) {
            vf[i] = bf2f(v[i]);
            df[i] = bf2f(dout[i]);
        }
        const double sc = 1.0 / sqrt((double)K);
        cpu_l2norm_fwd_f32(qn.data(), rq.data(), qf.data(), T * Hk, K, 1e-6, sc);
        cpu_l2norm_fwd_f32(kn.data(), rk.data(), kf.data(), T * Hk, K, 1e-6, 1.0);
        const size_t n8[8] = {nv, ns, nqk, nqk, nv, ng, ng, ns};
        for (int i = 0; i < 8; i++) ref[i].assign(n8[i], 0.f);
        cpu_gdn_fwd_f32(ref[0].data(), ref[1].data(), qn.data(), kn.data(), vf.data(), g.data(), beta.data(), s0.data(),
                        cu.data(), N, T, Hk, Hv, K, V);
        cpu_gdn_bwd_f32(dqn.data(), dkn.data(), ref[4].data(), ref[5].data(), ref[6].data(), ref[7].data(), df.data(),
                        dsf.data(), qn.data(), kn.data(), vf.data(), g.data(), beta.data(), s0.data(), cu.data(), N, T,
                        Hk, Hv, K, V);
        cpu_l2norm_bwd_f32(ref[2].data(), dqn.data(), qf.data(), rq.data(), T * Hk, K, sc);
        cpu_l2norm_bwd_f32(ref[3].data(), dkn.data(), kf.data(), rk.data(), T * Hk, K, 1.0);
    }

    uint16_t *dq_ = up(q), *dk_ = up(k), *dv_ = up(v), *ddo = up(dout);
    float *dg_ = up(g), *db_ = up(beta), *ds0_ = up(s0), *ddsf = up(dsf);
    int32_t *dcu = up(cu);
    uint16_t *out, *gq, *gk, *gv;
    float *sfin, *gg, *gb, *gs0;
    CUDA_CHECK(cudaMalloc(&out, nv * 2));
    CUDA_CHECK(cudaMalloc(&gq, nqk * 2));
    CUDA_CHECK(cudaMalloc(&gk, nqk * 2));
    CUDA_CHECK(cudaMalloc(&gv, nv * 2));
    CUDA_CHECK(cudaMalloc(&sfin, ns * 4));
    CUDA_CHECK(cudaMalloc(&gg, ng * 4));
    CUDA_CHECK(cudaMalloc(&gb, ng * 4));
    CUDA_CHECK(cudaMalloc(&gs0, ns * 4));
    const size_t wsb = gdn_workspace_bytes(T, N, Hk, Hv, K, V);
    const size_t nsb = gdn_naive::bwd_scratch_bytes(cu.data(), N, T, Hv, K, V);
    void *ws, *scr;
    CUDA_CHECK(cudaMalloc(&ws, wsb));
    CUDA_CHECK(cudaMalloc(&scr, nsb));

    const char *names[8] = {"out", "s_final", "dq", "dk", "dv", "dg", "dbeta", "ds0"};
    for (int var = 0; var <= 1; var++) {
        if (variant >= 0 && variant != var) continue;
        auto run = [&]() {
            if (var == 0) {
                CUDA_CHECK(gdn_naive::fwd(out, sfin, dq_, dk_, dv_, dg_, db_, ds0_, dcu, N, T, Hk, Hv, K, V, 0));
                CUDA_CHECK(gdn_naive::bwd(gq, gk, gv, gg, gb, gs0, ddo, ddsf, dq_, dk_, dv_, dg_, db_, ds0_, dcu,
                                          cu.data(), N, T, Hk, Hv, K, V, scr, 0));
            } else {
                int r = gdn_fwd(out, sfin, dq_, dk_, dv_, dg_, db_, ds0_, dcu, N, T, Hk, Hv, K, V, ws, wsb, nullptr);
                if (!r)
                    r = gdn_bwd(gq, gk, gv, gg, gb, gs0, ddo, ddsf, dq_, dk_, dv_, dg_, db_, ds0_, dcu, N, T, Hk, Hv, K,
                                V, 1, ws, wsb, nullptr);
                if (r) {
                    fprintf(stderr, "gdn: %d %s\n", r, gdn_last_error());
                    exit(2);
                }
            }
        };
        run();
        CUDA_CHECK(cudaDeviceSynchronize());
        printf("\nvariant %d (%s)\n", var, var ? "chunked" : "naive");
        if (check) {
            std::vector<float> got[8] = {down(out, nv), down(sfin, ns), down(gq, nqk), down(gk, nqk),
                                         down(gv, nv),  down(gg, ng),   down(gb, ng),  down(gs0, ns)};
            for (int i = 0; i < 8; i++) printf("  %-8s rel err %.3e\n", names[i], rel(got[i], ref[i]));
        }
        std::vector<float> ms;
        cudaEvent_t a, b;
        CUDA_CHECK(cudaEventCreate(&a));
        CUDA_CHECK(cudaEventCreate(&b));
        for (int i = 0; i < iters; i++) {
            CUDA_CHECK(cudaEventRecord(a));
            run();
            CUDA_CHECK(cudaEventRecord(b));
            CUDA_CHECK(cudaEventSynchronize(b));
            float t;
            CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
            ms.push_back(t);
        }
        std::sort(ms.begin(), ms.end());
        printf("  fwd+bwd %.3f ms (median of %d), %.2f Mtok/s\n", ms[ms.size() / 2], iters,
               T / ms[ms.size() / 2] / 1e3);
        CUDA_CHECK(cudaEventDestroy(a));
        CUDA_CHECK(cudaEventDestroy(b));
    }
    return 0;
}
