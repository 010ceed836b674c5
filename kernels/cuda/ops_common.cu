// ops_common.cu: status strings and the last-error text of the op entries.
#include "kernels/cuda/ops_common.cuh"

#include <stdio.h>

static thread_local char g_last_error[512];

void oh_ops_report(const char *file, int line, const char *expr, const char *why) {
    snprintf(g_last_error, sizeof g_last_error, "%s:%d: %s: %s", file, line, expr, why);
    fprintf(stderr, "%s\n", g_last_error);
}

extern "C" const char *oh_cuda_last_error(void) { return g_last_error; }

extern "C" const char *oh_cuda_status_str(int status) {
    switch (status) {
    case OH_CUDA_OK: return "ok";
    case OH_CUDA_ERR_ARG: return "invalid argument";
    case OH_CUDA_ERR_UNSUPPORTED: return "unsupported configuration";
    case OH_CUDA_ERR_CUDA: return "CUDA error";
    case OH_CUDA_ERR_CUBLAS: return "cuBLASLt error";
    case OH_CUDA_ERR_WORKSPACE: return "workspace too small";
    default: return "unknown status";
    }
}
