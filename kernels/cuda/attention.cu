// attention.cu: causal varlen flash attention, forward and backward.
//
// Two families of kernels:
//  * wgmma (sm_90a, the default): 2 warpgroups per block, tiles in the wgmma
//    128-byte-swizzle layout, products through wgmma.mma_async (wgmma.cuh).
//    Forward: 64 query rows per warpgroup, online softmax in registers; 3
//    warpgroups x 64-key tiles (wg3, the default: 1.538 vs 1.619 ms at T 8192,
//    30 x 128, H100) or 2 x 128 (wg).  Backward: 64 keys per warpgroup, dK / dV in registers, 64-query
//    tiles; dQ from dS^T in shared memory, added to an fp32 accumulator with
//    atomics.  See attn_fwd_wg_kernel / attn_bwd_wg_kernel.
//  * mma.sync (sm_80+; variants kept for comparison and for images without
//    sm_90a): tiles of 16-row warp slices, row-major [rows][D] bf16 tiles with
//    the 16-byte chunks of a row XOR-swizzled by (row & 7), so that ldmatrix
//    reads of 8 rows at one column hit 8 bank groups.
//
// Variants: OH_ATTN_FWD_WARPS = wg3 | wg | 4x32 | 8 | 4, OH_ATTN_BWD_WARPS = wg | 8 | 4
// (attn_fwd_variant, attn_bwd_variant); bench_ops times them, test_ops checks them.
//
// mma.sync forward (one block per BM queries of one document and head, x 64
// keys per step; 4 warps of 32 query rows, BM 128): K/V tiles double-buffered
// through cp.async, online softmax in the log2 domain, O staged through
// shared memory for 16-byte stores.  Blocks are handed out heaviest first.
// mma.sync backward (one block per 16 NW keys of one document and kv head,
// looping over the heads of its GQA group and the query blocks at or after the
// diagonal): each warp owns 16 keys and keeps their dK, dV in registers; dS^T
// goes through shared memory for dQ, which is added to an fp32 accumulator
// with atomics and converted (and un-rotated) by a last kernel (both families).
#include "kernels/cuda/attention.h"
#include "kernels/cuda/ops_common.cuh"
#include "kernels/cuda/wgmma.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef OH_ATTN_FWD_DEFAULT
#define OH_ATTN_FWD_DEFAULT 4 // 3 wgmma warpgroups x 64 keys (see attn_fwd_variant)
#endif

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// ---- PTX wrappers (under OH_EMU: the CPU emulator's collectives, tests/gpu_ops/emu) ----
#ifdef OH_EMU
#define ATTN_LAUNCH(kern, grid, block, smem, stream, ...)                                                              \
    ((void)(stream), emu::launch(kern, grid, block, smem, __VA_ARGS__))
#define ATTN_SMEM() (emu::st().smem)
#else
#define ATTN_LAUNCH(kern, grid, block, smem, stream, ...) kern<<<grid, block, smem, stream>>>(__VA_ARGS__)
#define ATTN_SMEM() attn_smem
extern __shared__ __align__(128) unsigned char attn_smem[];
#endif

// The kernels need sm_80 instructions (cp.async, bf16 mma); a build for an older
// target compiles them to traps, and the entries refuse such a build (kernel_arch_ok).
#if defined(OH_EMU)
#define OH_ATTN_SM80 0
#elif !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define OH_ATTN_SM80 1
#else
#define OH_ATTN_SM80 0
#endif

__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid) {
#if defined(OH_EMU)
    emu::cp_async16(dst, src, valid, OH_EMU_WHERE);
#elif OH_ATTN_SM80
    int sz = valid ? 16 : 0;
    uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(sz) : "memory");
#else
    __trap();
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(OH_EMU)
    emu::cp_async_commit();
#elif OH_ATTN_SM80
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void cp_async_wait_all() {
#if defined(OH_EMU)
    emu::cp_async_wait(0);
#elif OH_ATTN_SM80
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void *p) {
#ifdef OH_EMU
    emu_ldmatrix(r, p, 4, false, OH_EMU_WHERE);
#else
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
#endif
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const void *p) {
#ifdef OH_EMU
    emu_ldmatrix(r, p, 4, true, OH_EMU_WHERE);
#else
    uint32_t addr = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
#endif
}

// c[16x8] += a[16x16] * b[16x8], bf16 inputs, fp32 accumulators.
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#if defined(OH_EMU)
    uint32_t b[2] = {b0, b1};
    emu_mma(c, a, b, true, OH_EMU_WHERE);
#elif !OH_ATTN_SM80
    __trap();
#else
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

// 2^x on the special-function unit (inputs here are <= 0; -inf gives 0).
__device__ __forceinline__ float fast_exp2(float x) {
#if defined(OH_EMU) || !OH_ATTN_SM80
    return exp2f(x);
#else
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
#endif
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}

// The C fragments of two adjacent 8-column blocks are the A fragment of one 16-wide k step.
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
    a[0] = pack_bf16(c0[0], c0[1]);
    a[1] = pack_bf16(c0[2], c0[3]);
    a[2] = pack_bf16(c1[0], c1[1]);
    a[3] = pack_bf16(c1[2], c1[3]);
}

// Element offset of (row, 16-byte chunk c16) in a swizzled tile of W columns.
template <int W> __device__ __forceinline__ int swz(int row, int c16) { return row * W + ((c16 ^ (row & 7)) << 3); }

// Element offset of (row, 16-byte chunk c16) in a tile of R rows x D columns:
// W128 false: rows of D columns (swz); W128 true: the wgmma layout, D / 64
// column blocks of [R][64], each row's chunks swizzled by (row & 7).
template <int D, int R, bool W128> __device__ __forceinline__ int tile_off(int row, int c16) {
    if constexpr (W128)
        return (c16 >> 3) * R * 64 + row * 64 + (((c16 & 7) ^ (row & 7)) << 3);
    else
        return swz<D>(row, c16);
}

// Rows [row0, row0 + R) of head h of a [T, H, D] tensor (document at s0, len
// rows) into a swizzled tile; rows at or past len are zero-filled.
template <int D, int R, int NT, bool W128 = false>
__device__ __forceinline__ void load_tile(bf16 *tile, const bf16 *base, int s0, int row0, int len, int H, int h) {
    constexpr int CH = D / 8;
#pragma unroll
    for (int c = threadIdx.x; c < R * CH; c += NT) {
        int r = c / CH, c16 = c % CH;
        int gr = row0 + r;
        bool ok = gr < len;
        const bf16 *src = base + ((size_t)(s0 + (ok ? gr : 0)) * H + h) * D + c16 * 8;
        cp_async16(tile + tile_off<D, R, W128>(r, c16), src, ok);
    }
}

// Rotate-half RoPE in place on the valid rows of a swizzled tile.
template <int D, int R, int NT, bool W128 = false>
__device__ __forceinline__ void rope_tile(bf16 *tile, const int32_t *pos, int s0, int row0, int len,
                                          const float *inv_freq) {
    constexpr int HALF = D / 2;
    for (int p = threadIdx.x; p < R * HALF; p += NT) {
        int r = p / HALF, i = p % HALF;
        if (row0 + r >= len) continue;
        float sn, cs;
        sincosf((float)pos[s0 + row0 + r] * inv_freq[i], &sn, &cs);
        bf16 *a = tile + tile_off<D, R, W128>(r, i >> 3) + (i & 7);
        bf16 *b = tile + tile_off<D, R, W128>(r, (i + HALF) >> 3) + (i & 7);
        float x1 = __bfloat162float(*a), x2 = __bfloat162float(*b);
        *a = __float2bfloat16(x1 * cs - x2 * sn);
        *b = __float2bfloat16(x2 * cs + x1 * sn);
    }
}

template <int D, int NT> __device__ __forceinline__ void init_freq(float *f, float theta) {
    for (int i = threadIdx.x; i < D / 2; i += NT) f[i] = 1.f / powf(theta, (float)(2 * i) / (float)D);
}

// A warp's 16 rows of C fragments [16][D] (as bf16) into rows row0.. of a swizzled tile.
template <int D>
__device__ __forceinline__ void stage_rows(bf16 *tile, int row0, const float (&c)[D / 8][4], float s_lo, float s_hi) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
        *reinterpret_cast<uint32_t *>(tile + swz<D>(row0 + g, j) + 2 * t4) = pack_bf16(c[j][0] * s_lo, c[j][1] * s_lo);
        *reinterpret_cast<uint32_t *>(tile + swz<D>(row0 + g + 8, j) + 2 * t4) =
            pack_bf16(c[j][2] * s_hi, c[j][3] * s_hi);
    }
}

