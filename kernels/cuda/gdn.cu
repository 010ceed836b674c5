/* gdn.cu: chunked gated delta rule, forward and backward (see gdn.h).
 *
 * Chunk form.  Inside a chunk of L <= 64 tokens with state S0 on entry, let
 * G_i = g_0 + ... + g_i (within the chunk), gam_i = e^{G_i}, del_i = e^{G_63 - G_i},
 * Gam_ij = e^{G_i - G_j} (rows past L are zero-padded: g = beta = q = k = v = 0,
 * so G_63 = G_{L-1} and the padding changes nothing).  Then
 *   A  = strict_lower(diag(beta) (Kn Kn^T o Gam)),   T = (I + A)^-1 = Tu o Gam,
 *        Tu = (I + Au)^-1 the same without decay (Au = strict_lower(diag(beta) Kn Kn^T)),
 *   W  = T diag(beta gam) Kn = diag(gam) Wu,  Wu = Tu diag(beta) Kn,
 *   Uv = T diag(beta) V,   U = Uv - W S0,
 *   P  = lower_incl_diag(Qn Kn^T o Gam),   Qg = diag(gam) Qn,   Kd = diag(del) Kn,
 *   O  = Qg S0 + P U,
 *   S1 = e^{G_63} S0 + Kd^T U = e^{G_63} S0 + Kn^T (del o U)   (the state entering the next chunk).
 * Backward, with dH = dL/dS1 and dO given:
 *   dU  = P^T dO + del o (Kn dH),
 *   dS0 = e^{G_63} dH + Qg^T dO - W^T dU = e^{G_63} dH + Qn^T (gam o dO) - Wu^T (gam o P^T dO + e^{G_63} Kn dH),
 *   dR  = T^T dU,  dv = beta o dR,  dA = -strict_lower(dR U^T),  dP = lower(dO U^T),
 *   dQn = gam o (dO S0^T) + (dP o Gam) Kn,
 *   dKn = (dP o Gam)^T Qn + del o (U dH^T) - beta gam o (dR S0^T) + Z Kn + Z^T Kn,
 *         Z = diag(beta) dA o Gam,
 *   dG_i = gam_i qn_i.(dO S0^T)_i + sum_j (D_ij - D_ji) + sum_j (E_ij - E_ji)
 *          - beta_i gam_i kn_i.(dR S0^T)_i - del_i kn_i.(U dH^T)_i
 *          + [i = 63] (e^{G_63} <dH, S0> + sum_j del_j kn_j.(U dH^T)_j),
 *         D = dP o P,  E = Z o (Kn Kn^T),
 *   dbeta_i = v_i.dR_i - gam_i kn_i.(dR S0^T)_i + sum_j dA_ij Gam_ij kn_i.kn_j,
 *   dg = reverse cumsum of dG inside the chunk.
 *
 * Precision.  Every product runs on the tensor cores (mma.sync m16n8k16; in
 * the state kernels (K <= 128) and k_chunk_bwd's V loop wgmma m64nNk16; fp32
 * accumulation) with fp16
 * operands, which carry 3 more mantissa bits than bf16 at the same speed: the
 * bounded operands (Qn, Kn, Wu, P, T are
 * all <= a few in magnitude) are stored as plain fp16; the others (the state
 * H = S0, U, Uv, dH, dU, dO) as fp16 times 2^e, with one exponent e per
 * (chunk, head, 64 columns of V), chosen from the tile's max so that it lands
 * in [2^14, 2^15) (|e| <= 40); being uniform over the tile, 2^-e factors out
 * of every product.  Decay factors that would underflow fp16 separately while
 * their product matters (e^{G_i} in W and Qg, e^{G_63 - G_i} in Kd) are applied
 * in fp32 instead (the Wu, Kn, Qn, del o U, gam o dO and gam o dU forms above, and
 * O = gam o (Qn S0) + P U), so that the
 * state gradient crossing a chunk with no output gradient (a masked prompt)
 * keeps its precision under strong decay.  Only Uv = T diag(beta) V uses bf16 (V is bf16 already;
 * T diag(beta) is split into bf16 hi + lo).  The state itself stays fp32 in
 * registers along the recurrence.  Reductions are deterministic (no atomics
 * except when K > 128, where two K halves add into dg and dbeta).
 *
 * Kernels (one launch each, in this order):
 *   k_chunk_table  chunk table from cu_seqlens (device), one block.
 *   k_prep         per (chunk, value head): G, Kn Kn^T and Qn Kn^T, Tu by
 *                  blocked forward substitution (fp32), Wu, Uv; stores G, Wu,
 *                  Kn, Qn, P, T, Uv (+ exponents).
 *   k_state_fwd    per (document, value head, 64 columns of V): the state
 *                  recurrence over the document's chunks; stores H and U per
 *                  chunk; s_final.  K <= 128: k_state_fwd_wg (one warpgroup,
 *                  the state transposed in wgmma accumulators), which also
 *                  computes the output (unless OH_GDN_SF_OUT=0).
 *   k_out          per (chunk, value head, 64 columns of V): O = gam o (Qn S0) + P U
 *                  (K > 128, or OH_GDN_SF_OUT=0).
 *   k_dout_prep    per (chunk, value head): dO as scaled fp16 tiles; only
 *                  when K > 128 (or OH_GDN_DPREP=kernel): otherwise the
 *                  state kernel's signaller warp does it (dprep_load).
 *   k_state_bwd    per (document, value head, 64 columns of V): the reverse
 *                  recurrence; stores dH (gradient of the state leaving each
 *                  chunk) and dU; ds0.  K <= 128: k_state_bwd_wg.
 *   k_chunk_bwd    per (chunk, value head, K block of <= 128): everything else
 *                  (the V loop's products on wgmma, one warpgroup a role);
 *                  fuses the l2norm backward when K <= 128 and Hv == Hk.
 *   k_qk_finish    otherwise: sums value heads into key heads, l2norm backward.
 *
 * Builds for the GPU with nvcc (sm_90a) and, to check it without a GPU, as
 * C++ with -DOH_EMU and kernels/cuda/dev/emu/cuda_emu.h force-included
 * (kernels/cuda/dev/emu/run.sh). */
#include "kernels/cuda/gdn.h"
#include "kernels/cuda/wgmma.cuh"

#ifndef OH_EMU
#include <cuda.h> /* CUtensorMap (the encoder is found at run time: no libcuda link) */
#include <cudaTypedefs.h>
#include <cuda_runtime.h>
#endif
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ errors */

static thread_local char gdn_errbuf[512];

static int gdn_fail(int status, const char *file, int line, const char *fmt, ...) {
    int n = snprintf(gdn_errbuf, sizeof gdn_errbuf, "%s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && n < (int)sizeof gdn_errbuf) vsnprintf(gdn_errbuf + n, sizeof gdn_errbuf - n, fmt, ap);
    va_end(ap);
    return status;
}

extern "C" const char *gdn_last_error(void) { return gdn_errbuf; }

/* CUDA_CHECK for library code: record "file:line: expr: error" and return. */
#define GDN_CUDA_TRY(expr)                                                                                    \
    do {                                                                                                      \
        cudaError_t e_ = (expr);                                                                              \
        if (e_ != cudaSuccess)                                                                                \
            return gdn_fail(GDN_STATUS_CUDA, __FILE__, __LINE__, "%s: %s", #expr, cudaGetErrorString(e_));    \
    } while (0)
#define GDN_REQUIRE(cond, status)                                                                             \
    do {                                                                                                      \
        if (!(cond)) return gdn_fail(status, __FILE__, __LINE__, "precondition failed: %s", #cond);          \
    } while (0)

#ifdef OH_EMU
#define GDN_LAUNCH(kern, grid, block, smem, stream, ...) emu::launch(kern, grid, block, smem, __VA_ARGS__)
#else
#define GDN_LAUNCH(kern, grid, block, smem, stream, ...) kern<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif

/* ------------------------------------------------------- device primitives */

#define DEV static __device__ __forceinline__

enum { BT = 64 };   /* chunk length */
enum { LD64 = 72 }; /* smem row stride (elements) of a 64-column 16-bit tile: 144 B, conflict-free ldmatrix */

#ifdef OH_EMU
static inline uint32_t emu_f32_to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (u >> 16) | 0x40u;
    return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}
static inline uint32_t emu_f32_to_f16(float f) {
    uint32_t x = __float_as_uint(f);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u);
    if (ax >= 0x477ff000u) return sign | 0x7c00u;
    if (ax < 0x38800000u) return sign | (uint32_t)nearbyintf(__uint_as_float(ax) * 16777216.0f);
    uint32_t h = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return sign | h;
}
#endif

DEV float bf2f(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
DEV float bf2f_lo(uint32_t p) { return __uint_as_float(p << 16); }
DEV float bf2f_hi(uint32_t p) { return __uint_as_float(p & 0xffff0000u); }
DEV float h2f(uint16_t h) {
#ifdef OH_EMU
    return emu::f16_to_f(h);
#else
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#endif
}
DEV float h2f_lo(uint32_t p) { return h2f((uint16_t)(p & 0xffffu)); }
DEV float h2f_hi(uint32_t p) { return h2f((uint16_t)(p >> 16)); }

/* Round two floats (nearest even) and pack them, `lo` in the low half. */
DEV uint32_t pack_bf16(float lo, float hi) {
#ifdef OH_EMU
    return emu_f32_to_bf16(lo) | (emu_f32_to_bf16(hi) << 16);
#else
    uint32_t r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}
DEV uint32_t pack_f16(float lo, float hi) {
#ifdef OH_EMU
    return emu_f32_to_f16(lo) | (emu_f32_to_f16(hi) << 16);
#else
    uint32_t r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
#endif
}
DEV uint16_t to_bf16(float x) { return (uint16_t)(pack_bf16(x, 0.f) & 0xffffu); }

/* element (r, c) of a 128-byte-swizzled [rows][64] 16-bit tile (1024-byte aligned) */
DEV int sw64(int r, int c) { return r * 64 + ((((c >> 3) ^ r) & 7) << 3) + (c & 7); }
DEV void st32(uint16_t *p, uint32_t v) { *reinterpret_cast<uint32_t *>(p) = v; }
DEV uint32_t ld32(const uint16_t *p) { return *reinterpret_cast<const uint32_t *>(p); }

/* Exponent e that brings max |x| = m into [2^14, 2^15) as m 2^e, clamped to [-40, 40]
 * (m = 0 gives 40; NaN or Inf give -40 and stay NaN or Inf). */
DEV int scale_exp(float m) {
    const int E = (int)((__float_as_uint(m) >> 23) & 255u) - 127, e = 14 - E;
    return e < -40 ? -40 : (e > 40 ? 40 : e);
}
/* 2^e for |e| <= 126 (clamped). */
DEV float exp2i(int e) {
    e = e < -126 ? -126 : (e > 126 ? 126 : e);
    return __uint_as_float((uint32_t)(e + 127) << 23);
}

/* ldmatrix: four (or two) 8x8 b16 matrices; each lane hands the address of one row. */
DEV void ldsm4(uint32_t (&r)[4], const uint16_t *p) {
#ifdef OH_EMU
    emu_ldmatrix(r, p, 4, false, OH_EMU_WHERE);
#else
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
#endif
}
DEV void ldsm4t(uint32_t (&r)[4], const uint16_t *p) {
#ifdef OH_EMU
    emu_ldmatrix(r, p, 4, true, OH_EMU_WHERE);
#else
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
#endif
}
DEV void ldsm2t(uint32_t (&r)[2], const uint16_t *p) {
#ifdef OH_EMU
    emu_ldmatrix(r, p, 2, true, OH_EMU_WHERE);
#else
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];"
                 : "=r"(r[0]), "=r"(r[1])
                 : "r"(a)
                 : "memory");
#endif
}

/* d += a * b, m16n8k16, fp32 accumulation. */
DEV void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef OH_EMU
    const uint32_t b[2] = {b0, b1};
    emu_mma(d, a, b, true, OH_EMU_WHERE);
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}
DEV void mma_f16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef OH_EMU
    const uint32_t b[2] = {b0, b1};
    emu_mma(d, a, b, false, OH_EMU_WHERE);
#else
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

/* Row address this lane hands to ldmatrix for a 16x16 A tile at (m0, k0)
 * (registers a0..a3 of mma.m16n8k16):
 *   a_mk: A[m][k] = base[m * ld + k]  (ldsm4);   a_km: A[m][k] = base[k * ld + m]  (ldsm4t). */
DEV const uint16_t *a_mk(const uint16_t *base, int ld, int m0, int k0, int lane) {
    return base + (m0 + (lane & 15)) * ld + k0 + ((lane >> 4) << 3);
}
DEV const uint16_t *a_km(const uint16_t *base, int ld, int m0, int k0, int lane) {
    return base + (k0 + (lane & 7) + ((lane >> 4) << 3)) * ld + m0 + (((lane >> 3) & 1) << 3);
}
/* B operand for two n-tiles (n0, n0 + 8) of 16 k: r0, r1 = b0, b1 of tile n0; r2, r3 of tile n0 + 8.
 *   b_nk: B[k][n] = base[n * ld + k]  (ldsm4);   b_kn: B[k][n] = base[k * ld + n]  (ldsm4t). */
DEV const uint16_t *b_nk(const uint16_t *base, int ld, int n0, int k0, int lane) {
    return base + (n0 + (lane & 7) + ((lane >> 4) << 3)) * ld + k0 + (((lane >> 3) & 1) << 3);
}
DEV const uint16_t *b_kn(const uint16_t *base, int ld, int n0, int k0, int lane) {
    return base + (k0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * ld + n0 + ((lane >> 4) << 3);
}
/* B operand for one n-tile of 16 k (ldsm2t; lanes 0-15 give the rows), B[k][n] = base[k * ld + n]. */
DEV const uint16_t *b_kn1(const uint16_t *base, int ld, int n0, int k0, int lane) {
    return base + (k0 + (lane & 7) + (((lane >> 3) & 1) << 3)) * ld + n0;
}
/* B fragments of the 8 or 16 columns [n0, n0 + 8 NTW) of a k-major tile (KN). */
template <int NTW> DEV void ld_b_kn(uint32_t (&b)[4], const uint16_t *base, int ld, int n0, int k0, int lane) {
    if (NTW == 2) {
        ldsm4t(b, b_kn(base, ld, n0, k0, lane));
    } else {
        uint32_t b2[2];
        ldsm2t(b2, b_kn1(base, ld, n0, k0, lane));
        b[0] = b2[0];
        b[1] = b2[1];
        b[2] = b[3] = 0u;
    }
}

/* The accumulators of n-tiles 2s, 2s+1 (a 16x16 block) as the A fragment of a
 * following product: the m16n8 C layout is the A layout (times x, to fp16). */
DEV void acc_to_a_f16(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4], float x0, float x1) {
    a[0] = pack_f16(c0[0] * x0, c0[1] * x0);
    a[1] = pack_f16(c0[2] * x1, c0[3] * x1);
    a[2] = pack_f16(c1[0] * x0, c1[1] * x0);
    a[3] = pack_f16(c1[2] * x1, c1[3] * x1);
}

DEV void cp_async16(void *smem, const void *gmem, bool valid) {
#ifdef OH_EMU
    emu::cp_async16(smem, gmem, valid, OH_EMU_WHERE);
#else
    const uint32_t s = (uint32_t)__cvta_generic_to_shared(smem);
    const int n = valid ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(s), "l"(gmem), "r"(n) : "memory");
#endif
}
DEV void cp_async_commit() {
#ifdef OH_EMU
    emu::cp_async_commit();
#else
    asm volatile("cp.async.commit_group;" ::: "memory");
#endif
}
template <int N> DEV void cp_async_wait() {
#ifdef OH_EMU
    emu::cp_async_wait(N);
#else
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
#endif
}

/* OH_GDN_TMA (default 1; H100, bench/runs/2026-12-06-tma): the wgmma state kernels load each stage
 * (Wu, Kn, Qn, P as 128-byte-swizzled [64][64] tiles, Uv or dO likewise, G) with
 * bulk tensor copies issued by one thread and completing on an mbarrier,
 * instead of 16-30 cp.async a thread.  The tensor maps are made on the host
 * (make_ctx) and travel in Ctx (the kernels take it as __grid_constant__). */
#ifndef OH_GDN_TMA
#define OH_GDN_TMA 1
#endif
#ifdef OH_EMU
typedef emu::TensorMap2D TmaMap;
#else
typedef CUtensorMap TmaMap;
#endif
/* OH_GDN_TMA_ST (default 1, with OH_GDN_TMA; measured with it): the H, U (dH, dU) tiles
 * leave through a warp's staging area in shared memory (stmatrix) and one bulk
 * tensor store each, instead of movmatrix and 4-byte stores.  A step's flags
 * then report the chunk two steps back (the stores of the last step may still
 * be in flight at the barrier). */
#ifndef OH_GDN_TMA_ST
#define OH_GDN_TMA_ST 1
#endif
#if OH_GDN_TMA_ST && !OH_GDN_TMA
#error "OH_GDN_TMA_ST needs OH_GDN_TMA"
#endif
enum { TM_WU, TM_KN, TM_QN, TM_P, TM_UV, TM_DO, TM_G, /* stores: */ TM_H, TM_DH, TM_U, TM_DU,
       /* k_chunk_bwd's slices (OH_GDN_CB_TMA): */ TM_CB_DO, TM_CB_U, TM_CB_DU, TM_CB_V, TM_CB_H, TM_CB_DH, TM_N };
DEV void mbar_init(uint64_t *b, int count) {
#ifdef OH_EMU
    emu::mbar_init(b, count, OH_EMU_WHERE);
#else
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"((uint32_t)__cvta_generic_to_shared(b)), "r"(count)
                 : "memory");
#endif
}
/* the initialised mbarriers visible to the copies (then a barrier before their use) */
DEV void fence_mbar_init() {
#ifndef OH_EMU
    asm volatile("fence.mbarrier_init.release.cluster;\n\tfence.proxy.async.shared::cta;" ::: "memory");
#endif
}
/* one arrival, announcing the bytes the phase's copies bring */
DEV void mbar_expect_tx(uint64_t *b, uint32_t bytes) {
#ifdef OH_EMU
    emu::mbar_expect_tx(b, bytes, OH_EMU_WHERE);
#else
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"((uint32_t)__cvta_generic_to_shared(b)),
                 "r"(bytes)
                 : "memory");
#endif
}
/* until the phase of this parity has completed (its copies have landed) */
DEV void mbar_wait(uint64_t *b, uint32_t parity) {
#ifdef OH_EMU
    emu::mbar_wait(b, parity, OH_EMU_WHERE);
#else
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(b);
    uint32_t done;
    do {
        asm volatile("{\n\t.reg .pred p;\n\tmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n\t"
                     "selp.u32 %0, 1, 0, p;\n\t}"
                     : "=r"(done)
                     : "r"(a), "r"(parity)
                     : "memory");
    } while (!done);
#endif
}
/* box (x, y) of tensor map m into dst (shared), completing on b */
DEV void tma_load_2d(void *dst, const TmaMap *m, int x, int y, uint64_t *b) {
#ifdef OH_EMU
    emu::tma_load_2d(dst, m, x, y, b, OH_EMU_WHERE);
#else
    asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];"
                 ::"r"((uint32_t)__cvta_generic_to_shared(dst)), "l"(m), "r"(x), "r"(y),
                 "r"((uint32_t)__cvta_generic_to_shared(b))
                 : "memory");
#endif
}
/* box (x, y, z) of a three-dimensional tensor map m into dst (shared), completing on b */
DEV void tma_load_3d(void *dst, const TmaMap *m, int x, int y, int z, uint64_t *b) {
#ifdef OH_EMU
    emu::tma_load_3d(dst, m, x, y, z, b, OH_EMU_WHERE);
#else
    asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];"
                 ::"r"((uint32_t)__cvta_generic_to_shared(dst)), "l"(m), "r"(x), "r"(y), "r"(z),
                 "r"((uint32_t)__cvta_generic_to_shared(b))
                 : "memory");
#endif
}
/* box (x, y) of tensor map m from src (shared): one bulk async-group per commit */
DEV void tma_store_2d(const TmaMap *m, int x, int y, const void *src) {
#ifdef OH_EMU
    emu::tma_store_2d(m, x, y, src, OH_EMU_WHERE);
#else
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"(m), "r"(x), "r"(y),
                 "r"((uint32_t)__cvta_generic_to_shared(src))
                 : "memory");
#endif
}
DEV void bulk_commit() {
#ifdef OH_EMU
    emu::bulk_commit();
#else
    asm volatile("cp.async.bulk.commit_group;" ::: "memory");
#endif
}
/* all but the N most recent bulk groups have read their shared memory */
template <int N> DEV void bulk_wait_read() {
#ifdef OH_EMU
    emu::bulk_wait(N);
#else
    asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
#endif
}
/* all but the N most recent bulk groups are complete (their writes performed) */
template <int N> DEV void bulk_wait() {
#ifdef OH_EMU
    emu::bulk_wait(N);
#else
    asm volatile("cp.async.bulk.wait_group %0;" ::"n"(N) : "memory");
#endif
}
/* global data written through the generic proxy (another kernel's, or this block's, before a flag or barrier) visible to the copies */
DEV void fence_proxy_async_global() {
#ifndef OH_EMU
    asm volatile("fence.proxy.async.global;" ::: "memory");
#endif
}

/* Flags between kernels that overlap (see "Overlap" at the launchers).  A
 * producer block stores its results, passes a barrier (so that every thread's
 * stores precede thread 0's fence), and thread 0 fences and adds 1 to the
 * flag.  A consumer polls the flag with L1-bypassing loads and reads the data
 * after it only through L2 (cp.async.cg, __ldcg): the data reached L2 before
 * the flag did.  In the stream order of a launch without overlap the flags
 * are all set before anyone polls them. */
DEV void flag_signal(int *f) {
#ifdef OH_EMU
    (*f)++;
#else
    __threadfence();
    atomicAdd(f, 1);
#endif
}
DEV int flag_peek(const int *f) {
#ifdef OH_EMU
    return *f;
#else
    return *(const volatile int *)f;
#endif
}
DEV void flag_wait(const int *f, int want) {
#ifdef OH_EMU
    if (*f < want) { /* the emulator runs the kernels one after another: waiting would never end */
        fprintf(stderr, "gdn emulator: flag %p is %d, %d wanted: producer not run first\n", (const void *)f, *f, want);
        abort();
    }
#else
    while (flag_peek(f) < want) __nanosleep(64);
    __threadfence(); /* with the producer's fence before its add: its stores are seen after this */
#endif
}
/* Lets the kernel launched after this one with programmatic stream
 * serialization start now (Hopper); without one it does nothing. */
DEV void allow_dependents() {
#if !defined(OH_EMU) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
template <typename T> DEV T ld_l2(const T *p) {
#ifdef OH_EMU
    return *p;
#else
    return __ldcg(p);
#endif
}

/* e^x with flush-to-zero (ex2.approx.ftz: two instructions, where __expf also
 * handles subnormal results; results below 2^-126 become 0).  For the state
 * kernels' per-step decays. */
DEV float fexp(float x) {
#ifdef OH_EMU
    const float r = expf(x);
    return r < 1.17549435e-38f ? 0.f : r;
#else
    float r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x * 1.4426950408889634f));
    return r;
#endif
}

DEV float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
DEV float warp_max(float v) {
#pragma unroll
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
/* Over the 4 lanes of a quad (lanes sharing lane >> 2: one accumulator row). */
DEV float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    v += __shfl_xor_sync(0xffffffffu, v, 2);
    return v;
}
DEV float quad_max(float v) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
    return v;
}
/* Over the 8 lanes sharing lane & 3 (one accumulator column pair). */
DEV float col_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 4);
    v += __shfl_xor_sync(0xffffffffu, v, 8);
    v += __shfl_xor_sync(0xffffffffu, v, 16);
    return v;
}

DEV int imin(int a, int b) { return a < b ? a : b; }

/* --------------------------------------------------------- shared context */

/* Everything a kernel may need, passed by value. */
struct Ctx {
    /* inputs */
    const uint16_t *q, *k, *v, *dout;
    const float *g, *beta, *s0, *ds_final;
    /* outputs */
    uint16_t *out, *dq, *dk, *dv;
    float *s_final, *dg, *dbeta, *ds0;
    /* workspace (nc = ncmax chunks, nvb = ceil(V / 64) column blocks) */
    int *tab;         /* [0] = chunks; chunk c at 4 + 4c: t0, len, doc, index; doc n at 4 + 4 ncmax + 2n: first, count */
    float *G;         /* [nc, Hv, 64] within-chunk cumsum of g */
    uint16_t *Wu, *Kn; /* [nc, Hv, 64, K] fp16: decay-free W, normalised k */
    uint16_t *Qn;      /* [nc, Hv, 64, K] fp16: normalised, scaled q */
    uint16_t *P, *Tm; /* [nc, Hv, 64, 64] fp16 */
    uint16_t *Uv;     /* [nc, Hv, 64, V] fp16 x 2^eUv; holds dU (x 2^edU) in the backward */
    uint16_t *H, *dH; /* [nc, Hv, K, V] fp16 x 2^eH: state entering / gradient leaving each chunk */
    uint16_t *U;      /* [nc, Hv, 64, V] fp16 x 2^eU */
    uint16_t *dOh;    /* [nc, Hv, 64, V] fp16 x 2^edO */
    int *eUv, *eH, *eU, *edH, *edO; /* [nc, Hv, nvb] exponents; eUv holds edU in the backward */
    float *dqs, *dks; /* [T, Hv, K] when the l2norm backward is not fused */
    /* [nc, Hv] flags (zeroed before each pass): k_prep done, k_state_fwd column blocks
     * done, k_dout_prep done, k_state_bwd column blocks done */
    int *flP, *flS, *flD, *flB;
    int *ctr;  /* k_prep's claim counter (zeroed with flP, flS) */
    int kid;   /* the launch's slot in the OH_GDN_TRACE timeline, -1 off */
    int prep_fma; /* k_prep's off-diagonal solve on the CUDA cores (OH_GDN_PREP_SOLVE=fma, sandbox) */
    int self_prep; /* k_state_bwd's signaller warp prepares dO (K <= 128; OH_GDN_DPREP, see state_preps_dout) */
    int T, Hk, Hv, K, V, ndocs, ncmax, nkb, nvb;
    float scale;
    TmaMap tm[TM_N]; /* OH_GDN_TMA: the wgmma state kernels' tensor maps (tma_maps) */
};

/* OH_GDN_TRACE (sandbox): per launch slot, the first block start and the
 * last block end (globaltimer ns), and a count (items a claiming k_prep did). */
enum { TRACE_SLOTS = 8 };
#ifndef OH_EMU
static __device__ unsigned long long gdn_trace_buf[3 * TRACE_SLOTS];
#endif
DEV void trace_mark(const Ctx &c, bool end) {
#ifndef OH_EMU
    if (c.kid < 0 || threadIdx.x != 0) return;
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    if (end)
        atomicMax(&gdn_trace_buf[2 * c.kid + 1], t);
    else
        atomicMin(&gdn_trace_buf[2 * c.kid], t);
#else
    (void)c;
    (void)end;
#endif
}
/* -DOH_GDN_PHASES (sandbox build): k_chunk_bwd sums, per phase, the block's
 * globaltimer time (ns, as seen by thread 0) into gdn_phase_buf, printed at
 * exit by the OH_GDN_TRACE report: flag wait (with the chunk table and the
 * prologue's copies issued), slice 0 issued, V loop, then the combine step's
 * parts (the per-row and per-column terms, dPg and Z to fp16, the dq / dk
 * products, dG and the stores). */
enum { PHASES = 7 };
/* The same build times the wgmma state kernels' steps (kind 0 forward, 1
 * backward) in SPH - 1 parts (SM clock cycles, thread 0), the last slot
 * counting steps: the stage wait and barrier, issuing the first products
 * with the next stage's copies, the H / dH stores, waiting for them, the
 * elementwise work up to the state product's issue, the U / dU stores,
 * waiting for the state product and its maxima. */
enum { SPH = 8 };
#if defined(OH_GDN_PHASES) && !defined(OH_EMU)
static __device__ unsigned long long gdn_phase_buf[PHASES + 1 + 2 * SPH];
DEV unsigned long long phase_now() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#define PHASE_MARK(k)                                                                                         \
    do {                                                                                                      \
        const unsigned long long t_ = phase_now();                                                            \
        if (threadIdx.x == 0) {                                                                               \
            if ((k) > 0) atomicAdd(&gdn_phase_buf[(k) - 1], t_ - ph_t);                                       \
            else atomicAdd(&gdn_phase_buf[PHASES], 1ull);                                                    \
        }                                                                                                     \
        ph_t = t_;                                                                                            \
    } while (0)
#define PHASE_DECL unsigned long long ph_t = 0
#define SPHASE_MARK(kind, k)                                                                                  \
    do {                                                                                                      \
        const unsigned long long t_ = clock64();                                                              \
        if (threadIdx.x == 0) {                                                                               \
            if ((k) > 0) atomicAdd(&gdn_phase_buf[PHASES + 1 + (kind) * SPH + (k) - 1], t_ - sph_t);         \
            else atomicAdd(&gdn_phase_buf[PHASES + 1 + (kind) * SPH + SPH - 1], 1ull);                       \
        }                                                                                                     \
        sph_t = t_;                                                                                           \
    } while (0)
#define SPHASE_DECL unsigned long long sph_t = 0
#else
#define PHASE_MARK(k) ((void)0)
#define PHASE_DECL
#define SPHASE_MARK(kind, k) ((void)0)
#define SPHASE_DECL
#endif
DEV void trace_count(const Ctx &c) {
#ifndef OH_EMU
    if (c.kid >= 0 && threadIdx.x == 0) atomicAdd(&gdn_trace_buf[2 * TRACE_SLOTS + c.kid], 1ull);
#else
    (void)c;
#endif
}


struct Chunk {
    int t0, len, doc;
};
DEV Chunk chunk_at(const Ctx &c, int ci) {
    const int *e = c.tab + 4 + 4 * ci;
    Chunk r;
    r.t0 = e[0];
    r.len = e[1];
    r.doc = e[2];
    return r;
}

/* Sequential 16-byte aligned regions of the dynamic shared memory. */
struct Carve {
    unsigned char *p;
    template <typename T> __device__ __forceinline__ T *take(size_t n) {
        T *r = reinterpret_cast<T *>(p);
        p += (n * sizeof(T) + 15) & ~(size_t)15;
        return r;
    }
};
static size_t carve16(size_t bytes) { return (bytes + 15) & ~(size_t)15; }

#ifndef OH_EMU
extern __shared__ __align__(16) unsigned char gdn_smem[];
#define GDN_SMEM() gdn_smem
#else
#define GDN_SMEM() emu::st().smem
#endif

