/* gpu_host.h: host helpers shared by the GPU test and benchmark programs
 * (tests/gpu, bench/bench_gdn.cu, kernels/cuda/dev): CUDA_CHECK, bf16
 * conversions, a seeded RNG, device allocation and copies.  C++, header-only;
 * also builds under the CPU emulator (kernels/cuda/dev/emu/cuda_emu.h). */
#ifndef OH_TESTS_GPU_HOST_H
#define OH_TESTS_GPU_HOST_H

#ifndef OH_EMU
#include <cuda_runtime.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#define CUDA_CHECK(expr)                                                                                      \
    do {                                                                                                      \
        cudaError_t e_ = (expr);                                                                              \
        if (e_ != cudaSuccess) {                                                                              \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_));            \
            exit(2);                                                                                          \
        }                                                                                                     \
    } while (0)

/* A call into one of our CUDA libraries (0 = success); on failure print the
 * library's own message (last_error: an expression giving a string) and exit. */
#define LIB_CHECK(expr, last_error)                                                                           \
    do {                                                                                                      \
        int r_ = (expr);                                                                                      \
        if (r_ != 0) {                                                                                        \
            fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, r_, (last_error));      \
            exit(2);                                                                                          \
        }                                                                                                     \
    } while (0)

/* fp32 -> bf16, round to nearest even; NaN stays NaN. */
static inline uint16_t f2bf(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline std::vector<float> widen(const std::vector<uint16_t> &b) {
    std::vector<float> r(b.size());
    for (size_t i = 0; i < b.size(); i++) r[i] = bf2f(b[i]);
    return r;
}

/* xorshift64 with Box-Muller normals; the same seed gives the same inputs. */
struct Rng {
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
    uint64_t next() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        return s;
    }
    double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
    double normal() {
        double u = uniform(), v = uniform();
        return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
    }
};

/* Device buffers of exactly n elements (compute-sanitizer memcheck sees any
 * overrun), copies both ways. */
template <typename T> static T *dalloc(size_t n) {
    T *p = nullptr;
    CUDA_CHECK(cudaMalloc((void **)&p, (n ? n : 1) * sizeof(T)));
    return p;
}
template <typename T> static T *dcopy(const std::vector<T> &h) {
    T *p = dalloc<T>(h.size());
    CUDA_CHECK(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return p;
}
template <typename T> static std::vector<T> hcopy(const T *d, size_t n) {
    std::vector<T> h(n);
    CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

#endif
