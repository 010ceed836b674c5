// bench_ops.cu: timings of the CUDA ops at Olmo-Hybrid-7B shapes.
//   1. cuBLASLt GEMMs at the 7B linear shapes (T = 8192 tokens: forward,
//      input gradient, weight gradient), as a fraction of the 8192^3 rate
//      measured in the same run (target >= 85%);
//   2. attention, 30 heads x 128, fwd and fwd+bwd TFLOP/s at T 4096, 8192,
//      32768 and 16 packed documents of 512 (causal FLOPs: fwd 2*2*L^2*H*D/2
//      per document, fwd+bwd 3.5x that);
//   3. fused linear + cross-entropy at 8192 x 3840 -> 100352: time and memory.
// CUDA events around each region, after warm-up; median of the repetitions;
// inputs random (never zeros).  Prints one table; exit 1 if an op fails.
//
//   bench_ops [--quick] [--only gemm|attn|ce]
#include "kernels/cuda/attention.h"
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/gemm.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <functional>
#include <vector>

#define CK(call)                                                                                           \
    do {                                                                                                   \
        cudaError_t e_ = (call);                                                                           \
        if (e_ != cudaSuccess) {                                                                           \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));         \
            exit(2);                                                                                       \
        }                                                                                                  \
    } while (0)
#define OPCK(call)                                                                                         \
    do {                                                                                                   \
        int s_ = (call);                                                                                   \
        if (s_ != OH_CUDA_OK) {                                                                            \
            fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, #call, s_,             \
                    oh_cuda_status_str(s_), oh_cuda_last_error());                                         \
            exit(1);                                                                                       \
        }                                                                                                  \
    } while (0)

static int g_reps = 20;

// Uniform values in [-scale, scale) from a hash of the index (bf16 bits).
__global__ void fill_bf16(uint16_t *p, size_t n, uint64_t seed, float scale) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float u = (float)(z >> 40) * (1.0f / 16777216.0f) * 2.f - 1.f;
        __nv_bfloat16 b = __float2bfloat16(u * scale);
        p[i] = *reinterpret_cast<uint16_t *>(&b);
    }
}

static void *dalloc(size_t bytes) {
    void *p = nullptr;
    CK(cudaMalloc(&p, bytes));
    return p;
}
static uint16_t *rand_bf16(size_t n, uint64_t seed, float scale) {
    uint16_t *p = (uint16_t *)dalloc(n * 2);
    fill_bf16<<<1024, 256>>>(p, n, seed, scale);
    CK(cudaGetLastError());
    return p;
}