/* ------------------------------------------------------------ chunk table */

static __global__ void k_chunk_table(Ctx c, const int32_t *cu) {
    int *tab = c.tab, *doct = c.tab + 4 + 4 * c.ncmax;
    if (threadIdx.x == 0) {
        int acc = 0;
        for (int n = 0; n < c.ndocs; n++) {
            int a = cu[n], b = cu[n + 1];
            a = a < 0 ? 0 : (a > c.T ? c.T : a);
            b = b < a ? a : (b > c.T ? c.T : b);
            int cnt = (b - a + BT - 1) / BT;
            if (acc + cnt > c.ncmax) cnt = c.ncmax - acc; /* only on invalid cu_seqlens */
            doct[2 * n] = acc;
            doct[2 * n + 1] = cnt;
            acc += cnt;
        }
        tab[0] = acc;
    }
    for (int i = threadIdx.x; i < c.ncmax; i += blockDim.x) {
        int *e = tab + 4 + 4 * i;
        e[0] = e[1] = e[2] = e[3] = 0;
    }
    __syncthreads();
    for (int n = threadIdx.x; n < c.ndocs; n += blockDim.x) {
        int a = cu[n], b = cu[n + 1];
        a = a < 0 ? 0 : (a > c.T ? c.T : a);
        b = b < a ? a : (b > c.T ? c.T : b);
        const int first = doct[2 * n], cnt = doct[2 * n + 1];
        for (int j = 0; j < cnt; j++) {
            int *e = tab + 4 + 4 * (first + j);
            e[0] = a + BT * j;
            e[1] = imin(BT, b - a - BT * j);
            e[2] = n;
            e[3] = j;
        }
    }
}

/* ------------------------------------------------------------------ k_prep */

/* Shared memory (about 44 KB at K = 96, V = 192, so that 4 blocks share an SM:
 * this kernel is latency-bound and needs the warps):
 *   Gs, Bs [64] fp32, red [16];
 *   TA [64][65] fp32: Tu on and below the diagonal, Au transposed strictly above it
 *       (Au[i][j], j < i, at TA[j][i]): both are triangular, so they share one array;
 *   R: Qs, Ks [64][K + 8] (raw bf16, then Qn, Kn fp16), Ys (solve scratch) over Qs
 *       once Qs is done; after Wu, Vs [64][V + 8] over all of R.
 * The A operands of Wu = Tu diag(beta) Kn and Uv = T diag(beta) V are built in
 * registers from TA (no fp16 / bf16 copies of T in shared memory). */
enum { PREP_YS = 3 * 16 * 17 }; /* fp32 solve scratch, over Qs */
static __host__ __device__ __forceinline__ int prep_qs_elems(int K) {
    return 64 * (K + 8) > 2 * PREP_YS ? 64 * (K + 8) : 2 * PREP_YS; /* 16-bit elements */
}
static size_t prep_smem(int K, int V) {
    const size_t qk = carve16((size_t)prep_qs_elems(K) * 2) + carve16((size_t)64 * (K + 8) * 2),
                 v = carve16((size_t)64 * (V + 8) * 2);
    return carve16(64 * 4) * 2 + carve16(16 * 4) + carve16(64 * 65 * 4) + (qk > v ? qk : v);
}

/* The 8 values of an m16n8k16 A fragment (rows r0 = 16 m + g4 and r0 + 8,
 * columns 16 kt + 2 t4 + {0, 1, 8, 9}; x[q] is register q's pair) of
 * X[r][j] = j <= r ? f(Tu[r][j], r, j) : 0, Tu read from TA's lower triangle. */
template <typename F> DEV void tu_frag_values(float (&x)[4][2], const float *TA, int r0, int c0, F f) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int r = r0 + 8 * (q & 1), j = c0 + 8 * (q >> 1);
#pragma unroll
        for (int e = 0; e < 2; e++) x[q][e] = j + e <= r ? f(TA[r * 65 + j + e], r, j + e) : 0.f;
    }
}

/* Two fp32 values as fp16 hi + lo pairs (hi + lo carries ~21 bits). */
DEV void split_f16(float x0, float x1, uint32_t &hi, uint32_t &lo) {
    hi = pack_f16(x0, x1);
    lo = pack_f16(x0 - h2f_lo(hi), x1 - h2f_hi(hi));
}
/* acc (16 x 16, two n-tiles) += A B for 16 x 16 blocks given elementwise in fp32
 * (a(r, k), b(k, n)), with three fp16 products (hi hi, hi lo, lo hi) per n-tile. */
template <typename FA, typename FB> DEV void mma3_block(float (&acc)[2][4], FA a, FB b, int lane) {
    const int g4 = lane >> 2, t4 = lane & 3;
    uint32_t ah[4], al[4];
#pragma unroll
    for (int q = 0; q < 4; q++) {
        const int r = g4 + 8 * (q & 1), k = 2 * t4 + 8 * (q >> 1);
        split_f16(a(r, k), a(r, k + 1), ah[q], al[q]);
    }
#pragma unroll
    for (int nt = 0; nt < 2; nt++) {
        uint32_t bh[2], bl[2];
#pragma unroll
        for (int q = 0; q < 2; q++) {
            const int k = 2 * t4 + 8 * q, n = 8 * nt + g4;
            split_f16(b(k, n), b(k + 1, n), bh[q], bl[q]);
        }
        mma_f16(acc[nt], ah, bh[0], bh[1]);
        mma_f16(acc[nt], ah, bl[0], bl[1]);
        mma_f16(acc[nt], al, bh[0], bh[1]);
    }
}
/* One off-diagonal block of Tu = (I + Au)^-1 (TA: Tu on and below the diagonal,
 * Au^T above it), by one warp:  T_ib,jb = -T_ib,ib sum_{mb=jb}^{ib-1} A_ib,mb T_mb,jb,
 * with the T_mb,jb (mb > jb) of earlier levels already in TA.  Yw: 16 x 17 fp32 scratch. */
DEV void solve_block(float *TA, float *Yw, int ib, int jb, int lane) {
    const int g4 = lane >> 2, t4 = lane & 3;
    float acc[2][4] = {};
    for (int mb = jb; mb < ib; mb++) {
        mma3_block(
            acc, [&](int r, int k) { return TA[(16 * mb + k) * 65 + 16 * ib + r]; }, /* Au[16ib + r][16mb + k] */
            [&](int k, int n) { return mb > jb || n <= k ? TA[(16 * mb + k) * 65 + 16 * jb + n] : 0.f; }, lane);
    }
#pragma unroll
    for (int nt = 0; nt < 2; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) Yw[(g4 + 8 * (e >> 1)) * 17 + 8 * nt + 2 * t4 + (e & 1)] = acc[nt][e];
    __syncwarp();
    float t[2][4] = {};
    mma3_block(
        t, [&](int r, int k) { return k <= r ? TA[(16 * ib + r) * 65 + 16 * ib + k] : 0.f; },
        [&](int k, int n) { return Yw[k * 17 + n]; }, lane);
#pragma unroll
    for (int nt = 0; nt < 2; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
            TA[(16 * ib + g4 + 8 * (e >> 1)) * 65 + 16 * jb + 8 * nt + 2 * t4 + (e & 1)] = -t[nt][e];
}

/* One (chunk, value head) of k_prep. */
DEV void prep_item(const Ctx &c, int ci, int h) {
    if (ci >= c.tab[0]) return;
    const Chunk ch = chunk_at(c, ci);
    const int K = c.K, V = c.V, Hv = c.Hv, hk = h / (Hv / c.Hk);
    const int LDK = K + 8, LDV = V + 8;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g4 = lane >> 2, t4 = lane & 3;
    const size_t chh = (size_t)ci * Hv + h;

    Carve cv{GDN_SMEM()};
    float *Gs = cv.take<float>(64);
    float *Bs = cv.take<float>(64);
    float *red = cv.take<float>(16);
    float *TA = cv.take<float>(64 * 65);         /* Tu (lower, with the diagonal), Au^T (strictly upper) */
    Carve c1{cv.p}, c2{cv.p};                    /* region R, before and after Wu */
    uint16_t *Qs = c1.take<uint16_t>(prep_qs_elems(K)); /* raw bf16, then Qn fp16; Ys after step 3 */
    uint16_t *Ks = c1.take<uint16_t>(64 * LDK);          /* raw bf16, then Kn fp16 */
    float *Ys = reinterpret_cast<float *>(Qs);           /* PREP_YS fp32 */
    uint16_t *Vs = c2.take<uint16_t>(64 * LDV); /* bf16, loaded after Wu */

    /* 1. raw q, k rows (rows past the chunk are zero) */
    {
        const int k8 = K / 8;
        for (int i = tid; i < 64 * k8; i += 128) {
            const int r = i / k8, c8 = i % k8;
            const bool ok = r < ch.len;
            const size_t off = ((size_t)(ch.t0 + r) * c.Hk + hk) * K + c8 * 8;
            cp_async16(Qs + r * LDK + c8 * 8, ok ? c.q + off : c.q, ok);
            cp_async16(Ks + r * LDK + c8 * 8, ok ? c.k + off : c.k, ok);
        }
        cp_async_commit();
        if (tid < 64) {
            const bool ok = tid < ch.len;
            const size_t off = (size_t)(ch.t0 + tid) * Hv + h;
            Gs[tid] = ok ? c.g[off] : 0.f;
            Bs[tid] = ok ? c.beta[off] : 0.f;
        }
        cp_async_wait<0>();
        __syncthreads();
    }
    /* 2. cumsum of g (warp 0); normalise q, k (fp16 in place), store Qn, Kn */
    if (w == 0) {
        const float a = Gs[2 * lane], b = Gs[2 * lane + 1];
        float s = a + b;
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const float t = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o) s += t;
        }
        Gs[2 * lane] = s - b;
        Gs[2 * lane + 1] = s;
        c.G[chh * 64 + 2 * lane] = s - b;
        c.G[chh * 64 + 2 * lane + 1] = s;
    }
    {
        /* a thread per row of q (threads 0-63) or k (64-127): sum of squares, then the
         * fp16 row in place; then the chunk's Qn and Kn to global in 16-byte pieces */
        const int r = tid & 63;
        uint16_t *row = (tid < 64 ? Qs : Ks) + r * LDK;
        float sq = 0.f;
        for (int d = 0; d < K; d += 8) {
            const uint4 x = *reinterpret_cast<const uint4 *>(row + d);
            const uint32_t xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float lo = bf2f_lo(xs[e]), hi = bf2f_hi(xs[e]);
                sq += lo * lo + hi * hi;
            }
        }
        const float rn = rsqrtf(sq + 1e-6f) * (tid < 64 ? c.scale : 1.f);
        for (int d = 0; d < K; d += 8) {
            uint4 x = *reinterpret_cast<const uint4 *>(row + d);
            x.x = pack_f16(bf2f_lo(x.x) * rn, bf2f_hi(x.x) * rn);
            x.y = pack_f16(bf2f_lo(x.y) * rn, bf2f_hi(x.y) * rn);
            x.z = pack_f16(bf2f_lo(x.z) * rn, bf2f_hi(x.z) * rn);
            x.w = pack_f16(bf2f_lo(x.w) * rn, bf2f_hi(x.w) * rn);
            *reinterpret_cast<uint4 *>(row + d) = x;
        }
        __syncthreads();
        const int k8 = K / 8;
        for (int i = tid; i < 64 * k8; i += 128) {
            const int rr = i / k8, c8 = i % k8;
            const size_t off = (chh * 64 + rr) * K + c8 * 8;
            *reinterpret_cast<uint4 *>(c.Qn + off) = *reinterpret_cast<const uint4 *>(Qs + rr * LDK + c8 * 8);
            *reinterpret_cast<uint4 *>(c.Kn + off) = *reinterpret_cast<const uint4 *>(Ks + rr * LDK + c8 * 8);
        }
    }
    /* 3. Kn Kn^T and Qn Kn^T, rows 16w..16w+15 (causal: column tiles <= w) */
    {
        float kk[8][4], qk[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) kk[n][e] = qk[n][e] = 0.f;
        for (int kt = 0; kt < K / 16; kt++) {
            uint32_t ak[4], aq[4];
            ldsm4(ak, a_mk(Ks, LDK, 16 * w, 16 * kt, lane));
            ldsm4(aq, a_mk(Qs, LDK, 16 * w, 16 * kt, lane));
#pragma unroll
            for (int np = 0; np < 4; np++) {
                if (np <= w) {
                    uint32_t b[4];
                    ldsm4(b, b_nk(Ks, LDK, 16 * np, 16 * kt, lane));
                    mma_f16(kk[2 * np], ak, b[0], b[1]);
                    mma_f16(kk[2 * np + 1], ak, b[2], b[3]);
                    mma_f16(qk[2 * np], aq, b[0], b[1]);
                    mma_f16(qk[2 * np + 1], aq, b[2], b[3]);
                }
            }
        }
        uint16_t *P = c.P + chh * 64 * 64;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int i = 16 * w + g4 + 8 * hf, j = 8 * n + 2 * t4;
                const float gi = Gs[i], bi = Bs[i];
                float p[2];
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int jj = j + e;
                    const float gm = jj <= i ? __expf(gi - Gs[jj]) : 0.f;
                    if (jj < i) TA[jj * 65 + i] = bi * kk[n][2 * hf + e]; /* Au^T */
                    p[e] = gm * qk[n][2 * hf + e];
                }
                st32(P + i * 64 + j, pack_f16(p[0], p[1]));
            }
    }
    __syncthreads(); /* Au is in; Qs is free (Ys) */
    /* 4. Tu = (I + Au)^-1, Au strictly lower: the 16x16 diagonal blocks by forward
     *    substitution, then T_ib,jb = -T_ib,ib sum_{mb=jb}^{ib-1} A_ib,mb T_mb,jb.
     *    Au[i][j] is read at TA[j][i]; Tu is written on and below the diagonal only. */
#define AU(i, j) TA[(j) * 65 + (i)]
    {
        /* The reads of Au and the writes of Tu touch different elements, but the
         * compiler reads Au rows with vector loads that span the diagonal: the
         * barrier keeps every read before any write (compute-sanitizer racecheck). */
        const int b = (tid >> 4) & 3, cc = tid & 15;
        float t[16];
        if (tid < 64) {
#pragma unroll
            for (int r = 0; r < 16; r++) {
                float acc = r == cc ? 1.f : 0.f;
#pragma unroll
                for (int m = 0; m < r; m++) acc -= AU(16 * b + r, 16 * b + m) * t[m];
                t[r] = acc;
            }
        }
        __syncthreads();
        if (tid < 64) {
#pragma unroll
            for (int r = 0; r < 16; r++)
                if (r >= cc) TA[(16 * b + r) * 65 + 16 * b + cc] = t[r];
        }
    }
    __syncthreads();
    if (!c.prep_fma) {
        /* the off-diagonal blocks on the tensor cores, by levels: T10, T21, T32 (warps
         * 1-3), then T20, T31 (warps 2, 3), then T30 (warp 3) */
        float *Yw = Ys + (w > 0 ? w - 1 : 0) * 16 * 17; /* warp scratch, 16 x 16 fp32 */
        for (int lv = 1; lv < 4; lv++) {
            if (w >= lv) solve_block(TA, Yw, w, w - lv, lane);
            __syncthreads();
        }
    } else
    for (int ib = 1; ib < 4; ib++) {
        for (int it = tid; it < ib * 256; it += 128) {
            const int jb = it >> 8, r = (it >> 4) & 15, cc = it & 15;
            float y = 0.f;
            for (int mb = jb; mb < ib; mb++)
#pragma unroll
                for (int m = 0; m < 16; m++)
                    if (mb > jb || m >= cc) /* Tu_mb,jb is lower triangular on the diagonal block */
                        y += AU(16 * ib + r, 16 * mb + m) * TA[(16 * mb + m) * 65 + 16 * jb + cc];
            Ys[(jb * 16 + r) * 17 + cc] = y;
        }
        __syncthreads();
        for (int it = tid; it < ib * 256; it += 128) {
            const int jb = it >> 8, r = (it >> 4) & 15, cc = it & 15;
            float y = 0.f;
            for (int m = 0; m <= r; m++) y += TA[(16 * ib + r) * 65 + 16 * ib + m] * Ys[(jb * 16 + m) * 17 + cc];
            TA[(16 * ib + r) * 65 + 16 * jb + cc] = -y;
        }
        __syncthreads();
    }
#undef AU
    /* 5. Wu = Tu diag(beta) Kn (fp16), rows 16w..16w+15 (Tu is lower: k-tiles <= w) */
    auto by_beta = [&](float t, int, int j) { return t * Bs[j]; };
    {
        for (int n0 = 0; n0 < K; n0 += 64) {
            float acc[8][4];
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[n][e] = 0.f;
#pragma unroll
            for (int kt = 0; kt < 4; kt++) {
                if (kt <= w) {
                    float x[4][2];
                    tu_frag_values(x, TA, 16 * w + g4, 16 * kt + 2 * t4, by_beta);
                    uint32_t a[4];
#pragma unroll
                    for (int q = 0; q < 4; q++) a[q] = pack_f16(x[q][0], x[q][1]);
#pragma unroll
                    for (int np = 0; np < 4; np++) {
                        if (n0 + 16 * np < K) {
                            uint32_t b[4];
                            ldsm4t(b, b_kn(Ks, LDK, n0 + 16 * np, 16 * kt, lane));
                            mma_f16(acc[2 * np], a, b[0], b[1]);
                            mma_f16(acc[2 * np + 1], a, b[2], b[3]);
                        }
                    }
                }
            }
            uint16_t *Wg = c.Wu + chh * 64 * K;
#pragma unroll
            for (int n = 0; n < 8; n++) {
                const int col = n0 + 8 * n + 2 * t4;
                if (col < K) {
                    st32(Wg + (16 * w + g4) * K + col, pack_f16(acc[n][0], acc[n][1]));
                    st32(Wg + (16 * w + g4 + 8) * K + col, pack_f16(acc[n][2], acc[n][3]));
                }
            }
        }
    }
    __syncthreads(); /* Ks is done: v rows over region R (rows past the chunk are zero) */
    {
        const int v8 = V / 8;
        for (int i = tid; i < 64 * v8; i += 128) {
            const int r = i / v8, c8 = i % v8;
            const bool ok = r < ch.len;
            const size_t off = ((size_t)(ch.t0 + r) * Hv + h) * V + c8 * 8;
            cp_async16(Vs + r * LDV + c8 * 8, ok ? c.v + off : c.v, ok);
        }
        cp_async_commit();
    }
    /* 6. T = Tu o Gam: in place over Tu (Wu is done), and stored (fp16), while v arrives */
    {
        uint16_t *Tg = c.Tm + chh * 64 * 64;
        for (int i = tid; i < 64 * 32; i += 128) {
            const int r = i >> 5, j = 2 * (i & 31);
            float t0 = 0.f, t1 = 0.f;
            if (j <= r) TA[r * 65 + j] = t0 = TA[r * 65 + j] * __expf(Gs[r] - Gs[j]);
            if (j + 1 <= r) TA[r * 65 + j + 1] = t1 = TA[r * 65 + j + 1] * __expf(Gs[r] - Gs[j + 1]);
            st32(Tg + r * 64 + j, pack_f16(t0, t1));
        }
    }
    __syncthreads();
    /* 7. Uv = T diag(beta) V (T diag(beta) split into bf16 hi + lo, exact V), stored as
     *    fp16 x 2^eUv per 64 columns; the A fragments are built while v arrives. */
    uint32_t ah[4][4], al[4][4];
#pragma unroll
    for (int kt = 0; kt < 4; kt++) {
        if (kt <= w) {
            float x[4][2];
            tu_frag_values(x, TA, 16 * w + g4, 16 * kt + 2 * t4, by_beta);
#pragma unroll
            for (int q = 0; q < 4; q++) {
                const uint32_t hi = pack_bf16(x[q][0], x[q][1]);
                ah[kt][q] = hi;
                al[kt][q] = pack_bf16(x[q][0] - bf2f_lo(hi), x[q][1] - bf2f_hi(hi));
            }
        }
    }
    cp_async_wait<0>();
    __syncthreads();
    for (int n0 = 0; n0 < V; n0 += 64) {
        float acc[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[n][e] = 0.f;
#pragma unroll
        for (int kt = 0; kt < 4; kt++) {
            if (kt <= w) {
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    if (n0 + 16 * np < V) {
                        uint32_t b[4];
                        ldsm4t(b, b_kn(Vs, LDV, n0 + 16 * np, 16 * kt, lane));
                        mma_bf16(acc[2 * np], ah[kt], b[0], b[1]);
                        mma_bf16(acc[2 * np + 1], ah[kt], b[2], b[3]);
                        mma_bf16(acc[2 * np], al[kt], b[0], b[1]);
                        mma_bf16(acc[2 * np + 1], al[kt], b[2], b[3]);
                    }
                }
            }
        }
        float m = 0.f;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) m = fmaxf(m, fabsf(acc[n][e]));
        m = warp_max(m);
        if (lane == 0) red[4 * (n0 >> 6) + w] = m;
        __syncthreads();
        const int e = scale_exp(fmaxf(fmaxf(red[4 * (n0 >> 6)], red[4 * (n0 >> 6) + 1]),
                                      fmaxf(red[4 * (n0 >> 6) + 2], red[4 * (n0 >> 6) + 3])));
        const float sc = exp2i(e);
        if (tid == 0) c.eUv[chh * c.nvb + (n0 >> 6)] = e;
        uint16_t *Ug = c.Uv + chh * 64 * V;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            const int col = n0 + 8 * n + 2 * t4;
            if (col < V) {
                st32(Ug + (16 * w + g4) * V + col, pack_f16(acc[n][0] * sc, acc[n][1] * sc));
                st32(Ug + (16 * w + g4 + 8) * V + col, pack_f16(acc[n][2] * sc, acc[n][3] * sc));
            }
        }
    }
    __syncthreads();
    if (tid == 0) flag_signal(c.flP + chh);
}

/* CLAIM false: a block per (chunk, value head).  CLAIM true: a persistent
 * grid whose blocks claim (chunk, head) items in chunk-major order (the order
 * k_state_fwd takes them) from the counter c.ctr until none are left; two
 * launches share the counter when overlapped (see "Overlap").  Two kernels:
 * the loop costs registers (spills at the 4-blocks-per-SM bound). */
template <bool CLAIM> static __global__ void __launch_bounds__(128, 4) k_prep(Ctx c) {
    allow_dependents();
    trace_mark(c, false);
    if (!CLAIM) {
        prep_item(c, blockIdx.x / c.Hv, blockIdx.x % c.Hv);
        trace_mark(c, true);
        return;
    }
    __shared__ int next;
    const int n = c.tab[0] * c.Hv;
    for (;;) {
        if (threadIdx.x == 0) next = atomicAdd(c.ctr, 1);
        __syncthreads();
        const int item = next;
        __syncthreads(); /* everyone has it before thread 0 claims the next */
        if (item >= n) break;
        prep_item(c, item / c.Hv, item % c.Hv);
        trace_count(c);
    }
    trace_mark(c, true);
}

/* ------------------------------------------------------------- k_state_fwd */

/* The state kernels' flags.  Their warps carry the recurrence and meet at NB
 * barriers per step (the last one before the step's U / dU stores); the
 * chunk of step it is ci0 + dir * it.  Before each step's last barrier the
 * signaller reports the chunk LAG steps back done (LAG = 1: the previous
 * step's; 2 with the wgmma kernels' bulk stores, OH_GDN_TMA_ST, whose last
 * step may still be in flight) and waits for the producer's flag of the chunk
 * two steps ahead, which the others start loading after the next step's first
 * barrier.  After the loop all warps meet once more (the final state and
 * every store are done by then) and the chunks not yet reported are.  With
 * K <= 128 the signaller is an extra warp, so that its fence waits off the
 * recurrence's critical path; with K > 128 (8 warps, registers short) it is
 * thread 0. */
struct StateSig {
    const int *need;
    int *done;
    int ci0, dir, cnt, Hv, h;
};
DEV void sig_pre(const StateSig &g) {
    if (g.cnt > 1) flag_wait(g.need + (size_t)(g.ci0 + g.dir) * g.Hv + g.h, 1);
}
/* LAG: the step's barrier follows the stores of the chunk LAG steps back (1;
 * 2 where the last step's bulk stores may still be in flight, OH_GDN_TMA_ST) */
template <int LAG = 1> DEV void sig_step(const StateSig &g, int it) {
    if (it >= LAG) flag_signal(g.done + (size_t)(g.ci0 + g.dir * (it - LAG)) * g.Hv + g.h);
    if (it + 2 < g.cnt) flag_wait(g.need + (size_t)(g.ci0 + g.dir * (it + 2)) * g.Hv + g.h, 1);
}
/* after the last barrier: the chunks not reported yet */
template <int LAG = 1> DEV void sig_post(const StateSig &g) {
    for (int j = g.cnt - LAG < 0 ? 0 : g.cnt - LAG; j < g.cnt; j++)
        flag_signal(g.done + (size_t)(g.ci0 + g.dir * j) * g.Hv + g.h);
}
/* The state kernels' block barriers are met by the signaller at another
 * instruction than the other warps: barrier.sync without .aligned (what
 * __syncthreads compiles to requires every thread at the same one). */
#ifdef OH_EMU
#define BAR_ANY() emu::collective_bar_any(OH_EMU_WHERE) /* pairs with the other warps' BAR_STEP */
#define BAR_STEP() __syncthreads()
#else
#define BAR_ANY() asm volatile("barrier.sync 0;" ::: "memory")
#define BAR_STEP() asm volatile("barrier.sync 0;" ::: "memory")
#endif
/* NB barriers a step, the signaller's work before the last; NB = 1 (the wgmma
 * state kernels): one barrier, which opens the step, the work after it (chunk
 * it - LAG's stores are complete before it; chunk it + 2 is loaded after the
 * next one). */
struct NoIssue {
    __device__ __forceinline__ void operator()(int) const {}
};
/* issue(it) (lane 0, right after step it's barrier, NB = 1): the next chunk's
 * stage copies (OH_GDN_TMA), from the thread that waited for its flag. */
template <int NB, int LAG = 1, typename F = NoIssue> DEV void state_signaller(const StateSig &g, const F &issue = F()) {
    const int lane = threadIdx.x & 31;
    if (lane == 0) sig_pre(g);
    __syncwarp();
    for (int it = 0; it < g.cnt; it++) {
#pragma unroll
        for (int b = 0; b < (NB == 1 ? 1 : NB - 1); b++) BAR_ANY();
        if (lane == 0) {
            issue(it);
            sig_step<LAG>(g, it);
        }
        __syncwarp();
        if (NB > 1) BAR_ANY();
    }
    BAR_ANY();
    if (lane == 0) sig_post<LAG>(g);
}

/* 8 bf16 values (x) times s as 8 fp16 values */
DEV uint4 bf16x8_to_f16(const uint4 x, float s) {
    uint4 y;
    y.x = pack_f16(bf2f_lo(x.x) * s, bf2f_hi(x.x) * s);
    y.y = pack_f16(bf2f_lo(x.y) * s, bf2f_hi(x.y) * s);
    y.z = pack_f16(bf2f_lo(x.z) * s, bf2f_hi(x.z) * s);
    y.w = pack_f16(bf2f_lo(x.w) * s, bf2f_hi(x.w) * s);
    return y;
}

/* dO of chunk ci, head h, columns [64 vb, 64 vb + 64) as fp16 x 2^edO (what
 * k_dout_prep does for a whole row of column blocks), by one warp in two
 * parts: dprep_load copies the 64 x 64 bf16 values into buf (shared memory,
 * cp.async: no registers held), dprep_store (later, when they have landed)
 * finds the exponent and stores dOh and edO.  The backward state kernel's
 * signaller warp prepares its own block's columns this way, so that no
 * separate kernel runs in front of the state kernel and k_chunk_bwd can take
 * the SMs it leaves at once.  Each lane reads back only the pieces it copied. */