// A warp's 16 staged rows to global rows (s0 + grow0 + r) of head h, 16-byte stores, rows < len only.
template <int D> __device__ __forceinline__ void store_rows(bf16 *dst, const bf16 *tile, int row0, int s0, int grow0,
                                                            int len, int H, int h) {
    const int lane = threadIdx.x & 31;
    constexpr int CH = D / 8;
#pragma unroll
    for (int it = 0; it < 16 * CH / 32; it++) {
        int idx = lane + 32 * it, r = idx / CH, c16 = idx % CH;
        if (grow0 + r < len)
            *reinterpret_cast<uint4 *>(dst + ((size_t)(s0 + grow0 + r) * H + h) * D + c16 * 8) =
                *reinterpret_cast<const uint4 *>(tile + swz<D>(row0 + r, c16));
    }
}

// A block's (tile, document, head) from its linear index, the tile varying
// slowest: the blocks that start first cover every (document, head) pair
// before the next tile.  reverse: tile gridDim.x - 1 first (the forward's
// heaviest query tiles; the backward's heaviest key tiles are the first ones).
struct BlockTile {
    int tile, doc, head;
};
__device__ __forceinline__ BlockTile block_tile(bool reverse) {
    const long long per = (long long)gridDim.y * gridDim.z,
                    lin = blockIdx.x + gridDim.x * (blockIdx.y + (long long)gridDim.y * blockIdx.z);
    const int t = (int)(lin / per);
    return BlockTile{reverse ? (int)gridDim.x - 1 - t : t, (int)((lin % per) % gridDim.y), (int)((lin % per) / gridDim.y)};
}

// Online softmax over one warp's 16 rows of raw scores s (C fragments; c[0],
// c[1] in row qr, c[2], c[3] in row qr + 8; columns key0 + 8 j + 2 t4 (+1)):
// masks keys after the row's query or past len (when need_mask), updates the
// row maxima (log2 units of scale_log2 * s) and sums, rescales the output o,
// and turns s into exp2(scale_log2 s - m), one FFMA and one ex2 per element.
template <int NSB, int NJ>
__device__ __forceinline__ void online_softmax(float (&s)[NSB][4], float (&o)[NJ][4], float (&mrow)[2], float (&lrow)[2],
                                               bool need_mask, int key0, int qr, int len, float scale_log2) {
    const int t4 = threadIdx.x & 3;
    float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < NSB; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float x = s[j][e];
            if (need_mask) {
                int key = key0 + j * 8 + 2 * t4 + (e & 1);
                if (key > qr + (e >> 1) * 8 || key >= len) x = -INFINITY;
            }
            s[j][e] = x;
            mx[e >> 1] = fmaxf(mx[e >> 1], x);
        }
    }
    float mu[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        float mnew = fmaxf(mrow[r], mx[r] * scale_log2);
        mu[r] = mnew == -INFINITY ? 0.f : mnew;
        float corr = fast_exp2(mrow[r] - mu[r]);
        mrow[r] = mnew;
        lrow[r] *= corr;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            o[j][2 * r] *= corr;
            o[j][2 * r + 1] *= corr;
        }
    }
#pragma unroll
    for (int j = 0; j < NSB; j++) {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float pe = fast_exp2(fmaf(s[j][e], scale_log2, -mu[e >> 1]));
            s[j][e] = pe;
            lrow[e >> 1] += pe;
        }
    }
}

// ---------------------------------------------------------------- forward

struct FwdParams {
    const bf16 *q, *k, *v;
    bf16 *out;
    float *lse;
    const int32_t *cu, *pos;
    int Hq, Hkv, group;
    float scale_log2, rope_theta;
};

// NW warps of MT x 16 query rows: BM = 16 MT NW queries x BN = 64 keys per tile.
// MT = 1 keeps the warp's Q fragments in registers; MT = 2 (two 16-row
// m-tiles per warp) reads them from shared memory at each k step instead, and
// in exchange each K / V fragment loaded from shared memory feeds twice the
// MMAs (the mma.sync kernels are bound by ldmatrix bandwidth at MT = 1).
template <int D, int NW, int MT> constexpr int fwd_smem_bytes() {
    return (16 * MT * NW * D + 4 * 64 * D) * 2 + (D / 2) * 4;
}

template <int D, bool ROPE, int NW, int MT> __global__ void __launch_bounds__(32 * NW, NW == 4 ? 2 : 1)
    attn_fwd_kernel(const FwdParams p) {
    constexpr int NT = 32 * NW, WR = 16 * MT, BM = WR * NW, BN = 64;
    unsigned char *smem = ATTN_SMEM();
    bf16 *sQ = reinterpret_cast<bf16 *>(smem);
    bf16 *sK = sQ + BM * D;     // [2][BN][D]
    bf16 *sV = sK + 2 * BN * D; // [2][BN][D]
    float *sFreq = reinterpret_cast<float *>(sV + 2 * BN * D);

    // Blocks start roughly in linear-index order: hand out the heaviest query
    // tiles (the last ones) of every (document, head) first, the lightest last.
    const BlockTile bt = block_tile(true);
    const int mblk = bt.tile, doc = bt.doc, h = bt.head;
    const int s0 = p.cu[doc], len = p.cu[doc + 1] - s0;
    const int m0 = mblk * BM;
    if (m0 >= len) return;
    const int hk = h / p.group;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int nkb = min((m0 + BM + BN - 1) / BN, (len + BN - 1) / BN); // causal: keys below m0 + BM
    // This warp's rows are [m0 + WR warp, + WR): it has nothing to do for key
    // blocks that start after its last row, nor when its rows are past the end.
    const int wrow0 = warp * WR;
    const int warp_last = m0 + wrow0 + WR - 1;
    const bool warp_rows = m0 + wrow0 < len;

    if constexpr (ROPE) init_freq<D, NT>(sFreq, p.rope_theta);
    load_tile<D, BM, NT>(sQ, p.q, s0, m0, len, p.Hq, h);
    load_tile<D, BN, NT>(sK, p.k, s0, 0, len, p.Hkv, hk);
    load_tile<D, BN, NT>(sV, p.v, s0, 0, len, p.Hkv, hk);
    cp_async_commit();

    uint32_t qf[MT == 1 ? D / 16 : 1][4];
    float o[MT][D / 8][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < D / 8; j++) o[i][j][0] = o[i][j][1] = o[i][j][2] = o[i][j][3] = 0.f;
    // Row maxima in log2 units (scaled scores), row sums of exp2.
    float mrow[MT][2], lrow[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++) mrow[i][0] = mrow[i][1] = -INFINITY, lrow[i][0] = lrow[i][1] = 0.f;
    const int qr0 = m0 + wrow0 + g; // query row (document-relative) of m-tile 0's c[0], c[1]; +8 c[2], c[3]; +16 i

    for (int n = 0; n < nkb; n++) {
        cp_async_wait_all();
        __syncthreads();
        bf16 *cK = sK + (n & 1) * BN * D, *cV = sV + (n & 1) * BN * D;
        if constexpr (ROPE) {
            if (n == 0) rope_tile<D, BM, NT>(sQ, p.pos, s0, m0, len, sFreq);
            rope_tile<D, BN, NT>(cK, p.pos, s0, n * BN, len, sFreq);
            __syncthreads();
        }
        if (n + 1 < nkb) {
            load_tile<D, BN, NT>(sK + ((n + 1) & 1) * BN * D, p.k, s0, (n + 1) * BN, len, p.Hkv, hk);
            load_tile<D, BN, NT>(sV + ((n + 1) & 1) * BN * D, p.v, s0, (n + 1) * BN, len, p.Hkv, hk);
        }
        cp_async_commit();
        if (!warp_rows || n * BN > warp_last) continue; // (warp-uniform) fully masked for this warp
        if constexpr (MT == 1) {
            if (n == 0) {
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++)
                    ldsm_x4(qf[kk], (sQ + swz<D>(wrow0 + (lane & 15), kk * 2 + (lane >> 4))));
            }
        }

        // S = Q K^T for this warp's WR rows x 64 keys (raw scores).
        float s[MT][BN / 8][4];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < BN / 8; j++) s[i][j][0] = s[i][j][1] = s[i][j][2] = s[i][j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t qa[MT][4];
            if constexpr (MT == 1) {
#pragma unroll
                for (int e = 0; e < 4; e++) qa[0][e] = qf[MT == 1 ? kk : 0][e];
            } else {
#pragma unroll
                for (int i = 0; i < MT; i++)
                    ldsm_x4(qa[i], (sQ + swz<D>(wrow0 + 16 * i + (lane & 15), kk * 2 + (lane >> 4))));
            }
#pragma unroll
            for (int nb2 = 0; nb2 < BN / 16; nb2++) {
                uint32_t b[4];
                ldsm_x4(b, (cK + swz<D>(nb2 * 16 + (lane & 7) + ((lane >> 4) << 3), kk * 2 + ((lane >> 3) & 1))));
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    mma16816(s[i][2 * nb2], qa[i], b[0], b[1]);
                    mma16816(s[i][2 * nb2 + 1], qa[i], b[2], b[3]);
                }
            }
        }

        // Mask, online softmax.
