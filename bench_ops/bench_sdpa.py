#!/usr/bin/env python3
"""bench_sdpa.py: the PyTorch peers of bench_ops.cu, at the same shapes.

  * causal attention, 30 heads x 128, bf16, through torch SDPA with the flash
    (FA2) and cuDNN backends: fwd and fwd+bwd TFLOP/s at T 4096, 8192, 32768
    and 16 documents of 512 (as a batch of 16: SDPA has no packed varlen
    path; the FLOPs are the same), counting the causal half (fwd
    2*2*T^2*H*D/2, fwd+bwd 3.5x);
  * unfused lm_head + cross-entropy, F.cross_entropy((x @ W.T).float()) at
    N 8192, C 3840, V 100352: fwd+bwd time and peak memory beyond the inputs.

CUDA events after warm-up, median of the repetitions, random inputs.
Usage: python3 bench_ops/bench_sdpa.py [--quick]
"""
import argparse
import statistics

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def time_ms(fn, warm=3, reps=20):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def bench_attention(quick):
    H, D = 30, 128
    cases = [("T 4096", 1, 4096), ("T 8192", 1, 8192), ("T 32768", 1, 32768), ("16 docs x 512 (T 8192)", 16, 512)]
    print("\n== torch SDPA, causal, bf16, 30 heads x 128 (TFLOP/s counting the causal half; fwd+bwd = 3.5x fwd) ==")
    print(f"{'backend':8s} {'case':26s} {'fwd ms':>9s} {'fwd TF/s':>9s} {'f+b ms':>9s} {'f+b TF/s':>9s}")
    for name, backend in [("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]:
        for label, B, T in cases:
            if quick and B * T > 8192:
                continue
            reps = 5 if T >= 32768 else 20
            try:
                q, k, v = (torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                           for _ in range(3))
                dout = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)
                with sdpa_kernel(backend):
                    def fwd():
                        with torch.no_grad():
                            F.scaled_dot_product_attention(q, k, v, is_causal=True)

                    def fwdbwd():
                        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                        torch.autograd.grad(o, (q, k, v), dout)

                    tf = time_ms(fwd, reps=reps)
                    tfb = time_ms(fwdbwd, reps=reps)
                flops = B * 2.0 * 2.0 * T * T * H * D / 2.0
                print(f"{name:8s} {label:26s} {tf:9.3f} {flops / tf / 1e9:9.1f} {tfb:9.3f} {3.5 * flops / tfb / 1e9:9.1f}")
                del q, k, v, dout
            except Exception as e:  # a backend may refuse a shape
                print(f"{name:8s} {label:26s} failed: {type(e).__name__}: {str(e)[:80]}")
            torch.cuda.empty_cache()


def bench_ce():
    N, C, V = 8192, 3840, 100352
    print("\n== torch unfused lm_head + cross-entropy: F.cross_entropy((x @ W.T).float()), N 8192, C 3840, V 100352 ==")
    torch.cuda.empty_cache()
    x = torch.randn(N, C, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    W = (torch.randn(V, C, device="cuda", dtype=torch.bfloat16) * 0.05).requires_grad_(True)
    tgt = torch.randint(0, V, (N,), device="cuda")
    tgt[::10] = -100

    def fwd():
        with torch.no_grad():
            F.cross_entropy((x @ W.T).float(), tgt)

    def fwdbwd():
        loss = F.cross_entropy((x @ W.T).float(), tgt)
        gx, gW = torch.autograd.grad(loss, (x, W))
        return gx, gW

    tf = time_ms(fwd, reps=10)
    tfb = time_ms(fwdbwd, reps=10)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    g = fwdbwd()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    grads = sum(t.numel() * t.element_size() for t in g)
    GiB = 1024.0 ** 3
    print(f"fwd                          {tf:9.3f} ms")
    print(f"fwd + bwd (dx, dW bf16)      {tfb:9.3f} ms")
    print(f"peak memory beyond inputs    {peak / GiB:9.3f} GiB (gradients {grads / GiB:.3f} GiB of it)")
    print(f"  of which beyond inputs and gradients: {(peak - grads) / GiB:.3f} GiB")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", choices=["attn", "ce"])
    a = ap.parse_args()
    print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    if a.only in (None, "attn"):
        bench_attention(a.quick)
    if a.only in (None, "ce"):
        bench_ce()


if __name__ == "__main__":
    main()