DEV void dprep_load(const Ctx &c, uint16_t *buf, int ci, int h, int vb) {
    const int lane = threadIdx.x & 31, V = c.V, Hv = c.Hv;
    const Chunk ch = chunk_at(c, ci);
#pragma unroll
    for (int k = 0; k < 16; k++) { /* piece i = lane + 32 k: row i / 8, columns 64 vb + 8 (i % 8) */
        const int i = lane + 32 * k, r = i >> 3, col = vb * 64 + 8 * (i & 7);
        const bool ok = r < ch.len && col < V;
        cp_async16(buf + 8 * i, ok ? c.dout + ((size_t)(ch.t0 + r) * Hv + h) * V + col : c.dout, ok);
    }
    cp_async_commit();
}
DEV void dprep_store(const Ctx &c, const uint16_t *buf, int ci, int h, int vb) {
    const int lane = threadIdx.x & 31, V = c.V;
    const size_t chh = (size_t)ci * c.Hv + h;
    cp_async_wait<0>();
    float m = 0.f;
#pragma unroll
    for (int k = 0; k < 16; k++) {
        const uint4 x = *reinterpret_cast<const uint4 *>(buf + 8 * (lane + 32 * k));
        const uint32_t u[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
        for (int j = 0; j < 4; j++) m = fmaxf(m, fmaxf(fabsf(bf2f_lo(u[j])), fabsf(bf2f_hi(u[j]))));
    }
    const int e = scale_exp(warp_max(m));
    const float sc = exp2i(e);
#pragma unroll
    for (int k = 0; k < 16; k++) {
        const int i = lane + 32 * k, r = i >> 3, col = vb * 64 + 8 * (i & 7);
        if (col < V) {
            *reinterpret_cast<uint4 *>(c.dOh + (chh * 64 + r) * V + col) =
                bf16x8_to_f16(*reinterpret_cast<const uint4 *>(buf + 8 * i), sc);
        }
    }
    if (lane == 0) c.edO[chh * c.nvb + vb] = e;
    __syncwarp();
}
DEV void gpu_fence() {
#ifndef OH_EMU
    __threadfence();
#endif
}

/* The backward state kernel's signaller warp (K <= 128), preparing dO in
 * place of k_dout_prep's flags.  Chunk j (the j-th of the reverse walk) is
 * loaded by the other warps after step j - 1's first barrier, so it must be
 * stored and fenced before that.  Chunks 0 and 1 are prepared before the
 * first step (0 before a barrier of its own) and chunk 2 copied in; in step
 * it's long window (before its last barrier) the warp converts and stores
 * chunk it + 2 (copied in a step earlier), copies chunk it + 3 in, and fences
 * (with the flag of chunk it - 1): all of it off the step's critical path,
 * which the same work after the last barrier (a short window) was not
 * (measured: k_state_bwd +0.16 ms at 1 x 8192).  The copies of chunk it + 3
 * are issued after the fence (-DOH_GDN_SIGCOPY_AFTER=0: before it); with the
 * 168-register state kernels that measured 0.01-0.09 ms faster f+b at the four
 * bench shapes (H100, bench/runs/2026-12-06-ab2), alone no different.  NB = 1
 * (the wgmma state kernels, one barrier a step, which opens it): the same
 * work after step it's barrier. */
#ifndef OH_GDN_SIGCOPY_AFTER
#define OH_GDN_SIGCOPY_AFTER 1
#endif
template <int NB, int LAG = 1, typename F = NoIssue>
DEV void state_signaller_bwd(const Ctx &c, const StateSig &g, int vb, uint16_t *buf, const F &issue = F()) {
    const int lane = threadIdx.x & 31;
    auto chunk = [&](int j) { return g.ci0 + g.dir * j; };
    for (int j = 0; j < 2 && j < g.cnt; j++) {
        dprep_load(c, buf, chunk(j), g.h, vb);
        dprep_store(c, buf, chunk(j), g.h, vb);
        if (OH_GDN_TMA) fence_proxy_async_global(); /* the stores before the bulk copies that read them */
        gpu_fence();
        if (j == 0) BAR_ANY();
    }
    if (g.cnt == 0) BAR_ANY();
    if (g.cnt > 2) dprep_load(c, buf, chunk(2), g.h, vb);
    for (int it = 0; it < g.cnt; it++) {
#pragma unroll
        for (int b = 0; b < (NB == 1 ? 1 : NB - 1); b++) BAR_ANY();
        if (lane == 0) issue(it); /* chunk it + 1 (prepared and fenced at step it - 1) */
        const bool more = it + 3 < g.cnt;
        if (it + 2 < g.cnt) dprep_store(c, buf, chunk(it + 2), g.h, vb);
        if (OH_GDN_TMA) fence_proxy_async_global();
        if (more && !OH_GDN_SIGCOPY_AFTER) dprep_load(c, buf, chunk(it + 3), g.h, vb);
        __syncwarp(); /* every lane's stores before lane 0's fence */
        if (it < LAG)
            gpu_fence();
        else if (lane == 0)
            flag_signal(g.done + (size_t)chunk(it - LAG) * g.Hv + g.h); /* its fence: chunk it + 2 */
        /* the copies after the fence (which may wait for them): the default */
        if (more && OH_GDN_SIGCOPY_AFTER) dprep_load(c, buf, chunk(it + 3), g.h, vb);
        __syncwarp();
        if (NB > 1) BAR_ANY();
    }
    BAR_ANY();
    if (lane == 0) sig_post<LAG>(g);
}

/* A thread's share of copying one [ROWS][COLS8 x 8] 16-bit tile into shared
 * memory (row stride LDS) from global rows of stride LDG, the same every step:
 * the offsets are worked out once, so a step issues only the copies.  Columns
 * at or past `valid` are zero-filled. */
template <int ROWS, int COLS8, int NTH> struct TilePlan {
    static constexpr int N = (ROWS * COLS8 + NTH - 1) / NTH;
    uint32_t so[N], go[N];
    uint32_t ok; /* bit j: item j is a real copy (else zero-fill) */
    __device__ __forceinline__ void init(int tid, int lds, int ldg, int valid) {
        ok = 0;
#pragma unroll
        for (int j = 0; j < N; j++) {
            const int i = tid + j * NTH, r = i / COLS8, c8 = i % COLS8;
            so[j] = (uint32_t)(r * lds + c8 * 8);
            go[j] = (uint32_t)(r * ldg + c8 * 8);
            if (c8 * 8 < valid) ok |= 1u << j;
        }
    }
    /* The same into the 128-byte-swizzled [ROWS][64] tiles of a wgmma operand
     * (wgmma.cuh), tile t holding columns [64 t, 64 t + 64); columns at or past
     * `valid` zero-filled, those past the rows' COLS8 pieces not written. */
    __device__ __forceinline__ void init_sw(int tid, int ldg, int valid) {
        ok = 0;
#pragma unroll
        for (int j = 0; j < N; j++) {
            const int i = tid + j * NTH, r = i / COLS8, c8 = i % COLS8;
            so[j] = (uint32_t)((c8 >> 3) * ROWS * 64 + sw64(r, (c8 & 7) * 8));
            go[j] = (uint32_t)(r * ldg + c8 * 8);
            if (c8 * 8 < valid) ok |= 1u << j;
        }
    }
    __device__ __forceinline__ void copy(uint16_t *dst, const uint16_t *src, int tid) const {
#pragma unroll
        for (int j = 0; j < N; j++) {
            if ((ROWS * COLS8) % NTH == 0 || tid + j * NTH < ROWS * COLS8) {
                const bool v = (ok >> j) & 1u;
                cp_async16(dst + so[j], v ? src + go[j] : src, v);
            }
        }
    }
};

/* OH_GDN_TMA: one thread (thread 0 for a kernel's first chunk, then the
 * signaller warp's lane 0) issues a stage's bulk copies, all completing on bar:
 * for each of the nk maps km[i] the NKT [64][64] tiles of rows row.. (columns
 * 64 t.., past K zero) into kt[i] + t TILE; with pt, P's tile; the [64][64]
 * tile of map vm at (vcol, row) into vt; G's 64 values of row grow into gt. */
template <int NKT> DEV void tma_stage(const Ctx &c, uint64_t *bar, int row, uint16_t *const *kt, const int *km, int nk,
                                      uint16_t *pt, uint16_t *vt, int vm, int vcol, float *gt, int grow) {
    constexpr uint32_t TB = 64 * 64 * 2;
    fence_proxy_async_global(); /* k_prep's (or the signaller's) stores, seen through a flag or barrier */
    mbar_expect_tx(bar, (uint32_t)(nk * NKT + (pt ? 1 : 0) + 1) * TB + 64 * 4);
    for (int i = 0; i < nk; i++)
#pragma unroll
        for (int t = 0; t < NKT; t++) tma_load_2d(kt[i] + t * 64 * 64, &c.tm[km[i]], 64 * t, row, bar);
    if (pt) tma_load_2d(pt, &c.tm[TM_P], 0, row, bar);
    tma_load_2d(vt, &c.tm[vm], vcol, row, bar);
    tma_load_2d(gt, &c.tm[TM_G], 0, grow, bar);
}

/* The state kernels: KT = K padded to 16 KT rows.  A block owns 64 columns
 * of V in NC column groups of WC = 8 NTW columns; each column group is shared
 * by MH warps that split the rows of every product (the state's K rows, the
 * chunk's 64 rows), so that a warp does 1 / MH of the step's work and meets
 * its partners at a named barrier (pair_bar) where a product needs the rows
 * another warp made.  K <= 128: 8 warps (4 groups of 16 columns x 2 row
 * halves), tiles double-buffered, plus the signaller warp; K > 128: 8 warps
 * of 8 columns, one stage (shared memory). */
template <int KT> struct StateCfg {
    static constexpr int NTW = KT > 8 ? 1 : 2;     /* 8-column n-tiles per warp */
    static constexpr int NC = 8 / NTW;             /* column groups */
#ifndef OH_GDN_STATE_MH
#define OH_GDN_STATE_MH 2
#endif
    static constexpr int MH = KT > 8 ? 1 : OH_GDN_STATE_MH; /* warps (row parts) per column group */
    static constexpr int NW = NC * MH;             /* warps of the recurrence */
    static constexpr int KT0 = (KT + MH - 1) / MH; /* state m-tiles of a row part (the last ones may have fewer) */
    static constexpr int MX = 4 / MH;              /* chunk-row m-tiles per row part */
    static constexpr int STAGES = KT > 8 ? 1 : 2;
    static constexpr int LDS = NTW == 2 ? 24 : 16; /* smem stride of a column group */
    static constexpr int KP = 16 * KT, LDK = KP + 8, WC = 8 * NTW;
    static constexpr int XW = STAGES == 2, THREADS = 32 * (NW + XW); /* XW: the signaller warp */
    /* Registers a thread.  The register file is split between the 4 schedulers
     * (16384 each) and with 9 warps one of them holds 3: 288 threads get at
     * most 168 (at 224 the launch failed: "too many resources", H100,
     * 2026-12-06).  -DOH_GDN_STATE_RESERVE=1024 gives 160, leaving each quarter
     * room for one warp of 32 registers (k_dout_prep beside the backward state
     * kernel, which with K <= 128 no longer runs): 168 (the default) cut
     * k_state_bwd's spills from 32 / 120 bytes to 12 / 16 and measured 0.01-0.08
     * ms faster f+b (H100, bench/runs/2026-12-06-ab2); 8 warps (K > 128) put 2
     * on each and may use 255. */
    static constexpr int QW = (THREADS / 32 + 3) / 4; /* warps on the busiest scheduler */
#ifndef OH_GDN_STATE_RESERVE /* registers a scheduler keeps free beside a state block (1024 gives 160) */
#define OH_GDN_STATE_RESERVE 0
#endif
    static constexpr int MAXREG = THREADS > 256 ? (16384 - OH_GDN_STATE_RESERVE) / (32 * QW) / 8 * 8 : 255;
    static_assert(MAXREG * 32 * QW <= 16384 || MAXREG == 255, "a block's registers on one scheduler");
};

/* The MH warps of column group cg meet (bar.sync 1 + cg; a warp alone: __syncwarp). */
template <int MH> DEV void pair_bar(int cg) {
    static_assert(MH == 1 || MH == 2 || MH == 4, "row parts: 1, 2 or 4 (named barriers 1-4 for 4 groups)");
    if (MH == 1) {
        __syncwarp();
        return;
    }
#ifdef OH_EMU
    emu::named_bar(1 + cg, 32 * MH, OH_EMU_WHERE);
#else
    /* constant ids: a register id makes ptxas reserve all 16 barriers */
    switch (cg) {
    case 0: asm volatile("bar.sync 1, %0;" ::"n"(32 * MH) : "memory"); break;
    case 1: asm volatile("bar.sync 2, %0;" ::"n"(32 * MH) : "memory"); break;
    case 2: asm volatile("bar.sync 3, %0;" ::"n"(32 * MH) : "memory"); break;
    default: asm volatile("bar.sync 4, %0;" ::"n"(32 * MH) : "memory"); break;
    }
#endif
}

/* The state kernels' two product shapes, for one warp's share (NTW 8-column
 * n-tiles of its column group; B is the group's tile in shared memory, stride ldb):
 *   part_add_atb: state rows 16 (ms0 + i), i < KT0 (i < ktm unless FULL):
 *                 P += A^T B, A [64][lda] k-major (the chunk's rows), B [64][ldb];
 *   rows_add_ab:  chunk rows 16 (mx0 + i), i < MX:  R += A B, A [64][lda], B [16 KT][ldb]. */
template <bool FULL, int KT0, int NTW>
DEV void part_add_atb(float (&P)[KT0][NTW][4], const uint16_t *A, int lda, const uint16_t *B, int ldb, int ms0,
                      int ktm, int lane) {
#pragma unroll
    for (int kt = 0; kt < 4; kt++) {
        uint32_t b[4];
        ld_b_kn<NTW>(b, B, ldb, 0, 16 * kt, lane);
#pragma unroll
        for (int i = 0; i < KT0; i++) {
            if (FULL || i < ktm) {
                uint32_t a[4];
                ldsm4t(a, a_km(A, lda, 16 * (ms0 + i), 16 * kt, lane));
#pragma unroll
                for (int nt = 0; nt < NTW; nt++) mma_f16(P[i][nt], a, b[2 * nt], b[2 * nt + 1]);
            }
        }
    }
}
template <int KT, int MX, int NTW>
DEV void rows_add_ab(float (&R)[MX][NTW][4], const uint16_t *A, int lda, const uint16_t *B, int ldb, int mx0, int lane) {
#pragma unroll
    for (int kt = 0; kt < KT; kt++) {
        uint32_t b[4];
        ld_b_kn<NTW>(b, B, ldb, 0, 16 * kt, lane);
#pragma unroll
        for (int i = 0; i < MX; i++) {
            uint32_t a[4];
            ldsm4(a, a_mk(A, lda, 16 * (mx0 + i), 16 * kt, lane));
#pragma unroll
            for (int nt = 0; nt < NTW; nt++) mma_f16(R[i][nt], a, b[2 * nt], b[2 * nt + 1]);
        }
    }
}
/* x[i][nt][e] *= f over a warp's accumulator tiles */
template <int M, int NTW> DEV void scale_tiles(float (&x)[M][NTW][4], float f) {
#pragma unroll
    for (int i = 0; i < M; i++)
#pragma unroll
        for (int nt = 0; nt < NTW; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) x[i][nt][e] *= f;
}

template <int KT> static size_t state_smem() {
    typedef StateCfg<KT> C;
    return carve16((size_t)C::STAGES * (2 * 64 * C::LDK + 64 * LD64 + 128) * 2) +
           carve16((size_t)C::NC * C::KP * C::LDS * 2) + carve16((size_t)C::NC * 64 * C::LDS * 2) +
           carve16(4 * C::NW * 4);
}

template <int KT> static __global__ void __maxnreg__(StateCfg<KT>::MAXREG) k_state_fwd(Ctx c) {
    typedef StateCfg<KT> C;
    constexpr int NTW = C::NTW, NW = C::NW, NC = C::NC, MH = C::MH, KT0 = C::KT0, MX = C::MX;
    constexpr int KP = C::KP, LDK = C::LDK, WC = C::WC, LDS = C::LDS, NST = C::STAGES;
    constexpr int STG = 2 * 64 * LDK + 64 * LD64 + 128; /* stage: Wu, Kn [64][LDK], Uv [64][LD64], G [64] fp32 */
    const int vb = blockIdx.x, h = blockIdx.y, doc = blockIdx.z;
    const int K = c.K, V = c.V, Hv = c.Hv, nvb = c.nvb;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g4 = lane >> 2, t4 = lane & 3;
    const int cg = w % NC, mh = w / NC;
    const int ms0 = mh * KT0, KTm = imin(KT0, KT - ms0 > 0 ? KT - ms0 : 0); /* state m-tiles [ms0, ms0 + KTm) */
    const int mx0 = mh * MX;                              /* and chunk-row m-tiles [mx0, mx0 + MX) */
    const int *dt = c.tab + 4 + 4 * c.ncmax + 2 * doc;
    const int first = dt[0], cnt = dt[1];
    const int colw = vb * 64 + cg * WC; /* first V column of this warp */
    const bool wok = colw < V;          /* V % 16 == 0: a warp's columns are all valid or all not */

    Carve cv{GDN_SMEM()};
    uint16_t *stg = cv.take<uint16_t>(NST * STG);
    uint16_t *Ss = cv.take<uint16_t>(NC * KP * LDS) + cg * KP * LDS; /* the group's S0 columns, fp16 x 2^eH */
    uint16_t *Us = cv.take<uint16_t>(NC * 64 * LDS) + cg * 64 * LDS; /* the group's del o U, fp16 x 2^ed */
    float *redS = cv.take<float>(4 * NW), *redU = redS + 2 * NW, *redD = redS + 3 * NW;
    allow_dependents();
    trace_mark(c, false);
    const StateSig sg{c.flP, c.flS, first, 1, cnt, Hv, h};
    if (C::XW && w == NW) {
        state_signaller<NST == 1 ? 3 : 2>(sg);
        return;
    }
#define Ws(s) (stg + (s) * STG)
#define Kns(s) (stg + (s) * STG + 64 * LDK)
#define Uvs(s) (stg + (s) * STG + 2 * 64 * LDK)
#define Gts(s) reinterpret_cast<float *>(stg + (s) * STG + 2 * 64 * LDK + 64 * LD64)
    constexpr bool FULL = KT0 * MH == KT; /* every row part holds KT0 state m-tiles */
#define ROWOK(i) (FULL || (i) < KTm)

    TilePlan<64, KP / 8, 32 * NW> pk;  /* Wu, Kn */
    TilePlan<64, 8, 32 * NW> pv;       /* Uv (this block's 64 columns) */
    pk.init(tid, LDK, K, K);
    pv.init(tid, LD64, V, V - vb * 64);
    auto load = [&](int s, int ci) {
        const size_t chh = (size_t)ci * Hv + h;
        pk.copy(Ws(s), c.Wu + chh * 64 * K, tid);
        pk.copy(Kns(s), c.Kn + chh * 64 * K, tid);
        pv.copy(Uvs(s), c.Uv + chh * 64 * V + vb * 64, tid);
        if (tid < 16) cp_async16(Gts(s) + 4 * tid, c.G + chh * 64 + 4 * tid, true);
    };

    /* state part: rows d = 16 (ms0 + i) + g4 + 8 (e >> 1), columns colw + 8 nt + 2 t4 + (e & 1) */
    float S[KT0][NTW][4];
    float m = 0.f;
#pragma unroll
    for (int i = 0; i < KT0; i++)
#pragma unroll
        for (int nt = 0; nt < NTW; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int d = 16 * (ms0 + i) + g4 + 8 * (e >> 1), col = colw + 8 * nt + 2 * t4 + (e & 1);
                S[i][nt][e] = (c.s0 && wok && ROWOK(i) && d < K) ? c.s0[(((size_t)doc * Hv + h) * K + d) * V + col] : 0.f;
                m = fmaxf(m, fabsf(S[i][nt][e]));
            }
    m = warp_max(m);
    if (lane == 0) redS[NW + w] = m; /* slot (-1) & 1 */

    if (cnt > 0) flag_wait(c.flP + (size_t)first * Hv + h, 1);
    if (!C::XW && tid == 0) sig_pre(sg);
    if (NST == 2 && cnt > 0) {
        load(0, first);
        cp_async_commit();
    }
    /* the exponent of the next chunk's Uv is loaded a step ahead (off the step's critical path) */
    int eUv_next = cnt > 0 ? ld_l2(c.eUv + ((size_t)first * Hv + h) * nvb + vb) : 0;
    for (int it = 0; it < cnt; it++) {
        const int ci = first + it, s = NST == 2 ? (it & 1) : 0;
        const size_t chh = (size_t)ci * Hv + h;
        const int eUv = eUv_next;
        if (NST == 1) {
            __syncthreads();
            load(0, ci);
            cp_async_commit();
        }
        cp_async_wait<0>();
        BAR_STEP(); /* this chunk's tiles are in; every warp is done with the previous step */
        if (it + 1 < cnt) eUv_next = ld_l2(c.eUv + (chh + Hv) * nvb + vb); /* k_prep's flag: before the barrier */
        if (NST == 2 && it + 1 < cnt) {
            load(s ^ 1, ci + 1);
            cp_async_commit();
        }
        /* S0 -> fp16 x 2^eH: H (global) and the group's smem copy */
        m = 0.f;
        for (int i = 0; i < NW; i++) m = fmaxf(m, redS[((it + 1) & 1) * NW + i]);
        const int eH = scale_exp(m);
        const float sH = exp2i(eH);
        if (tid == 0) c.eH[chh * nvb + vb] = eH;
        uint16_t *Hc = c.H + chh * K * V + (size_t)(16 * ms0 + g4) * V + colw + 2 * t4; /* this lane's first H element */
#pragma unroll
        for (int i = 0; i < KT0; i++)
            if (ROWOK(i)) {
#pragma unroll
                for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        const int d = 16 * (ms0 + i) + g4 + 8 * hf, lc = 8 * nt + 2 * t4;
                        const uint32_t p = pack_f16(S[i][nt][2 * hf] * sH, S[i][nt][2 * hf + 1] * sH);
                        st32(Ss + d * LDS + lc, p);
                        if (wok && d < K) st32(Hc + (16 * i + 8 * hf) * V + 8 * nt, p);
                    }
            }
        pair_bar<MH>(cg);
        /* X = Wu S0 (this part's chunk rows x WC);  U = Uv - gam o X */
        float X[MX][NTW][4];
#pragma unroll
        for (int i = 0; i < MX; i++)
#pragma unroll
            for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) X[i][nt][e] = 0.f;
        rows_add_ab<KT>(X, Ws(s), LDK, Ss, LDS, mx0, lane);
        const float *Gt = Gts(s);
        const float iUv = exp2i(-eUv), iH = exp2i(-eH), glast = Gt[63];
        float mu = 0.f, md = 0.f; /* max |U| (block exponent, for H/B3), max |del o U| (the group's) */
        float dl[MX][2];
#pragma unroll
        for (int i = 0; i < MX; i++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int j = 16 * (mx0 + i) + g4 + 8 * hf;
                const float gj = fexp(Gt[j]) * iH, dj = fexp(glast - Gt[j]);
                dl[i][hf] = dj;
#pragma unroll
                for (int nt = 0; nt < NTW; nt++) {
                    const uint32_t uv = ld32(Uvs(s) + j * LD64 + cg * WC + 8 * nt + 2 * t4);
                    const float u0 = h2f_lo(uv) * iUv - X[i][nt][2 * hf] * gj;
                    const float u1 = h2f_hi(uv) * iUv - X[i][nt][2 * hf + 1] * gj;
                    X[i][nt][2 * hf] = u0;
                    X[i][nt][2 * hf + 1] = u1;
                    mu = fmaxf(mu, fmaxf(fabsf(u0), fabsf(u1)));
                    md = fmaxf(md, dj * fmaxf(fabsf(u0), fabsf(u1)));
                }
            }
        mu = warp_max(mu);
        if (lane == 0) redU[w] = mu;
        md = warp_max(md);
        if (MH > 1) {
            if (lane == 0) redD[w] = md;
            pair_bar<MH>(cg);
#pragma unroll
            for (int p = 0; p < MH; p++) md = fmaxf(md, redD[cg + p * NC]);
        }
        const int ed = scale_exp(md);
        {
            const float sd = exp2i(ed);
#pragma unroll
            for (int i = 0; i < MX; i++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int j = 16 * (mx0 + i) + g4 + 8 * hf;
                    const float dj = dl[i][hf] * sd;
#pragma unroll
                    for (int nt = 0; nt < NTW; nt++)
                        st32(Us + j * LDS + 8 * nt + 2 * t4, pack_f16(X[i][nt][2 * hf] * dj, X[i][nt][2 * hf + 1] * dj));
                }
        }
        pair_bar<MH>(cg);
        /* S = e^{G_63} S + Kn^T (del o U) */
        const float decay = fexp(glast) * exp2i(ed), iD = exp2i(-ed);
        scale_tiles(S, decay);
        part_add_atb<FULL>(S, Kns(s), LDK, Us, LDS, ms0, KTm, lane);
        m = 0.f;
#pragma unroll
        for (int i = 0; i < KT0; i++)
#pragma unroll
            for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    S[i][nt][e] *= iD;
                    m = fmaxf(m, fabsf(S[i][nt][e]));
                }
        m = warp_max(m);
        if (lane == 0) redS[(it & 1) * NW + w] = m;
        /* U -> global, fp16 x 2^eU with one exponent for the block's 64 columns */
        if (!C::XW && tid == 0) sig_step(sg, it);
        BAR_STEP();
        m = 0.f;
        for (int i = 0; i < NW; i++) m = fmaxf(m, redU[i]);
        const int eU = scale_exp(m);
        const float sU = exp2i(eU);
        if (tid == 0) c.eU[chh * nvb + vb] = eU;
        if (wok) {
            uint16_t *Uc = c.U + chh * 64 * V + (size_t)(16 * mx0 + g4) * V + colw + 2 * t4;
#pragma unroll
            for (int i = 0; i < MX; i++)
#pragma unroll
                for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        st32(Uc + (16 * i + 8 * hf) * V + 8 * nt,
                             pack_f16(X[i][nt][2 * hf] * sU, X[i][nt][2 * hf + 1] * sU));
                    }
        }
    }
    if (c.s_final && wok) {
#pragma unroll
        for (int i = 0; i < KT0; i++)
#pragma unroll
            for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int d = 16 * (ms0 + i) + g4 + 8 * (e >> 1), col = colw + 8 * nt + 2 * t4 + (e & 1);
                    if (ROWOK(i) && d < K) c.s_final[(((size_t)doc * Hv + h) * K + d) * V + col] = S[i][nt][e];
                }
    }
    BAR_STEP(); /* the signaller reports the last chunk */
    if (!C::XW && tid == 0) sig_post(sg);
    trace_mark(c, true);
#undef Ws
#undef Kns
#undef Uvs
#undef Gts
}

/* ------------------------------------------------- k_state_fwd on wgmma (K <= 128) */

/* -DOH_GDN_SF_WG=0: the mma.sync k_state_fwd above for every K (sandbox A/B). */
#ifndef OH_GDN_SF_WG
#define OH_GDN_SF_WG 1
#endif
/* 8x8 b16 matrix of a warp transposed (movmatrix): the lane holding row g,
 * columns 2t, 2t + 1 of the result gets M[2t][g], M[2t + 1][g]. */
DEV uint32_t mov_trans(uint32_t x) {
#ifdef OH_EMU
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const uint32_t a = __shfl_sync(0xffffffffu, x, 8 * t + (g >> 1)), b = __shfl_sync(0xffffffffu, x, 8 * t + 4 + (g >> 1));
    const int sh = 16 * (g & 1);
    return ((a >> sh) & 0xffffu) | (((b >> sh) & 0xffffu) << 16);
#else
    uint32_t y;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(y) : "r"(x));
    return y;
#endif
}
/* The 4 warps of a warpgroup meet (named barrier 1; the signaller warp is not in it). */
DEV void wg_bar() {
#ifdef OH_EMU
    emu::named_bar(1, 128, OH_EMU_WHERE);
#else
    asm volatile("bar.sync 1, 128;" ::: "memory");
#endif
}
/* OH_GDN_TMA: the two stages' mbarriers (thread 0), before anyone uses them (a warpgroup barrier) */
DEV void stage_bars_init(uint64_t *mb) {
    if (threadIdx.x == 0) {
        mbar_init(mb, 1);
        mbar_init(mb + 1, 1);
        fence_mbar_init();
    }
    wg_bar();
}
/* OH_GDN_TMA_ST: lane 0's bulk stores but the N most recent complete and visible
 * (then a barrier, after which the signaller reports their chunks) */
template <int N> DEV void bulk_stores_done() {
    if ((threadIdx.x & 31) == 0) {
        bulk_wait<N>();
        fence_proxy_async_global();
    }
}

/* -DOH_GDN_ST_STAGE=1 (with OH_GDN_TMA_ST=0): the wgmma state kernels store their
 * H, U, O (dH, dU) tiles through a staging area of the warp in shared memory
 * (stmatrix, then 16-byte pieces: 18 instructions a thread for H at K 96
 * instead of 48) instead of movmatrix and 4-byte stores (with -DOH_GDN_GTAB=1
 * 0.03-0.11 ms faster f+b than neither, H100, bench/runs/2026-12-06-tma). */
#ifndef OH_GDN_ST_STAGE
#define OH_GDN_ST_STAGE 0
#endif
enum { LDST = 24 }; /* staging row stride (elements): a warp's 16 columns + 8 of padding */
/* -DOH_GDN_GTAB=1: the wgmma state kernels work out a step's gates e^{G_j} and
 * e^{G_63 - G_j} once (a value a thread, into shared memory, one warpgroup
 * barrier) instead of each thread its 32-48 (with the TMA default: within
 * noise, bench/runs/2026-12-06-tma). */
#ifndef OH_GDN_GTAB
#define OH_GDN_GTAB 0
#endif
/* stmatrix .x4 .trans: matrix i (register r[i], the mma fragment layout) stored
 * transposed, lane 8 i + rr naming the address of stored row rr (16 bytes). */
DEV void stsm4t(uint16_t *p, const uint32_t (&r)[4]) {
#ifdef OH_EMU
    const int lane = threadIdx.x & 31, q = lane >> 3, rr = lane & 7;
    uint16_t row[8];
    for (int i = 0; i < 4; i++)
        for (int cc = 0; cc < 8; cc++) { /* stored row rr, element cc = M_i[cc][rr]: lane 4 cc + rr / 2 */
            const uint32_t v = __shfl_sync(0xffffffffu, r[i], 4 * cc + (rr >> 1));
            if (i == q) row[cc] = (uint16_t)(v >> (16 * (rr & 1)));
        }
    memcpy(p, row, 16);
#else
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1,%2,%3,%4};" ::"r"(a), "r"(r[0]), "r"(r[1]),
                 "r"(r[2]), "r"(r[3])
                 : "memory");
#endif
}
/* A warp's 16 columns of a [16 NB][...] tile held as NB A-layout fragments of the
 * accumulator rows (frag[b][q]: accumulator rows +8 with q & 1, tile rows 16 b + 8 (q >> 1)):
 * written transposed into st [16 NB][LDST], then rows < nrows stored as 16-byte
 * pieces at g + row * ldg. */
template <int NB> DEV void warp_store_tile(uint16_t *st, const uint32_t (&frag)[NB][4], uint16_t *g, size_t ldg, int nrows) {
    const int lane = threadIdx.x & 31;
    __syncwarp(); /* the last tile's pieces have been read */
#pragma unroll
    for (int b = 0; b < NB; b++) stsm4t(st + (16 * b + 8 * (lane >> 4) + (lane & 7)) * LDST + 8 * ((lane >> 3) & 1), frag[b]);
    __syncwarp();
#pragma unroll
    for (int i = 0; i < NB; i++) {
        const int pc = lane + 32 * i, row = pc >> 1, hh = pc & 1;
        if (row < nrows)
            *reinterpret_cast<uint4 *>(g + row * ldg + 8 * hh) = *reinterpret_cast<const uint4 *>(st + row * LDST + 8 * hh);
    }
}
/* OH_GDN_TMA_ST: the same tile written transposed into the warp's dense
 * [16 NB][16] area st, then stored by one bulk tensor store of map m's box at
 * (x, y) (its rows past the map's box are not stored).  Lane 0 issues and
 * commits, one bulk group a store; the area's previous store must have read it
 * (one newer group, the other area's, may still run).  The counts here and in
 * the kernels (wait_group.read 1; wait_group 2 at a step's start and the
 * flags' LAG of 2) assume exactly two groups a step from each storing warp
 * (H then U, dH then dU): a third bulk store a step must change all three. */
template <int NB> DEV void warp_bulk_store(uint16_t *st, const uint32_t (&frag)[NB][4], const TmaMap *m, int x, int y) {
    const int lane = threadIdx.x & 31;
    if (lane == 0) bulk_wait_read<1>();
    __syncwarp();
#pragma unroll
    for (int b = 0; b < NB; b++) stsm4t(st + (16 * b + 8 * (lane >> 4) + (lane & 7)) * 16 + 8 * ((lane >> 3) & 1), frag[b]);
    fence_async_smem(); /* the generic writes before the copy reads them */
    __syncwarp();
    if (lane == 0) {
        tma_store_2d(m, x, y, st);
        bulk_commit();
    }
}
/* The accumulators of n-tiles 2s, 2s+1 as an A-layout fragment of bf16 (times x) */
DEV void acc_to_a_bf16(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4], float x0, float x1) {
    a[0] = pack_bf16(c0[0] * x0, c0[1] * x0);
    a[1] = pack_bf16(c0[2] * x1, c0[3] * x1);
    a[2] = pack_bf16(c1[0] * x0, c1[1] * x0);
    a[3] = pack_bf16(c1[2] * x1, c1[3] * x1);
}

