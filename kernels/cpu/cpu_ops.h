/* cpu_ops.h: the CPU reference backend: every op of Olmo Hybrid, forward
 * and backward, in plain C.  It is the oracle every CUDA kernel and the model
 * are tested against, so it favours obviously-right code over speed (GEMMs go
 * through BLAS).
 *
 * Every op exists twice: `cpu_<op>_f32` (float, used by the model) and
 * `cpu_<op>_f64` (double, used by the finite-difference tests).  Both are
 * generated from one implementation (cpu_ops_impl.h).
 *
 * Conventions (STYLE.md):
 *  - argument order: outputs, saved statistics, inputs and weights, sizes;
 *  - activations are token-major row-major: x[T, C] is x[t*C + c];
 *    heads are contiguous inside a token: q[T, H, D] is q[(t*H + h)*D + d];
 *  - linear weights are PyTorch [out, in]; no biases;
 *  - documents: a packed stream of T tokens holds `ndocs` documents,
 *    cu_seqlens[0] = 0 < cu_seqlens[1] < ... < cu_seqlens[ndocs] = T.
 *    Nothing crosses a document boundary (attention, conv window, GDN state);
 *  - EVERY gradient accumulates (+=): input gradients and parameter
 *    gradients alike; callers zero the buffers.  A NULL gradient pointer means
 *    "not needed" and is skipped.
 */
#ifndef OH_CPU_OPS_H
#define OH_CPU_OPS_H

#include <stdint.h>
#include <stddef.h>

#define OH_CPU_R float
#define OH_CPU_F(name) cpu_##name##_f32
#include "kernels/cpu/cpu_ops_decl.h"
#undef OH_CPU_R
#undef OH_CPU_F

#define OH_CPU_R double
#define OH_CPU_F(name) cpu_##name##_f64
#include "kernels/cpu/cpu_ops_decl.h"
#undef OH_CPU_R
#undef OH_CPU_F

#endif
