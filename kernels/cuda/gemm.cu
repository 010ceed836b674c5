// gemm.cu: row-major GEMMs on cuBLASLt with cached descriptors and algorithms.
//
// Algorithm choice.  On the first call of a shape (sizes, transposes, output
// type, leading dimensions, alignments) a list of candidate algorithms is
// built and each is timed on the caller's real A and B (only read) and a
// scratch output of C's size and stride, so that C is written once, by the
// real product, and beta = 1 accumulation is never disturbed; the fastest is
// cached with the plan.  The candidates, at most kMaxCands (48), in this order
// of priority (each group with its own quota):
//   heuristic  the first kTuneAlgos (12) results of cuBLASLt's heuristic (its first
//              result is the reference: it stays unless another is >= 2% faster);
//   split-K    the first three heuristic results with CUBLASLT_ALGO_CONFIG_SPLITK_NUM
//              2, 3, 4 (and 1), reduction scheme INPLACE (fp32 output only: it
//              reduces in the output type) or COMPUTE_TYPE (fp32 in the workspace),
//              where the algorithm's capabilities allow split-K and the scheme;
//   tile       the heuristic's first algorithm with the other tiles it supports
//              (both sides 64..256; stages and cluster shape kept where the check
//              accepts them, else the first accepted), the best-filled last wave first;
//   swizzle    the first three heuristic results with CTA swizzling flipped;
//   cluster    the heuristic's first result with cluster shapes 1x1, 2x1, 1x2, 2x2;
//   by-id      the heuristic asked again per algorithm id (cublasLtMatmulAlgoGetIds,
//              CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID): configurations of ids that
//              the default search does not rank high;
//   heuristic+ the heuristic's results 13..32.
// Every candidate beyond the first twelve is built by hand or reconfigured, so
// it must pass cublasLtMatmulAlgoCheck with the plan's descriptors, need at
// most the workspace (32 MiB) and no more alignment than A, B, C and their
// leading dimensions have; then, before it is timed, its output is compared
// with the heuristic's first choice on a sample of the elements, after a run
// with beta 0 on a NaN-filled scratch output and after a second run with beta
// 1 (whatever the call's beta: a plan serves both), so a configuration that
// computes, overwrites or accumulates wrongly is dropped.  A candidate whose
// cublasLtMatmul fails is skipped.
// Timing: one untimed run each, then a round of single timed runs over all,
// then kTuneIters - 1 more rounds over the kTuneKeep fastest (each keeps its
// minimum; at most kTuneBudgetMs of measured GPU time in all); a winner other
// than the heuristic's first must then be >= 2% faster in the median of
// kConfirmRuns interleaved runs of the two, else the heuristic's first stays.
//
// Environment: OH_GEMM_TUNE=0 takes the heuristic's first choice (no timing);
// OH_GEMM_TUNE_EXTRA=0 times only the heuristic's first twelve (no built
// candidates); OH_GEMM_TUNE_PICK=extra | splitk (a test hook) chooses only among
// candidates that are not among the heuristic's first twelve | that split K,
// where there are any; OH_GEMM_VERBOSE=1 prints, per tuned shape, the
// candidate counts and the heuristic's first and the chosen algorithm (id,
// tile, stages, split-K, reduction scheme, swizzle, cluster shape, time) to
// stderr, OH_GEMM_VERBOSE=2 also every candidate, OH_GEMM_VERBOSE=3 also every
// configuration refused (and why).  Tuning is skipped (the
// heuristic's first result is used, not cached) while the stream is being
// captured into a graph or when the scratch allocation fails.
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops_common.cuh"

#include <cublasLt.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <unordered_map>
#include <vector>

