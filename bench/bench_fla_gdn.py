#!/usr/bin/env python3
"""bench_fla_gdn.py: the peer of bench/bench_gdn.cu.  Times flash-linear-attention's
chunk_gated_delta_rule (Triton) at the same shapes (Olmo-Hybrid-7B: H=30, K=96,
V=192, bf16, q/k l2norm in the kernel, g = logsigmoid(N(0,1)), beta = 2 sigmoid(N(0,1))):
forward, and forward + backward, CUDA events, 3 warm-up runs, median of 20.

FLA is not installed on the GPU machine: put a copy of its fla/ folder at the
repository root (git-ignored) and run from there:
    PYTHONPATH=$PWD python3 bench/bench_fla_gdn.py [--quick] [--shape NAME]... [--ours out/gdn/bench_gdn.tsv]
With --ours (the TSV bench_gdn --tsv wrote in the same run) it prints FLA / ours.

FLA refuses its own backward on Hopper with Triton < 3.7.1 (its results are
wrong there, fla#640).  For timing only, this script turns that guard off: it
sets every boolean attribute of fla.utils whose name contains "hopper" to False
before importing the op, and says which ones it changed.  FLA's gradients are
not used or checked here."""
import argparse
import os
import statistics
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1x8192 only")
    ap.add_argument("--shape", action="append", default=[],
                    help="only this shape (1x8192, 4x8192, 1x32768, 16docs/32768); may be repeated")
    ap.add_argument("--ours", help="TSV written by bench_gdn --tsv (same run) to compare with")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--profile", action="store_true",
                    help="also print FLA's per-kernel CUDA times (torch.profiler) for one fwd+bwd per shape")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    try:
        import fla.utils as fu
    except ImportError as e:
        print(f"FLA not importable ({e}); put its fla/ folder at the repository root and set PYTHONPATH")
        return 1
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    # The guard lives in the modules that test TRITON_ABOVE_3_7_1 next to the
    # "#640" message (fla/ops/common/chunk_o.py today); each imported its own
    # copy of the flag, so the flag is set in those modules only: nothing else
    # in FLA (kernel choice, tuning) changes.
    import inspect
    patched = []
    for name, mod in list(sys.modules.items()):
        if not name.startswith("fla.") or getattr(mod, "TRITON_ABOVE_3_7_1", True):
            continue
        try:
            src = inspect.getsource(mod)
        except (OSError, TypeError):
            continue
        if "#640" in src:
            mod.TRITON_ABOVE_3_7_1 = True
            patched.append(name)

    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
          f"triton {__import__('triton').__version__}; FLA from {os.path.dirname(fu.__file__)}")
    print("FLA Hopper backward guard: " + (f"disabled by setting TRITON_ABOVE_3_7_1 = True in {', '.join(patched)} "
                                          "(timing only: FLA's backward is wrong on Hopper with Triton < 3.7.1, fla#640)"
                                          if patched else "no guard found (unpatched)"))
    H, K, V = 30, 96, 192
    shapes = [("1x8192", 1, [8192]), ("4x8192", 4, [8192]), ("1x32768", 1, [32768])]
    # 16 documents of mixed lengths packed into 32768, the same lengths as bench_gdn.cu
    s, w = 12345, []
    for _ in range(16):
        s = (s * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        w.append(0.2 + (s >> 11) / 9007199254740992.0 * 1.8)
    lens, used = [], 0
    for i in range(16):
        l = 32768 - used if i == 15 else int(32768 * w[i] / sum(w))
        lens.append(l)
        used += l
    shapes.append(("16docs/32768", 1, lens))
    if args.quick:
        shapes = shapes[:1]
    if args.shape:
        known = [name for name, _, _ in shapes]
        for want in args.shape:
            if want not in known:
                print(f"--shape {want}: unknown shape (known: {', '.join(known)})")
                return 2
        shapes = [sh for sh in shapes if sh[0] in args.shape]

    ours = {}
    if args.ours and os.path.exists(args.ours):
        for line in open(args.ours):
            f = line.rstrip("\n").split("\t")
            if len(f) >= 7:
                kv = dict(x.split("=", 1) for x in f[3:] if "=" in x)
                ours[f[2]] = (float(kv.get("fwd_ms", "nan")), float(kv.get("fb_ms", "nan")))

    def timeit(fn, iters):
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        ts = []
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b))
        return statistics.median(ts)

    print(f"\n{'shape':13s} {'T':>6s} | {'FLA fwd':>8s} {'FLA f+b':>8s} | {'ours fwd':>8s} {'ours f+b':>8s} | "
          f"{'fwd x':>6s} {'f+b x':>6s}")
    for name, B, L in shapes:
        T = sum(L)
        torch.manual_seed(0)
        q = torch.randn(B, T, H, K, device=dev, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(B, T, H, K, device=dev, dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16, requires_grad=True)
        g = F.logsigmoid(torch.randn(B, T, H, device=dev, dtype=torch.float32)).requires_grad_(True)
        beta = (2 * torch.sigmoid(torch.randn(B, T, H, device=dev, dtype=torch.float32))).requires_grad_(True)
        do = torch.randn(B, T, H, V, device=dev, dtype=torch.bfloat16)
        cu = None
        if len(L) > 1:
            cu = torch.tensor([0] + [sum(L[:i + 1]) for i in range(len(L))], device=dev, dtype=torch.long)

        def fwd():
            with torch.no_grad():
                chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True, cu_seqlens=cu)

        def fwd_bwd():
            o, _ = chunk_gated_delta_rule(q, k, v, g, beta, use_qk_l2norm_in_kernel=True, cu_seqlens=cu)
            o.backward(do)

        tf = timeit(fwd, args.iters)
        try:
            tfb = timeit(fwd_bwd, args.iters)
        except Exception as e:  # the guard still refuses, or another failure
            print(f"  ({name}: backward failed: {type(e).__name__}: {str(e)[:200]})")
            tfb = float("nan")
        if args.profile:
            from torch.profiler import profile, ProfilerActivity
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    fwd_bwd()
                torch.cuda.synchronize()
            print(f"-- FLA per-kernel CUDA time, {name}, 5 x fwd+bwd (us per call = total / calls)")
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))
        of, ofb = ours.get(name, (float("nan"), float("nan")))
        print(f"{name:13s} {B * T:6d} | {tf:8.3f} {tfb:8.3f} | {of:8.3f} {ofb:8.3f} | {tf / of:6.2f} {tfb / ofb:6.2f}")
        del q, k, v, g, beta, do
        torch.cuda.empty_cache()
    print("\nx = FLA time / ours (ours from --ours, the same run); > 1 means ours is faster.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
