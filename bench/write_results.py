#!/usr/bin/env python3
"""write_results.py: render bench/RESULTS.md from the logs of one GPU run.

Reads the folders that scripts/gpu_ops_check.sh (--ops: test_ops.txt,
bench_ops.txt, bench_sdpa.txt, gpu.txt, commit.txt) and scripts/gpu_check.sh
(--gdn: test_gdn.txt, bench_gdn.txt, bench_gdn.tsv, bench_fla_gdn.txt, gpu.txt)
wrote, and prints one Markdown page: per target of docs/PERF.md a table with
our number, the peer's number from the same run, the ratio, the target and
whether it is met.  A missing file or section becomes a line saying so; the
script does not stop on it.  Standard library only.

    python3 bench/write_results.py --ops out/bench/gpu_ops --gdn out/bench/gdn \
        [--tokenizer bench/RESULTS_tokenizer.md] [--out bench/RESULTS.md]

--ops may be given more than once: each file is taken from the first folder
that has it (so an older run can supply a peer file the newer one lacks; the
page then says which file came from where).  --sdpa FILE names the SDPA peer
log directly.  The page goes to stdout, and to --out when given.  The commit
comes from --commit, else $OH_COMMIT, else commit.txt when it holds a hash,
else git at the time of writing (marked as such)."""
import argparse
import datetime
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H100_BF16_DENSE_TFLOPS = 989.0  # datasheet, dense bf16 tensor cores (H100 SXM)
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?nan|[-+]?inf"
MISSING = "—"


# ---------------------------------------------------------------- helpers
def num(s):
    """float of s, or None for nan/inf/garbage."""
    try:
        x = float(s)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def f(x, nd=2, suffix=""):
    return MISSING if x is None else f"{x:.{nd}f}{suffix}"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def pct(a, b):
    r = ratio(a, b)
    return None if r is None else 100 * r


def rx(x, nd=2):
    return MISSING if x is None else f"{x:.{nd}f}x"


def verdict(ok):
    return "not measured" if ok is None else ("met" if ok else "**not met**")


def read(path):
    if not path:
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def find(dirs, name):
    for d in dirs:
        p = os.path.join(d, name)
        if os.path.isfile(p):
            return p
    return None


def sections(text):
    """{title: [lines]} for the '== title ==' sections of a log."""
    out, cur = {}, None
    for line in (text or "").splitlines():
        m = re.match(r"^== (.*?) ==\s*$", line)
        if m:
            cur = m.group(1)
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def section(secs, prefix):
    for k, v in secs.items():
        if k.startswith(prefix):
            return k, v
    return None, None


def norm(s):
    return re.sub(r"\s+", " ", s.strip())


def rel(path):
    if not path:
        return MISSING
    try:
        r = os.path.relpath(path, ROOT)
    except ValueError:
        return path
    return path if r.startswith("..") else r


# ---------------------------------------------------------------- parsers
def error_lines(text):
    """The lines of a Python log that say what went wrong (the last line of a traceback, '(x failed)')."""
    out = []
    for l in (text or "").splitlines():
        s = l.strip()
        if re.match(r"^[A-Za-z_.]*(Error|Exception|Interrupt)\b", s) or re.match(r"^\(\S+ failed\)$", s) or \
                s.startswith(("FLA not importable", "no fla/")):
            out.append(s if len(s) <= 240 else s[:240] + "...")
    return list(dict.fromkeys(out))


def parse_gpu(text):
    """gpu.txt (nvidia-smi csv) -> dict, or None."""
    lines = [l for l in (text or "").splitlines() if l.strip()]
    for i, l in enumerate(lines):
        if l.startswith("name,") and i + 1 < len(lines):
            cols = [c.strip() for c in lines[i + 1].split(",")]
            keys = ["name", "driver", "clock", "max_clock", "temp"]
            return dict(zip(keys, cols))
    return None


def device_line(text):
    for l in (text or "").splitlines():
        if l.startswith("device:"):
            return l[len("device:"):].strip()
    return None


def parse_bench_ops(text):
    secs = sections(text)
    res = {"gemm": None, "attn": None, "ce": None, "device": device_line(text)}
    title, lines = section(secs, "cuBLASLt GEMMs")
    if lines is not None:
        g = {"ref": None, "rows": [], "notes": []}
        pat = re.compile(rf"^(?P<name>.*?\S)\s+(?P<M>\d+)\s+(?P<N>\d+)\s+(?P<K>\d+)\s+(?P<ms>{NUM})\s+(?P<tf>{NUM})\s+"
                         rf"(?P<pct>{NUM})%\s*$")
        for l in lines:
            m = pat.match(l)
            if m:
                row = {"name": norm(m["name"]), "M": int(m["M"]), "N": int(m["N"]), "K": int(m["K"]),
                       "ms": num(m["ms"]), "tf": num(m["tf"]), "pct": num(m["pct"])}
                if row["name"].startswith("reference"):
                    g["ref"] = row
                else:
                    g["rows"].append(row)
            elif l.startswith("GEMM summary"):
                g["summary"] = l.strip()
            elif l.strip() and not l.startswith("shape"):
                g["notes"].append(l.strip())
        res["gemm"] = g
    title, lines = section(secs, "attention")
    if lines is not None:
        pat = re.compile(rf"^(?P<case>.*?\S)\s+(?P<w>\S+)\s+(?P<T>\d+)\s+(?P<fms>{NUM})\s+(?P<ftf>{NUM})\s+"
                         rf"(?P<bms>{NUM})\s+(?P<btf>{NUM})\s+(?P<bwd>{NUM})\s*$")
        rows = []
        for l in lines:
            m = pat.match(l)
            if m:
                rows.append({"case": norm(m["case"]), "variant": m["w"], "T": int(m["T"]), "fwd_ms": num(m["fms"]),
                             "fwd_tf": num(m["ftf"]), "fb_ms": num(m["bms"]), "fb_tf": num(m["btf"])})
        res["attn"] = rows
    title, lines = section(secs, "fused linear + cross-entropy")
    if lines is not None:
        ce = {"title": title}
        for key, p in [("fwd_ms", rf"^fwd \(.*?\)\s+({NUM}) ms"), ("fb_ms", rf"^fwd \+ bwd .*?\s({NUM}) ms"),
                       ("workspace", rf"^workspace\s+({NUM}) GiB"),
                       ("in_use", rf"^device memory in use for the op\s+({NUM}) GiB"),
                       ("extra", rf"of which beyond inputs and gradients:\s*({NUM}) GiB")]:
            for l in lines:
                m = re.search(p, l.strip())
                if m:
                    ce[key] = num(m.group(1))
                    break
        m = re.search(r"N (\d+), C (\d+), V (\d+)", title)
        if m:
            ce["N"], ce["C"], ce["V"] = (int(x) for x in m.groups())
        res["ce"] = ce
    return res