/* One warpgroup carries the recurrence of the block's 64 columns of V with
 * the state transposed in its accumulators: S^T [64 columns][NK] (the wgmma
 * m64nNK layout: warp w holds columns 16 w.., the K rows of the state are the
 * accumulator's columns).  Per chunk:
 *   X^T = S0^T Wu^T              A: S0^T from registers, as the fp16 x 2^eH that is
 *                                stored as H; B: the Wu tile (K-major)
 *   U^T = Uv^T 2^-eUv - X^T o gam (gam over the chunk rows, the columns here)
 *   S^T = e^{G_63} S^T + (del o U)^T Kn
 *                                A: (del o U)^T from registers, fp16 with one exponent
 *                                per row (no block reduction in the way); B: the Kn
 *                                tile (MN-major)
 * so the state and U never go through shared memory; H and U leave through
 * movmatrix (the transposed 8x8 pieces) as 4-byte stores.  The state rows are
 * kept in units 2^c (c per row: the last step's exponent of del o U), so each
 * step rescales them once.  The only block-wide values are the exponents of
 * the stored H and U (max over the 64 columns): H's from the previous step's
 * maxima at the step's barrier, U's at a warpgroup barrier while the state
 * product runs.  Wu and Kn stages are [64][64] 128-byte-swizzled tiles
 * (NK / 64 rounded up of them), loaded a chunk ahead (bulk tensor copies,
 * OH_GDN_TMA; else cp.async). */
/* Pieces shared by the wgmma state kernels.  A warp holds the state (or its
 * gradient) of its 16 columns of V transposed: S[n][e] = state row 8 n + 2 t4 +
 * (e & 1), column col0 + g4 + 8 (e >> 1), the columns (accumulator rows) in
 * units 2^cr[e >> 1]. */
/* S from x (s0 or ds_final: the head's [K][V] at x[d * V + col]; null: zero); returns the warp's max |S|. */
template <int NT> DEV float wgs_init(float (&S)[NT][4], const float *x, int K, int V, int col0, bool wok) {
    const int lane = threadIdx.x & 31, g4 = lane >> 2, t4 = lane & 3;
    float m = 0.f;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int d = 8 * n + 2 * t4 + (e & 1), col = col0 + g4 + 8 * (e >> 1);
            S[n][e] = (x && wok && d < K) ? x[(size_t)d * V + col] : 0.f;
            m = fmaxf(m, fabsf(S[n][e]));
        }
    return warp_max(m);
}
/* x[d * V + col] = S in true units, rows d < K. */
template <int NT> DEV void wgs_final(const float (&S)[NT][4], const int (&cr)[2], float *x, int K, int V, int col0) {
    const int lane = threadIdx.x & 31, g4 = lane >> 2, t4 = lane & 3;
    const float i0 = exp2i(-cr[0]), i1 = exp2i(-cr[1]);
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int d = 8 * n + 2 * t4 + (e & 1), col = col0 + g4 + 8 * (e >> 1);
            if (d < K) x[(size_t)d * V + col] = S[n][e] * ((e >> 1) ? i1 : i0);
        }
}
/* The warp's max |S| in true units. */
template <int NT> DEV float wgs_absmax(const float (&S)[NT][4], const int (&cr)[2]) {
    float m0 = 0.f, m1 = 0.f;
#pragma unroll
    for (int n = 0; n < NT; n++) {
        m0 = fmaxf(m0, fmaxf(fabsf(S[n][0]), fabsf(S[n][1])));
        m1 = fmaxf(m1, fmaxf(fabsf(S[n][2]), fabsf(S[n][3])));
    }
    return warp_max(fmaxf(m0 * exp2i(-cr[0]), m1 * exp2i(-cr[1])));
}
/* The columns g4 times r0, g4 + 8 times r1. */
template <int NT> DEV void wgs_scale(float (&S)[NT][4], float r0, float r1) {
#pragma unroll
    for (int n = 0; n < NT; n++) {
        S[n][0] *= r0;
        S[n][1] *= r0;
        S[n][2] *= r1;
        S[n][3] *= r1;
    }
}
/* The state as fp16 (columns g4 times f0, g4 + 8 times f1) into g (the chunk's [K][V]
 * tile plus col0), rows < K.  Converted here again: the A fragments made of it
 * belong to a wgmma in flight, whose registers are not to be accessed before
 * the wait. */
template <int KS> DEV void wgs_store(const float (&S)[2 * KS][4], float f0, float f1, uint16_t *stw, uint16_t *g, int K, int V,
                              const TmaMap *bm = nullptr, int bx = 0, int by = 0) {
    if (OH_GDN_TMA_ST || OH_GDN_ST_STAGE) {
        uint32_t hs[KS][4];
#pragma unroll
        for (int kk = 0; kk < KS; kk++) acc_to_a_f16(hs[kk], S[2 * kk], S[2 * kk + 1], f0, f1);
        if (OH_GDN_TMA_ST) /* bm's box at (bx, by) from the area stw */
            warp_bulk_store<KS>(stw, hs, bm, bx, by);
        else
            warp_store_tile<KS>(stw, hs, g, V, K);
        return;
    }
    const int lane = threadIdx.x & 31, g4 = lane >> 2, t4 = lane & 3;
    uint16_t *gc = g + (size_t)g4 * V + 2 * t4;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        uint32_t hq[4];
        acc_to_a_f16(hq, S[2 * kk], S[2 * kk + 1], f0, f1);
#pragma unroll
        for (int q = 0; q < 4; q++) { /* hq[q]: columns +8 (q & 1), state rows 16 kk + 8 (q >> 1) */
            const int d0 = 16 * kk + 8 * (q >> 1);
            const uint32_t tq = mov_trans(hq[q]);
            if (d0 + g4 < K) st32(gc + (size_t)d0 * V + 8 * (q & 1), tq);
        }
    }
}
/* max of a warpgroup's 4 slots */
DEV float max4(const float *r) { return fmaxf(fmaxf(r[0], r[1]), fmaxf(r[2], r[3])); }
/* A chunk tile (the X^T accumulator layout: the warp's 16 columns, chunk rows j = 8 n
 * + 2 t4 + (e & 1)) into g (the chunk's [64][V] tile plus col0) as fp16 x 2^e, one
 * exponent for the block's 64 columns: mu is this thread's max |x|, the 4 warps
 * agree on e at a warpgroup barrier (every consumer thread calls this), thread 0
 * stores it at *ep. */
DEV void wg_store_chunk(const float (&X)[8][4], float mu, float *redU, int *ep, uint16_t *stw, uint16_t *g, int V,
                        bool wok, const TmaMap *bm = nullptr, int bx = 0, int by = 0) {
    const int lane = threadIdx.x & 31, g4 = lane >> 2, t4 = lane & 3;
    mu = warp_max(mu);
    if (lane == 0) redU[threadIdx.x >> 5] = mu;
    wg_bar();
    const int e = scale_exp(max4(redU));
    if (threadIdx.x == 0) *ep = e;
    if (!wok) return;
    const float sc = exp2i(e);
    if (OH_GDN_TMA_ST || OH_GDN_ST_STAGE) {
        uint32_t fr[4][4];
#pragma unroll
        for (int kk = 0; kk < 4; kk++) acc_to_a_f16(fr[kk], X[2 * kk], X[2 * kk + 1], sc, sc);
        if (OH_GDN_TMA_ST) /* bm's box at (bx, by) from the area stw */
            warp_bulk_store<4>(stw, fr, bm, bx, by);
        else
            warp_store_tile<4>(stw, fr, g, V, 64);
        return;
    }
    uint16_t *gc = g + (size_t)g4 * V + 2 * t4;
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++)
            st32(gc + (size_t)(8 * n) * V + 8 * hf, mov_trans(pack_f16(X[n][2 * hf] * sc, X[n][2 * hf + 1] * sc)));
}
/* The A fragment of k step kk of x^T (ldmatrix.trans), x a [64][LD64] tile whose
 * columns 16 w.. are the warp's (SW: a 128-byte-swizzled [64][64] tile). */
template <bool SW = false> DEV void ldsm_at(uint32_t (&a)[4], const uint16_t *x, int kk) {
    const int lane = threadIdx.x & 31, r = 16 * kk + (lane & 7) + ((lane >> 4) << 3);
    const int col = 16 * (threadIdx.x >> 5) + (((lane >> 3) & 1) << 3);
    ldsm4t(a, x + (SW ? sw64(r, col) : r * LD64 + col));
}

/* OUT: k_state_fwd_wg also computes the output, O^T = gam o (S0^T Qn^T) + U^T P^T,
 * from the H and U it holds (k_out does not run); the stages then carry Qn and P
 * tiles too.  Chosen at launch (state_fuses_out). */
template <int KT, bool OUT_ = false> struct StateWgCfg {
    static constexpr int NK = KT < 2 ? 32 : 16 * KT; /* accumulator columns (state rows, padded) */
    static constexpr int NT = NK / 8, KS = NK / 16; /* n-tiles; k steps of X^T */
    static constexpr int NKT = (NK + 63) / 64;      /* 64-column tiles of Wu / Kn */
    static constexpr int TILE = 64 * 64;
    static constexpr bool OUT = OUT_;
    /* stage (elements): Wu tiles, Kn tiles, [Qn tiles, P tile,] Uv [64][LD64] (with OH_GDN_TMA a swizzled
     * [64][64] tile in that space), G (64 fp32) in a 1024-byte multiple */
    static constexpr int XT = 2 * NKT + (OUT ? NKT + 1 : 0); /* swizzled tiles a stage */
    static constexpr int STG = (XT * TILE * 2 + 64 * LD64 * 2 + 256 + 1023) / 1024 * 512;
    static constexpr int THREADS = 160; /* the warpgroup and the signaller warp */
};
/* a warpgroup's staging areas (OH_GDN_ST_STAGE): 4 x [max(NK, 64)][LDST] */
template <int KT> static constexpr size_t st_stage_elems() {
    return OH_GDN_ST_STAGE ? 4 * (size_t)(StateWgCfg<KT>::NK > 64 ? StateWgCfg<KT>::NK : 64) * LDST : 0;
}
template <int KT, bool OUT> static size_t state_wg_smem() {
    return 1024 + (size_t)2 * StateWgCfg<KT, OUT>::STG * 2 + carve16(12 * 4) + carve16(st_stage_elems<KT>() * 2) +
           carve16(128 * 4) + carve16(2 * 8) + (OH_GDN_TMA_ST ? (size_t)4 * (128 + 64) * 16 * 2 : 0);
}

template <int KT, bool OUT> static __global__ void __launch_bounds__(160, 1) k_state_fwd_wg(const __grid_constant__ Ctx c) {
    typedef StateWgCfg<KT, OUT> C;
    constexpr int NK = C::NK, NT = C::NT, KS = C::KS, NKT = C::NKT, TILE = C::TILE, STG = C::STG, XT = C::XT;
    const int vb = blockIdx.x, h = blockIdx.y, doc = blockIdx.z;
    const int K = c.K, V = c.V, Hv = c.Hv, nvb = c.nvb;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g4 = lane >> 2, t4 = lane & 3;
    const int *dt = c.tab + 4 + 4 * c.ncmax + 2 * doc;
    const int first = dt[0], cnt = dt[1];
    constexpr bool fo = C::OUT; /* the output here (not in k_out; gdn_fwd requires out) */
    const int col0 = vb * 64 + 16 * w;  /* this warp's first V column (rows 16 w.. of S^T) */
    const bool wok = col0 < V;          /* V % 16 == 0: all of the warp's columns or none */

    Carve cv{GDN_SMEM()};
    cv.p += (1024u - (smem_u32(cv.p) & 1023u)) & 1023u;
    uint16_t *stg = cv.take<uint16_t>(2 * STG);
    /* OH_GDN_TMA_ST: the warp's areas for H ([NK][16]) and U ([64][16]) */
    uint16_t *sth = cv.take<uint16_t>(OH_GDN_TMA_ST ? 4 * 128 * 16 : 0) + (size_t)(w & 3) * 128 * 16;
    uint16_t *stu = cv.take<uint16_t>(OH_GDN_TMA_ST ? 4 * 64 * 16 : 0) + (size_t)(w & 3) * 64 * 16;
    float *redS = cv.take<float>(12), *redU = redS + 8; /* [parity][warp] max |S|; [warp] max |U| */
    uint16_t *stw = cv.take<uint16_t>(st_stage_elems<KT>()) + (size_t)(w & 3) * (st_stage_elems<KT>() / 4); /* OH_GDN_ST_STAGE */
    float *gtab = cv.take<float>(128); /* OH_GDN_GTAB: e^{G_j}, e^{G_63 - G_j} */
    uint64_t *mb = cv.take<uint64_t>(2); /* OH_GDN_TMA: a stage's copies landed */
    allow_dependents();
    trace_mark(c, false);
    const StateSig sg{c.flP, c.flS, first, 1, cnt, Hv, h};
#define Wts(s) (stg + (s) * STG)
#define Kts(s) (stg + (s) * STG + NKT * TILE)
#define Qts(s) (stg + (s) * STG + 2 * NKT * TILE)
#define Pts(s) (stg + (s) * STG + 3 * NKT * TILE)
#define Uvs(s) (stg + (s) * STG + XT * TILE)
#define Gts(s) reinterpret_cast<float *>(stg + (s) * STG + XT * TILE + 64 * LD64)
    /* OH_GDN_TMA: chunk ci's stage s by bulk copies (one thread) */
    auto tma_load = [&](int s, int ci) {
        const size_t chh = (size_t)ci * Hv + h;
        uint16_t *const kt[3] = {Wts(s), Kts(s), Qts(s)};
        const int km[3] = {TM_WU, TM_KN, TM_QN};
        tma_stage<NKT>(c, mb + s, (int)chh * 64, kt, km, fo ? 3 : 2, fo ? Pts(s) : nullptr, Uvs(s), TM_UV, vb * 64,
                       Gts(s), (int)chh);
    };
    if (w == 4) { /* with OH_GDN_TMA the signaller loads chunk it + 1 after step it's barrier */
        auto issue = [&](int it) {
            if (OH_GDN_TMA && it + 1 < cnt) tma_load((it + 1) & 1, first + it + 1);
        };
        state_signaller<1, OH_GDN_TMA_ST ? 2 : 1>(sg, issue);
        return;
    }

    /* a stage's copies: Wu, Kn (and Qn, P) into swizzled tiles, this block's Uv columns, G */
    TilePlan<64, NK / 8, 128> pk; /* [64][K] rows into swizzled tiles, columns [K, NK) zero */
    TilePlan<64, 8, 128> pp, pv;
    pk.init_sw(tid, K, K);
    if (C::OUT) pp.init_sw(tid, 64, 64);
    pv.init(tid, LD64, V, V - vb * 64);
    if (OH_GDN_TMA) stage_bars_init(mb);
    auto load = [&](int s, int ci) {
        const size_t chh = (size_t)ci * Hv + h;
        if (OH_GDN_TMA) { /* the first chunk only (then the signaller) */
            if (tid == 0) tma_load(s, ci);
            return;
        }
        pk.copy(Wts(s), c.Wu + chh * 64 * K, tid);
        pk.copy(Kts(s), c.Kn + chh * 64 * K, tid);
        if (fo) {
            pk.copy(Qts(s), c.Qn + chh * 64 * K, tid);
            pp.copy(Pts(s), c.P + chh * 64 * 64, tid);
        }
        pv.copy(Uvs(s), c.Uv + chh * 64 * V + vb * 64, tid);
        if (tid < 16) cp_async16(Gts(s) + 4 * tid, c.G + chh * 64 + 4 * tid, true);
    };

    /* S^T: S[n][e] = state row d = 8 n + 2 t4 + (e & 1), column col0 + g4 + 8 (e >> 1), in units 2^cr[e >> 1] */
    float S[NT][4];
    int cr[2] = {0, 0};
    {
        const float m = wgs_init(S, c.s0 ? c.s0 + ((size_t)doc * Hv + h) * K * V : nullptr, K, V, col0, wok);
        if (lane == 0) redS[4 + w] = m; /* slot (-1) & 1 */
    }
    if (cnt > 0) {
        flag_wait(c.flP + (size_t)first * Hv + h, 1);
        load(0, first);
        cp_async_commit();
    }
    int eUv_next = cnt > 0 ? ld_l2(c.eUv + ((size_t)first * Hv + h) * nvb + vb) : 0;
    float X[8][4]; /* X^T, then U^T (chunk rows j = 8 n + 2 t4 + (e & 1)) */
    float O[8][4]; /* O^T (the same layout; with OUT) */
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) X[n][e] = O[n][e] = 0.f;
    SPHASE_DECL;
    for (int it = 0; it < cnt; it++) {
        const int ci = first + it, s = it & 1;
        const size_t chh = (size_t)ci * Hv + h;
        const int eUv = eUv_next;
        SPHASE_MARK(0, 0);
        cp_async_wait<0>();
        if (OH_GDN_TMA) mbar_wait(mb + s, (uint32_t)(it >> 1) & 1u);
        if (OH_GDN_TMA_ST) bulk_stores_done<2>(); /* chunk it - 2's, before the barrier (the signaller reports it) */
        fence_async_smem();
        BAR_STEP(); /* this chunk's tiles are in; the previous step is done everywhere */
        SPHASE_MARK(0, 1);
        if (OH_GDN_GTAB) gtab[tid] = tid < 64 ? fexp(Gts(s)[tid]) : fexp(Gts(s)[63] - Gts(s)[tid - 64]);
        /* H = S0 as fp16 x 2^eH: the A operand of X^T */
        const int eH = scale_exp(max4(redS + 4 * ((it + 1) & 1)));
        uint32_t ah[KS][4];
        const float f0 = exp2i(eH - cr[0]), f1 = exp2i(eH - cr[1]);
#pragma unroll
        for (int kk = 0; kk < KS; kk++) acc_to_a_f16(ah[kk], S[2 * kk], S[2 * kk + 1], f0, f1);
        {
            const uint64_t wd = wg_desc(Wts(s), 16, 1024);
            wg_fence_acc(X);
            wg_fence_regs(ah);
            if constexpr (C::OUT) wg_fence_acc(O);
            wg_arrive();
#pragma unroll
            for (int kk = 0; kk < KT; kk++)
                wgmma_rs<64, 0, true>(X, ah[kk], wg_desc_add(wd, (kk >> 2) * TILE * 2 + 32 * (kk & 3)), kk > 0);
            if constexpr (C::OUT) if (fo) { /* O^T = S0^T Qn^T (x 2^eH) */
                const uint64_t qd = wg_desc(Qts(s), 16, 1024);
#pragma unroll
                for (int kk = 0; kk < KT; kk++)
                    wgmma_rs<64, 0, true>(O, ah[kk], wg_desc_add(qd, (kk >> 2) * TILE * 2 + 32 * (kk & 3)), kk > 0);
            }
            wg_commit();
        }
        /* meanwhile: the next chunk's copies, H's stores, the gates */
        if (it + 1 < cnt) {
            if (!OH_GDN_TMA) load(s ^ 1, ci + 1);
            cp_async_commit();
            eUv_next = ld_l2(c.eUv + (chh + Hv) * nvb + vb);
        }
        SPHASE_MARK(0, 2);
        if (tid == 0) c.eH[chh * nvb + vb] = eH;
        if (wok) wgs_store<KS>(S, f0, f1, OH_GDN_TMA_ST ? sth : stw, c.H + chh * K * V + col0, K, V, &c.tm[TM_H], col0, (int)chh * K);
        const float *Gt = Gts(s);
        const float glast = Gt[63], iH = exp2i(-eH), iUv = exp2i(-eUv);
        float gm[8][2], dl[8][2]; /* gam_j 2^-eH and del_j at this thread's chunk rows j = 8 n + 2 t4 + i */
        if (OH_GDN_GTAB) wg_bar(); /* the gate table is in */
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int j = 8 * n + 2 * t4 + i;
                const float gj = Gt[j];
                gm[n][i] = (OH_GDN_GTAB ? gtab[j] : fexp(gj)) * iH;
                dl[n][i] = OH_GDN_GTAB ? gtab[64 + j] : fexp(glast - gj);
            }
        uint32_t uv[4][4]; /* Uv^T: uv[np][q] = n-tile 2 np + (q >> 1), rows +8 (q & 1) */
#pragma unroll
        for (int np = 0; np < 4; np++)
            ldsm_at<OH_GDN_TMA>(uv[np], Uvs(s), np);
        SPHASE_MARK(0, 3);
        wg_wait<0>();
        wg_fence_acc(X);
        SPHASE_MARK(0, 4);
        if constexpr (C::OUT) wg_fence_acc(O);
        /* U^T, its max, del o U per row */
        float mu = 0.f, md[2] = {0.f, 0.f}, mo[2] = {0.f, 0.f};
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const uint32_t p = uv[n >> 1][2 * (n & 1) + (e >> 1)];
                const float u = ((e & 1) ? h2f_hi(p) : h2f_lo(p)) * iUv - X[n][e] * gm[n][e & 1];
                X[n][e] = u;
                mu = fmaxf(mu, fabsf(u));
                mo[e >> 1] = fmaxf(mo[e >> 1], fabsf(u));
                md[e >> 1] = fmaxf(md[e >> 1], fabsf(u) * dl[n][e & 1]);
            }
        int ed[2], eo[2] = {0, 0};
#pragma unroll
        for (int i = 0; i < 2; i++) ed[i] = scale_exp(quad_max(md[i]));
        uint32_t ao[4][4]; /* U^T as fp16 x 2^eo (per row), the A of U^T P^T */
        if constexpr (C::OUT) if (fo) {
#pragma unroll
            for (int i = 0; i < 2; i++) eo[i] = scale_exp(quad_max(mo[i]));
            const float x0 = exp2i(eo[0]), x1 = exp2i(eo[1]);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) acc_to_a_f16(ao[kk], X[2 * kk], X[2 * kk + 1], x0, x1);
            /* O^T <- gam o O^T 2^-eH in units 2^eo */
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) O[n][e] *= gm[n][e & 1] * ((e >> 1) ? x1 : x0);
        }
        uint32_t au[4][4];
        {
            const float x0 = exp2i(ed[0]), x1 = exp2i(ed[1]);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                const int n0 = 2 * kk, n1 = 2 * kk + 1;
                au[kk][0] = pack_f16(X[n0][0] * dl[n0][0] * x0, X[n0][1] * dl[n0][1] * x0);
                au[kk][1] = pack_f16(X[n0][2] * dl[n0][0] * x1, X[n0][3] * dl[n0][1] * x1);
                au[kk][2] = pack_f16(X[n1][0] * dl[n1][0] * x0, X[n1][1] * dl[n1][1] * x0);
                au[kk][3] = pack_f16(X[n1][2] * dl[n1][0] * x1, X[n1][3] * dl[n1][1] * x1);
            }
        }
        /* S^T = e^{G_63} S^T + (del o U)^T Kn, the rows now in units 2^ed */
        {
            const float dec = fexp(glast);
            wgs_scale(S, dec * exp2i(ed[0] - cr[0]), dec * exp2i(ed[1] - cr[1]));
            cr[0] = ed[0];
            cr[1] = ed[1];
            const uint64_t kd = wg_desc(Kts(s), 8192, 1024);
            wg_fence_acc(S);
            wg_fence_regs(au);
            if constexpr (C::OUT) {
                wg_fence_acc(O);
                wg_fence_regs(ao);
            }
            wg_arrive();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wgmma_rs<NK, 1, true>(S, au[kk], wg_desc_add(kd, 2048 * kk), 1);
            if constexpr (C::OUT) if (fo) { /* O^T += U^T P^T */
                const uint64_t pd = wg_desc(Pts(s), 16, 1024);
#pragma unroll
                for (int kk = 0; kk < 4; kk++) wgmma_rs<64, 0, true>(O, ao[kk], wg_desc_add(pd, 32 * kk), 1);
            }
            wg_commit();
        }
        SPHASE_MARK(0, 5);
        /* meanwhile: U to global, fp16 x 2^eU, one exponent for the block's 64 columns */
        wg_store_chunk(X, mu, redU, c.eU + chh * nvb + vb, OH_GDN_TMA_ST ? stu : stw, c.U + chh * 64 * V + col0, V, wok,
                       &c.tm[TM_U], col0, (int)chh * 64);
        SPHASE_MARK(0, 6);
        wg_wait<0>();
        wg_fence_acc(S);
        if constexpr (C::OUT) wg_fence_acc(O);
        {
            const float m = wgs_absmax(S, cr);
            if (lane == 0) redS[4 * (it & 1) + w] = m;
        }
        SPHASE_MARK(0, 7);
        if constexpr (C::OUT) if (fo && wok) { /* O (bf16) for the chunk's tokens */
            const Chunk ch = chunk_at(c, ci);
            const float o0 = exp2i(-eo[0]), o1 = exp2i(-eo[1]);
            if (OH_GDN_ST_STAGE) {
                uint32_t fr[4][4];
#pragma unroll
                for (int kk = 0; kk < 4; kk++) acc_to_a_bf16(fr[kk], O[2 * kk], O[2 * kk + 1], o0, o1);
                warp_store_tile<4>(stw, fr, c.out + ((size_t)ch.t0 * Hv + h) * V + col0, (size_t)Hv * V, ch.len);
            } else {
                uint16_t *Oc = c.out + ((size_t)(ch.t0 + g4) * Hv + h) * V + col0 + 2 * t4;
#pragma unroll
                for (int n = 0; n < 8; n++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        const float f = hf ? o1 : o0;
                        const uint32_t tq = mov_trans(pack_bf16(O[n][2 * hf] * f, O[n][2 * hf + 1] * f));
                        if (8 * n + g4 < ch.len) st32(Oc + (size_t)(8 * n) * Hv * V + 8 * hf, tq);
                    }
            }
        }
    }
    if (c.s_final && wok) wgs_final(S, cr, c.s_final + ((size_t)doc * Hv + h) * K * V, K, V, col0);
    if (OH_GDN_TMA_ST) bulk_stores_done<0>();
    BAR_STEP(); /* the signaller reports the last chunk(s) */
    trace_mark(c, true);
#undef Wts
#undef Kts
#undef Qts
#undef Pts
#undef Uvs
#undef Gts
}

/* ------------------------------------------------------------------- k_out */

static size_t out_smem(int K) {
    return carve16((size_t)64 * (K + 8) * 2) + carve16((size_t)K * LD64 * 2) + 2 * carve16(64 * LD64 * 2);
}

static __global__ void __launch_bounds__(128) k_out(Ctx c) {
    /* chunk-major (it trails k_state_fwd); the V blocks of a chunk are adjacent */
    const int vb = blockIdx.x % c.nvb, h = (blockIdx.x / c.nvb) % c.Hv, ci = blockIdx.x / (c.nvb * c.Hv);
    if (ci >= c.tab[0]) return;
    trace_mark(c, false);
    flag_wait(c.flS + (size_t)ci * c.Hv + h, c.nvb); /* every column block of the state (and k_prep) is done */
    const Chunk ch = chunk_at(c, ci);
    const int K = c.K, V = c.V, Hv = c.Hv, LDK = K + 8;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g4 = lane >> 2, t4 = lane & 3;
    const size_t chh = (size_t)ci * Hv + h;

    Carve cv{GDN_SMEM()};
    uint16_t *Qs = cv.take<uint16_t>(64 * LDK);
    uint16_t *Hs = cv.take<uint16_t>(K * LD64);
    uint16_t *Us = cv.take<uint16_t>(64 * LD64);
    uint16_t *Ps = cv.take<uint16_t>(64 * LD64);
    {
        const int k8 = K / 8;
        for (int i = tid; i < 64 * k8; i += 128) {
            const int r = i / k8, c8 = i % k8;
            cp_async16(Qs + r * LDK + c8 * 8, c.Qn + (chh * 64 + r) * K + c8 * 8, true);
        }
        for (int i = tid; i < K * 8; i += 128) {
            const int r = i >> 3, c8 = i & 7, col = vb * 64 + c8 * 8;
            const bool ok = col < V;
            cp_async16(Hs + r * LD64 + c8 * 8, ok ? c.H + (chh * K + r) * V + col : c.H, ok);
        }
        for (int i = tid; i < 64 * 8; i += 128) {
            const int r = i >> 3, c8 = i & 7, col = vb * 64 + c8 * 8;
            const bool ok = col < V;
            cp_async16(Us + r * LD64 + c8 * 8, ok ? c.U + (chh * 64 + r) * V + col : c.U, ok);
            cp_async16(Ps + r * LD64 + c8 * 8, c.P + (chh * 64 + r) * 64 + c8 * 8, true);
        }
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
    }
    /* O = gam o (Qn S0) + P U, the two products in their own units */
    float O1[8][4], O2[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) O1[n][e] = O2[n][e] = 0.f;
    for (int kt = 0; kt < K / 16; kt++) {
        uint32_t a[4];
        ldsm4(a, a_mk(Qs, LDK, 16 * w, 16 * kt, lane));
#pragma unroll
        for (int np = 0; np < 4; np++) {
            uint32_t b[4];
            ldsm4t(b, b_kn(Hs, LD64, 16 * np, 16 * kt, lane));
            mma_f16(O1[2 * np], a, b[0], b[1]);
            mma_f16(O1[2 * np + 1], a, b[2], b[3]);
        }
    }
#pragma unroll
    for (int kt = 0; kt < 4; kt++) {
        if (kt <= w) {
            uint32_t a[4];
            ldsm4(a, a_mk(Ps, LD64, 16 * w, 16 * kt, lane));
#pragma unroll
            for (int np = 0; np < 4; np++) {
                uint32_t b[4];
                ldsm4t(b, b_kn(Us, LD64, 16 * np, 16 * kt, lane));
                mma_f16(O2[2 * np], a, b[0], b[1]);
                mma_f16(O2[2 * np + 1], a, b[2], b[3]);
            }
        }
    }
    const float iH = exp2i(-ld_l2(c.eH + chh * c.nvb + vb)), iU = exp2i(-ld_l2(c.eU + chh * c.nvb + vb));
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        const int i = 16 * w + g4 + 8 * hf;
        const float gi = __expf(ld_l2(c.G + chh * 64 + i)) * iH;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            const int col = vb * 64 + 8 * n + 2 * t4;
            if (i < ch.len && col < V)
                st32(c.out + ((size_t)(ch.t0 + i) * Hv + h) * V + col,
                     pack_bf16(O1[n][2 * hf] * gi + O2[n][2 * hf] * iU, O1[n][2 * hf + 1] * gi + O2[n][2 * hf + 1] * iU));
        }
    }
    trace_mark(c, true);
}