#pragma unroll
        for (int i = 0; i < MT; i++)
            online_softmax(s[i], o[i], mrow[i], lrow[i], ((n + 1) * BN - 1 > m0 + wrow0 + 16 * i) || ((n + 1) * BN > len),
                           n * BN, qr0 + 16 * i, len, p.scale_log2);

        // O += P V.
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) {
            uint32_t a[MT][4];
#pragma unroll
            for (int i = 0; i < MT; i++) c_to_a(a[i], s[i][2 * kk], s[i][2 * kk + 1]);
#pragma unroll
            for (int db = 0; db < D / 16; db++) {
                uint32_t b[4];
                ldsm_x4_t(b, (cV + swz<D>(kk * 16 + (lane & 15), db * 2 + (lane >> 4))));
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    mma16816(o[i][2 * db], a[i], b[0], b[1]);
                    mma16816(o[i][2 * db + 1], a[i], b[2], b[3]);
                }
            }
        }
    }

    // Epilogue: normalise, stage this warp's rows in sQ (only this warp reads them), store.
#pragma unroll
    for (int i = 0; i < MT; i++) {
        float inv[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            lrow[i][r] += __shfl_xor_sync(0xffffffffu, lrow[i][r], 1);
            lrow[i][r] += __shfl_xor_sync(0xffffffffu, lrow[i][r], 2);
            inv[r] = lrow[i][r] > 0.f ? 1.f / lrow[i][r] : 0.f;
        }
        stage_rows<D>(sQ, wrow0 + 16 * i, o[i], inv[0], inv[1]);
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < MT; i++) store_rows<D>(p.out, sQ, wrow0 + 16 * i, s0, m0 + wrow0 + 16 * i, len, p.Hq, h);
    if (t4 == 0) {
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                int qr = qr0 + 16 * i + 8 * r;
                if (qr < len) p.lse[(size_t)(s0 + qr) * p.Hq + h] = (mrow[i][r] + log2f(lrow[i][r])) * kLn2;
            }
    }
}


// ------------------------------------------------------- forward, wgmma (sm_90a)
//
// One block of 2 warpgroups per 128 queries of one document and head; each
// warpgroup owns 64 query rows.  Per 128-key tile (K, V double-buffered through
// cp.async, all tiles in the wgmma 128-byte-swizzle layout):
//   S  = Q K^T    (64 x 128, shared x shared), masked online softmax in registers
//   O += P V      (A = P in registers, V MN-major)
template <int D, int NWG, int BN> constexpr int fwd_wg_smem_bytes() {
    return 1024 + (64 * NWG * D + 4 * BN * D) * 2 + (D / 2) * 4;
}

// NWG warpgroups (BM = 64 NWG queries) x BN keys per tile: 2 x 128 (the default) or 3 x 64.
template <int D, bool ROPE, int NWG, int BN>
__global__ void __launch_bounds__(128 * NWG, 1) attn_fwd_wg_kernel(const FwdParams p) {
    constexpr int NT = 128 * NWG, BM = 64 * NWG, NJ = D / 8, KSD = D / 16, NS = BN / 8;
    constexpr int TK = BN * D;                                  // elements of one K / V buffer
    constexpr uint32_t HALF_Q = BM * 64 * 2, HALF_K = BN * 64 * 2; // bytes of one 64-column block
    unsigned char *smem_raw = ATTN_SMEM();
    unsigned char *smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    bf16 *sQ = reinterpret_cast<bf16 *>(smem); // [D/64][BM][64]
    bf16 *sK = sQ + BM * D;                    // [2][D/64][BN][64]
    bf16 *sV = sK + 2 * TK;                    // [2][D/64][BN][64]
    float *sFreq = reinterpret_cast<float *>(sV + 2 * TK);

    const BlockTile bt = block_tile(true);
    const int mblk = bt.tile, doc = bt.doc, h = bt.head;
    const int s0 = p.cu[doc], len = p.cu[doc + 1] - s0;
    const int m0 = mblk * BM;
    if (m0 >= len) return;
    const int hk = h / p.group;
    const int wg = threadIdx.x >> 7, warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int nkb = (min(m0 + BM, len) + BN - 1) / BN;
    const int wrow0 = 64 * wg;                        // this warpgroup's first row in the block
    const int wg_last = min(m0 + wrow0 + 63, len - 1); // its last valid query
    const bool wg_rows = m0 + wrow0 < len;
    const int qr0 = m0 + 16 * warp + g; // document-relative query of c[0], c[1]; +8 for c[2], c[3]

    if constexpr (ROPE) init_freq<D, NT>(sFreq, p.rope_theta);
    load_tile<D, BM, NT, true>(sQ, p.q, s0, m0, len, p.Hq, h);
    load_tile<D, BN, NT, true>(sK, p.k, s0, 0, len, p.Hkv, hk);
    load_tile<D, BN, NT, true>(sV, p.v, s0, 0, len, p.Hkv, hk);
    cp_async_commit();

    const uint64_t dQ_a = wg_desc(sQ + wrow0 * 64, 16, 1024);
    float o[NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.f, 0.f};

    for (int n = 0; n < nkb; n++) {
        cp_async_wait_all();
        if constexpr (ROPE) {
            __syncthreads();
            if (n == 0) rope_tile<D, BM, NT, true>(sQ, p.pos, s0, m0, len, sFreq);
            rope_tile<D, BN, NT, true>(sK + (n & 1) * TK, p.pos, s0, n * BN, len, sFreq);
        }
        fence_async_smem();
        __syncthreads();
        if (n + 1 < nkb) {
            load_tile<D, BN, NT, true>(sK + ((n + 1) & 1) * TK, p.k, s0, (n + 1) * BN, len, p.Hkv, hk);
            load_tile<D, BN, NT, true>(sV + ((n + 1) & 1) * TK, p.v, s0, (n + 1) * BN, len, p.Hkv, hk);
        }
        cp_async_commit();
        if (!wg_rows || n * BN > wg_last) continue; // (warpgroup-uniform) every key of the tile is masked
        const bf16 *cK = sK + (n & 1) * TK, *cV = sV + (n & 1) * TK;
        const uint64_t dK_b = wg_desc(cK, 16, 1024), dV_b = wg_desc(cV, HALF_K, 1024);

        float sc[NS][4];
        wg_arrive();
#pragma unroll
        for (int kk = 0; kk < KSD; kk++) {
            const uint32_t oq = (kk >> 2) * HALF_Q + (kk & 3) * 32, ok = (kk >> 2) * HALF_K + (kk & 3) * 32;
            wgmma_ss<BN, 0, 0>(sc, wg_desc_add(dQ_a, oq), wg_desc_add(dK_b, ok), kk > 0);
        }
        wg_commit();
        wg_wait<0>();
        wg_fence_acc(sc);
        wg_fence_acc(o);

        // Mask, online softmax.
        online_softmax(sc, o, mrow, lrow, ((n + 1) * BN - 1 > m0 + wrow0) || ((n + 1) * BN > len), n * BN, qr0, len,
                       p.scale_log2);
        uint32_t pa[BN / 16][4];
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) c_to_a(pa[kk], sc[2 * kk], sc[2 * kk + 1]);

        // O += P V.
        wg_fence_regs(pa);
        wg_fence_acc(o);
        wg_arrive();
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++) wgmma_rs<D, 1>(o, pa[kk], wg_desc_add(dV_b, kk * 2048), 1);
        wg_commit();
        wg_wait<0>();
        wg_fence_acc(o);
        wg_fence_regs(pa);
    }

    // Epilogue: normalise, stage the rows in sQ (rows of D: after a barrier, as
    // the other warpgroup may still read its Q rows), store.
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
        lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
        lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
        inv[r] = lrow[r] > 0.f ? 1.f / lrow[r] : 0.f;
    }
    cp_async_wait_all();
    __syncthreads();
    stage_rows<D>(sQ, 16 * warp, o, inv[0], inv[1]);
    __syncwarp();
    store_rows<D>(p.out, sQ, 16 * warp, s0, m0 + 16 * warp, len, p.Hq, h);
    if (t4 == 0) {
#pragma unroll
        for (int r = 0; r < 2; r++) {
            int qr = qr0 + 8 * r;
            if (qr < len) p.lse[(size_t)(s0 + qr) * p.Hq + h] = (mrow[r] + log2f(lrow[r])) * kLn2;
        }
    }
}

