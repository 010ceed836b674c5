/* cuda_emu.h: run CUDA kernels on the CPU, thread by thread, to check their
 * index math, masking and synchronisation on a machine without a GPU.
 *
 * Force-included (g++ -include) with -DOH_EMU into a .cu file compiled as
 * C++.  Each CUDA thread of a block is a fiber; __syncthreads, __syncwarp and
 * the warp-collective operations (shuffles, ldmatrix, mma.sync) are
 * scheduling points.  A warp collective runs once all 32 lanes have reached it
 * and checks that they all reached the same one.  Blocks run one after the
 * other.
 *
 * What it catches: out-of-range tiles (dynamic shared memory is an exact
 * malloc, poisoned with NaN bytes; run under AddressSanitizer for global
 * buffers), reads of shared memory nothing wrote, divergent collectives,
 * deadlocks, a launch asking for more than 48 KB of dynamic shared memory
 * without cudaFuncSetAttribute, and races: the order in which fibers run
 * between scheduling points is a policy (forward, reverse, random), and a
 * cp.async copy lands either when issued or only at its wait (random), so a
 * missing barrier or wait changes the result from one policy to the next.
 *
 * What it does not model: timing, memory ordering beyond sequential
 * consistency, atomics contention, the exact rounding of the tensor-core
 * accumulation (it accumulates in fp32 in k order).
 *
 * Only what the project's kernels use is provided. */
#ifndef OH_CUDA_EMU_H
#define OH_CUDA_EMU_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <setjmp.h>
#include <ucontext.h>
#include <vector>

/* ---------------------------------------------------------------- keywords */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__

