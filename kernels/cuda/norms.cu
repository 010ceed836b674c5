// norms.cu: RMSNorm (plain, fused with the residual add, gated) forward and backward.
#include "kernels/cuda/norms.h"
#include "kernels/cuda/ops_common.cuh"

namespace {

enum { MODE_PLAIN = 0, MODE_ADD_NORM = 1, MODE_NORM_ADD = 2 };

// One block per row; thread t owns vectors t, t + blockDim, ... (VPT of them) of VEC elements.
template <int VEC, int VPT, int MODE>
__global__ void rmsnorm_fwd_kernel(bf16 *__restrict__ out, bf16 *h, float *__restrict__ rstd, const bf16 *x,
                                   const bf16 *y, const bf16 *__restrict__ w, int C, float eps) {
    __shared__ float red[32];
    const size_t base = (size_t)blockIdx.x * C;
    const int nvec = C / VEC;
    float v[VPT][VEC];
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        int j = threadIdx.x + i * blockDim.x;
        if (j < nvec) {
            if constexpr (MODE == MODE_PLAIN) {
                load_bf16<VEC>(x + base + (size_t)j * VEC, v[i]);
            } else if constexpr (MODE == MODE_ADD_NORM) {
                float a[VEC], b[VEC];
                load_bf16<VEC>(x + base + (size_t)j * VEC, a);
                load_bf16<VEC>(y + base + (size_t)j * VEC, b);
#pragma unroll
                for (int e = 0; e < VEC; e++) v[i][e] = round_bf16(a[e] + b[e]);
            } else {
                load_bf16<VEC>(y + base + (size_t)j * VEC, v[i]);
            }
#pragma unroll
            for (int e = 0; e < VEC; e++) ss += v[i][e] * v[i][e];
        }
    }
    ss = block_sum(ss, red);
    const float r = rsqrtf(ss / (float)C + eps);
    if (rstd && threadIdx.x == 0) rstd[blockIdx.x] = r;
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        int j = threadIdx.x + i * blockDim.x;
        if (j < nvec) {
            float wv[VEC], o[VEC];
            load_bf16<VEC>(w + (size_t)j * VEC, wv);
            if constexpr (MODE == MODE_NORM_ADD) {
                float a[VEC];
                load_bf16<VEC>(x + base + (size_t)j * VEC, a);
#pragma unroll
                for (int e = 0; e < VEC; e++) o[e] = a[e] + round_bf16(wv[e] * (v[i][e] * r));
                store_bf16<VEC>(h + base + (size_t)j * VEC, o);
            } else {
#pragma unroll
                for (int e = 0; e < VEC; e++) o[e] = wv[e] * (v[i][e] * r);
                store_bf16<VEC>(out + base + (size_t)j * VEC, o);
                if constexpr (MODE == MODE_ADD_NORM) store_bf16<VEC>(h + base + (size_t)j * VEC, v[i]);
            }
        }
    }
}

// Blocks stride over rows; each thread keeps its columns' dw partial sums in registers.
template <int VEC, int VPT> __global__ void rmsnorm_bwd_kernel(bf16 *dx, float *__restrict__ dw, const bf16 *dout,
                                                               const bf16 *__restrict__ x, const bf16 *__restrict__ w,
                                                               const float *__restrict__ rstd, int N, int C, float eps,
                                                               int accumulate) {
    __shared__ float red[32];
    const int nvec = C / VEC;
    float wv[VPT][VEC], dwa[VPT][VEC];
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        int j = threadIdx.x + i * blockDim.x;
#pragma unroll
        for (int e = 0; e < VEC; e++) dwa[i][e] = 0.f, wv[i][e] = 0.f;
        if (j < nvec) load_bf16<VEC>(w + (size_t)j * VEC, wv[i]);
    }
    for (int row = blockIdx.x; row < N; row += gridDim.x) {
        const size_t base = (size_t)row * C;
        float xv[VPT][VEC], gv[VPT][VEC];
        float ss = 0.f;
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            int j = threadIdx.x + i * blockDim.x;
#pragma unroll
            for (int e = 0; e < VEC; e++) xv[i][e] = 0.f, gv[i][e] = 0.f;
            if (j < nvec) {
                load_bf16<VEC>(x + base + (size_t)j * VEC, xv[i]);
                load_bf16<VEC>(dout + base + (size_t)j * VEC, gv[i]);
            }
#pragma unroll
            for (int e = 0; e < VEC; e++) ss += xv[i][e] * xv[i][e];
        }
        float r;
        if (rstd) {
            r = rstd[row];
        } else {
            ss = block_sum(ss, red);
            r = rsqrtf(ss / (float)C + eps);
        }
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < VPT; i++)
#pragma unroll
            for (int e = 0; e < VEC; e++) dot += gv[i][e] * wv[i][e] * (xv[i][e] * r);
        dot = block_sum(dot, red) / (float)C;
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            int j = threadIdx.x + i * blockDim.x;
            if (j < nvec) {
                float d[VEC] = {};
                if (accumulate) load_bf16<VEC>(dx + base + (size_t)j * VEC, d);
#pragma unroll
                for (int e = 0; e < VEC; e++) {
                    float n = xv[i][e] * r;
                    float g = r * (gv[i][e] * wv[i][e] - n * dot);
                    d[e] = accumulate ? d[e] + g : g;
                    dwa[i][e] += gv[i][e] * n;
                }
                store_bf16<VEC>(dx + base + (size_t)j * VEC, d);
            }
        }
    }
    if (dw) {
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            int j = threadIdx.x + i * blockDim.x;
            if (j < nvec)
#pragma unroll
                for (int e = 0; e < VEC; e++) atomicAdd(dw + (size_t)j * VEC + e, dwa[i][e]);
        }
    }
}

