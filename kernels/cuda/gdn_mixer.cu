/* gdn_mixer.cu: GDN gates and depthwise causal conv1d + SiLU, forward and
 * backward (see gdn_mixer.h).  Memory-bound elementwise / stencil kernels:
 * one pass over the activations, 16-byte accesses where the shapes allow.
 *
 * Kernels
 *   k_gates_fwd       grid-stride over groups of 8 (token, head) elements.
 *   k_gates_bwd       block = 32 heads x 8 row lanes, per (head group, row tile):
 *                     db, da, and the tile's sums of dg*g and dz (workspace).
 *   k_gates_reduce    one warp per dA_log[h] / ddt_bias[h]: the tile sums in
 *                     a fixed order (lane-strided, then a butterfly).
 *   k_conv_fwd<V, W>  one thread per V channels (V = 8: 16-byte rows, or 1)
 *                     and row tile; the W-row input window slides in registers,
 *                     restarting (zeros) at each document start inside the tile.
 *   k_conv_bwd<V, W>  same tiling: per row t it recomputes the pre-activation,
 *                     dp = dout * silu'(pre); dx rows accumulate in a W-row
 *                     window of registers and leave it complete (rows past the
 *                     tile, up to W-1, are read to finish the tile's last rows);
 *                     per-tile dw partials go to the workspace.
 *   k_conv_dw_reduce  dw = the tile partials summed in tile order.
 * Several convs (q, k, v) share one launch: the thread's channel group picks
 * the conv (prefix sums of the channel groups in the kernel arguments).
 *
 * Builds for the GPU with nvcc and, to check it without one, as C++ with
 * -DOH_EMU and kernels/cuda/dev/emu/cuda_emu.h force-included
 * (scripts/gpu_mixer_check.sh --emu). */
#include "kernels/cuda/gdn_mixer.h"
#include "kernels/cuda/ops_common.cuh"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

/* ------------------------------------------------------------------ errors */

static thread_local char mix_errbuf[512];

static int mix_fail(int status, const char *file, int line, const char *fmt, ...) {
    int n = snprintf(mix_errbuf, sizeof mix_errbuf, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && n < (int)sizeof mix_errbuf) vsnprintf(mix_errbuf + n, sizeof mix_errbuf - n, fmt, ap);
    va_end(ap);
    return status;
}

extern "C" const char *gdn_mixer_last_error(void) { return mix_errbuf; }