#define OHC_CUBLAS(call)                                                                                               \
    do {                                                                                                               \
        cublasStatus_t ohc_b_ = (call);                                                                                \
        if (ohc_b_ != CUBLAS_STATUS_SUCCESS) {                                                                         \
            oh_ops_report(__FILE__, __LINE__, #call, cublasLtGetStatusString(ohc_b_));                                 \
            return OH_CUDA_ERR_CUBLAS;                                                                                 \
        }                                                                                                              \
    } while (0)

namespace {

const size_t kWorkspaceBytes = 32u << 20;
const int kTuneAlgos = 12;          // heuristic candidates timed per shape (the "heuristic" group)
const int kHeurAsk = 32;            // heuristic results asked for (the rest: the "heuristic+" group)
const int kMaxCands = 48;           // candidates timed per shape, all groups
const int kTuneIters = 4;           // timed rounds (after a warm-up); each candidate keeps its minimum
const int kTuneKeep = 12;           // candidates kept after the first round
const int kConfirmRuns = 7;         // median runs of a challenger and the heuristic's first (tune_plan)
const float kTuneBudgetMs = 3000.f; // measured GPU time after which no further round starts
const int kVerifySamples = 16384;   // output elements compared per built candidate

enum CandSrc { kSrcHeur, kSrcSplitK, kSrcTile, kSrcSwizzle, kSrcCluster, kSrcById, kSrcHeurMore, kSrcCount };
const char *const kSrcName[kSrcCount] = {"heuristic", "split-K", "tile", "swizzle", "cluster", "by-id", "heuristic+"};
const int kSrcQuota[kSrcCount] = {kTuneAlgos, 16, 8, 3, 3, 4, kMaxCands};

struct GemmKey {
    int dev, m, n, k, ta, tb, ctype, lda, ldb, ldc, align_a, align_b, align_c;
    bool operator==(const GemmKey &o) const {
        return dev == o.dev && m == o.m && n == o.n && k == o.k && ta == o.ta && tb == o.tb && ctype == o.ctype &&
               lda == o.lda && ldb == o.ldb && ldc == o.ldc && align_a == o.align_a && align_b == o.align_b &&
               align_c == o.align_c;
    }
};
struct GemmKeyHash {
    size_t operator()(const GemmKey &k) const {
        const int *p = &k.dev;
        size_t h = 1469598103934665603ull;
        for (int i = 0; i < 13; i++) h = (h ^ (size_t)(unsigned)p[i]) * 1099511628211ull;
        return h;
    }
};

struct GemmPlan {
    cublasLtMatmulDesc_t desc = nullptr;
    cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
    cublasLtMatmulAlgo_t algo;
    size_t ws = 0;
};

// The configuration of an algorithm (what tells two candidates apart, and what verbose output prints).
struct AlgoCfg {
    int32_t id = -1, splitk = 1;
    uint32_t tile = 0, stages = 0, red = 0, swz = 0, custom = 0;
    uint16_t inner = 0, cluster = 0;
    bool operator==(const AlgoCfg &o) const {
        return id == o.id && splitk == o.splitk && tile == o.tile && stages == o.stages && red == o.red &&
               swz == o.swz && custom == o.custom && inner == o.inner && cluster == o.cluster;
    }
};

// A timing candidate (only alive while a shape is tuned).
struct Cand {
    cublasLtMatmulAlgo_t algo;
    AlgoCfg cfg;
    size_t ws = 0;
    float waves = 0.f;    // cuBLASLt's wave count (0: unknown)
    int src = kSrcHeur;   // CandSrc
    bool verify = false;  // compared with the heuristic's first choice before timing
    int state = 0;        // kCandOk, ...
    float t = 3.0e38f;    // fastest timed run, ms
    float t_confirm = 0.f; // median of the confirmation runs, ms (0: none)
};
enum { kCandOk, kCandRunFailed, kCandWrong, kCandUnverified, kCandUntimed };
const char *const kStateName[] = {"ok", "run failed", "WRONG result (dropped)", "not verified (dropped)", "not timed"};

struct Workspace {
    int dev;
    cudaStream_t stream;
    void *ptr;
};

std::mutex g_mu;
std::unordered_map<GemmKey, GemmPlan, GemmKeyHash> g_plans;
std::vector<Workspace> g_ws;
cublasLtHandle_t g_handles[64];

int align_of(const void *p) {
    uintptr_t a = (uintptr_t)p;
    int r = 256;
    while (r > 2 && (a % (uintptr_t)r) != 0) r >>= 1;
    return r;
}

// Alignment in bytes of a matrix: of its pointer and of its row stride (at most 256).
uint32_t align_with_ld(int ptr_align, int ld, int esize) {
    uint32_t b = (uint32_t)ld * (uint32_t)esize, low = b & (~b + 1u);
    uint32_t a = (uint32_t)ptr_align;
    if (low && low < a) a = low;
    return a;
}

void destroy_plan(GemmPlan &p) {
    if (p.la) cublasLtMatrixLayoutDestroy(p.la);
    if (p.lb) cublasLtMatrixLayoutDestroy(p.lb);
    if (p.lc) cublasLtMatrixLayoutDestroy(p.lc);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    p = GemmPlan();
}

int env_int(const char *name, int dflt) {
    const char *e = getenv(name);
    return e && e[0] ? atoi(e) : dflt;
}
bool tune_enabled() { return env_int("OH_GEMM_TUNE", 1) != 0; }
bool extras_enabled() { return env_int("OH_GEMM_TUNE_EXTRA", 1) != 0; }
int verbose_level() { return env_int("OH_GEMM_VERBOSE", 0); }

// ---------------------------------------------------------------- algorithm configurations
template <class T> void get_cfg(const cublasLtMatmulAlgo_t &a, cublasLtMatmulAlgoConfigAttributes_t at, T *v) {
    size_t w = 0;
    if (cublasLtMatmulAlgoConfigGetAttribute(&a, at, v, sizeof *v, &w) != CUBLAS_STATUS_SUCCESS) *v = T();
}
template <class T> bool set_cfg(cublasLtMatmulAlgo_t *a, cublasLtMatmulAlgoConfigAttributes_t at, T v) {
    return cublasLtMatmulAlgoConfigSetAttribute(a, at, &v, sizeof v) == CUBLAS_STATUS_SUCCESS;
}
template <class T> T get_cap(const cublasLtMatmulAlgo_t &a, cublasLtMatmulAlgoCapAttributes_t at, T dflt) {
    T v = dflt;
    size_t w = 0;
    if (cublasLtMatmulAlgoCapGetAttribute(&a, at, &v, sizeof v, &w) != CUBLAS_STATUS_SUCCESS) v = dflt;
    return v;
}
// An array capability (tile ids, stages ids).
std::vector<uint32_t> get_cap_ids(const cublasLtMatmulAlgo_t &a, cublasLtMatmulAlgoCapAttributes_t at) {
    size_t need = 0;
    std::vector<uint32_t> v;
    if (cublasLtMatmulAlgoCapGetAttribute(&a, at, nullptr, 0, &need) != CUBLAS_STATUS_SUCCESS || need == 0 ||
        need > 4096 * sizeof(uint32_t))
        return v;
    v.resize(need / sizeof(uint32_t));
    size_t w = 0;
    if (cublasLtMatmulAlgoCapGetAttribute(&a, at, v.data(), v.size() * sizeof(uint32_t), &w) != CUBLAS_STATUS_SUCCESS)
        v.clear();
    else
        v.resize(std::min(v.size(), w / sizeof(uint32_t)));
    return v;
}

AlgoCfg read_cfg(const cublasLtMatmulAlgo_t &a) {
    AlgoCfg c;
    get_cfg(a, CUBLASLT_ALGO_CONFIG_ID, &c.id);
    get_cfg(a, CUBLASLT_ALGO_CONFIG_TILE_ID, &c.tile);
    get_cfg(a, CUBLASLT_ALGO_CONFIG_STAGES_ID, &c.stages);
    get_cfg(a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &c.splitk);
    get_cfg(a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &c.red);
    get_cfg(a, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &c.swz);
    get_cfg(a, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION, &c.custom);
    get_cfg(a, CUBLASLT_ALGO_CONFIG_INNER_SHAPE_ID, &c.inner);
    get_cfg(a, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &c.cluster);
    if (c.splitk < 1) c.splitk = 1;
    return c;
}

// Tile sizes (rows x columns of cuBLASLt's column-major C' = the row-major C^T) of
// the tile ids used here (cublasLtMatmulTile_t: 1..35, then those with both sides
// multiples of 32 in 64..256).
struct TileDims {
    uint16_t id, r, c;
};
const TileDims kTiles[] = {
    {1, 8, 8},      {2, 8, 16},     {3, 16, 8},     {4, 8, 32},     {5, 16, 16},    {6, 32, 8},     {7, 8, 64},
    {8, 16, 32},    {9, 32, 16},    {10, 64, 8},    {11, 32, 32},   {12, 32, 64},   {13, 64, 32},   {14, 32, 128},
    {15, 64, 64},   {16, 128, 32},  {17, 64, 128},  {18, 128, 64},  {19, 64, 256},  {20, 128, 128}, {21, 256, 64},
    {22, 64, 512},  {23, 128, 256}, {24, 256, 128}, {25, 512, 64},  {26, 64, 96},   {27, 96, 64},   {28, 96, 128},
    {29, 128, 160}, {30, 160, 128}, {31, 192, 128}, {32, 128, 192}, {33, 128, 96},  {34, 32, 256},  {35, 256, 32},
    {116, 64, 192}, {151, 96, 192}, {152, 96, 256}, {193, 160, 64}, {194, 160, 192}, {195, 160, 256}, {208, 192, 64},
    {209, 192, 192}, {210, 192, 256}, {220, 224, 64}, {221, 224, 128}, {222, 224, 192}, {232, 256, 192},
    {326, 64, 160}, {333, 64, 224}, {414, 128, 224}, {458, 192, 96}, {465, 192, 160}, {472, 192, 224},
    {495, 256, 96}, {502, 256, 160}, {509, 256, 224}, {513, 256, 256}};
const TileDims *tile_dims(uint32_t id) {
    for (const TileDims &t : kTiles)
        if (t.id == id) return &t;
    return nullptr;
}

// Cluster shapes 0..16 of cublasLtClusterShape_t (1 is unused).
const char *const kClusterName[] = {"auto",  "?",     "1x1x1", "2x1x1", "4x1x1",  "1x2x1", "2x2x1", "4x2x1", "1x4x1",
                                    "2x4x1", "4x4x1", "8x1x1", "1x8x1", "8x2x1", "2x8x1", "16x1x1", "1x16x1"};

const char *red_name(uint32_t r) {
    switch (r) {
    case CUBLASLT_REDUCTION_SCHEME_NONE: return "none";
    case CUBLASLT_REDUCTION_SCHEME_INPLACE: return "inplace";
    case CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE: return "compute";
    case CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE: return "output";
    default: return "?";
    }
}

void format_cand(const Cand &c, char *buf, size_t n) {
    char tile[24], cl[24];
    const TileDims *td = tile_dims(c.cfg.tile);
    if (td) snprintf(tile, sizeof tile, "%ux%u", td->r, td->c);
    else snprintf(tile, sizeof tile, "#%u", c.cfg.tile);
    if (c.cfg.cluster < sizeof kClusterName / sizeof kClusterName[0])
        snprintf(cl, sizeof cl, "%s", kClusterName[c.cfg.cluster]);
    else
        snprintf(cl, sizeof cl, "#%u", c.cfg.cluster);
    snprintf(buf, n,
             "algo %d tile %s stages %u splitK %d red %s swz %u cluster %s custom %u inner %u ws %zu waves %.2f",
             c.cfg.id, tile, c.cfg.stages, c.cfg.splitk, red_name(c.cfg.red), c.cfg.swz, cl, c.cfg.custom,
             c.cfg.inner, c.ws, c.waves);
}

// ---------------------------------------------------------------- heuristic and candidates
// A heuristic preference: workspace, pointer alignments, search mode.
cublasStatus_t make_pref(const GemmKey &k, uint32_t search_mode, cublasLtMatmulPreference_t *out) {
    cublasLtMatmulPreference_t pref = nullptr;
    cublasStatus_t s = cublasLtMatmulPreferenceCreate(&pref);
    if (s != CUBLAS_STATUS_SUCCESS) return s;
    uint64_t wsb = kWorkspaceBytes;
    uint32_t aa = (uint32_t)k.align_b, ab = (uint32_t)k.align_a, ac = (uint32_t)k.align_c;
    if ((s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb)) ==
            CUBLAS_STATUS_SUCCESS &&
        (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa)) ==
            CUBLAS_STATUS_SUCCESS &&
        (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab)) ==
            CUBLAS_STATUS_SUCCESS &&
        (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac)) ==
            CUBLAS_STATUS_SUCCESS &&
        (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac)) ==
            CUBLAS_STATUS_SUCCESS &&
        search_mode != CUBLASLT_SEARCH_BEST_FIT)
        s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_SEARCH_MODE, &search_mode,
                                                 sizeof search_mode);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cublasLtMatmulPreferenceDestroy(pref);
        return s;
    }
    *out = pref;
    return CUBLAS_STATUS_SUCCESS;
}

