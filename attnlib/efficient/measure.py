"""Time and peak memory of one attention configuration, one fresh process per configuration.

The time of a call is easy to measure in a running Python; its **peak
memory** is not: the allocator keeps freed memory for later, earlier
configurations leave pages behind, and a tensor freed inside the call never
shows in the memory used after it. So :func:`measure` starts a fresh
interpreter for every configuration (``python -m attnlib.efficient.measure
--method ... --n ...``, which prints one JSON object). The child

1. sets the number of threads, builds the inputs, runs the method once on a
   tiny length (loading the kernels),
2. resets the peak resident set size — writing ``5`` to
   ``/proc/self/clear_refs`` resets ``VmHWM`` on Linux — and reads the
   resident size ``VmRSS`` before the call,
3. runs the configuration once and reads ``VmHWM``: the **extra peak**
   ``VmHWM - VmRSS(before)`` is what the call needed on top of its inputs
   (its output included),
4. then times ``repeats`` calls and reports their median (the measured call
   served as the warm-up).

Where ``clear_refs`` cannot be written (not Linux, a restricted container)
the child falls back to ``resource.getrusage``'s ``ru_maxrss`` (the
lifetime peak, which the tiny warm-up and the imports also count) and says
so in :attr:`Measurement.peak_source`. The child runs with glibc's
``MALLOC_MMAP_THRESHOLD_`` fixed at 64 KiB so that large freed blocks go back
to the system at once instead of staying in the heap.

Methods (inputs ``(B, H, n, Dh)``):

- ``"naive"``: :func:`attnlib.efficient.online.naive_attention` (scores and
  weights materialised);
- ``"sdpa_math"``: :func:`torch.nn.functional.scaled_dot_product_attention`
  under ``sdpa_kernel(SDPBackend.MATH)`` (PyTorch's reference path);
- ``"sdpa_default"``: the same with no backend forced (on CPU, the fused
  flash-attention kernel);
- ``"tiled"``: :func:`attnlib.efficient.online.tiled_attention`;
- ``"band"``: :func:`attnlib.efficient.window.band_attention` with
  ``window``;
- ``"dense_window"``: SDPA with :func:`attnlib.masks.sliding_window_mask`
  (built inside the call: the dense way needs it);
- ``"linear"``: :func:`attnlib.efficient.linear.linear_attention`.

Modes: ``"forward"`` (under :func:`torch.no_grad`) and ``"train"`` (forward
and backward of the output's sum).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = [
    "METHODS",
    "MODES",
    "Measurement",
    "attention_call",
    "estimate_naive_bytes",
    "make_inputs",
    "measure",
    "measure_in_process",
    "measure_peak",
    "measure_series",
    "main",
]

METHODS = ("naive", "sdpa_math", "sdpa_default", "tiled", "band", "dense_window", "linear")
MODES = ("forward", "train")
_WINDOWED = ("band", "dense_window")
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Measurement:
    """Time and extra peak memory of one configuration.

    Attributes
    ----------
    method, mode, dtype : str
    n, batch, heads, head_dim, threads, repeats : int
    window : int or None
    seconds : float
        Median time of ``repeats`` calls.
    times : list of float
        Every timed call (seconds).
    extra_peak_bytes : int
        Peak resident memory during the measured call minus the resident
        memory just before it (inputs already allocated).
    peak_source : str
        ``"clear_refs"`` (``VmHWM`` reset just before the call) or
        ``"ru_maxrss"`` (lifetime peak: an upper bound).
    rss_before_bytes, input_bytes : int
        Resident memory before the call; size of the query, key and value.
    """

    method: str
    n: int
    batch: int = 1
    heads: int = 1
    head_dim: int = 64
    window: int | None = None
    mode: str = "forward"
    threads: int = 1
    repeats: int = 3
    dtype: str = "float32"
    seconds: float = float("nan")
    times: list[float] = field(default_factory=list)
    extra_peak_bytes: int = 0
    peak_source: str = ""
    rss_before_bytes: int = 0
    input_bytes: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _check(method: str, mode: str, window: int | None, dtype: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if dtype not in _DTYPES:
        raise ValueError(f"dtype: expected one of {', '.join(_DTYPES)}, got {dtype!r}")
    if method in _WINDOWED and (window is None or window < 0):
        raise ValueError(f"window: expected an int >= 0 for method {method!r}, got {window!r}")


def estimate_naive_bytes(
    n: int, *, batch: int = 1, heads: int = 1, dtype: str = "float32", mode: str = "forward"
) -> int:
    """Bytes that naive attention's ``(n, n)`` matrices take: the scores and the
    weights (forward), and their gradients on top (train). Used to skip a
    configuration that would not fit before trying it.
    """
    per = torch.empty((), dtype=_DTYPES[dtype]).element_size()
    copies = 2 if mode == "forward" else 4
    return copies * batch * heads * n * n * per


def make_inputs(
    n: int,
    *,
    batch: int = 1,
    heads: int = 1,
    head_dim: int = 64,
    dtype: str = "float32",
    requires_grad: bool = False,
    seed: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Query, key and value drawn from :math:`\\mathcal N(0, 1)`.

    Shape
    -----
    - each: ``(B, H, n, Dh)``
    """
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, heads, n, head_dim)
    return tuple(
        torch.randn(shape, generator=gen, dtype=_DTYPES[dtype]).requires_grad_(requires_grad)
        for _ in range(3)
    )