def parse_sdpa(text):
    secs = sections(text)
    res = {"attn": None, "ce": None, "device": device_line(text), "problems": []}
    title, lines = section(secs, "torch SDPA")
    if lines is not None:
        pat = re.compile(rf"^(?P<b>flash|cudnn)\s+(?P<case>.*?\S)\s+(?P<fms>{NUM})\s+(?P<ftf>{NUM})\s+(?P<bms>{NUM})\s+"
                         rf"(?P<btf>{NUM})\s*$")
        rows = {}
        for l in lines:
            m = pat.match(l)
            if m:
                rows[(m["b"], norm(m["case"]))] = {"fwd_ms": num(m["fms"]), "fwd_tf": num(m["ftf"]),
                                                   "fb_ms": num(m["bms"]), "fb_tf": num(m["btf"])}
            else:
                m = re.match(r"^(flash|cudnn)\s+(.*?\S)\s+failed: (.*)$", l)
                if m:
                    rows[(m.group(1), norm(m.group(2)))] = {"failed": m.group(3)}
        res["attn"] = rows
    title, lines = section(secs, "torch unfused")
    if lines is not None:
        ce = {"title": title}
        for key, p in [("fwd_ms", rf"^fwd\s+({NUM}) ms"), ("fb_ms", rf"^fwd \+ bwd .*?\s({NUM}) ms"),
                       ("peak", rf"^peak memory beyond inputs\s+({NUM}) GiB"),
                       ("extra", rf"of which beyond inputs and gradients:\s*({NUM}) GiB")]:
            for l in lines:
                m = re.search(p, l.strip())
                if m:
                    ce[key] = num(m.group(1))
                    break
        res["ce"] = ce
    res["problems"] = error_lines(text)
    return res


def parse_bench_gdn(text):
    res = {"device": device_line(text), "rows": [], "profiles": {}, "notes": []}
    lines = (text or "").splitlines()
    prof_at = None
    for i, l in enumerate(lines):
        if l.startswith("per kernel"):
            prof_at = i
            break
        parts = [p.strip() for p in l.split("|")]
        if len(parts) >= 6 and not parts[0].startswith("shape"):
            head = parts[0].split()
            a, b, c = parts[1].split(), parts[2].split(), parts[3].split()
            if len(head) < 2 or len(a) < 3 or len(b) < 3:
                continue
            res["rows"].append({
                "name": head[0], "T": int(head[1]) if head[1].isdigit() else None,
                "fwd_ms": num(a[0]), "fwd_tf": num(a[2]), "fb_ms": num(b[0]), "fb_tf": num(b[2]),
                "perf_fla_fb": num(c[0]) if c else None,
                "byte_floor": num(parts[4].split()[0]) if parts[4].split() else None,
                "flop_floor": num(parts[5].split()[0]) if parts[5].split() else None})
        elif l.startswith(("FLA f+b:", "usage", "bench_gdn")) or "non-finite" in l or "returned" in l:
            res["notes"].append(l.strip())
    if prof_at is not None:
        names = {r["name"] for r in res["rows"]}
        cur = None
        for l in lines[prof_at + 1:]:
            s = l.strip()
            if not s:
                cur = None
                continue
            if s in names or re.match(r"^\d+x\d+$|^\d+docs/\d+$", s):
                cur = s
                res["profiles"][cur] = []
            elif cur is not None:
                res["profiles"][cur].append(l.rstrip())
    return res


def parse_gdn_tsv(text):
    rows = {}
    for l in (text or "").splitlines():
        fs = l.rstrip("\n").split("\t")
        if len(fs) < 7:
            continue
        kv = dict(x.split("=", 1) for x in fs[3:] if "=" in x)
        rows[fs[2]] = {"date": fs[0], "gpu": fs[1], "fwd_ms": num(kv.get("fwd_ms")), "fb_ms": num(kv.get("fb_ms")),
                       "fwd_tf": num(kv.get("fwd_tflops")), "fb_tf": num(kv.get("fb_tflops")),
                       "T": int(kv["T"]) if kv.get("T", "").isdigit() else None}
    return rows


def parse_fla(text):
    res = {"rows": {}, "guard": None, "device": None, "problems": [], "fails": {}}
    for l in (text or "").splitlines():
        s = l.strip()
        if s.startswith("FLA Hopper backward guard:"):
            res["guard"] = s
        elif s.startswith("device:"):
            res["device"] = s[len("device:"):].strip()
        elif s.count("|") == 3 and not s.startswith("shape"):
            p = [x.split() for x in s.split("|")]
            if len(p[0]) >= 1 and len(p[1]) >= 2:
                res["rows"][p[0][0]] = {"fwd_ms": num(p[1][0]), "fb_ms": num(p[1][1]),
                                        "ours_fwd": num(p[2][0]) if len(p[2]) >= 2 else None,
                                        "ours_fb": num(p[2][1]) if len(p[2]) >= 2 else None}
        elif s.startswith("(") and "failed" in s:
            m = re.match(r"^\((\S+): (.*?)\)?$", s)
            msg = m.group(2) if m else s
            if len(msg) > 220:
                msg = msg[:220] + "..."
            res["fails"].setdefault(msg, []).append(m.group(1) if m else "?")
    res["problems"] = error_lines(text)
    for msg, names in res["fails"].items():
        res["problems"].append(f"{', '.join(names)}: {msg}")
    if not res["rows"] and not res["problems"]:
        tail = [l.strip() for l in (text or "").splitlines() if l.strip()]
        res["problems"] = tail[-3:]
    return res


