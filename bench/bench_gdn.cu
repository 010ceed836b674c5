/* bench_gdn.cu: time the chunked GDN kernels (kernels/cuda/gdn.h) at the
 * Olmo-Hybrid-7B shape (Hk = Hv = 30, K = 96, V = 192, bf16 q/k/v, fp32 g and
 * beta, l2norm of q and k in the kernel): forward, and forward + backward
 * (gdn_fwd then gdn_bwd reusing the forward's workspace), with CUDA events,
 * 3 warm-up runs, median of 20.  Inputs are random (never zeros).
 *
 * Shapes: 1 x 8192, 4 x 8192 (four documents packed, T = 32768), 1 x 32768,
 * and 16 documents of mixed lengths packed into 32768.  Prints ms, Mtok/s,
 * achieved TFLOP/s (the matrix products of the chunked algorithm, counted on
 * full 64 x 64 tiles; see flops_fwd / flops_bwd), the floors (bytes that must
 * move at 3.0 TB/s, those FLOPs at 700 TFLOP/s) and FLA's times from
 * docs/PERF.md (H100, measured 2026-11-22, not this run).  Then one profiled
 * forward + backward per shape: time per kernel.
 *
 * usage: bench_gdn [--quick] [--tsv FILE]   (--tsv appends one row per shape) */
#include "kernels/cuda/gdn.h"

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <algorithm>
#include <string>
#include <vector>
#include "tests/gpu/gpu_host.h"

#define GDN_CHECK(expr) LIB_CHECK(expr, gdn_last_error())

static __device__ uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}
static __device__ float unif(uint64_t h) { return ((h >> 40) + 0.5f) * (1.0f / 16777216.0f); }
static __device__ float normal(uint64_t seed, size_t i) {
    const uint64_t h = mix(seed ^ mix(i));
    return sqrtf(-2.f * logf(unif(h))) * cospif(2.f * unif(mix(h)));
}
static __device__ uint16_t to_bf16(float f) {
    const uint32_t u = __float_as_uint(f);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
/* bf16 N(0, 1) */
static __global__ void init_normal_bf16(uint16_t *x, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = to_bf16(normal(seed, i));
}
/* g = logsigmoid(N(0, 1)) (as FLA's benchmarks), beta = 2 sigmoid(N(0, 1)) */
static __global__ void init_gates(float *g, float *beta, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float a = normal(seed, i), b = normal(seed + 1, i);
        g[i] = -log1pf(expf(-a));
        beta[i] = 2.f / (1.f + expf(-b));
    }
}

struct Shape {
    const char *name;
    std::vector<int> lens;
    double fla_fwd, fla_fb; /* docs/PERF.md, ms; 0 when not measured */
};

/* Matrix-product FLOPs of the chunked algorithm per (64-token chunk, head). */
static double flops_fwd(double K, double V) {
    const double L = 64;
    return 2 * (3 * L * L * K     /* Kn Kn^T, Qn Kn^T, Wu */
                + 2 * L * L * V   /* Uv, P U */
                + 3 * L * K * V); /* Wu S0, Kn^T U, Qn S0 */
}
static double flops_bwd(double K, double V) {
    const double L = 64;
    return 2 * (4 * L * L * V     /* P^T dO, T^T dU, dO U^T, dR U^T */
                + 6 * L * K * V   /* Kn dH, Qn^T Z, Wu^T Y, dO S0^T, U dH^T, dR S0^T */
                + 5 * L * L * K); /* Kn Kn^T, dPg Kn, dPg^T Qn, Z Kn, Z^T Kn */
}

