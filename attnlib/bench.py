"""Speed of attnlib's :class:`~attnlib.attention.MultiHeadAttention` against PyTorch's.

Run it with ``python -m attnlib.bench`` (or ``nox -s bench``). Both layers hold
the same weights (:meth:`~attnlib.attention.MultiHeadAttention.from_torch`);
every configuration is timed in the same run, alternating the two layers, and
reported as a **ratio** (attnlib's time / PyTorch's), so that the figure does
not depend on how fast the machine is. The outputs and gradients are compared
too: a fast layer that computes something else is not faster.

Speed is measured here, never asserted in a unit test: timings depend on the
machine and on what else it is doing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .attention import MultiHeadAttention

__all__ = ["Case", "compare", "main"]


@dataclass(frozen=True)
class Case:
    """One configuration: shapes, threads, what is timed and whether the weights are needed.

    ``mode`` is ``"train"`` (forward and backward) or ``"inference"`` (forward
    under :func:`torch.no_grad`).
    """

    batch: int = 2
    length: int = 1024
    embed_dim: int = 256
    num_heads: int = 8
    threads: int = 1
    mode: str = "train"
    need_weights: bool = False

    def label(self) -> str:
        weights = "with weights" if self.need_weights else "no weights"
        return (
            f"B={self.batch} L={self.length} D={self.embed_dim} H={self.num_heads} "
            f"threads={self.threads} {self.mode}, {weights}"
        )


def _runner(layer: nn.Module, x: Tensor, case: Case) -> Callable[[], None]:
    def train() -> None:
        out, _ = layer(x, x, x, need_weights=case.need_weights)
        out.sum().backward()

    @torch.no_grad()
    def inference() -> None:
        layer(x, x, x, need_weights=case.need_weights)

    return train if case.mode == "train" else inference


def _outputs(layer: nn.Module, x: Tensor, case: Case) -> list[Tensor]:
    x = x.detach().clone().requires_grad_(True)
    layer.zero_grad()
    out, _ = layer(x, x, x, need_weights=case.need_weights)
    out.sum().backward()
    return [out.detach(), x.grad] + [p.grad for p in layer.parameters() if p.grad is not None]


def compare(case: Case, repeats: int = 7, seed: int = 0) -> dict:
    """Time attnlib and PyTorch on one :class:`Case`, alternating them.

    Returns
    -------
    dict
        ``ours_s`` and ``torch_s`` (median seconds per call), ``ratio``
        (``ours_s / torch_s``) and ``max_diff`` (largest absolute difference
        of the outputs and of the input's gradient).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(case.threads)
    try:
        gen = torch.Generator().manual_seed(seed)
        reference = nn.MultiheadAttention(case.embed_dim, case.num_heads, batch_first=True)
        ours = MultiHeadAttention.from_torch(reference)
        x = torch.randn(case.batch, case.length, case.embed_dim, generator=gen)
        # ours wraps the weights it was given in its own parameters; its per-head
        # weights are (B, H, L, L) while torch averages them, so compare outputs only
        a, b = _outputs(ours, x, case), _outputs(reference, x, case)
        max_diff = max((a[0] - b[0]).abs().max().item(), (a[1] - b[1]).abs().max().item())
        x = x.requires_grad_(case.mode == "train")
        runs = {"ours": _runner(ours, x, case), "torch": _runner(reference, x, case)}
        for run in runs.values():  # warm-up
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    ours_s, torch_s = statistics.median(times["ours"]), statistics.median(times["torch"])
    return {"ours_s": ours_s, "torch_s": torch_s, "ratio": ours_s / torch_s, "max_diff": max_diff}


def main(argv: list[str] | None = None) -> int:
    """Print the table of ratios; with ``--check``, exit 1 when a fast-path
    training ratio exceeds ``--target``."""
    parser = argparse.ArgumentParser(prog="python -m attnlib.bench", description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--target", type=float, default=1.1)
    parser.add_argument("--check", action="store_true", help="fail above --target")
    args = parser.parse_args(argv)
    cases = [
        Case(args.batch, args.length, threads=t, mode=mode, need_weights=w)
        for t in args.threads
        for mode, w in (("train", False), ("inference", False), ("train", True))
    ]
    print(f"torch {torch.__version__}; median of {args.repeats} calls each, alternating")
    print(f"{'configuration':<58} {'attnlib':>9} {'torch':>9} {'ratio':>6} {'max diff':>9}")
    failed = []
    for case in cases:
        r = compare(case, args.repeats)
        print(
            f"{case.label():<58} {r['ours_s'] * 1e3:7.1f}ms {r['torch_s'] * 1e3:7.1f}ms "
            f"{r['ratio']:6.2f} {r['max_diff']:9.1e}",
            flush=True,
        )
        if not case.need_weights and case.mode == "train" and r["ratio"] > args.target:
            failed.append(case.label())
    if failed:
        print(f"above the target ratio {args.target}: {'; '.join(failed)}")
        return 1 if args.check else 0
    print(f"every fast-path training ratio is at most {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