// ---------------------------------------------------------------- backward

struct BwdParams {
    const bf16 *q, *k, *v, *dout;
    const float *lse, *delta;
    float *dq_acc;
    bf16 *dk, *dv;
    const int32_t *cu, *pos;
    int Hq, Hkv, group;
    float scale, scale_log2, rope_theta;
};

// NW warps of 16 keys: BN = 16 NW keys x BM = 64 queries per tile.
template <int D, int NW> constexpr int bwd_smem_bytes() {
    return (2 * 16 * NW * D + 4 * 64 * D + 16 * NW * 64) * 2 + 4 * 64 * 4 + (D / 2) * 4;
}

// Query tile `m` of head h into buffer `buf`: Q and dO by cp.async, lse (log2 units) and delta by plain stores.
template <int D, int BM, int NT, bool W128 = false> __device__ __forceinline__ void
bwd_load_q(const BwdParams &p, bf16 *sQb, bf16 *sOb, float *sLb, float *sDb, int s0, int len, int m, int h) {
    load_tile<D, BM, NT, W128>(sQb, p.q, s0, m * BM, len, p.Hq, h);
    load_tile<D, BM, NT, W128>(sOb, p.dout, s0, m * BM, len, p.Hq, h);
    for (int r = threadIdx.x; r < BM; r += NT) {
        int qr = m * BM + r;
        bool ok = qr < len;
        sLb[r] = ok ? p.lse[(size_t)(s0 + qr) * p.Hq + h] * kLog2e : 0.f;
        sDb[r] = ok ? p.delta[(size_t)(s0 + qr) * p.Hq + h] : 0.f;
    }
}

// The backward's shared memory, both families: K, V [BN x D]; Q, dO [2][BM x D]
// (double-buffered); dS^T [BN][BM]; lse, delta [2][BM]; RoPE frequencies [D/2].
template <int D, int BN, int BM> struct BwdSmem {
    bf16 *K, *V, *Q, *O, *S;
    float *L, *Dl, *Freq;
    __device__ explicit BwdSmem(unsigned char *base) {
        K = reinterpret_cast<bf16 *>(base);
        V = K + BN * D;
        Q = V + BN * D;
        O = Q + 2 * BM * D;
        S = O + 2 * BM * D;
        L = reinterpret_cast<float *>(S + BN * BM);
        Dl = L + 2 * BM;
        Freq = Dl + 2 * BM;
    }
};

// A backward block's keys [n0, n0 + BN) of one document and kv head (heaviest
// key tiles, the first ones, of every (document, kv head) first) and its loop:
// the query blocks from mfirst (the first with a query at or after key n0) for
// each head of the GQA group.  n0 >= len: nothing to do.
struct BwdBlock {
    int hk, s0, len, n0, mfirst, per_head, iters;
};
template <int BN, int BM> __device__ __forceinline__ BwdBlock bwd_block(const BwdParams &p) {
    const BlockTile bt = block_tile(false);
    BwdBlock b;
    b.hk = bt.head;
    b.s0 = p.cu[bt.doc];
    b.len = p.cu[bt.doc + 1] - b.s0;
    b.n0 = bt.tile * BN;
    b.mfirst = b.n0 / BM;
    b.per_head = (b.len + BM - 1) / BM - b.mfirst;
    b.iters = p.group * b.per_head;
    return b;
}

// The backward's end, both families: dK *= scale, undo the rotation of k, stage
// the warp's 16 key rows (block rows 16 warp..; rows of D) in sK / sV once every
// warp is done reading them, store dK and dV.
template <int D, bool ROPE>
__device__ __forceinline__ void bwd_epilogue(const BwdParams &p, float (&dk)[D / 8][4], float (&dv)[D / 8][4], bf16 *sK,
                                             bf16 *sV, const float *sFreq, int s0, int n0, int len, int hk) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t4 = lane & 3;
    const int key_r0 = 16 * warp + (lane >> 2);
#pragma unroll
    for (int j = 0; j < D / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[j][e] *= p.scale;
    if constexpr (ROPE) {
#pragma unroll
        for (int j = 0; j < D / 16; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int kr = n0 + key_r0 + (e >> 1) * 8;
                if (kr < len) {
                    int i = j * 8 + 2 * t4 + (e & 1);
                    float sn, cs;
                    sincosf((float)p.pos[s0 + kr] * sFreq[i], &sn, &cs);
                    float y1 = dk[j][e], y2 = dk[j + D / 16][e];
                    dk[j][e] = y1 * cs + y2 * sn;
                    dk[j + D / 16][e] = y2 * cs - y1 * sn;
                }
            }
        }
    }
    cp_async_wait_all();
    __syncthreads(); // every warp is done reading sK / sV
    stage_rows<D>(sK, warp * 16, dk, 1.f, 1.f);
    stage_rows<D>(sV, warp * 16, dv, 1.f, 1.f);
    __syncwarp();
    store_rows<D>(p.dk, sK, warp * 16, s0, n0 + warp * 16, len, p.Hkv, hk);
    store_rows<D>(p.dv, sV, warp * 16, s0, n0 + warp * 16, len, p.Hkv, hk);
}

template <int D, bool ROPE, int NW> __global__ void __launch_bounds__(32 * NW, NW == 4 ? 2 : 1)
    attn_bwd_kernel(const BwdParams p) {
    constexpr int NT = 32 * NW, BN = 16 * NW, BM = 64;
    constexpr int DQC = D * 4 / NW; // dQ columns per warp: 4 warps of 16 query rows share D
    const BwdSmem<D, BN, BM> sm(ATTN_SMEM());
    bf16 *sK = sm.K, *sV = sm.V, *sQ = sm.Q, *sO = sm.O, *sS = sm.S;
    float *sL = sm.L, *sDl = sm.Dl, *sFreq = sm.Freq;
    const BwdBlock bb = bwd_block<BN, BM>(p);
    if (bb.n0 >= bb.len) return;
    const int hk = bb.hk, s0 = bb.s0, len = bb.len, n0 = bb.n0, mfirst = bb.mfirst, per_head = bb.per_head,
              iters = bb.iters;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
    const int key_r0 = warp * 16 + g; // tile row of this thread's c[0], c[1]; +8 for c[2], c[3]

    if constexpr (ROPE) init_freq<D, NT>(sFreq, p.rope_theta);
    load_tile<D, BN, NT>(sK, p.k, s0, n0, len, p.Hkv, hk);
    load_tile<D, BN, NT>(sV, p.v, s0, n0, len, p.Hkv, hk);
    bwd_load_q<D, BM, NT>(p, sQ, sO, sL, sDl, s0, len, mfirst, hk * p.group);
    cp_async_commit();

    float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[j][e] = dv[j][e] = 0.f;

    for (int it = 0; it < iters; it++) {
        const int h = hk * p.group + it / per_head;
        const int m = mfirst + it % per_head;
        const int m0 = m * BM;
        const int buf = it & 1;
        bf16 *cQ = sQ + buf * BM * D, *cO = sO + buf * BM * D;
        const float *cL = sL + buf * BM, *cD = sDl + buf * BM;
        cp_async_wait_all();
        __syncthreads();
        if constexpr (ROPE) {
            if (it == 0) rope_tile<D, BN, NT>(sK, p.pos, s0, n0, len, sFreq);
            rope_tile<D, BM, NT>(cQ, p.pos, s0, m0, len, sFreq);
            __syncthreads();
        }
        if (it + 1 < iters) {
            int nh = hk * p.group + (it + 1) / per_head, nm = mfirst + (it + 1) % per_head;
            bwd_load_q<D, BM, NT>(p, sQ + (buf ^ 1) * BM * D, sO + (buf ^ 1) * BM * D, sL + (buf ^ 1) * BM,
                                  sDl + (buf ^ 1) * BM, s0, len, nm, nh);
        }
        cp_async_commit();

        // This warp's keys [n0 + 16 warp, + 16) see no query of this block (all
        // later, or past the end): its dS^T rows are zero and it skips the products.
        const bool warp_active = (n0 + warp * 16 <= m0 + BM - 1) && (n0 + warp * 16 < len);
        if (!warp_active) {
#pragma unroll
            for (int i = 0; i < 16 * BM / 8 / 32; i++) {
                int idx = lane + 32 * i; // 16-byte chunks of the warp's 16 rows
                *reinterpret_cast<uint4 *>(sS + (warp * 16 + idx / (BM / 8)) * BM + (idx % (BM / 8)) * 8) =
                    make_uint4(0u, 0u, 0u, 0u);
            }
        } else {
            // S^T = K Q^T: this warp's 16 keys x 64 queries.
            float st[BM / 8][4];
#pragma unroll
            for (int j = 0; j < BM / 8; j++) st[j][0] = st[j][1] = st[j][2] = st[j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t a[4];
                ldsm_x4(a, (sK + swz<D>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4))));
#pragma unroll
                for (int qb2 = 0; qb2 < BM / 16; qb2++) {
                    uint32_t b[4];
                    ldsm_x4(b, (cQ + swz<D>(qb2 * 16 + (lane & 7) + ((lane >> 4) << 3), kk * 2 + ((lane >> 3) & 1))));
                    mma16816(st[2 * qb2], a, b[0], b[1]);
                    mma16816(st[2 * qb2 + 1], a, b[2], b[3]);
                }
            }
            // P^T = exp(scale S^T - lse[q]), masked.
            const bool need_mask = (m0 < n0 + warp * 16 + 15) || (m0 + BM > len) || (n0 + BN > len);
#pragma unroll
            for (int j = 0; j < BM / 8; j++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int qc = j * 8 + 2 * t4 + (e & 1);
                    float pe = fast_exp2(fmaf(st[j][e], p.scale_log2, -cL[qc]));
                    if (need_mask) {
                        int q = m0 + qc, key = n0 + key_r0 + (e >> 1) * 8;
                        if (key > q || q >= len || key >= len) pe = 0.f;
                    }
                    st[j][e] = pe;
                }
            }
            // dV += P^T dO.
