/* cuda_emu.h: run CUDA kernels on the CPU, thread by thread, to check their
 * index math, masking and synchronisation on a machine without a GPU.
 *
 * Force-included (g++ -include) with -DOH_EMU into a .cu file compiled as
 * C++.  Each CUDA thread of a block is a fiber; __syncthreads, __syncwarp and
 * the warp-collective operations (shuffles, ldmatrix, mma.sync) are
 * scheduling points.  A warp collective runs once all 32 lanes have reached it
 * and checks that they all reached the same one.  The warpgroup operations
 * (wgmma.mma_async bf16 -> f32 with 128-byte-swizzled shared-memory operands,
 * commit_group, wait_group) are collectives of 128 threads; an issued wgmma
 * executes at once or, under the random policy, as late as the wait_group
 * that covers it, so a kernel that touches its operands or accumulators
 * before that wait gets a result that depends on the policy.  Blocks run one
 * after the other.
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
#define __maxnreg__(...)
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

enum Op { OP_NONE, OP_BAR, OP_NBAR, OP_MBAR /* waiting for an mbarrier phase */, OP_SYNCWARP, OP_SHFL, OP_LDMATRIX, OP_MMA_BF16, OP_MMA_F16,
          /* warpgroup collectives (128 threads) */ OP_WG_MMA, OP_WG_COMMIT, OP_WG_WAIT };
enum ShflKind { SHFL_IDX, SHFL_XOR, SHFL_UP, SHFL_DOWN };
enum Policy { POLICY_FORWARD, POLICY_REVERSE, POLICY_RANDOM };

struct Copy {
    unsigned char *dst;
    unsigned char data[16];
    bool applied;
};

/* A tensor map as cuTensorMapEncodeTiled makes it (the emulator's own form):
 * dim0 (contiguous) x dim1 x dim2 elements (dim2 1 for two dimensions), rows
 * stride1 bytes apart, planes stride2, boxes of box0 x box1 x box2 elements
 * (in shared memory one after another, rows of box0); out-of-range elements
 * read as zero (loads) or are not written (stores); swz (0, 32 or 128): bits
 * 4.. of the shared address (the 16-byte pieces) XOR-ed with bits 7.. (one bit
 * for 32, three for 128; the box in shared memory must then be 256- or
 * 1024-byte aligned). */
struct alignas(64) TensorMap2D {
    const unsigned char *base;
    uint64_t dim0, dim1, dim2, stride1, stride2;
    uint32_t box0, box1, box2, esize;
    int swz;
    unsigned char pad[44];
};
static_assert(sizeof(TensorMap2D) == 128, "a tensor map is 128 bytes, as CUtensorMap");
/* A bulk tensor store as issued: the box at (x, y) of map m from shared memory src. */
struct BulkStore {
    const TensorMap2D *m;
    int x, y;
    const unsigned char *src;
    uint32_t saddr;
    const char *where;
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
    bool bar_any;      /* at a __syncthreads that may pair with any other (bar_sync_any) */
    int nbar_id, nbar_cnt; /* named barrier (bar.sync id, count): id >= 1 */
    uint64_t *mb_wait;     /* OP_MBAR: the mbarrier */
    unsigned mb_parity;    /* and the parity of the phase waited for */
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
    /* wgmma (warpgroup) */
    float *wg_d;
    uint32_t wg_a[4];
    bool wg_rs, wg_scale_d, wg_f16;
    uint64_t wg_da, wg_db;
    int wg_n, wg_ta, wg_tb, wg_wait;
    /* cp.async */
    std::vector<Copy> cur;
    std::vector<std::vector<Copy>> groups;
    /* bulk tensor stores (shared -> global), by bulk async-group */
    std::vector<struct BulkStore> bcur;
    std::vector<std::vector<struct BulkStore>> bgroups;
};

/* One wgmma.mma_async of a warpgroup, as issued (executed at once or at a later wait_group). */
struct WgMma {
    float *d[128];
    uint32_t a[128][4];
    bool rs, scale_d, f16; /* f16: fp16 operands (else bf16) */
    uint64_t da, db;
    int n, ta, tb;
    const char *where;
};
struct WgQueue {
    std::vector<WgMma> open;                  /* issued, not committed */
    std::vector<std::vector<WgMma>> groups;   /* committed, not executed */
};

