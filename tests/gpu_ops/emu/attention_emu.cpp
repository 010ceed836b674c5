// attention_emu.cpp: the attention kernels of kernels/cuda/attention.cu run on
// the CPU through kernels/cuda/dev/emu/cuda_emu.h (every CUDA thread a fiber;
// ldmatrix, mma.sync, shuffles and barriers emulated; shared memory poisoned
// with NaN; cp.async landing early or late), compared with the CPU reference.
// Checks the fragment layouts, masking, tiling and synchronisation without a
// GPU.  Built and run by tests/gpu_ops/emu/run_emu.sh.
#include "kernels/cuda/attention.h"

extern "C" {
#include "kernels/cpu/cpu_ops.h"
#include "util/util.h"
}

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

static int g_fail = 0;
static oh_rng g_rng;

static std::vector<float> randn(size_t n) {
    std::vector<float> v(n);
    for (auto &x : v) x = oh_bf16_to_f32(oh_f32_to_bf16((float)oh_rng_normal(&g_rng)));
    return v;
}
static std::vector<uint16_t> bf(const std::vector<float> &v) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); i++) h[i] = oh_f32_to_bf16(v[i]);
    return h;
}
template <typename T> static T *dev(const std::vector<T> &v) {
    T *p = nullptr;
    cudaMalloc(&p, v.size() * sizeof(T) + 16);
    memcpy(p, v.data(), v.size() * sizeof(T));
    return p;
}
static void cmp(const char *what, const uint16_t *g, const float *gf, const std::vector<float> &ref, double tol) {
    double num = 0, den = 0;
    size_t bad = 0;
    for (size_t i = 0; i < ref.size(); i++) {
        double x = g ? oh_bf16_to_f32(g[i]) : gf[i];
        if (!isfinite(x)) {
            bad++;
            continue;
        }
        num += (x - ref[i]) * (x - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    double rel = sqrt(num / (den > 0 ? den : 1));
    bool ok = bad == 0 && rel <= tol;
    if (!ok) g_fail++;
    printf("  %-6s rel %.3e nonfinite %zu  %s\n", what, rel, bad, ok ? "ok" : "FAIL");
}

static void run(std::vector<int> docs, int Hq, int Hkv, int D, double theta, emu::Policy pol) {
    emu::st().policy = pol;
    int T = 0, maxlen = 0;
    std::vector<int32_t> cu(1, 0);
    for (int L : docs) {
        T += L;
        cu.push_back(T);
        maxlen = L > maxlen ? L : maxlen;
    }
    int nd = (int)docs.size();
    printf("T %d docs %d Hq %d Hkv %d D %d theta %g policy %d\n", T, nd, Hq, Hkv, D, theta, (int)pol);
    double scale = 1.0 / sqrt((double)D);
    auto q = randn((size_t)T * Hq * D), k = randn((size_t)T * Hkv * D), v = randn((size_t)T * Hkv * D),
         dout = randn((size_t)T * Hq * D);
    std::vector<int32_t> pos(T);
    for (int i = 0; i < nd; i++)
        for (int t = cu[i]; t < cu[i + 1]; t++) pos[t] = 3 + t - cu[i];
    auto qr = q, kr = k;
    if (theta > 0) {
        cpu_rope_fwd_f32(qr.data(), pos.data(), T, Hq, D, theta);
        cpu_rope_fwd_f32(kr.data(), pos.data(), T, Hkv, D, theta);
    }
    std::vector<float> out(q.size()), lse((size_t)T * Hq), dq(q.size(), 0.f), dk(k.size(), 0.f), dv(v.size(), 0.f);
    cpu_attention_fwd_f32(out.data(), lse.data(), qr.data(), kr.data(), v.data(), cu.data(), nd, T, Hq, Hkv, D, scale);
    cpu_attention_bwd_f32(dq.data(), dk.data(), dv.data(), dout.data(), out.data(), lse.data(), qr.data(), kr.data(),
                          v.data(), cu.data(), nd, T, Hq, Hkv, D, scale);
    if (theta > 0) {
        cpu_rope_bwd_f32(dq.data(), pos.data(), T, Hq, D, theta);
        cpu_rope_bwd_f32(dk.data(), pos.data(), T, Hkv, D, theta);
    }
    uint16_t *gq = dev(bf(q)), *gk = dev(bf(k)), *gv = dev(bf(v)), *gdo = dev(bf(dout));
    int32_t *gcu = dev(cu), *gpos = dev(pos);
    std::vector<uint16_t> nan16(q.size(), 0xFFFF);
    std::vector<float> nanf(lse.size(), NAN);
    uint16_t *go = dev(nan16), *gdq = dev(nan16), *gdk = dev(std::vector<uint16_t>(k.size(), 0xFFFF)),
             *gdv = dev(std::vector<uint16_t>(v.size(), 0xFFFF));
    float *glse = dev(nanf);
    const int32_t *pp = theta > 0 ? gpos : nullptr;
    int s = oh_cuda_attention_fwd(go, glse, gq, gk, gv, gcu, nd, maxlen, T, Hq, Hkv, D, (float)scale, pp, (float)theta, 0);
    if (s) {
        printf("  fwd status %d: %s\n", s, oh_cuda_last_error());
        g_fail++;
        return;
    }
    cmp("out", go, nullptr, out, 1e-2);
    cmp("lse", nullptr, glse, lse, 3e-3);
    size_t wsb = oh_cuda_attention_bwd_workspace_bytes(T, Hq, D);
    void *ws = nullptr;
    cudaMalloc(&ws, wsb);
    memset(ws, 0xFF, wsb);
    s = oh_cuda_attention_bwd(gdq, gdk, gdv, gdo, go, glse, gq, gk, gv, gcu, nd, maxlen, T, Hq, Hkv, D, (float)scale, pp,
                              (float)theta, ws, wsb, 0);
    if (s) {
        printf("  bwd status %d: %s\n", s, oh_cuda_last_error());
        g_fail++;
        return;
    }
    cmp("dq", gdq, nullptr, dq, 2e-2);
    cmp("dk", gdk, nullptr, dk, 2e-2);
    cmp("dv", gdv, nullptr, dv, 2e-2);
    for (void *p : {(void *)gq, (void *)gk, (void *)gv, (void *)gdo, (void *)gcu, (void *)gpos, (void *)go, (void *)gdq,
                    (void *)gdk, (void *)gdv, (void *)glse, ws})
        cudaFree(p);
}

int main(int argc, char **argv) {
    oh_rng_seed(&g_rng, argc > 1 ? strtoull(argv[1], NULL, 10) : 7);
    // The tile variants of attention.cu (attn_fwd_variant, attn_bwd_variant): forward, backward.
    const char *variants[][2] = {{"wg", "wg"}, {"wg3", "8"}, {"4x32", "8"}, {"8", "4"}, {"4", "wg"}};
    for (auto &w : variants) {
        setenv("OH_ATTN_FWD_WARPS", w[0], 1);
        setenv("OH_ATTN_BWD_WARPS", w[1], 1);
        printf("---- forward %s, backward %s\n", w[0], w[1]);
        run({1, 70, 129}, 2, 1, 64, 0.0, emu::POLICY_FORWARD);
        run({130, 5}, 2, 2, 128, 10000.0, emu::POLICY_REVERSE);
        run({64, 65}, 3, 1, 64, 500000.0, emu::POLICY_RANDOM);
        run({200, 260}, 1, 1, 128, 0.0, emu::POLICY_RANDOM);
    }
    printf("%s\n", g_fail ? "FAILED" : "all ok");
    return g_fail ? 1 : 0;
}