#pragma unroll
            for (int kk = 0; kk < BM / 16; kk++) {
                uint32_t a[4];
                c_to_a(a, st[2 * kk], st[2 * kk + 1]);
#pragma unroll
                for (int db = 0; db < D / 16; db++) {
                    uint32_t b[4];
                    ldsm_x4_t(b, (cO + swz<D>(kk * 16 + (lane & 15), db * 2 + (lane >> 4))));
                    mma16816(dv[2 * db], a, b[0], b[1]);
                    mma16816(dv[2 * db + 1], a, b[2], b[3]);
                }
            }
            // dP^T = V dO^T, then dS^T = P^T (dP^T - delta[q]) in place of P^T.
            {
                float dp[BM / 8][4];
#pragma unroll
                for (int j = 0; j < BM / 8; j++) dp[j][0] = dp[j][1] = dp[j][2] = dp[j][3] = 0.f;
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++) {
                    uint32_t a[4];
                    ldsm_x4(a, (sV + swz<D>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4))));
#pragma unroll
                    for (int qb2 = 0; qb2 < BM / 16; qb2++) {
                        uint32_t b[4];
                        ldsm_x4(b,
                                (cO + swz<D>(qb2 * 16 + (lane & 7) + ((lane >> 4) << 3), kk * 2 + ((lane >> 3) & 1))));
                        mma16816(dp[2 * qb2], a, b[0], b[1]);
                        mma16816(dp[2 * qb2 + 1], a, b[2], b[3]);
                    }
                }
#pragma unroll
                for (int j = 0; j < BM / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) st[j][e] = st[j][e] * (dp[j][e] - cD[j * 8 + 2 * t4 + (e & 1)]);
            }
            // dK += dS^T Q; dS^T to shared memory for dQ.
#pragma unroll
            for (int kk = 0; kk < BM / 16; kk++) {
                uint32_t a[4];
                c_to_a(a, st[2 * kk], st[2 * kk + 1]);
                *reinterpret_cast<uint32_t *>(sS + swz<BM>(key_r0, 2 * kk) + 2 * t4) = a[0];
                *reinterpret_cast<uint32_t *>(sS + swz<BM>(key_r0 + 8, 2 * kk) + 2 * t4) = a[1];
                *reinterpret_cast<uint32_t *>(sS + swz<BM>(key_r0, 2 * kk + 1) + 2 * t4) = a[2];
                *reinterpret_cast<uint32_t *>(sS + swz<BM>(key_r0 + 8, 2 * kk + 1) + 2 * t4) = a[3];
#pragma unroll
                for (int db = 0; db < D / 16; db++) {
                    uint32_t b[4];
                    ldsm_x4_t(b, (cQ + swz<D>(kk * 16 + (lane & 15), db * 2 + (lane >> 4))));
                    mma16816(dk[2 * db], a, b[0], b[1]);
                    mma16816(dk[2 * db + 1], a, b[2], b[3]);
                }
            }
        } // warp_active
        __syncthreads();
        // dQ[16 queries (warp & 3), DQC columns (warp >> 2)] = dS K, added to the fp32 accumulator.
        {
            const int qw = warp & 3, col0 = (warp >> 2) * DQC;
            uint32_t da[BN / 16][4];
#pragma unroll
            for (int kk = 0; kk < BN / 16; kk++)
                ldsm_x4_t(da[kk],
                          (sS + swz<BM>(kk * 16 + (lane & 7) + ((lane >> 4) << 3), qw * 2 + ((lane >> 3) & 1))));
            const int qa = m0 + qw * 16 + g, qb = qa + 8;
            float *rowa = p.dq_acc + ((size_t)(s0 + qa) * p.Hq + h) * D;
            float *rowb = p.dq_acc + ((size_t)(s0 + qb) * p.Hq + h) * D;
#pragma unroll
            for (int db = 0; db < DQC / 16; db++) {
                float acc[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
                for (int kk = 0; kk < BN / 16; kk++) {
                    uint32_t b[4];
                    ldsm_x4_t(b, (sK + swz<D>(kk * 16 + (lane & 15), col0 / 8 + db * 2 + (lane >> 4))));
                    mma16816(acc[0], da[kk], b[0], b[1]);
                    mma16816(acc[1], da[kk], b[2], b[3]);
                }
#pragma unroll
                for (int jj = 0; jj < 2; jj++) {
                    int col = col0 + (2 * db + jj) * 8 + 2 * t4;
                    if (qa < len) atomic_add_f2(rowa + col, acc[jj][0], acc[jj][1]);
                    if (qb < len) atomic_add_f2(rowb + col, acc[jj][2], acc[jj][3]);
                }
            }
        }
    }

    bwd_epilogue<D, ROPE>(p, dk, dv, sK, sV, sFreq, s0, n0, len, hk);
}


// ------------------------------------------------------- backward, wgmma (sm_90a)
//
// One block of 2 warpgroups per 128 keys of one document and kv head; each
// warpgroup owns 64 keys and keeps their dK, dV (64 x D, fp32) in registers.
// Per 64-query tile (Q, dO double-buffered through cp.async, all tiles in the
// wgmma 128-byte-swizzle layout):
//   S^T  = K Q^T        (64 x 64, shared x shared)      dP^T = V dO^T (same)
//   P^T  = exp2(scale_log2 S^T - lse2[q]), masked
//   dV  += P^T dO       (A = P^T in registers, dO MN-major)
//   dS^T = P^T o (dP^T - delta[q])  -> registers (dK) and shared memory (dQ)
//   dK  += dS^T Q       (A in registers, Q MN-major)
//   dQ   = dS K         (A = dS^T MN-major, K MN-major): D 128, warpgroup w
//          the 64 columns [64 w, +64) over all 128 keys; D 64, all 64 columns
//          over its own 64 keys; added to the fp32 accumulator with atomics.
template <int D> constexpr int bwd_wg_smem_bytes() {
    return 1024 /* alignment */ + (2 * 128 * D + 4 * 64 * D + 128 * 64) * 2 + 4 * 64 * 4 + (D / 2) * 4;
}