static float median(std::vector<float> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int main(int argc, char **argv) {
    bool quick = false;
    const char *tsv = nullptr;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--tsv") && i + 1 < argc)
            tsv = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--tsv FILE]\n", argv[0]);
            return 2;
        }
    }
    const int Hk = 30, Hv = 30, K = 96, V = 192, iters = 20, warm = 3;
    cudaDeviceProp prop;
    CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs; GDN Hk=%d Hv=%d K=%d V=%d, bf16 q/k/v, fp32 g/beta/state\n", prop.name,
           prop.multiProcessorCount, Hk, Hv, K, V);

    std::vector<Shape> shapes = {{"1x8192", {8192}, 0.77, 3.88},
                                 {"4x8192", {8192, 8192, 8192, 8192}, 2.63, 11.96},
                                 {"1x32768", {32768}, 2.82, 12.80},
                                 {"16docs/32768", {}, 0, 0}};
    {
        /* 16 documents of mixed lengths (deterministic), summing to 32768 */
        uint64_t s = 12345;
        std::vector<double> w(16);
        double tot = 0;
        for (double &x : w) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x = 0.2 + (double)(s >> 11) / 9007199254740992.0 * 1.8;
            tot += x;
        }
        int used = 0;
        for (int i = 0; i < 16; i++) {
            const int l = i == 15 ? 32768 - used : (int)(32768 * w[i] / tot);
            shapes[3].lens.push_back(l);
            used += l;
        }
    }
    if (quick) shapes.resize(1);

    FILE *tf = nullptr;
    if (tsv) {
        tf = fopen(tsv, "a");
        if (!tf) {
            perror(tsv);
            return 2;
        }
    }
    char date[32];
    {
        time_t t = time(nullptr);
        strftime(date, sizeof date, "%Y-%m-%d %H:%M", gmtime(&t));
    }

    printf("\n%-13s %6s | %8s %8s %7s | %8s %8s %7s | %8s %6s | %s\n", "shape", "T", "fwd ms", "Mtok/s", "TFLOP/s",
           "f+b ms", "Mtok/s", "TFLOP/s", "FLA f+b", "x FLA", "floors f+b (bytes | FLOPs)");
    std::vector<std::string> profiles;
    for (const Shape &sh : shapes) {
        const int N = (int)sh.lens.size();
        std::vector<int32_t> cu(1, 0);
        for (int l : sh.lens) cu.push_back(cu.back() + l);
        const int T = cu.back();
        const size_t nqk = (size_t)T * Hk * K, nv = (size_t)T * Hv * V, ng = (size_t)T * Hv;
        uint16_t *q, *k, *v, *dout, *out, *dq, *dk, *dv;
        float *g, *beta, *dg, *db;
        int32_t *dcu;
        CUDA_CHECK(cudaMalloc(&q, nqk * 2));
        CUDA_CHECK(cudaMalloc(&k, nqk * 2));
        CUDA_CHECK(cudaMalloc(&v, nv * 2));
        CUDA_CHECK(cudaMalloc(&dout, nv * 2));
        CUDA_CHECK(cudaMalloc(&out, nv * 2));
        CUDA_CHECK(cudaMalloc(&dq, nqk * 2));
        CUDA_CHECK(cudaMalloc(&dk, nqk * 2));
        CUDA_CHECK(cudaMalloc(&dv, nv * 2));
        CUDA_CHECK(cudaMalloc(&g, ng * 4));
        CUDA_CHECK(cudaMalloc(&beta, ng * 4));
        CUDA_CHECK(cudaMalloc(&dg, ng * 4));
        CUDA_CHECK(cudaMalloc(&db, ng * 4));
        CUDA_CHECK(cudaMalloc(&dcu, cu.size() * 4));
        CUDA_CHECK(cudaMemcpy(dcu, cu.data(), cu.size() * 4, cudaMemcpyHostToDevice));
        init_normal_bf16<<<1024, 256>>>(q, nqk, 1);
        init_normal_bf16<<<1024, 256>>>(k, nqk, 2);
        init_normal_bf16<<<1024, 256>>>(v, nv, 3);
        init_normal_bf16<<<1024, 256>>>(dout, nv, 4);
        init_gates<<<1024, 256>>>(g, beta, ng, 5);
        CUDA_CHECK(cudaGetLastError());
        const size_t wsb = gdn_workspace_bytes(T, N, Hk, Hv, K, V);
        void *ws;
        CUDA_CHECK(cudaMalloc(&ws, wsb));
        CUDA_CHECK(cudaDeviceSynchronize());

        auto fwd = [&]() {
            GDN_CHECK(gdn_fwd(out, nullptr, q, k, v, g, beta, nullptr, dcu, N, T, Hk, Hv, K, V, ws, wsb, nullptr));
        };
        auto bwd = [&]() {
            GDN_CHECK(gdn_bwd(dq, dk, dv, dg, db, nullptr, dout, nullptr, q, k, v, g, beta, nullptr, dcu, N, T, Hk, Hv,
                              K, V, 1, ws, wsb, nullptr));
        };
        cudaEvent_t e0, e1;
        CUDA_CHECK(cudaEventCreate(&e0));
        CUDA_CHECK(cudaEventCreate(&e1));
        for (int i = 0; i < warm; i++) {
            fwd();
            bwd();
        }
        CUDA_CHECK(cudaDeviceSynchronize());
        std::vector<float> tf_ms, tfb_ms;
        for (int i = 0; i < iters; i++) {
            CUDA_CHECK(cudaEventRecord(e0));
            fwd();
            CUDA_CHECK(cudaEventRecord(e1));
            CUDA_CHECK(cudaEventSynchronize(e1));
            float ms;
            CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
            tf_ms.push_back(ms);
        }
        for (int i = 0; i < iters; i++) {
            CUDA_CHECK(cudaEventRecord(e0));
            fwd();
            bwd();
            CUDA_CHECK(cudaEventRecord(e1));
            CUDA_CHECK(cudaEventSynchronize(e1));
            float ms;
            CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
            tfb_ms.push_back(ms);
        }
        /* sanity: the last outputs are finite */
        std::vector<uint16_t> ho(4096), hq(4096);
        CUDA_CHECK(cudaMemcpy(ho.data(), out + nv - 4096, 8192, cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(hq.data(), dq, 8192, cudaMemcpyDeviceToHost));
        for (int i = 0; i < 4096; i++)
            if ((ho[i] & 0x7f80) == 0x7f80 || (hq[i] & 0x7f80) == 0x7f80) {
                fprintf(stderr, "%s: non-finite output\n", sh.name);
                return 1;
            }
        /* one profiled forward + backward */
        gdn_profile_enable(1);
        fwd();
        bwd();
        char buf[4096];
        gdn_profile_report(buf, sizeof buf);
        gdn_profile_enable(0);
        profiles.push_back(std::string(sh.name) + "\n" + buf);

        double chunks = 0;
        for (int l : sh.lens) chunks += (l + 63) / 64;
        const double ff = flops_fwd(K, V) * chunks * Hv, fb = ff + flops_bwd(K, V) * chunks * Hv;
        const double tfw = median(tf_ms), tfbw = median(tfb_ms);
        /* bytes that must move once: q k v g beta out (fwd); + dout in, dq dk dv dg dbeta out (bwd) */
        const double bytes_fb = 2.0 * (2 * nqk + nv) + 8.0 * ng + 2.0 * nv + 2.0 * nv + 2.0 * (2 * nqk + nv) + 8.0 * ng;
        printf("%-13s %6d | %8.3f %8.2f %7.1f | %8.3f %8.2f %7.1f | %8.2f %6.2f | %.3f | %.3f ms\n", sh.name, T, tfw,
               T / tfw / 1e3, ff / tfw / 1e9, tfbw, T / tfbw / 1e3, fb / tfbw / 1e9, sh.fla_fb,
               sh.fla_fb > 0 ? sh.fla_fb / tfbw : 0.0, bytes_fb / 3.0e12 * 1e3, fb / 700e12 * 1e3);
        if (tf)
            fprintf(tf, "%s\t%s\t%s\tT=%d\tdocs=%d\tfwd_ms=%.4f\tfb_ms=%.4f\tfwd_tflops=%.1f\tfb_tflops=%.1f\n", date,
                    prop.name, sh.name, T, N, tfw, tfbw, ff / tfw / 1e9, fb / tfbw / 1e9);
        CUDA_CHECK(cudaEventDestroy(e0));
        CUDA_CHECK(cudaEventDestroy(e1));
        for (void *p : {(void *)q, (void *)k, (void *)v, (void *)dout, (void *)out, (void *)dq, (void *)dk, (void *)dv,
                        (void *)g, (void *)beta, (void *)dg, (void *)db, (void *)dcu, ws})
            CUDA_CHECK(cudaFree(p));
    }
    if (tf) fclose(tf);
    printf("\nFLA f+b: flash-linear-attention chunk_gated_delta_rule, docs/PERF.md (H100, 2026-11-22), not this "
           "run; target <= 1.9 ms at 1x8192.\n");
    printf("\nper kernel, one forward + backward:\n");
    for (const std::string &p : profiles) printf("%s", p.c_str());
    return 0;
}
