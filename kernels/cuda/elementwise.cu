// elementwise.cu: SwiGLU, embedding forward/backward, casts.
#include "kernels/cuda/elementwise.h"
#include "kernels/cuda/ops_common.cuh"

namespace {

// Grid-stride over groups of VEC elements; the tail (n % VEC) is done by the VEC = 1 kernel.
template <int VEC> __global__ void swiglu_fwd_kernel(bf16 *out, const bf16 *gate, const bf16 *up, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / VEC; i += stride) {
        float g[VEC], u[VEC], o[VEC];
        load_bf16<VEC>(gate + i * VEC, g);
        load_bf16<VEC>(up + i * VEC, u);
#pragma unroll
        for (int e = 0; e < VEC; e++) o[e] = silu_f(g[e]) * u[e];
        store_bf16<VEC>(out + i * VEC, o);
    }
}

template <int VEC> __global__ void swiglu_bwd_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate,
                                                     const bf16 *up, size_t n, int accumulate) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / VEC; i += stride) {
        float g[VEC], u[VEC], d[VEC], a[VEC] = {}, b[VEC] = {};
        load_bf16<VEC>(gate + i * VEC, g);
        load_bf16<VEC>(up + i * VEC, u);
        load_bf16<VEC>(dout + i * VEC, d);
        if (accumulate) {
            load_bf16<VEC>(dgate + i * VEC, a);
            load_bf16<VEC>(dup + i * VEC, b);
        }
#pragma unroll
        for (int e = 0; e < VEC; e++) {
            float s = sigmoid_f(g[e]);
            float dg = d[e] * u[e] * s * (1.f + g[e] * (1.f - s));
            float du = d[e] * g[e] * s;
            a[e] = accumulate ? a[e] + dg : dg;
            b[e] = accumulate ? b[e] + du : du;
        }
        store_bf16<VEC>(dgate + i * VEC, a);
        store_bf16<VEC>(dup + i * VEC, b);
    }
}

// One block per token, threads over vectors of the row.
template <int VEC> __global__ void embedding_fwd_kernel(bf16 *out, const int32_t *ids, const bf16 *E, int V, int C) {
    const int t = blockIdx.x;
    const int id = ids[t];
    const bool ok = id >= 0 && id < V;
    for (int j = threadIdx.x; j < C / VEC; j += blockDim.x) {
        float v[VEC] = {};
        if (ok) load_bf16<VEC>(E + (size_t)id * C + (size_t)j * VEC, v);
        store_bf16<VEC>(out + (size_t)t * C + (size_t)j * VEC, v);
    }
}

template <int VEC>
__global__ void embedding_bwd_kernel(float *dE, const bf16 *dout, const int32_t *ids, int V, int C, int pad_id) {
    const int t = blockIdx.x;
    const int id = ids[t];
    if (id < 0 || id >= V || id == pad_id) return;
    for (int j = threadIdx.x; j < C / VEC; j += blockDim.x) {
        float v[VEC];
        load_bf16<VEC>(dout + (size_t)t * C + (size_t)j * VEC, v);
        float *dst = dE + (size_t)id * C + (size_t)j * VEC;
        if constexpr (VEC == 8) {
            atomic_add_f4(dst, v[0], v[1], v[2], v[3]);
            atomic_add_f4(dst + 4, v[4], v[5], v[6], v[7]);
        } else {
#pragma unroll
            for (int e = 0; e < VEC; e++) atomicAdd(dst + e, v[e]);
        }
    }
}

template <int VEC> __global__ void f32_to_bf16_kernel(bf16 *out, const float *in, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / VEC; i += stride) {
        float v[VEC];
        if constexpr (VEC == 8) {
            float4 a = reinterpret_cast<const float4 *>(in)[2 * i], b = reinterpret_cast<const float4 *>(in)[2 * i + 1];
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
        } else {
#pragma unroll
            for (int e = 0; e < VEC; e++) v[e] = in[i * VEC + e];
        }
        store_bf16<VEC>(out + i * VEC, v);
    }
}

template <int VEC> __global__ void bf16_to_f32_kernel(float *out, const bf16 *in, size_t n) {
    size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / VEC; i += stride) {
        float v[VEC];
        load_bf16<VEC>(in + i * VEC, v);
        if constexpr (VEC == 8) {
            reinterpret_cast<float4 *>(out)[2 * i] = make_float4(v[0], v[1], v[2], v[3]);
            reinterpret_cast<float4 *>(out)[2 * i + 1] = make_float4(v[4], v[5], v[6], v[7]);
        } else {
#pragma unroll
            for (int e = 0; e < VEC; e++) out[i * VEC + e] = v[e];
        }
    }
}

bool all_aligned16(std::initializer_list<const void *> ptrs) {
    for (const void *p : ptrs)
        if (p && !ohc_aligned(p, 16)) return false;
    return true;
}

int grid_for(size_t work, int threads) {
    size_t g = (work + threads - 1) / threads;
    size_t cap = (size_t)ohc_num_sms() * 16;
    if (g > cap) g = cap;
    return g < 1 ? 1 : (int)g;
}

} // namespace

#define B16(p) reinterpret_cast<bf16 *>(p)
#define CB16(p) reinterpret_cast<const bf16 *>(p)