template <int D, bool ROPE> __global__ void __launch_bounds__(256, 1) attn_bwd_wg_kernel(const BwdParams p) {
    constexpr int NT = 256, BN = 128, BM = 64, NJ = D / 8;
    constexpr int TQ = BM * D;      // elements of one Q / dO buffer
    constexpr int KSD = D / 16;     // k steps over D
    constexpr uint32_t HALF_K = BN * 64 * 2, HALF_Q = BM * 64 * 2; // bytes of one 64-column block
    unsigned char *smem_raw = ATTN_SMEM();
    // The same carve as the mma.sync kernel, from a 1024-byte boundary; tiles
    // [D/64][rows][64] (wgmma layout), sS [BN][64].
    const BwdSmem<D, BN, BM> sm(smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023));
    bf16 *sK = sm.K, *sV = sm.V, *sQ = sm.Q, *sO = sm.O, *sS = sm.S;
    float *sL = sm.L, *sDl = sm.Dl, *sFreq = sm.Freq;
    const BwdBlock bb = bwd_block<BN, BM>(p);
    if (bb.n0 >= bb.len) return;
    const int hk = bb.hk, s0 = bb.s0, len = bb.len, n0 = bb.n0, mfirst = bb.mfirst, per_head = bb.per_head,
              iters = bb.iters;
    const int wg = threadIdx.x >> 7, warp = threadIdx.x >> 5, wl = warp & 3, lane = threadIdx.x & 31, g = lane >> 2,
              t4 = lane & 3;
    const int key_r0 = 16 * warp + g; // block-relative key of c[0], c[1]; +8 for c[2], c[3]

    if constexpr (ROPE) init_freq<D, NT>(sFreq, p.rope_theta);
    load_tile<D, BN, NT, true>(sK, p.k, s0, n0, len, p.Hkv, hk);
    load_tile<D, BN, NT, true>(sV, p.v, s0, n0, len, p.Hkv, hk);
    bwd_load_q<D, BM, NT, true>(p, sQ, sO, sL, sDl, s0, len, mfirst, hk * p.group);
    cp_async_commit();

    // Descriptors (start of k step 0): this warpgroup's 64 keys of K and V (K-major, A of S^T / dP^T).
    const uint64_t dK_a = wg_desc(sK + wg * 64 * 64, 16, 1024), dV_a = wg_desc(sV + wg * 64 * 64, 16, 1024);
    // dQ: A = dS^T (MN-major over q), B = K (MN-major over D).
    constexpr int DQ_KS = D == 128 ? 8 : 4;
    const uint64_t dS_a = wg_desc(sS + (D == 128 ? 0 : wg * 64 * 64), 8192, 1024);
    const uint64_t dK_b = wg_desc(sK + (D == 128 ? wg * BN * 64 : 0) + (D == 128 ? 0 : wg * 64 * 64), HALF_K, 1024);
    const int dq_col0 = D == 128 ? 64 * wg : 0;

    float dk[NJ][4], dv[NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) dk[j][e] = dv[j][e] = 0.f;

    for (int it = 0; it < iters; it++) {
        const int h = hk * p.group + it / per_head;
        const int m = mfirst + it % per_head;
        const int m0 = m * BM;
        const int buf = it & 1;
        bf16 *cQ = sQ + buf * TQ, *cO = sO + buf * TQ;
        const float *cL = sL + buf * BM, *cD = sDl + buf * BM;
        cp_async_wait_all();
        if constexpr (ROPE) {
            __syncthreads();
            if (it == 0) rope_tile<D, BN, NT, true>(sK, p.pos, s0, n0, len, sFreq);
            rope_tile<D, BM, NT, true>(cQ, p.pos, s0, m0, len, sFreq);
        }
        fence_async_smem();
        __syncthreads();
        if (it + 1 < iters) {
            int nh = hk * p.group + (it + 1) / per_head, nm = mfirst + (it + 1) % per_head;
            bwd_load_q<D, BM, NT, true>(p, sQ + (buf ^ 1) * TQ, sO + (buf ^ 1) * TQ, sL + (buf ^ 1) * BM,
                                        sDl + (buf ^ 1) * BM, s0, len, nm, nh);
        }
        cp_async_commit();

        const uint64_t dQ_b = wg_desc(cQ, 16, 1024), dO_b = wg_desc(cO, 16, 1024); // K-major (S^T, dP^T)
        const uint64_t dQ_mn = wg_desc(cQ, HALF_Q, 1024), dO_mn = wg_desc(cO, HALF_Q, 1024); // MN-major (dK, dV)

        // S^T and dP^T (two groups).
        float st[8][4], dp[8][4];
        wg_arrive();
#pragma unroll
        for (int kk = 0; kk < KSD; kk++) {
            const uint32_t off = (kk >> 2) * HALF_K + (kk & 3) * 32, offq = (kk >> 2) * HALF_Q + (kk & 3) * 32;
            wgmma_ss<64, 0, 0>(st, wg_desc_add(dK_a, off), wg_desc_add(dQ_b, offq), kk > 0);
        }
        wg_commit();
#pragma unroll
        for (int kk = 0; kk < KSD; kk++) {
            const uint32_t off = (kk >> 2) * HALF_K + (kk & 3) * 32, offq = (kk >> 2) * HALF_Q + (kk & 3) * 32;
            wgmma_ss<64, 0, 0>(dp, wg_desc_add(dV_a, off), wg_desc_add(dO_b, offq), kk > 0);
        }
        wg_commit();
        wg_wait<1>();
        wg_fence_acc(st);

        // P^T = exp2(scale_log2 S^T - lse2[q]), masked.
        const bool need_mask = (m0 < n0 + 64 * wg + 63) || (m0 + BM > len) || (n0 + BN > len);
#pragma unroll
        for (int j = 0; j < 8; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int qc = j * 8 + 2 * t4 + (e & 1);
                float pe = fast_exp2(fmaf(st[j][e], p.scale_log2, -cL[qc]));
                if (need_mask) {
                    int q = m0 + qc, key = n0 + key_r0 + (e >> 1) * 8;
                    if (key > q || q >= len || key >= len) pe = 0.f;
                }
                st[j][e] = pe;
            }
        }
        uint32_t pa[4][4];
#pragma unroll
        for (int kk = 0; kk < 4; kk++) c_to_a(pa[kk], st[2 * kk], st[2 * kk + 1]);
        // dV += P^T dO.
        wg_fence_regs(pa);
        wg_fence_acc(dv);
        wg_arrive();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_rs<D, 1>(dv, pa[kk], wg_desc_add(dO_mn, kk * 2048), 1);
        wg_commit();
        wg_wait<1>();
        wg_fence_acc(dp);

        // dS^T = P^T o (dP^T - delta[q]): A of dK, and to shared memory for dQ.
        uint32_t da[4][4];
#pragma unroll
        for (int j = 0; j < 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) st[j][e] *= dp[j][e] - cD[j * 8 + 2 * t4 + (e & 1)];
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            c_to_a(da[kk], st[2 * kk], st[2 * kk + 1]);
            // rows key_r0 (+8) of the [BN][64] tile, q columns 16 kk + 2 t4 (+8)
            *reinterpret_cast<uint32_t *>(sS + tile_off<64, BN, true>(key_r0, 2 * kk) + 2 * t4) = da[kk][0];
            *reinterpret_cast<uint32_t *>(sS + tile_off<64, BN, true>(key_r0 + 8, 2 * kk) + 2 * t4) = da[kk][1];
            *reinterpret_cast<uint32_t *>(sS + tile_off<64, BN, true>(key_r0, 2 * kk + 1) + 2 * t4) = da[kk][2];
            *reinterpret_cast<uint32_t *>(sS + tile_off<64, BN, true>(key_r0 + 8, 2 * kk + 1) + 2 * t4) = da[kk][3];
        }
        // dK += dS^T Q.
        wg_fence_regs(da);
        wg_fence_acc(dk);
        wg_arrive();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_rs<D, 1>(dk, da[kk], wg_desc_add(dQ_mn, kk * 2048), 1);
        wg_commit();
        fence_async_smem();
        __syncthreads(); // dS^T of both warpgroups in shared memory

        // dQ (64 queries x 64 columns of this warpgroup).
        float dq[8][4];
        wg_arrive();
#pragma unroll
        for (int kk = 0; kk < DQ_KS; kk++) wgmma_ss<64, 1, 1>(dq, wg_desc_add(dS_a, kk * 2048), wg_desc_add(dK_b, kk * 2048), kk > 0);
        wg_commit();
        wg_wait<0>();
        wg_fence_acc(dq);
        wg_fence_acc(dv);
        wg_fence_acc(dk);
        wg_fence_regs(pa);
        wg_fence_regs(da);
        {
            const int qa = m0 + 16 * wl + g, qb = qa + 8;
            float *rowa = p.dq_acc + ((size_t)(s0 + qa) * p.Hq + h) * D + dq_col0;
            float *rowb = p.dq_acc + ((size_t)(s0 + qb) * p.Hq + h) * D + dq_col0;
#pragma unroll
            for (int j = 0; j < 8; j++) {
                int col = 8 * j + 2 * t4;
                if (qa < len) atomic_add_f2(rowa + col, dq[j][0], dq[j][1]);
                if (qb < len) atomic_add_f2(rowb + col, dq[j][2], dq[j][3]);
            }
        }
    }

    bwd_epilogue<D, ROPE>(p, dk, dv, sK, sV, sFreq, s0, n0, len, hk);
}

