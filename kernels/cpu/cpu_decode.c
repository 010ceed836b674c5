#include "kernels/cpu/cpu_decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cpu_conv1d_silu_step_f32(float *out, float *state, const float *x, const float *w, int C, int K) {
    for (int c = 0; c < C; c++) {
        float *s = state + (size_t)c * (K - 1);
        const float *wc = w + (size_t)c * K;
        double acc = (double)wc[K - 1] * x[c];
        for (int j = 0; j < K - 1; j++) acc += (double)wc[j] * s[j];
        for (int j = 0; j + 1 < K - 1; j++) s[j] = s[j + 1];
        if (K > 1) s[K - 2] = x[c];
        double a = acc;
        out[c] = (float)(a / (1.0 + exp(-a)));
    }
}

void cpu_attention_decode_f32(float *out, const float *q, const float *k, const float *v, int n, int Hq, int Hkv, int D,
                              double scale) {
    int group = Hq / Hkv;
    double *p = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    for (int h = 0; h < Hq; h++) {
        int kh = h / group;
        const float *qh = q + (size_t)h * D;
        double mx = -INFINITY;
        for (int s = 0; s < n; s++) {
            const float *ks = k + ((size_t)s * Hkv + kh) * D;
            double d = 0;
            for (int i = 0; i < D; i++) d += (double)qh[i] * ks[i];
            p[s] = d * scale;
            if (p[s] > mx) mx = p[s];
        }
        double z = 0;
        for (int s = 0; s < n; s++) { p[s] = exp(p[s] - mx); z += p[s]; }
        float *oh = out + (size_t)h * D;
        for (int i = 0; i < D; i++) {
            double acc = 0;
            for (int s = 0; s < n; s++) acc += p[s] * v[((size_t)s * Hkv + kh) * D + i];
            oh[i] = (float)(acc / z);
        }
    }
    free(p);
}
