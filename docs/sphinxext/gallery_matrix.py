"""The robustness matrix: every tutorial run as a reader runs a download.

Each tutorial is copied into an empty folder and run there as a plain script
(``python 03_classifier.py``), once per configuration: a base seed
(``ATTNLIB_SEED``, read by :func:`attnlib.training.base_seed`) and a number of
torch threads (``OMP_NUM_THREADS``, which torch reads at start-up). Two runs go
at a time, one per core. Each run records whether it passed (exit status 0,
so every ``assert`` held), its wall time, and the key figures the tutorial
reported with :func:`attnlib.report.key_figure`.

``nox -s gallery-matrix`` runs it (``-- --help`` lists the options); the
docs build renders the published results (``docs/_data/robustness-matrix.json``)
on the page "How the claims are checked" with :func:`render_markdown`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GALLERY = ROOT / "gallery"
PUBLISHED = ROOT / "docs" / "_data" / "robustness-matrix.json"
SEEDS = (0, 1, 2)
THREADS = (1, 2)
# A few of the tutorials that train the longest also run with 4 threads (seed 0):
# more threads split the reductions differently again.
FOUR_THREADS = re.compile(
    r"01_why_attention|08_attention_zoo|04_training_algorithmic|03_classifier|02_transformer_translation"
)


@dataclass(frozen=True, order=True)
class Config:
    seed: int
    threads: int

    @property
    def label(self) -> str:
        return f"seed {self.seed}, {self.threads} thread{'s' if self.threads > 1 else ''}"


@dataclass
class Run:
    tutorial: str  # path relative to gallery/, with forward slashes
    seed: int
    threads: int
    status: str  # "pass", "fail" or "timeout"
    seconds: float
    figures: dict[str, float] = field(default_factory=dict)
    error: str = ""


def tutorials(pattern: str | None = None) -> list[str]:
    """The tutorial scripts (relative paths), in build order, matching ``pattern``."""
    found = sorted(
        p.relative_to(GALLERY).as_posix()
        for p in GALLERY.glob("*/*.py")
        if not p.name.startswith("_")
    )
    if pattern:
        found = [t for t in found if re.search(pattern, t)]
    return found


def configs_for(tutorial: str, seeds, threads, four_threads: bool) -> list[Config]:
    result = [Config(s, t) for s in seeds for t in threads]
    if four_threads and FOUR_THREADS.search(tutorial) and Config(0, 4) not in result:
        result.append(Config(0, 4))
    return result


def run_one(tutorial: str, config: Config, cache_root: Path, timeout: float) -> Run:
    """Run one tutorial in a fresh empty folder; never raises."""
    source = GALLERY / tutorial
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ATTNLIB_", "OMP_", "MKL_")) and k != "PYTHONHASHSEED"
    }
    with tempfile.TemporaryDirectory(prefix="attnlib-matrix-") as folder:
        work = Path(folder)
        script = work / source.name
        shutil.copy2(source, script)
        figures_file = work / ".key-figures.jsonl"
        env.update(
            ATTNLIB_SEED=str(config.seed),
            OMP_NUM_THREADS=str(config.threads),
            MKL_NUM_THREADS=str(config.threads),
            ATTNLIB_KEY_FIGURES=str(figures_file),
            # one cache per configuration: a model trained with 1 thread is not
            # the model a 2-thread run trains
            ATTNLIB_CACHE_DIR=str(cache_root / f"seed{config.seed}-threads{config.threads}"),
            MPLBACKEND="Agg",
            PYTHONUNBUFFERED="1",
        )
        if config.threads > (os.cpu_count() or 1):
            # more threads than cores: spinning threads would steal each other's
            # time slices (the sums, and so the results, do not change)
            env["OMP_WAIT_POLICY"] = "PASSIVE"
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, script.name],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            status = "pass" if proc.returncode == 0 else "fail"
            error = "" if status == "pass" else _last_error(proc.stderr)
        except subprocess.TimeoutExpired:
            status, error = "timeout", f"still running after {timeout:.0f} s"
        seconds = time.perf_counter() - start
        figures = {}
        if figures_file.exists():
            for line in figures_file.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                figures[record["name"]] = record["value"]
    return Run(tutorial, config.seed, config.threads, status, round(seconds, 2), figures, error)


def _last_error(stderr: str) -> str:
    """The last lines of a traceback: where it failed and the exception."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-3:])[-600:]


