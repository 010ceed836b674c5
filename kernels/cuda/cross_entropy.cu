// cross_entropy.cu: fused lm_head + cross-entropy over vocabulary chunks.
#include "kernels/cuda/cross_entropy.h"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops_common.cuh"

#include <math.h>

// Test hook (not in the header): when > 0, the chunk width in columns.
int oh_cuda_fused_ce_test_chunk_cols = 0;

namespace {

const int kThreads = 256;

int chunk_cols(int N, int V) {
    if (oh_cuda_fused_ce_test_chunk_cols > 0) return oh_cuda_fused_ce_test_chunk_cols;
    long long vc = (32ll << 20) / (N > 0 ? N : 1);
    vc = (vc / 256) * 256;
    if (vc < 256) vc = 256;
    if (vc > 32768) vc = 32768;
    long long vr = ((long long)V + 255) / 256 * 256;
    if (vc > vr) vc = vr;
    return (int)vc;
}

size_t align_up(size_t x) { return (x + 255) & ~(size_t)255; }

struct Ws {
    float *logits;     // [N, Vc]
    bf16 *dlog;        // [N, Vc]
    float *m, *s, *tl; // [N] running max, running sum, target logit
    float *dh_acc;     // [N, C]
};

size_t ws_layout(int N, int V, int C, char *base, Ws *w) {
    int vc = chunk_cols(N, V);
    size_t off = 0;
    size_t o_logits = off;
    off = align_up(off + (size_t)N * vc * 4);
    size_t o_dlog = off;
    off = align_up(off + (size_t)N * vc * 2);
    size_t o_m = off;
    off = align_up(off + (size_t)N * 4);
    size_t o_s = off;
    off = align_up(off + (size_t)N * 4);
    size_t o_tl = off;
    off = align_up(off + (size_t)N * 4);
    size_t o_acc = off;
    off = align_up(off + (size_t)N * C * 4);
    if (w) {
        w->logits = (float *)(base + o_logits);
        w->dlog = (bf16 *)(base + o_dlog);
        w->m = (float *)(base + o_m);
        w->s = (float *)(base + o_s);
        w->tl = (float *)(base + o_tl);
        w->dh_acc = (float *)(base + o_acc);
    }
    return off;
}

__device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2) {
    float mm = fmaxf(m, m2);
    if (mm == -INFINITY) return; // both empty
    s = s * __expf(m - mm) + s2 * __expf(m2 - mm);
    m = mm;
}

__device__ __forceinline__ void ms_add(float &m, float &s, float x) {
    if (x > m) {
        s = s * __expf(m - x) + 1.f;
        m = x;
    } else {
        s += __expf(x - m);
    }
}

// One block per row: folds logits[row, 0:vc] (columns v0 + j) into the running (max, sum).
__global__ void __launch_bounds__(kThreads)
    ce_stats_kernel(float *__restrict__ rm, float *__restrict__ rs, float *__restrict__ tl,
                    const float *__restrict__ logits, const int32_t *__restrict__ target, int ld, int vc, int v0,
                    int first) {
    __shared__ float sm[32], ss[32];
    const int row = blockIdx.x;
    const int tgt = target[row];
    if (tgt < 0) return;
    const float *x = logits + (size_t)row * ld;
    float m = -INFINITY, s = 0.f;
    const int nv4 = vc / 4;
    for (int j = threadIdx.x; j < nv4; j += blockDim.x) {
        float4 v = reinterpret_cast<const float4 *>(x)[j];
        ms_add(m, s, v.x);
        ms_add(m, s, v.y);
        ms_add(m, s, v.z);
        ms_add(m, s, v.w);
    }
    for (int j = nv4 * 4 + threadIdx.x; j < vc; j += blockDim.x) ms_add(m, s, x[j]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ms_merge(m, s, m2, s2);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    if (lane == 0) sm[warp] = m, ss[warp] = s;
    __syncthreads();
    if (warp == 0) {
        m = lane < nw ? sm[lane] : -INFINITY;
        s = lane < nw ? ss[lane] : 0.f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
            ms_merge(m, s, m2, s2);
        }
        if (lane == 0) {
            if (first) {
                rm[row] = m;
                rs[row] = s;
                tl[row] = 0.f;
            } else {
                float M = rm[row], S = rs[row];
                ms_merge(M, S, m, s);
                rm[row] = M;
                rs[row] = S;
            }
            if (tgt >= v0 && tgt < v0 + vc) tl[row] = x[tgt - v0];
        }
    }
}