// delta[row] = sum_d dout[row, d] * out[row, d], one warp per (token, head) row.
__global__ void attn_delta_kernel(float *__restrict__ delta, const bf16 *__restrict__ dout,
                                  const bf16 *__restrict__ out, size_t rows, int D) {
    size_t row = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const __nv_bfloat162 *a = reinterpret_cast<const __nv_bfloat162 *>(dout + row * D);
    const __nv_bfloat162 *b = reinterpret_cast<const __nv_bfloat162 *>(out + row * D);
    float acc = 0.f;
    for (int i = lane; i < D / 2; i += 32) {
        float2 x = __bfloat1622float2(a[i]), y = __bfloat1622float2(b[i]);
        acc += x.x * y.x + x.y * y.y;
    }
    acc = warp_sum(acc);
    if (lane == 0) delta[row] = acc;
}

// dq = bf16(scale * acc), un-rotated when ROPE; one thread per (row, i < D/2) pair.
template <bool ROPE> __global__ void attn_dq_kernel(bf16 *__restrict__ dq, const float *__restrict__ acc,
                                                    const int32_t *__restrict__ pos, size_t rows, int Hq, int D,
                                                    float scale, float theta) {
    const int half = D / 2;
    size_t n = rows * half;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t idx = (size_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += stride) {
        size_t row = idx / half;
        int i = (int)(idx % half);
        float y1 = acc[row * D + i] * scale, y2 = acc[row * D + i + half] * scale;
        if constexpr (ROPE) {
            float inv = 1.f / powf(theta, (float)(2 * i) / (float)D);
            float sn, cs;
            sincosf((float)pos[row / Hq] * inv, &sn, &cs);
            float x1 = y1 * cs + y2 * sn, x2 = y2 * cs - y1 * sn;
            y1 = x1;
            y2 = x2;
        }
        dq[row * D + i] = __float2bfloat16(y1);
        dq[row * D + i + half] = __float2bfloat16(y2);
    }
}

// ---------------------------------------------------------------- launchers

// The kernel image must be for sm_80 or newer (a build for sm_75 holds only traps).
int kernel_arch_ok(const void *fn) {
#ifdef OH_EMU
    (void)fn;
#else
    cudaFuncAttributes a;
    OHC_CUDA(cudaFuncGetAttributes(&a, fn));
    if (a.binaryVersion < 80)
        OHC_UNSUPPORTED("attention kernels built for an arch below sm_80: build with CMAKE_CUDA_ARCHITECTURES=90a");
#endif
    return OH_CUDA_OK;
}