// The 8-wide kernel over the body (when aligned), the scalar one over the tail.
extern "C" int oh_cuda_swiglu_fwd(uint16_t *out, const uint16_t *gate, const uint16_t *up, size_t n, oh_stream stream) {
    OHC_ARG(out && gate && up);
    if (n == 0) return OH_CUDA_OK;
    cudaStream_t st = ohc_stream(stream);
    size_t b = all_aligned16({out, gate, up}) ? (n / 8) * 8 : 0;
    if (b) {
        auto ohc_k_ = swiglu_fwd_kernel<8>;
        OHC_KERNEL_LAUNCH(ohc_k_, (grid_for(b / 8, 256)), 256, 0, st, B16(out), CB16(gate), CB16(up), b);
    }
    if (n > b) {
        auto ohc_k_ = swiglu_fwd_kernel<1>;
        OHC_KERNEL_LAUNCH(ohc_k_, (grid_for(n - b, 256)), 256, 0, st, B16(out) + b, CB16(gate) + b, CB16(up) + b,
                          n - b);
    }
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_swiglu_bwd(uint16_t *dgate, uint16_t *dup, const uint16_t *dout, const uint16_t *gate,
                                  const uint16_t *up, size_t n, int accumulate, oh_stream stream) {
    OHC_ARG(dgate && dup && dout && gate && up && (const void *)dgate != (const void *)dup);
    if (n == 0) return OH_CUDA_OK;
    cudaStream_t st = ohc_stream(stream);
    int acc = accumulate ? 1 : 0;
    size_t b = all_aligned16({dgate, dup, dout, gate, up}) ? (n / 8) * 8 : 0;
    if (b) {
        auto ohc_k_ = swiglu_bwd_kernel<8>;
        OHC_KERNEL_LAUNCH(ohc_k_, (grid_for(b / 8, 256)), 256, 0, st, B16(dgate), B16(dup), CB16(dout), CB16(gate),
                          CB16(up), b, acc);
    }
    if (n > b) {
        auto ohc_k_ = swiglu_bwd_kernel<1>;
        OHC_KERNEL_LAUNCH(ohc_k_, (grid_for(n - b, 256)), 256, 0, st, B16(dgate) + b, B16(dup) + b, CB16(dout) + b,
                          CB16(gate) + b, CB16(up) + b, n - b, acc);
    }
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_embedding_fwd(uint16_t *out, const int32_t *ids, const uint16_t *E, int T, int V, int C,
                                     oh_stream stream) {
    OHC_ARG(out && ids && E && T >= 0 && V >= 1 && C >= 1);
    if (T == 0) return OH_CUDA_OK;
    cudaStream_t st = ohc_stream(stream);
    if (C % 8 == 0 && all_aligned16({out, E})) {
        auto ohc_k_ = embedding_fwd_kernel<8>;
        OHC_KERNEL_LAUNCH(ohc_k_, T, (C / 8 < 256 ? 32 * ((C / 8 + 31) / 32) : 256), 0, st, B16(out), ids, CB16(E), V,
                          C);
    } else {
        auto ohc_k_ = embedding_fwd_kernel<1>;
        OHC_KERNEL_LAUNCH(ohc_k_, T, 256, 0, st, B16(out), ids, CB16(E), V, C);
    }
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_embedding_bwd(float *dE, const uint16_t *dout, const int32_t *ids, int T, int V, int C,
                                     int pad_id, oh_stream stream) {
    OHC_ARG(dE && dout && ids && T >= 0 && V >= 1 && C >= 1);
    if (T == 0) return OH_CUDA_OK;
    cudaStream_t st = ohc_stream(stream);
    if (C % 8 == 0 && all_aligned16({dout, dE})) {
        auto ohc_k_ = embedding_bwd_kernel<8>;
        OHC_KERNEL_LAUNCH(ohc_k_, T, (C / 8 < 256 ? 32 * ((C / 8 + 31) / 32) : 256), 0, st, dE, CB16(dout), ids, V, C,
                          pad_id);
    } else {
        auto ohc_k_ = embedding_bwd_kernel<1>;
        OHC_KERNEL_LAUNCH(ohc_k_, T, 256, 0, st, dE, CB16(dout), ids, V, C, pad_id);
    }
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_f32_to_bf16(uint16_t *out, const float *in, size_t n, oh_stream stream) {
    OHC_ARG(out && in);
    if (n == 0) return OH_CUDA_OK;
    cudaStream_t st = ohc_stream(stream);
    size_t b = all_aligned16({out, in}) ? (n / 8) * 8 : 0;
    if (b) {
        auto ohc_k_ = f32_to_bf16_kernel<8>;
        OHC_KERNEL_LAUNCH(ohc_k_, (grid_for(b / 8, 256)), 256, 0, st, B16(out), in, b);
    }
    if (n > b) {
        auto ohc_k_ = f32_to_bf16_kernel<1>;
        OHC_KERNEL_LAUNCH(ohc_k_, (grid_for(n - b, 256)), 256, 0, st, B16(out) + b, in + b, n - b);
    }
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_bf16_to_f32(float *out, const uint16_t *in, size_t n, oh_stream stream) {
    OHC_ARG(out && in);
    if (n == 0) return OH_CUDA_OK;
    cudaStream_t st = ohc_stream(stream);
    size_t b = all_aligned16({out, in}) ? (n / 8) * 8 : 0;
    if (b) {
        auto ohc_k_ = bf16_to_f32_kernel<8>;
        OHC_KERNEL_LAUNCH(ohc_k_, (grid_for(b / 8, 256)), 256, 0, st, out, CB16(in), b);
    }
    if (n > b) {
        auto ohc_k_ = bf16_to_f32_kernel<1>;
        OHC_KERNEL_LAUNCH(ohc_k_, (grid_for(n - b, 256)), 256, 0, st, out + b, CB16(in) + b, n - b);
    }
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}
