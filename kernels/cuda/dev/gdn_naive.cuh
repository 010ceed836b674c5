/* gdn_naive.cuh: variant 0 of the GDN kernel sandbox, the naive CUDA gated
 * delta rule: token by token, fp32 everywhere, one warp per (document, value
 * head, 32 columns of V); each lane owns one column of the state S [K, V],
 * kept in shared memory.  Same inputs, outputs and dtypes as gdn_fwd /
 * gdn_bwd (bf16 out, dq, dk, dv; fp32 dg, dbeta, states), so that its error
 * against the CPU reference is what storage rounding alone costs.
 *
 * The backward is backpropagation through time: a forward pass keeps the
 * state at every 64-token boundary (checkpoints, global scratch), then each
 * segment is recomputed (its 64 states in global scratch) and walked back.
 * dq, dk, dbeta and dg are sums over the V columns: fp32 atomics across
 * blocks into zeroed buffers, then a small kernel applies the l2norm backward.
 *
 * Test and sandbox code only (slow: O(T) sequential steps of O(K) each).
 * Included by tests/gpu/test_gdn.cu and kernels/cuda/dev/gdn_dev.cu; also
 * builds under the CPU emulator (kernels/cuda/dev/emu). */
#ifndef OH_GDN_NAIVE_CUH
#define OH_GDN_NAIVE_CUH

#ifndef OH_EMU
#include <cuda_runtime.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef OH_EMU
#define NAIVE_LAUNCH(kern, grid, block, smem, stream, ...) emu::launch(kern, grid, block, smem, __VA_ARGS__)
#else
#define NAIVE_LAUNCH(kern, grid, block, smem, stream, ...) kern<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif

