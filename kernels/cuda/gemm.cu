// gemm.cu: row-major GEMMs on cuBLASLt with cached descriptors and algorithms.
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/ops_common.cuh"

#include <cublasLt.h>

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
        cublasLtMatmulHeuristicResult_t res[4];
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
            s = cublasLtMatmulAlgoGetHeuristic(g_handles[k.dev], p.desc, p.la, p.lb, p.lc, p.lc, pref, 4, res, &nres);
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
#undef OHC_PLAN
    } while (0);
    if (status != OH_CUDA_OK) {
        destroy_plan(p);
        return status;
    }
    *out = p;
    return OH_CUDA_OK;
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
        auto it = g_plans.find(key);
        if (it == g_plans.end()) {
            GemmPlan np;
            OHC_TRY(make_plan(key, &np));
            it = g_plans.emplace(key, np).first;
        }
        plan = it->second;
        h = g_handles[dev];
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