// Gated RMSNorm: one warp per row.
template <int VEC, int VPT> __global__ void gated_fwd_kernel(bf16 *__restrict__ out, float *__restrict__ rstd,
                                                             const bf16 *__restrict__ x, const bf16 *__restrict__ gate,
                                                             const bf16 *__restrict__ w, int N, int V, float eps) {
    const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (row >= N) return;
    const size_t base = (size_t)row * V;
    const int nvec = V / VEC;
    float xv[VPT][VEC];
    float ss = 0.f;
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        int j = lane + 32 * i;
#pragma unroll
        for (int e = 0; e < VEC; e++) xv[i][e] = 0.f;
        if (j < nvec) load_bf16<VEC>(x + base + (size_t)j * VEC, xv[i]);
#pragma unroll
        for (int e = 0; e < VEC; e++) ss += xv[i][e] * xv[i][e];
    }
    ss = warp_sum(ss);
    const float r = rsqrtf(ss / (float)V + eps);
    if (rstd && lane == 0) rstd[row] = r;
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        int j = lane + 32 * i;
        if (j < nvec) {
            float wv[VEC], gv[VEC], o[VEC];
            load_bf16<VEC>(w + (size_t)j * VEC, wv);
            load_bf16<VEC>(gate + base + (size_t)j * VEC, gv);
#pragma unroll
            for (int e = 0; e < VEC; e++) o[e] = wv[e] * (xv[i][e] * r) * silu_f(gv[e]);
            store_bf16<VEC>(out + base + (size_t)j * VEC, o);
        }
    }
}

template <int VEC, int VPT>
__global__ void gated_bwd_kernel(bf16 *dx, bf16 *dgate, float *__restrict__ dw, const bf16 *__restrict__ dout,
                                 const bf16 *__restrict__ x, const bf16 *__restrict__ gate, const bf16 *__restrict__ w,
                                 const float *__restrict__ rstd, int N, int V, float eps, int accumulate) {
    const int lane = threadIdx.x & 31;
    const int nwarps = gridDim.x * (blockDim.x >> 5);
    const int nvec = V / VEC;
    float wv[VPT][VEC], dwa[VPT][VEC];
#pragma unroll
    for (int i = 0; i < VPT; i++) {
        int j = lane + 32 * i;
#pragma unroll
        for (int e = 0; e < VEC; e++) wv[i][e] = 0.f, dwa[i][e] = 0.f;
        if (j < nvec) load_bf16<VEC>(w + (size_t)j * VEC, wv[i]);
    }
    for (int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); row < N; row += nwarps) {
        const size_t base = (size_t)row * V;
        float xv[VPT][VEC], gv[VPT][VEC], ov[VPT][VEC];
        float ss = 0.f;
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            int j = lane + 32 * i;
#pragma unroll
            for (int e = 0; e < VEC; e++) xv[i][e] = 0.f, gv[i][e] = 0.f, ov[i][e] = 0.f;
            if (j < nvec) {
                load_bf16<VEC>(x + base + (size_t)j * VEC, xv[i]);
                load_bf16<VEC>(gate + base + (size_t)j * VEC, gv[i]);
                load_bf16<VEC>(dout + base + (size_t)j * VEC, ov[i]);
            }
#pragma unroll
            for (int e = 0; e < VEC; e++) ss += xv[i][e] * xv[i][e];
        }
        const float r = rstd ? rstd[row] : rsqrtf(warp_sum(ss) / (float)V + eps);
        float dot = 0.f;
