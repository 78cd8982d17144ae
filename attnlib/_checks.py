"""Input checks shared by the library: every error names the argument,
what was expected and what was given."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def check_tensor(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    return x


def check_rank(x: Tensor, name: str, ranks: Sequence[int], layout: str = "") -> None:
    """Raise unless ``x.dim()`` is one of ``ranks``; ``layout`` names the dims."""
    check_tensor(x, name)
    if x.dim() not in ranks:
        want = " or ".join(f"{r}-D" for r in ranks)
        hint = f" {layout}" if layout else ""
        raise ValueError(f"{name}: expected a {want} tensor{hint}, got shape {shape_str(x.shape)}")


def check_size(x: Tensor, name: str, dim: int, size: int, what: str) -> None:
    if x.shape[dim] != size:
        raise ValueError(
            f"{name}: expected size {size} in dimension {dim} ({what}), "
            f"got shape {shape_str(x.shape)}"
        )


def check_same_leading(a: Tensor, a_name: str, b: Tensor, b_name: str, what: str) -> None:
    """``a`` and ``b`` must agree on every dimension but the last (batch dims)."""
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(
            f"{b_name}: expected the same {what} as {a_name} "
            f"{shape_str(a.shape[:-2])}, got {shape_str(b.shape[:-2])} "
            f"(shapes {shape_str(a.shape)} and {shape_str(b.shape)})"
        )


def check_mask(
    mask: Tensor,
    name: str,
    target: Sequence[int],
    layout: str,
    dtype: torch.dtype | None = None,
) -> None:
    """A mask must be boolean (True = may attend) or floating (added to the scores,
    of the scores' ``dtype`` when given), of rank at most ``len(target)`` and
    broadcastable to ``target``."""
    check_tensor(mask, name)
    if mask.dtype != torch.bool and not mask.is_floating_point():
        raise TypeError(
            f"{name}: expected dtype torch.bool (True = may attend) or a floating "
            f"additive mask, got dtype {mask.dtype}"
        )
    if mask.is_floating_point() and dtype is not None and mask.dtype != dtype:
        raise TypeError(
            f"{name}: expected a torch.bool mask or an additive mask of the scores' dtype "
            f"{dtype}, got dtype {mask.dtype}"
        )
    ok = mask.dim() <= len(target)
    if ok:
        for m, t in zip(reversed(mask.shape), reversed(target), strict=False):
            if m not in (1, t):
                ok = False
                break
    if not ok:
        raise ValueError(
            f"{name}: expected a shape broadcastable to {shape_str(target)} {layout}, "
            f"got {shape_str(mask.shape)}"
        )


def check_positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


def check_choice(value: object, name: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value  # type: ignore[return-value]


def require_optional(module: str, *, package: str, extra: str, feature: str):
    """Import an optional dependency, or raise an ImportError that names the package to
    install and attnlib's extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{feature} needs the package {package!r} (module {module!r}), an optional "
            f"dependency of attnlib: pip install 'attnlib[{extra}]' (or pip install {package})"
        ) from exc