// Builds descriptors and asks the heuristic for algorithms (g_mu held): the plan
// gets the first usable result; `cands` all usable results (the first
// kTuneAlgos as "heuristic", the rest as "heuristic+").
int make_plan(const GemmKey &k, GemmPlan *out, std::vector<Cand> *cands) {
    GemmPlan p;
    cudaDataType_t ct = k.ctype == OH_DTYPE_F32 ? CUDA_R_32F : CUDA_R_16BF;
    // Row-major C[Mr, Nr] = op(A)[Mr, K] op(B)[K, Nr] is, column-major,
    // C'[Nr, Mr] = op(A')[Nr, K] op(B')[K, Mr] with A' = the B buffer, B' = the A buffer.
    const int Mr = k.m, Nr = k.n, K = k.k;
    cublasOperation_t opa = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    int status = OH_CUDA_OK;
    cands->clear();
    do {
        cublasStatus_t s;
#define OHC_PLAN(call)                                                                                                 \
    if ((s = (call)) != CUBLAS_STATUS_SUCCESS) {                                                                       \
        oh_ops_report(__FILE__, __LINE__, #call, cublasLtGetStatusString(s));                                          \
        status = OH_CUDA_ERR_CUBLAS;                                                                                   \
        break;                                                                                                         \
    }
        OHC_PLAN(cublasLtMatmulDescCreate(&p.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        OHC_PLAN(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
        OHC_PLAN(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
        // A' = the B buffer: row-major [K, Nr] (column-major [Nr, K], op N) or, when
        // trans_b, row-major [Nr, K] (column-major [K, Nr], op T).
        OHC_PLAN(cublasLtMatrixLayoutCreate(&p.la, CUDA_R_16BF, k.tb ? K : Nr, k.tb ? Nr : K, k.ldb));
        // B' = the A buffer: row-major [Mr, K] (column-major [K, Mr], op N) or, when
        // trans_a, row-major [K, Mr] (column-major [Mr, K], op T).
        OHC_PLAN(cublasLtMatrixLayoutCreate(&p.lb, CUDA_R_16BF, k.ta ? Mr : K, k.ta ? K : Mr, k.lda));
        // C' = the C buffer: row-major [Mr, Nr] = column-major [Nr, Mr].
        OHC_PLAN(cublasLtMatrixLayoutCreate(&p.lc, ct, Nr, Mr, k.ldc));
        cublasLtMatmulPreference_t pref = nullptr;
        OHC_PLAN(make_pref(k, CUBLASLT_SEARCH_BEST_FIT, &pref));
        cublasLtMatmulHeuristicResult_t res[kHeurAsk];
        int nres = 0;
        s = cublasLtMatmulAlgoGetHeuristic(g_handles[k.dev], p.desc, p.la, p.lb, p.lc, p.lc, pref, kHeurAsk, res,
                                           &nres);
        cublasLtMatmulPreferenceDestroy(pref);
        if (s != CUBLAS_STATUS_SUCCESS) {
            oh_ops_report(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", cublasLtGetStatusString(s));
            status = OH_CUDA_ERR_CUBLAS;
            break;
        }
        for (int i = 0; i < nres; i++)
            if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= kWorkspaceBytes) {
                Cand c;
                c.algo = res[i].algo;
                c.cfg = read_cfg(res[i].algo);
                c.ws = res[i].workspaceSize;
                c.waves = res[i].wavesCount;
                c.src = i < kTuneAlgos ? kSrcHeur : kSrcHeurMore;
                c.verify = i >= kTuneAlgos;
                cands->push_back(c);
            }
        if (cands->empty() || (*cands)[0].src != kSrcHeur) {
            oh_ops_report(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", "no algorithm for this shape");
            status = OH_CUDA_ERR_CUBLAS;
            break;
        }
        p.algo = (*cands)[0].algo;
        p.ws = (*cands)[0].ws;
#undef OHC_PLAN
    } while (0);
    if (status != OH_CUDA_OK) {
        destroy_plan(p);
        cands->clear();
        return status;
    }
    *out = p;
    return OH_CUDA_OK;
}

// Adds candidates beyond the heuristic's first kTuneAlgos (CPU only; g_mu held).
struct CandBuilder {
    cublasLtHandle_t h;
    const GemmPlan *p;
    const GemmKey *k;
    std::vector<Cand> *c;
    uint32_t align[4]; // A', B', C', D' (pointer and leading dimension), bytes
    int count[kSrcCount] = {};
    int rejected[kSrcCount] = {}; // refused by cublasLtMatmulAlgoCheck, the workspace or the alignment
    const bool trace = verbose_level() >= 3; // OH_GEMM_VERBOSE=3: every refusal and its reason

    CandBuilder(cublasLtHandle_t h_, const GemmPlan *p_, const GemmKey *k_, std::vector<Cand> *c_)
        : h(h_), p(p_), k(k_), c(c_) {
        const int esz = k->ctype == OH_DTYPE_F32 ? 4 : 2;
        align[0] = align_with_ld(k->align_b, k->ldb, 2);
        align[1] = align_with_ld(k->align_a, k->lda, 2);
        align[2] = align[3] = align_with_ld(k->align_c, k->ldc, esz);
        for (const Cand &x : *c) count[x.src]++;
    }
    bool full(int src) const { return (int)c->size() >= kMaxCands || count[src] >= kSrcQuota[src]; }
    bool known(const AlgoCfg &cfg) const {
        for (const Cand &x : *c)
            if (x.cfg == cfg) return true;
        return false;
    }
    // cublasLtMatmulAlgoCheck, the workspace and the alignment; fills ws and waves.
    // `src` >= 0: a refusal is counted (and traced) for that group.
    bool check(const cublasLtMatmulAlgo_t &a, size_t *ws, float *waves, int src) {
        cublasLtMatmulHeuristicResult_t r;
        memset(&r, 0, sizeof r);
        char why[64] = "";
        cublasStatus_t s = cublasLtMatmulAlgoCheck(h, p->desc, p->la, p->lb, p->lc, p->lc, &a, &r);
        if (s != CUBLAS_STATUS_SUCCESS) {
            snprintf(why, sizeof why, "check: %s", cublasLtGetStatusString(s));
        } else if (r.workspaceSize > kWorkspaceBytes) {
            snprintf(why, sizeof why, "workspace %zu", r.workspaceSize);
        } else {
            const cublasLtMatmulAlgoCapAttributes_t at[4] = {
                CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_A_BYTES, CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_B_BYTES,
                CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_C_BYTES, CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_D_BYTES};
            for (int i = 0; i < 4 && !why[0]; i++) {
                uint32_t need = get_cap<uint32_t>(a, at[i], 0u);
                if (need > align[i]) snprintf(why, sizeof why, "alignment of %c %u > %u", "ABCD"[i], need, align[i]);
            }
        }
        if (why[0]) {
            if (src >= 0) {
                rejected[src]++;
                if (trace) {
                    Cand x;
                    x.cfg = read_cfg(a);
                    char buf[256];
                    format_cand(x, buf, sizeof buf);
                    fprintf(stderr, "oh_gemm:     refused %-10s %s: %s\n", kSrcName[src], buf, why);
                }
            }
            return false;
        }
        *ws = r.workspaceSize;
        *waves = r.wavesCount;
        return true;
    }
    void add(const cublasLtMatmulAlgo_t &a, const AlgoCfg &cfg, size_t ws, float waves, int src) {
        Cand x;
        x.algo = a;
        x.cfg = cfg;
        x.ws = ws;
        x.waves = waves;
        x.src = src;
        x.verify = true;
        c->push_back(x);
        count[src]++;
    }
    // Checks a new configuration and adds it; false when known, refused or over the quota.
    bool try_add(const cublasLtMatmulAlgo_t &a, int src) {
        if (full(src)) return false;
        AlgoCfg cfg = read_cfg(a);
        if (known(cfg)) return false;
        size_t ws = 0;
        float waves = 0.f;
        if (!check(a, &ws, &waves, src)) return false;
        add(a, cfg, ws, waves, src);
        return true;
    }

    // The heuristic's first three results with K split 2, 3, 4 (and 1).
    void split_k() {
        std::vector<cublasLtMatmulAlgo_t> seeds;
        for (const Cand &x : *c)
            if (x.src == kSrcHeur && seeds.size() < 3) seeds.push_back(x.algo);
        const uint32_t schemes[2] = {CUBLASLT_REDUCTION_SCHEME_INPLACE, CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE};
        for (int32_t s : {2, 3, 4, 1})
            for (uint32_t red : schemes) {
                if (s == 1 && red != schemes[0]) continue;
                for (const cublasLtMatmulAlgo_t &seed : seeds) {
                    if (get_cap<int32_t>(seed, CUBLASLT_ALGO_CAP_SPLITK_SUPPORT, 0) == 0) continue;
                    uint32_t scheme = s == 1 ? (uint32_t)CUBLASLT_REDUCTION_SCHEME_NONE : red;
                    if (s > 1) {
                        // INPLACE reduces in the output type: only for fp32 outputs.
                        if (red == CUBLASLT_REDUCTION_SCHEME_INPLACE && k->ctype != OH_DTYPE_F32) continue;
                        if (!(get_cap<uint32_t>(seed, CUBLASLT_ALGO_CAP_REDUCTION_SCHEME_MASK, 0u) & red)) continue;
                    }
                    cublasLtMatmulAlgo_t a = seed;
                    if (set_cfg(&a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, s) &&
                        set_cfg(&a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, scheme))
                        try_add(a, kSrcSplitK);
                }
            }
    }

    // The heuristic's first algorithm with its other tiles (sides 64..256), K not split.
    void tiles() {
        if (c->empty() || full(kSrcTile)) return;
        const cublasLtMatmulAlgo_t seed = (*c)[0].algo;
        const AlgoCfg scfg = (*c)[0].cfg;
        std::vector<uint32_t> tl = get_cap_ids(seed, CUBLASLT_ALGO_CAP_TILE_IDS);
        std::vector<uint32_t> st = get_cap_ids(seed, CUBLASLT_ALGO_CAP_STAGES_IDS);
        struct Found {
            cublasLtMatmulAlgo_t a;
            AlgoCfg cfg;
            size_t ws;
            float waves, fill;
            int area;
        };
        std::vector<Found> found;
        for (uint32_t t : tl) {
            const TileDims *td = tile_dims(t);
            if (!td || td->r < 64 || td->c < 64 || td->r > 256 || td->c > 256 || t == scfg.tile) continue;
            bool have = false;
            for (const Cand &x : *c) have = have || (x.cfg.id == scfg.id && x.cfg.tile == t);
            if (have) continue;
            cublasLtMatmulAlgo_t a = seed;
            if (!set_cfg(&a, CUBLASLT_ALGO_CONFIG_TILE_ID, t) ||
                !set_cfg(&a, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, (int32_t)1) ||
                !set_cfg(&a, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, (uint32_t)CUBLASLT_REDUCTION_SCHEME_NONE))
                continue;
            size_t ws = 0;
            float waves = 0.f;
            bool ok = check(a, &ws, &waves, -1);
            if (!ok && scfg.cluster != 0) { // the seed's cluster shape may not fit this tile
                ok = set_cfg(&a, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, (uint16_t)CUBLASLT_CLUSTER_SHAPE_AUTO) &&
                     check(a, &ws, &waves, -1);
            }
            // Nor its stages: the first accepted of the algorithm's stages, deepest first.
            int tries = 0;
            for (size_t i = st.size(); !ok && i-- > 0 && tries < 16;) {
                if (st[i] == CUBLASLT_MATMUL_STAGES_UNDEFINED || st[i] == scfg.stages) continue;
                tries++;
                ok = set_cfg(&a, CUBLASLT_ALGO_CONFIG_STAGES_ID, st[i]) && check(a, &ws, &waves, -1);
            }
            if (!ok) { // counted once per tile: checked again to count and trace it (seed's stages and cluster)
                cublasLtMatmulAlgo_t b = seed;
                set_cfg(&b, CUBLASLT_ALGO_CONFIG_TILE_ID, t);
                set_cfg(&b, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, (int32_t)1);
                set_cfg(&b, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, (uint32_t)CUBLASLT_REDUCTION_SCHEME_NONE);
                check(b, &ws, &waves, kSrcTile);
                continue;
            }
            AlgoCfg cfg = read_cfg(a);
            if (known(cfg)) continue;
            float fill = waves > 0.f ? waves / ceilf(waves) : 0.f;
            found.push_back(Found{a, cfg, ws, waves, fill, (int)td->r * td->c});
        }
        // The best-filled last wave first, then the larger tile.
        std::stable_sort(found.begin(), found.end(), [](const Found &x, const Found &y) {
            return x.fill != y.fill ? x.fill > y.fill : x.area > y.area;
        });
        for (const Found &f : found) {
            if (full(kSrcTile)) break;
            if (!known(f.cfg)) add(f.a, f.cfg, f.ws, f.waves, kSrcTile);
        }
    }

    // The heuristic's first three results with CTA swizzling flipped.
    void swizzle() {
        std::vector<Cand> seeds;
        for (const Cand &x : *c)
            if (x.src == kSrcHeur && seeds.size() < 3) seeds.push_back(x);
        for (const Cand &x : seeds) {
            if (get_cap<uint32_t>(x.algo, CUBLASLT_ALGO_CAP_CTA_SWIZZLING_SUPPORT, 0u) == 0) continue;
            cublasLtMatmulAlgo_t a = x.algo;
            if (set_cfg(&a, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, (uint32_t)(x.cfg.swz ? 0 : 1))) try_add(a, kSrcSwizzle);
        }
    }

    // The heuristic's first result with other thread-block cluster shapes.
    void clusters() {
        if (c->empty()) return;
        const cublasLtMatmulAlgo_t seed = (*c)[0].algo;
        const uint16_t shapes[4] = {CUBLASLT_CLUSTER_SHAPE_1x1x1, CUBLASLT_CLUSTER_SHAPE_2x1x1,
                                    CUBLASLT_CLUSTER_SHAPE_1x2x1, CUBLASLT_CLUSTER_SHAPE_2x2x1};
        for (uint16_t s : shapes) {
            cublasLtMatmulAlgo_t a = seed;
            if (set_cfg(&a, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, s)) try_add(a, kSrcCluster);
        }
    }

    // The heuristic again, per algorithm id (CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID).
    void by_id() {
        if (full(kSrcById)) return;
        cudaDataType_t ct = k->ctype == OH_DTYPE_F32 ? CUDA_R_32F : CUDA_R_16BF;
        int ids[128], nids = 0;
        if (cublasLtMatmulAlgoGetIds(h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, ct, ct, 128, ids,
                                     &nids) != CUBLAS_STATUS_SUCCESS)
            return;
        cublasLtMatmulPreference_t pref = nullptr;
        if (make_pref(*k, CUBLASLT_SEARCH_LIMITED_BY_ALGO_ID, &pref) != CUBLAS_STATUS_SUCCESS) return;
        for (int i = 0; i < nids && !full(kSrcById); i++) {
            bool have = false;
            for (const Cand &x : *c) have = have || x.cfg.id == ids[i];
            if (have) continue; // ids the default search returns are covered by the groups above
            cublasLtMatmulHeuristicResult_t r[2];
            memset(r, 0, sizeof r);
            if (cublasLtMatmulAlgoInit(h, CUBLAS_COMPUTE_32F, CUDA_R_32F, CUDA_R_16BF, CUDA_R_16BF, ct, ct, ids[i],
                                       &r[0].algo) != CUBLAS_STATUS_SUCCESS)
                continue;
            r[1].algo = r[0].algo;
            int n = 0;
            if (cublasLtMatmulAlgoGetHeuristic(h, p->desc, p->la, p->lb, p->lc, p->lc, pref, 2, r, &n) !=
                CUBLAS_STATUS_SUCCESS)
                continue;
            for (int j = 0; j < n; j++)
                if (r[j].state == CUBLAS_STATUS_SUCCESS && try_add(r[j].algo, kSrcById)) break;
        }
        cublasLtMatmulPreferenceDestroy(pref);
    }
};

// Extends `c` (the heuristic's results, make_plan) with the built candidates.
void build_candidates(cublasLtHandle_t h, const GemmPlan &p, const GemmKey &k, std::vector<Cand> *c,
                      int rejected[kSrcCount]) {
    std::vector<Cand> more; // the heuristic's results after the first kTuneAlgos: last
    for (size_t i = 0; i < c->size();)
        if ((*c)[i].src == kSrcHeurMore) {
            more.push_back((*c)[i]);
            c->erase(c->begin() + (long)i);
        } else {
            i++;
        }
    for (int s = 0; s < kSrcCount; s++) rejected[s] = 0;
    if (!extras_enabled()) return;
    CandBuilder b(h, &p, &k, c);
    b.split_k();
    b.tiles();
    b.swizzle();
    b.clusters();
    b.by_id();
    for (const Cand &x : more) b.try_add(x.algo, kSrcHeurMore);
    for (int s = 0; s < kSrcCount; s++) rejected[s] = b.rejected[s];
}

// ---------------------------------------------------------------- tuning
// Output element s of the sample (row-major C[m, n], row stride ldc).
__device__ __forceinline__ size_t sample_offset(int s, int n, int ldc, long long total, int nsamp) {
    unsigned long long i = total <= nsamp ? (unsigned long long)s
                                          : ((unsigned long long)s * 2654435761ull + 97ull) % (unsigned long long)total;
    return (size_t)(i / (unsigned long long)n) * (size_t)ldc + (size_t)(i % (unsigned long long)n);
}
__device__ __forceinline__ float load_out(const void *c, int is_bf16, size_t off) {
    return is_bf16 ? __bfloat162float(((const __nv_bfloat16 *)c)[off]) : ((const float *)c)[off];
}
__global__ void gemm_sample_kernel(const void *c, int is_bf16, int n, int ldc, long long total, int nsamp, float *out) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s < nsamp) out[s] = load_out(c, is_bf16, sample_offset(s, n, ldc, total, nsamp));
}
// Counts the sampled elements with |got - ref| > rtol |ref| + atol (or not finite) into *bad.
__global__ void gemm_compare_kernel(const void *c, int is_bf16, int n, int ldc, long long total, int nsamp,
                                    const float *ref, float rtol, float atol, int *bad) {
    int s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= nsamp) return;
    float x = load_out(c, is_bf16, sample_offset(s, n, ldc, total, nsamp)), r = ref[s];
    if (!(fabsf(x - r) <= rtol * fabsf(r) + atol)) atomicAdd(bad, 1);
}

struct Tuner {
    cublasLtHandle_t h;
    const GemmPlan *p;
    const void *A, *B;
    float alpha, beta;
    void *ws, *out;
    cudaStream_t stream;
    bool run(const Cand &c) { return run(c, beta); }
    bool run(const Cand &c, float b) {
        bool ok = cublasLtMatmul(h, p->desc, &alpha, B, p->la, A, p->lb, &b, out, p->lc, out, p->lc, &c.algo, ws,
                                 c.ws, stream) == CUBLAS_STATUS_SUCCESS;
        if (!ok) cudaGetLastError(); // a launch refused by this configuration: skip it
        return ok;
    }
};

// Compares the built candidates (verify) with the heuristic's first choice on
// kVerifySamples output elements, after a run with beta 0 on an output filled
// with NaN (which must not be read) and after a second run with beta 1 (which
// must accumulate), whatever the call's beta (a shape's plan serves both);
// marks the failing ones.  False when the comparison itself could not run
// (then no built candidate is used).
bool verify_cands(Tuner &tu, std::vector<Cand> &c, const GemmKey &k, size_t cbytes, float *dref, int *dbad) {
    const long long total = (long long)k.m * k.n;
    const int nsamp = (int)std::min<long long>(total, kVerifySamples);
    const int is_bf16 = k.ctype == OH_DTYPE_BF16;
    const int grid = (nsamp + 255) / 256;
    const float tol = is_bf16 ? 3e-2f : 1e-3f; // relative, and of the mean |ref| (bf16: a few ulps of rounding)
    cudaStream_t st = tu.stream;
    // The reference: the heuristic's first choice, after one and after two runs.
    if (cudaMemsetAsync(tu.out, 0xff, cbytes, st) != cudaSuccess || !tu.run(c[0], 0.f)) return false;
    gemm_sample_kernel<<<grid, 256, 0, st>>>(tu.out, is_bf16, k.n, k.ldc, total, nsamp, dref);
    if (!tu.run(c[0], 1.f)) return false;
    gemm_sample_kernel<<<grid, 256, 0, st>>>(tu.out, is_bf16, k.n, k.ldc, total, nsamp, dref + nsamp);
    std::vector<float> ref(2 * (size_t)nsamp);
    if (cudaGetLastError() != cudaSuccess ||
        cudaMemcpyAsync(ref.data(), dref, ref.size() * sizeof(float), cudaMemcpyDeviceToHost, st) != cudaSuccess ||
        cudaStreamSynchronize(st) != cudaSuccess)
        return false;
    double mean[2] = {0.0, 0.0};
    for (int r = 0; r < 2; r++)
        for (int s = 0; s < nsamp; s++) {
            float v = ref[(size_t)r * nsamp + s];
            if (!isfinite(v)) return false; // non-finite inputs: nothing to compare with
            mean[r] += fabs(v);
        }
    const float atol[2] = {tol * (float)(mean[0] / nsamp), tol * (float)(std::max(mean[0], mean[1]) / nsamp)};
    const size_t nc = c.size();
    if (cudaMemsetAsync(dbad, 0, 2 * nc * sizeof(int), st) != cudaSuccess) return false;
    for (size_t i = 0; i < nc; i++) {
        if (!c[i].verify || c[i].state != kCandOk) continue;
        if (cudaMemsetAsync(tu.out, 0xff, cbytes, st) != cudaSuccess) return false; // NaN (f32 and bf16)
        bool ok = tu.run(c[i], 0.f);
        if (ok) {
            gemm_compare_kernel<<<grid, 256, 0, st>>>(tu.out, is_bf16, k.n, k.ldc, total, nsamp, dref, tol, atol[0],
                                                      dbad + 2 * i);
            ok = tu.run(c[i], 1.f);
        }
        if (ok)
            gemm_compare_kernel<<<grid, 256, 0, st>>>(tu.out, is_bf16, k.n, k.ldc, total, nsamp, dref + nsamp, tol,
                                                      atol[1], dbad + 2 * i + 1);
        if (!ok) c[i].state = kCandRunFailed;
    }
    std::vector<int> bad(2 * nc);
    if (cudaGetLastError() != cudaSuccess ||
        cudaMemcpyAsync(bad.data(), dbad, bad.size() * sizeof(int), cudaMemcpyDeviceToHost, st) != cudaSuccess ||
        cudaStreamSynchronize(st) != cudaSuccess)
        return false;
    for (size_t i = 0; i < nc; i++)
        if (c[i].verify && c[i].state == kCandOk && (bad[2 * i] || bad[2 * i + 1])) c[i].state = kCandWrong;
    return true;
}

void print_tuning(const GemmKey &k, float beta, const std::vector<Cand> &c, int best, const int *rejected,
                  int verbose, const char *pick_note, double wall_ms) {
    int count[kSrcCount] = {}, nstate[5] = {};
    for (const Cand &x : c) count[x.src]++, nstate[x.state]++;
    char groups[256], refused[256];
    size_t o = 0, q = 0;
    groups[0] = refused[0] = 0;
    for (int s = 0; s < kSrcCount; s++) {
        if (count[s] && o < sizeof groups)
            o += (size_t)snprintf(groups + o, sizeof groups - o, "%s%s %d", o ? ", " : "", kSrcName[s], count[s]);
        if (rejected[s] && q < sizeof refused)
            q += (size_t)snprintf(refused + q, sizeof refused - q, "%s%s %d", q ? ", " : "", kSrcName[s],
                                  rejected[s]);
    }
    fprintf(stderr,
            "oh_gemm: tuned M %d N %d K %d ta %d tb %d C %s ldc %d beta %g: %zu candidates (%s); refused by "
            "check/workspace/alignment: %s; %d wrong, %d failed to run, %d unverified; %.0f ms%s\n",
            k.m, k.n, k.k, k.ta, k.tb, k.ctype == OH_DTYPE_F32 ? "f32" : "bf16", k.ldc, beta, c.size(), groups,
            q ? refused : "none", nstate[kCandWrong], nstate[kCandRunFailed], nstate[kCandUnverified], wall_ms,
            pick_note);
    char buf[256], tm[32];
    auto time_of = [&](const Cand &x) {
        if (x.state == kCandOk && x.t < 1e30f) snprintf(tm, sizeof tm, "%9.4f ms", x.t);
        else snprintf(tm, sizeof tm, "%12s", "-");
        return tm;
    };
    format_cand(c[0], buf, sizeof buf);
    fprintf(stderr, "oh_gemm:   heuristic first       %s  %s\n", time_of(c[0]), buf);
    if (best >= 0) {
        format_cand(c[best], buf, sizeof buf);
        const bool both = c[0].state == kCandOk && c[0].t < 1e30f && c[best].t < 1e30f;
        fprintf(stderr, "oh_gemm:   chosen #%-2d %-10s %s  %s (%.3fx the heuristic first)\n", best,
                kSrcName[c[best].src], time_of(c[best]), buf, both ? c[best].t / c[0].t : 1.f);
    }
    for (size_t i = 1; i < c.size(); i++)
        if (c[i].t_confirm > 0.f)
            fprintf(stderr, "oh_gemm:   confirmation medians: #%zu %.4f ms, heuristic first %.4f ms\n", i,
                    c[i].t_confirm, c[0].t_confirm);
    if (verbose >= 2)
        for (size_t i = 0; i < c.size(); i++) {
            format_cand(c[i], buf, sizeof buf);
            fprintf(stderr, "oh_gemm:     #%-2zu %-10s %s  %s%s%s%s\n", i, kSrcName[c[i].src], time_of(c[i]), buf,
                    c[i].state != kCandOk ? " [" : "", c[i].state != kCandOk ? kStateName[c[i].state] : "",
                    c[i].state != kCandOk ? "]" : "");
        }
}

// Builds the extra candidates, then times them on A, B and a scratch output
// like C (g_mu held) and keeps the fastest in p->algo.  Returns false when it
// could not time (the caller then uses the heuristic's first choice without
// caching it).
bool tune_plan(GemmPlan *p, std::vector<Cand> &c, cublasLtHandle_t h, const GemmKey &k, const void *A, const void *B,
               float alpha, float beta, void *ws, cudaStream_t stream) {
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &cap) != cudaSuccess || cap != cudaStreamCaptureStatusNone) {
        cudaGetLastError();
        return false;
    }
    const int verbose = verbose_level();
    const auto t_start = std::chrono::steady_clock::now();
    int rejected[kSrcCount];
    build_candidates(h, *p, k, &c, rejected);
    if (c.size() <= 1) {
        if (verbose >= 1) print_tuning(k, beta, c, 0, rejected, verbose, " (one candidate: not timed)", 0.0);
        return true;
    }
    const size_t esz = k.ctype == OH_DTYPE_F32 ? 4 : 2;
    const size_t cbytes = ((size_t)(k.m - 1) * k.ldc + k.n) * esz;
    void *scratch = nullptr, *vbuf = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    if (cudaMalloc(&scratch, cbytes) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    Tuner tu{h, p, A, B, alpha, beta, ws, scratch, stream};
    bool ok = cudaMemsetAsync(scratch, 0, cbytes, stream) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess &&
              cudaEventCreate(&e1) == cudaSuccess;
    // Warm the GPU up (clocks) on the heuristic's first choice.
    for (int r = 0; ok && r < 4; r++)
        if (!tu.run(c[0])) break;
    // The built candidates are compared with the heuristic's first choice; those
    // that could not be compared are dropped.
    bool any_verify = false;
    for (const Cand &x : c) any_verify = any_verify || x.verify;
    if (ok && any_verify) {
        bool vok = cudaMalloc(&vbuf, 2 * kVerifySamples * sizeof(float) + 2 * c.size() * sizeof(int)) == cudaSuccess;
        if (!vok) cudaGetLastError();
        vok = vok && verify_cands(tu, c, k, cbytes, (float *)vbuf, (int *)((float *)vbuf + 2 * kVerifySamples));
        if (!vok) {
            cudaGetLastError();
            for (Cand &x : c)
                if (x.verify && x.state == kCandOk) x.state = kCandUnverified;
        }
        ok = cudaMemsetAsync(scratch, 0, cbytes, stream) == cudaSuccess; // no NaN left for the timed runs
    }
    // One untimed run of each candidate not run yet (kernel loading), then the
    // timed rounds: all usable candidates once, then the kTuneKeep fastest
    // (and the heuristic's first) kTuneIters - 1 more times, round-robin so that
    // drift in the clocks hits every candidate alike; each keeps its minimum.
    std::vector<int> live;
    for (size_t i = 0; ok && i < c.size(); i++) {
        if (c[i].state != kCandOk) continue;
        if (i > 0 && !c[i].verify && !tu.run(c[i])) {
            c[i].state = kCandRunFailed;
            continue;
        }
        live.push_back((int)i);
    }
    float spent = 0.f;
    // One timed run of candidate i into *ms: false when it refuses the shape
    // (marked) or the events fail (ok cleared).
    auto time_one = [&](int i, float *ms) {
        cudaEventRecord(e0, stream);
        if (!tu.run(c[i])) {
            c[i].state = kCandRunFailed; // this candidate refuses the shape: skip it
            return false;
        }
        cudaEventRecord(e1, stream);
        *ms = 0.f;
        if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(ms, e0, e1) != cudaSuccess) {
            ok = false;
            return false;
        }
        spent += *ms;
        return true;
    };
    for (int r = 0; ok && r < kTuneIters && spent < kTuneBudgetMs; r++) {
        for (int i : live) {
            if (c[i].state != kCandOk) continue;
            float ms;
            if (!time_one(i, &ms)) {
                if (!ok) break;
                continue;
            }
            c[i].t = std::min(c[i].t, ms);
        }
        if (r == 0) {
            std::stable_sort(live.begin(), live.end(), [&](int x, int y) { return c[x].t < c[y].t; });
            std::vector<int> keep;
            for (int i : live)
                if (c[i].state == kCandOk && ((int)keep.size() < kTuneKeep || i == 0)) keep.push_back(i);
            live = keep; // the others keep their one timing (and stay eligible)
        }
    }
    for (Cand &x : c)
        if (x.state == kCandOk && x.t > 1e30f) x.state = kCandUntimed;
    // Eligible: usable and timed (OH_GEMM_TUNE_PICK narrows this down, a test hook).
    const char *pick = getenv("OH_GEMM_TUNE_PICK");
    int pick_mode = pick && !strcmp(pick, "extra") ? 1 : pick && !strcmp(pick, "splitk") ? 2 : 0;
    auto eligible = [&](int i, int mode) {
        if (c[i].state != kCandOk) return false;
        if (mode == 1) return c[i].src != kSrcHeur;
        if (mode == 2) return c[i].cfg.splitk > 1;
        return true;
    };
    const char *pick_note = "";
    if (pick_mode) {
        bool any = false;
        for (size_t i = 0; i < c.size(); i++) any = any || eligible((int)i, pick_mode);
        if (!any) pick_mode = 0;
        pick_note = !any ? " (OH_GEMM_TUNE_PICK: no such candidate, all eligible)"
                         : pick_mode == 1 ? " (OH_GEMM_TUNE_PICK=extra)" : " (OH_GEMM_TUNE_PICK=splitk)";
    }
    // The heuristic's first choice stays unless another is at least 2% faster (timing noise).
    int best_i = -1;
    for (int i = 0; ok && i < (int)c.size(); i++)
        if (eligible(i, pick_mode) && (best_i < 0 || c[i].t < (best_i == 0 ? 0.98f : 1.f) * c[best_i].t)) best_i = i;
    // A minimum over a few single runs can flatter a candidate: a winner other
    // than the heuristic's first must also be >= 2% faster in the median of
    // kConfirmRuns runs of each, interleaved; else the heuristic's first stays.
    if (ok && best_i > 0 && !pick_mode && c[0].state == kCandOk) {
        std::vector<float> tb, t0;
        for (int r = 0; ok && r < kConfirmRuns; r++) {
            float a, b;
            if (!time_one(best_i, &a) || !time_one(0, &b)) break;
            tb.push_back(a);
            t0.push_back(b);
        }
        if ((int)tb.size() == kConfirmRuns) {
            std::sort(tb.begin(), tb.end());
            std::sort(t0.begin(), t0.end());
            c[best_i].t_confirm = tb[kConfirmRuns / 2];
            c[0].t_confirm = t0[kConfirmRuns / 2];
            if (!(c[best_i].t_confirm < 0.98f * c[0].t_confirm)) {
                pick_note = " (not confirmed in the median: the heuristic's first stays)";
                best_i = 0;
            }
        } else if (ok) {
            best_i = c[0].state == kCandOk ? 0 : best_i; // the challenger failed to run again
        }
    }
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaStreamSynchronize(stream);
    cudaFree(scratch);
    if (vbuf) cudaFree(vbuf);
    cudaGetLastError();
    if (verbose >= 1)
        print_tuning(k, beta, c, ok ? best_i : -1, rejected, verbose, pick_note,
                     std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t_start).count());
    if (!ok || best_i < 0) return false;
    p->algo = c[best_i].algo;
    p->ws = c[best_i].ws;
    return true;
}