/* ------------------------------------------------------------- k_dout_prep */

/* dO of one chunk as fp16 x 2^edO per 64 columns (rows past the chunk zero). */
/* Blocks take (chunk, head) items with a grid stride, last chunk first
 * (k_state_bwd takes them in reverse); the grid is smaller than the item
 * count when overlapped (see "Overlap"). */
static __global__ void __launch_bounds__(128) k_dout_prep(Ctx c) {
    allow_dependents();
    __shared__ float red[4][4];
    __shared__ float sc[4];
    const int nitems = c.tab[0] * c.Hv;
    trace_mark(c, false);
    for (int item = blockIdx.x; item < nitems; item += gridDim.x) {
        const int ci = c.tab[0] - 1 - item / c.Hv, h = item % c.Hv;
        const Chunk ch = chunk_at(c, ci);
        const int V = c.V, Hv = c.Hv, v8 = V / 8, nvb = c.nvb;
        const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
        const size_t chh = (size_t)ci * Hv + h;
        float m[4] = {0.f, 0.f, 0.f, 0.f};
        for (int i = tid; i < ch.len * v8; i += 128) {
            const int r = i / v8, c8 = i % v8;
            const uint4 x = *reinterpret_cast<const uint4 *>(c.dout + ((size_t)(ch.t0 + r) * Hv + h) * V + c8 * 8);
            const float mx = fmaxf(fmaxf(fmaxf(fabsf(bf2f_lo(x.x)), fabsf(bf2f_hi(x.x))),
                                         fmaxf(fabsf(bf2f_lo(x.y)), fabsf(bf2f_hi(x.y)))),
                                   fmaxf(fmaxf(fabsf(bf2f_lo(x.z)), fabsf(bf2f_hi(x.z))),
                                         fmaxf(fabsf(bf2f_lo(x.w)), fabsf(bf2f_hi(x.w)))));
#pragma unroll
            for (int b = 0; b < 4; b++)
                if (b == (c8 >> 3)) m[b] = fmaxf(m[b], mx);
        }
#pragma unroll
        for (int b = 0; b < 4; b++) {
            const float x = warp_max(m[b]);
            if (lane == 0) red[w][b] = x;
        }
        __syncthreads();
        if (tid < nvb) {
            const int e = scale_exp(fmaxf(fmaxf(red[0][tid], red[1][tid]), fmaxf(red[2][tid], red[3][tid])));
            sc[tid] = exp2i(e);
            c.edO[chh * nvb + tid] = e;
        }
        __syncthreads();
        for (int i = tid; i < 64 * v8; i += 128) {
            const int r = i / v8, c8 = i % v8;
            uint4 y = {0u, 0u, 0u, 0u};
            if (r < ch.len) {
                const uint4 x = *reinterpret_cast<const uint4 *>(c.dout + ((size_t)(ch.t0 + r) * Hv + h) * V + c8 * 8);
                y = bf16x8_to_f16(x, sc[c8 >> 3]);
            }
            *reinterpret_cast<uint4 *>(c.dOh + (chh * 64 + r) * V + c8 * 8) = y;
        }
        __syncthreads(); /* also: red and sc are free for the next item */
        if (tid == 0) flag_signal(c.flD + chh);
    }
    trace_mark(c, true);
}

/* ------------------------------------------------------------- k_state_bwd */

template <int KT> static size_t state_bwd_smem() {
    typedef StateCfg<KT> C;
    return carve16((size_t)C::STAGES * (3 * 64 * C::LDK + 2 * 64 * LD64 + 128) * 2) +
           carve16((size_t)C::NC * C::KP * C::LDS * 2) + 2 * carve16((size_t)C::NC * 64 * C::LDS * 2) +
           carve16(5 * C::NW * 4) + (C::XW ? carve16(64 * 64 * 2) : 0); /* the signaller's dO buffer */
}

template <int KT> static __global__ void __maxnreg__(StateCfg<KT>::MAXREG) k_state_bwd(Ctx c) {
    typedef StateCfg<KT> C;
    constexpr int NTW = C::NTW, NW = C::NW, NC = C::NC, MH = C::MH, KT0 = C::KT0, MX = C::MX;
    constexpr int KP = C::KP, LDK = C::LDK, WC = C::WC, LDS = C::LDS, NST = C::STAGES;
    constexpr int STG = 3 * 64 * LDK + 2 * 64 * LD64 + 128; /* stage: Kn, Wu, Qn [64][LDK], P, dO [64][LD64], G [64] fp32 */
    const int vb = blockIdx.x, h = blockIdx.y, doc = blockIdx.z;
    const int K = c.K, V = c.V, Hv = c.Hv, nvb = c.nvb;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g4 = lane >> 2, t4 = lane & 3;
    const int cg = w % NC, mh = w / NC;
    const int ms0 = mh * KT0, KTm = imin(KT0, KT - ms0 > 0 ? KT - ms0 : 0); /* state m-tiles [ms0, ms0 + KTm) */
    const int mx0 = mh * MX;                              /* and chunk-row m-tiles [mx0, mx0 + MX) */
    constexpr bool FULL = KT0 * MH == KT;
    const int *dt = c.tab + 4 + 4 * c.ncmax + 2 * doc;
    const int first = dt[0], cnt = dt[1];
    const int colw = vb * 64 + cg * WC;
    const bool wok = colw < V;

    Carve cv{GDN_SMEM()};
    uint16_t *stg = cv.take<uint16_t>(NST * STG);
    uint16_t *dHs = cv.take<uint16_t>(NC * KP * LDS) + cg * KP * LDS; /* fp16 x 2^edH */
    uint16_t *dUs = cv.take<uint16_t>(NC * 64 * LDS) + cg * 64 * LDS; /* -Y, fp16 x 2^ey (per group) */
    uint16_t *Zs = cv.take<uint16_t>(NC * 64 * LDS) + cg * 64 * LDS;  /* gam o dO, fp16 x 2^eZ (per group) */
    float *redS = cv.take<float>(5 * NW), *redU = redS + 2 * NW, *redD = redS + 3 * NW, *redZ = redS + 4 * NW;
    allow_dependents();
    trace_mark(c, false);
    const StateSig sg{c.flD, c.flB, first + cnt - 1, -1, cnt, Hv, h};
    if (C::XW && w == NW) { /* with the signaller warp it prepares dO itself (no k_dout_prep) */
        if (c.self_prep)
            state_signaller_bwd<NST == 1 ? 3 : 2>(c, sg, vb, cv.take<uint16_t>(64 * 64));
        else
            state_signaller<NST == 1 ? 3 : 2>(sg);
        return;
    }
#define Kns(s) (stg + (s) * STG)
#define Ws(s) (stg + (s) * STG + 64 * LDK)
#define Qns(s) (stg + (s) * STG + 2 * 64 * LDK)
#define Ps(s) (stg + (s) * STG + 3 * 64 * LDK)
#define dOs(s) (stg + (s) * STG + 3 * 64 * LDK + 64 * LD64)
#define Gts(s) reinterpret_cast<float *>(stg + (s) * STG + 3 * 64 * LDK + 2 * 64 * LD64)

    TilePlan<64, KP / 8, 32 * NW> pk; /* Kn, Wu, Qn */
    TilePlan<64, 8, 32 * NW> pp, pv;  /* P; dO (this block's 64 columns) */
    pk.init(tid, LDK, K, K);
    pp.init(tid, LD64, 64, 64);
    pv.init(tid, LD64, V, V - vb * 64);
    auto load = [&](int s, int ci) {
        const size_t chh = (size_t)ci * Hv + h;
        pk.copy(Kns(s), c.Kn + chh * 64 * K, tid);
        pk.copy(Ws(s), c.Wu + chh * 64 * K, tid);
        pk.copy(Qns(s), c.Qn + chh * 64 * K, tid);
        pp.copy(Ps(s), c.P + chh * 64 * 64, tid);
        pv.copy(dOs(s), c.dOh + chh * 64 * V + vb * 64, tid);
        if (tid < 16) cp_async16(Gts(s) + 4 * tid, c.G + chh * 64 + 4 * tid, true);
    };

    float dH[KT0][NTW][4];
    float m = 0.f;
#pragma unroll
    for (int i = 0; i < KT0; i++)
#pragma unroll
        for (int nt = 0; nt < NTW; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int d = 16 * (ms0 + i) + g4 + 8 * (e >> 1), col = colw + 8 * nt + 2 * t4 + (e & 1);
                dH[i][nt][e] = (c.ds_final && wok && ROWOK(i) && d < K)
                                   ? c.ds_final[(((size_t)doc * Hv + h) * K + d) * V + col]
                                   : 0.f;
                m = fmaxf(m, fabsf(dH[i][nt][e]));
            }
    m = warp_max(m);
    if (lane == 0) redS[NW + w] = m;

    if (C::XW && c.self_prep)
        BAR_STEP(); /* the signaller has prepared the first chunk's dO */
    else if (cnt > 0)
        flag_wait(c.flD + (size_t)(first + cnt - 1) * Hv + h, 1);
    if (!C::XW && tid == 0) sig_pre(sg);
    if (NST == 2 && cnt > 0) {
        load(0, first + cnt - 1);
        cp_async_commit();
    }
    for (int it = 0; it < cnt; it++) {
        const int ci = first + cnt - 1 - it, s = NST == 2 ? (it & 1) : 0;
        const size_t chh = (size_t)ci * Hv + h;
        if (NST == 1) {
            __syncthreads();
            load(0, ci);
            cp_async_commit();
        }
        cp_async_wait<0>();
        BAR_STEP();
        if (NST == 2 && it + 1 < cnt) {
            load(s ^ 1, ci - 1);
            cp_async_commit();
        }
        /* dH (gradient of the state leaving this chunk) -> fp16 x 2^edH, global and smem */
        m = 0.f;
        for (int i = 0; i < NW; i++) m = fmaxf(m, redS[((it + 1) & 1) * NW + i]);
        const int edH = scale_exp(m);
        const float sdH = exp2i(edH);
        if (tid == 0) c.edH[chh * nvb + vb] = edH;
        uint16_t *dHc = c.dH + chh * K * V + (size_t)(16 * ms0 + g4) * V + colw + 2 * t4;
#pragma unroll
        for (int i = 0; i < KT0; i++)
            if (ROWOK(i)) {
#pragma unroll
                for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        const int d = 16 * (ms0 + i) + g4 + 8 * hf, lc = 8 * nt + 2 * t4;
                        const uint32_t p = pack_f16(dH[i][nt][2 * hf] * sdH, dH[i][nt][2 * hf + 1] * sdH);
                        st32(dHs + d * LDS + lc, p);
                        if (wok && d < K) st32(dHc + (16 * i + 8 * hf) * V + 8 * nt, p);
                    }
            }
        /* Z = gam o dO (the group's columns, this part's rows), fp16 with the group's exponent */
        const float *Gt = Gts(s);
        const float glast = Gt[63], eg = fexp(glast);
        const int edO = ld_l2(c.edO + chh * nvb + vb);
        constexpr int ZR = 64 / MH, ZI = ZR * (WC / 2) / 32; /* rows of Z per part; column pairs per lane */
        static_assert(ZI * 32 == ZR * (WC / 2), "Z pairs per lane");
        float mz = 0.f, zg[ZI];
        uint32_t zx[ZI];
#pragma unroll
        for (int k = 0; k < ZI; k++) { /* pair i = lane + 32 k: row mh ZR + i / (WC / 2), columns 2 (i % (WC / 2)) */
            const int i = lane + 32 * k, r = mh * ZR + i / (WC / 2), cc = 2 * (i % (WC / 2));
            zx[k] = ld32(dOs(s) + r * LD64 + cg * WC + cc);
            zg[k] = fexp(Gt[r]);
            mz = fmaxf(mz, zg[k] * fmaxf(fabsf(h2f_lo(zx[k])), fabsf(h2f_hi(zx[k]))));
        }
        mz = warp_max(mz);
        if (MH > 1 && lane == 0) redZ[w] = mz;
        pair_bar<MH>(cg); /* dHs and redZ are in */
        if (MH > 1) {
#pragma unroll
            for (int p = 0; p < MH; p++) mz = fmaxf(mz, redZ[cg + p * NC]);
        }
        const int eZ = scale_exp(mz * exp2i(-edO));
        {
            const float sz = exp2i(eZ - edO);
#pragma unroll
            for (int k = 0; k < ZI; k++) {
                const int i = lane + 32 * k, r = mh * ZR + i / (WC / 2), cc = 2 * (i % (WC / 2));
                const float f = zg[k] * sz;
                st32(Zs + r * LDS + cc, pack_f16(h2f_lo(zx[k]) * f, h2f_hi(zx[k]) * f));
            }
        }
        /* dU_O = P^T dO,  dU_H = Kn dH (this part's chunk rows) */
        float dU1[MX][NTW][4], dU2[MX][NTW][4];
#pragma unroll
        for (int i = 0; i < MX; i++)
#pragma unroll
            for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) dU1[i][nt][e] = dU2[i][nt][e] = 0.f;
#pragma unroll
        for (int kt = 0; kt < 4; kt++) {
            if (kt >= mx0) { /* P^T is upper triangular: rows 16 (mx0 + i) need k-tiles >= mx0 + i */
                uint32_t b[4];
                ld_b_kn<NTW>(b, dOs(s), LD64, cg * WC, 16 * kt, lane);
#pragma unroll
                for (int i = 0; i < MX; i++) {
                    if (mx0 + i <= kt) {
                        uint32_t a[4];
                        ldsm4t(a, a_km(Ps(s), LD64, 16 * (mx0 + i), 16 * kt, lane));
#pragma unroll
                        for (int nt = 0; nt < NTW; nt++) mma_f16(dU1[i][nt], a, b[2 * nt], b[2 * nt + 1]);
                    }
                }
            }
        }
        rows_add_ab<KT>(dU2, Kns(s), LDK, dHs, LDS, mx0, lane);
        /* dU = dU_O + del o dU_H (kept for k_chunk_bwd);  Y = gam o dU_O + e^{G_63} dU_H */
        const float idO = exp2i(-edO), idH = exp2i(-edH);
        float mu = 0.f, my = 0.f;
#pragma unroll
        for (int i = 0; i < MX; i++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int j = 16 * (mx0 + i) + g4 + 8 * hf;
                const float gj = fexp(Gt[j]), dj = fexp(glast - Gt[j]);
#pragma unroll
                for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const float uo = dU1[i][nt][2 * hf + e] * idO, uh = dU2[i][nt][2 * hf + e] * idH;
                        const float du = uo + dj * uh, y = gj * uo + eg * uh;
                        dU1[i][nt][2 * hf + e] = du;
                        dU2[i][nt][2 * hf + e] = y;
                        mu = fmaxf(mu, fabsf(du));
                        my = fmaxf(my, fabsf(y));
                    }
            }
        mu = warp_max(mu);
        if (lane == 0) redU[w] = mu;
        my = warp_max(my);
        if (MH > 1 && lane == 0) redD[w] = my;
        pair_bar<MH>(cg); /* Zs and redD are in */
        /* dH = e^{G_63} dH + Qn^T Z (in units of 2^eZ) */
        const float decay = eg * exp2i(eZ);
        scale_tiles(dH, decay);
        part_add_atb<FULL>(dH, Qns(s), LDK, Zs, LDS, ms0, KTm, lane);
        if (MH > 1) {
#pragma unroll
            for (int p = 0; p < MH; p++) my = fmaxf(my, redD[cg + p * NC]);
        }
        const int ey = scale_exp(my);
        {
            const float sy = exp2i(ey);
#pragma unroll
            for (int i = 0; i < MX; i++)
#pragma unroll
                for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        const int j = 16 * (mx0 + i) + g4 + 8 * hf, lc = 8 * nt + 2 * t4;
                        st32(dUs + j * LDS + lc,
                             pack_f16(dU2[i][nt][2 * hf] * sy, dU2[i][nt][2 * hf + 1] * sy) ^ 0x80008000u);
                    }
        }
        pair_bar<MH>(cg); /* dUs is in */
        /* dH -= Wu^T Y, back to true units */
        const float r1 = exp2i(ey - eZ), iY = exp2i(-ey);
        scale_tiles(dH, r1);
        part_add_atb<FULL>(dH, Ws(s), LDK, dUs, LDS, ms0, KTm, lane);
        m = 0.f;
#pragma unroll
        for (int i = 0; i < KT0; i++)
#pragma unroll
            for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    dH[i][nt][e] *= iY;
                    m = fmaxf(m, fabsf(dH[i][nt][e]));
                }
        m = warp_max(m);
        if (lane == 0) redS[(it & 1) * NW + w] = m;
        /* dU -> global (in the Uv buffer), fp16 x 2^edU with one exponent for the block */
        if (!C::XW && tid == 0) sig_step(sg, it);
        BAR_STEP();
        m = 0.f;
        for (int i = 0; i < NW; i++) m = fmaxf(m, redU[i]);
        const int edU = scale_exp(m);
        const float sdU = exp2i(edU);
        if (tid == 0) c.eUv[chh * nvb + vb] = edU;
        if (wok) {
            uint16_t *dUc = c.Uv + chh * 64 * V + (size_t)(16 * mx0 + g4) * V + colw + 2 * t4;
#pragma unroll
            for (int i = 0; i < MX; i++)
#pragma unroll
                for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                    for (int hf = 0; hf < 2; hf++) {
                        st32(dUc + (16 * i + 8 * hf) * V + 8 * nt,
                             pack_f16(dU1[i][nt][2 * hf] * sdU, dU1[i][nt][2 * hf + 1] * sdU));
                    }
        }
    }
    if (c.ds0 && wok) {
#pragma unroll
        for (int i = 0; i < KT0; i++)
#pragma unroll
            for (int nt = 0; nt < NTW; nt++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int d = 16 * (ms0 + i) + g4 + 8 * (e >> 1), col = colw + 8 * nt + 2 * t4 + (e & 1);
                    if (ROWOK(i) && d < K) c.ds0[(((size_t)doc * Hv + h) * K + d) * V + col] = dH[i][nt][e];
                }
    }
    BAR_STEP(); /* the signaller reports the last chunk */
    if (!C::XW && tid == 0) sig_post(sg);
    trace_mark(c, true);
#undef Kns
#undef Ws
#undef Qns
#undef Ps
#undef dOs
#undef Gts
#undef ROWOK
}

/* ------------------------------------------------- k_state_bwd on wgmma (K <= 128) */

/* -DOH_GDN_SB_WG=0: the mma.sync k_state_bwd for every K (sandbox A/B). */
#ifndef OH_GDN_SB_WG
#define OH_GDN_SB_WG 1
#endif
/* The reverse recurrence the same way as k_state_fwd_wg: dH^T [64 columns][NK]
 * in the accumulators.  Per chunk (last first):
 *   dU2^T = dH^T Kn^T       A: dH^T as the fp16 x 2^edH stored as dH; B: Kn tiles (K-major)
 *   dU1^T = dO^T P          A: dO^T by ldmatrix.trans from the dO tile; B: P (MN-major)
 *   dU = dU1 + del o dU2 (stored for k_chunk_bwd),  Y = gam o dU1 + e^{G_63} dU2,  Z = gam o dO
 *   dH^T = e^{G_63} dH^T + [Z^T | -Y^T] [Qn ; Wu]
 *                           one product of k = 128 (Qn, Wu tiles MN-major), its A
 *                           from registers with one exponent per row for Z and Y. */
template <int KT> struct StateBwdWgCfg {
    static constexpr int NK = StateWgCfg<KT>::NK, NT = NK / 8, KS = NK / 16, NKT = (NK + 63) / 64;
    static constexpr int TILE = 64 * 64;
    /* stage (elements): Kn, Wu, Qn tiles, P tile, dO [64][LD64] (with OH_GDN_TMA a swizzled [64][64] tile in
     * that space), G (64 fp32), in a 1024-byte multiple */
    static constexpr int STG = (3 * NKT * TILE * 2 + TILE * 2 + 64 * LD64 * 2 + 256 + 1023) / 1024 * 512;
};
template <int KT> static size_t state_bwd_wg_smem() {
    return 1024 + (size_t)2 * StateBwdWgCfg<KT>::STG * 2 + carve16(12 * 4) + carve16(128 * 4) + carve16(64 * 64 * 2) +
           carve16(st_stage_elems<KT>() * 2) + carve16(2 * 8) + (OH_GDN_TMA_ST ? (size_t)4 * (128 + 64) * 16 * 2 : 0);
}

template <int KT> static __global__ void __launch_bounds__(160, 1) k_state_bwd_wg(const __grid_constant__ Ctx c) {
    typedef StateBwdWgCfg<KT> C;
    constexpr int NK = C::NK, NT = C::NT, KS = C::KS, NKT = C::NKT, TILE = C::TILE, STG = C::STG;
    const int vb = blockIdx.x, h = blockIdx.y, doc = blockIdx.z;
    const int K = c.K, V = c.V, Hv = c.Hv, nvb = c.nvb;
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, t4 = lane & 3;
    const int *dt = c.tab + 4 + 4 * c.ncmax + 2 * doc;
    const int first = dt[0], cnt = dt[1];
    const int col0 = vb * 64 + 16 * w;
    const bool wok = col0 < V;

    Carve cv{GDN_SMEM()};
    cv.p += (1024u - (smem_u32(cv.p) & 1023u)) & 1023u;
    uint16_t *stg = cv.take<uint16_t>(2 * STG);
    /* OH_GDN_TMA_ST: the warp's areas for dH ([NK][16]) and dU ([64][16]) */
    uint16_t *sth = cv.take<uint16_t>(OH_GDN_TMA_ST ? 4 * 128 * 16 : 0) + (size_t)(w & 3) * 128 * 16;
    uint16_t *stu = cv.take<uint16_t>(OH_GDN_TMA_ST ? 4 * 64 * 16 : 0) + (size_t)(w & 3) * 64 * 16;
    float *redS = cv.take<float>(12), *redU = redS + 8;
    uint16_t *stw = cv.take<uint16_t>(st_stage_elems<KT>()) + (size_t)(w & 3) * (st_stage_elems<KT>() / 4); /* OH_GDN_ST_STAGE */
    float *gtab = cv.take<float>(128); /* OH_GDN_GTAB: e^{G_j}, e^{G_63 - G_j} */
    uint64_t *mb = cv.take<uint64_t>(2); /* OH_GDN_TMA: a stage's copies landed */
    allow_dependents();
    trace_mark(c, false);
    const StateSig sg{c.flD, c.flB, first + cnt - 1, -1, cnt, Hv, h};
#define Kts(s) (stg + (s) * STG)
#define Wts(s) (stg + (s) * STG + NKT * TILE)
#define Qts(s) (stg + (s) * STG + 2 * NKT * TILE)
#define Pts(s) (stg + (s) * STG + 3 * NKT * TILE)
#define dOs(s) (stg + (s) * STG + 3 * NKT * TILE + TILE)
#define Gts(s) reinterpret_cast<float *>(stg + (s) * STG + 3 * NKT * TILE + TILE + 64 * LD64)
    /* OH_GDN_TMA: chunk ci's stage s by bulk copies (one thread) */
    auto tma_load = [&](int s, int ci) {
        const size_t chh = (size_t)ci * Hv + h;
        uint16_t *const kt[3] = {Kts(s), Wts(s), Qts(s)};
        const int km[3] = {TM_KN, TM_WU, TM_QN};
        tma_stage<NKT>(c, mb + s, (int)chh * 64, kt, km, 3, Pts(s), dOs(s), TM_DO, vb * 64, Gts(s), (int)chh);
    };
    if (w == 4) { /* with OH_GDN_TMA the signaller loads chunk it + 1 after step it's barrier */
        auto issue = [&](int it) {
            if (OH_GDN_TMA && it + 1 < cnt) tma_load((it + 1) & 1, first + cnt - 2 - it);
        };
        if (c.self_prep)
            state_signaller_bwd<1, OH_GDN_TMA_ST ? 2 : 1>(c, sg, vb, cv.take<uint16_t>(64 * 64), issue);
        else
            state_signaller<1, OH_GDN_TMA_ST ? 2 : 1>(sg, issue);
        return;
    }
    TilePlan<64, NK / 8, 128> pk; /* [64][K] rows into swizzled tiles, columns [K, NK) zero */
    TilePlan<64, 8, 128> pp, pv;
    pk.init_sw(tid, K, K);
    pp.init_sw(tid, 64, 64);
    pv.init(tid, LD64, V, V - vb * 64);
    if (OH_GDN_TMA) stage_bars_init(mb);
    auto load = [&](int s, int ci) {
        const size_t chh = (size_t)ci * Hv + h;
        if (OH_GDN_TMA) { /* the first chunk only (then the signaller) */
            if (tid == 0) tma_load(s, ci);
            return;
        }
        pk.copy(Kts(s), c.Kn + chh * 64 * K, tid);
        pk.copy(Wts(s), c.Wu + chh * 64 * K, tid);
        pk.copy(Qts(s), c.Qn + chh * 64 * K, tid);
        pp.copy(Pts(s), c.P + chh * 64 * 64, tid);
        pv.copy(dOs(s), c.dOh + chh * 64 * V + vb * 64, tid);
        if (tid < 16) cp_async16(Gts(s) + 4 * tid, c.G + chh * 64 + 4 * tid, true);
    };

    /* dH^T: S[n][e] = row d = 8 n + 2 t4 + (e & 1) of dH, column col0 + g4 + 8 (e >> 1), in units 2^cr[e >> 1] */
    float S[NT][4];
    int cr[2] = {0, 0};
    {
        const float m = wgs_init(S, c.ds_final ? c.ds_final + ((size_t)doc * Hv + h) * K * V : nullptr, K, V, col0, wok);
        if (lane == 0) redS[4 + w] = m;
    }
    if (c.self_prep)
        BAR_STEP(); /* the signaller has prepared the first chunk's dO */
    else if (cnt > 0)
        flag_wait(c.flD + (size_t)(first + cnt - 1) * Hv + h, 1);
    if (cnt > 0) {
        load(0, first + cnt - 1);
        cp_async_commit();
    }
    float U1[8][4], U2[8][4]; /* dU1^T, dU2^T; then dU^T and Y^T (chunk rows j = 8 n + 2 t4 + (e & 1)) */
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) U1[n][e] = U2[n][e] = 0.f;
    SPHASE_DECL;
    for (int it = 0; it < cnt; it++) {
        const int ci = first + cnt - 1 - it, s = it & 1;
        const size_t chh = (size_t)ci * Hv + h;
        SPHASE_MARK(1, 0);
        cp_async_wait<0>();
        if (OH_GDN_TMA) mbar_wait(mb + s, (uint32_t)(it >> 1) & 1u);
        if (OH_GDN_TMA_ST) bulk_stores_done<2>(); /* chunk it - 2's, before the barrier (the signaller reports it) */
        fence_async_smem();
        BAR_STEP();
        SPHASE_MARK(1, 1);
        if (OH_GDN_GTAB) gtab[tid] = tid < 64 ? fexp(Gts(s)[tid]) : fexp(Gts(s)[63] - Gts(s)[tid - 64]);
        const int edH = scale_exp(max4(redS + 4 * ((it + 1) & 1)));
        uint32_t ah[KS][4], ao[4][4];
        const float f0 = exp2i(edH - cr[0]), f1 = exp2i(edH - cr[1]);
#pragma unroll
        for (int kk = 0; kk < KS; kk++) acc_to_a_f16(ah[kk], S[2 * kk], S[2 * kk + 1], f0, f1);
#pragma unroll
        for (int kk = 0; kk < 4; kk++)
            ldsm_at<OH_GDN_TMA>(ao[kk], dOs(s), kk);
        {
            const uint64_t kd = wg_desc(Kts(s), 16, 1024), pd = wg_desc(Pts(s), 8192, 1024);
            wg_fence_acc(U1);
            wg_fence_acc(U2);
            wg_fence_regs(ah);
            wg_fence_regs(ao);
            wg_arrive();
#pragma unroll
            for (int kk = 0; kk < KT; kk++)
                wgmma_rs<64, 0, true>(U2, ah[kk], wg_desc_add(kd, (kk >> 2) * TILE * 2 + 32 * (kk & 3)), kk > 0);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wgmma_rs<64, 1, true>(U1, ao[kk], wg_desc_add(pd, 2048 * kk), kk > 0);
            wg_commit();
        }
        /* meanwhile: the next chunk's copies, dH's stores, the gates */
        if (it + 1 < cnt) {
            if (!OH_GDN_TMA) load(s ^ 1, ci - 1);
            cp_async_commit();
        }
        SPHASE_MARK(1, 2);
        if (tid == 0) c.edH[chh * nvb + vb] = edH;
        /* the stores convert the state again: ah belongs to the wgmma in flight
         * (its registers are not to be accessed before the wait) */
        if (wok) wgs_store<KS>(S, f0, f1, OH_GDN_TMA_ST ? sth : stw, c.dH + chh * K * V + col0, K, V, &c.tm[TM_DH], col0, (int)chh * K);
        const float *Gt = Gts(s);
        const float glast = Gt[63], eg = fexp(glast);
        const float idO = exp2i(-ld_l2(c.edO + chh * nvb + vb)), idH = exp2i(-edH);
        SPHASE_MARK(1, 3);
        wg_wait<0>();
        wg_fence_acc(U1);
        wg_fence_acc(U2);
        if (OH_GDN_GTAB) wg_bar(); /* the gate table is in */
        SPHASE_MARK(1, 4);
        /* dU, Y; the row maxima of |Z| and |Y| (one exponent per row for both); the
         * gates gam_j, del_j at this thread's chunk rows j = 8 n + 2 t4 + i worked out
         * where they are used (registers are short here) */
        float mu = 0.f, mr[2] = {0.f, 0.f};
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int j = 8 * n + 2 * t4 + i;
                const float gm = OH_GDN_GTAB ? gtab[j] : fexp(Gt[j]), dl = OH_GDN_GTAB ? gtab[64 + j] : fexp(glast - Gt[j]);
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int e = 2 * hf + i;
                    const float uo = U1[n][e] * idO, uh = U2[n][e] * idH;
                    const float du = uo + dl * uh, y = gm * uo + eg * uh;
                    const uint32_t p = ao[n >> 1][2 * (n & 1) + hf];
                    const float z = (i ? h2f_hi(p) : h2f_lo(p)) * idO * gm;
                    U1[n][e] = du;
                    U2[n][e] = y;
                    mu = fmaxf(mu, fabsf(du));
                    mr[hf] = fmaxf(mr[hf], fmaxf(fabsf(y), fabsf(z)));
                }
            }
        int er[2];