namespace gdn_naive {

#ifdef OH_EMU
#define NAIVE_SMEM() ((float *)emu::st().smem)
#else
extern __shared__ float sm_naive[];
#define NAIVE_SMEM() sm_naive
#endif

static __device__ __forceinline__ float bf(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
static __device__ __forceinline__ uint16_t f2bf(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static __device__ __forceinline__ float wsum(float v) {
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

struct Args {
    const uint16_t *q, *k, *v, *dout;
    const float *g, *beta, *s0, *ds_final;
    const int32_t *cu;
    uint16_t *out, *dv;
    float *s_final, *ds0;
    float *dqn, *dkn, *dg, *dbeta; /* fp32, zeroed: [T,Hv,K], [T,Hv,K], [T,Hv], [T,Hv] */
    float *scratch;                /* (maxseg + 64) * K * 32 floats per block */
    uint16_t *dq, *dk;
    int T, Hk, Hv, K, V, maxseg;
    float scale;
};

/* Normalised k and q of token t into smem kn[K], qn[K] (fp32). */
static __device__ void load_kq(const Args &a, int t, int hk, float *kn, float *qn) {
    const int lane = threadIdx.x, K = a.K;
    float sk = 0.f, sq = 0.f;
    for (int d = lane; d < a.K; d += 32) {
        const float x = bf(a.k[((size_t)t * a.Hk + hk) * K + d]), y = bf(a.q[((size_t)t * a.Hk + hk) * K + d]);
        kn[d] = x;
        qn[d] = y;
        sk += x * x;
        sq += y * y;
    }
    const float rk = 1.0f / sqrtf(wsum(sk) + 1e-6f), rq = a.scale / sqrtf(wsum(sq) + 1e-6f);
    for (int d = lane; d < K; d += 32) {
        kn[d] *= rk;
        qn[d] *= rq;
    }
    __syncwarp();
}

/* One step on this lane's column; returns o (when want_o). */
static __device__ float step(const Args &a, float *S, const float *kn, const float *qn, float gt, float bt, float vv,
                             bool want_o) {
    const int lane = threadIdx.x;
    const float decay = expf(gt);
    float r = 0.f;
    for (int d = 0; d < a.K; d++) {
        S[d * 32 + lane] *= decay;
        r += S[d * 32 + lane] * kn[d];
    }
    const float u = bt * (vv - r);
    float o = 0.f;
    for (int d = 0; d < a.K; d++) {
        S[d * 32 + lane] += kn[d] * u;
        if (want_o) o += S[d * 32 + lane] * qn[d];
    }
    return o;
}

/* grid (ndocs, Hv, ceil(V/32)), 32 threads, smem (K*32 + 2K) floats */
static __global__ void k_fwd(Args a) {
    const int doc = blockIdx.x, h = blockIdx.y, lane = threadIdx.x, col = blockIdx.z * 32 + lane;
    const int K = a.K, V = a.V, Hv = a.Hv, hk = h / (Hv / a.Hk);
    const bool ok = col < V;
    float *S = NAIVE_SMEM(), *kn = S + K * 32, *qn = kn + K;
    for (int d = 0; d < K; d++) S[d * 32 + lane] = (a.s0 && ok) ? a.s0[(((size_t)doc * Hv + h) * K + d) * V + col] : 0.f;
    for (int t = a.cu[doc]; t < a.cu[doc + 1]; t++) {
        load_kq(a, t, hk, kn, qn);
        const size_t th = (size_t)t * Hv + h;
        const float o = step(a, S, kn, qn, a.g[th], a.beta[th], ok ? bf(a.v[th * V + col]) : 0.f, true);
        if (ok) a.out[th * V + col] = f2bf(o);
        __syncwarp();
    }
    if (a.s_final && ok)
        for (int d = 0; d < K; d++) a.s_final[(((size_t)doc * Hv + h) * K + d) * V + col] = S[d * 32 + lane];
}

/* grid (ndocs, Hv, ceil(V/32)), 32 threads, smem (2 K*32 + 2K) floats */
static __global__ void k_bwd(Args a) {
    const int doc = blockIdx.x, h = blockIdx.y, lane = threadIdx.x, col = blockIdx.z * 32 + lane;
    const int K = a.K, V = a.V, Hv = a.Hv, hk = h / (Hv / a.Hk);
    const bool ok = col < V;
    float *S = NAIVE_SMEM(), *dS = S + K * 32, *kn = dS + K * 32, *qn = kn + K;
    const size_t blk = ((size_t)doc * Hv + h) * gridDim.z + blockIdx.z;
    float *ckpt = a.scratch + blk * (size_t)(a.maxseg + 64) * K * 32;
    float *states = ckpt + (size_t)a.maxseg * K * 32;
    const int t0 = a.cu[doc], t1 = a.cu[doc + 1], nseg = (t1 - t0 + 63) / 64;

    for (int d = 0; d < K; d++) S[d * 32 + lane] = (a.s0 && ok) ? a.s0[(((size_t)doc * Hv + h) * K + d) * V + col] : 0.f;
    for (int sg = 0; sg < nseg; sg++) {
        for (int d = 0; d < K; d++) ckpt[((size_t)sg * K + d) * 32 + lane] = S[d * 32 + lane];
        for (int t = t0 + 64 * sg; t < t1 && t < t0 + 64 * sg + 64; t++) {
            load_kq(a, t, hk, kn, qn);
            const size_t th = (size_t)t * Hv + h;
            step(a, S, kn, qn, a.g[th], a.beta[th], ok ? bf(a.v[th * V + col]) : 0.f, false);
            __syncwarp();
        }
    }
    for (int d = 0; d < K; d++)
        dS[d * 32 + lane] = (a.ds_final && ok) ? a.ds_final[(((size_t)doc * Hv + h) * K + d) * V + col] : 0.f;
    for (int sg = nseg - 1; sg >= 0; sg--) {
        const int s0t = t0 + 64 * sg, s1t = t1 < s0t + 64 ? t1 : s0t + 64;
        for (int d = 0; d < K; d++) S[d * 32 + lane] = ckpt[((size_t)sg * K + d) * 32 + lane];
        for (int t = s0t; t < s1t; t++) {
            load_kq(a, t, hk, kn, qn);
            const size_t th = (size_t)t * Hv + h;
            step(a, S, kn, qn, a.g[th], a.beta[th], ok ? bf(a.v[th * V + col]) : 0.f, false);
            for (int d = 0; d < K; d++) states[((size_t)(t - s0t) * K + d) * 32 + lane] = S[d * 32 + lane];
            __syncwarp();
        }
        for (int t = s1t - 1; t >= s0t; t--) {
            load_kq(a, t, hk, kn, qn);
            const size_t th = (size_t)t * Hv + h;
            const float gt = a.g[th], bt = a.beta[th], decay = expf(gt);
            const float vv = ok ? bf(a.v[th * V + col]) : 0.f, dov = ok ? bf(a.dout[th * V + col]) : 0.f;
            const float *St = states + (size_t)(t - s0t) * K * 32;
            const float *Sp = t > s0t ? states + (size_t)(t - 1 - s0t) * K * 32 : ckpt + (size_t)sg * K * 32;
            /* r = S'^T k with S' = decay S_{t-1};  du = D^T k with D = dS + q do^T */
            float r = 0.f, du = 0.f;
            for (int d = 0; d < K; d++) {
                r += decay * Sp[d * 32 + lane] * kn[d];
                du += (dS[d * 32 + lane] + qn[d] * dov) * kn[d];
            }
            const float u = bt * (vv - r), dr = -bt * du;
            if (ok) a.dv[th * V + col] = f2bf(bt * du);
            float dbp = du * (vv - r), dgp = 0.f;
            for (int d = 0; d < K; d++) {
                const float sp = decay * Sp[d * 32 + lane], D = dS[d * 32 + lane] + qn[d] * dov;
                const float pq = St[d * 32 + lane] * dov, pk = D * u + sp * dr;
                const float dsp = D + kn[d] * dr;
                dgp += dsp * sp;
                dS[d * 32 + lane] = decay * dsp;
                const float sq = wsum(pq), sk = wsum(pk);
                if (lane == 0) {
                    atomicAdd(&a.dqn[th * K + d], sq);
                    atomicAdd(&a.dkn[th * K + d], sk);
                }
            }
            dbp = wsum(dbp);
            dgp = wsum(dgp);
            if (lane == 0) {
                atomicAdd(&a.dbeta[th], dbp);
                atomicAdd(&a.dg[th], dgp);
            }
            __syncwarp();
        }
    }
    if (a.ds0 && ok)
        for (int d = 0; d < K; d++) a.ds0[(((size_t)doc * Hv + h) * K + d) * V + col] = dS[d * 32 + lane];
}

/* One warp per (token, key head): sum the group's value heads, l2norm backward. */
static __global__ void k_finish(Args a) {
    const int wid = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (wid >= a.T * a.Hk) return;
    const int t = wid / a.Hk, hk = wid % a.Hk, K = a.K, grp = a.Hv / a.Hk;
    for (int which = 0; which < 2; which++) {
        const uint16_t *x = which ? a.k : a.q;
        const float *src = which ? a.dkn : a.dqn;
        uint16_t *dst = which ? a.dk : a.dq;
        const float sc = which ? 1.f : a.scale;
        const size_t off = (size_t)wid * K;
        float ss = 0.f;
        for (int d = lane; d < K; d += 32) ss += bf(x[off + d]) * bf(x[off + d]);
        const float r = 1.0f / sqrtf(wsum(ss) + 1e-6f);
        float dot = 0.f;
        for (int d = lane; d < K; d += 32) {
            float e = 0.f;
            for (int j = 0; j < grp; j++) e += src[((size_t)t * a.Hv + hk * grp + j) * K + d];
            dot += bf(x[off + d]) * r * sc * e;
        }
        dot = wsum(dot);
        for (int d = lane; d < K; d += 32) {
            float e = 0.f;
            for (int j = 0; j < grp; j++) e += src[((size_t)t * a.Hv + hk * grp + j) * K + d];
            dst[off + d] = f2bf(r * (sc * e - bf(x[off + d]) * r * dot));
        }
    }
}

/* Host side.  cu_host is the host copy of cu_seqlens (for the scratch size). */
static int max_segments(const int32_t *cu_host, int ndocs) {
    int m = 1;
    for (int n = 0; n < ndocs; n++) {
        int s = (cu_host[n + 1] - cu_host[n] + 63) / 64;
        if (s > m) m = s;
    }
    return m;
}
/* Bytes of device scratch gdn_naive::bwd needs. */
static size_t bwd_scratch_bytes(const int32_t *cu_host, int ndocs, int T, int Hv, int K, int V) {
    size_t blocks = (size_t)ndocs * Hv * ((V + 31) / 32);
    return blocks * (size_t)(max_segments(cu_host, ndocs) + 64) * K * 32 * 4 + 4 * (size_t)T * Hv * (2 * K + 2);
}

static cudaError_t fwd(uint16_t *out, float *s_final, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                       const float *g, const float *beta, const float *s0, const int32_t *cu_dev, int ndocs, int T,
                       int Hk, int Hv, int K, int V, cudaStream_t st) {
    Args a;
    memset(&a, 0, sizeof a);
    a.q = q;
    a.k = k;
    a.v = v;
    a.g = g;
    a.beta = beta;
    a.s0 = s0;
    a.cu = cu_dev;
    a.out = out;
    a.s_final = s_final;
    a.T = T;
    a.Hk = Hk;
    a.Hv = Hv;
    a.K = K;
    a.V = V;
    a.scale = 1.0f / sqrtf((float)K);
    size_t smem = ((size_t)K * 32 + 2 * K) * 4;
    cudaError_t e = cudaFuncSetAttribute(k_fwd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    NAIVE_LAUNCH(k_fwd, dim3(ndocs, Hv, (V + 31) / 32), dim3(32), smem, st, a);
    return cudaGetLastError();
}

/* scratch: bwd_scratch_bytes() bytes of device memory. */
static cudaError_t bwd(uint16_t *dq, uint16_t *dk, uint16_t *dv, float *dg, float *dbeta, float *ds0,
                       const uint16_t *dout, const float *ds_final, const uint16_t *q, const uint16_t *k,
                       const uint16_t *v, const float *g, const float *beta, const float *s0, const int32_t *cu_dev,
                       const int32_t *cu_host, int ndocs, int T, int Hk, int Hv, int K, int V, void *scratch,
                       cudaStream_t st) {
    Args a;
    memset(&a, 0, sizeof a);
    a.q = q;
    a.k = k;
    a.v = v;
    a.g = g;
    a.beta = beta;
    a.s0 = s0;
    a.dout = dout;
    a.ds_final = ds_final;
    a.cu = cu_dev;
    a.dv = dv;
    a.ds0 = ds0;
    a.dq = dq;
    a.dk = dk;
    a.dg = dg;
    a.dbeta = dbeta;
    a.T = T;
    a.Hk = Hk;
    a.Hv = Hv;
    a.K = K;
    a.V = V;
    a.maxseg = max_segments(cu_host, ndocs);
    a.scale = 1.0f / sqrtf((float)K);
    size_t blocks = (size_t)ndocs * Hv * ((V + 31) / 32);
    a.scratch = (float *)scratch;
    a.dqn = a.scratch + blocks * (size_t)(a.maxseg + 64) * K * 32;
    a.dkn = a.dqn + (size_t)T * Hv * K;
    cudaError_t e;
    if ((e = cudaMemsetAsync(a.dqn, 0, (size_t)T * Hv * K * 2 * 4, st)) != cudaSuccess) return e;
    if ((e = cudaMemsetAsync(dg, 0, (size_t)T * Hv * 4, st)) != cudaSuccess) return e;
    if ((e = cudaMemsetAsync(dbeta, 0, (size_t)T * Hv * 4, st)) != cudaSuccess) return e;
    size_t smem = ((size_t)2 * K * 32 + 2 * K) * 4;
    if ((e = cudaFuncSetAttribute(k_bwd, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem)) != cudaSuccess)
        return e;
    NAIVE_LAUNCH(k_bwd, dim3(ndocs, Hv, (V + 31) / 32), dim3(32), smem, st, a);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    NAIVE_LAUNCH(k_finish, dim3((T * Hk + 7) / 8), dim3(256), 0, st, a);
    return cudaGetLastError();
}

} /* namespace gdn_naive */

#endif
