/* cpu_ops_f32.c: the float instance of the CPU reference ops (cpu_<op>_f32). */
#include "kernels/cpu/cpu_ops.h"

#define OH_CPU_R float
#define OH_CPU_F(name) cpu_##name##_f32
#include "kernels/cpu/cpu_ops_impl.h"
#undef OH_CPU_R
#undef OH_CPU_F