// The handle of `dev` and the workspace of (dev, stream), created on first use (g_mu held).
int get_context(int dev, cudaStream_t stream, void **ws) {
    if (!g_handles[dev]) OHC_CUBLAS(cublasLtCreate(&g_handles[dev]));
    for (const Workspace &w : g_ws)
        if (w.dev == dev && w.stream == stream) {
            *ws = w.ptr;
            return OH_CUDA_OK;
        }
    void *p = nullptr;
    OHC_CUDA(cudaMalloc(&p, kWorkspaceBytes));
    g_ws.push_back(Workspace{dev, stream, p});
    *ws = p;
    return OH_CUDA_OK;
}

int gemm_launch(void *C, int c_dtype, const uint16_t *A, const uint16_t *B, int M, int N, int K, int ta, int tb,
                float alpha, float beta, int lda, int ldb, int ldc, cudaStream_t stream) {
    int dev = 0;
    OHC_CUDA(cudaGetDevice(&dev));
    if (dev < 0 || dev >= 64) OHC_UNSUPPORTED("device index >= 64");
    GemmKey key{dev, M, N, K, ta, tb, c_dtype, lda, ldb, ldc, align_of(A), align_of(B), align_of(C)};
    GemmPlan plan;
    void *ws = nullptr;
    cublasLtHandle_t h;
    {
        std::lock_guard<std::mutex> lock(g_mu);
        OHC_TRY(get_context(dev, stream, &ws));
        h = g_handles[dev];
        auto it = g_plans.find(key);
        if (it != g_plans.end()) {
            plan = it->second;
        } else {
            GemmPlan np;
            std::vector<Cand> cands;
            OHC_TRY(make_plan(key, &np, &cands));
            const bool tune = tune_enabled();
            if (!tune && verbose_level() >= 1) {
                char buf[256];
                format_cand(cands[0], buf, sizeof buf);
                fprintf(stderr,
                        "oh_gemm: untuned (OH_GEMM_TUNE=0) M %d N %d K %d ta %d tb %d C %s: heuristic first %s\n", M,
                        N, K, ta, tb, c_dtype == OH_DTYPE_F32 ? "f32" : "bf16", buf);
            }
            if (!tune || tune_plan(&np, cands, h, key, A, B, alpha, beta, ws, stream)) {
                plan = g_plans.emplace(key, np).first->second;
            } else {
                // Untimed (graph capture, no scratch memory): use the heuristic's
                // choice for this call, keep nothing, tune on a later call.
                cublasStatus_t s = cublasLtMatmul(h, np.desc, &alpha, B, np.la, A, np.lb, &beta, C, np.lc, C,
                                                  np.lc, &np.algo, ws, np.ws, stream);
                destroy_plan(np);
                if (s != CUBLAS_STATUS_SUCCESS) {
                    oh_ops_report(__FILE__, __LINE__, "cublasLtMatmul", cublasLtGetStatusString(s));
                    return OH_CUDA_ERR_CUBLAS;
                }
                return OH_CUDA_OK;
            }
        }
    }
    // C' = op(A') op(B') with A' = B, B' = A (column-major view of the row-major product).
    OHC_CUBLAS(cublasLtMatmul(h, plan.desc, &alpha, B, plan.la, A, plan.lb, &beta, C, plan.lc, C, plan.lc, &plan.algo,
                              ws, plan.ws, stream));
    return OH_CUDA_OK;
}

} // namespace