__global__ void ce_finish_kernel(float *loss, float *logprob, float *lse, const float *rm, const float *rs,
                                 const float *tl, const int32_t *target, int N) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float l = 0.f, z = 0.f;
    if (target[i] >= 0) {
        z = rm[i] + logf(rs[i]);
        l = z - tl[i];
    }
    loss[i] = l;
    if (logprob) logprob[i] = -l;
    if (lse) lse[i] = z;
}

// One block per row: dlog[row, j] = w * (exp(logit - lse) - [v0 + j == target]) in bf16.
__global__ void __launch_bounds__(kThreads)
    ce_dlogits_kernel(bf16 *__restrict__ dlog, const float *__restrict__ logits, const float *__restrict__ weight,
                      const float *__restrict__ lse, const int32_t *__restrict__ target, int ld, int vc, int v0) {
    const int row = blockIdx.x;
    const int tgt = target[row];
    const float w = tgt >= 0 ? weight[row] : 0.f;
    const float z = tgt >= 0 ? lse[row] : 0.f;
    const float *x = logits + (size_t)row * ld;
    bf16 *d = dlog + (size_t)row * ld;
    const int t = tgt - v0; // column of the target in this chunk (may be outside)
    const int nv4 = vc / 4;
    for (int j = threadIdx.x; j < nv4; j += blockDim.x) {
        float4 v = reinterpret_cast<const float4 *>(x)[j];
        float g[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float p = w != 0.f ? __expf(g[e] - z) : 0.f;
            g[e] = w * (p - (4 * j + e == t ? 1.f : 0.f));
        }
        __nv_bfloat162 a = __floats2bfloat162_rn(g[0], g[1]), b = __floats2bfloat162_rn(g[2], g[3]);
        uint2 raw;
        raw.x = *reinterpret_cast<uint32_t *>(&a);
        raw.y = *reinterpret_cast<uint32_t *>(&b);
        reinterpret_cast<uint2 *>(d)[j] = raw;
    }
    for (int j = nv4 * 4 + threadIdx.x; j < vc; j += blockDim.x) {
        float p = w != 0.f ? __expf(x[j] - z) : 0.f;
        d[j] = __float2bfloat16(w * (p - (j == t ? 1.f : 0.f)));
    }
}

__global__ void add_f32_to_bf16_kernel(bf16 *dst, const float *src, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        dst[i] = __float2bfloat16(__bfloat162float(dst[i]) + src[i]);
}

} // namespace

extern "C" size_t oh_cuda_fused_ce_workspace_bytes(int N, int V, int C) {
    if (N <= 0 || V <= 0 || C <= 0) return 0;
    return ws_layout(N, V, C, nullptr, nullptr);
}