template <int D, bool ROPE, int NW, int MT>
int launch_fwd(const FwdParams &p, int ndocs, int max_seqlen, int Hq, cudaStream_t st) {
    constexpr int smem = fwd_smem_bytes<D, NW, MT>();
    void (*kern)(const FwdParams) = attn_fwd_kernel<D, ROPE, NW, MT>;
    static bool attr_set = false;
    if (!attr_set) {
        OHC_TRY(kernel_arch_ok((const void *)kern));
        OHC_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        attr_set = true;
    }
    constexpr int BM = 16 * NW * MT;
    dim3 grid((max_seqlen + BM - 1) / BM, ndocs, Hq);
    ATTN_LAUNCH(kern, grid, 32 * NW, smem, st, p);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

template <int D, bool ROPE, int NW>
int launch_bwd(const BwdParams &p, int ndocs, int max_seqlen, int Hkv, cudaStream_t st) {
    constexpr int smem = bwd_smem_bytes<D, NW>();
    void (*kern)(const BwdParams) = attn_bwd_kernel<D, ROPE, NW>;
    static bool attr_set = false;
    if (!attr_set) {
        OHC_TRY(kernel_arch_ok((const void *)kern));
        OHC_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        attr_set = true;
    }
    dim3 grid((max_seqlen + 16 * NW - 1) / (16 * NW), ndocs, Hkv);
    ATTN_LAUNCH(kern, grid, 32 * NW, smem, st, p);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

// First use of a wgmma kernel: *state 0 (unknown) becomes 1 (shared memory
// limit raised, ready) or -1 (the image has no sm_90a code: the caller falls
// back to the mma.sync kernels).
template <typename P> int wg_prepare(void (*kern)(const P), int smem, int *state) {
    if (*state != 0) return OH_CUDA_OK;
#ifndef OH_EMU
    cudaFuncAttributes a;
    OHC_CUDA(cudaFuncGetAttributes(&a, (const void *)kern));
    if (a.binaryVersion < 90) {
        *state = -1;
        return OH_CUDA_OK;
    }
#endif
    OHC_CUDA(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    *state = 1;
    return OH_CUDA_OK;
}

// The wgmma backward: sm_90a images only (an sm_80 image falls back to the mma.sync kernel).
template <int D, bool ROPE> int launch_bwd_wg(const BwdParams &p, int ndocs, int max_seqlen, int Hkv, cudaStream_t st,
                                              bool *unsupported) {
    constexpr int smem = bwd_wg_smem_bytes<D>();
    void (*kern)(const BwdParams) = attn_bwd_wg_kernel<D, ROPE>;
    static int state = 0;
    OHC_TRY(wg_prepare(kern, smem, &state));
    if (state < 0) {
        *unsupported = true;
        return OH_CUDA_OK;
    }
    dim3 grid((max_seqlen + 127) / 128, ndocs, Hkv);
    ATTN_LAUNCH(kern, grid, 256, smem, st, p);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

// Backward variant: OH_ATTN_BWD_WARPS = wg (2 warpgroups of wgmma, the default
// on sm_90a), 8 or 4 (mma.sync, 8 or 4 warps of 16 keys); read at each call
// (bench_ops times them all).
int attn_bwd_variant() {
    const char *e = getenv("OH_ATTN_BWD_WARPS");
    if (!e || !strcmp(e, "wg")) return 0;
    return atoi(e) == 4 ? 4 : 8;
}

// Forward tile variant: OH_ATTN_FWD_WARPS = wg3 (3 wgmma warpgroups, 64-key
// tiles, BM 192: the default on sm_90a), wg (2 warpgroups, 128-key tiles,
// BM 128), or the mma.sync kernels (also the fallback without an sm_90a
// image): 4x32 (4 warps x 32 rows, BM 128), 8 (8 warps x 16 rows, BM 128),
// 4 (4 warps x 16 rows, BM 64).  T 8192, 30 x 128, H100, fwd ms: wg3 1.538,
// wg 1.619, 4x32 1.955 (2026-11-24).
int attn_fwd_variant() {
    const char *e = getenv("OH_ATTN_FWD_WARPS");
    if (!e) return OH_ATTN_FWD_DEFAULT;
    if (!strcmp(e, "wg")) return 3;
    if (!strcmp(e, "wg3")) return 4;
    if (!strcmp(e, "4x32")) return 2;
    if (!strcmp(e, "4")) return 1;
    return 0;
}

// The wgmma forward: sm_90a images only (*unsupported set otherwise: the caller falls back).
template <int D, bool ROPE, int NWG, int BN>
int launch_fwd_wg(const FwdParams &p, int ndocs, int max_seqlen, int Hq, cudaStream_t st, bool *unsupported) {
    constexpr int smem = fwd_wg_smem_bytes<D, NWG, BN>();
    void (*kern)(const FwdParams) = attn_fwd_wg_kernel<D, ROPE, NWG, BN>;
    static int state = 0;
    OHC_TRY(wg_prepare(kern, smem, &state));
    if (state < 0) {
        *unsupported = true;
        return OH_CUDA_OK;
    }
    dim3 grid((max_seqlen + 64 * NWG - 1) / (64 * NWG), ndocs, Hq);
    ATTN_LAUNCH(kern, grid, 128 * NWG, smem, st, p);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

template <int NWG, int BN>
int dispatch_fwd_wg(const FwdParams &p, int D, bool rope, int ndocs, int max_seqlen, int Hq, cudaStream_t st,
                    bool *unsupported) {
    if (D == 128)
        return rope ? launch_fwd_wg<128, true, NWG, BN>(p, ndocs, max_seqlen, Hq, st, unsupported)
                    : launch_fwd_wg<128, false, NWG, BN>(p, ndocs, max_seqlen, Hq, st, unsupported);
    return rope ? launch_fwd_wg<64, true, NWG, BN>(p, ndocs, max_seqlen, Hq, st, unsupported)
                : launch_fwd_wg<64, false, NWG, BN>(p, ndocs, max_seqlen, Hq, st, unsupported);
}

template <int NW, int MT>
int dispatch_fwd(const FwdParams &p, int D, bool rope, int ndocs, int max_seqlen, int Hq, cudaStream_t st) {
    if (D == 128)
        return rope ? launch_fwd<128, true, NW, MT>(p, ndocs, max_seqlen, Hq, st)
                    : launch_fwd<128, false, NW, MT>(p, ndocs, max_seqlen, Hq, st);
    return rope ? launch_fwd<64, true, NW, MT>(p, ndocs, max_seqlen, Hq, st)
                : launch_fwd<64, false, NW, MT>(p, ndocs, max_seqlen, Hq, st);
}

int check_common(const void *q, const void *k, const void *v, const int32_t *cu, int ndocs, int max_seqlen, int T,
                 int Hq, int Hkv, int D, float scale) {
    OHC_ARG(q && k && v && cu);
    OHC_ARG(ndocs >= 1 && T >= 1 && max_seqlen >= 1 && max_seqlen <= T);
    OHC_ARG(Hq >= 1 && Hkv >= 1 && Hq % Hkv == 0 && Hq <= 65535 && ndocs <= 65535);
    OHC_ARG(scale > 0.f);
    OHC_ARG(ohc_aligned(q, 16) && ohc_aligned(k, 16) && ohc_aligned(v, 16));
    if (D != 64 && D != 128) OHC_UNSUPPORTED("head dim must be 64 or 128");
    return OH_CUDA_OK;
}

} // namespace

#define CB16(p) reinterpret_cast<const bf16 *>(p)

extern "C" int oh_cuda_attention_fwd(uint16_t *out, float *lse, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                                     const int32_t *cu_seqlens, int ndocs, int max_seqlen, int T, int Hq, int Hkv,
                                     int D, float scale, const int32_t *pos, float rope_theta, oh_stream stream) {
    OHC_TRY(check_common(q, k, v, cu_seqlens, ndocs, max_seqlen, T, Hq, Hkv, D, scale));
    OHC_ARG(out && lse && ohc_aligned(out, 16));
    const bool rope = pos && rope_theta > 0.f;
    FwdParams p;
    p.q = CB16(q);
    p.k = CB16(k);
    p.v = CB16(v);
    p.out = reinterpret_cast<bf16 *>(out);
    p.lse = lse;
    p.cu = cu_seqlens;
    p.pos = pos;
    p.Hq = Hq;
    p.Hkv = Hkv;
    p.group = Hq / Hkv;
    p.scale_log2 = scale * kLog2e;
    p.rope_theta = rope_theta;
    cudaStream_t st = ohc_stream(stream);
    int variant = attn_fwd_variant();
    if (variant >= 3) {
        bool unsupported = false;
        int s = variant == 3 ? dispatch_fwd_wg<2, 128>(p, D, rope, ndocs, max_seqlen, Hq, st, &unsupported)
                             : dispatch_fwd_wg<3, 64>(p, D, rope, ndocs, max_seqlen, Hq, st, &unsupported);
        if (s != OH_CUDA_OK || !unsupported) return s;
        variant = 2; // no sm_90a image: the mma.sync kernel
    }
    switch (variant) {
    case 1: return dispatch_fwd<4, 1>(p, D, rope, ndocs, max_seqlen, Hq, st);
    case 2: return dispatch_fwd<4, 2>(p, D, rope, ndocs, max_seqlen, Hq, st);
    default: return dispatch_fwd<8, 1>(p, D, rope, ndocs, max_seqlen, Hq, st);
    }
}

extern "C" size_t oh_cuda_attention_bwd_workspace_bytes(int T, int Hq, int D) {
    if (T <= 0 || Hq <= 0 || D <= 0) return 0;
    return align256((size_t)T * Hq * D * 4) + align256((size_t)T * Hq * 4);
}

extern "C" int oh_cuda_attention_bwd(uint16_t *dq, uint16_t *dk, uint16_t *dv, const uint16_t *dout,
                                     const uint16_t *out, const float *lse, const uint16_t *q, const uint16_t *k,
                                     const uint16_t *v, const int32_t *cu_seqlens, int ndocs, int max_seqlen, int T,
                                     int Hq, int Hkv, int D, float scale, const int32_t *pos, float rope_theta,
                                     void *workspace, size_t workspace_bytes, oh_stream stream) {
    OHC_TRY(check_common(q, k, v, cu_seqlens, ndocs, max_seqlen, T, Hq, Hkv, D, scale));
    OHC_ARG(dq && dk && dv && dout && out && lse);
    OHC_ARG(ohc_aligned(dq, 16) && ohc_aligned(dk, 16) && ohc_aligned(dv, 16) && ohc_aligned(dout, 16) &&
            ohc_aligned(out, 16));
    OHC_ARG(workspace && ohc_aligned(workspace, 256));
    if (workspace_bytes < oh_cuda_attention_bwd_workspace_bytes(T, Hq, D)) {
        oh_ops_report(__FILE__, __LINE__, "oh_cuda_attention_bwd",
                      "workspace smaller than oh_cuda_attention_bwd_workspace_bytes");
        return OH_CUDA_ERR_WORKSPACE;
    }
    const bool rope = pos && rope_theta > 0.f;
    cudaStream_t st = ohc_stream(stream);
    float *dq_acc = reinterpret_cast<float *>(workspace);
    float *delta = reinterpret_cast<float *>(reinterpret_cast<char *>(workspace) + align256((size_t)T * Hq * D * 4));
    const size_t rows = (size_t)T * Hq;
    OHC_CUDA(cudaMemsetAsync(dq_acc, 0, rows * D * 4, st));
    ATTN_LAUNCH(attn_delta_kernel, (unsigned)((rows * 32 + 255) / 256), 256, 0, st, delta, CB16(dout), CB16(out), rows,
                D);
    OHC_LAUNCH_CHECK();

    BwdParams p;
    p.q = CB16(q);
    p.k = CB16(k);
    p.v = CB16(v);
    p.dout = CB16(dout);
    p.lse = lse;
    p.delta = delta;
    p.dq_acc = dq_acc;
    p.dk = reinterpret_cast<bf16 *>(dk);
    p.dv = reinterpret_cast<bf16 *>(dv);
    p.cu = cu_seqlens;
    p.pos = pos;
    p.Hq = Hq;
    p.Hkv = Hkv;
    p.group = Hq / Hkv;
    p.scale = scale;
    p.scale_log2 = scale * kLog2e;
    p.rope_theta = rope_theta;
    int s;
    const int variant = attn_bwd_variant();
    bool unsupported = false;
    if (variant == 0) {
        if (D == 128)
            s = rope ? launch_bwd_wg<128, true>(p, ndocs, max_seqlen, Hkv, st, &unsupported)
                     : launch_bwd_wg<128, false>(p, ndocs, max_seqlen, Hkv, st, &unsupported);
        else
            s = rope ? launch_bwd_wg<64, true>(p, ndocs, max_seqlen, Hkv, st, &unsupported)
                     : launch_bwd_wg<64, false>(p, ndocs, max_seqlen, Hkv, st, &unsupported);
        OHC_TRY(s);
    }
    const bool w8 = variant != 4;
    if (variant != 0 || unsupported) {
    if (D == 128) {
        if (rope)
            s = w8 ? launch_bwd<128, true, 8>(p, ndocs, max_seqlen, Hkv, st)
                   : launch_bwd<128, true, 4>(p, ndocs, max_seqlen, Hkv, st);
        else
            s = w8 ? launch_bwd<128, false, 8>(p, ndocs, max_seqlen, Hkv, st)
                   : launch_bwd<128, false, 4>(p, ndocs, max_seqlen, Hkv, st);
    } else {
        if (rope)
            s = w8 ? launch_bwd<64, true, 8>(p, ndocs, max_seqlen, Hkv, st)
                   : launch_bwd<64, true, 4>(p, ndocs, max_seqlen, Hkv, st);
        else
            s = w8 ? launch_bwd<64, false, 8>(p, ndocs, max_seqlen, Hkv, st)
                   : launch_bwd<64, false, 4>(p, ndocs, max_seqlen, Hkv, st);
    }
    OHC_TRY(s);
    }

    size_t pairs = rows * (D / 2);
    size_t cap = (size_t)ohc_num_sms() * 16;
    unsigned grid = (unsigned)((pairs + 255) / 256 < cap ? (pairs + 255) / 256 : cap);
    if (rope)
        ATTN_LAUNCH(attn_dq_kernel<true>, grid, 256, 0, st, reinterpret_cast<bf16 *>(dq), (const float *)dq_acc, pos,
                    rows, Hq, D, scale, rope_theta);
    else
        ATTN_LAUNCH(attn_dq_kernel<false>, grid, 256, 0, st, reinterpret_cast<bf16 *>(dq), (const float *)dq_acc, pos,
                    rows, Hq, D, scale, rope_theta);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}
