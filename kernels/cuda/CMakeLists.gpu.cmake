# kernels/cuda/CMakeLists.gpu.cmake: the GPU test programs and benchmarks of
# the GDN kernels (kernels/cuda/gdn.*), and the CPU reference library they
# check against.  Included by the top-level CMakeLists.txt after the ohcuda
# target:
#     include(kernels/cuda/CMakeLists.gpu.cmake)
# None of these programs needs libarchive, PCRE2 or Criterion (the GPU machine
# lacks them): they link ohcuda and ohcpuref (kernels/cpu/*.c + util/util.c,
# BLAS and libm only).
#
# Targets
#   ohcpuref            CPU reference ops, static (shared with CMakeLists.ops.cmake)
#   oh_gpu_<name>       one program per tests/gpu/<name>.cu (each has its own main)
#   oh_gpu_tests        builds all of them
#   oh_<name>           one program per bench/<name>.cu
#   oh_gpu_bench        builds all of them
#   oh_gpu_gdn_dev      the kernel sandbox (kernels/cuda/dev/gdn_dev.cu: naive vs chunked)
#   oh_gdn_emu          (not in `all`; host compiler only, no GPU) tests/gpu/test_gdn.cu
#                       with kernels/cuda/gdn.cu under the CPU emulator
#                       (kernels/cuda/dev/emu): `oh_gdn_emu --small` checks the
#                       kernels' indexing, masking and synchronisation in CI.
# The GPU programs land in ${CMAKE_BINARY_DIR}/gpu-bin.
if(NOT TARGET ohcuda)
  message(STATUS "CMakeLists.gpu.cmake: no ohcuda target, GPU programs not built")
  return()
endif()

# The kernels use sm_90a instructions; keep 90a when the configured list lacks sm_80+.
set(OH_GDN_CUDA_ARCH ${CMAKE_CUDA_ARCHITECTURES})
if(NOT CMAKE_CUDA_ARCHITECTURES MATCHES "(^|;)(8[0-9]|9[0-9]|1[0-9][0-9])")
  set(OH_GDN_CUDA_ARCH 90a)
endif()

if(NOT TARGET ohcpuref)
  file(GLOB OH_CPUREF_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/kernels/cpu/*.c)
  add_library(ohcpuref STATIC ${OH_CPUREF_SOURCES} ${CMAKE_SOURCE_DIR}/util/util.c)
  target_include_directories(ohcpuref PUBLIC ${CMAKE_SOURCE_DIR} ${CBLAS_INCLUDE})
  target_link_libraries(ohcpuref PUBLIC ${BLAS_LIBRARIES} m)
endif()

function(oh_gdn_gpu_program target source)
  add_executable(${target} ${source})
  target_link_libraries(${target} PRIVATE ohcuda ohcpuref)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-lineinfo --expt-relaxed-constexpr -Xcompiler=-Wall,-Wextra>)
  set_target_properties(${target} PROPERTIES
    CUDA_ARCHITECTURES "${OH_GDN_CUDA_ARCH}"
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/gpu-bin)
endfunction()

file(GLOB OH_GPU_TEST_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/gpu/*.cu)
set(OH_GPU_TEST_TARGETS)
foreach(src ${OH_GPU_TEST_SOURCES})
  get_filename_component(stem ${src} NAME_WE)
  oh_gdn_gpu_program(oh_gpu_${stem} ${src})
  list(APPEND OH_GPU_TEST_TARGETS oh_gpu_${stem})
endforeach()
add_custom_target(oh_gpu_tests DEPENDS ${OH_GPU_TEST_TARGETS})

file(GLOB OH_GPU_BENCH_SOURCES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/bench/*.cu)
set(OH_GPU_BENCH_TARGETS)
foreach(src ${OH_GPU_BENCH_SOURCES})
  get_filename_component(stem ${src} NAME_WE)
  oh_gdn_gpu_program(oh_${stem} ${src})
  list(APPEND OH_GPU_BENCH_TARGETS oh_${stem})
endforeach()
add_custom_target(oh_gpu_bench DEPENDS ${OH_GPU_BENCH_TARGETS})

oh_gdn_gpu_program(oh_gpu_gdn_dev ${CMAKE_SOURCE_DIR}/kernels/cuda/dev/gdn_dev.cu)

# The GDN test under the CPU emulator: the .cu sources compiled as C++ by the
# host compiler (through wrapper files, so the sources keep their CUDA language
# in the other targets).
set(OH_GDN_EMU_DIR ${CMAKE_BINARY_DIR}/gdn_emu)
file(WRITE ${OH_GDN_EMU_DIR}/gdn_emu.cpp "#include \"kernels/cuda/gdn.cu\"\n")
file(WRITE ${OH_GDN_EMU_DIR}/test_gdn_emu.cpp "#include \"tests/gpu/test_gdn.cu\"\n")
add_executable(oh_gdn_emu EXCLUDE_FROM_ALL ${OH_GDN_EMU_DIR}/gdn_emu.cpp ${OH_GDN_EMU_DIR}/test_gdn_emu.cpp)
target_compile_definitions(oh_gdn_emu PRIVATE OH_EMU)
target_compile_options(oh_gdn_emu PRIVATE -include ${CMAKE_SOURCE_DIR}/kernels/cuda/dev/emu/cuda_emu.h
                       -U_FORTIFY_SOURCE -Wno-unknown-pragmas -Wno-unused-function)
target_link_libraries(oh_gdn_emu PRIVATE ohcpuref)
set_target_properties(oh_gdn_emu PROPERTIES CXX_STANDARD 17 RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/gpu-bin)
