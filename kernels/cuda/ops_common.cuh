// ops_common.cuh: private helpers of the CUDA op files (C++ only; never
// included by a C header): the checks around CUDA/cuBLASLt calls, argument
// checks, bf16 vectors and warp/block reductions.
#pragma once
#include "kernels/cuda/ops_common.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

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