struct alignas(16) uint4 {
    unsigned x, y, z, w;
};

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace emu {

enum Op { OP_NONE, OP_BAR, OP_SYNCWARP, OP_SHFL, OP_LDMATRIX, OP_MMA_BF16, OP_MMA_F16 };
enum ShflKind { SHFL_IDX, SHFL_XOR, SHFL_UP, SHFL_DOWN };
enum Policy { POLICY_FORWARD, POLICY_REVERSE, POLICY_RANDOM };

struct Copy {
    unsigned char *dst;
    unsigned char data[16];
    bool applied;
};

struct Thread {
    dim3 tid;
    int lin, warp, lane;
    jmp_buf jb;
    ucontext_t uc;
    char *stack;
    bool started, done;
    Op op;
    const char *where; /* file:line of the collective, for diagnostics */
    /* shuffle */
    uint32_t sh_val, sh_out;
    int sh_arg;
    ShflKind sh_kind;
    /* ldmatrix */
    const unsigned char *lm_addr;
    int lm_num;
    bool lm_trans;
    uint32_t lm_out[4];
    /* mma */
    uint32_t ma[4], mb[2];
    float mc[4], md[4];
    /* cp.async */
    std::vector<Copy> cur;
    std::vector<std::vector<Copy>> groups;
};

struct State {
    std::vector<Thread> th;
    int nthreads = 0;
    jmp_buf sched;
    Thread *cur = nullptr;
    std::function<void()> *fn = nullptr;
    dim3 grid, block, block_idx;
    unsigned char *smem = nullptr;
    size_t smem_bytes = 0;
    Policy policy = POLICY_FORWARD;
    std::mt19937_64 rng{12345};
    int last_error = 0;
    std::vector<std::pair<const void *, int>> func_smem; /* cudaFuncSetAttribute */
    size_t stack_bytes = 512 * 1024;
    long long collectives = 0;
};
inline State &st() {
    static State s;
    return s;
}

[[noreturn]] inline void die(const char *what, const char *where) {
    State &s = st();
    fprintf(stderr, "emu: %s at %s (block %u,%u,%u)\n", what, where ? where : "?", s.block_idx.x, s.block_idx.y,
            s.block_idx.z);
    abort();
}

inline Thread *self() {
    Thread *t = st().cur;
    if (!t) die("CUDA device function called outside a kernel", nullptr);
    return t;
}

/* Yield from the current fiber back to the scheduler. */
inline void yield() {
    Thread *t = self();
    if (!_setjmp(t->jb)) _longjmp(st().sched, 1);
}

inline void collective(Op op, const char *where) {
    Thread *t = self();
    t->op = op;
    t->where = where;
    yield();
}

/* ---- cp.async ---- */
inline void cp_async16(void *dst, const void *src, bool valid, const char *where) {
    Thread *t = self();
    if (((uintptr_t)dst & 15) || (valid && ((uintptr_t)src & 15))) die("cp.async misaligned", where);
    State &s = st();
    if ((unsigned char *)dst < s.smem || (unsigned char *)dst + 16 > s.smem + s.smem_bytes)
        die("cp.async destination outside dynamic shared memory", where);
    Copy c;
    c.dst = (unsigned char *)dst;
    if (valid)
        memcpy(c.data, src, 16);
    else
        memset(c.data, 0, 16);
    c.applied = false;
    if (s.policy == POLICY_RANDOM && (s.rng() & 1)) {
        memcpy(c.dst, c.data, 16);
        c.applied = true;
    }
    t->cur.push_back(c);
}
inline void cp_async_commit() {
    Thread *t = self();
    t->groups.push_back(t->cur);
    t->cur.clear();
}
inline void cp_async_wait(int n) {
    Thread *t = self();
    while ((int)t->groups.size() > n) {
        for (Copy &c : t->groups.front())
            if (!c.applied) memcpy(c.dst, c.data, 16);
        t->groups.erase(t->groups.begin());
    }
}

/* ---- collectives, resolved when a whole warp has arrived ---- */
inline float bf16_to_f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
inline float f16_to_f(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
    if (e == 0) {
        if (m == 0)
            u = sign;
        else { /* subnormal */
            float f = std::ldexp((float)m, -24);
            memcpy(&u, &f, 4);
            u |= sign;
        }
    } else if (e == 31)
        u = sign | 0x7f800000u | (m << 13);
    else
        u = sign | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

inline void resolve_warp(int w) {
    State &s = st();
    Thread *L[32];
    for (int l = 0; l < 32; l++) L[l] = &s.th[w * 32 + l];
    Op op = L[0]->op;
    for (int l = 1; l < 32; l++)
        if (L[l]->op != op || L[l]->where != L[0]->where) {
            fprintf(stderr, "emu: lane 0 at %s, lane %d at %s\n", L[0]->where, l, L[l]->where);
            die("divergent warp collective", L[0]->where);
        }
    s.collectives++;
    switch (op) {
    case OP_SYNCWARP: break;
    case OP_SHFL:
        for (int l = 0; l < 32; l++) {
            int src = l;
            int a = L[l]->sh_arg;
            switch (L[l]->sh_kind) {
            case SHFL_IDX: src = a & 31; break;
            case SHFL_XOR: src = (l ^ a) & 31; break;
            case SHFL_UP: src = l - a >= 0 ? l - a : l; break;
            case SHFL_DOWN: src = l + a < 32 ? l + a : l; break;
            }
            L[l]->sh_out = L[src]->sh_val;
        }
        break;
    case OP_LDMATRIX: {
        int num = L[0]->lm_num;
        bool tr = L[0]->lm_trans;
        for (int l = 1; l < 32; l++)
            if (L[l]->lm_num != num || L[l]->lm_trans != tr) die("ldmatrix qualifiers differ", L[0]->where);
        for (int i = 0; i < num; i++) {
            for (int r = 0; r < 8; r++) {
                const unsigned char *a = L[8 * i + r]->lm_addr;
                if ((uintptr_t)a & 15) die("ldmatrix row address misaligned", L[0]->where);
                if (a < s.smem || a + 16 > s.smem + s.smem_bytes)
                    die("ldmatrix row outside dynamic shared memory", L[0]->where);
            }
            for (int l = 0; l < 32; l++) {
                uint16_t e0, e1;
                if (!tr) {
                    const unsigned char *row = L[8 * i + l / 4]->lm_addr;
                    memcpy(&e0, row + 4 * (l % 4), 2);
                    memcpy(&e1, row + 4 * (l % 4) + 2, 2);
                } else {
                    const unsigned char *r0 = L[8 * i + 2 * (l % 4)]->lm_addr;
                    const unsigned char *r1 = L[8 * i + 2 * (l % 4) + 1]->lm_addr;
                    memcpy(&e0, r0 + 2 * (l / 4), 2);
                    memcpy(&e1, r1 + 2 * (l / 4), 2);
                }
                L[l]->lm_out[i] = (uint32_t)e0 | ((uint32_t)e1 << 16);
            }
        }
        break;
    }
    case OP_MMA_BF16:
    case OP_MMA_F16: {
        float (*cv)(uint16_t) = op == OP_MMA_BF16 ? bf16_to_f : f16_to_f;
        float A[16][16], B[16][8], C[16][8];
        for (int l = 0; l < 32; l++) {
            int g = l / 4, t = l % 4;
            const uint32_t *a = L[l]->ma, *b = L[l]->mb;
            for (int h = 0; h < 2; h++) {
                A[g][2 * t + h] = cv((uint16_t)(a[0] >> (16 * h)));
                A[g + 8][2 * t + h] = cv((uint16_t)(a[1] >> (16 * h)));
                A[g][2 * t + 8 + h] = cv((uint16_t)(a[2] >> (16 * h)));
                A[g + 8][2 * t + 8 + h] = cv((uint16_t)(a[3] >> (16 * h)));
                B[2 * t + h][g] = cv((uint16_t)(b[0] >> (16 * h)));
                B[2 * t + 8 + h][g] = cv((uint16_t)(b[1] >> (16 * h)));
            }
            C[g][2 * t] = L[l]->mc[0];
            C[g][2 * t + 1] = L[l]->mc[1];
            C[g + 8][2 * t] = L[l]->mc[2];
            C[g + 8][2 * t + 1] = L[l]->mc[3];
        }
        for (int i = 0; i < 16; i++)
            for (int j = 0; j < 8; j++) {
                float acc = C[i][j];
                for (int k = 0; k < 16; k++) acc = std::fma(A[i][k], B[k][j], acc);
                C[i][j] = acc;
            }
        for (int l = 0; l < 32; l++) {
            int g = l / 4, t = l % 4;
            L[l]->md[0] = C[g][2 * t];
            L[l]->md[1] = C[g][2 * t + 1];
            L[l]->md[2] = C[g + 8][2 * t];
            L[l]->md[3] = C[g + 8][2 * t + 1];
        }
        break;
    }
    default: die("unknown collective", L[0]->where);
    }
    for (int l = 0; l < 32; l++) L[l]->op = OP_NONE;
}

inline void trampoline() {
    State &s = st();
    (*s.fn)();
    s.cur->done = true;
    if (!s.cur->cur.empty() || !s.cur->groups.empty()) {
        /* copies never waited for: a real GPU would still land them; apply. */
        cp_async_wait(0);
        for (Copy &c : s.cur->cur) memcpy(c.dst, c.data, 16);
    }
    _longjmp(s.sched, 1);
}

inline void run_block() {
    State &s = st();
    int n = s.nthreads;
    for (int i = 0; i < n; i++) {
        Thread &t = s.th[i];
        t.lin = i;
        t.tid = dim3(i % s.block.x, (i / s.block.x) % s.block.y, i / (s.block.x * s.block.y));
        t.warp = i / 32;
        t.lane = i % 32;
        t.started = t.done = false;
        t.op = OP_NONE;
        t.cur.clear();
        t.groups.clear();
        if (!t.stack) t.stack = (char *)malloc(s.stack_bytes);
        getcontext(&t.uc);
        t.uc.uc_stack.ss_sp = t.stack;
        t.uc.uc_stack.ss_size = s.stack_bytes;
        t.uc.uc_link = nullptr;
        makecontext(&t.uc, (void (*)())trampoline, 0);
    }
    std::vector<int> order(n);
    for (int i = 0; i < n; i++) order[i] = i;
    for (;;) {
        if (s.policy == POLICY_REVERSE)
            std::reverse(order.begin(), order.end());
        else if (s.policy == POLICY_RANDOM)
            std::shuffle(order.begin(), order.end(), s.rng);
        bool ran = false;
        for (int idx : order) {
            Thread &t = s.th[idx];
            if (t.done || t.op != OP_NONE) continue;
            ran = true;
            s.cur = &t;
            if (!_setjmp(s.sched)) {
                if (!t.started) {
                    t.started = true;
                    setcontext(&t.uc);
                } else
                    _longjmp(t.jb, 1);
            }
            s.cur = nullptr;
        }
        if (s.policy == POLICY_REVERSE) std::reverse(order.begin(), order.end());
        if (ran) continue;
        /* everybody is waiting or done: resolve */
        int ndone = 0, nbar = 0;
        for (int i = 0; i < n; i++) {
            ndone += s.th[i].done;
            nbar += s.th[i].op == OP_BAR;
        }
        if (ndone == n) break;
        bool progress = false;
        if (nbar == n - ndone) {
            if (ndone) die("__syncthreads reached while some threads of the block have exited", s.th[0].where);
            const char *w0 = nullptr;
            for (int i = 0; i < n; i++) {
                if (!w0) w0 = s.th[i].where;
                if (s.th[i].where != w0) {
                    fprintf(stderr, "emu: thread 0 at %s, thread %d at %s\n", w0, i, s.th[i].where);
                    die("threads wait at different __syncthreads", w0);
                }
            }
            for (int i = 0; i < n; i++) s.th[i].op = OP_NONE;
            progress = true;
        } else {
            for (int w = 0; w < n / 32; w++) {
                bool all = true;
                for (int l = 0; l < 32; l++) {
                    Thread &t = s.th[w * 32 + l];
                    if (t.done || t.op == OP_NONE || t.op == OP_BAR) all = false;
                }
                if (all) {
                    resolve_warp(w);
                    progress = true;
                }
            }
        }
        if (!progress) {
            for (int i = 0; i < n; i++)
                if (!s.th[i].done)
                    fprintf(stderr, "emu: thread %d op %d at %s\n", i, (int)s.th[i].op,
                            s.th[i].where ? s.th[i].where : "?");
            die("deadlock", nullptr);
        }
    }
}

inline int smem_limit_for(const void *f) {
    for (auto &p : st().func_smem)
        if (p.first == f) return p.second;
    return 48 * 1024;
}

template <typename... KArgs, typename... Args>
void launch(void (*kern)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
    State &s = st();
    int n = (int)(block.x * block.y * block.z);
    if (n <= 0 || n > 1024 || n % 32) {
        fprintf(stderr, "emu: bad block size %d\n", n);
        s.last_error = 9;
        return;
    }
    if ((int)smem > smem_limit_for((const void *)kern)) {
        fprintf(stderr, "emu: launch asks %zu bytes of dynamic shared memory, limit %d\n", smem,
                smem_limit_for((const void *)kern));
        s.last_error = 1;
        return;
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535) {
        fprintf(stderr, "emu: bad grid %u %u %u\n", grid.x, grid.y, grid.z);
        s.last_error = 9;
        return;
    }
    std::function<void()> fn = [&]() { kern(args...); };
    s.fn = &fn;
    s.grid = grid;
    s.block = block;
    s.nthreads = n;
    if ((int)s.th.size() < n) s.th.resize(n);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                s.block_idx = dim3(bx, by, bz);
                s.smem_bytes = smem;
                s.smem = (unsigned char *)malloc(smem ? smem : 16);
                memset(s.smem, 0xff, smem ? smem : 16); /* NaN bytes: unwritten reads show */
                run_block();
                free(s.smem);
                s.smem = nullptr;
            }
    s.fn = nullptr;
}

} /* namespace emu */