#pragma unroll
        for (int i = 0; i < 2; i++) er[i] = scale_exp(quad_max(mr[i]));
        uint32_t az[4][4], ay[4][4]; /* Z^T, -Y^T as fp16 x 2^er */
        {
            const float x0 = exp2i(er[0]), x1 = exp2i(er[1]);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
#pragma unroll
                for (int q = 0; q < 4; q++) { /* n-tile 2 kk + (q >> 1), rows +8 (q & 1) */
                    const int n = 2 * kk + (q >> 1);
                    const float zx = idO * ((q & 1) ? x1 : x0);
                    const int j = 8 * n + 2 * t4;
                    const float g0 = OH_GDN_GTAB ? gtab[j] : fexp(Gt[j]), g1 = OH_GDN_GTAB ? gtab[j + 1] : fexp(Gt[j + 1]);
                    az[kk][q] = pack_f16(h2f_lo(ao[kk][q]) * g0 * zx, h2f_hi(ao[kk][q]) * g1 * zx);
                }
                acc_to_a_f16(ay[kk], U2[2 * kk], U2[2 * kk + 1], -x0, -x1);
            }
        }
        /* dH^T = e^{G_63} dH^T + Z^T Qn - Y^T Wu, the rows now in units 2^er */
        {
            wgs_scale(S, eg * exp2i(er[0] - cr[0]), eg * exp2i(er[1] - cr[1]));
            cr[0] = er[0];
            cr[1] = er[1];
            const uint64_t qd = wg_desc(Qts(s), 8192, 1024), wd = wg_desc(Wts(s), 8192, 1024);
            wg_fence_acc(S);
            wg_fence_regs(az);
            wg_fence_regs(ay);
            wg_arrive();
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wgmma_rs<NK, 1, true>(S, az[kk], wg_desc_add(qd, 2048 * kk), 1);
#pragma unroll
            for (int kk = 0; kk < 4; kk++) wgmma_rs<NK, 1, true>(S, ay[kk], wg_desc_add(wd, 2048 * kk), 1);
            wg_commit();
        }
        SPHASE_MARK(1, 5);
        /* meanwhile: dU to global (the Uv buffer), fp16 x 2^edU, one exponent for the block */
        wg_store_chunk(U1, mu, redU, c.eUv + chh * nvb + vb, OH_GDN_TMA_ST ? stu : stw, c.Uv + chh * 64 * V + col0, V, wok,
                       &c.tm[TM_DU], col0, (int)chh * 64);
        SPHASE_MARK(1, 6);
        wg_wait<0>();
        wg_fence_acc(S);
        {
            const float m = wgs_absmax(S, cr);
            if (lane == 0) redS[4 * (it & 1) + w] = m;
        }
        SPHASE_MARK(1, 7);
    }
    if (c.ds0 && wok) wgs_final(S, cr, c.ds0 + ((size_t)doc * Hv + h) * K * V, K, V, col0);
    if (OH_GDN_TMA_ST) bulk_stores_done<0>();
    BAR_STEP(); /* the signaller reports the last chunk(s) */
    trace_mark(c, true);
#undef Kts
#undef Wts
#undef Qts
#undef Pts
#undef dOs
#undef Gts
}

/* ------------------------------------------------------------- k_chunk_bwd */

/* The V loop's products on wgmma (-DOH_GDN_CB_WGMMA=1): the stage tiles and T
 * are then 128-byte-swizzled [rows][64] tiles (wgmma.cuh), read by
 * descriptors; the accumulators keep the mma.sync layout, so the rest of the
 * kernel is the same.  0: mma.sync with ldmatrix from padded rows. */
#ifndef OH_GDN_CB_WGMMA
#define OH_GDN_CB_WGMMA 1
#endif
/* OH_GDN_CB_TMA (default 1, needs CB_WGMMA): thread 0 loads each V slice (dO,
 * U, dU, v, S0 and dH rows) by six bulk tensor copies completing on one
 * mbarrier a stage, OH_GDN_CB_NSTG stages (all issued after the flag, then
 * one slice as a stage frees), instead of 12-20 cp.async a thread.  The maps
 * (cb_maps) are made at launch: v's is the caller's tensor, [T][Hv][V] as
 * three dimensions, so its rows past the chunk (the next document's) are
 * loaded and masked where they are read; S0's and dH's are [nc Hv][K][V], so
 * the rows past K (a partial K block) read as zero.  H100, one call
 * (bench/runs/2026-12-07-cbtma): f+b 1.75 / 6.17 / 6.67 / 6.22 ms -> 1.74 /
 * 6.03 / 6.49 / 6.03 (two stages); three stages (every slice of V <= 192 at
 * once, K blocks <= 96) 1.74 / 6.03 / 6.61 / 6.09, V loop 10.4 us a block. */
#ifndef OH_GDN_CB_TMA
#define OH_GDN_CB_TMA 1
#endif
#ifndef OH_GDN_CB_NSTG
#define OH_GDN_CB_NSTG 2
#endif
#if OH_GDN_CB_TMA && !OH_GDN_CB_WGMMA
#error "OH_GDN_CB_TMA needs OH_GDN_CB_WGMMA"
#endif
#if OH_GDN_CB_TMA
#define CB_CTX const __grid_constant__ Ctx
#else
#define CB_CTX Ctx
#endif
/* KBT: 16-column tiles of the K block a block handles (K block = 16 KBT <= 128). */
template <int KBT> struct ChunkBwdCfg {
    static constexpr bool WG = OH_GDN_CB_WGMMA != 0, TMA = OH_GDN_CB_TMA != 0;
    static constexpr int KB = 16 * KBT, LDQ = KB + 8, NT = 2 * KBT;
    static constexpr int LDT = WG ? 64 : LD64; /* row stride of the stage tiles and T */
    static constexpr int STG = 4 * 64 * LDT + 2 * KB * LDT; /* stage: dO, U, dU, v [64][LDT]; S0, dH rows [KB][LDT] */
    static constexpr size_t POST = 2 * 64 * LD64 * 2 + 64 * (KB + 4) * 4; /* Ph, Zh, Xch */
    /* shared memory besides the stages and the mbarriers, in the order the kernel carves it (every piece a
     * multiple of 16 bytes): alignment slack, gates and rows (10 x 64 floats), colA / colB, red, Qs, Ks, T, P */
    static constexpr size_t BASE = (WG ? 1024 : 0) + 10 * 64 * 4 + 2 * 4 * 64 * 4 + 16 * 4 +
                                   2 * (size_t)64 * LDQ * 2 + 64 * LDT * 2 + 64 * LD64 * 2;
    /* stages: OH_GDN_CB_NSTG with CB_TMA where they fit with their mbarriers (K blocks of <= 96 for 3), else 2 */
    static constexpr int NSTG =
        TMA && BASE + (size_t)OH_GDN_CB_NSTG * STG * 2 + 32 /* up to 4 mbarriers */ <= 232448 ? OH_GDN_CB_NSTG : 2;
    static constexpr size_t STAGE_BYTES = NSTG * STG * 2 > POST ? NSTG * STG * 2 : POST;
    static constexpr size_t MBAR_BYTES = TMA ? (8 * NSTG + 15) / 16 * 16 : 0;
    static_assert((64 * LDQ * 2) % 16 == 0 && STAGE_BYTES % 16 == 0, "Carve's 16-byte pieces");
};

template <int KBT> static size_t chunk_bwd_smem() {
    typedef ChunkBwdCfg<KBT> C;
    return C::BASE + C::STAGE_BYTES + C::MBAR_BYTES;
}

template <int KBT> static __global__ void __launch_bounds__(256, 1) k_chunk_bwd(CB_CTX c) {
    typedef ChunkBwdCfg<KBT> C;
    constexpr int KB = C::KB, LDQ = C::LDQ, NT = C::NT, STG = C::STG, LDT = C::LDT, NSTG = C::NSTG;
    constexpr bool WG = C::WG, TMA = C::TMA;
    /* last chunk first (it trails k_state_bwd); the K blocks of a (chunk, head) are adjacent */
    const int kb = blockIdx.x % c.nkb, h = (blockIdx.x / c.nkb) % c.Hv;
    const int ci = c.ncmax - 1 - (int)(blockIdx.x / (c.nkb * c.Hv));
    if (ci >= c.tab[0]) return;
    trace_mark(c, false);
    PHASE_DECL;
    PHASE_MARK(0);
    const Chunk ch = chunk_at(c, ci);
    const int K = c.K, V = c.V, Hv = c.Hv, Hk = c.Hk, hk = h / (Hv / Hk), kc0 = kb * KB, nvb = c.nvb;
    const int kcols = imin(KB, K - kc0);
    const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5, g4 = lane >> 2, t4 = lane & 3;
    const int role = w >> 2, wr = w & 3; /* role 0: warps 0-3, role 1: warps 4-7; rows 16 wr.. */
    const size_t chh = (size_t)ci * Hv + h;
    const bool fused = c.nkb == 1 && Hv == Hk;

    Carve cv{GDN_SMEM()};
    if (WG) cv.p += (1024u - (smem_u32(cv.p) & 1023u)) & 1023u; /* the swizzled tiles' atoms */
    uint16_t *Ts = cv.take<uint16_t>(64 * LDT); /* T, fp16 (swizzled with WG) */
    unsigned char *stage_base = cv.p;
    uint16_t *stg = cv.take<uint16_t>(NSTG * STG);
    {
        Carve post{stage_base}; /* the stages' space covers what the combine step puts there */
        post.take<unsigned char>(C::STAGE_BYTES);
        cv.p = post.p;
    }
    float *Gs = cv.take<float>(64), *Bs = cv.take<float>(64), *gam = cv.take<float>(64), *del = cv.take<float>(64);
    float *rowA = cv.take<float>(64), *rowB = cv.take<float>(64), *dBr = cv.take<float>(64), *k1r = cv.take<float>(64);
    float *colA = cv.take<float>(8 * 64), *colB = colA + 4 * 64; /* [wr][j], already negated */
    float *red = cv.take<float>(16);                             /* [0..7] <dH,S0> per warp, [8..15] max per warp */
    uint16_t *Qs = cv.take<uint16_t>(64 * LDQ), *Ks = cv.take<uint16_t>(64 * LDQ); /* Qn, Kn (this K block), fp16 */
    uint16_t *Ps = cv.take<uint16_t>(64 * LD64);                                  /* P, fp16 (read in step 3) */
    uint64_t *mb = cv.take<uint64_t>(TMA ? NSTG : 0);                            /* OH_GDN_CB_TMA: a stage landed */
#define dOs(s) (stg + (s) * STG)
#define Us(s) (stg + (s) * STG + 64 * LDT)
#define dUs(s) (stg + (s) * STG + 2 * 64 * LDT)
#define Vs(s) (stg + (s) * STG + 3 * 64 * LDT)
#define Hs(s) (stg + (s) * STG + 4 * 64 * LDT)
#define dHs(s) (stg + (s) * STG + 4 * 64 * LDT + KB * LDT)
    /* offset of element (r, c) of a stage tile or T (c even: a pair stays together) */
    auto to = [&](int r, int c) { return WG ? sw64(r, c) : r * LD64 + c; };
    /* after the V loop the stages hold: */
    Carve cp{stage_base};
    uint16_t *Ph = cp.take<uint16_t>(64 * LD64), *Zh = cp.take<uint16_t>(64 * LD64); /* the same, fp16 x 2^e */
    float *Xch = cp.take<float>(64 * (KB + 4));

    auto load_slice = [&](int s, int vs) {
        for (int i = tid; i < 64 * 8; i += 256) {
            const int r = i >> 3, c8 = i & 7, col = vs * 64 + c8 * 8;
            const bool okc = col < V, ok = okc && r < ch.len;
            const size_t wsr = (chh * 64 + r) * V + col;
            const int o = to(r, c8 * 8);
            cp_async16(dOs(s) + o, okc ? c.dOh + wsr : c.dOh, okc);
            cp_async16(Us(s) + o, okc ? c.U + wsr : c.U, okc);
            cp_async16(dUs(s) + o, okc ? c.Uv + wsr : c.Uv, okc);
            cp_async16(Vs(s) + o, ok ? c.v + ((size_t)(ch.t0 + r) * Hv + h) * V + col : c.v, ok);
        }
        for (int i = tid; i < KB * 8; i += 256) {
            const int r = i >> 3, c8 = i & 7, col = vs * 64 + c8 * 8;
            const bool ok = col < V && r < kcols;
            const size_t off = (chh * K + kc0 + r) * V + col;
            cp_async16(Hs(s) + to(r, c8 * 8), ok ? c.H + off : c.H, ok);
            cp_async16(dHs(s) + to(r, c8 * 8), ok ? c.dH + off : c.dH, ok);
        }
    };
    /* OH_GDN_CB_TMA (thread 0): slice vs into stage s, STG elements on mb[s] */
    auto tma_slice = [&](int s, int vs) {
        const int row = (int)chh * 64, col = vs * 64;
        mbar_expect_tx(mb + s, (uint32_t)STG * 2);
        tma_load_2d(dOs(s), &c.tm[TM_CB_DO], col, row, mb + s);
        tma_load_2d(Us(s), &c.tm[TM_CB_U], col, row, mb + s);
        tma_load_2d(dUs(s), &c.tm[TM_CB_DU], col, row, mb + s);
        tma_load_3d(Vs(s), &c.tm[TM_CB_V], col, h, ch.t0, mb + s);
        tma_load_3d(Hs(s), &c.tm[TM_CB_H], col, kc0, (int)chh, mb + s);
        tma_load_3d(dHs(s), &c.tm[TM_CB_DH], col, kc0, (int)chh, mb + s);
    };

    /* ---- 1. gates, T, P, this block's Qn and Kn columns (k_prep's) ----
     * None of it comes from k_state_bwd, so it is loaded before the wait; the
     * gates go to registers first and to shared memory after the wait (their
     * latency hidden behind it). */
    float gi = 0.f, gl = 0.f, bi = 0.f;
    if (tid < 64) {
        gi = c.G[chh * 64 + tid];
        gl = c.G[chh * 64 + 63];
        bi = tid < ch.len ? c.beta[(size_t)(ch.t0 + tid) * Hv + h] : 0.f;
    }
    for (int i = tid; i < 64 * 8; i += 256) {
        const int r = i >> 3, c8 = i & 7;
        cp_async16(Ts + to(r, c8 * 8), c.Tm + (chh * 64 + r) * 64 + c8 * 8, true);
        cp_async16(Ps + r * LD64 + c8 * 8, c.P + (chh * 64 + r) * 64 + c8 * 8, true);
    }
    for (int i = tid; i < 64 * (KB / 8); i += 256) {
        const int r = i / (KB / 8), c8 = i % (KB / 8);
        const bool ok = kc0 + c8 * 8 < K;
        const size_t off = (chh * 64 + r) * K + kc0 + c8 * 8;
        cp_async16(Qs + r * LDQ + c8 * 8, ok ? c.Qn + off : c.Qn, ok);
        cp_async16(Ks + r * LDQ + c8 * 8, ok ? c.Kn + off : c.Kn, ok);
    }
    cp_async_commit();
    if constexpr (TMA) {
        if (tid == 0) {
            for (int i = 0; i < NSTG; i++) mbar_init(mb + i, 1);
            fence_mbar_init();
        }
        __syncthreads(); /* the mbarriers, before anyone waits on them */
    }
    flag_wait(c.flB + chh, c.nvb); /* every column block of k_state_bwd (and k_dout_prep) is done */
    PHASE_MARK(1);
    if constexpr (TMA) {
        if (tid == 0) {
            fence_proxy_async_global(); /* k_state_bwd's stores, seen through the flag, before the copies */
            for (int i = 0; i < NSTG && i < nvb; i++) tma_slice(i, i);
        }
    } else {
        load_slice(0, 0);
        cp_async_commit();
    }
    if (tid < 64) {
        Gs[tid] = gi;
        Bs[tid] = bi;
        gam[tid] = __expf(gi);
        del[tid] = __expf(gl - gi);
    }

    PHASE_MARK(2);
    /* ---- 2. over 64-column slices of V ----
     * role 0: dP = dO U^T, Mq = dO S0^T, M1 = U dH^T       (units 2^u, one per product)
     * role 1: dR = T^T dU (-> dv, v.dR), dA+ = dR U^T, M2 = dR S0^T  (dR scaled per row: units per row) */
    float accA[8][4];  /* role 0: dP;  role 1: dR U^T */
    float accB[NT][4]; /* role 0: Mq;  role 1: M2 */
    float accC[NT][4]; /* role 0: M1 */
#pragma unroll
    for (int n = 0; n < 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) accA[n][e] = 0.f;
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) accB[n][e] = accC[n][e] = 0.f;
    int uA[2] = {0, 0}, uB[2] = {0, 0}, uC = 0; /* current units (exponents) of accA, accB (per row), accC */
    float vdr[2] = {0.f, 0.f}, hds = 0.f;

    for (int vs = 0; vs < nvb; vs++) {
        const int s = TMA ? vs % NSTG : vs & 1;
        cp_async_wait<0>();
        if (TMA) mbar_wait(mb + s, (uint32_t)(vs / NSTG) & 1u);
        if (WG) fence_async_smem(); /* the copies, visible to wgmma */
        __syncthreads(); /* slice vs is in; every warp is done with slice vs - 1 */
        if constexpr (TMA) {
            /* stage (vs - 1) % NSTG is free now */
            if (tid == 0 && vs > 0 && vs - 1 + NSTG < nvb) tma_slice((vs - 1) % NSTG, vs - 1 + NSTG);
        } else if (vs + 1 < nvb) {
            load_slice(s ^ 1, vs + 1);
            cp_async_commit();
        }
        const size_t ei = chh * nvb + vs;
        const int eO = ld_l2(c.edO + ei), eU = c.eU[ei], edU = ld_l2(c.eUv + ei), eH = c.eH[ei], edH = ld_l2(c.edH + ei);
        if (role == 0) {
            /* bring the accumulators to this slice's units */
            const float rA = exp2i(eO + eU - uA[0]), rB = exp2i(eO + eH - uB[0]), rC = exp2i(eU + edH - uC);
            uA[0] = eO + eU;
            uB[0] = eO + eH;
            uC = eU + edH;
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) accA[n][e] *= rA;
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    accB[n][e] *= rB;
                    accC[n][e] *= rC;
                }
            if constexpr (WG) {
                /* the whole 64 x 64 dP (its upper part is masked in step 3) */
                const uint64_t dO_d = wg_desc(dOs(s), 16, 1024), U_d = wg_desc(Us(s), 16, 1024);
                const uint64_t H_d = wg_desc(Hs(s), 16, 1024), dH_d = wg_desc(dHs(s), 16, 1024);
                wg_fence_acc(accA);
                wg_fence_acc(accB);
                wg_fence_acc(accC);
                wg_arrive();
#pragma unroll
                for (int kt = 0; kt < 4; kt++) wgmma_ss<64, 0, 0, true>(accA, wg_desc_add(dO_d, 32 * kt), wg_desc_add(U_d, 32 * kt), 1);
#pragma unroll
                for (int kt = 0; kt < 4; kt++) wgmma_ss<KB, 0, 0, true>(accB, wg_desc_add(dO_d, 32 * kt), wg_desc_add(H_d, 32 * kt), 1);
#pragma unroll
                for (int kt = 0; kt < 4; kt++) wgmma_ss<KB, 0, 0, true>(accC, wg_desc_add(U_d, 32 * kt), wg_desc_add(dH_d, 32 * kt), 1);
                wg_commit();
                wg_wait<0>();
                wg_fence_acc(accA);
                wg_fence_acc(accB);
                wg_fence_acc(accC);
            } else
#pragma unroll
            for (int kt = 0; kt < 4; kt++) {
                uint32_t ao[4], au[4];
                ldsm4(ao, a_mk(dOs(s), LD64, 16 * wr, 16 * kt, lane));
                ldsm4(au, a_mk(Us(s), LD64, 16 * wr, 16 * kt, lane));
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    if (np <= wr) {
                        uint32_t b[4];
                        ldsm4(b, b_nk(Us(s), LD64, 16 * np, 16 * kt, lane));
                        mma_f16(accA[2 * np], ao, b[0], b[1]);
                        mma_f16(accA[2 * np + 1], ao, b[2], b[3]);
                    }
                }
#pragma unroll
                for (int np = 0; np < KBT; np++) {
                    uint32_t b[4];
                    ldsm4(b, b_nk(Hs(s), LD64, 16 * np, 16 * kt, lane));
                    mma_f16(accB[2 * np], ao, b[0], b[1]);
                    mma_f16(accB[2 * np + 1], ao, b[2], b[3]);
                    ldsm4(b, b_nk(dHs(s), LD64, 16 * np, 16 * kt, lane));
                    mma_f16(accC[2 * np], au, b[0], b[1]);
                    mma_f16(accC[2 * np + 1], au, b[2], b[3]);
                }
            }
        } else {
            float R[8][4];
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) R[n][e] = 0.f;
            if constexpr (WG) { /* R = T^T dU, both MN-major */
                const uint64_t T_d = wg_desc(Ts, 8192, 1024), dU_d = wg_desc(dUs(s), 8192, 1024);
                wg_fence_acc(R);
                wg_arrive();
#pragma unroll
                for (int kt = 0; kt < 4; kt++) wgmma_ss<64, 1, 1, true>(R, wg_desc_add(T_d, 2048 * kt), wg_desc_add(dU_d, 2048 * kt), 1);
                wg_commit();
                wg_wait<0>();
                wg_fence_acc(R);
            } else
#pragma unroll
            for (int kt = 0; kt < 4; kt++) {
                if (kt >= wr) { /* T^T is upper triangular */
                    uint32_t a[4];
                    ldsm4t(a, a_km(Ts, LD64, 16 * wr, 16 * kt, lane));
#pragma unroll
                    for (int np = 0; np < 4; np++) {
                        uint32_t b[4];
                        ldsm4t(b, b_kn(dUs(s), LD64, 16 * np, 16 * kt, lane));
                        mma_f16(R[2 * np], a, b[0], b[1]);
                        mma_f16(R[2 * np + 1], a, b[2], b[3]);
                    }
                }
            }
            const float idU = exp2i(-edU);
            float mr[2] = {0.f, 0.f};
#pragma unroll
            for (int n = 0; n < 8; n++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int j = 16 * wr + g4 + 8 * hf, lc = 8 * n + 2 * t4, col = vs * 64 + lc;
                    const float r0 = R[n][2 * hf] * idU, r1 = R[n][2 * hf + 1] * idU;
                    R[n][2 * hf] = r0;
                    R[n][2 * hf + 1] = r1;
                    mr[hf] = fmaxf(mr[hf], fmaxf(fabsf(r0), fabsf(r1)));
                    const uint32_t vv = ld32(Vs(s) + to(j, lc));
                    if (!TMA || j < ch.len) vdr[hf] += r0 * bf2f_lo(vv) + r1 * bf2f_hi(vv); /* TMA: rows past the chunk loaded */
                    if (kb == 0 && j < ch.len && col < V)
                        st32(c.dv + ((size_t)(ch.t0 + j) * Hv + h) * V + col, pack_bf16(Bs[j] * r0, Bs[j] * r1));
                }
            /* per-row exponents for dR; accumulators to this slice's units */
            int er[2];
            float sr[2];
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                er[hf] = scale_exp(quad_max(mr[hf]));
                sr[hf] = exp2i(er[hf]);
                const float rA = exp2i(er[hf] + eU - uA[hf]), rB = exp2i(er[hf] + eH - uB[hf]);
                uA[hf] = er[hf] + eU;
                uB[hf] = er[hf] + eH;
#pragma unroll
                for (int n = 0; n < 8; n++) {
                    accA[n][2 * hf] *= rA;
                    accA[n][2 * hf + 1] *= rA;
                }
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    accB[n][2 * hf] *= rB;
                    accB[n][2 * hf + 1] *= rB;
                }
            }
            if constexpr (WG) { /* dA+ = dR U^T (whole; masked in step 3), M2 += dR S0^T */
                const uint64_t U_d = wg_desc(Us(s), 16, 1024), H_d = wg_desc(Hs(s), 16, 1024);
                uint32_t ar[4][4];
#pragma unroll
                for (int kt = 0; kt < 4; kt++) acc_to_a_f16(ar[kt], R[2 * kt], R[2 * kt + 1], sr[0], sr[1]);
                wg_fence_regs(ar);
                wg_fence_acc(accA);
                wg_fence_acc(accB);
                wg_arrive();
#pragma unroll
                for (int kt = 0; kt < 4; kt++) {
                    wgmma_rs<64, 0, true>(accA, ar[kt], wg_desc_add(U_d, 32 * kt), 1);
                    wgmma_rs<KB, 0, true>(accB, ar[kt], wg_desc_add(H_d, 32 * kt), 1);
                }
                wg_commit();
                wg_wait<0>();
                wg_fence_acc(accA);
                wg_fence_acc(accB);
            } else
#pragma unroll
            for (int kt = 0; kt < 4; kt++) {
                uint32_t ar[4];
                acc_to_a_f16(ar, R[2 * kt], R[2 * kt + 1], sr[0], sr[1]);
#pragma unroll
                for (int np = 0; np < 4; np++) {
                    if (np <= wr) {
                        uint32_t b[4];
                        ldsm4(b, b_nk(Us(s), LD64, 16 * np, 16 * kt, lane));
                        mma_f16(accA[2 * np], ar, b[0], b[1]);
                        mma_f16(accA[2 * np + 1], ar, b[2], b[3]);
                    }
                }
#pragma unroll
                for (int np = 0; np < KBT; np++) {
                    uint32_t b[4];
                    ldsm4(b, b_nk(Hs(s), LD64, 16 * np, 16 * kt, lane));
                    mma_f16(accB[2 * np], ar, b[0], b[1]);
                    mma_f16(accB[2 * np + 1], ar, b[2], b[3]);
                }
            }
        }
        /* <dH, S0> over this block's rows */
        float hp = 0.f;
        for (int i = tid; i < KB * 32; i += 256) {
            const int r = i >> 5, lc = 2 * (i & 31);
            const uint32_t a = ld32(Hs(s) + to(r, lc)), b = ld32(dHs(s) + to(r, lc));
            hp += h2f_lo(a) * h2f_lo(b) + h2f_hi(a) * h2f_hi(b);
        }
        hds += hp * exp2i(-eH - edH);
    }
    __syncthreads(); /* the stages become Ph, Zh, Xch */
    PHASE_MARK(3);

    /* ---- 3. combine (true units from here on) ---- */
    hds = warp_sum(hds);
    if (lane == 0) red[w] = hds;
    if (role == 0) {
        const float iA = exp2i(-uA[0]), iB = exp2i(-uB[0]), iC = exp2i(-uC);
        /* dP: mask; D = dP o P (kb 0 only: P is the full product) -> row and column sums; dPg = dP o Gam */
        float rowD[2] = {0.f, 0.f}, mx = 0.f;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            float colD[2] = {0.f, 0.f};
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int i = 16 * wr + g4 + 8 * hf, j = 8 * n + 2 * t4;
                const uint32_t pp = ld32(Ps + i * LD64 + j);
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int jj = j + e;
                    const float dp = accA[n][2 * hf + e] * iA;
                    float dpg = 0.f;
                    if (jj <= i) {
                        const float D = dp * (e ? h2f_hi(pp) : h2f_lo(pp));
                        rowD[hf] += D;
                        colD[e] += D;
                        dpg = dp * __expf(Gs[i] - Gs[jj]);
                    }
                    accA[n][2 * hf + e] = dpg; /* dPg, to fp16 once its exponent is known */
                    mx = fmaxf(mx, fabsf(dpg));
                }
            }
            if (n <= 2 * wr + 1) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float cs = col_sum(colD[e]);
                    if (g4 == 0) colA[wr * 64 + 8 * n + 2 * t4 + e] = kb == 0 ? -cs : 0.f;
                }
            } else if (g4 == 0) {
                colA[wr * 64 + 8 * n + 2 * t4] = 0.f;
                colA[wr * 64 + 8 * n + 2 * t4 + 1] = 0.f;
            }
        }
        mx = warp_max(mx);
        if (lane == 0) red[8 + w] = mx;
        /* O term gam_i qn_i . Mq_i and the Kd term del_i kn_i . M1_i */
        float oq[2] = {0.f, 0.f}, s1[2] = {0.f, 0.f};
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int i = 16 * wr + g4 + 8 * hf, d = 8 * n + 2 * t4;
                accB[n][2 * hf] *= iB;
                accB[n][2 * hf + 1] *= iB;
                accC[n][2 * hf] *= iC;
                accC[n][2 * hf + 1] *= iC;
                const uint32_t qq = ld32(Qs + i * LDQ + d), kk = ld32(Ks + i * LDQ + d);
                oq[hf] += accB[n][2 * hf] * h2f_lo(qq) + accB[n][2 * hf + 1] * h2f_hi(qq);
                s1[hf] += accC[n][2 * hf] * h2f_lo(kk) + accC[n][2 * hf + 1] * h2f_hi(kk);
            }
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int i = 16 * wr + g4 + 8 * hf;
            const float rd = quad_sum(rowD[hf]), o = quad_sum(oq[hf]), k1 = quad_sum(s1[hf]) * del[i];
            if (t4 == 0) {
                rowA[i] = (kb == 0 ? rd : 0.f) + gam[i] * o - k1;
                k1r[i] = k1;
            }
        }
        /* accB <- gam o Mq (dqn so far), accC <- del o M1 (dkn so far) */
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = 16 * wr + g4 + 8 * (e >> 1);
                accB[n][e] *= gam[i];
                accC[n][e] *= del[i];
            }
    } else {
        const float iA0 = exp2i(-uA[0]), iA1 = exp2i(-uA[1]), iB0 = exp2i(-uB[0]), iB1 = exp2i(-uB[1]);
        /* KK (this K block); F = dA o Gam o KK, E = beta_i F, Z = beta_i dA o Gam, dA = -(dR U^T) */
        float kk[8][4];
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) kk[n][e] = 0.f;
#pragma unroll
        for (int kt = 0; kt < KBT; kt++) {
            uint32_t a[4];
            ldsm4(a, a_mk(Ks, LDQ, 16 * wr, 16 * kt, lane));
#pragma unroll
            for (int np = 0; np < 4; np++) {
                if (np <= wr) {
                    uint32_t b[4];
                    ldsm4(b, b_nk(Ks, LDQ, 16 * np, 16 * kt, lane));
                    mma_f16(kk[2 * np], a, b[0], b[1]);
                    mma_f16(kk[2 * np + 1], a, b[2], b[3]);
                }
            }
        }
        float rowF[2] = {0.f, 0.f}, mx = 0.f;
