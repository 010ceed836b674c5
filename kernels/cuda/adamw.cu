// adamw.cu: multi-tensor AdamW and the global gradient norm.
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/ops_common.cuh"

#include <math.h>
#include <stdlib.h>

#include <vector>

namespace {

const int64_t kChunk = 1 << 16; // elements per work item (a multiple of 4)
const int kThreads = 256;

struct DevTensor {
    float *p, *m, *v;
    const void *g;
    bf16 *pb;
    int64_t n;
    int32_t gdt, decay, vec4;
    int32_t pad;
};

struct Chunk {
    int64_t start;
    int32_t tensor;
    int32_t pad;
};

struct AdamConst {
    float b1, b2, eps, lr_wd, step_size, inv_sqrt_bc2;
};

__device__ __forceinline__ float load_grad(const DevTensor &t, int64_t i) {
    return t.gdt == OH_DTYPE_F32 ? static_cast<const float *>(t.g)[i]
                                 : __bfloat162float(static_cast<const bf16 *>(t.g)[i]);
}

__device__ __forceinline__ float4 load_grad4(const DevTensor &t, int64_t i) {
    if (t.gdt == OH_DTYPE_F32) return *reinterpret_cast<const float4 *>(static_cast<const float *>(t.g) + i);
    uint2 raw = *reinterpret_cast<const uint2 *>(static_cast<const bf16 *>(t.g) + i);
    __nv_bfloat162 a = *reinterpret_cast<__nv_bfloat162 *>(&raw.x), b = *reinterpret_cast<__nv_bfloat162 *>(&raw.y);
    float2 fa = __bfloat1622float2(a), fb = __bfloat1622float2(b);
    return make_float4(fa.x, fa.y, fb.x, fb.y);
}

__device__ __forceinline__ void adam_elem(float &p, float &m, float &v, float g, const AdamConst &c, int decay) {
    if (decay) p -= c.lr_wd * p;
    m = c.b1 * m + (1.f - c.b1) * g;
    v = c.b2 * v + (1.f - c.b2) * g * g;
    p -= c.step_size * m / (sqrtf(v) * c.inv_sqrt_bc2 + c.eps);
}

__global__ void __launch_bounds__(kThreads)
    adamw_kernel(const DevTensor *__restrict__ ts, const Chunk *__restrict__ chunks, int nchunks, AdamConst c,
                 const float *__restrict__ gscale) {
    const float s = gscale ? *gscale : 1.f;
    for (int ci = blockIdx.x; ci < nchunks; ci += gridDim.x) {
        const Chunk ch = chunks[ci];
        const DevTensor t = ts[ch.tensor];
        const int64_t end = min(ch.start + kChunk, t.n);
        int64_t i0 = ch.start;
        if (t.vec4) {
            const int64_t vend = ch.start + ((end - ch.start) & ~(int64_t)3);
            for (int64_t i = ch.start + 4 * (int64_t)threadIdx.x; i < vend; i += 4 * (int64_t)blockDim.x) {
                float4 p = *reinterpret_cast<float4 *>(t.p + i);
                float4 m = *reinterpret_cast<float4 *>(t.m + i);
                float4 v = *reinterpret_cast<float4 *>(t.v + i);
                float4 g = load_grad4(t, i);
                adam_elem(p.x, m.x, v.x, g.x * s, c, t.decay);
                adam_elem(p.y, m.y, v.y, g.y * s, c, t.decay);
                adam_elem(p.z, m.z, v.z, g.z * s, c, t.decay);
                adam_elem(p.w, m.w, v.w, g.w * s, c, t.decay);
                *reinterpret_cast<float4 *>(t.p + i) = p;
                *reinterpret_cast<float4 *>(t.m + i) = m;
                *reinterpret_cast<float4 *>(t.v + i) = v;
                if (t.pb) {
                    __nv_bfloat162 a = __floats2bfloat162_rn(p.x, p.y), b = __floats2bfloat162_rn(p.z, p.w);
                    uint2 raw;
                    raw.x = *reinterpret_cast<uint32_t *>(&a);
                    raw.y = *reinterpret_cast<uint32_t *>(&b);
                    *reinterpret_cast<uint2 *>(t.pb + i) = raw;
                }
            }
            i0 = vend;
        }
        for (int64_t i = i0 + threadIdx.x; i < end; i += blockDim.x) {
            float p = t.p[i], m = t.m[i], v = t.v[i];
            adam_elem(p, m, v, load_grad(t, i) * s, c, t.decay);
            t.p[i] = p;
            t.m[i] = m;
            t.v[i] = v;
            if (t.pb) t.pb[i] = __float2bfloat16(p);
        }
    }
}

// Stage 1: one partial sum of squares per block (its chunks in a fixed order).
__global__ void __launch_bounds__(kThreads)
    sumsq_kernel(const DevTensor *__restrict__ ts, const Chunk *__restrict__ chunks, int nchunks,
                 float *__restrict__ partials) {
    __shared__ float red[32];
    float acc = 0.f;
    for (int ci = blockIdx.x; ci < nchunks; ci += gridDim.x) {
        const Chunk ch = chunks[ci];
        const DevTensor t = ts[ch.tensor];
        const int64_t end = min(ch.start + kChunk, t.n);
        int64_t i0 = ch.start;
        if (t.vec4) {
            const int64_t vend = ch.start + ((end - ch.start) & ~(int64_t)3);
            for (int64_t i = ch.start + 4 * (int64_t)threadIdx.x; i < vend; i += 4 * (int64_t)blockDim.x) {
                float4 g = load_grad4(t, i);
                acc += g.x * g.x + g.y * g.y + g.z * g.z + g.w * g.w;
            }
            i0 = vend;
        }
        for (int64_t i = i0 + threadIdx.x; i < end; i += blockDim.x) {
            float g = load_grad(t, i);
            acc += g * g;
        }
    }
    acc = block_sum(acc, red);
    if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

// Stage 2: one block adds the partials in double, in a fixed order.
__global__ void __launch_bounds__(kThreads)
    sumsq_final_kernel(const float *__restrict__ partials, int n, float *__restrict__ out) {
    __shared__ double red[kThreads];
    double acc = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += (double)partials[i];
    red[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = (float)red[0];
}

__global__ void clip_kernel(float *norm_out, float *scale_out, const float *sumsq, float max_norm) {
    if (threadIdx.x != 0) return;
    float norm = sqrtf(*sumsq);
    float scale = 1.f;
    if (!isfinite(norm))
        scale = __int_as_float(0x7fc00000);
    else if (max_norm > 0.f)
        scale = fminf(1.f, max_norm / (norm + 1e-6f));
    if (norm_out) *norm_out = norm;
    if (scale_out) *scale_out = scale;
}

} // namespace

struct oh_adamw_plan {
    DevTensor *tensors = nullptr;
    Chunk *chunks = nullptr;
    float *partials = nullptr; // [grid]
    float *sumsq = nullptr;    // [1], for oh_cuda_grad_norm
    int nchunks = 0, grid = 0;
};

extern "C" void oh_cuda_adamw_plan_free(oh_adamw_plan *plan) {
    if (!plan) return;
    cudaFree(plan->tensors);
    cudaFree(plan->chunks);
    cudaFree(plan->partials);
    cudaFree(plan->sumsq);
    delete plan;
}

static int plan_build(oh_adamw_plan *pl, const oh_adamw_tensor *tensors, int ntensors) {
    std::vector<DevTensor> dt;
    std::vector<Chunk> ch;
    for (int i = 0; i < ntensors; i++) {
        const oh_adamw_tensor &t = tensors[i];
        if (t.n == 0) continue;
        DevTensor d;
        d.p = t.param;
        d.m = t.m;
        d.v = t.v;
        d.g = t.grad;
        d.pb = reinterpret_cast<bf16 *>(t.param_bf16);
        d.n = t.n;
        d.gdt = t.grad_dtype;
        d.decay = t.decay ? 1 : 0;
        d.vec4 = ohc_aligned(t.param, 16) && ohc_aligned(t.m, 16) && ohc_aligned(t.v, 16) &&
                 ohc_aligned(t.grad, t.grad_dtype == OH_DTYPE_F32 ? 16 : 8) &&
                 (!t.param_bf16 || ohc_aligned(t.param_bf16, 8));
        d.pad = 0;
        for (int64_t s = 0; s < t.n; s += kChunk) ch.push_back(Chunk{s, (int32_t)dt.size(), 0});
        dt.push_back(d);
    }
    pl->nchunks = (int)ch.size();
    pl->grid = ohc_num_sms() * 4;
    if (pl->grid > pl->nchunks) pl->grid = pl->nchunks > 0 ? pl->nchunks : 1;
    OHC_CUDA(cudaMalloc(&pl->partials, sizeof(float) * pl->grid));
    OHC_CUDA(cudaMalloc(&pl->sumsq, sizeof(float)));
    if (!dt.empty()) {
        OHC_CUDA(cudaMalloc(&pl->tensors, sizeof(DevTensor) * dt.size()));
        OHC_CUDA(cudaMalloc(&pl->chunks, sizeof(Chunk) * ch.size()));
        OHC_CUDA(cudaMemcpy(pl->tensors, dt.data(), sizeof(DevTensor) * dt.size(), cudaMemcpyHostToDevice));
        OHC_CUDA(cudaMemcpy(pl->chunks, ch.data(), sizeof(Chunk) * ch.size(), cudaMemcpyHostToDevice));
    }
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_adamw_plan_create(oh_adamw_plan **plan, const oh_adamw_tensor *tensors, int ntensors) {
    OHC_ARG(plan && ntensors >= 0 && (tensors || ntensors == 0));
    *plan = nullptr;
    for (int i = 0; i < ntensors; i++) {
        const oh_adamw_tensor &t = tensors[i];
        OHC_ARG(t.n >= 0);
        if (t.n == 0) continue;
        OHC_ARG(t.param && t.m && t.v && t.grad);
        OHC_ARG(t.grad_dtype == OH_DTYPE_F32 || t.grad_dtype == OH_DTYPE_BF16);
        OHC_ARG(ohc_aligned(t.param, 4) && ohc_aligned(t.m, 4) && ohc_aligned(t.v, 4));
    }
    oh_adamw_plan *pl = new oh_adamw_plan();
    int s = plan_build(pl, tensors, ntensors);
    if (s != OH_CUDA_OK) {
        oh_cuda_adamw_plan_free(pl);
        return s;
    }
    *plan = pl;
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_adamw_step(oh_adamw_plan *plan, const oh_adamw_hparams *hp, const float *grad_scale,
                                  oh_stream stream) {
    OHC_ARG(plan && hp && hp->step >= 1);
    OHC_ARG(hp->beta1 >= 0.f && hp->beta1 < 1.f && hp->beta2 >= 0.f && hp->beta2 < 1.f && hp->eps >= 0.f);
    if (plan->nchunks == 0) return OH_CUDA_OK;
    double bc1 = 1.0 - pow((double)hp->beta1, (double)hp->step);
    double bc2 = 1.0 - pow((double)hp->beta2, (double)hp->step);
    AdamConst c;
    c.b1 = hp->beta1;
    c.b2 = hp->beta2;
    c.eps = hp->eps;
    c.lr_wd = hp->lr * hp->weight_decay;
    c.step_size = (float)((double)hp->lr / bc1);
    c.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    OHC_KERNEL_LAUNCH(adamw_kernel, plan->grid, kThreads, 0, ohc_stream(stream), plan->tensors, plan->chunks,
                      plan->nchunks, c, grad_scale);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_grad_sumsq(oh_adamw_plan *plan, float *sumsq_out, oh_stream stream) {
    OHC_ARG(plan && sumsq_out);
    cudaStream_t st = ohc_stream(stream);
    if (plan->nchunks == 0) {
        OHC_CUDA(cudaMemsetAsync(sumsq_out, 0, sizeof(float), st));
        return OH_CUDA_OK;
    }
    OHC_KERNEL_LAUNCH(sumsq_kernel, plan->grid, kThreads, 0, st, plan->tensors, plan->chunks, plan->nchunks,
                      plan->partials);
    OHC_LAUNCH_CHECK();
    OHC_KERNEL_LAUNCH(sumsq_final_kernel, 1, kThreads, 0, st, plan->partials, plan->grid, sumsq_out);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_clip_scale(float *norm_out, float *scale_out, const float *sumsq, float max_norm,
                                  oh_stream stream) {
    OHC_ARG(sumsq);
    OHC_KERNEL_LAUNCH(clip_kernel, 1, 32, 0, ohc_stream(stream), norm_out, scale_out, sumsq, max_norm);
    OHC_LAUNCH_CHECK();
    return OH_CUDA_OK;
}

extern "C" int oh_cuda_grad_norm(oh_adamw_plan *plan, float *norm_out, float *scale_out, float max_norm,
                                 oh_stream stream) {
    OHC_ARG(plan);
    OHC_TRY(oh_cuda_grad_sumsq(plan, plan->sumsq, stream));
    return oh_cuda_clip_scale(norm_out, scale_out, plan->sumsq, max_norm, stream);
}