/* ------------------------------------------------------- built-in variables */
#define threadIdx (emu::self()->tid)
#define blockIdx (emu::st().block_idx)
#define blockDim (emu::st().block)
#define gridDim (emu::st().grid)

#define OH_EMU_STR2(x) #x
#define OH_EMU_STR(x) OH_EMU_STR2(x)
#define OH_EMU_WHERE __FILE__ ":" OH_EMU_STR(__LINE__)

#define __syncthreads() emu::collective(emu::OP_BAR, OH_EMU_WHERE)
#define __syncwarp(...) emu::collective(emu::OP_SYNCWARP, OH_EMU_WHERE)

template <typename T> inline T emu_shfl(T v, int arg, emu::ShflKind k, const char *where) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    emu::Thread *t = emu::self();
    memcpy(&t->sh_val, &v, 4);
    t->sh_arg = arg;
    t->sh_kind = k;
    emu::collective(emu::OP_SHFL, where);
    T r;
    memcpy(&r, &t->sh_out, 4);
    return r;
}
#define __shfl_sync(m, v, a, ...) emu_shfl((v), (a), emu::SHFL_IDX, OH_EMU_WHERE)
#define __shfl_xor_sync(m, v, a, ...) emu_shfl((v), (a), emu::SHFL_XOR, OH_EMU_WHERE)
#define __shfl_up_sync(m, v, a, ...) emu_shfl((v), (a), emu::SHFL_UP, OH_EMU_WHERE)
#define __shfl_down_sync(m, v, a, ...) emu_shfl((v), (a), emu::SHFL_DOWN, OH_EMU_WHERE)