#pragma unroll
        for (int n = 0; n < 8; n++) {
            float colE[2] = {0.f, 0.f};
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int i = 16 * wr + g4 + 8 * hf;
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const int jj = 8 * n + 2 * t4 + e;
                    float z = 0.f;
                    if (jj < i) {
                        const float da = -accA[n][2 * hf + e] * (hf ? iA1 : iA0), gm = __expf(Gs[i] - Gs[jj]);
                        const float F = da * gm * kk[n][2 * hf + e];
                        rowF[hf] += F;
                        colE[e] += Bs[i] * F;
                        z = Bs[i] * da * gm;
                    }
                    accA[n][2 * hf + e] = z; /* Z, likewise */
                    mx = fmaxf(mx, fabsf(z));
                }
            }
            if (n <= 2 * wr + 1) {
#pragma unroll
                for (int e = 0; e < 2; e++) {
                    const float cs = col_sum(colE[e]);
                    if (g4 == 0) colB[wr * 64 + 8 * n + 2 * t4 + e] = -cs;
                }
            } else if (g4 == 0) {
                colB[wr * 64 + 8 * n + 2 * t4] = 0.f;
                colB[wr * 64 + 8 * n + 2 * t4 + 1] = 0.f;
            }
        }
        mx = warp_max(mx);
        if (lane == 0) red[8 + w] = mx;
        /* M2 term: gam_i kn_i . M2_i */
        float s2[2] = {0.f, 0.f};
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int i = 16 * wr + g4 + 8 * hf, d = 8 * n + 2 * t4;
                accB[n][2 * hf] *= hf ? iB1 : iB0;
                accB[n][2 * hf + 1] *= hf ? iB1 : iB0;
                const uint32_t kq = ld32(Ks + i * LDQ + d);
                s2[hf] += accB[n][2 * hf] * h2f_lo(kq) + accB[n][2 * hf + 1] * h2f_hi(kq);
            }
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            const int i = 16 * wr + g4 + 8 * hf;
            const float rf = quad_sum(rowF[hf]), k2 = quad_sum(s2[hf]) * gam[i], vd = quad_sum(vdr[hf]);
            if (t4 == 0) {
                dBr[i] = rf - k2 + (kb == 0 ? vd : 0.f);
                rowB[i] = Bs[i] * (rf - k2);
            }
        }
        /* accB <- -beta gam o M2 (dkn so far) */
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int i = 16 * wr + g4 + 8 * (e >> 1);
                accB[n][e] *= -Bs[i] * gam[i];
            }
    }
    __syncthreads();
    PHASE_MARK(4);
    /* dPg and Z to fp16 with one exponent each */
    const int eP = scale_exp(fmaxf(fmaxf(red[8], red[9]), fmaxf(red[10], red[11])));
    const int eZ = scale_exp(fmaxf(fmaxf(red[12], red[13]), fmaxf(red[14], red[15])));
    {
        /* each warp its own 16 rows from its registers: role 0 dPg, role 1 Z */
        const float sc = exp2i(role == 0 ? eP : eZ);
        uint16_t *dst = role == 0 ? Ph : Zh;
#pragma unroll
        for (int n = 0; n < 8; n++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++)
                st32(dst + (16 * wr + g4 + 8 * hf) * LD64 + 8 * n + 2 * t4,
                     pack_f16(accA[n][2 * hf] * sc, accA[n][2 * hf + 1] * sc));
    }
    __syncthreads();
    PHASE_MARK(5);
    if (role == 0) {
        /* dqn += dPg Kn (contraction over j <= i) */
        const float sP = exp2i(eP), iP = exp2i(-eP), rPZ = exp2i(eZ - eP), iZ = exp2i(-eZ);
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                accB[n][e] *= sP;
                accC[n][e] *= sP;
            }
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            if (ks <= wr) {
                uint32_t a[4];
                ldsm4(a, a_mk(Ph, LD64, 16 * wr, 16 * ks, lane));
#pragma unroll
                for (int np = 0; np < KBT; np++) {
                    uint32_t b[4];
                    ldsm4t(b, b_kn(Ks, LDQ, 16 * np, 16 * ks, lane));
                    mma_f16(accB[2 * np], a, b[0], b[1]);
                    mma_f16(accB[2 * np + 1], a, b[2], b[3]);
                }
            }
        }
        /* dkn += dPg^T Qn + Z^T Kn (contraction over i >= j) */
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            if (ks >= wr) {
                uint32_t a[4];
                ldsm4t(a, a_km(Ph, LD64, 16 * wr, 16 * ks, lane));
#pragma unroll
                for (int np = 0; np < KBT; np++) {
                    uint32_t b[4];
                    ldsm4t(b, b_kn(Qs, LDQ, 16 * np, 16 * ks, lane));
                    mma_f16(accC[2 * np], a, b[0], b[1]);
                    mma_f16(accC[2 * np + 1], a, b[2], b[3]);
                }
            }
        }
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                accB[n][e] *= iP;
                accC[n][e] *= rPZ;
            }
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            if (ks >= wr) {
                uint32_t a[4];
                ldsm4t(a, a_km(Zh, LD64, 16 * wr, 16 * ks, lane));
#pragma unroll
                for (int np = 0; np < KBT; np++) {
                    uint32_t b[4];
                    ldsm4t(b, b_kn(Ks, LDQ, 16 * np, 16 * ks, lane));
                    mma_f16(accC[2 * np], a, b[0], b[1]);
                    mma_f16(accC[2 * np + 1], a, b[2], b[3]);
                }
            }
        }
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                float *x = Xch + (16 * wr + g4 + 8 * hf) * (KB + 4) + 8 * n + 2 * t4;
                x[0] = accC[n][2 * hf] * iZ;
                x[1] = accC[n][2 * hf + 1] * iZ;
            }
    } else {
        /* dkn += Z Kn (contraction over j < i) */
        const float sZ = exp2i(eZ), iZ = exp2i(-eZ);
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) accB[n][e] *= sZ;
#pragma unroll
        for (int ks = 0; ks < 4; ks++) {
            if (ks <= wr) {
                uint32_t a[4];
                ldsm4(a, a_mk(Zh, LD64, 16 * wr, 16 * ks, lane));
#pragma unroll
                for (int np = 0; np < KBT; np++) {
                    uint32_t b[4];
                    ldsm4t(b, b_kn(Ks, LDQ, 16 * np, 16 * ks, lane));
                    mma_f16(accB[2 * np], a, b[0], b[1]);
                    mma_f16(accB[2 * np + 1], a, b[2], b[3]);
                }
            }
        }
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) accB[n][e] *= iZ;
    }
    __syncthreads();
    PHASE_MARK(6);
    if (role == 1) {
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const float *x = Xch + (16 * wr + g4 + 8 * hf) * (KB + 4) + 8 * n + 2 * t4;
                accB[n][2 * hf] += x[0];
                accB[n][2 * hf + 1] += x[1];
            }
    }
    /* dG (fixed summation order), dg = reverse cumsum, dbeta: warp 0 */
    if (w == 0) {
        float hs = 0.f;
        for (int i = 0; i < 8; i++) hs += red[i];
        const float k1sum = warp_sum(k1r[2 * lane] + k1r[2 * lane + 1]);
        float dGv[2];
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int i = 2 * lane + e;
            float x = rowA[i] + rowB[i];
            for (int q = 0; q < 4; q++) x += colA[q * 64 + i];
            for (int q = 0; q < 4; q++) x += colB[q * 64 + i];
            if (i == 63) x += k1sum + __expf(Gs[63]) * hs;
            dGv[e] = x;
        }
        float sfx = dGv[0] + dGv[1];
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
            const float t = __shfl_down_sync(0xffffffffu, sfx, o);
            if (lane + o < 32) sfx += t;
        }
        const float dg2[2] = {sfx, sfx - dGv[0]};
#pragma unroll
        for (int e = 0; e < 2; e++) {
            const int mrow = 2 * lane + e;
            if (mrow < ch.len) {
                const size_t o = (size_t)(ch.t0 + mrow) * Hv + h;
                if (c.nkb == 1) {
                    c.dg[o] = dg2[e];
                    c.dbeta[o] = dBr[mrow];
                } else {
                    atomicAdd(&c.dg[o], dg2[e]);
                    atomicAdd(&c.dbeta[o], dBr[mrow]);
                }
            }
        }
    }
    /* dqn (role 0, accB) and dkn (role 1, accB) */
    {
        const uint16_t *x = role == 0 ? c.q : c.k;
        const float sc = role == 0 ? c.scale : 1.f;
        if (fused) {
            /* l2norm backward: dx = r (e - y (y . e)), y = x r, e = scale * dxn; the
             * quad's lanes hold the whole row (K <= KB), so r comes from the raw x here */
            uint16_t *dst = role == 0 ? c.dq : c.dk;
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int i = 16 * wr + g4 + 8 * hf;
                const bool ok = i < ch.len;
                const size_t rowoff = ((size_t)(ch.t0 + (ok ? i : 0)) * Hk + hk) * K;
                float y[NT][2], ss = 0.f, dot = 0.f;
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    const int d = 8 * n + 2 * t4;
                    const uint32_t xx = ok && d < K ? ld32(x + rowoff + d) : 0u;
                    y[n][0] = bf2f_lo(xx);
                    y[n][1] = bf2f_hi(xx);
                    ss += y[n][0] * y[n][0] + y[n][1] * y[n][1];
                }
                const float ssum = quad_sum(ss), rr = ok ? rsqrtf(ssum + 1e-6f) : 0.f; /* every lane shuffles */
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    y[n][0] *= rr;
                    y[n][1] *= rr;
                    dot += y[n][0] * accB[n][2 * hf] * sc + y[n][1] * accB[n][2 * hf + 1] * sc;
                }
                dot = quad_sum(dot);
#pragma unroll
                for (int n = 0; n < NT; n++) {
                    const int d = 8 * n + 2 * t4;
                    if (ok && d < K)
                        st32(dst + rowoff + d, pack_bf16(rr * (sc * accB[n][2 * hf] - y[n][0] * dot),
                                                         rr * (sc * accB[n][2 * hf + 1] - y[n][1] * dot)));
                }
            }
        } else {
            float *dst = role == 0 ? c.dqs : c.dks;
#pragma unroll
            for (int n = 0; n < NT; n++)
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int i = 16 * wr + g4 + 8 * hf, d = 8 * n + 2 * t4;
                    if (i < ch.len && d < kcols) {
                        float *p = dst + ((size_t)(ch.t0 + i) * Hv + h) * K + kc0 + d;
                        p[0] = accB[n][2 * hf];
                        p[1] = accB[n][2 * hf + 1];
                    }
                }
        }
    }
#undef dOs
#undef Us
#undef dUs
#undef Vs
#undef Hs
#undef dHs
#ifdef OH_GDN_PHASES
    __syncthreads();
#endif
    PHASE_MARK(7);
    trace_mark(c, true);
}

/* One warp per (token, key head): sum the value heads of the group, then the
 * l2norm backward dx = r (e - y (y . e)), y = x r, e = scale * dxn. */
static __global__ void __launch_bounds__(256) k_qk_finish(Ctx c) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (warp >= c.T * c.Hk) return;
    const int t = warp / c.Hk, hk = warp % c.Hk, K = c.K, grp = c.Hv / c.Hk;
    const size_t off = (size_t)warp * K;
    for (int which = 0; which < 2; which++) {
        const uint16_t *x = which ? c.k : c.q;
        const float *src = which ? c.dks : c.dqs;
        uint16_t *dst = which ? c.dk : c.dq;
        const float sc = which ? 1.f : c.scale;
        float ss = 0.f;
        for (int d = lane; d < K; d += 32) {
            const float v = bf2f(x[off + d]);
            ss += v * v;
        }
        const float r = rsqrtf(warp_sum(ss) + 1e-6f);
        float dot = 0.f;
        for (int d = lane; d < K; d += 32) {
            float e = 0.f;
            for (int j = 0; j < grp; j++) e += src[((size_t)t * c.Hv + hk * grp + j) * K + d];
            dot += bf2f(x[off + d]) * r * e * sc;
        }
        dot = warp_sum(dot);
        for (int d = lane; d < K; d += 32) {
            float e = 0.f;
            for (int j = 0; j < grp; j++) e += src[((size_t)t * c.Hv + hk * grp + j) * K + d];
            const float y = bf2f(x[off + d]) * r;
            dst[off + d] = to_bf16(r * (sc * e - y * dot));
        }
    }
}

/* ---------------------------------------------------------------- profiling */

/* When on, an event is recorded after every kernel; gdn_profile_report sums
 * the time between consecutive events per kernel name. */
enum { PROF_MAX = 512 };
static struct {
    int on, n;
    cudaEvent_t ev[PROF_MAX];
    const char *name[PROF_MAX]; /* name[i]: the kernel that ended at ev[i]; NULL: a start mark */
    int created;
    struct {
        const char *name;
        double ms;
        int calls;
    } tot[32];
    int ntot;
} prof;

static void prof_mark(const char *name, cudaStream_t st) {
    if (!prof.on || prof.n >= PROF_MAX) return;
    if (prof.n >= prof.created) {
        if (cudaEventCreate(&prof.ev[prof.n]) != cudaSuccess) return;
        prof.created = prof.n + 1;
    }
    prof.name[prof.n] = name;
    if (cudaEventRecord(prof.ev[prof.n], st) == cudaSuccess) prof.n++;
}

static void prof_collect(void) {
    if (prof.n == 0) return;
    cudaEventSynchronize(prof.ev[prof.n - 1]);
    for (int i = 1; i < prof.n; i++) {
        if (!prof.name[i]) continue;
        float ms = 0.f;
        if (cudaEventElapsedTime(&ms, prof.ev[i - 1], prof.ev[i]) != cudaSuccess) continue;
        int t = 0;
        while (t < prof.ntot && strcmp(prof.tot[t].name, prof.name[i])) t++;
        if (t == prof.ntot) {
            if (prof.ntot == 32) continue;
            prof.tot[prof.ntot].name = prof.name[i];
            prof.tot[prof.ntot].ms = 0;
            prof.tot[prof.ntot].calls = 0;
            prof.ntot++;
        }
        prof.tot[t].ms += ms;
        prof.tot[t].calls++;
    }
    prof.n = 0;
}

extern "C" int gdn_profile_enable(int on) {
    prof_collect();
    prof.on = on != 0;
    prof.ntot = 0;
    return 0;
}

extern "C" int gdn_profile_report(char *buf, size_t n) {
    prof_collect();
    size_t o = 0;
    double total = 0;
    for (int t = 0; t < prof.ntot; t++) total += prof.tot[t].ms;
    o += snprintf(buf + o, o < n ? n - o : 0, "%-14s %6s %10s %10s %6s\n", "kernel", "calls", "total ms", "ms/call", "share");
    for (int t = 0; t < prof.ntot && o < n; t++)
        o += snprintf(buf + o, o < n ? n - o : 0, "%-14s %6d %10.3f %10.4f %5.1f%%\n", prof.tot[t].name,
                      prof.tot[t].calls, prof.tot[t].ms, prof.tot[t].ms / prof.tot[t].calls,
                      total > 0 ? 100.0 * prof.tot[t].ms / total : 0.0);
    return 0;
}

/* ---------------------------------------------------------------- launchers */

struct Layout {
    size_t tab, G, Wu, Kn, Qn, P, Tm, Uv, H, dH, U, dOh, eUv, eH, eU, edH, edO, dqs, dks, fl, total;
    int ncmax;
};

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

static Layout layout_for(int T, int ndocs, int Hk, int Hv, int K, int V) {
    Layout L;
    const size_t nc = (size_t)T / BT + ndocs + 1, ch = nc * Hv, nvb = (V + 63) / 64;
    size_t o = 0;
    auto put = [&](size_t bytes) {
        const size_t r = o;
        o += align256(bytes);
        return r;
    };
    L.ncmax = (int)nc;
    L.tab = put(4 * (4 + 4 * nc + 2 * (size_t)ndocs));
    L.G = put(ch * 64 * 4);
    L.Wu = put(ch * 64 * K * 2);
    L.Kn = put(ch * 64 * K * 2);
    L.Qn = put(ch * 64 * K * 2);
    L.P = put(ch * 64 * 64 * 2);
    L.Tm = put(ch * 64 * 64 * 2);
    L.Uv = put(ch * 64 * V * 2);
    L.H = put(ch * (size_t)K * V * 2);
    L.dH = put(ch * (size_t)K * V * 2);
    L.U = put(ch * 64 * V * 2);
    L.dOh = put(ch * 64 * V * 2);
    L.eUv = put(ch * nvb * 4);
    L.eH = put(ch * nvb * 4);
    L.eU = put(ch * nvb * 4);
    L.edH = put(ch * nvb * 4);
    L.edO = put(ch * nvb * 4);
    const bool need = Hv != Hk || K > 128;
    L.dqs = need ? put((size_t)T * Hv * K * 4) : 0;
    L.dks = need ? put((size_t)T * Hv * K * 4) : 0;
    L.fl = put(4 * (16 + 4 * ch));
    L.total = o;
    return L;
}

static bool sizes_ok(int T, int ndocs, int Hk, int Hv, int K, int V) {
    return T >= 1 && T <= (1 << 30) && ndocs >= 1 && ndocs <= 65535 && Hk >= 1 && Hv >= Hk && Hv % Hk == 0 &&
           Hv <= 65535 && K >= 16 && K <= 256 && K % 16 == 0 && V >= 16 && V <= 256 && V % 16 == 0;
}

extern "C" size_t gdn_workspace_bytes(int T, int ndocs, int Hk, int Hv, int K, int V) {
    if (!sizes_ok(T, ndocs, Hk, Hv, K, V)) return 0;
    return layout_for(T, ndocs, Hk, Hv, K, V).total;
}

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

/* Per device: the opt-in shared memory limit, and the dynamic shared memory
 * each kernel has been allowed so far (cudaFuncSetAttribute is called once per
 * kernel, size and device, not per launch).  Not thread-safe. */
enum { ATTR_DEV = 16, ATTR_FN = 64 };
static struct {
    int lim[ATTR_DEV], sms[ATTR_DEV], major[ATTR_DEV];
    const void *fn[ATTR_DEV][ATTR_FN];
    int set[ATTR_DEV][ATTR_FN];
} attr_cache;

/* Launch `kern` after raising its dynamic shared memory limit when needed;
 * `early`: with programmatic stream serialization, so that it may start once
 * every block of the kernel before it has called allow_dependents(). */
static int launch(void (*kern)(Ctx), dim3 grid, dim3 block, size_t smem, cudaStream_t st, const char *name,
                  const Ctx &c, bool early = false) {
    int dev = 0;
    GDN_CUDA_TRY(cudaGetDevice(&dev));
    const int d = dev >= 0 && dev < ATTR_DEV ? dev : -1;
    int lim = d >= 0 ? attr_cache.lim[d] : 0;
    if (lim == 0) {
        GDN_CUDA_TRY(cudaDeviceGetAttribute(&lim, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        if (d >= 0) attr_cache.lim[d] = lim;
    }
    if ((long)smem > lim)
        return gdn_fail(GDN_STATUS_UNSUPPORTED, __FILE__, __LINE__,
                        "%s needs %zu bytes of shared memory, the device allows %d", name, smem, lim);
    if (smem > 48 * 1024) {
        int slot = -1;
        if (d >= 0)
            for (int i = 0; i < ATTR_FN && slot < 0; i++)
                if (attr_cache.fn[d][i] == (const void *)kern || attr_cache.fn[d][i] == NULL) slot = i;
        if (slot < 0 || attr_cache.fn[d][slot] == NULL || attr_cache.set[d][slot] < (int)smem) {
            GDN_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
            if (slot >= 0) {
                attr_cache.fn[d][slot] = (const void *)kern;
                attr_cache.set[d][slot] = (int)smem;
            }
        }
    }
#ifndef OH_EMU
    if (early) {
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute at[1] = {};
        at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.gridDim = grid;
        cfg.blockDim = block;
        cfg.dynamicSmemBytes = smem;
        cfg.stream = st;
        cfg.attrs = at;
        cfg.numAttrs = 1;
        const cudaError_t e = cudaLaunchKernelEx(&cfg, kern, c);
        if (e != cudaSuccess) {
            (void)cudaGetLastError(); /* not left behind for the next launch's check to report */
            return gdn_fail(GDN_STATUS_CUDA, __FILE__, __LINE__, "launch of %s: %s", name, cudaGetErrorString(e));
        }
    } else
#endif
        GDN_LAUNCH(kern, grid, block, smem, st, c);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return gdn_fail(GDN_STATUS_CUDA, __FILE__, __LINE__, "launch of %s: %s", name, cudaGetErrorString(e));
    prof_mark(name, st);
    return 0;
}

/* Overlap.  k_state_fwd needs k_prep's results chunk by chunk and k_out needs
 * k_state_fwd's; in the backward k_state_bwd needs k_dout_prep's and
 * k_chunk_bwd needs k_state_bwd's.  When the state kernel's grid fits on the
 * SMs at once (one document: Hv x ceil(V / 64) blocks, 90 for the 7B), they
 * run together, ordered by the flags:
 *   forward:  k_prep (persistent, a few blocks per SM, claiming items in
 *             chunk order), k_state_fwd, k_prep again (the SMs' remaining
 *             room, same counter), k_out;
 *   backward: k_dout_prep (persistent, grid stride), k_state_bwd, k_chunk_bwd
 *             (K > 128 only; with K <= 128 the state kernel prepares dO
 *             itself and k_chunk_bwd, launched early at any grid size, takes
 *             the SMs the state blocks leave);
 * each after the first launched with programmatic stream serialization, every
 * kernel calling allow_dependents() first, so that the next may start once
 * all the blocks of the one before it are running.  Deadlock freedom: a block
 * only waits for flags of kernels launched before its own, and a kernel
 * starts only when every block of the one before it (hence of all before it)
 * has started, so every block waited for is already running and none of them
 * waits for anything later; the producers (k_prep, k_dout_prep) wait for
 * nothing.  Without early starts (a sanitizer, an older GPU, a driver that
 * ignores the attribute) the same launches simply run one after another.
 * The first k_prep leaves room for a state block on every SM (so that the
 * state kernel starts at once); the second fills what the state blocks
 * leave.  The last block of the last kernel finishes only after the last
 * flag, which every store of the three precedes, so the next kernel in the
 * stream sees everything.  OH_GDN_OVERLAP=0 turns it off, =1 on for both
 * passes; by default the backward overlaps as above and the forward runs
 * k_prep, then k_state_fwd with k_out launched early, its blocks waiting on
 * the state flags on the SMs the state blocks leave (k_prep beside the state
 * kernel got too few SMs to keep ahead of it); =bwd overlaps the backward
 * only.  The per-kernel profile (events between kernels) runs without it. */
struct KernelCfg {
    void (*fn)(Ctx);
    size_t smem;
    int threads;
};
static int kt_of(int K) {
    return K <= 16 ? 1 : K <= 32 ? 2 : K <= 64 ? 4 : K <= 96 ? 6 : K <= 128 ? 8 : K <= 192 ? 12 : 16;
}
template <int KT> static KernelCfg state_cfg(bool bwd, bool fuse) {
    if (bwd && OH_GDN_SB_WG && KT <= 8)
        return KernelCfg{k_state_bwd_wg<KT <= 8 ? KT : 8>, state_bwd_wg_smem<KT <= 8 ? KT : 8>(), 160};
    if (bwd) return KernelCfg{k_state_bwd<KT>, state_bwd_smem<KT>(), StateCfg<KT>::THREADS};
    constexpr int KW = KT <= 8 ? KT : 8;
    if (OH_GDN_SF_WG && KT <= 8 && fuse) return KernelCfg{k_state_fwd_wg<KW, true>, state_wg_smem<KW, true>(), 160};
    if (OH_GDN_SF_WG && KT <= 8) return KernelCfg{k_state_fwd_wg<KW, false>, state_wg_smem<KW, false>(), 160};
    return KernelCfg{k_state_fwd<KT>, state_smem<KT>(), StateCfg<KT>::THREADS};
}
static KernelCfg state_kernel(int K, bool bwd, bool fuse = false) {
    switch (kt_of(K)) {
    case 1: return state_cfg<1>(bwd, fuse);
    case 2: return state_cfg<2>(bwd, fuse);
    case 4: return state_cfg<4>(bwd, fuse);
    case 6: return state_cfg<6>(bwd, fuse);
    case 8: return state_cfg<8>(bwd, fuse);
    case 12: return state_cfg<12>(bwd, fuse);
    default: return state_cfg<16>(bwd, fuse);
    }
}
static int run_state(const Ctx &c, cudaStream_t st, bool bwd, bool early, bool fuse = false) {
    const KernelCfg k = state_kernel(c.K, bwd, fuse);
    return launch(k.fn, dim3(c.nvb, c.Hv, c.ndocs), dim3(k.threads), k.smem, st, bwd ? "k_state_bwd" : "k_state_fwd", c,
                  early);
}

/* OH_GDN_TRACE=1 (sandbox): per launch, the first block start and the last
 * block end relative to the first kernel's start, averaged over the calls
 * and printed at exit.  It synchronizes the stream after every call. */
enum { TR_PREP, TR_STATE_FWD, TR_PREP2, TR_OUT, TR_DOUT_PREP, TR_STATE_BWD, TR_CHUNK_BWD };
static const char *const trace_names[TRACE_SLOTS] = {"k_prep",      "k_state_fwd", "k_prep (2nd)", "k_out",
                                                     "k_dout_prep", "k_state_bwd", "k_chunk_bwd",  ""};
static struct {
    int on; /* -1 unknown */
    double t0[TRACE_SLOTS], t1[TRACE_SLOTS], cnt[TRACE_SLOTS];
    int n[TRACE_SLOTS];
} tr = {-1, {0}, {0}, {0}, {0}};
#if defined(OH_GDN_PHASES) && !defined(OH_EMU)
static double phase_sum[PHASES + 1 + 2 * SPH];
#endif
static void trace_print(void) {
#if defined(OH_GDN_PHASES) && !defined(OH_EMU)
    static const char *const pn[PHASES] = {"flag wait",       "prologue",          "V loop",        "combine: rows",
                                           "combine: fp16 dPg/Z", "combine: products", "dG + stores"};
    if (phase_sum[PHASES] > 0) {
        fprintf(stderr, "k_chunk_bwd phases (us per block, thread 0's clock, %.0f blocks):", phase_sum[PHASES]);
        for (int i = 0; i < PHASES; i++) fprintf(stderr, "  %s %.2f", pn[i], phase_sum[i] / phase_sum[PHASES] / 1e3);
        fprintf(stderr, "\n");
    }
    static const char *const sn[SPH - 1] = {"stage wait", "issue", "H stores", "1st wait", "elementwise", "U stores",
                                            "2nd wait + max"};
    for (int kind = 0; kind < 2; kind++) {
        const double *q = phase_sum + PHASES + 1 + kind * SPH;
        if (q[SPH - 1] <= 0) continue;
        fprintf(stderr, "%s phases (SM cycles per step, thread 0, %.0f steps):", kind ? "k_state_bwd_wg" : "k_state_fwd_wg",
                q[SPH - 1]);
        for (int i = 0; i < SPH - 1; i++) fprintf(stderr, "  %s %.0f", sn[i], q[i] / q[SPH - 1]);
        fprintf(stderr, "\n");
    }
#endif
    fprintf(stderr, "gdn trace (us from the first kernel's first block, mean over calls):\n");
    for (int i = 0; i < TRACE_SLOTS; i++)
        if (tr.n[i])
            fprintf(stderr, "  %-13s start %8.1f  end %8.1f  span %8.1f  count %.0f  (%d calls)\n", trace_names[i],
                    tr.t0[i] / tr.n[i] / 1e3, tr.t1[i] / tr.n[i] / 1e3, (tr.t1[i] - tr.t0[i]) / tr.n[i] / 1e3,
                    tr.cnt[i] / tr.n[i], tr.n[i]);
}
static bool trace_on(void) {
#ifdef OH_EMU
    return false;
#else
    if (tr.on < 0) {
        const char *e = getenv("OH_GDN_TRACE");
        tr.on = e && e[0] == '1';
        if (tr.on) atexit(trace_print);
    }
    return tr.on == 1;
#endif
}
static Ctx traced(const Ctx &c, int kid) {
    Ctx k = c;
    k.kid = trace_on() ? kid : -1;
    return k;
}
static int trace_begin(cudaStream_t st) {
#ifndef OH_EMU
    if (!trace_on()) return 0;
    unsigned long long init[3 * TRACE_SLOTS];
    for (int i = 0; i < 3 * TRACE_SLOTS; i++) init[i] = i < 2 * TRACE_SLOTS && !(i & 1) ? ~0ull : 0ull;
    GDN_CUDA_TRY(cudaMemcpyToSymbolAsync(gdn_trace_buf, init, sizeof init, 0, cudaMemcpyHostToDevice, st));
#ifdef OH_GDN_PHASES
    const unsigned long long z[PHASES + 1 + 2 * SPH] = {0};
    GDN_CUDA_TRY(cudaMemcpyToSymbolAsync(gdn_phase_buf, z, sizeof z, 0, cudaMemcpyHostToDevice, st));
#endif
#else
    (void)st;
#endif
    return 0;
}
static int trace_end(cudaStream_t st) {
#ifndef OH_EMU
    if (!trace_on()) return 0;
    unsigned long long b[3 * TRACE_SLOTS];
    GDN_CUDA_TRY(cudaMemcpyFromSymbolAsync(b, gdn_trace_buf, sizeof b, 0, cudaMemcpyDeviceToHost, st));
#ifdef OH_GDN_PHASES
    unsigned long long ph[PHASES + 1 + 2 * SPH];
    GDN_CUDA_TRY(cudaMemcpyFromSymbolAsync(ph, gdn_phase_buf, sizeof ph, 0, cudaMemcpyDeviceToHost, st));
#endif
    GDN_CUDA_TRY(cudaStreamSynchronize(st));
#ifdef OH_GDN_PHASES
    for (int i = 0; i < PHASES + 1 + 2 * SPH; i++) phase_sum[i] += (double)ph[i];
#endif
    unsigned long long t0 = ~0ull;
    for (int i = 0; i < TRACE_SLOTS; i++)
        if (b[2 * i + 1] && b[2 * i] < t0) t0 = b[2 * i];
    for (int i = 0; i < TRACE_SLOTS; i++)
        if (b[2 * i + 1]) {
            tr.t0[i] += (double)(b[2 * i] - t0);
            tr.t1[i] += (double)(b[2 * i + 1] - t0);
            tr.cnt[i] += (double)b[2 * TRACE_SLOTS + i];
            tr.n[i]++;
        }
#else
    (void)st;
#endif
    return 0;
}

/* The k_chunk_bwd instance for K (K split in nkb = ceil(K / 128) blocks of
 * <= 128 columns). */
typedef void (*KernelFn)(Ctx);
static KernelFn chunk_bwd_kernel(int K) {
    const int nkb = (K + 127) / 128, kb = (K + nkb - 1) / nkb;
    return kb <= 32 ? k_chunk_bwd<2> : kb <= 64 ? k_chunk_bwd<4> : kb <= 96 ? k_chunk_bwd<6> : k_chunk_bwd<8>;
}

#ifndef OH_EMU
/* cudaFuncAttributePreferredSharedMemoryCarveout = max shared, once per
 * kernel and device. */
static int carveout_max(void (*fn)(Ctx), int dev) {
    enum { N = 32 };
    static const void *done[ATTR_DEV][N];
    for (int i = 0; i < N; i++) {
        if (done[dev][i] == (const void *)fn) return 0;
        if (done[dev][i] == NULL) {
            GDN_CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout,
                                              (int)cudaSharedmemCarveoutMaxShared));
            done[dev][i] = (const void *)fn;
            return 0;
        }
    }
    GDN_CUDA_TRY(cudaFuncSetAttribute(fn, cudaFuncAttributePreferredSharedMemoryCarveout,
                                      (int)cudaSharedmemCarveoutMaxShared));
    return 0;
}
#endif

