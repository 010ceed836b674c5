// gemm.cu: row-major GEMMs on cuBLASLt with cached descriptors and algorithms.
//
// Algorithm choice: cuBLASLt's heuristic is asked for up to kTuneAlgos
// candidates per shape; on first use each candidate is timed (after a warm-up,
// kTuneIters round-robin rounds between CUDA events, on the caller's real A and B, which
// are only read, and a scratch output buffer of C's size and stride, so that
// C is written once, by the real product, and beta = 1 accumulation is never
// disturbed) and the fastest is cached with the plan.  Tuning is skipped (the
// heuristic's first result is used, not cached) while the stream is being
// captured into a graph, when the scratch allocation fails, or when
// OH_GEMM_TUNE=0 is set in the environment.
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops_common.cuh"

#include <cublasLt.h>

#include <stdlib.h>

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
const int kTuneAlgos = 12; // heuristic candidates timed per shape
const int kTuneIters = 4;  // timed rounds over the candidates (after a warm-up); each keeps its minimum

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
    int ncand = 0; // heuristic candidates (timed on first use; algo = cand[0] until then)
    cublasLtMatmulAlgo_t cand[kTuneAlgos];
    size_t cand_ws[kTuneAlgos];
};

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

void destroy_plan(GemmPlan &p) {
    if (p.la) cublasLtMatrixLayoutDestroy(p.la);
    if (p.lb) cublasLtMatrixLayoutDestroy(p.lb);
    if (p.lc) cublasLtMatrixLayoutDestroy(p.lc);
    if (p.desc) cublasLtMatmulDescDestroy(p.desc);
    p = GemmPlan();
}

// Builds descriptors and asks the heuristic for the best algorithm (g_mu held).
int make_plan(const GemmKey &k, GemmPlan *out) {
    GemmPlan p;
    cudaDataType_t ct = k.ctype == OH_DTYPE_F32 ? CUDA_R_32F : CUDA_R_16BF;
    // Row-major C[Mr, Nr] = op(A)[Mr, K] op(B)[K, Nr] is, column-major,
    // C'[Nr, Mr] = op(A')[Nr, K] op(B')[K, Mr] with A' = the B buffer, B' = the A buffer.
    const int Mr = k.m, Nr = k.n, K = k.k;
    cublasOperation_t opa = k.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t opb = k.ta ? CUBLAS_OP_T : CUBLAS_OP_N;
    int status = OH_CUDA_OK;
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
        OHC_PLAN(cublasLtMatmulPreferenceCreate(&pref));
        uint64_t wsb = kWorkspaceBytes;
        uint32_t aa = (uint32_t)k.align_b, ab = (uint32_t)k.align_a, ac = (uint32_t)k.align_c;
        cublasLtMatmulHeuristicResult_t res[kTuneAlgos];
        int nres = 0;
        if ((s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                                      sizeof wsb)) == CUBLAS_STATUS_SUCCESS &&
            (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa,
                                                      sizeof aa)) == CUBLAS_STATUS_SUCCESS &&
            (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab,
                                                      sizeof ab)) == CUBLAS_STATUS_SUCCESS &&
            (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac,
                                                      sizeof ac)) == CUBLAS_STATUS_SUCCESS &&
            (s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac,
                                                      sizeof ac)) == CUBLAS_STATUS_SUCCESS)
            s = cublasLtMatmulAlgoGetHeuristic(g_handles[k.dev], p.desc, p.la, p.lb, p.lc, p.lc, pref, kTuneAlgos, res, &nres);
        cublasLtMatmulPreferenceDestroy(pref);
        if (s != CUBLAS_STATUS_SUCCESS) {
            oh_ops_report(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", cublasLtGetStatusString(s));
            status = OH_CUDA_ERR_CUBLAS;
            break;
        }
        if (nres < 1) {
            oh_ops_report(__FILE__, __LINE__, "cublasLtMatmulAlgoGetHeuristic", "no algorithm for this shape");
            status = OH_CUDA_ERR_CUBLAS;
            break;
        }
        p.algo = res[0].algo;
        p.ws = res[0].workspaceSize;
        for (int i = 0; i < nres; i++)
            if (res[i].state == CUBLAS_STATUS_SUCCESS && res[i].workspaceSize <= kWorkspaceBytes) {
                p.cand[p.ncand] = res[i].algo;
                p.cand_ws[p.ncand] = res[i].workspaceSize;
                p.ncand++;
            }
#undef OHC_PLAN
    } while (0);
    if (status != OH_CUDA_OK) {
        destroy_plan(p);
        return status;
    }
    *out = p;
    return OH_CUDA_OK;
}