def attention_call(
    method: str, window: int | None = None
) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The function ``(query, key, value) -> output`` that ``method`` times.

    Shape
    -----
    - query, key, value: ``(B, H, n, Dh)``; output: ``(B, H, n, Dh)``
    """
    _check(method, "forward", window, "float32")
    from .linear import linear_attention
    from .online import naive_attention, tiled_attention
    from .window import band_attention

    def sdpa_math(q, k, v):
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v)

    def dense_window(q, k, v):
        from ..masks import sliding_window_mask

        mask = sliding_window_mask(q.shape[-2], window=window, device=q.device)  # (n, n)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    calls = {
        "naive": lambda q, k, v: naive_attention(q, k, v)[0],
        "sdpa_math": sdpa_math,
        "sdpa_default": F.scaled_dot_product_attention,
        "tiled": lambda q, k, v: tiled_attention(q, k, v)[0],
        "band": lambda q, k, v: band_attention(q, k, v, window)[0],
        "dense_window": dense_window,
        "linear": lambda q, k, v: linear_attention(q, k, v)[0],
    }
    return calls[method]


def _runner(call, q, k, v, mode: str) -> Callable[[], None]:
    if mode == "forward":

        def run() -> None:
            with torch.no_grad():
                call(q, k, v)

    else:

        def run() -> None:
            for x in (q, k, v):
                x.grad = None
            call(q, k, v).sum().backward()
            for x in (q, k, v):
                x.grad = None

    return run


def _status_kib(field_name: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


def measure_peak(fn: Callable[[], object]) -> tuple[int, str]:
    """Run ``fn()`` once and return the extra peak resident memory it needed.

    Returns
    -------
    extra_bytes : int
        ``VmHWM`` after the call (reset just before it) minus ``VmRSS`` before.
    source : str
        ``"clear_refs"``, or ``"ru_maxrss"`` where the peak could not be reset
        (then the lifetime peak minus the resident size before: a bound that
        earlier work in the process can inflate).
    """
    gc.collect()
    if _reset_peak():
        before = _status_kib("VmRSS")
        fn()
        return max(0, (_status_kib("VmHWM") - before) * 1024), "clear_refs"
    before_kib = _status_kib("VmRSS")
    before = before_kib * 1024 if before_kib is not None else 0
    fn()
    import resource  # POSIX only: on Windows neither source exists

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss = maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB on Linux
    return max(0, maxrss - before), "ru_maxrss"


def measure_in_process(
    method: str,
    n: int,
    *,
    batch: int = 1,
    heads: int = 1,
    head_dim: int = 64,
    window: int | None = None,
    mode: str = "forward",
    threads: int | None = None,
    repeats: int = 3,
    dtype: str = "float32",
) -> Measurement:
    """What the child process does, in this process (for tests and quick looks).

    The memory figure is only trustworthy in a fresh process: here, memory
    freed earlier and kept by the allocator can hide part of the peak. See
    :func:`measure`.
    """
    _check(method, mode, window, dtype)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        call = attention_call(method, window)
        train = mode == "train"
        small = make_inputs(
            min(n, 64),
            batch=batch,
            heads=heads,
            head_dim=head_dim,
            dtype=dtype,
            requires_grad=train,
        )
        _runner(call, *small, mode)()  # load the kernels
        del small
        q, k, v = make_inputs(
            n, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, requires_grad=train
        )
        run = _runner(call, q, k, v, mode)
        rss_kib = _status_kib("VmRSS")
        extra, source = measure_peak(run)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return Measurement(
        method,
        n,
        batch,
        heads,
        head_dim,
        window,
        mode,
        torch.get_num_threads() if threads is None else threads,
        repeats,
        dtype,
        statistics.median(times) if times else float("nan"),
        times,
        extra,
        source,
        (rss_kib or 0) * 1024,
        3 * q.numel() * q.element_size(),
    )


def _argv(
    method: str | list[str],
    n: int | list[int],
    batch,
    heads,
    head_dim,
    window,
    mode,
    threads,
    repeats,
    dtype,
) -> list[str]:
    lengths = [str(x) for x in (n if isinstance(n, list) else [n])]
    methods = method if isinstance(method, list) else [method]
    argv = ["--method", *methods, "--n", *lengths, f"--batch={batch}", f"--heads={heads}"]
    argv += [f"--head-dim={head_dim}", f"--mode={mode}", f"--threads={threads}"]
    argv += [f"--repeats={repeats}", f"--dtype={dtype}"]
    return argv + ([f"--window={window}"] if window is not None else [])


def measure(
    method: str,
    n: int,
    *,
    batch: int = 1,
    heads: int = 1,
    head_dim: int = 64,
    window: int | None = None,
    mode: str = "forward",
    threads: int = 1,
    repeats: int = 3,
    dtype: str = "float32",
    timeout: float | None = 600,
) -> Measurement:
    """Time and extra peak memory of one configuration, in a fresh Python process.

    Parameters
    ----------
    method : str
        One of ``METHODS``.
    n : int
        Sequence length.
    batch, heads, head_dim : int
        The inputs are ``(batch, heads, n, head_dim)``.
    window : int, optional
        Half-width of the band (``"band"``, ``"dense_window"`` only).
    mode : {"forward", "train"}
    threads : int
        ``torch.set_num_threads`` and ``OMP_NUM_THREADS`` in the child.
    repeats : int
        Timed calls after the measured one (median reported; 0: memory only).
    dtype : {"float32", "float64"}
    timeout : float, optional
        Seconds before the child is killed (``subprocess.TimeoutExpired``).

    Returns
    -------
    Measurement

    Raises
    ------
    RuntimeError
        If the child fails (for example, out of memory); the message holds
        the end of its error output.
    """
    _check(method, mode, window, dtype)
    argv = _argv(method, n, batch, heads, head_dim, window, mode, threads, repeats, dtype)
    return _child(argv, threads, timeout, f"{method} n={n}")[0]


def measure_series(
    method: str | list[str],
    lengths: list[int],
    *,
    batch: int = 1,
    heads: int = 1,
    head_dim: int = 64,
    window: int | None = None,
    mode: str = "forward",
    threads: int = 1,
    repeats: int = 3,
    dtype: str = "float32",
    timeout: float | None = 600,
) -> list[Measurement]:
    """:func:`measure` for several lengths (and methods), in **one** fresh process.

    Faster than one process per configuration (the imports dominate short
    runs); for each method in turn the lengths are measured in increasing
    order, the peak reset before each, and the large blocks of the previous
    one have gone back to the system (``MALLOC_MMAP_THRESHOLD_``), so the
    figures agree with :func:`measure`'s to within the allocator's small
    change. Parameters as in :func:`measure`; ``method`` may be a list.

    Returns
    -------
    list of Measurement
        One per method and length, method by method, lengths increasing.
    """
    methods = [method] if isinstance(method, str) else list(method)
    for name in methods:
        _check(name, mode, window, dtype)
    lengths = sorted(int(x) for x in lengths)
    argv = _argv(methods, lengths, batch, heads, head_dim, window, mode, threads, repeats, dtype)
    return _child(argv, threads, timeout, f"{methods} n={lengths}")


def _child(argv: list[str], threads: int, timeout: float | None, what: str) -> list[Measurement]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env["MALLOC_MMAP_THRESHOLD_"] = str(64 * 1024)  # large freed blocks go back at once
    cmd = [sys.executable, "-m", "attnlib.efficient.measure", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"measure: expected the child for {what} to succeed, got exit code "
            f"{proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    return [Measurement(**json.loads(line)) for line in lines]


def main(argv: list[str] | None = None) -> int:
    """The child: measure one configuration (or one per ``--method`` and ``--n``,
    lengths in increasing order) and print each as one line of JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m attnlib.efficient.measure",
        description="Time and extra peak memory of one attention configuration (JSON).",
    )
    parser.add_argument("--method", nargs="+", required=True, choices=METHODS)
    parser.add_argument("--n", type=int, nargs="+", required=True)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--heads", type=int, default=1)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--window", type=int, default=None)
    parser.add_argument("--mode", default="forward", choices=MODES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=tuple(_DTYPES))
    args = parser.parse_args(argv)
    for method, n in ((m, n) for m in args.method for n in sorted(args.n)):
        m = measure_in_process(
            method,
            n,
            batch=args.batch,
            heads=args.heads,
            head_dim=args.head_dim,
            window=args.window,
            mode=args.mode,
            threads=args.threads,
            repeats=args.repeats,
            dtype=args.dtype,
        )
        print(json.dumps(m.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