// Median milliseconds of fn() over g_reps runs (reps < 0) after `warm` runs.
static double time_ms(const std::function<void()> &fn, int warm = 3, int reps = -1) {
    if (reps < 0) reps = g_reps;
    for (int i = 0; i < warm; i++) fn();
    CK(cudaDeviceSynchronize());
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<float> t;
    for (int i = 0; i < reps; i++) {
        CK(cudaEventRecord(a));
        fn();
        CK(cudaEventRecord(b));
        CK(cudaEventSynchronize(b));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

// ---------------------------------------------------------------- GEMMs
static void bench_gemm() {
    printf("\n== cuBLASLt GEMMs (bf16 in, fp32 accumulate), T = 8192 tokens ==\n");
    printf("%-34s %8s %8s %8s %10s %9s %7s\n", "shape", "M", "N", "K", "ms", "TFLOP/s", "vs8192^3");
    const int S = 8192;
    uint16_t *A = rand_bf16((size_t)S * S, 1, 1.f), *B = rand_bf16((size_t)S * S, 2, 1.f);
    uint16_t *C = (uint16_t *)dalloc((size_t)S * S * 2);
    // GEMMs are short: at least 20 repetitions even with --quick; a longer warm-up for the clocks.
    const int greps = std::max(g_reps, 20);
    // The reference is timed before and after the 7B shapes and the faster of the
    // two is the peak (clocks drift by a few percent over a run; the slower
    // reference would flatter the shapes).
    auto ref_ms = [&] {
        return time_ms([&] { OPCK(oh_cuda_gemm(C, OH_DTYPE_BF16, A, B, S, S, S, 0, 1, 1.f, 0.f, 0, 0, 0, 0)); }, 20,
                       greps);
    };
    const double ms_before = ref_ms();

    struct Lin {
        const char *name;
        int I, O;
    } lins[] = {{"attn q/k/v/o 3840->3840", 3840, 3840}, {"gdn q/k 3840->2880", 3840, 2880},
                {"gdn v/g 3840->5760", 3840, 5760},       {"gdn o 5760->3840", 5760, 3840},
                {"mlp gate|up 3840->22016", 3840, 22016}, {"mlp gate/up 3840->11008", 3840, 11008},
                {"mlp down 11008->3840", 11008, 3840}};
    const int T = 8192;
    struct Row {
        char name[96];
        int m, n, k;
        double ms, tf;
    };
    std::vector<Row> rows;
    for (const Lin &l : lins) {
        uint16_t *X = rand_bf16((size_t)T * l.I, 3, 1.f), *W = rand_bf16((size_t)l.O * l.I, 4, 0.02f);
        uint16_t *Y = rand_bf16((size_t)T * l.O, 5, 1.f), *dX = (uint16_t *)dalloc((size_t)T * l.I * 2);
        float *dW = (float *)dalloc((size_t)l.O * l.I * 4);
        CK(cudaMemset(dW, 0, (size_t)l.O * l.I * 4));
        const double fl = 2.0 * T * l.I * l.O;
        double t1 = time_ms([&] { OPCK(oh_cuda_linear_fwd(Y, OH_DTYPE_BF16, X, W, T, l.I, l.O, 0)); }, 3, greps);
        double t2 = time_ms([&] { OPCK(oh_cuda_linear_bwd_data(dX, OH_DTYPE_BF16, Y, W, T, l.I, l.O, 0, 0)); }, 3, greps);
        double t3 = time_ms([&] { OPCK(oh_cuda_linear_bwd_weight(dW, OH_DTYPE_F32, Y, X, T, l.I, l.O, 0)); }, 3, greps);
        const char *kind[3] = {"fwd  Y=XW^T", "bwd  dX=dYW", "bwd  dW+=dY^TX f32"};
        int mnk[3][3] = {{T, l.O, l.I}, {T, l.I, l.O}, {l.O, l.I, T}};
        double tt[3] = {t1, t2, t3};
        for (int i = 0; i < 3; i++) {
            Row r;
            snprintf(r.name, sizeof r.name, "%s %s", l.name, kind[i]);
            r.m = mnk[i][0], r.n = mnk[i][1], r.k = mnk[i][2], r.ms = tt[i], r.tf = fl / (tt[i] * 1e-3) / 1e12;
            rows.push_back(r);
        }
        CK(cudaFree(X));
        CK(cudaFree(W));
        CK(cudaFree(Y));
        CK(cudaFree(dX));
        CK(cudaFree(dW));
    }
    const double ms_after = ref_ms();
    CK(cudaFree(A));
    CK(cudaFree(B));
    CK(cudaFree(C));
    const double ms = std::min(ms_before, ms_after), peak = 2.0 * S * S * S / (ms * 1e-3) / 1e12;
    printf("%-34s %8d %8d %8d %10.3f %9.1f %6.0f%%\n", "reference 8192^3 (NT)", S, S, S, ms, peak, 100.0);
    double worst = 1e9;
    for (const Row &r : rows) {
        printf("%-34s %8d %8d %8d %10.3f %9.1f %6.0f%%\n", r.name, r.m, r.n, r.k, r.ms, r.tf, 100.0 * r.tf / peak);
        worst = std::min(worst, r.tf / peak);
    }
    printf("reference 8192^3 timed before and after the shapes: %.1f and %.1f TFLOP/s (the faster is the peak)\n",
           2.0 * S * S * S / (ms_before * 1e-3) / 1e12, 2.0 * S * S * S / (ms_after * 1e-3) / 1e12);
    printf("GEMM summary: 8192^3 %.1f TFLOP/s; worst 7B shape %.0f%% of it (target >= 85%%)\n", peak, 100.0 * worst);
    {
        // The same weight-gradient shape with cuBLASLt's first heuristic choice (OH_GEMM_TUNE=0), for comparison.
        const int I = 3840, O = 2880;
        uint16_t *X = rand_bf16((size_t)T * I, 3, 1.f), *Y = rand_bf16((size_t)T * O, 5, 1.f);
        float *dW = (float *)dalloc((size_t)O * I * 4);
        CK(cudaMemset(dW, 0, (size_t)O * I * 4));
        oh_cuda_gemm_release();
        setenv("OH_GEMM_TUNE", "0", 1);
        double tu = time_ms([&] { OPCK(oh_cuda_linear_bwd_weight(dW, OH_DTYPE_F32, Y, X, T, I, O, 0)); }, 3, greps);
        unsetenv("OH_GEMM_TUNE");
        oh_cuda_gemm_release();
        double tt = time_ms([&] { OPCK(oh_cuda_linear_bwd_weight(dW, OH_DTYPE_F32, Y, X, T, I, O, 0)); }, 3, greps);
        const double fl = 2.0 * T * I * O;
        printf("gdn q/k dW f32: heuristic first %.3f ms (%.0f%%), timed choice %.3f ms (%.0f%%)\n", tu,
               100.0 * fl / (tu * 1e-3) / 1e12 / peak, tt, 100.0 * fl / (tt * 1e-3) / 1e12 / peak);
        CK(cudaFree(X));
        CK(cudaFree(Y));
        CK(cudaFree(dW));
    }
}

// ---------------------------------------------------------------- attention
static void bench_attention(bool quick) {
    printf("\n== attention, causal, bf16, 30 heads x 128 (TFLOP/s counting the causal half; fwd+bwd = 3.5x fwd) ==\n");
    printf("%-28s %9s %8s %10s %10s %12s %12s %10s\n", "case", "fwd/bwd", "T", "fwd ms", "fwd TF/s", "fwd+bwd ms",
           "f+b TF/s", "bwd ms");
    struct Case {
        const char *name;
        int T, ndocs;
    } cases[] = {{"T 4096", 4096, 1}, {"T 8192", 8192, 1}, {"T 32768", 32768, 1}, {"16 docs x 512 (T 8192)", 8192, 16}};
    const int H = 30, D = 128;
    const float scale = 1.f / sqrtf((float)D);
    for (const Case &c : cases) {
        if (quick && c.T > 8192) continue;
        const int T = c.T, L = T / c.ndocs;
        std::vector<int32_t> cu(c.ndocs + 1);
        for (int i = 0; i <= c.ndocs; i++) cu[i] = i * L;
        int32_t *dcu = (int32_t *)dalloc(cu.size() * 4);
        CK(cudaMemcpy(dcu, cu.data(), cu.size() * 4, cudaMemcpyHostToDevice));
        size_t n = (size_t)T * H * D;
        uint16_t *q = rand_bf16(n, 11, 1.f), *k = rand_bf16(n, 12, 1.f), *v = rand_bf16(n, 13, 1.f),
                 *dout = rand_bf16(n, 14, 1.f);
        uint16_t *out = (uint16_t *)dalloc(n * 2), *dq = (uint16_t *)dalloc(n * 2), *dk = (uint16_t *)dalloc(n * 2),
                 *dv = (uint16_t *)dalloc(n * 2);
        float *lse = (float *)dalloc((size_t)T * H * 4);
        size_t wsb = oh_cuda_attention_bwd_workspace_bytes(T, H, D);
        void *ws = dalloc(wsb);
        auto fwd = [&] { OPCK(oh_cuda_attention_fwd(out, lse, q, k, v, dcu, c.ndocs, L, T, H, H, D, scale, NULL, 0.f, 0)); };
        auto bwd = [&] {
            OPCK(oh_cuda_attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, dcu, c.ndocs, L, T, H, H, D, scale, NULL,
                                       0.f, ws, wsb, 0));
        };
        int reps = T >= 32768 ? 5 : g_reps;
        double flops = (double)c.ndocs * 2.0 * 2.0 * (double)L * L * H * D / 2.0;
        // The tile variants of attention.cu (attn_fwd_variant, attn_bwd_variant), as forward/backward.
        const char *variants[][2] = {{"wg", "wg"}, {"wg3", "wg"}, {"4x32", "wg"}, {"4x32", "8"}};
        for (auto &w : variants) {
            setenv("OH_ATTN_FWD_WARPS", w[0], 1);
            setenv("OH_ATTN_BWD_WARPS", w[1], 1);
            char name[16];
            snprintf(name, sizeof name, "%s/%s", w[0], w[1]);
            double tf = time_ms(fwd, 2, reps);
            double tfb = time_ms([&] { fwd(); bwd(); }, 2, reps);
            double tb = time_ms(bwd, 1, reps);
            printf("%-28s %9s %8d %10.3f %10.1f %12.3f %12.1f %10.3f\n", c.name, name, T, tf,
                   flops / (tf * 1e-3) / 1e12, tfb, 3.5 * flops / (tfb * 1e-3) / 1e12, tb);
            fflush(stdout);
        }
        unsetenv("OH_ATTN_FWD_WARPS");
        unsetenv("OH_ATTN_BWD_WARPS");
        for (void *p : {(void *)dcu, (void *)q, (void *)k, (void *)v, (void *)dout, (void *)out, (void *)dq, (void *)dk,
                        (void *)dv, (void *)lse, ws})
            CK(cudaFree(p));
    }
    printf("(targets at T 8192: fwd+bwd above SDPA flash, 282 TFLOP/s on H100; cuDNN 480)\n");
}

// ---------------------------------------------------------------- fused CE
static void bench_ce() {
    printf("\n== fused linear + cross-entropy, N 8192, C 3840, V 100352 ==\n");
    const int N = 8192, C = 3840, V = 100352;
    size_t free0 = 0, total = 0;
    CK(cudaDeviceSynchronize());
    CK(cudaMemGetInfo(&free0, &total));
    uint16_t *h = rand_bf16((size_t)N * C, 21, 1.f), *W = rand_bf16((size_t)V * C, 22, 0.05f);
    std::vector<int32_t> tg(N);
    for (int i = 0; i < N; i++) tg[i] = (i % 10 == 0) ? -1 : (int32_t)((i * 7919u) % (unsigned)V);
    int32_t *dt = (int32_t *)dalloc(N * 4);
    CK(cudaMemcpy(dt, tg.data(), N * 4, cudaMemcpyHostToDevice));
    float *loss = (float *)dalloc(N * 4), *lp = (float *)dalloc(N * 4), *lse = (float *)dalloc(N * 4),
          *wt = (float *)dalloc(N * 4);
    std::vector<float> ones(N, 1.f / N);
    CK(cudaMemcpy(wt, ones.data(), N * 4, cudaMemcpyHostToDevice));
    uint16_t *dh = (uint16_t *)dalloc((size_t)N * C * 2);
    float *dW = (float *)dalloc((size_t)V * C * 4);
    CK(cudaMemset(dh, 0, (size_t)N * C * 2));
    CK(cudaMemset(dW, 0, (size_t)V * C * 4));
    size_t wsb = oh_cuda_fused_ce_workspace_bytes(N, V, C);
    void *ws = dalloc(wsb);
    auto fwd = [&] { OPCK(oh_cuda_fused_ce_fwd(loss, lp, lse, h, W, dt, N, V, C, ws, wsb, 0)); };
    auto bwd = [&] { OPCK(oh_cuda_fused_ce_bwd(dh, OH_DTYPE_BF16, dW, OH_DTYPE_F32, wt, lse, h, W, dt, N, V, C, ws, wsb, 0)); };
    double tf = time_ms(fwd, 2, 10), tfb = time_ms([&] { fwd(); bwd(); }, 1, 10);
    size_t free1 = 0;
    CK(cudaDeviceSynchronize());
    CK(cudaMemGetInfo(&free1, &total));
    double gemm_flops = 2.0 * N * (double)V * C;
    const double GiB = 1024.0 * 1024.0 * 1024.0;
    printf("fwd (loss, logprob, lse)      %9.3f ms  (%.0f TFLOP/s on the logits GEMM)\n", tf, gemm_flops / (tf * 1e-3) / 1e12);
    printf("fwd + bwd (dh bf16, dW fp32)  %9.3f ms  (4 GEMM passes: %.0f TFLOP/s)\n", tfb,
           4 * gemm_flops / (tfb * 1e-3) / 1e12);
    printf("workspace                     %9.3f GiB (logits chunk fp32 + dlogits bf16 + dh fp32 accumulator)\n",
           wsb / GiB);
    printf("device memory in use for the op %7.3f GiB (h, W, dh, dW fp32, workspace, cuBLASLt workspace)\n",
           (double)(free0 - free1) / GiB);
    printf("  of which beyond inputs and gradients: %.3f GiB\n",
           (double)(free0 - free1) / GiB - ((double)N * C * 2 * 2 + (double)V * C * 2 + (double)V * C * 4) / GiB);
    for (void *p : {(void *)h, (void *)W, (void *)dt, (void *)loss, (void *)lp, (void *)lse, (void *)wt, (void *)dh,
                    (void *)dW, ws})
        CK(cudaFree(p));
}

int main(int argc, char **argv) {
    bool quick = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true, g_reps = 5;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--only gemm|attn|ce]\n", argv[0]);
            return 2;
        }
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s (sm_%d%d, %d SMs, %.1f GiB)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount,
           prop.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    if (!only || !strcmp(only, "gemm")) bench_gemm();
    if (!only || !strcmp(only, "attn")) bench_attention(quick);
    if (!only || !strcmp(only, "ce")) bench_ce();
    oh_cuda_gemm_release();
    return 0;
}