bool tune_enabled() {
    const char *e = getenv("OH_GEMM_TUNE");
    return !(e && e[0] == '0');
}

// Times the plan's candidates on A, B and a scratch output like C (g_mu held)
// and keeps the fastest in p->algo.  Returns false when it could not time
// (the caller then uses the heuristic's first choice without caching it).
bool tune_plan(GemmPlan *p, cublasLtHandle_t h, const GemmKey &k, const void *A, const void *B, float alpha,
               float beta, void *ws, cudaStream_t stream) {
    if (p->ncand <= 1) return true;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &cap) != cudaSuccess || cap != cudaStreamCaptureStatusNone) {
        cudaGetLastError();
        return false;
    }
    const size_t esz = k.ctype == OH_DTYPE_F32 ? 4 : 2;
    const size_t cbytes = ((size_t)(k.m - 1) * k.ldc + k.n) * esz;
    void *scratch = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    if (cudaMalloc(&scratch, cbytes) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    bool ok = cudaMemsetAsync(scratch, 0, cbytes, stream) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess &&
              cudaEventCreate(&e1) == cudaSuccess;
    // Warm the GPU up (clocks) on the heuristic's first choice, then time the
    // candidates round-robin, kTuneIters rounds, so that drift in the clocks
    // hits every candidate alike; each keeps its minimum.
    float t[kTuneAlgos];
    bool usable[kTuneAlgos];
    for (int i = 0; i < p->ncand; i++) {
        t[i] = 3.0e38f;
        usable[i] = true;
    }
    for (int r = 0; ok && r < 4; r++)
        if (cublasLtMatmul(h, p->desc, &alpha, B, p->la, A, p->lb, &beta, scratch, p->lc, scratch, p->lc, &p->cand[0],
                           ws, p->cand_ws[0], stream) != CUBLAS_STATUS_SUCCESS)
            break;
    for (int r = 0; ok && r < kTuneIters; r++) {
        for (int i = 0; ok && i < p->ncand; i++) {
            if (!usable[i]) continue;
            cudaEventRecord(e0, stream);
            if (cublasLtMatmul(h, p->desc, &alpha, B, p->la, A, p->lb, &beta, scratch, p->lc, scratch, p->lc,
                               &p->cand[i], ws, p->cand_ws[i], stream) != CUBLAS_STATUS_SUCCESS) {
                usable[i] = false; // this candidate refuses the shape: skip it
                continue;
            }
            cudaEventRecord(e1, stream);
            float ms = 0.f;
            if (cudaEventSynchronize(e1) != cudaSuccess || cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
                ok = false;
                break;
            }
            t[i] = ms < t[i] ? ms : t[i];
        }
    }
    // The heuristic's first choice stays unless another is at least 2% faster (timing noise).
    int best_i = usable[0] ? 0 : -1;
    for (int i = 1; ok && i < p->ncand; i++)
        if (usable[i] && (best_i < 0 || t[i] < (best_i == 0 ? 0.98f : 1.f) * t[best_i])) best_i = i;
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaStreamSynchronize(stream);
    cudaFree(scratch);
    cudaGetLastError();
    if (!ok || best_i < 0) return false;
    p->algo = p->cand[best_i];
    p->ws = p->cand_ws[best_i];
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
            OHC_TRY(make_plan(key, &np));
            if (!tune_enabled() || tune_plan(&np, h, key, A, B, alpha, beta, ws, stream)) {
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
