// wgmma.cuh: Hopper warpgroup matrix multiply-accumulate (wgmma.mma_async,
// bf16 or fp16 operands -> f32, m64nNk16, N = 32, 64, 96 or 128) for the kernels of this
// folder, with the CPU emulator's versions under OH_EMU
// (kernels/cuda/dev/emu/cuda_emu.h).
//
// Shared-memory operands are tiles in the 128-byte-swizzle layout: rows of 64
// bf16 (128 bytes), the 16-byte chunk c of row r stored at chunk c ^ (r & 7),
// in atoms of 8 rows (1024 bytes, 1024-byte aligned).  A descriptor names the
// operand's first element; for a K-major operand (K contiguous) SBO is the
// stride between 8-row groups of M or N and a k step of 16 moves the start by
// 32 bytes inside the row; for an MN-major operand (M or N contiguous) LBO is
// the stride between 64-wide M/N blocks and SBO the stride between groups of
// 8 k rows.
//
// The accumulator d[N/8][4] of a thread has the mma.sync m16n8 layout for its
// warp's 16 rows of the 64: d[j][0..1] = row g, columns 8j + 2t, +1; d[j][2..3]
// = row g + 8 (g = lane / 4, t = lane % 4, rows 16 warp + ...); an A operand in
// registers has the mma.sync m16n8k16 A layout for the same rows.
//
// Use: wg_fence_acc on accumulators that other instructions wrote, wg_arrive,
// the wgmma calls, wg_commit, ... wg_wait<n>, then wg_fence_acc again before
// reading them.  Shared memory written by threads (st.shared, cp.async) must be
// followed by fence_async_smem() in the writing threads and a barrier before a
// wgmma reads it.
#pragma once
#include <stdint.h>

#if defined(OH_EMU)
#define OH_WGMMA 1
#elif defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define OH_WGMMA 1
#else
#define OH_WGMMA 0 // host pass or a target without wgmma: the device functions trap
#endif

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
#ifdef OH_EMU
    return emu_smem_addr(p);
#else
    return (uint32_t)__cvta_generic_to_shared(p);
#endif
}

// Descriptor of a 128-byte-swizzled operand starting at p (see the top).
__device__ __forceinline__ uint64_t wg_desc(const void *p, uint32_t lbo, uint32_t sbo) {
    const uint32_t a = smem_u32(p);
    return (uint64_t)((a & 0x3FFFF) >> 4) | ((uint64_t)((lbo >> 4) & 0x3FFF) << 16) |
           ((uint64_t)((sbo >> 4) & 0x3FFF) << 32) | (1ull << 62);
}
// The same descriptor with its start moved by `bytes` (a multiple of 16).
__device__ __forceinline__ uint64_t wg_desc_add(uint64_t d, uint32_t bytes) { return d + (bytes >> 4); }