class Cores:
    """Hands out CPU cores so that the runs at a time never ask for more
    threads than there are cores: torch's threads spin while they wait, and an
    oversubscribed run can be ten times slower (a run wanting more threads
    than there are cores gets all of them). Runs get their cores in the
    order they asked, so a run that needs every core is not starved by
    one-core runs that keep taking the core freed before it."""

    def __init__(self, total: int):
        self.total, self.free = total, total
        self.tickets = self.serving = 0
        self.cond = threading.Condition()

    def run(self, threads: int, fn, *args):
        need = min(threads, self.total)
        with self.cond:
            ticket, self.tickets = self.tickets, self.tickets + 1
            self.cond.wait_for(lambda: self.serving == ticket and self.free >= need)
            self.free -= need
            self.serving += 1
            self.cond.notify_all()
        try:
            return fn(*args)
        finally:
            with self.cond:
                self.free += need
                self.cond.notify_all()


def run_matrix(
    names: list[str],
    seeds,
    threads,
    *,
    jobs: int,
    timeout: float,
    four_threads: bool,
    cores: int | None = None,
    on_run=None,
) -> list[Run]:
    tasks = [(t, c) for t in names for c in configs_for(t, seeds, threads, four_threads)]
    # the one-thread runs first, side by side, then those that take every core
    tasks.sort(key=lambda task: task[1].threads)
    cores = Cores(cores or os.cpu_count() or 1)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="attnlib-matrix-cache-") as cache:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(cores.run, c.threads, run_one, t, c, Path(cache), timeout): (t, c)
                for t, c in tasks
            }
            for done, future in enumerate(as_completed(futures), 1):
                run = future.result()
                runs.append(run)
                mark = "pass" if run.status == "pass" else run.status.upper()
                print(
                    f"[{done:3d}/{len(tasks)}] {run.tutorial} "
                    f"(seed {run.seed}, {run.threads} thr): {mark} in {run.seconds:.1f} s",
                    flush=True,
                )
                if run.error:
                    print("      " + run.error.replace("\n", "\n      "), flush=True)
                if on_run is not None:
                    on_run(runs)
    return sorted(runs, key=lambda r: (r.tutorial, r.seed, r.threads))


def merge(old: dict | None, runs: list[Run]) -> dict:
    """Published results updated with ``runs`` (same tutorial and config replaced);
    tutorials that no longer exist are dropped."""
    existing = set(tutorials())
    keep = {}
    for r in (old or {}).get("runs", []):
        if r["tutorial"] in existing:
            keep[(r["tutorial"], r["seed"], r["threads"])] = r
    for r in runs:
        keep[(r.tutorial, r.seed, r.threads)] = asdict(r)
    return {
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.processor() or ''}",
        "python": platform.python_version(),
        "torch": _torch_version(),
        "runs": [keep[k] for k in sorted(keep)],
    }


def _torch_version() -> str:
    try:
        import torch
    except ImportError:  # pragma: no cover - the matrix needs torch anyway
        return "?"
    return torch.__version__


def _spread(values: list[float]) -> str:
    lo, hi = min(values), max(values)
    return _fmt(lo) if lo == hi else f"{_fmt(lo)} – {_fmt(hi)}"


def _seconds(values: list[float]) -> str:
    lo, hi = round(min(values)), round(max(values))
    return str(lo) if lo == hi else f"{lo} – {hi}"


def _fmt(x: float) -> str:
    if isinstance(x, str):
        return x
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.3g}" if abs(x) < 1 else f"{x:.4g}"
    return f"{x:.2e}"


def render_markdown(results: dict) -> str:
    """MyST Markdown for the page: the summary, then one section per tutorial
    with its configurations and the spread of its key figures."""
    runs = results.get("runs", [])
    if not runs:
        return "No results have been published yet: run `nox -s gallery-matrix -- --publish`.\n"
    by_tutorial: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_tutorial[r["tutorial"]].append(r)
    passed = sum(r["status"] == "pass" for r in runs)
    lines = [
        f"Published {results['generated']} on {results['machine'].rstrip(', ')} "
        f"(Python {results['python']}, torch {results['torch']}): "
        f"**{passed} of {len(runs)} runs passed**, {len(by_tutorial)} tutorials.",
        "",
        "| tutorial | configurations passed | failed | run time, 1 thread (s) |",
        "| --- | --- | --- | --- |",
    ]
    for name, rs in by_tutorial.items():
        ok = [r for r in rs if r["status"] == "pass"]
        bad = [f"seed {r['seed']}/{r['threads']} thr" for r in rs if r["status"] != "pass"]
        one = [r["seconds"] for r in rs if r["threads"] == 1]
        lines.append(
            f"| [{name}](#{_anchor(name)}) | {len(ok)} / {len(rs)} | {', '.join(bad) or '—'} "
            f"| {_seconds(one) if one else '—'} |"
        )
    lines.append("")
    for name, rs in by_tutorial.items():
        label = "sphx_glr_auto_gallery_" + name.replace("/", "_")
        lines += [f"({_anchor(name)})=", f"### {name}", "", f"The tutorial: {{ref}}`{label}`.", ""]
        configs = sorted({(r["seed"], r["threads"]) for r in rs})
        lines.append(
            "Configurations (seed / threads): "
            + ", ".join(
                f"{s}/{t} {'✓' if _status(rs, s, t) == 'pass' else '✗ ' + _status(rs, s, t)}"
                for s, t in configs
            )
            + "."
        )
        lines.append("")
        names: list[str] = []
        for r in rs:
            names += [n for n in r["figures"] if n not in names]
        if not names:
            lines += ["This tutorial reports no key figures.", ""]
            continue
        lines += [
            "| key figure | min – max over the runs | mean | runs |",
            "| --- | --- | --- | --- |",
        ]
        for n in names:
            values = [r["figures"][n] for r in rs if n in r["figures"]]
            numeric = [v for v in values if not isinstance(v, str)]
            mean = _fmt(statistics.fmean(numeric)) if numeric else "—"
            spread = _spread(numeric) if numeric else ", ".join(map(str, values))
            lines.append(f"| {n.replace('|', '/')} | {spread} | {mean} | {len(values)} |")
        lines.append("")
    return "\n".join(lines)


