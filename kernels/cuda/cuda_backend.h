/* cuda_backend.h: the C-visible entry points of the CUDA backend (built
 * when nvcc is found). C headers never see C++. */
#ifndef OH_CUDA_BACKEND_H
#define OH_CUDA_BACKEND_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif

/* Number of visible CUDA devices (0 when there is no driver or device). */
int oh_cuda_device_count(void);
/* One line describing device `dev` (name, SMs, memory) into buf. Returns 0 or -1. */
int oh_cuda_device_describe(int dev, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
