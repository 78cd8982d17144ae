"""Time and peak memory of attention against the length, on this machine (issue 14).

Run with ``nox -s bench-attention`` or ``python benchmarks/attention_cost.py``.
Every configuration runs in a fresh Python process
(:func:`attnlib.efficient.measure.measure`): the peak resident memory is reset
just before the measured call, and the time is the median of the calls after
it. One head of one sequence (B = 1, H = 1, Dh = 64), float32, one thread by
default. Sections:

1. forward pass, n = 512 ... 16384: naive attention (scores materialised),
   SDPA's math backend, SDPA's default CPU kernel (fused, flash-style) and
   attnlib's tiled attention; ratios against SDPA math and against naive.
   A configuration whose ``(n, n)`` matrices would take more than half the
   memory available is skipped, with a note;
2. training (forward + backward) memory of tiled against naive at a few
   lengths (the tiled backward recomputes the weights);
3. sliding window, n = 8192, w = 256: the band only against SDPA with a dense
   boolean mask;
4. linear attention (elu + 1) against softmax attention (SDPA default);
5. generation with a key/value cache for multi-head, grouped-query and
   multi-query attention (:class:`attnlib.transformer.DecoderLM` with
   ``num_kv_heads``): cache size in bytes and tokens per second.

Writes ``benchmarks/results/attention_cost.json``, ``.md`` (the tables) and
``.png`` (time and memory against n), prints the tables and checks the
issue's three targets (PASS/FAIL each; exit code 1 if one fails, unless
``--no-check``):

- the tiled forward's extra peak memory at n = 16384 at most 1/10 of naive's;
- its time within 2x of SDPA's math backend at n = 4096;
- the band-only window at least 4x faster than dense masking at n = 8192, w = 256.

Timings depend on the machine and on what else runs on it: read the ratios,
measured in the same run, rather than the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from attnlib.efficient.measure import estimate_naive_bytes, measure

ROOT = Path(__file__).resolve().parent
MAIN_METHODS = ("naive", "sdpa_math", "sdpa_default", "tiled")
DENSE = ("naive", "sdpa_math")  # methods that hold (n, n) matrices
MIB = 2**20


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (Linux), else 8 GiB."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30


def log(*args) -> None:
    print(*args, flush=True)


def forward_section(lengths, threads, repeats, notes) -> list[dict]:
    rows = []
    for n in lengths:
        for method in MAIN_METHODS:
            need = estimate_naive_bytes(n) if method in DENSE else 0
            if need > available_bytes() / 2:
                notes.append(
                    f"skipped {method} at n={n}: its (n, n) matrices need about "
                    f"{need / MIB:.0f} MiB, more than half the available memory"
                )
                log(notes[-1])
                continue
            reps = repeats if n <= 4096 else 1  # the measured call is the warm-up
            m = measure(method, n, threads=threads, repeats=reps)
            rows.append(m.as_dict())
            log(
                f"  forward {method:<13} n={n:<6} {m.seconds * 1e3:9.1f} ms "
                f"{m.extra_peak_bytes / MIB:9.1f} MiB"
            )
    return rows


def train_section(lengths, threads, notes) -> list[dict]:
    rows = []
    for n in lengths:
        for method in ("naive", "tiled"):
            if method == "naive" and estimate_naive_bytes(n, mode="train") > available_bytes() / 2:
                notes.append(f"skipped naive training at n={n}: not enough memory")
                continue
            m = measure(method, n, mode="train", threads=threads, repeats=1)
            rows.append(m.as_dict())
            log(
                f"  train   {method:<13} n={n:<6} {m.seconds * 1e3:9.1f} ms "
                f"{m.extra_peak_bytes / MIB:9.1f} MiB"
            )
    return rows


def window_section(n, window, threads, repeats) -> list[dict]:
    rows = []
    for method in ("band", "dense_window"):
        m = measure(method, n, window=window, threads=threads, repeats=repeats)
        rows.append(m.as_dict())
        log(
            f"  window  {method:<13} n={n} w={window} {m.seconds * 1e3:9.1f} ms "
            f"{m.extra_peak_bytes / MIB:9.1f} MiB"
        )
    return rows


def linear_section(lengths, threads, repeats) -> list[dict]:
    rows = []
    for n in lengths:
        for method in ("linear", "sdpa_default"):
            m = measure(method, n, threads=threads, repeats=repeats)
            rows.append(m.as_dict())
            log(
                f"  linear? {method:<13} n={n:<6} {m.seconds * 1e3:9.1f} ms "
                f"{m.extra_peak_bytes / MIB:9.1f} MiB"
            )
    return rows


def kv_cache_section(threads, prompt_len=512, new_tokens=64, batch=4) -> list[dict]:
    """KV cache bytes and generation speed for MHA, GQA and MQA (in this process)."""
    from attnlib.transformer import DecoderLM

    torch.set_num_threads(threads)
    rows = []
    heads, d_model, layers, vocab = 8, 512, 4, 1000
    for name, kv_heads in (("MHA", 8), ("GQA", 2), ("MQA", 1)):
        torch.manual_seed(0)
        try:
            model = DecoderLM(
                vocab,
                d_model,
                heads,
                layers,
                4 * d_model,
                dropout=0.0,
                max_len=prompt_len + new_tokens,
                num_kv_heads=kv_heads,
            ).eval()
        except TypeError as err:  # an attnlib without num_kv_heads
            log(f"  kv cache: DecoderLM has no num_kv_heads ({err}); section skipped")
            return []
        prompt = torch.randint(
            3, vocab, (batch, prompt_len), generator=torch.Generator().manual_seed(1)
        )
        times = []
        for _ in range(2):  # the first run is the warm-up
            cache = model.new_cache()
            with torch.no_grad():
                logits = model(prompt, cache)
                start = time.perf_counter()
                for _ in range(new_tokens):
                    token = logits[:, -1].argmax(-1, keepdim=True)
                    logits = model(token, cache)
                times.append(time.perf_counter() - start)
        kv_bytes = sum(c.nbytes for c in cache)
        params = sum(p.numel() for p in model.parameters())
        rows.append(
            {
                "attention": name,
                "num_heads": heads,
                "num_kv_heads": kv_heads,
                "cache_tokens": prompt_len + new_tokens,
                "batch": batch,
                "layers": layers,
                "kv_cache_bytes": kv_bytes,
                "tokens_per_s": batch * new_tokens / times[-1],
                "parameters": params,
            }
        )
        log(
            f"  kv      {name}: cache {kv_bytes / MIB:.1f} MiB, "
            f"{rows[-1]['tokens_per_s']:.0f} tokens/s"
        )
    return rows


def _find(rows, method, n, mode="forward"):
    for r in rows:
        if r["method"] == method and r["n"] == n and r["mode"] == mode:
            return r
    return None


def _fmt_ms(r):
    return "skipped" if r is None else f"{r['seconds'] * 1e3:.1f}"


def _fmt_mib(r):
    return "skipped" if r is None else f"{r['extra_peak_bytes'] / MIB:.1f}"


def _ratio(a, b, key):
    if a is None or b is None or not b[key]:
        return "–"
    return f"{a[key] / b[key]:.3g}"


def tables(res: dict) -> str:
    fwd, lengths = res["forward"], res["lengths"]
    out = [
        f"## Forward pass, time (ms) and extra peak memory (MiB); B=1, H=1, Dh=64, "
        f"float32, {res['threads']} thread(s)\n"
    ]
    out.append(
        "| n | "
        + " | ".join(f"{m} ms" for m in MAIN_METHODS)
        + " | "
        + " | ".join(f"{m} MiB" for m in MAIN_METHODS)
        + " |"
    )
    out.append("|" + "---|" * (1 + 2 * len(MAIN_METHODS)))
    for n in lengths:
        rs = [_find(fwd, m, n) for m in MAIN_METHODS]
        out.append(
            f"| {n} | "
            + " | ".join(_fmt_ms(r) for r in rs)
            + " | "
            + " | ".join(_fmt_mib(r) for r in rs)
            + " |"
        )
    out.append("\n## Ratios: time against SDPA math and against naive; memory against naive\n")
    out.append(
        "| n | naive/math | default/math | tiled/math | tiled/naive time | "
        "math/naive MiB | default/naive MiB | tiled/naive MiB |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    for n in lengths:
        nv, mt, df, tl = (_find(fwd, m, n) for m in MAIN_METHODS)
        out.append(
            f"| {n} | {_ratio(nv, mt, 'seconds')} | {_ratio(df, mt, 'seconds')} | "
            f"{_ratio(tl, mt, 'seconds')} | {_ratio(tl, nv, 'seconds')} | "
            f"{_ratio(mt, nv, 'extra_peak_bytes')} | {_ratio(df, nv, 'extra_peak_bytes')} | "
            f"{_ratio(tl, nv, 'extra_peak_bytes')} |"
        )
    if res["train"]:
        out.append("\n## Training (forward + backward): extra peak memory (MiB) and time (ms)\n")
        out.append("| n | naive MiB | tiled MiB | tiled/naive MiB | naive ms | tiled ms |")
        out.append("|---|---|---|---|---|---|")
        for n in sorted({r["n"] for r in res["train"]}):
            nv, tl = (
                _find(res["train"], "naive", n, "train"),
                _find(res["train"], "tiled", n, "train"),
            )
            out.append(
                f"| {n} | {_fmt_mib(nv)} | {_fmt_mib(tl)} | "
                f"{_ratio(tl, nv, 'extra_peak_bytes')} | {_fmt_ms(nv)} | {_fmt_ms(tl)} |"
            )
    if res["window"]:
        band, dense = res["window"]
        out.append(f"\n## Sliding window, n={band['n']}, w={band['window']}\n")
        out.append("| method | ms | extra MiB |")
        out.append("|---|---|---|")
        for r in (band, dense):
            out.append(f"| {r['method']} | {_fmt_ms(r)} | {_fmt_mib(r)} |")
        out.append(f"\ndense masked / band-only time: {_ratio(dense, band, 'seconds')}")
    if res["linear"]:
        out.append("\n## Linear attention (elu + 1) against softmax attention (SDPA default)\n")
        out.append(
            "| n | linear ms | softmax ms | softmax/linear time | linear MiB | softmax MiB |"
        )
        out.append("|---|---|---|---|---|---|")
        for n in sorted({r["n"] for r in res["linear"]}):
            li, sm = _find(res["linear"], "linear", n), _find(res["linear"], "sdpa_default", n)
            out.append(
                f"| {n} | {_fmt_ms(li)} | {_fmt_ms(sm)} | {_ratio(sm, li, 'seconds')} | "
                f"{_fmt_mib(li)} | {_fmt_mib(sm)} |"
            )
    if res["kv_cache"]:
        k0 = res["kv_cache"][0]
        out.append(
            f"\n## Generation with a KV cache: DecoderLM, {k0['layers']} layers, "
            f"{k0['num_heads']} query heads, batch {k0['batch']}, "
            f"{k0['cache_tokens']} tokens cached at the end\n"
        )
        out.append("| attention | KV heads | cache MiB | cache / MHA | tokens/s | speed / MHA |")
        out.append("|---|---|---|---|---|---|")
        for r in res["kv_cache"]:
            out.append(
                f"| {r['attention']} | {r['num_kv_heads']} | {r['kv_cache_bytes'] / MIB:.2f} | "
                f"{r['kv_cache_bytes'] / k0['kv_cache_bytes']:.3f} | {r['tokens_per_s']:.0f} | "
                f"{r['tokens_per_s'] / k0['tokens_per_s']:.2f} |"
            )
    if res["notes"]:
        out.append("\nNotes:\n")
        out.extend(f"- {note}" for note in res["notes"])
    return "\n".join(out) + "\n"


def check_targets(res: dict) -> list[tuple[str, bool | None, str]]:
    """The issue's three targets: (name, passed or None when not measured, detail)."""
    fwd, checks = res["forward"], []
    nv, tl = _find(fwd, "naive", 16384), _find(fwd, "tiled", 16384)
    if nv and tl:
        r = tl["extra_peak_bytes"] / nv["extra_peak_bytes"]
        checks.append(
            ("tiled extra peak memory <= 1/10 of naive's at n=16384", r <= 0.1, f"ratio {r:.4f}")
        )
    else:
        checks.append(
            ("tiled extra peak memory <= 1/10 of naive's at n=16384", None, "not measured")
        )
    mt, tl = _find(fwd, "sdpa_math", 4096), _find(fwd, "tiled", 4096)
    if mt and tl:
        r = tl["seconds"] / mt["seconds"]
        checks.append(("tiled time within 2x of SDPA math at n=4096", r <= 2.0, f"ratio {r:.2f}"))
    else:
        checks.append(("tiled time within 2x of SDPA math at n=4096", None, "not measured"))
    if res["window"]:
        band, dense = res["window"]
        r = dense["seconds"] / band["seconds"]
        checks.append(
            (
                f"band-only >= 4x faster than dense masking at n={band['n']}, w={band['window']}",
                r >= 4.0,
                f"speed-up {r:.2f}",
            )
        )
    return checks


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    for method in MAIN_METHODS:
        rows = sorted((r for r in res["forward"] if r["method"] == method), key=lambda r: r["n"])
        if not rows:
            continue
        ns = [r["n"] for r in rows]
        ax_t.loglog(ns, [r["seconds"] for r in rows], "o-", label=method)
        ax_m.loglog(ns, [max(r["extra_peak_bytes"], 1) / MIB for r in rows], "o-", label=method)
    ax_t.set(title="Forward time", xlabel="sequence length n", ylabel="seconds (median)")
    ax_m.set(
        title="Extra peak memory of the forward pass",
        xlabel="sequence length n",
        ylabel="MiB above the inputs",
    )
    for ax in (ax_t, ax_m):
        ax.set_xscale("log", base=2)
        ax.legend()
    fig.suptitle(f"B=1, H=1, Dh=64, float32, {res['threads']} thread(s), torch {res['torch']}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096, 8192, 16384]
    )
    parser.add_argument("--train-lengths", type=int, nargs="*", default=[1024, 2048, 4096])
    parser.add_argument("--linear-lengths", type=int, nargs="*", default=[1024, 4096, 16384])
    parser.add_argument("--window-n", type=int, default=8192)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-kv-cache", action="store_true", help="skip the generation section")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--no-check", action="store_true", help="exit 0 even if a target fails")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="measure nothing: rewrite the tables, plot and checks from an earlier JSON",
    )
    args = parser.parse_args(argv)
    if args.render:
        res = json.loads(args.render.read_text())
        return _report(res, check_targets(res), args.out, args.no_check)

    start = time.perf_counter()
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    notes: list[str] = []
    res = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "threads": args.threads,
        "lengths": args.lengths,
        "batch": 1,
        "heads": 1,
        "head_dim": 64,
        "dtype": "float32",
        "notes": notes,
    }
    log(
        f"torch {torch.__version__}, {args.threads} thread(s), B=1 H=1 Dh=64 float32; "
        "one process per configuration"
    )
    res["forward"] = forward_section(args.lengths, args.threads, args.repeats, notes)
    res["train"] = train_section(args.train_lengths, args.threads, notes)
    res["window"] = (
        window_section(args.window_n, args.window, args.threads, args.repeats)
        if args.window_n
        else []
    )
    res["linear"] = linear_section(args.linear_lengths, args.threads, args.repeats)
    res["kv_cache"] = [] if args.no_kv_cache else kv_cache_section(args.threads)
    if not res["kv_cache"] and not args.no_kv_cache:
        notes.append("the KV-cache section did not run (DecoderLM without num_kv_heads)")
    checks = check_targets(res)
    res["targets"] = [{"target": t, "passed": p, "detail": d} for t, p, d in checks]
    res["wall_seconds"] = time.perf_counter() - start
    if hasattr(os, "getloadavg"):  # how busy the machine was: timings depend on it
        res["load_average"] = {"start": load_start, "end": list(os.getloadavg())}

    return _report(res, checks, args.out, args.no_check)


def _report(res: dict, checks, out: Path, no_check: bool) -> int:
    """Write the JSON, the tables and the plot; print the tables and the targets."""
    out.mkdir(parents=True, exist_ok=True)
    text = tables(res)
    text += "\n## Targets (issue 14)\n\n" + "\n".join(
        f"- {'PASS' if p else 'FAIL' if p is False else 'NOT MEASURED'}: {t} ({d})"
        for t, p, d in checks
    )
    (out / "attention_cost.json").write_text(json.dumps(res, indent=1))
    (out / "attention_cost.md").write_text(text + "\n")
    plot(res, out / "attention_cost.png")
    print()
    print(text)
    print(
        f"\nwritten to {out}; {res['wall_seconds']:.0f} s; load average {res.get('load_average')}"
    )
    failed = [t for t, p, _ in checks if p is not True]
    return 1 if failed and not no_check else 0


if __name__ == "__main__":
    sys.exit(main())
