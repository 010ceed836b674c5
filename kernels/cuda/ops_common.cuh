// ops_common.cuh: private helpers of the CUDA op files (C++ only; never
// included by a C header): the checks around CUDA/cuBLASLt calls, argument
// checks, bf16 vectors and warp/block reductions.
#pragma once
#include "kernels/cuda/ops_common.h"

#include <stdint.h>
#ifndef OH_EMU
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#else
// Built as C++ on the CPU with kernels/cuda/dev/emu/cuda_emu.h force-included
// (tests/gpu_ops/emu): the few bf16 and vector types the kernels use.
#include <algorithm>
#include <cmath>
using std::max;
using std::min;
struct __nv_bfloat16 {
    uint16_t x;
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};
struct uint2 {
    uint32_t x, y;
};
// uint4 comes from cuda_emu.h (the GDN kernels use it too)
inline float2 make_float2(float a, float b) { return float2{a, b}; }
inline uint4 make_uint4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) { return uint4{a, b, c, d}; }
inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((uint32_t)h.x << 16); }
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u = __float_as_uint(f);
    __nv_bfloat16 h;
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) h.x = (uint16_t)((u >> 16) | 0x40u);
    else h.x = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return h;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return float2{__bfloat162float(v.x), __bfloat162float(v.y)}; }
inline float __int_as_float(int i) { return __uint_as_float((uint32_t)i); }
#endif

#include <initializer_list>

// Records "file:line: expr: why" for oh_cuda_last_error() and prints it.
void oh_ops_report(const char *file, int line, const char *expr, const char *why);

// Every CUDA runtime call goes through OHC_CUDA: on failure it reports
// file:line and the expression, and returns OH_CUDA_ERR_CUDA from the caller.
#define OHC_CUDA(call)                                                                   \
    do {                                                                                 \
        cudaError_t ohc_e_ = (call);                                                     \
        if (ohc_e_ != cudaSuccess) {                                                     \
            oh_ops_report(__FILE__, __LINE__, #call, cudaGetErrorString(ohc_e_));        \
            return OH_CUDA_ERR_CUDA;                                                     \
        }                                                                                \
    } while (0)

// After every launch: the launch error (bad configuration, no image for the GPU).
#define OHC_LAUNCH_CHECK() OHC_CUDA(cudaGetLastError())

// Propagate a status returned by an internal function.
#define OHC_TRY(call)                                                                    \
    do {                                                                                 \
        int ohc_s_ = (call);                                                             \
        if (ohc_s_ != OH_CUDA_OK) return ohc_s_;                                         \
    } while (0)

// Precondition of an exported entry: reports it and returns OH_CUDA_ERR_ARG.
#define OHC_ARG(cond)                                                                    \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            oh_ops_report(__FILE__, __LINE__, #cond, "precondition failed");             \
            return OH_CUDA_ERR_ARG;                                                      \
        }                                                                                \
    } while (0)

static inline cudaStream_t ohc_stream(oh_stream s) { return (cudaStream_t)s; }

static inline bool ohc_aligned(const void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

static inline int ohc_num_sms() {
    int dev = 0, n = 132;
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    else cudaGetLastError();
    return n > 0 ? n : 132;
}

// ---- device helpers ----
typedef __nv_bfloat16 bf16;

// 8 bf16 in one 16-byte word.
struct __align__(16) bf16x8 {
    __nv_bfloat162 h[4];
};

__device__ __forceinline__ void bf16x8_to_f32(const bf16x8 &v, float *f) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        float2 t = __bfloat1622float2(v.h[i]);
        f[2 * i] = t.x;
        f[2 * i + 1] = t.y;
    }
}

__device__ __forceinline__ bf16x8 f32_to_bf16x8(const float *f) {
    bf16x8 v;
#pragma unroll
    for (int i = 0; i < 4; i++) v.h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `red` is __shared__ float[32]. Contains two barriers.
__device__ __forceinline__ float block_sum(float v, float *red) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads(); // red may still be read from a previous call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    float t = lane < nw ? red[lane] : 0.f;
    return warp_sum(t);
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.f + __expf(-x)); }
__device__ __forceinline__ float sigmoid_f(float x) { return 1.f / (1.f + __expf(-x)); }

// VEC consecutive bf16 <-> fp32 (VEC 8: one 16-byte access, p 16-byte aligned).
template <int VEC> __device__ __forceinline__ void load_bf16(const bf16 *p, float *f) {
    if constexpr (VEC == 8) {
        bf16x8 v = *reinterpret_cast<const bf16x8 *>(p);
        bf16x8_to_f32(v, f);
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) f[i] = __bfloat162float(p[i]);
    }
}
template <int VEC> __device__ __forceinline__ void store_bf16(bf16 *p, const float *f) {
    if constexpr (VEC == 8) {
        *reinterpret_cast<bf16x8 *>(p) = f32_to_bf16x8(f);
    } else {
#pragma unroll
        for (int i = 0; i < VEC; i++) p[i] = __float2bfloat16(f[i]);
    }
}
__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16(x)); }

// A valid request this code does not implement: reports it, returns OH_CUDA_ERR_UNSUPPORTED.
#define OHC_UNSUPPORTED(why)                                                             \
    do {                                                                                 \
        oh_ops_report(__FILE__, __LINE__, __func__, why);                                \
        return OH_CUDA_ERR_UNSUPPORTED;                                                  \
    } while (0)

// Vector fp32 atomics (one instruction on sm_90, two scalar ones on older targets).
__device__ __forceinline__ void atomic_add_f2(float *p, float a, float b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(p), make_float2(a, b));
#else
    atomicAdd(p, a);
    atomicAdd(p + 1, b);
#endif
}
__device__ __forceinline__ void atomic_add_f4(float *p, float a, float b, float c, float d) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float4 *>(p), make_float4(a, b, c, d));
#else
    atomicAdd(p, a);
    atomicAdd(p + 1, b);
    atomicAdd(p + 2, c);
    atomicAdd(p + 3, d);
#endif
}

// Kernel launch that also builds under the CPU emulator (OH_EMU). `kern` must be
// one token: bind a template instance to a local function pointer first.
#ifdef OH_EMU
#define OHC_KERNEL_LAUNCH(kern, grid, block, smem, stream, ...) ((void)(stream), emu::launch(kern, grid, block, smem, __VA_ARGS__))
#else
#define OHC_KERNEL_LAUNCH(kern, grid, block, smem, stream, ...) kern<<<grid, block, smem, stream>>>(__VA_ARGS__)
#endif