/* How the overlapped launches are sized: grids of the producers (0: no
 * overlap). */
struct Overlap {
    int a, b; /* forward: the two k_prep grids; backward: the k_dout_prep grid (a) */
    int out;  /* forward without a: k_out starts early and trails k_state_fwd (the default) */
    int cb;   /* backward, state kernel preparing dO itself: k_chunk_bwd starts early */
};

/* Sandbox switches, read once at their call sites (function-local statics):
 * the variable equals val; the variable starts with '1'. */
static bool env_eq(const char *name, const char *val) {
    const char *e = getenv(name);
    return e && !strcmp(e, val);
}
static bool env_on(const char *name) {
    const char *e = getenv(name);
    return e && e[0] == '1';
}

/* K <= 128: the state kernels have a signaller warp (StateCfg::XW). */
static bool state_has_signaller(int K) { return K <= 128; }
/* With one, k_state_bwd's signaller prepares dO (dprep_load), and k_dout_prep
 * does not run; OH_GDN_DPREP=kernel (sandbox) runs k_dout_prep alone first
 * instead, the state kernel then taking the flags path, and k_chunk_bwd
 * starts early the same way. */
static bool state_preps_dout(int K) {
    static const bool kernel = env_eq("OH_GDN_DPREP", "kernel");
    return state_has_signaller(K) && !kernel;
}

/* What one block of `k` holds on an SM (registers in the per-warp allocation
 * unit of 256, shared memory with the per-block reservation).  The register
 * file is split between the SM's 4 schedulers and a block's warps between
 * them, so a block of 9 warps puts 3 on one scheduler: qregs is what the
 * busiest quarter holds, and blocks beside each other are counted as if their
 * busiest quarters coincided (measured 2026-12-06: a state block of 288
 * threads at 224 registers failed to launch though 9 x 7168 < 65536, and the
 * state kernel did not start beside two k_prep blocks though the whole-SM sums
 * fitted). */
struct Res {
    long regs, qregs, smem, threads;
};
#ifndef OH_EMU
static int res_of(const KernelCfg &k, int reserved, Res *r) {
    cudaFuncAttributes fa;
    GDN_CUDA_TRY(cudaFuncGetAttributes(&fa, (const void *)k.fn));
    const long warps = (k.threads + 31) / 32, wregs = ((long)fa.numRegs * 32 + 255) / 256 * 256;
    r->regs = warps * wregs;
    r->qregs = (warps + 3) / 4 * wregs;
    r->smem = (long)fa.sharedSizeBytes + (long)k.smem + reserved;
    r->threads = warps * 32;
    return 0;
}
/* The most blocks of `p` that fit on an SM beside `extra` blocks of `s`. */
static int fit_beside(const Res &p, const Res &s, int extra, long regs, long smem, long threads) {
    int n = 0;
    while (n < 32 && (n + 1) * p.regs + extra * s.regs <= regs && (n + 1) * p.qregs + extra * s.qregs <= regs / 4 &&
           (n + 1) * p.smem + extra * s.smem <= smem && (n + 1) * p.threads + extra * s.threads <= threads)
        n++;
    return n;
}
#endif

/* fuse: the forward state kernel computes the output (state_fuses_out), which changes its size */
static int plan_overlap(const Ctx &c, bool bwd, Overlap *o, bool fuse = false) {
    o->a = o->b = o->out = o->cb = 0;
    /* OH_GDN_OVERLAP: 0 none, 1 forward and backward, bwd the backward only,
     * out (default) the backward and k_out trailing a k_state_fwd that starts
     * after k_prep (measured 2026-12-06, H100, f+b: 1 x 8192 2.140 ms vs 2.281
     * with bwd, 1 x 32768 8.073 vs 8.813) */
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("OH_GDN_OVERLAP");
        env = !e || !strcmp(e, "out") ? 6 : !strcmp(e, "bwd") ? 2 : e[0] == '0' ? 0 : 3;
    }
    if (!(env & (bwd ? 2 : 5)) || prof.on) return 0;
    const long items = (long)c.ncmax * c.Hv;
#ifdef OH_EMU
    /* the emulator runs kernels one after another: the first producer does
     * everything, the rest find no work left; small grids exercise the loops */
    o->a = bwd && state_has_signaller(c.K) ? 0 : (int)(items < 7 ? items : 7);
    o->b = bwd ? 0 : 3;
    return 0;
#else
    int dev = 0;
    GDN_CUDA_TRY(cudaGetDevice(&dev));
    if (dev < 0 || dev >= ATTR_DEV) return 0;
    int sms = attr_cache.sms[dev], major = attr_cache.major[dev];
    if (sms == 0) {
        GDN_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
        GDN_CUDA_TRY(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
        attr_cache.sms[dev] = sms;
        attr_cache.major[dev] = major;
    }
    const long nstate = (long)c.nvb * c.Hv * c.ndocs;
    if (major < 9) return 0;
    if (bwd && state_has_signaller(c.K)) {
        /* k_chunk_bwd waits only for the state blocks, which have all started
         * before it does (programmatic launch): safe at any grid size */
        int r;
        if ((r = carveout_max(state_kernel(c.K, true).fn, dev)) || (r = carveout_max(chunk_bwd_kernel(c.K), dev)))
            return r;
        o->cb = 1;
        return 0;
    }
    /* env & 4: k_out launched early.  It starts only once every state block has
     * (programmatic launch), so the blocks it waits for are running at any grid
     * size, also when the state grid exceeds the SMs (several documents): there
     * k_out's blocks take the SMs the state kernel's last wave leaves (H100,
     * bench/runs/2026-12-06-ab2: f+b 4 x 8192 7.48 -> 7.26 ms, 16 docs 7.58 -> 7.43;
     * one document unchanged).  OH_GDN_OUT_ANY=0 (sandbox) keeps it to grids
     * that fit. */
    static const bool any = !env_eq("OH_GDN_OUT_ANY", "0");
    if (!bwd && !(env & 1) && (any || nstate <= sms)) {
        o->out = 1;
        return 0;
    }
    if (nstate > sms) return 0;
    int regs, smem, threads, reserved;
    GDN_CUDA_TRY(cudaDeviceGetAttribute(&regs, cudaDevAttrMaxRegistersPerMultiprocessor, dev));
    GDN_CUDA_TRY(cudaDeviceGetAttribute(&smem, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
    GDN_CUDA_TRY(cudaDeviceGetAttribute(&threads, cudaDevAttrMaxThreadsPerMultiProcessor, dev));
    GDN_CUDA_TRY(cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, dev));
    Res s = {}, p = {};
    int r;
    const KernelCfg sk = state_kernel(c.K, bwd, fuse);
    if ((r = res_of(sk, reserved, &s))) return r;
    const KernelCfg prod = bwd ? KernelCfg{k_dout_prep, 0, 128} : KernelCfg{k_prep<true>, prep_smem(c.K, c.V), 128};
    if ((r = res_of(prod, reserved, &p))) return r;
    /* An SM's split between L1 and shared memory is set for the first kernel
     * it runs and changes only when it is idle: with the default (the least
     * shared memory the kernel needs) a state block finds no room beside the
     * producer's blocks until they exit.  So every kernel that overlaps asks
     * for the largest shared-memory split (measured: without it k_state_fwd
     * started only when k_prep's blocks began to exit). */
    const KernelFn carve[3] = {prod.fn, sk.fn, bwd ? chunk_bwd_kernel(c.K) : k_out};
    for (int i = 0; i < 3; i++)
        if ((r = carveout_max(carve[i], dev))) return r;
    const int beside = fit_beside(p, s, 1, regs, smem, threads), alone = fit_beside(p, s, 0, regs, smem, threads);
    if (beside < 1) return 0;
    if (bwd) {
        /* k_dout_prep is light: a few blocks per SM are enough, and k_chunk_bwd
         * (a whole SM a block) gets the SMs as soon as they are done */
        const long g = (long)sms * (beside < 4 ? beside : 4);
        o->a = (int)(items < g ? items : g);
        return 0;
    }
    o->a = (int)(items < (long)sms * beside ? items : (long)sms * beside);
    o->b = (int)((sms - nstate) * (alone - beside));
    if (o->b > items) o->b = (int)items;
    const char *ge = getenv("OH_GDN_PREP_GRIDS"); /* sandbox: "A,B" */
    if (ge && sscanf(ge, "%d,%d", &o->a, &o->b) != 2) o->b = 0;
    if (o->a < 1) o->a = 1;
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("OH_GDN_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "gdn overlap: %ld state blocks; k_prep %d per SM beside one, %d alone: grids %d + %d\n",
                nstate, beside, alone, o->a, o->b);
    return 0;
#endif
}
/* OH_GDN_TMA: one tensor map, dim0 (contiguous) x dim1 x dim2 elements of esize
 * bytes (dim2 1: two dimensions), rows stride1 bytes apart and planes stride2,
 * boxes of box0 x box1 (x box2), 128-byte swizzle or none; elements out of
 * range read as zero. */
static int tma_map3(TmaMap *m, const void *base, uint64_t dim0, uint64_t dim1, uint64_t dim2, uint64_t stride1,
                    uint64_t stride2, uint32_t box0, uint32_t box1, uint32_t box2, uint32_t esize, bool swz,
                    const char *what) {
    const int rank = dim2 == 1 && box2 == 1 ? 2 : 3;
#ifdef OH_EMU
    memset(m, 0, sizeof *m);
    m->base = (const unsigned char *)base;
    m->dim0 = dim0;
    m->dim1 = dim1;
    m->dim2 = dim2;
    m->stride1 = stride1;
    m->stride2 = rank == 3 ? stride2 : dim1 * stride1;
    m->box0 = box0;
    m->box1 = box1;
    m->box2 = box2;
    m->esize = esize;
    m->swz = swz ? 128 : 0;
    (void)what;
    return 0;
#else
    static PFN_cuTensorMapEncodeTiled_v12000 enc = NULL;
    if (!enc) {
        cudaDriverEntryPointQueryResult q;
        void *f = NULL;
#if CUDART_VERSION >= 12050
        GDN_CUDA_TRY(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
#else
        GDN_CUDA_TRY(cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &f, cudaEnableDefault, &q));
#endif
        if (q != cudaDriverEntryPointSuccess || !f)
            return gdn_fail(GDN_STATUS_CUDA, __FILE__, __LINE__, "the driver has no cuTensorMapEncodeTiled");
        enc = (PFN_cuTensorMapEncodeTiled_v12000)f;
    }
    const cuuint64_t dims[3] = {dim0, dim1, dim2}, strides[2] = {stride1, stride2};
    const cuuint32_t box[3] = {box0, box1, box2}, es[3] = {1, 1, 1};
    const CUresult r = enc(m, esize == 4 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT32 : CU_TENSOR_MAP_DATA_TYPE_UINT16,
                           (cuuint32_t)rank, const_cast<void *>(base), dims, strides, box, es,
                           CU_TENSOR_MAP_INTERLEAVE_NONE, swz ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                           CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return gdn_fail(GDN_STATUS_CUDA, __FILE__, __LINE__,
                        "cuTensorMapEncodeTiled (%s, %llu x %llu x %llu): error %d", what, (unsigned long long)dim0,
                        (unsigned long long)dim1, (unsigned long long)dim2, (int)r);
    return 0;
#endif
}
static int tma_map(TmaMap *m, const void *base, uint64_t dim0, uint64_t dim1, uint64_t stride1, uint32_t box0,
                   uint32_t box1, uint32_t esize, bool swz, const char *what) {
    return tma_map3(m, base, dim0, dim1, 1, stride1, 0, box0, box1, 1, esize, swz, what);
}
/* OH_GDN_CB_TMA: k_chunk_bwd's maps, [64][64] (128-byte swizzle) boxes of the
 * [nc Hv 64][V] dO, U and dU, of v ([T][Hv][V]: box 64 x 1 x 64), and the
 * [KB][64] boxes of the [nc Hv][K][V] S0 and dH */
static int cb_maps(Ctx *c, int KB) {
    const uint64_t K = (uint64_t)c->K, V = (uint64_t)c->V, Hv = (uint64_t)c->Hv, nch = (uint64_t)c->ncmax * c->Hv;
    if (nch * 64 > 0x7fffffffu) /* (T <= 2^30: sizes_ok) */
        return gdn_fail(GDN_STATUS_UNSUPPORTED, __FILE__, __LINE__,
                        "%d chunks x %d value heads: %llu rows of dO exceed the bulk copies' 2^31 - 1 coordinates",
                        c->ncmax, c->Hv, (unsigned long long)(nch * 64));
    int r;
    if ((r = tma_map(&c->tm[TM_CB_DO], c->dOh, V, nch * 64, 2 * V, 64, 64, 2, true, "dO")) ||
        (r = tma_map(&c->tm[TM_CB_U], c->U, V, nch * 64, 2 * V, 64, 64, 2, true, "U")) ||
        (r = tma_map(&c->tm[TM_CB_DU], c->Uv, V, nch * 64, 2 * V, 64, 64, 2, true, "dU")) ||
        (r = tma_map3(&c->tm[TM_CB_V], c->v, V, Hv, (uint64_t)c->T, 2 * V, 2 * V * Hv, 64, 1, 64, 2, true, "v")) ||
        (r = tma_map3(&c->tm[TM_CB_H], c->H, V, K, nch, 2 * V, 2 * V * K, 64, (uint32_t)KB, 1, 2, true, "S0")) ||
        (r = tma_map3(&c->tm[TM_CB_DH], c->dH, V, K, nch, 2 * V, 2 * V * K, 64, (uint32_t)KB, 1, 2, true, "dH")))
        return r;
    return 0;
}
template <int KBT> static int run_chunk_bwd(const Ctx &c, cudaStream_t st, bool early) {
    if (OH_GDN_CB_TMA) {
        Ctx cc = c;
        const int r = cb_maps(&cc, 16 * KBT);
        if (r) return r;
        return launch(k_chunk_bwd<KBT>, dim3(c.ncmax * c.Hv * c.nkb), dim3(256), chunk_bwd_smem<KBT>(), st,
                      "k_chunk_bwd", cc, early);
    }
    return launch(k_chunk_bwd<KBT>, dim3(c.ncmax * c.Hv * c.nkb), dim3(256), chunk_bwd_smem<KBT>(), st,
                  "k_chunk_bwd", c, early);
}
/* K split in nkb = ceil(K / 128) blocks of <= 128 columns. */
static int chunk_bwd(const Ctx &c, cudaStream_t st, bool early) {
    const int kb = (c.K + c.nkb - 1) / c.nkb;
    if (kb <= 32) return run_chunk_bwd<2>(c, st, early);
    if (kb <= 64) return run_chunk_bwd<4>(c, st, early);
    if (kb <= 96) return run_chunk_bwd<6>(c, st, early);
    return run_chunk_bwd<8>(c, st, early);
}

/* The wgmma state kernels' maps (OH_GDN_TMA, K <= 128): [64][64] tiles of the
 * [nc Hv 64][K] Wu, Kn, Qn, the [nc Hv 64][64] P, the [nc Hv 64][V] Uv and dO
 * (128-byte swizzle), and G's 64 values a (chunk, head). */
static int tma_maps(Ctx *c) {
    if (!OH_GDN_TMA || c->K > 128) return 0;
    const uint64_t K = (uint64_t)c->K, V = (uint64_t)c->V, nch = (uint64_t)c->ncmax * c->Hv; /* (chunk, head) pairs */
    const uint64_t rows = nch * 64, hrows = nch * K; /* rows of the [64][.] tiles; of H, dH */
    if (rows > 0x7fffffffu || hrows > 0x7fffffffu)
        return gdn_fail(GDN_STATUS_UNSUPPORTED, __FILE__, __LINE__,
                        "%d chunks x %d value heads: %llu rows of Wu / Kn or %llu rows of H exceed the bulk copies' "
                        "2^31 - 1 coordinates",
                        c->ncmax, c->Hv, (unsigned long long)rows, (unsigned long long)hrows);
    int r;
    if ((r = tma_map(&c->tm[TM_WU], c->Wu, K, rows, 2 * K, 64, 64, 2, true, "Wu")) ||
        (r = tma_map(&c->tm[TM_KN], c->Kn, K, rows, 2 * K, 64, 64, 2, true, "Kn")) ||
        (r = tma_map(&c->tm[TM_QN], c->Qn, K, rows, 2 * K, 64, 64, 2, true, "Qn")) ||
        (r = tma_map(&c->tm[TM_P], c->P, 64, rows, 128, 64, 64, 2, true, "P")) ||
        (r = tma_map(&c->tm[TM_UV], c->Uv, V, rows, 2 * V, 64, 64, 2, true, "Uv")) ||
        (r = tma_map(&c->tm[TM_DO], c->dOh, V, rows, 2 * V, 64, 64, 2, true, "dO")) ||
        (r = tma_map(&c->tm[TM_G], c->G, 64, nch, 256, 64, 1, 4, false, "G")))
        return r;
    if (OH_GDN_TMA_ST && /* a warp's [K][16] of H, dH; [64][16] of U, dU (held in Uv) */
        ((r = tma_map(&c->tm[TM_H], c->H, V, hrows, 2 * V, 16, (uint32_t)K, 2, false, "H")) ||
         (r = tma_map(&c->tm[TM_DH], c->dH, V, hrows, 2 * V, 16, (uint32_t)K, 2, false, "dH")) ||
         (r = tma_map(&c->tm[TM_U], c->U, V, rows, 2 * V, 16, 64, 2, false, "U")) ||
         (r = tma_map(&c->tm[TM_DU], c->Uv, V, rows, 2 * V, 16, 64, 2, false, "dU"))))
        return r;
    return 0;
}

static int make_ctx(Ctx *c, int T, int ndocs, int Hk, int Hv, int K, int V, void *ws, size_t ws_bytes) {
    GDN_REQUIRE(sizes_ok(T, ndocs, Hk, Hv, K, V), GDN_STATUS_UNSUPPORTED);
    const Layout L = layout_for(T, ndocs, Hk, Hv, K, V);
    GDN_REQUIRE(ws != NULL && ((uintptr_t)ws & 255) == 0, GDN_STATUS_WORKSPACE);
    if (ws_bytes < L.total)
        return gdn_fail(GDN_STATUS_WORKSPACE, __FILE__, __LINE__, "workspace of %zu bytes, %zu needed", ws_bytes,
                        L.total);
    memset(c, 0, sizeof *c);
    unsigned char *b = (unsigned char *)ws;
    c->tab = (int *)(b + L.tab);
    c->G = (float *)(b + L.G);
    c->Wu = (uint16_t *)(b + L.Wu);
    c->Kn = (uint16_t *)(b + L.Kn);
    c->Qn = (uint16_t *)(b + L.Qn);
    c->P = (uint16_t *)(b + L.P);
    c->Tm = (uint16_t *)(b + L.Tm);
    c->Uv = (uint16_t *)(b + L.Uv);
    c->H = (uint16_t *)(b + L.H);
    c->dH = (uint16_t *)(b + L.dH);
    c->U = (uint16_t *)(b + L.U);
    c->dOh = (uint16_t *)(b + L.dOh);
    c->eUv = (int *)(b + L.eUv);
    c->eH = (int *)(b + L.eH);
    c->eU = (int *)(b + L.eU);
    c->edH = (int *)(b + L.edH);
    c->edO = (int *)(b + L.edO);
    c->dqs = L.dqs ? (float *)(b + L.dqs) : NULL;
    c->dks = L.dks ? (float *)(b + L.dks) : NULL;
    c->kid = -1;
    c->ctr = (int *)(b + L.fl);
    c->flP = c->ctr + 16;
    c->flS = c->flP + (size_t)L.ncmax * Hv;
    c->flD = c->flS + (size_t)L.ncmax * Hv;
    c->flB = c->flD + (size_t)L.ncmax * Hv;
    c->T = T;
    c->Hk = Hk;
    c->Hv = Hv;
    c->K = K;
    c->V = V;
    c->ndocs = ndocs;
    c->ncmax = L.ncmax;
    c->nkb = (K + 127) / 128;
    c->nvb = (V + 63) / 64;
    if ((size_t)L.ncmax * Hv * (c->nvb > c->nkb ? c->nvb : c->nkb) > 0x7fffffffu)
        return gdn_fail(GDN_STATUS_UNSUPPORTED, __FILE__, __LINE__,
                        "%d chunks x %d value heads x %d column blocks exceed one launch's 2^31 - 1 blocks", L.ncmax,
                        Hv, c->nvb);
    c->scale = 1.0f / sqrtf((float)K);
    static const bool fma = env_eq("OH_GDN_PREP_SOLVE", "fma");
    c->prep_fma = fma;
    c->self_prep = state_preps_dout(K);
    return tma_maps(c);
}

/* k_chunk_table, k_prep, k_state_fwd: everything k_out and the backward read;
 * with k_out when `out`; overlapped as "Overlap" says when plan_overlap allows. */
/* Whether the forward state kernel computes the output itself (k_state_fwd_wg
 * with OUT, k_out not launched): by default whenever it runs (K <= 128).
 * Measured (H200, one call, bench/runs/2026-12-06-6fbf6b8, f+b ms fused / k_out
 * trailing): 4 x 8192 6.25 / 6.43, 16 docs 6.27 / 6.56, but 1 x 8192 1.905 / 1.836
 * and 1 x 32768 7.37 / 7.09: with one document the state kernel is the critical
 * path and k_out beside it costs nothing.  Choosing by the state grid (fused when
 * it exceeds the SMs, OH_GDN_SF_OUT=auto) gets the better of both, but then a
 * document's output depends on what it is packed with (the two ways round
 * differently; test_gdn's "packed documents == each document alone" failed,
 * H100, bench/runs/2026-12-06-2c6d030), so it is not the default.
 * OH_GDN_SF_OUT=0 (sandbox): never. */
static int state_fuses_out(const Ctx &c, bool *fuse) {
    *fuse = false;
    if (!OH_GDN_SF_WG || c.K > 128) return 0;
    static const int env = env_eq("OH_GDN_SF_OUT", "0") ? 0 : env_eq("OH_GDN_SF_OUT", "auto") ? -1 : 1;
    if (env >= 0) {
        *fuse = env == 1;
        return 0;
    }
    int sms = 132; /* the emulator's */
#ifndef OH_EMU
    int dev = 0;
    GDN_CUDA_TRY(cudaGetDevice(&dev));
    GDN_CUDA_TRY(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
#endif
    *fuse = (long)c.nvb * c.Hv * c.ndocs > sms;
    return 0;
}
static int forward_pass(const Ctx &c, const int32_t *cu, cudaStream_t st, bool out) {
    bool fuse = false;
    if (out) {
        const int r0 = state_fuses_out(c, &fuse);
        if (r0) return r0;
        if (fuse) out = false; /* k_state_fwd_wg computes it */
    }
    /* the claim counter, flP, flS */
    GDN_CUDA_TRY(cudaMemsetAsync(c.ctr, 0, sizeof(int) * (16 + 2 * (size_t)c.ncmax * c.Hv), st));
    GDN_LAUNCH(k_chunk_table, dim3(1), dim3(256), 0, st, c, cu);
    GDN_CUDA_TRY(cudaGetLastError());
    prof_mark("k_chunk_table", st);
    const dim3 go(c.ncmax * c.Hv * c.nvb);
    const size_t sp = prep_smem(c.K, c.V), so = out_smem(c.K);
    Overlap o;
    int r = plan_overlap(c, false, &o, fuse);
    if (r) return r;
    if (o.a > 0) { /* see "Overlap" */
        if ((r = launch(k_prep<true>, dim3(o.a), dim3(128), sp, st, "k_prep", traced(c, TR_PREP))) ||
            (r = run_state(traced(c, TR_STATE_FWD), st, false, true, fuse)))
            return r;
        if (o.b > 0 && (r = launch(k_prep<true>, dim3(o.b), dim3(128), sp, st, "k_prep", traced(c, TR_PREP2), true)))
            return r;
        return out ? launch(k_out, go, dim3(128), so, st, "k_out", traced(c, TR_OUT), true) : 0;
    }
    /* OH_GDN_FWD_EARLY=1 (sandbox; H100, bench/runs/2026-12-06-ab2 and -d8cd05f:
     * f+b 1 x 8192 -0.01 and -0.03 ms, 1 x 32768 +0.02 and -0.015, the other shapes
     * unchanged: within noise, not the default): the state kernel starts once
     * every k_prep block has (k_prep waits for nothing), taking the SMs of
     * k_prep's last wave as they empty */
    static const bool early = env_on("OH_GDN_FWD_EARLY");
    if ((r = launch(k_prep<false>, dim3(c.ncmax * c.Hv), dim3(128), sp, st, "k_prep", traced(c, TR_PREP))) ||
        (r = run_state(traced(c, TR_STATE_FWD), st, false, o.out != 0 && early, fuse)))
        return r;
    return out ? launch(k_out, go, dim3(128), so, st, "k_out", traced(c, TR_OUT), o.out != 0) : 0;
}

extern "C" int gdn_fwd(uint16_t *out, float *s_final, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                       const float *g, const float *beta, const float *s0, const int32_t *cu_seqlens, int ndocs, int T,
                       int Hk, int Hv, int K, int V, void *workspace, size_t workspace_bytes, void *stream) {
    Ctx c;
    int r = make_ctx(&c, T, ndocs, Hk, Hv, K, V, workspace, workspace_bytes);
    if (r) return r;
    GDN_REQUIRE(out && q && k && v && g && beta && cu_seqlens, GDN_STATUS_BAD_ARG);
    GDN_REQUIRE(al16(out) && al16(q) && al16(k) && al16(v), GDN_STATUS_BAD_ARG);
    GDN_REQUIRE(al16(s_final) && al16(s0), GDN_STATUS_BAD_ARG);
    c.q = q;
    c.k = k;
    c.v = v;
    c.g = g;
    c.beta = beta;
    c.s0 = s0;
    c.out = out;
    c.s_final = s_final;
    cudaStream_t st = (cudaStream_t)stream;
    prof_mark(NULL, st);
    if ((r = trace_begin(st)) || (r = forward_pass(c, cu_seqlens, st, true))) return r;
    return trace_end(st);
}

extern "C" int gdn_bwd(uint16_t *dq, uint16_t *dk, uint16_t *dv, float *dg, float *dbeta, float *ds0,
                       const uint16_t *dout, const float *ds_final, const uint16_t *q, const uint16_t *k,
                       const uint16_t *v, const float *g, const float *beta, const float *s0,
                       const int32_t *cu_seqlens, int ndocs, int T, int Hk, int Hv, int K, int V, int ws_has_fwd,
                       void *workspace, size_t workspace_bytes, void *stream) {
    Ctx c;
    int r = make_ctx(&c, T, ndocs, Hk, Hv, K, V, workspace, workspace_bytes);
    if (r) return r;
    GDN_REQUIRE(dq && dk && dv && dg && dbeta && dout && q && k && v && g && beta && cu_seqlens,
                GDN_STATUS_BAD_ARG);
    GDN_REQUIRE(al16(dq) && al16(dk) && al16(dv) && al16(dout) && al16(q) && al16(k) && al16(v), GDN_STATUS_BAD_ARG);
    GDN_REQUIRE(al16(ds0) && al16(ds_final) && al16(s0), GDN_STATUS_BAD_ARG);
    c.q = q;
    c.k = k;
    c.v = v;
    c.g = g;
    c.beta = beta;
    c.s0 = s0;
    c.dout = dout;
    c.ds_final = ds_final;
    c.dq = dq;
    c.dk = dk;
    c.dv = dv;
    c.dg = dg;
    c.dbeta = dbeta;
    c.ds0 = ds0;
    cudaStream_t st = (cudaStream_t)stream;
    prof_mark(NULL, st);
    if ((r = trace_begin(st))) return r;
    if (!ws_has_fwd) {
        r = forward_pass(c, cu_seqlens, st, false);
        if (r) return r;
    }
    GDN_CUDA_TRY(cudaMemsetAsync(c.flD, 0, 2 * sizeof(int) * (size_t)c.ncmax * c.Hv, st)); /* flD, flB */
    if (c.nkb > 1) {
        GDN_CUDA_TRY(cudaMemsetAsync(dg, 0, (size_t)T * Hv * sizeof(float), st));
        GDN_CUDA_TRY(cudaMemsetAsync(dbeta, 0, (size_t)T * Hv * sizeof(float), st));
        prof_mark("memset", st);
    }
    Overlap o;
    if ((r = plan_overlap(c, true, &o))) return r;
    if (state_has_signaller(c.K)) { /* see dprep_load */
        if ((!c.self_prep && (r = launch(k_dout_prep, dim3(c.ncmax * c.Hv), dim3(128), 0, st, "k_dout_prep",
                                         traced(c, TR_DOUT_PREP)))) ||
            (r = run_state(traced(c, TR_STATE_BWD), st, true, false)) ||
            (r = chunk_bwd(traced(c, TR_CHUNK_BWD), st, o.cb != 0)))
            return r;
    } else if (o.a > 0) { /* see "Overlap" */
        if ((r = launch(k_dout_prep, dim3(o.a), dim3(128), 0, st, "k_dout_prep", traced(c, TR_DOUT_PREP))) ||
            (r = run_state(traced(c, TR_STATE_BWD), st, true, true)) ||
            (r = chunk_bwd(traced(c, TR_CHUNK_BWD), st, true)))
            return r;
    } else if ((r = launch(k_dout_prep, dim3(c.ncmax * c.Hv), dim3(128), 0, st, "k_dout_prep",
                           traced(c, TR_DOUT_PREP))) ||
               (r = run_state(traced(c, TR_STATE_BWD), st, true, false)) ||
               (r = chunk_bwd(traced(c, TR_CHUNK_BWD), st, false)))
        return r;
    if (c.nkb > 1 || Hv != Hk) {
        r = launch(k_qk_finish, dim3((T * Hk + 7) / 8), dim3(256), 0, st, "k_qk_finish", c);
        if (r) return r;
    }
    return trace_end(st);
}