def parse_test_gdn(text):
    res = {"summary": None, "cases": 0, "checks": 0, "fails": [], "errors": []}
    case = None
    for l in (text or "").splitlines():
        s = l.strip()
        m = re.match(r"^(PASS|FAIL): (\d+) failures?", s)
        if m:
            res["summary"] = s
            continue
        m = re.match(r"^\[([^\]]+)\]", s)
        if m:
            res["cases"] += 1
            case = m.group(1)
            continue
        m = re.search(r"\b(ok|FAIL)\b(\s*\(.*\))*\s*$", s)
        if m and not s.startswith("rule"):
            res["checks"] += 1
            if m.group(1) == "FAIL":
                res["fails"].append(f"[{case}] {s}")
        elif re.search(r"returned -?\d|non-finite|CUDA error|: error|Segmentation|Aborted", s):
            res["errors"].append(s)
    return res


def parse_test_ops(text):
    res = {"summary": None, "fails": [], "errors": []}
    for l in (text or "").splitlines():
        s = l.strip()
        if re.match(r"^\d+ checks, \d+ failed", s):
            res["summary"] = s
        elif re.search(r"\sFAIL\b", l):
            res["fails"].append(norm(s))
        elif "returned" in s and "precondition" not in s:
            res["errors"].append(s)
    return res