inline void emu_ldmatrix(uint32_t *r, const void *p, int num, bool trans, const char *where) {
    emu::Thread *t = emu::self();
    t->lm_addr = (const unsigned char *)p;
    t->lm_num = num;
    t->lm_trans = trans;
    emu::collective(emu::OP_LDMATRIX, where);
    for (int i = 0; i < num; i++) r[i] = t->lm_out[i];
}
inline void emu_mma(float *d, const uint32_t *a, const uint32_t *b, bool bf16, const char *where) {
    emu::Thread *t = emu::self();
    for (int i = 0; i < 4; i++) t->ma[i] = a[i];
    t->mb[0] = b[0];
    t->mb[1] = b[1];
    for (int i = 0; i < 4; i++) t->mc[i] = d[i];
    emu::collective(bf16 ? emu::OP_MMA_BF16 : emu::OP_MMA_F16, where);
    for (int i = 0; i < 4; i++) d[i] = t->md[i];
}

inline float atomicAdd(float *p, float v) {
    float o = *p;
    *p = o + v;
    return o;
}
inline int atomicAdd(int *p, int v) {
    int o = *p;
    *p = o + v;
    return o;
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, 4);
    return u;
}
inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ------------------------------------------------------------ runtime API */
typedef int cudaError_t;
typedef void *cudaStream_t;
typedef void *cudaEvent_t;
enum { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice,
                      cudaMemcpyDefault };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin = 97, cudaDevAttrMultiProcessorCount = 16 };