extern "C" int oh_cuda_fused_ce_fwd(float *loss, float *logprob, float *lse, const uint16_t *h, const uint16_t *W,
                                    const int32_t *target, int N, int V, int C, void *workspace, size_t workspace_bytes,
                                    oh_stream stream) {
    OHC_ARG(loss && h && W && target && N >= 0 && V >= 1 && C >= 1);
    if (N == 0) return OH_CUDA_OK;
    OHC_ARG(workspace && ohc_aligned(workspace, 256));
    if (workspace_bytes < oh_cuda_fused_ce_workspace_bytes(N, V, C)) {
        oh_ops_report(__FILE__, __LINE__, "oh_cuda_fused_ce_fwd",
                      "workspace smaller than oh_cuda_fused_ce_workspace_bytes");
        return OH_CUDA_ERR_WORKSPACE;
    }
    cudaStream_t st = ohc_stream(stream);
    Ws w;
    ws_layout(N, V, C, (char *)workspace, &w);
    const int Vc = chunk_cols(N, V);
    for (int v0 = 0; v0 < V; v0 += Vc) {
        int vc = V - v0 < Vc ? V - v0 : Vc;
        OHC_TRY(
            oh_cuda_gemm(w.logits, OH_DTYPE_F32, h, W + (size_t)v0 * C, N, vc, C, 0, 1, 1.f, 0.f, C, C, Vc, stream));
        OHC_KERNEL_LAUNCH(ce_stats_kernel, N, kThreads, 0, st, w.m, w.s, w.tl, w.logits, target, Vc, vc, v0, v0 == 0);
        OHC_LAUNCH_CHECK();
    }
    OHC_KERNEL_LAUNCH(ce_finish_kernel, (N + 255) / 256, 256, 0, st, loss, logprob, lse, w.m, w.s, w.tl, target, N);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_fused_ce_bwd(void *dh, int dh_dtype, void *dW, int dw_dtype, const float *weight,
                                    const float *lse, const uint16_t *h, const uint16_t *W, const int32_t *target,
                                    int N, int V, int C, void *workspace, size_t workspace_bytes, oh_stream stream) {
    OHC_ARG(weight && lse && h && W && target && N >= 0 && V >= 1 && C >= 1);
    OHC_ARG(!dh || dh_dtype == OH_DTYPE_BF16 || dh_dtype == OH_DTYPE_F32);
    OHC_ARG(!dW || dw_dtype == OH_DTYPE_BF16 || dw_dtype == OH_DTYPE_F32);
    if (N == 0 || (!dh && !dW)) return OH_CUDA_OK;
    OHC_ARG(workspace && ohc_aligned(workspace, 256));
    if (workspace_bytes < oh_cuda_fused_ce_workspace_bytes(N, V, C)) {
        oh_ops_report(__FILE__, __LINE__, "oh_cuda_fused_ce_bwd",
                      "workspace smaller than oh_cuda_fused_ce_workspace_bytes");
        return OH_CUDA_ERR_WORKSPACE;
    }
    cudaStream_t st = ohc_stream(stream);
    Ws w;
    ws_layout(N, V, C, (char *)workspace, &w);
    const int Vc = chunk_cols(N, V);
    const size_t dw_es = dw_dtype == OH_DTYPE_F32 ? 4 : 2;
    for (int v0 = 0; v0 < V; v0 += Vc) {
        int vc = V - v0 < Vc ? V - v0 : Vc;
        const uint16_t *Wc = W + (size_t)v0 * C;
        OHC_TRY(oh_cuda_gemm(w.logits, OH_DTYPE_F32, h, Wc, N, vc, C, 0, 1, 1.f, 0.f, C, C, Vc, stream));
        OHC_KERNEL_LAUNCH(ce_dlogits_kernel, N, kThreads, 0, st, w.dlog, w.logits, weight, lse, target, Vc, vc, v0);
        OHC_LAUNCH_CHECK();
        const uint16_t *dl = reinterpret_cast<const uint16_t *>(w.dlog);
        if (dh) {
            if (dh_dtype == OH_DTYPE_F32)
                OHC_TRY(oh_cuda_gemm(dh, OH_DTYPE_F32, dl, Wc, N, C, vc, 0, 0, 1.f, 1.f, Vc, C, C, stream));
            else
                OHC_TRY(oh_cuda_gemm(w.dh_acc, OH_DTYPE_F32, dl, Wc, N, C, vc, 0, 0, 1.f, v0 == 0 ? 0.f : 1.f, Vc, C, C,
                                     stream));
        }
        if (dW)
            OHC_TRY(oh_cuda_gemm((char *)dW + (size_t)v0 * C * dw_es, dw_dtype, dl, h, vc, C, N, 1, 0, 1.f, 1.f, Vc, C,
                                 C, stream));
    }
    if (dh && dh_dtype == OH_DTYPE_BF16) {
        size_t n = (size_t)N * C;
        int grid = (int)((n + 255) / 256 < (size_t)ohc_num_sms() * 16 ? (n + 255) / 256 : (size_t)ohc_num_sms() * 16);
        OHC_KERNEL_LAUNCH(add_f32_to_bf16_kernel, grid, 256, 0, st, reinterpret_cast<bf16 *>(dh), w.dh_acc, n);
        OHC_LAUNCH_CHECK();
    }
    return OH_CUDA_OK;
}
