/* ops_common.h: what every CUDA op header shares: the status codes the
 * exported entries return, the dtype tags, and the stream type.
 *
 * Every op entry (`oh_cuda_<op>`) checks its preconditions and returns
 * OH_CUDA_OK (0) or one of the error codes below; on a failing CUDA or
 * cuBLASLt call it also prints "file:line: expression: reason" to stderr and
 * keeps the same text for oh_cuda_last_error().  Launches are asynchronous on
 * the given stream: a kernel that faults later is reported by the next
 * synchronising call, as usual with CUDA.
 *
 * Tensor conventions (as the CPU reference, kernels/cpu/cpu_ops.h):
 * token-major row-major, heads contiguous inside a token (q[T, H, D]);
 * linear weights [out, in]; bf16 tensors are passed as uint16_t pointers
 * (the raw bf16 bits); documents are given by cu_seqlens (device int32,
 * ndocs + 1 entries, 0 = c[0] < c[1] < ... < c[ndocs] = T). C headers never
 * see C++. */
#ifndef OH_CUDA_OPS_COMMON_H
#define OH_CUDA_OPS_COMMON_H
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA runtime's stream type, without its headers (NULL = default stream). */
typedef struct CUstream_st *oh_stream;

typedef enum oh_cuda_status {
    OH_CUDA_OK = 0,
    OH_CUDA_ERR_ARG = 1,         /* a precondition failed (NULL pointer, size, alignment) */
    OH_CUDA_ERR_UNSUPPORTED = 2, /* valid but not implemented (e.g. head dim 96) */
    OH_CUDA_ERR_CUDA = 3,        /* a CUDA runtime call or a launch failed */
    OH_CUDA_ERR_CUBLAS = 4,      /* a cuBLASLt call failed or found no algorithm */
    OH_CUDA_ERR_WORKSPACE = 5    /* the caller's workspace is too small */
} oh_cuda_status;

typedef enum oh_dtype {
    OH_DTYPE_BF16 = 0,
    OH_DTYPE_F32 = 1
} oh_dtype;

/* Static text for a status code. */
const char *oh_cuda_status_str(int status);
/* The message of the last failure seen by an op entry of this thread ("" if none). */
const char *oh_cuda_last_error(void);

#ifdef __cplusplus
}
#endif
#endif