#pragma unroll
        for (int i = 0; i < VPT; i++)
#pragma unroll
            for (int e = 0; e < VEC; e++) dot += ov[i][e] * wv[i][e] * silu_f(gv[i][e]) * (xv[i][e] * r);
        dot = warp_sum(dot) / (float)V;
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            int j = lane + 32 * i;
            if (j < nvec) {
                float a[VEC] = {}, b[VEC] = {};
                if (accumulate) {
                    load_bf16<VEC>(dx + base + (size_t)j * VEC, a);
                    load_bf16<VEC>(dgate + base + (size_t)j * VEC, b);
                }
#pragma unroll
                for (int e = 0; e < VEC; e++) {
                    float g = gv[i][e], s = sigmoid_f(g), sl = g * s;
                    float n = xv[i][e] * r;
                    float dn = ov[i][e] * wv[i][e] * sl;
                    float ddx = r * (dn - n * dot);
                    float ddg = ov[i][e] * wv[i][e] * n * s * (1.f + g * (1.f - s));
                    a[e] = accumulate ? a[e] + ddx : ddx;
                    b[e] = accumulate ? b[e] + ddg : ddg;
                    dwa[i][e] += ov[i][e] * n * sl;
                }
                store_bf16<VEC>(dx + base + (size_t)j * VEC, a);
                store_bf16<VEC>(dgate + base + (size_t)j * VEC, b);
            }
        }
    }
    if (dw) {
#pragma unroll
        for (int i = 0; i < VPT; i++) {
            int j = lane + 32 * i;
            if (j < nvec)
#pragma unroll
                for (int e = 0; e < VEC; e++) atomicAdd(dw + (size_t)j * VEC + e, dwa[i][e]);
        }
    }
}

// ---- launchers ----

// Vector width 8 when rows are whole 16-byte vectors and every pointer is 16-byte aligned.
bool vec8_ok(int C, std::initializer_list<const void *> ptrs) {
    if (C % 8) return false;
    for (const void *p : ptrs)
        if (p && !ohc_aligned(p, 16)) return false;
    return true;
}

// Smallest VPT in {1, 2, 4, 8} with at most 512 threads (1024 with VPT 8); 0 if none.
int pick_vpt(int nvec, int *threads) {
    for (int vpt = 1; vpt <= 8; vpt *= 2) {
        int t = (nvec + vpt - 1) / vpt;
        if (t <= 512 || (vpt == 8 && t <= 1024)) {
            *threads = ((t + 31) / 32) * 32;
            return vpt;
        }
    }
    return 0;
}