def _status(rs: list[dict], seed: int, threads: int) -> str:
    return next(r["status"] for r in rs if r["seed"] == seed and r["threads"] == threads)


def _anchor(name: str) -> str:
    return "matrix-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def summary_table(runs: list[Run]) -> str:
    """A plain-text table for the terminal: tutorial x configuration."""
    configs = sorted({Config(r.seed, r.threads) for r in runs})
    width = max(len(r.tutorial) for r in runs)
    head = f"{'tutorial':<{width}} " + " ".join(
        f"{c.seed}/{c.threads}thr".rjust(9) for c in configs
    )
    out = [head, "-" * len(head)]
    cells = {(r.tutorial, Config(r.seed, r.threads)): r for r in runs}
    for t in sorted({r.tutorial for r in runs}):
        row = []
        for c in configs:
            r = cells.get((t, c))
            row.append(
                "".rjust(9)
                if r is None
                else (f"{r.seconds:.0f}s" if r.status == "pass" else r.status.upper()).rjust(9)
            )
        out.append(f"{t:<{width}} " + " ".join(row))
    passed = sum(r.status == "pass" for r in runs)
    out.append(f"{passed} of {len(runs)} runs passed")
    return "\n".join(out)


def publish(runs: list[Run]) -> None:
    """Merge ``runs`` into the published table (file-locked: two matrices may publish)."""
    PUBLISHED.parent.mkdir(parents=True, exist_ok=True)
    with open(PUBLISHED.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(PUBLISHED.read_text(encoding="utf-8")) if PUBLISHED.exists() else None
        PUBLISHED.write_text(json.dumps(merge(old, runs), indent=1) + "\n", encoding="utf-8")
    print(f"published {len(runs)} runs into {PUBLISHED}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pattern", nargs="?", help="run only the tutorials whose path matches")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="e.g. 0,1,2")
    parser.add_argument("--threads", default=",".join(map(str, THREADS)), help="e.g. 1,2")
    parser.add_argument(
        "--no-four-threads", action="store_true", help="skip the extra 4-thread runs"
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="runs at a time, at most one thread per core (2)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs" / "_build" / "matrix" / "results.json"
    )
    parser.add_argument(
        "--publish", action="store_true", help=f"merge the results into {PUBLISHED.name}"
    )
    parser.add_argument(
        "--publish-only",
        type=Path,
        metavar="RESULTS",
        help="run nothing: merge the runs of an earlier results file into the published table",
    )
    args = parser.parse_args(argv)
    if args.publish_only:
        saved = json.loads(args.publish_only.read_text(encoding="utf-8"))
        runs = [Run(**r) for r in saved["runs"]]
        if args.pattern:
            runs = [r for r in runs if re.search(args.pattern, r.tutorial)]
        publish(runs)
        return 0 if all(r.status == "pass" for r in runs) else 1
    seeds = [int(s) for s in args.seeds.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    names = tutorials(args.pattern)
    if not names:
        parser.error(f"no tutorial matches {args.pattern!r}")
    four = not args.no_four_threads and args.threads == ",".join(map(str, THREADS))
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(runs: list[Run]) -> None:  # after every run: a stopped matrix keeps its results
        args.out.write_text(json.dumps(merge(None, runs), indent=1) + "\n", encoding="utf-8")

    start = time.perf_counter()
    runs = run_matrix(
        names,
        seeds,
        threads,
        jobs=args.jobs,
        timeout=args.timeout,
        four_threads=four,
        on_run=save,
    )
    print()
    print(summary_table(runs))
    print(f"wall time {time.perf_counter() - start:.0f} s")
    save(runs)
    print(f"results: {args.out}")
    if args.publish:
        publish(runs)
    return 0 if all(r.status == "pass" for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