# ---------------------------------------------------------------- page
class Page:
    def __init__(self):
        self.lines = []
        self.summary = []  # [what, ours, peer, peer / ours or ours / peer, target, met] per target

    def add(self, *ls):
        self.lines.extend(ls)

    def table(self, header, rows):
        self.add("| " + " | ".join(header) + " |", "|" + "---|" * len(header))
        for r in rows:
            self.add("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
        self.add("")

    def missing(self, what, path_hint):
        self.add(f"_{what}: missing ({path_hint})._", "")

    def text(self):
        return "\n".join(self.lines).rstrip() + "\n"


def commit_of(args, dirs):
    if args.commit:
        return args.commit, "--commit"
    if os.environ.get("OH_COMMIT"):
        return os.environ["OH_COMMIT"], "$OH_COMMIT"
    seen = []
    for d in dirs:
        t = (read(os.path.join(d, "commit.txt")) or "").strip()
        if re.fullmatch(r"[0-9a-f]{7,40}", t):
            return t[:12], rel(os.path.join(d, "commit.txt"))
        if t:
            seen.append(t.splitlines()[0][:40])
    try:
        h = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                           timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        h, dirty = "", ""
    why = f"commit.txt says '{seen[0]}'" if seen else "no commit.txt"
    if re.fullmatch(r"[0-9a-f]{7,40}", h):
        return h + (" (+ uncommitted changes)" if dirty else ""), f"git when this page was written; {why}"
    return "unknown", why


def run_date(args, gdn_tsv, paths):
    if args.date:
        return args.date
    for r in gdn_tsv.values():
        if r.get("date"):
            return r["date"] + " UTC"
    ts = [os.path.getmtime(p) for p in paths if p and os.path.exists(p)]
    if ts:
        return datetime.datetime.fromtimestamp(max(ts), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC") + \
            " (log file time)"
    return "unknown"


def gpu_desc(gpus, devices):
    out = []
    for g in gpus:
        if g:
            d = g.get("name", "?")
            extra = [f"driver {g['driver']}"] if g.get("driver") else []
            if g.get("max_clock"):
                extra.append(f"max SM clock {g['max_clock']}")
            s = d + (f" ({', '.join(extra)})" if extra else "")
            if s not in out:
                out.append(s)
    if not out:  # no nvidia-smi table: the device lines of the benchmarks, name only
        out = list(dict.fromkeys(re.split(r"[;,(]", x)[0].strip() for x in devices if x))
    return "; ".join(out) if out else "unknown (no gpu.txt, no device line)"


def render_gdn(P, g, fla, tsv, test, paths, gemm_ref):
    P.add("## GDN: chunk_gated_delta_rule, H 30, K 96, V 192 (bf16 q/k/v, fp32 g/beta/state)", "")
    P.add("Target (docs/PERF.md): forward + backward at most half of FLA's time (FLA / ours >= 2.0x) at 1 x 8192 "
          "on H100, and correct on Hopper. The verdict is given per shape.", "")
    rows = g["rows"] if g else []
    if not rows and tsv:  # the table was lost but the TSV row survived
        rows = [{"name": k, "T": v["T"], "fwd_ms": v["fwd_ms"], "fb_ms": v["fb_ms"], "fwd_tf": v["fwd_tf"],
                 "fb_tf": v["fb_tf"], "perf_fla_fb": None, "byte_floor": None, "flop_floor": None}
                for k, v in tsv.items()]
    if g is None and not rows:
        P.missing("bench_gdn.txt", "the GDN benchmark did not run or its log is absent")
    elif not rows:
        P.add("_bench_gdn.txt has no timing rows (the benchmark failed?)._", "")
        for n in (g or {}).get("notes", [])[:5]:
            P.add(f"    {n}")
        P.add("")
    fla_rows = fla["rows"] if fla else {}
    same_run = bool(fla_rows)
    if rows:
        hdr = ["shape", "tokens", "ours fwd ms", "FLA fwd ms", "ours f+b ms", "FLA f+b ms", "FLA / ours f+b",
               "target f+b", "met"]
        out = []
        dagger = False
        worst = None  # (ratio, row, FLA f+b, mark) of the lowest FLA / ours among the other shapes
        for r in rows:
            fr = fla_rows.get(r["name"], {})
            fla_fwd, fla_fb, mark = fr.get("fwd_ms"), fr.get("fb_ms"), ""
            if fla_fb is None and r.get("perf_fla_fb"):
                fla_fb, mark, dagger = r["perf_fla_fb"], "†", True
            x = ratio(fla_fb, r["fb_ms"])
            ok = None if x is None else x >= 2.0
            if r["name"] == "1x8192":
                P.summary.append(["GDN fwd+bwd, 1 x 8192", f(r["fb_ms"], 3, " ms"), f"FLA {f(fla_fb, 3, ' ms')}{mark}",
                                  f"FLA / ours {rx(x)}", "<= 0.5x FLA", verdict(ok) + mark])
            elif x is not None and (worst is None or x < worst[0]):
                worst = (x, r, fla_fb, mark)
            out.append([r["name"], r["T"] if r["T"] else MISSING, f(r["fwd_ms"], 3), f(fla_fwd, 3),
                        f(r["fb_ms"], 3), f(fla_fb, 2 if mark else 3) + mark, rx(x),
                        f"<= {fla_fb / 2:.3f} ms{mark}" if fla_fb else MISSING, verdict(ok) + mark])
        if worst:
            x, r, fb, mark = worst
            P.summary.append([f"GDN fwd+bwd, worst other shape ({r['name']})", f(r["fb_ms"], 3, " ms"),
                              f"FLA {f(fb, 3, ' ms')}{mark}", f"FLA / ours {rx(x)}", "<= 0.5x FLA",
                              verdict(x >= 2.0) + mark])
        P.table(hdr, out)
        if not same_run:
            why = "; ".join((fla or {}).get("problems", [])[:2]) or "bench_fla_gdn.txt missing"
            P.add(f"FLA was not timed in this run ({why}).", "")
        if dagger:
            P.add("† FLA f+b from docs/PERF.md (H100, 2026-11-22, guard removed), as bench_gdn prints it: not this "
                  "run, because this run has no FLA forward + backward time for that shape.", "")
        if fla and fla.get("guard"):
            if fla.get("fails"):
                P.add("FLA refuses its own backward on Hopper with Triton < 3.7.1 (fla#640). bench_fla_gdn.txt tried "
                      "to disable that guard for timing, but FLA's backward still refused (below), so this run has "
                      "no FLA forward + backward time. It says:", "", f"> {fla['guard']}", "")
            elif "disabled" in fla["guard"]:
                P.add("FLA's Hopper backward guard (Triton < 3.7.1 gives wrong gradients, fla#640) was disabled for "
                      "timing only; FLA's gradients are not checked. bench_fla_gdn.txt says:", "",
                      f"> {fla['guard']}", "")
            else:
                P.add("FLA's Hopper backward guard was not disabled; bench_fla_gdn.txt says:", "",
                      f"> {fla['guard']}", "")
            if fla.get("device"):
                P.add(f"FLA run: {fla['device']}", "")
        elif same_run:
            P.add("FLA's Hopper backward guard: bench_fla_gdn.txt printed no guard line.", "")
        off = [k for k, v in fla_rows.items() for r in rows if r["name"] == k and v.get("ours_fb") and r["fb_ms"]
               and abs(v["ours_fb"] / r["fb_ms"] - 1) > 0.01]
        if off:
            P.add(f"Warning: the 'ours' columns of bench_fla_gdn.txt differ from bench_gdn.txt for {', '.join(off)}: "
                  "the two logs may not come from the same run.", "")
        if same_run and fla.get("problems"):
            P.add("FLA reported:", "")
            for p in fla["problems"]:
                P.add(f"- {p}")
            P.add("")

        # ceilings
        if gemm_ref:
            ceil, ceil_name = gemm_ref, f"cuBLASLt 8192^3 GEMM of the ops run, {gemm_ref:.1f} TFLOP/s"
        else:
            ceil, ceil_name = H100_BF16_DENSE_TFLOPS, "H100 dense bf16 datasheet, 989 TFLOP/s (no GEMM rate measured)"
        P.add("### GDN against the ceilings (forward + backward)", "")
        P.add("Floors as bench_gdn prints them: the matrix-product FLOPs of the chunked algorithm (full 64 x 64 tiles) "
              "at 700 TFLOP/s, and the bytes that must move once at 3.0 TB/s. Fraction = floor / measured. "
              f"TFLOP/s fraction against the {ceil_name}.", "")
        out = []
        for r in rows:
            out.append([r["name"], f(r["fb_ms"], 3), f(r["fwd_tf"], 1), f(r["fb_tf"], 1),
                        f(pct(r["fb_tf"], ceil), 1, "%"), f(r["flop_floor"], 3),
                        f(pct(r["flop_floor"], r["fb_ms"]), 1, "%"), f(r["byte_floor"], 3),
                        f(pct(r["byte_floor"], r["fb_ms"]), 1, "%")])
        P.table(["shape", "ours f+b ms", "fwd TFLOP/s", "f+b TFLOP/s", "f+b of GEMM ceiling", "FLOP floor ms",
                 "tensor-core fraction", "byte floor ms", "bandwidth fraction"], out)

    P.add("### GDN correctness (tests/gpu/test_gdn.cu)", "")
    if test is None:
        P.missing("test_gdn.txt", "the GDN test did not run")
    else:
        s = test["summary"] or "no PASS/FAIL line (the test stopped early?)"
        P.add((f"`{s}`" if test["summary"] else f"**{s}**") + f" ({test['cases']} cases, {test['checks']} checks against the CPU reference and the naive kernel)",
              "")
        ok = bool(test["summary"]) and test["summary"].startswith("PASS") and not test["fails"]
        P.summary.append(["GDN correctness (test_gdn)", s, "CPU reference, naive kernel", MISSING, "no failure",
                          verdict(ok)])
        for l in test["fails"][:15] + test["errors"][:5]:
            P.add(f"- {l}")
        if test["fails"] or test["errors"]:
            P.add("")
    for name in ("gdn_memcheck.txt", "sanitize_memcheck.txt", "sanitize_racecheck.txt", "sanitize_synccheck.txt"):
        t = read(paths.get(name))
        if t:
            summ = [l.strip().lstrip("= ").strip() for l in t.splitlines()
                    if re.search(r"(ERROR|LEAK|RACECHECK) SUMMARY|^(PASS|FAIL):", l)]
            P.add(f"compute-sanitizer ({name}): " + ("; ".join(summ) if summ else "no summary line"), "")

    P.add("### GDN per-kernel profile, 1 x 8192 (one forward + backward)", "")
    prof = (g or {}).get("profiles", {}).get("1x8192")
    if prof:
        P.add("```", *prof, "```", "")
    else:
        P.missing("per-kernel profile of 1x8192", "bench_gdn.txt has no 'per kernel' section for 1x8192")


def best(rows, key):
    rows = [r for r in rows if r.get(key) is not None]
    return max(rows, key=lambda r: r[key]) if rows else None


def render_attention(P, ops, sdpa, sdpa_note):
    P.add("## Attention: causal, bf16, 30 heads x 128, vs torch SDPA flash (FA2) and cuDNN", "")
    P.add("Target (docs/PERF.md): forward + backward at T 8192 above SDPA flash; aim at cuDNN. TFLOP/s count the "
          "causal half (fwd 2*2*T^2*H*D/2; fwd+bwd 3.5x). Ours: the best tile variant per row (variant in "
          "brackets: forward/backward variant of attention.cu: wg = wgmma warpgroups (the default both ways), else mma.sync warps: forward 4x32, 8 or 4, backward 8 or 4).", "")
    ours = (ops or {}).get("attn")
    peer = (sdpa or {}).get("attn")
    if ours is None:
        P.missing("attention section of bench_ops.txt", "bench_ops.txt absent or without it")
    if peer is None:
        P.missing("torch SDPA section of bench_sdpa.txt", "bench_sdpa.txt absent or without it")
    if sdpa_note:
        P.add(sdpa_note, "")
    if ours is None and peer is None:
        return
    cases = []
    for r in ours or []:
        if r["case"] not in cases:
            cases.append(r["case"])
    for (_, c) in (peer or {}):
        if c not in cases:
            cases.append(c)

    def peer_tf(backend, case, key):
        r = (peer or {}).get((backend, case))
        if r is None:
            return None, MISSING
        if "failed" in r:
            return None, "failed"
        return r.get(key), f(r.get(key), 1)

    for key, label in (("fb_tf", "forward + backward"), ("fwd_tf", "forward")):
        out = []
        for c in cases:
            mine = [r for r in (ours or []) if r["case"] == c]
            b = best(mine, key)
            v = b[key] if b else None
            fl, fls = peer_tf("flash", c, key)
            cu, cus = peer_tf("cudnn", c, key)
            row = [c, f"{f(v, 1)} [{b['variant']}]" if b else MISSING, fls, cus, rx(ratio(v, fl)), rx(ratio(v, cu))]
            if key == "fb_tf":
                if c == "T 8192":
                    P.summary.append(["attention fwd+bwd, T 8192", f(v, 1, " TFLOP/s"),
                                      f"SDPA flash {fls}, cuDNN {cus}" + (" (other run)" if sdpa_note else ""),
                                      f"ours / flash {rx(ratio(v, fl))}",
                                      "> flash (aim: cuDNN)",
                                      verdict(None if v is None or fl is None else v > fl)])
                    row.append(f"> flash: {verdict(None if v is None or fl is None else v > fl)}; "
                               f"cuDNN: {verdict(None if v is None or cu is None else v >= cu)}")
                else:
                    row.append(MISSING)
            out.append(row)
        hdr = ["case", "ours TFLOP/s", "flash TFLOP/s", "cuDNN TFLOP/s", "ours / flash", "ours / cuDNN"]
        if key == "fb_tf":
            hdr.append("target (T 8192)")
        P.add(f"**{label}**", "")
        P.table(hdr, out)
    for p in (sdpa or {}).get("problems", [])[:3]:
        P.add(f"- bench_sdpa: {p}")


def render_ce(P, ops, sdpa, sdpa_note):
    P.add("## Fused linear + cross-entropy vs unfused PyTorch", "")
    ce, pe = (ops or {}).get("ce"), (sdpa or {}).get("ce")
    if ce is None:
        P.missing("fused linear + cross-entropy section of bench_ops.txt", "bench_ops.txt absent or without it")
    if pe is None:
        P.missing("unfused cross-entropy section of bench_sdpa.txt", "bench_sdpa.txt absent or without it")
    if ce is None and pe is None:
        return
    ce, pe = ce or {}, pe or {}
    N, V = ce.get("N", 8192), ce.get("V", 100352)
    logits = N * V * 4 / 1024 ** 3
    P.add(f"Shape N {N}, C {ce.get('C', 3840)}, V {V}. Ours: `oh_cuda_fused_ce_fwd/bwd` (dh bf16, dW fp32), "
          "chunked over the vocabulary. Peer: `F.cross_entropy((x @ W.T).float())` (dx, dW bf16). "
          f"Target (docs/DESIGN.md): never the full logits in memory (fp32 [{N}, {V}] = {logits:.2f} GiB); "
          "docs/PERF.md sets no time target, the ratio is shown.", "")
    if sdpa_note:
        P.add(sdpa_note, "")
    extra_ok = None if ce.get("extra") is None else ce["extra"] < logits
    P.summary.append(["fused linear + CE, extra memory", f(ce.get('extra'), 3, " GiB"),
                      f"unfused {f(pe.get('extra'), 3, ' GiB')}" + (" (other run)" if sdpa_note else ""), f"unfused / ours {rx(ratio(pe.get('extra'), ce.get('extra')), 1)}",
                      f"< {logits:.2f} GiB (no full logits)", verdict(extra_ok)])
    P.summary.append(["fused linear + CE, fwd+bwd time", f(ce.get('fb_ms'), 3, " ms"),
                      f"unfused {f(pe.get('fb_ms'), 3, ' ms')}" + (" (other run)" if sdpa_note else ""), f"unfused / ours {rx(ratio(pe.get('fb_ms'), ce.get('fb_ms')))}",
                      "none set", MISSING])
    P.table(["", "ours (fused)", "PyTorch (unfused)", "PyTorch / ours", "target", "met"], [
        ["fwd ms", f(ce.get("fwd_ms"), 3), f(pe.get("fwd_ms"), 3), rx(ratio(pe.get("fwd_ms"), ce.get("fwd_ms"))),
         MISSING, MISSING],
        ["fwd + bwd ms", f(ce.get("fb_ms"), 3), f(pe.get("fb_ms"), 3), rx(ratio(pe.get("fb_ms"), ce.get("fb_ms"))),
         MISSING, MISSING],
        ["extra memory beyond inputs and gradients, GiB", f(ce.get("extra"), 3), f(pe.get("extra"), 3),
         rx(ratio(pe.get("extra"), ce.get("extra")), 1), f"< {logits:.2f} GiB", verdict(extra_ok)],
        ["workspace, GiB", f(ce.get("workspace"), 3), MISSING, MISSING, MISSING, MISSING],
    ])


def render_gemm(P, ops):
    P.add("## GEMMs at the 7B shapes (cuBLASLt, bf16 in, fp32 accumulate, T = 8192 tokens)", "")
    g = (ops or {}).get("gemm")
    if g is None or not g["rows"]:
        P.missing("GEMM section of bench_ops.txt", "bench_ops.txt absent, or without GEMM rows")
        return
    ref = g["ref"]["tf"] if g.get("ref") else None
    P.add(f"Peer: the 8192^3 GEMM of the same run, {f(ref, 1)} TFLOP/s. Target (docs/PERF.md): every 7B shape "
          ">= 85% of it.", "")
    out, worst = [], None
    for r in g["rows"]:
        p = pct(r["tf"], ref)
        p = r["pct"] if p is None else math.floor(p * 10 + 1e-9) / 10  # shown rounded down: 84.97 is 84.9, not 85.0
        if p is not None and (worst is None or p < worst[0]):
            worst = (p, r["name"])
        out.append([r["name"], f"{r['M']} x {r['N']} x {r['K']}", f(r["ms"], 3), f(r["tf"], 1), f(p, 1, "%"),
                    verdict(None if p is None else p >= 85)])
    P.table(["shape", "M x N x K", "ms", "TFLOP/s", "of 8192^3", ">= 85%"], out)
    P.summary.append(["GEMMs, worst 7B shape", f"{f(worst and worst[0], 1, '%')} of 8192^3",
                      f"8192^3 {f(ref, 1)} TFLOP/s", MISSING, ">= 85%", verdict(worst and worst[0] >= 85)])
    if worst:
        P.add(f"Worst: **{worst[1]}**, {worst[0]:.1f}% of 8192^3: target >= 85% {verdict(worst[0] >= 85)}.", "")
    for n in g["notes"]:
        P.add(f"- {n}")
    if g["notes"]:
        P.add("")


def render_tests_ops(P, test):
    P.add("## CUDA ops correctness (tests/gpu_ops/test_ops.cu)", "")
    if test is None:
        P.missing("test_ops.txt", "the ops test did not run")
        return
    P.add(f"`{test['summary']}`" if test["summary"] else "**no 'N checks, M failed' line (the test stopped early?)**", "")
    m = re.match(r"(\d+) checks, (\d+) failed", test["summary"] or "")
    P.summary.append(["CUDA ops correctness (test_ops)", test["summary"] or "no summary line", "CPU reference", MISSING,
                      "0 failed", verdict(bool(m) and m.group(2) == "0" and not test["fails"])])
    for l in test["fails"][:20] + test["errors"][:5]:
        P.add(f"- {l}")
    if test["fails"] or test["errors"]:
        P.add("")


def render_ops_sanitizer(P, dirs):
    """compute-sanitizer logs of scripts/gpu_ops_check.sh --sanitize (sanitize_<tool>[_<group>].txt)."""
    files = []
    for d in dirs:
        if os.path.isdir(d):
            files += sorted(os.path.join(d, n) for n in os.listdir(d) if n.startswith("sanitize_") and n.endswith(".txt"))
    if not files:
        P.add("compute-sanitizer on the ops: no sanitize_*.txt logs in this run (run with --sanitize).", "")
        return
    rows, clean, theirs_only = [], True, []
    for path in files:
        t = read(path) or ""
        summ = [l.strip().lstrip("= ").strip() for l in t.splitlines()
                if re.search(r"(ERROR|LEAK|RACECHECK) SUMMARY|checks, \d+ failed|^\(exit status", l)]
        ok = any(re.search(r"(ERROR SUMMARY: 0 errors|RACECHECK SUMMARY: 0 hazards)", l) for l in summ) and \
            not any(l.startswith("(exit status") for l in summ)
        # racecheck also instruments cuBLASLt's GEMM kernels (NVIDIA's TMA/wgmma pipelines,
        # nvjet_* and friends), whose barriers it cannot model: hazards there are listed
        # apart; the verdict is about our kernels, whose tests must also pass.
        places = re.findall(r"(?:Read|Write) access at (\S+?)\+0x", t)
        nvidia = re.compile(r"^(nvjet|sm\d+_xmma|cutlass|.*gemm|cublas)", re.I)
        theirs = [x for x in places if nvidia.match(x)]
        tests_ok = bool(re.search(r"\b\d+ checks, 0 failed", t))
        if not ok and places and len(theirs) == len(places) and tests_ok and "exit status 124" not in t:
            kernels = sorted(set(theirs))
            summ.append(f"every reported hazard is inside cuBLASLt ({len(kernels)} kernels, e.g. {kernels[0]}); "
                        "none in ours")
            ok = True
            theirs_only.append(os.path.basename(path)[len("sanitize_"):-4])
        clean = clean and ok
        rows.append([os.path.basename(path)[len("sanitize_"):-4], "; ".join(summ) or "no summary line", verdict(ok)])
    P.add("### compute-sanitizer on the ops", "")
    P.table(["tool / group", "summary", "clean"], rows)
    note = f" (hazards inside cuBLASLt only: {', '.join(theirs_only)})" if theirs_only else ""
    P.summary.append(["CUDA ops under compute-sanitizer",
                      f"{sum(r[2] == verdict(True) for r in rows)}/{len(rows)} logs clean{note}",
                      "memcheck, racecheck, synccheck", MISSING, "no error, no hazard", verdict(clean)])


def render_mixer(P, dirs):
    """scripts/gpu_mixer_check.sh: test_gdn_mixer.txt (checks + timing at T 8192), sanitize_*.txt."""
    P.add("## GDN mixer kernels: gates and q/k/v convs (tests/gpu/test_gdn_mixer.cu)", "")
    path = find(dirs, "test_gdn_mixer.txt")
    t = read(path)
    if t is None:
        P.missing("test_gdn_mixer.txt", "the mixer test did not run (scripts/gpu_mixer_check.sh)")
        return
    summ = next((l.strip() for l in t.splitlines() if re.match(r"\s*\d+ checks, \d+ failed", l)), None)
    m = re.match(r"(\d+) checks, (\d+) failed", summ or "")
    P.add(f"`{summ}`" if summ else "**no 'N checks, M failed' line (the test stopped early?)**", "")
    P.summary.append(["GDN gates + convs correctness", summ or "no summary line", "CPU reference", MISSING, "0 failed",
                      verdict(bool(m) and m.group(2) == "0")])
    timing = [l.rstrip() for l in t.splitlines() if re.match(r"\s*(\[bench|gates (fwd|bwd)|conv (fwd|bwd))", l)]
    if timing:
        P.add("Timing at the 7B shapes (memory-bound ops; GB/s = bytes that must move / time):", "", "```", *timing, "```", "")
    for d in dirs:
        for tool in ("memcheck", "racecheck"):
            st = read(os.path.join(d, f"sanitize_{tool}.txt")) if os.path.isdir(d) else None
            if st:
                summ2 = [l.strip().lstrip("= ").strip() for l in st.splitlines()
                         if re.search(r"(ERROR|RACECHECK) SUMMARY|checks, \d+ failed", l)]
                P.add(f"compute-sanitizer {tool} (--quick): " + ("; ".join(summ2) or "no summary line"), "")


def render_tokenizer(P, path):
    P.add("## Tokenizer", "")
    t = read(path)
    if t is None:
        P.missing("tokenizer results", rel(path) if path else "no --tokenizer")
        return
    link = os.path.basename(path)
    head = None
    lines = t.splitlines()
    for i, l in enumerate(lines):
        if l.startswith("|") and "ours" in l and i + 2 < len(lines) and lines[i + 2].startswith("|"):
            keys = [c.strip() for c in l.strip().strip("|").split("|")]
            vals = [c.strip() for c in lines[i + 2].strip().strip("|").split("|")]
            head = dict(zip(keys, vals))
            break
    if head:
        x = num(str(head.get("ratio", "")).rstrip("x"))
        P.summary.append(["tokenizer, one thread", f"{head.get('ours MB/s', '?')} MB/s",
                          f"HF tokenizers {head.get('HF tokenizers MB/s', '?')} MB/s", f"ours / HF {head.get('ratio', '?')}",
                          ">= 1x, same ids", verdict(None if x is None else x >= 1)])
        P.add(f"[{rel(path)}]({link}): {head.get('date', '?')}, {head.get('machine', '?')}, commit "
              f"{head.get('commit', '?')}: ours {head.get('ours MB/s', '?')} MB/s vs HF tokenizers "
              f"{head.get('HF tokenizers MB/s', '?')} MB/s, {head.get('ratio', '?')} (one thread). "
              f"Target: at least as fast as HF tokenizers on one core, same ids: {verdict(None if x is None else x >= 1)}"
              " (ids: the parity tests).", "")
    else:
        first = next((l.strip("# ").strip() for l in lines if l.strip()), "")
        P.add(f"[{rel(path)}]({link}): {first}", "")


def render(args):
    ops_dirs = args.ops or []
    gdn_dirs = args.gdn or []
    P = Page()
    paths = {}
    for n in ("test_ops.txt", "bench_ops.txt", "bench_sdpa.txt"):
        paths[n] = find(ops_dirs, n)
    if args.sdpa:
        paths["bench_sdpa.txt"] = args.sdpa if os.path.isfile(args.sdpa) else paths["bench_sdpa.txt"]
    for n in ("test_gdn.txt", "bench_gdn.txt", "bench_gdn.tsv", "bench_fla_gdn.txt", "gdn_memcheck.txt",
              "sanitize_memcheck.txt", "sanitize_racecheck.txt", "sanitize_synccheck.txt"):
        paths[n] = find(gdn_dirs, n)
    gpu_files = [find(ops_dirs, "gpu.txt"), find(gdn_dirs, "gpu.txt")]

    def load(name, parser):
        t = read(paths.get(name))
        return None if t is None else parser(t)

    ops = load("bench_ops.txt", parse_bench_ops)
    sdpa = load("bench_sdpa.txt", parse_sdpa)
    gdn = load("bench_gdn.txt", parse_bench_gdn)
    tsv = load("bench_gdn.tsv", parse_gdn_tsv) or {}
    fla = load("bench_fla_gdn.txt", parse_fla)
    tgdn = load("test_gdn.txt", parse_test_gdn)
    tops = load("test_ops.txt", parse_test_ops)

    date = run_date(args, tsv, [p for p in paths.values() if p])
    commit, commit_src = commit_of(args, ops_dirs + gdn_dirs)
    gpu = gpu_desc([parse_gpu(read(p)) for p in gpu_files],
                   [(ops or {}).get("device"), (gdn or {}).get("device"), (sdpa or {}).get("device")])

    sdpa_note = ""
    sp, bp = paths.get("bench_sdpa.txt"), paths.get("bench_ops.txt")
    if sp and bp and os.path.dirname(os.path.abspath(sp)) != os.path.dirname(os.path.abspath(bp)):
        sdpa_note = (f"Note: the PyTorch peer numbers come from {rel(sp)}, a different run folder than ours "
                     f"({rel(bp)}): same kind of machine, not the same run.")

    P.add("# GPU benchmark results", "")
    P.add("Written by `bench/write_results.py` from the logs of `scripts/gpu_bench_all.sh`; not edited by hand. "
          "Targets and peers: docs/PERF.md. Every peer number is from the same run unless a line says otherwise.", "")
    P.table(["date", "GPU", "commit"], [[date, gpu, f"{commit} ({commit_src})"]])
    if args.note:
        P.add("This run:", "")
        for n in args.note:
            P.add(f"- {n}")
        P.add("")
    head, P = P, Page()

    sections_ = [
        ("GDN", lambda: render_gdn(P, gdn, fla, tsv, tgdn, paths,
                                   (ops or {}).get("gemm") and ops["gemm"].get("ref") and ops["gemm"]["ref"]["tf"])),
        ("attention", lambda: render_attention(P, ops, sdpa, sdpa_note)),
        ("cross-entropy", lambda: render_ce(P, ops, sdpa, sdpa_note)),
        ("GEMMs", lambda: render_gemm(P, ops)),
        ("ops tests", lambda: render_tests_ops(P, tops)),
        ("ops sanitizer", lambda: render_ops_sanitizer(P, ops_dirs)),
        ("GDN mixer", lambda: render_mixer(P, args.mixer or [])),
        ("tokenizer", lambda: render_tokenizer(P, args.tokenizer)),
    ]
    for name, fn in sections_:
        try:
            fn()
        except Exception as e:  # a log in an unforeseen shape: say so, keep the rest of the page
            P.add("", f"_{name}: could not be rendered ({type(e).__name__}: {e})._", "")

    head.add("## Targets at a glance", "")
    if P.summary:
        head.table(["what", "ours", "peer", "ratio", "target", "met"], P.summary)
    else:
        head.add("_No target could be evaluated: the logs are missing._", "")
    head.add("Peers are from the same run unless marked: † docs/PERF.md, not this run; (other run) a log from "
             "another run folder on the same kind of machine.", "")
    head.lines.extend(P.lines)
    P = head
    P.add("## Logs read", "")
    rows = [[n, rel(p) if p else "missing"] for n, p in paths.items()
            if p or n in ("test_ops.txt", "bench_ops.txt", "bench_sdpa.txt", "test_gdn.txt", "bench_gdn.txt",
                          "bench_gdn.tsv", "bench_fla_gdn.txt")]
    rows += [["gpu.txt (ops, gdn)", ", ".join(rel(p) if p else "missing" for p in gpu_files)]]
    P.table(["file", "path"], rows)

    P.add("## How to reproduce", "")
    P.add("```",
          "# on the dev machine: build the GPU programs (git-ignored build folders)",
          "bash scripts/gpu_ops_check.sh --build && bash scripts/gpu_check.sh --build",
          "# FLA peer: a copy of fla-org/flash-linear-attention's fla/ folder at the repository root (git-ignored)",
          "# on the GPU machine (one H100), carrying build-gpuops, build-gdn and fla:",
          "OH_COMMIT=<commit of the tree> bash scripts/gpu_bench_all.sh      # [--quick]; logs and RESULTS.md in $OUT "
          "(default out/bench)",
          "# back here: the page and the raw logs",
          "cp $OUT/RESULTS.md bench/RESULTS.md",
          "cp -r $OUT/gpu_ops bench/runs/<date>-ops; cp -r $OUT/gdn bench/runs/<date>-gdn",
          "# re-render from kept logs",
          "python3 bench/write_results.py --ops bench/runs/<date>-ops --gdn bench/runs/<date>-gdn --out bench/RESULTS.md",
          "```", "")
    P.add(f"This page: `python3 bench/write_results.py {' '.join(sys.argv[1:])}`")
    return P.text()


def main():
    ap = argparse.ArgumentParser(description="Render bench/RESULTS.md from GPU benchmark logs.")
    ap.add_argument("--ops", action="append", metavar="DIR",
                    help="folder of scripts/gpu_ops_check.sh logs; repeat to fall back to older runs for missing files")
    ap.add_argument("--gdn", action="append", metavar="DIR", help="folder of scripts/gpu_check.sh logs; may repeat")
    ap.add_argument("--mixer", action="append", metavar="DIR",
                    help="folder of scripts/gpu_mixer_check.sh logs (GDN gates and convs); may repeat")
    ap.add_argument("--sdpa", metavar="FILE", help="bench_sdpa.txt to use when the --ops folders lack one")
    ap.add_argument("--tokenizer", default=os.path.join(ROOT, "bench", "RESULTS_tokenizer.md"), metavar="FILE")
    ap.add_argument("--commit", help="commit of the tree that was run (default: $OH_COMMIT, commit.txt, git)")
    ap.add_argument("--date", help="date of the run (default: bench_gdn.tsv, else the logs' file times)")
    ap.add_argument("--out", metavar="FILE", help="write the page here too")
    ap.add_argument("--note", action="append", default=[], metavar="TEXT",
                    help="a line for the page's 'This run' list (gpu_bench_all.sh: each part's exit status)")
    args = ap.parse_args()
    if args.sdpa and not os.path.isfile(args.sdpa):
        print(f"write_results.py: --sdpa {args.sdpa}: no such file", file=sys.stderr)
    # --sdpa is a fallback: an --ops folder's own bench_sdpa.txt comes first
    if args.sdpa and find(args.ops or [], "bench_sdpa.txt"):
        args.sdpa = None
    text = render(args)
    sys.stdout.write(text)
    if args.out:
        try:
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as e:
            print(f"write_results.py: cannot write {args.out}: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