__device__ __forceinline__ void wg_arrive() {
#if !defined(OH_EMU) && OH_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit() {
#if defined(OH_EMU)
    emu_wgmma_commit(OH_EMU_WHERE);
#elif OH_WGMMA
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
template <int N> __device__ __forceinline__ void wg_wait() {
#if defined(OH_EMU)
    emu_wgmma_wait(N, OH_EMU_WHERE);
#elif OH_WGMMA
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Generic-proxy writes to shared memory (st.shared, cp.async) made visible to wgmma.
__device__ __forceinline__ void fence_async_smem() {
#if !defined(OH_EMU) && OH_WGMMA
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps the compiler from moving accesses of these registers across a wgmma or a wait.
template <int J> __device__ __forceinline__ void wg_fence_acc(float (&d)[J][4]) {
#if !defined(OH_EMU)
#pragma unroll
    for (int j = 0; j < J; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+f"(d[j][e])::"memory");
#else
    (void)d;
#endif
}
template <int J> __device__ __forceinline__ void wg_fence_regs(uint32_t (&a)[J][4]) {
#if !defined(OH_EMU)
#pragma unroll
    for (int j = 0; j < J; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) asm volatile("" : "+r"(a[j][e])::"memory");
#else
    (void)a;
#endif
}

// The accumulator operands of an m64nNk16 wgmma (N / 2 registers a thread) and
// their names in the instruction (OH_WG_D<N>); the other operands are numbered
// after them: OH_WG_SS<N> / OH_WG_RS<N> name them for wgmma_ss / wgmma_rs.
#define OH_WG_ACC8(j) "+f"(d[j][0]), "+f"(d[j][1]), "+f"(d[j][2]), "+f"(d[j][3])
#define OH_WG_ACC32 OH_WG_ACC8(0), OH_WG_ACC8(1), OH_WG_ACC8(2), OH_WG_ACC8(3)
#define OH_WG_ACC64 OH_WG_ACC32, OH_WG_ACC8(4), OH_WG_ACC8(5), OH_WG_ACC8(6), OH_WG_ACC8(7)
#define OH_WG_ACC96 OH_WG_ACC64, OH_WG_ACC8(8), OH_WG_ACC8(9), OH_WG_ACC8(10), OH_WG_ACC8(11)
#define OH_WG_ACC128 OH_WG_ACC96, OH_WG_ACC8(12), OH_WG_ACC8(13), OH_WG_ACC8(14), OH_WG_ACC8(15)
#define OH_WG_D32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15}"
#define OH_WG_SS32 "%16, %17, p, 1, 1, %19, %20", "%18"
#define OH_WG_RS32 "{%16,%17,%18,%19}, %20, p, 1, 1, %21", "%22"
#define OH_WG_D64 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
#define OH_WG_SS64 "%32, %33, p, 1, 1, %35, %36", "%34"
#define OH_WG_RS64 "{%32,%33,%34,%35}, %36, p, 1, 1, %37", "%38"
#define OH_WG_D96 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47}"
#define OH_WG_SS96 "%48, %49, p, 1, 1, %51, %52", "%50"
#define OH_WG_RS96 "{%48,%49,%50,%51}, %52, p, 1, 1, %53", "%54"
#define OH_WG_D128 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#define OH_WG_SS128 "%64, %65, p, 1, 1, %67, %68", "%66"
#define OH_WG_RS128 "{%64,%65,%66,%67}, %68, p, 1, 1, %69", "%70"
// One wgmma.mma_async m64n<N>k16 with <TY> operands; OPS is OH_WG_SS<N> or
// OH_WG_RS<N> (the operand names after D, then the scale-d predicate's).
#define OH_WG_ASM2(N, TY, OPS, PRED, ...)                                                                         \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " PRED ", 0;\n"                                              \
                 "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." TY "." TY " " OH_WG_D##N ", " OPS ";\n}\n"     \
                 : OH_WG_ACC##N                                                                                    \
                 : __VA_ARGS__                                                                                     \
                 : "memory")
// (OPS expands to two literals before OH_WG_ASM2 sees it: its OPS and PRED.)
#define OH_WG_ASM(N, TY, OPS, ...) OH_WG_ASM2(N, TY, OPS, __VA_ARGS__)
// The instruction for this template's N and operand type; KIND is SS or RS.
#define OH_WG_EACH(KIND)                                                                                          \
    do {                                                                                                          \
        if constexpr (N == 32) OH_WG_ASM_TY(32, KIND);                                                            \
        if constexpr (N == 64) OH_WG_ASM_TY(64, KIND);                                                            \
        if constexpr (N == 96) OH_WG_ASM_TY(96, KIND);                                                            \
        if constexpr (N == 128) OH_WG_ASM_TY(128, KIND);                                                          \
    } while (0)
#define OH_WG_ASM_TY(NN, KIND)                                                                                    \
    do {                                                                                                          \
        if constexpr (F16) OH_WG_ASM(NN, "f16", OH_WG_##KIND##NN, OH_WG_##KIND##_IN);                             \
        else OH_WG_ASM(NN, "bf16", OH_WG_##KIND##NN, OH_WG_##KIND##_IN);                                          \
    } while (0)
#define OH_WG_SS_IN "l"(da), "l"(db), "r"(scale_d), "n"(TA), "n"(TB)
#define OH_WG_RS_IN "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "n"(TB), "r"(scale_d)

// d[64 x N] (+)= A[64 x 16] B[16 x N], A and B in shared memory (TA / TB: 0 K-major, 1 MN-major);
// bf16 operands, or fp16 with F16.
template <int N, int TA, int TB, bool F16 = false>
__device__ __forceinline__ void wgmma_ss(float (&d)[N / 8][4], uint64_t da, uint64_t db, int scale_d) {
    static_assert(N == 32 || N == 64 || N == 96 || N == 128, "wgmma_ss: N is 32, 64, 96 or 128");
#if defined(OH_EMU)
    emu_wgmma(&d[0][0], N, nullptr, da, db, TA, TB, scale_d != 0, OH_EMU_WHERE, F16);
#elif OH_WGMMA
    OH_WG_EACH(SS);
#else
    (void)d; (void)da; (void)db; (void)scale_d;
    __trap();
#endif
}

// d[64 x N] (+)= A[64 x 16] B[16 x N], A in registers (mma.sync A layout), B in shared memory.
template <int N, int TB, bool F16 = false>
__device__ __forceinline__ void wgmma_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t db, int scale_d) {
    static_assert(N == 32 || N == 64 || N == 96 || N == 128, "wgmma_rs: N is 32, 64, 96 or 128");
#if defined(OH_EMU)
    emu_wgmma(&d[0][0], N, a, 0, db, 0, TB, scale_d != 0, OH_EMU_WHERE, F16);
#elif OH_WGMMA
    OH_WG_EACH(RS);
#else
    (void)d; (void)a; (void)db; (void)scale_d;
    __trap();
#endif
}
