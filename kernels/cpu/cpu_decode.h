/* cpu_decode.h: single-token ops of the recurrent decode path (generation):
 * conv windows and the attention KV cache carried token by token. The GDN
 * step is cpu_gdn_fwd_f32 with T = 1 and an initial/final state. */
#ifndef OH_CPU_DECODE_H
#define OH_CPU_DECODE_H

/* out[C] = silu(sum_j w[c,j] * window_j) where the window is the K-1 previous
 * inputs held in state[C, K-1] (oldest first) followed by x[C]; then the
 * state shifts by one to hold the newest K-1 inputs. */
void cpu_conv1d_silu_step_f32(float *out, float *state, const float *x, const float *w, int C, int K);

/* One query token q[Hq, D] against n cached keys/values k[n, Hkv, D],
 * v[n, Hkv, D] (the current token included): out[Hq, D]. */
void cpu_attention_decode_f32(float *out, const float *q, const float *k, const float *v, int n, int Hq, int Hkv, int D,
                              double scale);
#endif