#define MIX_CUDA_TRY(expr)                                                                                    \
    do {                                                                                                      \
        cudaError_t e_ = (expr);                                                                              \
        if (e_ != cudaSuccess)                                                                                \
            return mix_fail(GDN_MIXER_CUDA, __FILE__, __LINE__, "%s: %s", #expr, cudaGetErrorString(e_));     \
    } while (0)
#define MIX_REQUIRE(cond, status)                                                                             \
    do {                                                                                                      \
        if (!(cond)) return mix_fail(status, __FILE__, __LINE__, "precondition failed: %s", #cond);          \
    } while (0)
#define MIX_ARG(cond) MIX_REQUIRE(cond, GDN_MIXER_BAD_ARG)

namespace {

enum { MAXC = GDN_MIXER_MAX_CONVS, MAXW = GDN_MIXER_MAX_WIDTH };
enum { GB_X = 32, GB_Y = 8 };   /* k_gates_bwd block: heads x row lanes */
enum { CONV_THREADS = 128 };    /* k_conv_* block */
enum { MAX_TILES_BWD = 256 };   /* row tiles of a backward (bounds the workspace) */

/* Row tiles: they depend on T only (the sums over T are then reproducible). */
int rows_fwd(int T) { return max(32, (T + 1023) / 1024); }
int rows_bwd(int T) { return max(64, (T + MAX_TILES_BWD - 1) / MAX_TILES_BWD); }
int tiles(int T, int rows) { return (T + rows - 1) / rows; }

bool al(const void *p, size_t a) { return p == nullptr || ((uintptr_t)p % a) == 0; }

/* ------------------------------------------------------------------- gates */

__device__ __forceinline__ float sigmoid_acc(float x) { return 1.f / (1.f + expf(-x)); }
/* torch softplus (beta 1, threshold 20) and its derivative */
__device__ __forceinline__ float softplus_acc(float z) { return z > 20.f ? z : log1pf(expf(z)); }
__device__ __forceinline__ float dsoftplus_acc(float z) { return z > 20.f ? 1.f : sigmoid_acc(z); }

/* Thread i: elements 8i .. 8i+7 of the flat [T * H] arrays. */
__global__ void __launch_bounds__(256) k_gates_fwd(float *beta, float *g, const bf16 *b, const bf16 *a,
                                                   const float *A_log, const float *dt_bias, size_t n, int H,
                                                   float bscale, int vec) {
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i * 8 < n; i += stride) {
        const size_t e0 = i * 8;
        const bool full = vec && e0 + 8 <= n;
        float bv[8] = {}, av[8] = {}, ob[8], og[8];
        if (full) {
            if (beta) load_bf16<8>(b + e0, bv);
            if (g) load_bf16<8>(a + e0, av);
        } else {
            for (int e = 0; e < 8 && e0 + e < n; e++) {
                if (beta) bv[e] = __bfloat162float(b[e0 + e]);
                if (g) av[e] = __bfloat162float(a[e0 + e]);
            }
        }
        int h = (int)(e0 % (size_t)H);
#pragma unroll
        for (int e = 0; e < 8; e++) {
            ob[e] = bscale * sigmoid_acc(bv[e]);
            og[e] = 0.f;
            if (g && e0 + e < n) og[e] = -expf(A_log[h]) * softplus_acc(av[e] + dt_bias[h]);
            if (++h == H) h = 0;
        }
        if (full) {
            if (beta) {
                reinterpret_cast<float4 *>(beta + e0)[0] = make_float4(ob[0], ob[1], ob[2], ob[3]);
                reinterpret_cast<float4 *>(beta + e0)[1] = make_float4(ob[4], ob[5], ob[6], ob[7]);
            }
            if (g) {
                reinterpret_cast<float4 *>(g + e0)[0] = make_float4(og[0], og[1], og[2], og[3]);
                reinterpret_cast<float4 *>(g + e0)[1] = make_float4(og[4], og[5], og[6], og[7]);
            }
        } else {
            for (int e = 0; e < 8 && e0 + e < n; e++) {
                if (beta) beta[e0 + e] = ob[e];
                if (g) g[e0 + e] = og[e];
            }
        }
    }
}

/* Block (GB_X, GB_Y) over heads h0 .. h0+31 and rows [t0, t0 + rows).
 * part [tiles][2][H]: the tile's sum of dg*g (dA_log) and of dz (ddt_bias). */
__global__ void __launch_bounds__(GB_X *GB_Y) k_gates_bwd(bf16 *db, bf16 *da, float *part, const float *dbeta,
                                                          const float *dg, const bf16 *b, const bf16 *a,
                                                          const float *A_log, const float *dt_bias, int T, int H,
                                                          int rows, float bscale) {
    __shared__ float red[2][GB_Y][GB_X];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int h = blockIdx.x * GB_X + tx;
    const int t0 = blockIdx.y * rows, t1 = min(T, t0 + rows);
    float sA = 0.f, sz = 0.f;
    if (h < H) {
        const float e = dg ? expf(A_log[h]) : 0.f, dtb = dg ? dt_bias[h] : 0.f;
        for (int t = t0 + ty; t < t1; t += GB_Y) {
            const size_t i = (size_t)t * H + h;
            if (db) {
                float s = sigmoid_acc(__bfloat162float(b[i]));
                db[i] = __float2bfloat16(dbeta[i] * bscale * s * (1.f - s));
            }
            if (dg) {
                const float z = __bfloat162float(a[i]) + dtb, d = dg[i];
                const float dz = -d * e * dsoftplus_acc(z);
                if (da) da[i] = __float2bfloat16(dz);
                sz += dz;
                sA += -d * e * softplus_acc(z); /* dg/dA_log = g */
            }
        }
    }
    if (part) { /* uniform over the block */
        red[0][ty][tx] = sA;
        red[1][ty][tx] = sz;
        __syncthreads();
        if (ty < 2 && h < H) {
            float s = 0.f;
#pragma unroll
            for (int k = 0; k < GB_Y; k++) s += red[ty][k][tx];
            part[((size_t)blockIdx.y * 2 + ty) * H + h] = s;
        }
    }
}

/* One warp per output o in [0, 2H): o < H is dA_log[o], else ddt_bias[o - H]. */
__global__ void __launch_bounds__(256) k_gates_reduce(float *dA_log, float *ddt_bias, const float *part, int ntiles,
                                                      int H) {
    const int o = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    const bool ok = o < 2 * H; /* uniform over the warp */
    const int q = ok ? o / H : 0, h = ok ? o % H : 0;
    float s = 0.f;
    if (ok)
        for (int r = lane; r < ntiles; r += 32) s += part[((size_t)r * 2 + q) * H + h];
    s = warp_sum(s);
    float *dst = q ? ddt_bias : dA_log;
    if (ok && lane == 0 && dst) dst[h] = s;
}

/* -------------------------------------------------------------------- conv */

struct ConvArgs {
    int n;              /* convs */
    int groups, elems;  /* g0[n], e0[n] */
    int g0[MAXC + 1];   /* first channel group (of VEC channels) of conv i; g0[n] = total */
    int e0[MAXC + 1];   /* first element of conv i in the flat [sum C_i * W] of dw */
    int C[MAXC];
    const bf16 *x[MAXC];
    const bf16 *w[MAXC];
    bf16 *y[MAXC];        /* forward: out; backward: dx (entries may be NULL) */
    const bf16 *dy[MAXC]; /* backward: dout */
    float *part[MAXC];    /* backward: dw partials [tiles][C * W] (NULL: no dw) */
    float *dw[MAXC];
};

/* arr[i] with a compile-time index per branch (no dynamic indexing of kernel parameters) */
template <typename P, int N> __device__ __forceinline__ P pick(const P (&arr)[N], int i) {
    P r = arr[0];
#pragma unroll
    for (int k = 1; k < N; k++)
        if (i == k) r = arr[k];
    return r;
}
__device__ __forceinline__ int which(const int (&first)[MAXC + 1], int n, int v) {
    int ci = 0;
#pragma unroll
    for (int k = 1; k < MAXC; k++)
        if (k < n && v >= first[k]) ci = k;
    return ci;
}

/* The largest d in [0, ndocs) with cu[d] <= t. */
__device__ __forceinline__ int doc_of(const int32_t *cu, int ndocs, int t) {
    int lo = 0, hi = ndocs - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (cu[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}
/* Document d around row a: ds <= a < de <= T, clamped so that a malformed
 * table cannot stall the loops or reach outside [0, T). */
__device__ __forceinline__ void doc_bounds(const int32_t *cu, int d, int a, int T, int &ds, int &de) {
    ds = cu[d];
    de = cu[d + 1];
    ds = ds < 0 ? 0 : (ds > a ? a : ds);
    de = de > a ? (de < T ? de : T) : T;
}

/* w [C, W] rows c0 .. c0+VEC-1 into wr[v][j] */
/* The W - 1 rows before row a into xs[0 .. W-2] (rows before the document
 * start ds are the zero padding). */
template <int VEC, int W>
__device__ __forceinline__ void prime_window(float (&xs)[W][VEC], const bf16 *x, int C, int a, int ds) {
#pragma unroll
    for (int j = 0; j < W - 1; j++) {
        const int s = a - (W - 1) + j;
        if (s >= ds) {
            load_bf16<VEC>(x + (size_t)s * C, xs[j]);
        } else {
#pragma unroll
            for (int v = 0; v < VEC; v++) xs[j][v] = 0.f;
        }
    }
}

template <int VEC, int W> __device__ __forceinline__ void load_w(const bf16 *w, float (&wr)[VEC][W]) {
    if constexpr (VEC == 8) {
        float f[8 * W];
#pragma unroll
        for (int q = 0; q < W; q++) load_bf16<8>(w + 8 * q, f + 8 * q);
#pragma unroll
        for (int k = 0; k < 8 * W; k++) wr[k / W][k % W] = f[k];
    } else {
#pragma unroll
        for (int k = 0; k < VEC * W; k++) wr[k / W][k % W] = __bfloat162float(w[k]);
    }
}

template <int VEC, int W>
__global__ void __launch_bounds__(CONV_THREADS) k_conv_fwd(ConvArgs A, const int32_t *cu, int ndocs, int T, int rows) {
    const int grp = blockIdx.x * blockDim.x + threadIdx.x;
    if (grp >= A.groups) return;
    const int ci = which(A.g0, A.n, grp);
    const int C = pick(A.C, ci), c0 = (grp - pick(A.g0, ci)) * VEC;
    const bf16 *x = pick(A.x, ci) + c0;
    bf16 *y = pick(A.y, ci) + c0;
    float wr[VEC][W];
    load_w<VEC, W>(pick(A.w, ci) + (size_t)c0 * W, wr);

    const int t0 = blockIdx.y * rows, t1 = min(T, t0 + rows);
    int d = doc_of(cu, ndocs, t0);
    for (int a = t0; a < t1;) {
        int ds, de;
        doc_bounds(cu, d, a, T, ds, de);
        const int b = min(t1, de);
        float xs[W][VEC]; /* xs[j]: row t - (W-1) + j; xs[W-1] the current row */
        prime_window<VEC, W>(xs, x, C, a, ds);
        for (int t = a; t < b; t++) {
            load_bf16<VEC>(x + (size_t)t * C, xs[W - 1]);
            float o[VEC];
#pragma unroll
            for (int v = 0; v < VEC; v++) {
                float p = 0.f;
#pragma unroll
                for (int j = 0; j < W; j++) p = fmaf(wr[v][j], xs[j][v], p);
                o[v] = silu_f(p);
            }
            store_bf16<VEC>(y + (size_t)t * C, o);
#pragma unroll
            for (int j = 0; j < W - 1; j++)
#pragma unroll
                for (int v = 0; v < VEC; v++) xs[j][v] = xs[j + 1][v];
        }
        a = b;
        while (d + 1 < ndocs && cu[d + 1] <= a) d++;
    }
}

template <int VEC, int W>
__global__ void __launch_bounds__(CONV_THREADS) k_conv_bwd(ConvArgs A, const int32_t *cu, int ndocs, int T, int rows) {
    const int grp = blockIdx.x * blockDim.x + threadIdx.x;
    if (grp >= A.groups) return;
    const int ci = which(A.g0, A.n, grp);
    const int C = pick(A.C, ci), c0 = (grp - pick(A.g0, ci)) * VEC;
    bf16 *dx = pick(A.y, ci);
    float *part = pick(A.part, ci);
    if (!dx && !part) return;
    if (dx) dx += c0;
    const bf16 *x = pick(A.x, ci) + c0, *dy = pick(A.dy, ci) + c0;
    float wr[VEC][W];
    load_w<VEC, W>(pick(A.w, ci) + (size_t)c0 * W, wr);
    float dwa[VEC][W];
#pragma unroll
    for (int v = 0; v < VEC; v++)
#pragma unroll
        for (int j = 0; j < W; j++) dwa[v][j] = 0.f;

    const int t0 = blockIdx.y * rows, t1 = min(T, t0 + rows);
    int d = doc_of(cu, ndocs, t0);
    for (int a = t0; a < t1;) {
        int ds, de;
        doc_bounds(cu, d, a, T, ds, de);
        const int b = min(t1, de);       /* dx rows [a, b) and dw terms of rows [a, b) */
        const int e = min(b + W - 1, de); /* rows whose dp reaches dx[a, b) */
        float xs[W][VEC], acc[W][VEC];    /* acc[j]: dx row t - W + j at the start of step t */
#pragma unroll
        for (int j = 0; j < W; j++)
#pragma unroll
            for (int v = 0; v < VEC; v++) acc[j][v] = 0.f;
        prime_window<VEC, W>(xs, x, C, a, ds);
        for (int t = a; t < e; t++) {
            if (dx && t - W >= a) store_bf16<VEC>(dx + (size_t)(t - W) * C, acc[0]); /* complete */
#pragma unroll
            for (int j = 0; j < W - 1; j++)
#pragma unroll
                for (int v = 0; v < VEC; v++) acc[j][v] = acc[j + 1][v];
            float g[VEC];
            load_bf16<VEC>(x + (size_t)t * C, xs[W - 1]);
            load_bf16<VEC>(dy + (size_t)t * C, g);
#pragma unroll
            for (int v = 0; v < VEC; v++) {
                float p = 0.f;
#pragma unroll
                for (int j = 0; j < W; j++) p = fmaf(wr[v][j], xs[j][v], p);
                const float s = sigmoid_f(p);
                g[v] *= s * (1.f + p * (1.f - s)); /* dout * silu'(pre) */
            }
            if (t < b) {
#pragma unroll
                for (int v = 0; v < VEC; v++)
#pragma unroll
                    for (int j = 0; j < W; j++) dwa[v][j] = fmaf(xs[j][v], g[v], dwa[v][j]);
            }
#pragma unroll
            for (int v = 0; v < VEC; v++) {
                acc[W - 1][v] = wr[v][W - 1] * g[v];
#pragma unroll
                for (int j = 0; j < W - 1; j++) acc[j][v] = fmaf(wr[v][j], g[v], acc[j][v]);
            }
#pragma unroll
            for (int j = 0; j < W - 1; j++)
#pragma unroll
                for (int v = 0; v < VEC; v++) xs[j][v] = xs[j + 1][v];
        }
        if (dx) {
#pragma unroll
            for (int j = 0; j < W; j++) {
                const int r = e - W + j;
                if (r >= a && r < b) store_bf16<VEC>(dx + (size_t)r * C, acc[j]);
            }
        }
        a = b;
        while (d + 1 < ndocs && cu[d + 1] <= a) d++;
    }
    if (part) {
        float *p = part + (size_t)blockIdx.y * C * W + (size_t)c0 * W;
        if constexpr (VEC == 8) {
#pragma unroll
            for (int k = 0; k < 2 * W; k++)
                reinterpret_cast<float4 *>(p)[k] =
                    make_float4(dwa[(4 * k) / W][(4 * k) % W], dwa[(4 * k + 1) / W][(4 * k + 1) % W],
                                dwa[(4 * k + 2) / W][(4 * k + 2) % W], dwa[(4 * k + 3) / W][(4 * k + 3) % W]);
        } else {
#pragma unroll
            for (int k = 0; k < VEC * W; k++) p[k] = dwa[k / W][k % W];
        }
    }
}

/* dw_i[k] = sum over tiles r (in order) of part_i[r][k], flat over the convs. */
__global__ void __launch_bounds__(256) k_conv_dw_reduce(ConvArgs A, int ntiles, int W) {
    const int k = blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= A.elems) return;
    const int ci = which(A.e0, A.n, k);
    const float *part = pick(A.part, ci);
    float *dw = pick(A.dw, ci);
    if (!part || !dw) return;
    const int kk = k - pick(A.e0, ci);
    const size_t cw = (size_t)pick(A.C, ci) * W;
    float s = 0.f;
    for (int r = 0; r < ntiles; r++) s += part[(size_t)r * cw + kk];
    dw[kk] = s;
}

typedef void (*conv_kernel_t)(ConvArgs, const int32_t *, int, int, int);

template <int VEC> conv_kernel_t conv_kernel(bool bwd, int W) {
    switch (W) {
    case 1: return bwd ? k_conv_bwd<VEC, 1> : k_conv_fwd<VEC, 1>;
    case 2: return bwd ? k_conv_bwd<VEC, 2> : k_conv_fwd<VEC, 2>;
    case 3: return bwd ? k_conv_bwd<VEC, 3> : k_conv_fwd<VEC, 3>;
    case 4: return bwd ? k_conv_bwd<VEC, 4> : k_conv_fwd<VEC, 4>;
    case 5: return bwd ? k_conv_bwd<VEC, 5> : k_conv_fwd<VEC, 5>;
    case 6: return bwd ? k_conv_bwd<VEC, 6> : k_conv_fwd<VEC, 6>;
    case 7: return bwd ? k_conv_bwd<VEC, 7> : k_conv_fwd<VEC, 7>;
    default: return bwd ? k_conv_bwd<VEC, 8> : k_conv_fwd<VEC, 8>;
    }
}

/* Checks shared by the conv entries; fills A (pointers, prefix sums for VEC). */
int conv_setup(ConvArgs &A, int &vec, bool bwd, int nconv, uint16_t *const *y, const uint16_t *const *dy,
               const uint16_t *const *x, const uint16_t *const *w, const int *C, const int32_t *cu, int ndocs,
               int T, int W) {
    MIX_ARG(nconv >= 1 && nconv <= MAXC);
    MIX_ARG(x && w && C && cu);
    MIX_ARG(bwd || y);
    MIX_ARG(T >= 1 && ndocs >= 1 && W >= 1 && W <= MAXW);
    MIX_ARG(al(cu, 4));
    A = ConvArgs{};
    A.n = nconv;
    long long chans = 0;
    vec = 1;
    for (int i = 0; i < nconv; i++) {
        MIX_ARG(C[i] >= 1);
        MIX_ARG(x[i] && w[i] && al(x[i], 2) && al(w[i], 2));
        A.C[i] = C[i];
        A.x[i] = reinterpret_cast<const bf16 *>(x[i]);
        A.w[i] = reinterpret_cast<const bf16 *>(w[i]);
        if (y) A.y[i] = reinterpret_cast<bf16 *>(y[i]);
        if (!bwd) MIX_ARG(y[i]);
        MIX_ARG(al(A.y[i], 2));
        if (bwd) {
            MIX_ARG(dy && dy[i] && al(dy[i], 2));
            A.dy[i] = reinterpret_cast<const bf16 *>(dy[i]);
        }
        chans += C[i];
    }
    MIX_REQUIRE(chans * MAXW < (1LL << 30), GDN_MIXER_UNSUPPORTED);
    bool v8 = true;
    for (int i = 0; i < nconv; i++)
        v8 = v8 && C[i] % 8 == 0 && al(A.x[i], 16) && al(A.w[i], 16) && al(A.y[i], 16) && al(A.dy[i], 16);
    vec = v8 ? 8 : 1;
    A.g0[0] = A.e0[0] = 0;
    for (int i = 0; i < MAXC; i++) {
        const int c = i < nconv ? C[i] : 0;
        A.g0[i + 1] = A.g0[i] + c / vec;
        A.e0[i + 1] = A.e0[i] + c * W;
    }
    A.groups = A.g0[nconv];
    A.elems = A.e0[nconv];
    return GDN_MIXER_OK;
}

/* Workspace floats of conv i's dw partials, each start 16-byte aligned. */
size_t part_floats(int C, int T, int W) { return ((size_t)tiles(T, rows_bwd(T)) * C * W + 3) / 4 * 4; }

} // namespace

/* ------------------------------------------------------------------ entries */

extern "C" int gdn_mixer_gates_fwd(float *beta, float *g, const uint16_t *b, const uint16_t *a, const float *A_log,
                                   const float *dt_bias, int T, int H, int allow_neg_eigval, void *stream) {
    MIX_ARG(T >= 1 && H >= 1 && H <= 65535);
    MIX_ARG(!beta || b);
    MIX_ARG(!g || (a && A_log && dt_bias));
    MIX_ARG(al(beta, 4) && al(g, 4) && al(b, 2) && al(a, 2) && al(A_log, 4) && al(dt_bias, 4));
    if (!beta && !g) return GDN_MIXER_OK;
    const size_t n = (size_t)T * H;
    const int vec = al(beta, 16) && al(g, 16) && al(b, 16) && al(a, 16);
    const size_t groups = (n + 7) / 8;
    const int threads = 256;
    const size_t nb = (groups + threads - 1) / threads;
    const int grid = nb < 65535 ? (int)nb : 65535;
    auto kern = k_gates_fwd;
    OHC_KERNEL_LAUNCH(kern, dim3(grid), dim3(threads), 0, (cudaStream_t)stream, beta, g,
                      reinterpret_cast<const bf16 *>(b), reinterpret_cast<const bf16 *>(a), A_log, dt_bias, n, H,
                      allow_neg_eigval ? 2.f : 1.f, vec);
    MIX_CUDA_TRY(cudaGetLastError());
    return GDN_MIXER_OK;
}

extern "C" size_t gdn_mixer_gates_bwd_workspace_bytes(int T, int H) {
    if (T < 1 || H < 1 || H > 65535) return 0;
    return (size_t)tiles(T, rows_bwd(T)) * 2 * H * sizeof(float);
}

extern "C" int gdn_mixer_gates_bwd(uint16_t *db, uint16_t *da, float *dA_log, float *ddt_bias, const float *dbeta,
                                   const float *dg, const uint16_t *b, const uint16_t *a, const float *A_log,
                                   const float *dt_bias, int T, int H, int allow_neg_eigval, void *workspace,
                                   size_t workspace_bytes, void *stream) {
    MIX_ARG(T >= 1 && H >= 1 && H <= 65535);
    MIX_ARG(!db || (dbeta && b));
    const bool red = dA_log || ddt_bias;
    MIX_ARG(!(da || red) || (dg && a && A_log && dt_bias));
    MIX_ARG(al(db, 2) && al(da, 2) && al(dA_log, 4) && al(ddt_bias, 4) && al(dbeta, 4) && al(dg, 4) && al(b, 2) &&
            al(a, 2) && al(A_log, 4) && al(dt_bias, 4));
    if (!db && !da && !red) return GDN_MIXER_OK;
    const int rows = rows_bwd(T), nt = tiles(T, rows);
    float *part = nullptr;
    if (red) {
        MIX_REQUIRE(workspace && al(workspace, 16), GDN_MIXER_WORKSPACE);
        MIX_REQUIRE(workspace_bytes >= gdn_mixer_gates_bwd_workspace_bytes(T, H), GDN_MIXER_WORKSPACE);
        part = static_cast<float *>(workspace);
    }
    cudaStream_t s = (cudaStream_t)stream;
    const float bscale = allow_neg_eigval ? 2.f : 1.f;
    auto kern = k_gates_bwd;
    OHC_KERNEL_LAUNCH(kern, dim3((H + GB_X - 1) / GB_X, nt), dim3(GB_X, GB_Y), 0, s, reinterpret_cast<bf16 *>(db),
                      reinterpret_cast<bf16 *>(da), part, dbeta, (da || red) ? dg : nullptr,
                      reinterpret_cast<const bf16 *>(b), reinterpret_cast<const bf16 *>(a), A_log, dt_bias, T, H,
                      rows, bscale);
    MIX_CUDA_TRY(cudaGetLastError());
    if (red) {
        auto kr = k_gates_reduce;
        OHC_KERNEL_LAUNCH(kr, dim3((2 * H + 7) / 8), dim3(256), 0, s, dA_log, ddt_bias, (const float *)part, nt, H);
        MIX_CUDA_TRY(cudaGetLastError());
    }
    return GDN_MIXER_OK;
}

extern "C" int gdn_mixer_conv_fwd(int nconv, uint16_t *const *out, const uint16_t *const *x, const uint16_t *const *w,
                                  const int *C, const int32_t *cu_seqlens, int ndocs, int T, int W, void *stream) {
    ConvArgs A;
    int vec;
    int st = conv_setup(A, vec, false, nconv, out, nullptr, x, w, C, cu_seqlens, ndocs, T, W);
    if (st) return st;
    const int rows = rows_fwd(T);
    MIX_REQUIRE(tiles(T, rows) <= 65535, GDN_MIXER_UNSUPPORTED);
    conv_kernel_t kern = vec == 8 ? conv_kernel<8>(false, W) : conv_kernel<1>(false, W);
    dim3 grid((A.groups + CONV_THREADS - 1) / CONV_THREADS, tiles(T, rows));
    OHC_KERNEL_LAUNCH(kern, grid, dim3(CONV_THREADS), 0, (cudaStream_t)stream, A, cu_seqlens, ndocs, T, rows);
    MIX_CUDA_TRY(cudaGetLastError());
    return GDN_MIXER_OK;
}

extern "C" size_t gdn_mixer_conv_bwd_workspace_bytes(int nconv, const int *C, int T, int W) {
    if (nconv < 1 || nconv > MAXC || !C || T < 1 || W < 1 || W > MAXW) return 0;
    size_t f = 0;
    for (int i = 0; i < nconv; i++) {
        if (C[i] < 1) return 0;
        f += part_floats(C[i], T, W);
    }
    return f * sizeof(float);
}

extern "C" int gdn_mixer_conv_bwd(int nconv, uint16_t *const *dx, float *const *dw, const uint16_t *const *dout,
                                  const uint16_t *const *x, const uint16_t *const *w, const int *C,
                                  const int32_t *cu_seqlens, int ndocs, int T, int W, void *workspace,
                                  size_t workspace_bytes, void *stream) {
    ConvArgs A;
    int vec;
    int st = conv_setup(A, vec, true, nconv, dx, dout, x, w, C, cu_seqlens, ndocs, T, W);
    if (st) return st;
    bool any_dw = false, any = false;
    for (int i = 0; i < nconv; i++) {
        MIX_ARG(!dw || al(dw[i], 4));
        any_dw = any_dw || (dw && dw[i]);
        any = any || (dx && dx[i]) || (dw && dw[i]);
    }
    if (!any) return GDN_MIXER_OK;
    if (any_dw) {
        MIX_REQUIRE(workspace && al(workspace, 16), GDN_MIXER_WORKSPACE);
        MIX_REQUIRE(workspace_bytes >= gdn_mixer_conv_bwd_workspace_bytes(nconv, C, T, W), GDN_MIXER_WORKSPACE);
        float *p = static_cast<float *>(workspace);
        for (int i = 0; i < nconv; i++) {
            if (dw[i]) {
                A.part[i] = p;
                A.dw[i] = dw[i];
            }
            p += part_floats(C[i], T, W);
        }
    }
    const int rows = rows_bwd(T), nt = tiles(T, rows);
    cudaStream_t s = (cudaStream_t)stream;
    conv_kernel_t kern = vec == 8 ? conv_kernel<8>(true, W) : conv_kernel<1>(true, W);
    dim3 grid((A.groups + CONV_THREADS - 1) / CONV_THREADS, nt);
    OHC_KERNEL_LAUNCH(kern, grid, dim3(CONV_THREADS), 0, s, A, cu_seqlens, ndocs, T, rows);
    MIX_CUDA_TRY(cudaGetLastError());
    if (any_dw) {
        auto kr = k_conv_dw_reduce;
        OHC_KERNEL_LAUNCH(kr, dim3((A.elems + 255) / 256), dim3(256), 0, s, A, nt, W);
        MIX_CUDA_TRY(cudaGetLastError());
    }
    return GDN_MIXER_OK;
}