/* An mbarrier (shared memory, 8 bytes, found by address): expected arrivals,
 * arrivals still pending in the current phase, the transaction bytes
 * outstanding, the phases completed, and the bulk copies that landed in the
 * emulator's view only at the first wait that sees their phase complete. */
struct Mbar {
    uint64_t *addr;
    int count, pending;
    long long tx;
    unsigned phase;
    std::vector<std::pair<unsigned char *, std::vector<unsigned char>>> deferred;
};
struct State {
    std::vector<Thread> th;
    std::vector<WgQueue> wgq; /* per warpgroup */
    uint32_t smem_base = 128; /* shared-window address of dynamic shared memory (not 1024-aligned on purpose) */
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
    std::vector<Mbar> mbars; /* the block's mbarriers */
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
/* A __syncthreads in code that runs beside other code (a helper warp): it
 * pairs with whatever __syncthreads the other threads are at.  The others'
 * sites must still agree among themselves. */
inline void collective_bar_any(const char *where) {
    self()->bar_any = true;
    collective(OP_BAR, where);
    self()->bar_any = false;
}

/* bar.sync id, cnt (id >= 1): released when cnt threads (whole warps) wait at id. */
inline void named_bar(int id, int cnt, const char *where) {
    Thread *t = self();
    if (id < 1 || id > 15 || cnt <= 0 || cnt % 32) die("named barrier: bad id or count", where);
    t->nbar_id = id;
    t->nbar_cnt = cnt;
    collective(OP_NBAR, where);
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

/* ---- mbarrier and bulk tensor copies (TMA), 2D tiles of 2-byte elements ---- */
inline uint32_t smem_addr(const void *p, const char *where) {
    State &s = st();
    if ((const unsigned char *)p < s.smem || (const unsigned char *)p >= s.smem + s.smem_bytes)
        die("address outside dynamic shared memory", where);
    return s.smem_base + (uint32_t)((const unsigned char *)p - s.smem);
}
inline Mbar *mbar_find(uint64_t *bar, const char *where) {
    State &s = st();
    for (Mbar &m : s.mbars)
        if (m.addr == bar) return &m;
    die("mbarrier used before mbarrier.init", where);
}
inline void mbar_init(uint64_t *bar, int count, const char *where) {
    if (smem_addr(bar, where) & 7) die("mbarrier misaligned", where);
    if (count < 1) die("mbarrier count < 1", where);
    State &s = st();
    for (Mbar &m : s.mbars)
        if (m.addr == bar) die("mbarrier initialised twice", where);
    Mbar m;
    m.addr = bar;
    m.count = m.pending = count;
    m.tx = 0;
    m.phase = 0;
    s.mbars.push_back(m);
}
inline void mbar_check(Mbar *m) {
    if (m->pending == 0 && m->tx == 0) {
        m->phase++;
        m->pending = m->count;
    }
}
/* mbarrier.arrive.expect_tx: the bytes this phase's copies will bring, and one arrival */
inline void mbar_expect_tx(uint64_t *bar, uint32_t bytes, const char *where) {
    Mbar *m = mbar_find(bar, where);
    m->tx += bytes;
    if (--m->pending < 0) die("mbarrier: more arrivals than its count", where);
    mbar_check(m);
}
inline void mbar_land(Mbar *m) {
    for (auto &d : m->deferred) memcpy(d.first, d.second.data(), d.second.size());
    m->deferred.clear();
}
inline bool mbar_ready(uint64_t *bar, unsigned parity) {
    Mbar *m = mbar_find(bar, nullptr);
    if ((m->phase & 1u) == (parity & 1u)) return false;
    mbar_land(m);
    return true;
}
/* mbarrier.try_wait.parity in a loop: the thread waits (a scheduling point) until the phase of that parity has completed */
inline void mbar_wait(uint64_t *bar, unsigned parity, const char *where) {
    mbar_find(bar, where);
    if (mbar_ready(bar, parity)) return;
    Thread *t = self();
    t->mb_wait = bar;
    t->mb_parity = parity;
    collective(OP_MBAR, where);
}
/* the box's shared-memory offset o (from its start at shared address a) as the swizzle places it */
inline size_t tma_swz(const TensorMap2D *tm, uint32_t a, size_t o) {
    const uint32_t mask = tm->swz == 128 ? 7u : tm->swz == 32 ? 1u : 0u;
    return o ^ (size_t)((((a + o) >> 7) & mask) << 4);
}
inline size_t tma_box_bytes(const TensorMap2D *tm) { return (size_t)tm->box0 * tm->box1 * tm->box2 * tm->esize; }
inline void tma_check(const TensorMap2D *tm, const void *sp, uint32_t a, const char *where) {
    const size_t bytes = tma_box_bytes(tm);
    if (tm->box2 < 1 || tm->dim2 < 1) die("bulk tensor copy: map without a third dimension (box2, dim2 >= 1)", where);
    if (a & (tm->swz == 128 ? 1023u : tm->swz == 32 ? 255u : 127u)) die("bulk tensor copy: shared address misaligned", where);
    if ((const unsigned char *)sp + bytes > st().smem + st().smem_bytes) die("bulk tensor copy past shared memory", where);
    if (tm->swz && tm->box0 * tm->esize != (uint32_t)tm->swz) die("bulk tensor copy: swizzle span != box row bytes", where);
    if ((tm->box0 * tm->esize) % 16) die("bulk tensor copy: box rows not a multiple of 16 bytes", where);
}
/* cp.async.bulk.tensor.{2,3}d global -> shared, completing bytes on bar (z 0 for two dimensions) */
inline void tma_load_3d(void *dst, const TensorMap2D *tm, int x, int y, int z, uint64_t *bar, const char *where) {
    const uint32_t a = smem_addr(dst, where);
    tma_check(tm, dst, a, where);
    const size_t bytes = tma_box_bytes(tm);
    std::vector<unsigned char> img(bytes, 0);
    for (uint32_t p = 0; p < tm->box2; p++)
        for (uint32_t r = 0; r < tm->box1; r++)
            for (uint32_t c = 0; c < tm->box0; c++) {
                const long long gx = (long long)x + c, gy = (long long)y + r, gz = (long long)z + p;
                const size_t o = tma_swz(tm, a, (((size_t)p * tm->box1 + r) * tm->box0 + c) * tm->esize);
                if (gx >= 0 && gy >= 0 && gz >= 0 && (uint64_t)gx < tm->dim0 && (uint64_t)gy < tm->dim1 &&
                    (uint64_t)gz < tm->dim2)
                    memcpy(&img[o], tm->base + (size_t)gz * tm->stride2 + (size_t)gy * tm->stride1 + (size_t)gx * tm->esize,
                           tm->esize);
            }
    Mbar *m = mbar_find(bar, where);
    State &s = st();
    if (s.policy == POLICY_RANDOM && (s.rng() & 1))
        m->deferred.push_back({(unsigned char *)dst, img});
    else
        memcpy(dst, img.data(), bytes);
    m->tx -= (long long)bytes;
    if (m->tx < 0) die("bulk tensor copy: more bytes than the mbarrier expects", where);
    mbar_check(m);
}
inline void tma_load_2d(void *dst, const TensorMap2D *tm, int x, int y, uint64_t *bar, const char *where) {
    if (tm->dim2 != 1 || tm->box2 != 1) die("bulk tensor copy: a three-dimensional map loaded as 2d", where);
    tma_load_3d(dst, tm, x, y, 0, bar, where);
}


/* cp.async.bulk.tensor.2d shared -> global (bulk_group): performed at once or,
 * under the random policy, as late as the bulk wait_group that covers it (it
 * reads shared memory then: a kernel that rewrites the box before the wait
 * gets a result that depends on the policy). */
inline void bulk_do(const BulkStore &b) {
    const TensorMap2D *tm = b.m;
    for (uint32_t r = 0; r < tm->box1; r++)
        for (uint32_t c = 0; c < tm->box0; c++) {
            const long long gx = (long long)b.x + c, gy = (long long)b.y + r;
            if (gx < 0 || gy < 0 || (uint64_t)gx >= tm->dim0 || (uint64_t)gy >= tm->dim1) continue;
            const size_t o = tma_swz(tm, b.saddr, ((size_t)r * tm->box0 + c) * tm->esize);
            memcpy(const_cast<unsigned char *>(tm->base) + (size_t)gy * tm->stride1 + (size_t)gx * tm->esize, b.src + o,
                   tm->esize);
        }
}
inline void tma_store_2d(const TensorMap2D *tm, int x, int y, const void *src, const char *where) {
    BulkStore b{tm, x, y, (const unsigned char *)src, smem_addr(src, where), where};
    tma_check(tm, src, b.saddr, where);
    if (tm->dim2 != 1 || tm->box2 != 1) die("bulk tensor store: a three-dimensional map stored as 2d", where);
    State &s = st();
    if (s.policy == POLICY_RANDOM && (s.rng() & 1))
        self()->bcur.push_back(b);
    else
        bulk_do(b);
}
inline void bulk_commit() {
    Thread *t = self();
    t->bgroups.push_back(t->bcur);
    t->bcur.clear();
}
/* cp.async.bulk.wait_group(.read) n: all but the n most recent groups done */
inline void bulk_wait(int n) {
    Thread *t = self();
    while ((int)t->bgroups.size() > n) {
        for (const BulkStore &b : t->bgroups.front()) bulk_do(b);
        t->bgroups.erase(t->bgroups.begin());
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


/* ---- wgmma: 128B-swizzled shared-memory operands through matrix descriptors ---- */
/* Element (mn, k) of a descriptor's operand (k < 16): K-major rows of 128 bytes
 * in groups of 8 at SBO, or MN-major 64-element rows (one per k) in groups of
 * 8 k at SBO, 64-wide MN blocks at LBO; the 16-byte chunk of the address is
 * XORed with bits 7-9 (the hardware's 128-byte swizzle). */
inline const unsigned char *wg_elem(uint64_t desc, int mn, int k, bool mn_major, const char *where) {
    State &s = st();
    if ((desc >> 62) != 1) die("wgmma descriptor: only the 128-byte swizzle is emulated", where);
    if ((desc >> 49) & 7) die("wgmma descriptor: base offset must be 0 (1024-byte aligned atoms)", where);
    uint32_t start = (uint32_t)(desc & 0x3FFF) << 4, lbo = (uint32_t)((desc >> 16) & 0x3FFF) << 4,
             sbo = (uint32_t)((desc >> 32) & 0x3FFF) << 4;
    uint32_t a;
    if (!mn_major)
        a = start + (uint32_t)(mn / 8) * sbo + (uint32_t)(mn % 8) * 128 + 2u * (uint32_t)k;
    else
        a = start + (uint32_t)(mn / 64) * lbo + (uint32_t)(k / 8) * sbo + (uint32_t)(k % 8) * 128 + 2u * (uint32_t)(mn % 64);
    if (!mn_major && ((start & 127) + 2u * 16 > 128)) die("wgmma descriptor: K-major k step crosses a 128-byte row", where);
    a ^= ((a >> 7) & 7) << 4;
    if (a < s.smem_base || a + 2 > s.smem_base + s.smem_bytes) die("wgmma operand outside dynamic shared memory", where);
    return s.smem + (a - s.smem_base);
}

inline void wg_exec(const WgMma &m) {
    float A[64][16], B[16][256];
    for (int r = 0; r < 64; r++)
        for (int k = 0; k < 16; k++) {
            uint16_t h;
            if (m.rs) {
                int w = r / 16, rr = r % 16, g = rr % 8, hi = rr / 8, t = (k % 8) / 2, lane = g * 4 + t;
                uint32_t reg = m.a[w * 32 + lane][hi + 2 * (k / 8)];
                h = (uint16_t)(reg >> (16 * (k & 1)));
            } else
                memcpy(&h, wg_elem(m.da, r, k, m.ta != 0, m.where), 2);
            A[r][k] = m.f16 ? f16_to_f(h) : bf16_to_f(h);
        }
    for (int k = 0; k < 16; k++)
        for (int c = 0; c < m.n; c++) {
            uint16_t h;
            memcpy(&h, wg_elem(m.db, c, k, m.tb != 0, m.where), 2);
            B[k][c] = m.f16 ? f16_to_f(h) : bf16_to_f(h);
        }
    for (int r = 0; r < 64; r++) {
        int w = r / 16, rr = r % 16, g = rr % 8, hi = rr / 8;
        for (int c = 0; c < m.n; c++) {
            int t = (c % 8) / 2, lane = g * 4 + t;
            float *d = m.d[w * 32 + lane] + 4 * (c / 8) + 2 * hi + (c & 1);
            float acc = m.scale_d ? *d : 0.f;
            for (int k = 0; k < 16; k++) acc = std::fma(A[r][k], B[k][c], acc);
            *d = acc;
        }
    }
}

inline void wg_flush(WgQueue &q, size_t keep_groups, bool open_too) {
    while (q.groups.size() > keep_groups) {
        for (const WgMma &m : q.groups.front()) wg_exec(m);
        q.groups.erase(q.groups.begin());
    }
    if (open_too) {
        for (const WgMma &m : q.open) wg_exec(m);
        q.open.clear();
    }
}

inline void resolve_warpgroup(int wg) {
    State &s = st();
    Thread *L[128];
    for (int l = 0; l < 128; l++) L[l] = &s.th[wg * 128 + l];
    Op op = L[0]->op;
    for (int l = 1; l < 128; l++)
        if (L[l]->op != op || L[l]->where != L[0]->where) {
            fprintf(stderr, "emu: thread 0 of the warpgroup at %s, thread %d at %s\n", L[0]->where, l, L[l]->where);
            die("divergent warpgroup collective", L[0]->where);
        }
    s.collectives++;
    if ((int)s.wgq.size() <= wg) s.wgq.resize(wg + 1);
    WgQueue &q = s.wgq[wg];
    if (op == OP_WG_MMA) {
        WgMma m;
        m.rs = L[0]->wg_rs;
        m.scale_d = L[0]->wg_scale_d;
        m.f16 = L[0]->wg_f16;
        m.da = L[0]->wg_da;
        m.db = L[0]->wg_db;
        m.n = L[0]->wg_n;
        m.ta = L[0]->wg_ta;
        m.tb = L[0]->wg_tb;
        m.where = L[0]->where;
        for (int l = 0; l < 128; l++) {
            const Thread *t = L[l];
            if (t->wg_rs != m.rs || t->wg_scale_d != m.scale_d || t->wg_f16 != m.f16 || t->wg_db != m.db || (!m.rs && t->wg_da != m.da) ||
                t->wg_n != m.n || t->wg_ta != m.ta || t->wg_tb != m.tb)
                die("wgmma operands differ across the warpgroup", m.where);
            m.d[l] = t->wg_d;
            memcpy(m.a[l], t->wg_a, sizeof m.a[l]);
        }
        if (m.n < 8 || m.n > 256 || m.n % 8) die("wgmma N", m.where);
        q.open.push_back(m);
        /* The hardware reads the operands at some point before wait_group: at once or later. */
        if (s.policy != POLICY_RANDOM || (s.rng() & 1)) wg_flush(q, 0, true);
    } else if (op == OP_WG_COMMIT) {
        q.groups.push_back(q.open);
        q.open.clear();
    } else if (op == OP_WG_WAIT) {
        int n = L[0]->wg_wait;
        wg_flush(q, (size_t)n, false);
    }
    for (int l = 0; l < 128; l++) L[l]->op = OP_NONE;
}

inline void trampoline() {
    State &s = st();
    (*s.fn)();
    s.cur->done = true;
    if (!s.cur->bcur.empty() || !s.cur->bgroups.empty()) die("thread exited with bulk stores not waited for", nullptr);
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
        t.bcur.clear();
        t.bgroups.clear();
        if (!t.stack) t.stack = (char *)malloc(s.stack_bytes);
        getcontext(&t.uc);
        t.uc.uc_stack.ss_sp = t.stack;
        t.uc.uc_stack.ss_size = s.stack_bytes;
        t.uc.uc_link = nullptr;
        makecontext(&t.uc, (void (*)())trampoline, 0);
    }
    s.wgq.assign((n + 127) / 128, WgQueue());
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
            if (t.op == OP_MBAR && !t.done && mbar_ready(t.mb_wait, t.mb_parity)) t.op = OP_NONE;
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
        if (ndone == n) {
            for (WgQueue &q : s.wgq)
                if (!q.open.empty() || !q.groups.empty()) die("block exited with wgmma not waited for", nullptr);
            break;
        }
        bool progress = false;
        for (int id = 1; id < 16; id++) { /* named barriers: release each complete one */
            int cnt = 0, want = -1;
            for (int i = 0; i < n; i++) {
                Thread &t = s.th[i];
                if (t.done || t.op != OP_NBAR || t.nbar_id != id) continue;
                if (want >= 0 && t.nbar_cnt != want) die("named barrier used with two thread counts", t.where);
                want = t.nbar_cnt;
                cnt++;
            }
            if (cnt == 0) continue;
            if (cnt > want) die("more threads at a named barrier than its count", nullptr);
            if (cnt == want) {
                for (int i = 0; i < n; i++)
                    if (!s.th[i].done && s.th[i].op == OP_NBAR && s.th[i].nbar_id == id) s.th[i].op = OP_NONE;
                progress = true;
            }
        }
        if (progress) continue;
        if (nbar == n - ndone) {
            if (ndone) die("__syncthreads reached while some threads of the block have exited", s.th[0].where);
            const char *w0 = nullptr;
            int i0 = 0;
            for (int i = 0; i < n; i++) {
                if (s.th[i].bar_any) continue;
                if (!w0) {
                    w0 = s.th[i].where;
                    i0 = i;
                }
                if (s.th[i].where != w0) {
                    fprintf(stderr, "emu: thread %d at %s, thread %d at %s\n", i0, w0, i, s.th[i].where);
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
                    if (t.done || t.op == OP_NONE || t.op == OP_BAR || t.op == OP_NBAR || t.op == OP_MBAR) all = false;
                }
                if (!all) continue;
                if (s.th[w * 32].op >= OP_WG_MMA) { /* a warpgroup collective: all 4 warps */
                    int wg = w / 4;
                    if ((wg + 1) * 128 > n) die("warpgroup collective in a block that is not whole warpgroups", s.th[w * 32].where);
                    bool every = true;
                    for (int l = 0; l < 128; l++) {
                        Thread &t = s.th[wg * 128 + l];
                        if (t.done || t.op < OP_WG_MMA) every = false;
                    }
                    if (every) {
                        resolve_warpgroup(wg);
                        progress = true;
                    }
                    continue;
                }
                resolve_warp(w);
                progress = true;
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
                s.mbars.clear();
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

/* Shared-window address of a pointer into dynamic shared memory (__cvta_generic_to_shared). */
inline uint32_t emu_smem_addr(const void *p) {
    emu::State &s = emu::st();
    const unsigned char *c = (const unsigned char *)p;
    if (c < s.smem || c > s.smem + s.smem_bytes) emu::die("shared address of a pointer outside dynamic shared memory", nullptr);
    return (uint32_t)(c - s.smem) + s.smem_base;
}
/* wgmma.mma_async m64nNk16 bf16 (or fp16: f16) -> f32: d is the thread's N/2 accumulators, a its 4 A registers (or nullptr: A from da). */
inline void emu_wgmma(float *d, int n, const uint32_t *a, uint64_t da, uint64_t db, int ta, int tb, bool scale_d,
                      const char *where, bool f16 = false) {
    emu::Thread *t = emu::self();
    t->wg_d = d;
    t->wg_n = n;
    t->wg_rs = a != nullptr;
    for (int i = 0; i < 4; i++) t->wg_a[i] = a ? a[i] : 0u;
    t->wg_da = a ? 0 : da;
    t->wg_db = db;
    t->wg_ta = ta;
    t->wg_tb = tb;
    t->wg_scale_d = scale_d;
    t->wg_f16 = f16;
    emu::collective(emu::OP_WG_MMA, where);
}
inline void emu_wgmma_commit(const char *where) { emu::collective(emu::OP_WG_COMMIT, where); }
inline void emu_wgmma_wait(int n, const char *where) {
    emu::self()->wg_wait = n;
    emu::collective(emu::OP_WG_WAIT, where);
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
