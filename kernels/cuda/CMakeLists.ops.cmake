# kernels/cuda/CMakeLists.ops.cmake: the GPU op test program and benchmark of
# kernels/cuda/{gemm,norms,elementwise,adamw,cross_entropy,attention}.
# Included by the top-level CMakeLists.txt after the ohcuda target:
#     include(kernels/cuda/CMakeLists.ops.cmake)
# Neither program needs libarchive, PCRE2 or Criterion (they run on the GPU
# machine): they link ohcuda and the CPU reference ops alone.
if(OH_HAVE_CUDA AND TARGET ohcuda)
  # The kernels need sm_80+ instructions and are tuned for Hopper.  enable_language(CUDA)
  # defines CMAKE_CUDA_ARCHITECTURES (nvcc's default, 75) before the top level's
  # 90a default is reached, so without -DCMAKE_CUDA_ARCHITECTURES=90a the library
  # would hold sm_75 code: build ohcuda and the programs below for 90a then.
  set(OH_OPS_CUDA_ARCH ${CMAKE_CUDA_ARCHITECTURES})
  if(NOT CMAKE_CUDA_ARCHITECTURES MATCHES "(^|;)(8[0-9]|9[0-9]|1[0-9][0-9])")
    message(STATUS "CMakeLists.ops.cmake: CMAKE_CUDA_ARCHITECTURES='${CMAKE_CUDA_ARCHITECTURES}' has no sm_80+ target; ohcuda and the GPU op programs are built for 90a")
    set(OH_OPS_CUDA_ARCH 90a)
    set_property(TARGET ohcuda PROPERTY CUDA_ARCHITECTURES 90a)
  endif()
  # The CPU reference (the oracle) without the rest of ohcore; the GDN
  # helper's CMakeLists.gpu.cmake defines the same target when included first.
  if(NOT TARGET ohcpuref)
    file(GLOB OH_CPUREF_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cpu/*.c)
    add_library(ohcpuref STATIC ${OH_CPUREF_SOURCES} ${CMAKE_SOURCE_DIR}/util/util.c)
    target_include_directories(ohcpuref PUBLIC ${CMAKE_SOURCE_DIR} ${CBLAS_INCLUDE})
    target_link_libraries(ohcpuref PUBLIC ${BLAS_LIBRARIES} m)
  endif()

  file(GLOB OH_GPU_OPS_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/gpu_ops/*.cu)
  add_executable(oh_gpu_ops_tests ${OH_GPU_OPS_TEST_SOURCES})
  target_link_libraries(oh_gpu_ops_tests PRIVATE ohcuda ohcpuref)
  target_compile_options(oh_gpu_ops_tests PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  set_property(TARGET oh_gpu_ops_tests PROPERTY CUDA_ARCHITECTURES ${OH_OPS_CUDA_ARCH})

  file(GLOB OH_GPU_OPS_BENCH_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/bench_ops/*.cu)
  add_executable(oh_gpu_ops_bench ${OH_GPU_OPS_BENCH_SOURCES})
  target_link_libraries(oh_gpu_ops_bench PRIVATE ohcuda)
  target_compile_options(oh_gpu_ops_bench PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo>)
  set_property(TARGET oh_gpu_ops_bench PROPERTY CUDA_ARCHITECTURES ${OH_OPS_CUDA_ARCH})
endif()
