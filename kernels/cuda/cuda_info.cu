#include "kernels/cuda/cuda_backend.h"
#include <cuda_runtime.h>
#include <stdio.h>

extern "C" int oh_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) { cudaGetLastError(); return 0; }
    return n;
}

extern "C" int oh_cuda_device_describe(int dev, char *buf, size_t n) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess) { cudaGetLastError(); return -1; }
    snprintf(buf, n, "cuda:%d %s, sm_%d%d, %d SMs, %.1f GiB", dev, p.name, p.major, p.minor,
             p.multiProcessorCount, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return 0;
}