extern "C" int oh_cuda_gemm(void *C, int c_dtype, const uint16_t *A, const uint16_t *B, int M, int N, int K,
                            int trans_a, int trans_b, float alpha, float beta, int lda, int ldb, int ldc,
                            oh_stream stream) {
    OHC_ARG(C && A && B);
    OHC_ARG(c_dtype == OH_DTYPE_BF16 || c_dtype == OH_DTYPE_F32);
    OHC_ARG(M >= 0 && N >= 0 && K >= 1);
    if (M == 0 || N == 0) return OH_CUDA_OK;
    trans_a = trans_a ? 1 : 0;
    trans_b = trans_b ? 1 : 0;
    if (lda == 0) lda = trans_a ? M : K;
    if (ldb == 0) ldb = trans_b ? K : N;
    if (ldc == 0) ldc = N;
    OHC_ARG(lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N) && ldc >= N);
    OHC_ARG(ohc_aligned(A, 2) && ohc_aligned(B, 2) && ohc_aligned(C, c_dtype == OH_DTYPE_F32 ? 4 : 2));
    return gemm_launch(C, c_dtype, A, B, M, N, K, trans_a, trans_b, alpha, beta, lda, ldb, ldc, ohc_stream(stream));
}

extern "C" int oh_cuda_linear_fwd(void *Y, int y_dtype, const uint16_t *X, const uint16_t *W, int T, int I, int O,
                                  oh_stream stream) {
    return oh_cuda_gemm(Y, y_dtype, X, W, T, O, I, 0, 1, 1.f, 0.f, 0, 0, 0, stream);
}

extern "C" int oh_cuda_linear_bwd_data(void *dX, int dx_dtype, const uint16_t *dY, const uint16_t *W, int T, int I,
                                       int O, int accumulate, oh_stream stream) {
    return oh_cuda_gemm(dX, dx_dtype, dY, W, T, I, O, 0, 0, 1.f, accumulate ? 1.f : 0.f, 0, 0, 0, stream);
}

extern "C" int oh_cuda_linear_bwd_weight(void *dW, int dw_dtype, const uint16_t *dY, const uint16_t *X, int T, int I,
                                         int O, oh_stream stream) {
    return oh_cuda_gemm(dW, dw_dtype, dY, X, O, I, T, 1, 0, 1.f, 1.f, 0, 0, 0, stream);
}

extern "C" void oh_cuda_gemm_release(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    for (auto &kv : g_plans) destroy_plan(kv.second);
    g_plans.clear();
    for (const Workspace &w : g_ws) cudaFree(w.ptr);
    g_ws.clear();
    for (int i = 0; i < 64; i++)
        if (g_handles[i]) {
            cublasLtDestroy(g_handles[i]);
            g_handles[i] = nullptr;
        }
}
