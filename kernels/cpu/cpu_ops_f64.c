/* cpu_ops_f64.c: the double instance of the CPU reference ops (cpu_<op>_f64),
 * used by the finite-difference tests. */
#include "kernels/cpu/cpu_ops.h"

#define OH_CPU_R double
#define OH_CPU_F(name) cpu_##name##_f64
#include "kernels/cpu/cpu_ops_impl.h"
#undef OH_CPU_R
#undef OH_CPU_F