inline cudaError_t cudaMalloc(void **p, size_t n) {
#ifdef OH_EMU_EXACT_ALLOC /* exact sizes (16-byte aligned): AddressSanitizer sees overruns */
    *p = malloc(n ? n : 1);
#else
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
#endif
    return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
template <typename T> inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
inline cudaError_t cudaFree(void *p) {
    free(p);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
    memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t = 0) {
    memmove(d, s, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemset(void *d, int v, size_t n) {
    memset(d, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t = 0) {
    memset(d, v, n);
    return cudaSuccess;
}
inline cudaError_t cudaGetLastError() {
    int e = emu::st().last_error;
    emu::st().last_error = 0;
    return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::st().last_error; }
inline const char *cudaGetErrorString(cudaError_t e) { return e ? "emulated CUDA error" : "no error"; }
inline cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMaxSharedMemoryPerBlockOptin ? 232448 : 132;
    return cudaSuccess;
}
template <typename F> inline cudaError_t cudaFuncSetAttribute(F *f, cudaFuncAttribute, int v) {
    if (v > 232448) return cudaErrorInvalidValue;
    for (auto &p : emu::st().func_smem)
        if (p.first == (const void *)f) {
            p.second = v;
            return cudaSuccess;
        }
    emu::st().func_smem.push_back({(const void *)f, v});
    return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = (cudaEvent_t)1;
    return cudaSuccess;
}
inline cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t = 0) { return cudaSuccess; }
inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t, cudaEvent_t) {
    *ms = 0.f;
    return cudaSuccess;
}
inline cudaError_t cudaEventDestroy(cudaEvent_t) { return cudaSuccess; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }

#endif