template <int MODE> int launch_rmsnorm_fwd(bf16 *out, bf16 *h, float *rstd, const bf16 *x, const bf16 *y, const bf16 *w,
                                           int N, int C, float eps, cudaStream_t st) {
    bool v8 = vec8_ok(C, {out, h, x, y, w});
    int threads = 0, vpt = pick_vpt(v8 ? C / 8 : C, &threads);
    if (!vpt) OHC_UNSUPPORTED("row too wide");
#define OHC_FWD(VEC, VPT)                                                                                              \
    {                                                                                                                  \
        auto ohc_k_ = rmsnorm_fwd_kernel<VEC, VPT, MODE>;                                                              \
        OHC_KERNEL_LAUNCH(ohc_k_, N, threads, 0, st, out, h, rstd, x, y, w, C, eps);                                   \
    }
    if (v8) {
        switch (vpt) {
        case 1:
            OHC_FWD(8, 1);
            break;
        case 2:
            OHC_FWD(8, 2);
            break;
        case 4:
            OHC_FWD(8, 4);
            break;
        default:
            OHC_FWD(8, 8);
            break;
        }
    } else {
        switch (vpt) {
        case 1:
            OHC_FWD(1, 1);
            break;
        case 2:
            OHC_FWD(1, 2);
            break;
        case 4:
            OHC_FWD(1, 4);
            break;
        default:
            OHC_FWD(1, 8);
            break;
        }
    }
#undef OHC_FWD
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

int launch_rmsnorm_bwd(bf16 *dx, float *dw, const bf16 *dout, const bf16 *x, const bf16 *w, const float *rstd, int N,
                       int C, float eps, int acc, cudaStream_t st) {
    bool v8 = vec8_ok(C, {dx, dout, x, w});
    int threads = 0, vpt = pick_vpt(v8 ? C / 8 : C, &threads);
    if (!vpt) OHC_UNSUPPORTED("row too wide");
    int per_sm = threads <= 256 ? 4 : 2;
    int grid = ohc_num_sms() * per_sm;
    if (grid > N) grid = N;
#define OHC_BWD(VEC, VPT)                                                                                              \
    {                                                                                                                  \
        auto ohc_k_ = rmsnorm_bwd_kernel<VEC, VPT>;                                                                    \
        OHC_KERNEL_LAUNCH(ohc_k_, grid, threads, 0, st, dx, dw, dout, x, w, rstd, N, C, eps, acc);                     \
    }
    if (v8) {
        switch (vpt) {
        case 1:
            OHC_BWD(8, 1);
            break;
        case 2:
            OHC_BWD(8, 2);
            break;
        case 4:
            OHC_BWD(8, 4);
            break;
        default:
            OHC_BWD(8, 8);
            break;
        }
    } else {
        switch (vpt) {
        case 1:
            OHC_BWD(1, 1);
            break;
        case 2:
            OHC_BWD(1, 2);
            break;
        case 4:
            OHC_BWD(1, 4);
            break;
        default:
            OHC_BWD(1, 8);
            break;
        }
    }
#undef OHC_BWD
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

// Gated: VPT = vectors per lane; 0 if the row is too wide.
int gated_vpt(int nvec) {
    for (int vpt = 1; vpt <= 8; vpt *= 2)
        if (nvec <= 32 * vpt) return vpt;
    return 0;
}

int launch_gated_fwd(bf16 *out, float *rstd, const bf16 *x, const bf16 *g, const bf16 *w, int N, int V, float eps,
                     cudaStream_t st) {
    bool v8 = vec8_ok(V, {out, x, g, w});
    int vpt = gated_vpt(v8 ? V / 8 : V);
    if (!vpt) OHC_UNSUPPORTED("row too wide");
    const int rows_per_block = 4;
    int grid = (N + rows_per_block - 1) / rows_per_block;
#define OHC_GF(VEC, VPT)                                                                                               \
    {                                                                                                                  \
        auto ohc_k_ = gated_fwd_kernel<VEC, VPT>;                                                                      \
        OHC_KERNEL_LAUNCH(ohc_k_, grid, 32 * rows_per_block, 0, st, out, rstd, x, g, w, N, V, eps);                    \
    }
    if (v8) {
        switch (vpt) {
        case 1:
            OHC_GF(8, 1);
            break;
        case 2:
            OHC_GF(8, 2);
            break;
        case 4:
            OHC_GF(8, 4);
            break;
        default:
            OHC_GF(8, 8);
            break;
        }
    } else {
        switch (vpt) {
        case 1:
            OHC_GF(1, 1);
            break;
        case 2:
            OHC_GF(1, 2);
            break;
        case 4:
            OHC_GF(1, 4);
            break;
        default:
            OHC_GF(1, 8);
            break;
        }
    }
#undef OHC_GF
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

int launch_gated_bwd(bf16 *dx, bf16 *dg, float *dw, const bf16 *dout, const bf16 *x, const bf16 *g, const bf16 *w,
                     const float *rstd, int N, int V, float eps, int acc, cudaStream_t st) {
    bool v8 = vec8_ok(V, {dx, dg, dout, x, g, w});
    int vpt = gated_vpt(v8 ? V / 8 : V);
    if (!vpt) OHC_UNSUPPORTED("row too wide");
    const int rows_per_block = 4;
    int grid = ohc_num_sms() * 8;
    int need = (N + rows_per_block - 1) / rows_per_block;
    if (grid > need) grid = need;
#define OHC_GB(VEC, VPT)                                                                                               \
    {                                                                                                                  \
        auto ohc_k_ = gated_bwd_kernel<VEC, VPT>;                                                                      \
        OHC_KERNEL_LAUNCH(ohc_k_, grid, 32 * rows_per_block, 0, st, dx, dg, dw, dout, x, g, w, rstd, N, V, eps, acc);  \
    }
    if (v8) {
        switch (vpt) {
        case 1:
            OHC_GB(8, 1);
            break;
        case 2:
            OHC_GB(8, 2);
            break;
        case 4:
            OHC_GB(8, 4);
            break;
        default:
            OHC_GB(8, 8);
            break;
        }
    } else {
        switch (vpt) {
        case 1:
            OHC_GB(1, 1);
            break;
        case 2:
            OHC_GB(1, 2);
            break;
        case 4:
            OHC_GB(1, 4);
            break;
        default:
            OHC_GB(1, 8);
            break;
        }
    }
#undef OHC_GB
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

} // namespace

#define B16(p) reinterpret_cast<bf16 *>(p)
#define CB16(p) reinterpret_cast<const bf16 *>(p)

extern "C" int oh_cuda_rmsnorm_fwd(uint16_t *out, float *rstd, const uint16_t *x, const uint16_t *w, int N, int C,
                                   float eps, oh_stream stream) {
    OHC_ARG(out && x && w && N >= 0 && C >= 1 && eps >= 0.f);
    if (N == 0) return OH_CUDA_OK;
    return launch_rmsnorm_fwd<MODE_PLAIN>(B16(out), nullptr, rstd, CB16(x), nullptr, CB16(w), N, C, eps,
                                          ohc_stream(stream));
}

extern "C" int oh_cuda_rmsnorm_bwd(uint16_t *dx, float *dw, const uint16_t *dout, const uint16_t *x, const uint16_t *w,
                                   const float *rstd, int N, int C, float eps, int accumulate, oh_stream stream) {
    OHC_ARG(dx && dout && x && w && N >= 0 && C >= 1 && eps >= 0.f);
    if (N == 0) return OH_CUDA_OK;
    return launch_rmsnorm_bwd(B16(dx), dw, CB16(dout), CB16(x), CB16(w), rstd, N, C, eps, accumulate ? 1 : 0,
                              ohc_stream(stream));
}

extern "C" int oh_cuda_add_rmsnorm_fwd(uint16_t *h, uint16_t *out, float *rstd, const uint16_t *x, const uint16_t *y,
                                       const uint16_t *w, int N, int C, float eps, oh_stream stream) {
    OHC_ARG(h && out && x && y && w && N >= 0 && C >= 1 && eps >= 0.f);
    if (N == 0) return OH_CUDA_OK;
    return launch_rmsnorm_fwd<MODE_ADD_NORM>(B16(out), B16(h), rstd, CB16(x), CB16(y), CB16(w), N, C, eps,
                                             ohc_stream(stream));
}

extern "C" int oh_cuda_rmsnorm_add_fwd(uint16_t *h, float *rstd, const uint16_t *x, const uint16_t *y,
                                       const uint16_t *w, int N, int C, float eps, oh_stream stream) {
    OHC_ARG(h && x && y && w && N >= 0 && C >= 1 && eps >= 0.f);
    OHC_ARG((const void *)h != (const void *)y);
    if (N == 0) return OH_CUDA_OK;
    return launch_rmsnorm_fwd<MODE_NORM_ADD>(nullptr, B16(h), rstd, CB16(x), CB16(y), CB16(w), N, C, eps,
                                             ohc_stream(stream));
}

extern "C" int oh_cuda_gated_rmsnorm_fwd(uint16_t *out, float *rstd, const uint16_t *x, const uint16_t *gate,
                                         const uint16_t *w, int N, int V, float eps, oh_stream stream) {
    OHC_ARG(out && x && gate && w && N >= 0 && V >= 1 && eps >= 0.f);
    if (N == 0) return OH_CUDA_OK;
    return launch_gated_fwd(B16(out), rstd, CB16(x), CB16(gate), CB16(w), N, V, eps, ohc_stream(stream));
}

extern "C" int oh_cuda_gated_rmsnorm_bwd(uint16_t *dx, uint16_t *dgate, float *dw, const uint16_t *dout,
                                         const uint16_t *x, const uint16_t *gate, const uint16_t *w, const float *rstd,
                                         int N, int V, float eps, int accumulate, oh_stream stream) {
    OHC_ARG(dx && dgate && dout && x && gate && w && N >= 0 && V >= 1 && eps >= 0.f);
    if (N == 0) return OH_CUDA_OK;
    return launch_gated_bwd(B16(dx), B16(dgate), dw, CB16(dout), CB16(x), CB16(gate), CB16(w), rstd, N, V, eps,
                            accumulate ? 1 : 0, ohc_stream(stream));
}
