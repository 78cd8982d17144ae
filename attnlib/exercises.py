"""Exercises with a checker that explains the mistake.

Each exercise is an :class:`Exercise` with three methods:

- ``check(fn)`` runs your function on generated cases (several shapes, boolean
  masks, float32 and float64, edge cases such as a fully masked row, length 1
  or one head) and compares it with a reference written by someone else (the
  library's own implementation or PyTorch's). It prints a message and returns
  a :class:`CheckResult`, truthy when every case passed. When a case fails,
  the checker runs the known-wrong variants of the reference (the classic
  mistakes: the softmax over the queries, the missing :math:`1/\\sqrt{d_k}`,
  the inverted mask...) on the same cases; if your output matches one of them,
  it names the mistake and says how to fix it. Failing that, it checks a few
  properties (rows sum to 1 over the keys, masked keys get no weight, no NaN),
  and failing that it shows the smallest failing case with the expected and
  the actual values. An exception raised by your function is reported with
  the case that raised it and the line of your code.
- ``hint()`` returns a short hint: the formula, the axis.
- ``solution()`` returns the reference solution as runnable source (imports
  included): ``print(ex.solution())`` shows it, ``exec(ex.solution(), ns)``
  defines the functions under the names the exercise asks for.

The exercises:

=============================  ==========================================================
``scaled_dot_product``         ``scaled_dot_product_attention(q, k, v, mask=None)``
``masked_softmax``             ``masked_softmax(scores, mask)``
``causal_mask``                ``causal_mask(n)``
``heads``                      ``split_heads(x, num_heads)`` and ``merge_heads(x)``
``multi_head``                 ``multi_head_attention(query, key, value, params, num_heads,
                               mask=None)``
``sinusoidal``                 ``sinusoidal_encoding(length, d_model)``
``beam_step``                  ``beam_step(log_probs, scores, k)``
``rollout``                    ``attention_rollout(weights)``
=============================  ==========================================================

Examples
--------
>>> from attnlib import exercises
>>> def causal_mask(n):
...     return torch.ones(n, n, dtype=torch.bool).tril(-1)
>>> result = exercises.causal_mask.check(causal_mask, quiet=True)
>>> bool(result), result.mistake
(False, 'off_by_one_self')
"""

from __future__ import annotations

import html
import inspect
import math
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from . import functional as AF
from .interpret.relevance import attention_rollout as _library_rollout
from .masks import causal_mask as _library_causal_mask
from .positional import sinusoidal_encoding as _library_sinusoidal

__all__ = [
    "CheckResult",
    "Exercise",
    "FoldedSolution",
    "EXERCISES",
    "scaled_dot_product",
    "masked_softmax",
    "causal_mask",
    "heads",
    "multi_head",
    "sinusoidal",
    "beam_step",
    "rollout",
]


# -- the machinery -----------------------------------------------------------------------


@dataclass(frozen=True)
class FoldedSolution:
    """A solution shown folded away: a ``<details>`` block in a notebook or on
    the site (its ``_repr_html_``), the plain source elsewhere.

    Attributes
    ----------
    title : str
    source : str
    """

    title: str
    source: str

    def _repr_html_(self) -> str:
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer
        except ImportError:  # pragma: no cover - pygments comes with Jupyter and Sphinx
            code = f"<pre>{html.escape(self.source)}</pre>"
        else:
            code = highlight(self.source, PythonLexer(), HtmlFormatter(nowrap=False))
        return (
            '<details class="attnlib-solution"><summary>Solution: '
            f"{html.escape(self.title)} (click to unfold)</summary>{code}</details>"
        )

    def __repr__(self) -> str:
        return self.source


@dataclass
class CheckResult:
    """What :meth:`Exercise.check` found; truthy when every case passed.

    Attributes
    ----------
    passed : bool
    status : str
        ``"passed"``, ``"mistake"`` (a recognised mistake, named by
        ``mistake``), ``"mismatch"`` (wrong values, shape or type, no
        diagnosis) or ``"error"`` (your function raised ``error``).
    message : str
        What was verified, or what went wrong and how to fix it.
    mistake : str or None
        The stable key of the recognised mistake (see ``Exercise.mistakes``).
    case : str or None
        The case the message is about.
    error : BaseException or None
        The exception raised by your function.
    """

    passed: bool
    status: str
    message: str
    mistake: str | None = None
    case: str | None = None
    error: BaseException | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        extra = f", mistake={self.mistake!r}" if self.mistake else ""
        return f"CheckResult(passed={self.passed}, status={self.status!r}{extra})"


@dataclass(frozen=True)
class Case:
    """One call of the reader's function: ``functions[function](*args)``."""

    label: str
    args: tuple
    function: int = 0
    tol: float = 1e-5

    @property
    def size(self) -> int:
        return sum(t.numel() for t in _tensors(self.args)) + sum(
            a for a in self.args if isinstance(a, int) and not isinstance(a, bool)
        )


@dataclass(frozen=True)
class Mistake:
    """A classic mistake: ``wrong(*args)`` computes what it gives (or ``None``
    where it does not apply) for the cases of function ``function``; several
    mistakes may share a key (one way of going wrong, written differently)."""

    key: str
    explanation: str
    wrong: Callable
    function: int = 0
    tol: float = 0.0  # a looser tolerance, where float32 readers drift from the variant


_TOL = {torch.float32: 1e-5, torch.float64: 1e-8}


def _tensors(obj) -> list[Tensor]:
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _tensors(v)]
    if isinstance(obj, (tuple, list)):
        return [t for v in obj for t in _tensors(v)]
    return []


def _clone(obj):
    if isinstance(obj, Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def _shape(x: Tensor) -> str:
    return str(tuple(x.shape))


def _show(x: Tensor, at: tuple[int, ...] | None = None) -> str:
    """Small tensors in full; a large one by the last-axis slice at ``at``."""
    with torch.no_grad():
        if x.numel() <= 48 or at is None or x.dim() <= 1:
            return str(x.detach().cpu().tolist() if x.dim() == 0 else _fmt(x))
        index = ", ".join(str(i) for i in at[:-1])
        return f"[{index}, :] = {_fmt(x[at[:-1]])}"


def _fmt(x: Tensor) -> str:
    with torch.no_grad():
        text = repr(x.detach().cpu())
    return re.sub(r",\s*dtype=torch\.\w+\)$", ")", text)


def _close(expected, actual, tol: float) -> bool:
    """Same structure, shapes and values (NaN equals NaN); dtypes are compared apart."""
    if isinstance(expected, Tensor):
        if not isinstance(actual, Tensor) or actual.shape != expected.shape:
            return False
        if not expected.dtype.is_floating_point:  # masks, indices: exactly (dtype apart)
            return bool(torch.equal(actual.detach().to(torch.float64), expected.to(torch.float64)))
        a, e = actual.detach().to(torch.float64), expected.to(torch.float64)
        return bool(torch.allclose(a, e, rtol=tol, atol=tol, equal_nan=True))
    if isinstance(expected, tuple):
        return (
            isinstance(actual, (tuple, list))
            and len(actual) == len(expected)
            and all(_close(e, a, tol) for e, a in zip(expected, actual, strict=True))
        )
    return expected == actual


def _dtype_problem(expected, actual, names: Sequence[str], strict: bool) -> str | None:
    pairs = (
        zip(names, expected, actual, strict=True)
        if isinstance(expected, tuple)
        else [(names[0], expected, actual)]
    )
    for name, e, a in pairs:
        if e.dtype == torch.bool and a.dtype != torch.bool:
            return f"your {name} has dtype {a.dtype}: return a boolean tensor (dtype=torch.bool)"
        if not e.dtype.is_floating_point and e.dtype != torch.bool and a.dtype.is_floating_point:
            return f"your {name} has dtype {a.dtype}: indices must be integers (torch.long)"
        if strict and e.dtype.is_floating_point and a.dtype != e.dtype:
            return (
                f"your {name} has dtype {a.dtype} for {e.dtype} inputs: create new tensors "
                "with dtype=x.dtype (or use torch.*_like) so the input's precision is kept"
            )
    return None


def _mismatch_detail(expected, actual, names: Sequence[str]) -> str:
    """Expected and actual values of the first output that differs."""
    if isinstance(expected, tuple):
        if not isinstance(actual, (tuple, list)) or len(actual) != len(expected):
            got = (
                f"a {type(actual).__name__} of {len(actual)}"
                if isinstance(actual, (tuple, list))
                else f"a {type(actual).__name__}"
            )
            return f"expected a tuple ({', '.join(names)}), got {got}"
        for name, e, a in zip(names, expected, actual, strict=True):
            if not _close(e, a, 1e-5 if e.dtype != torch.float64 else 1e-8):
                return _mismatch_detail(e, a, [name])
        return "the values differ"
    name = names[0]
    if not isinstance(actual, Tensor):
        return f"{name}: expected a tensor {_shape(expected)}, got a {type(actual).__name__}"
    if actual.shape != expected.shape:
        return f"{name}: expected shape {_shape(expected)}, got shape {_shape(actual)}"
    a, e = actual.detach().to(torch.float64), expected.to(torch.float64)
    diff = (a - e).abs().nan_to_num(nan=math.inf)
    at = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if a.dim() else ()
    where = f" at index {list(at)}" if at else ""
    return (
        f"{name}: shape {_shape(expected)}, largest difference {diff.max().item():.3g}{where}\n"
        f"  expected {_show(expected, at)}\n  got      {_show(actual, at)}"
    )


def _your_line(error: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename != __file__]
    if not frames:
        return ""
    frame = frames[-1]
    code = f": `{frame.line}`" if frame.line else ""
    return f" (line {frame.lineno} of {frame.name}{code})"


@dataclass
class Exercise:
    """One exercise: the functions to write, the cases, the reference and the mistakes.

    Attributes
    ----------
    name : str
        Its name in this module (``exercises.<name>``).
    title : str
    functions : tuple of str
        The names and signatures of the functions the reader writes;
        ``check`` takes them in this order.
    reference : str
        What the cases are compared with.
    mistakes : list of Mistake
        The recognised mistakes (``key``, ``explanation``), in the order they
        are tried.
    """

    name: str
    title: str
    functions: tuple[str, ...]
    reference: str
    make_cases: Callable[[], list[Case]] = field(repr=False)
    expected: Callable[[Case], object] = field(repr=False)
    mistakes: list[Mistake] = field(repr=False)
    hint_text: str = field(repr=False)
    solutions: tuple[Callable, ...] = field(repr=False)
    outputs: tuple[str, ...] = ("output",)
    properties: Callable[[Case, object], tuple[str, str] | None] | None = field(
        default=None, repr=False
    )
    property_diagnoses: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    strict_dtype: bool = True
    error_tips: tuple[tuple[str, str], ...] = ()
    _cases: list[Case] | None = field(default=None, repr=False)

    def cases(self) -> list[Case]:
        """The generated cases (the same every time: a fixed seed)."""
        if self._cases is None:
            self._cases = self.make_cases()
        return self._cases

    def recognised(self) -> dict[str, str]:
        """The mistakes this checker names, ``{key: explanation}``: its known-wrong
        variants, then its property checks. Every checker also names ``in_place``
        (an input changed in place) and a wrong dtype (``dtype``, ``not_bool``)."""
        found = {m.key: m.explanation for m in self.mistakes}
        for key, explanation in self.property_diagnoses:
            found.setdefault(key, explanation)
        return found

    def hint(self) -> str:
        """A short hint: the formula, the axis."""
        return self.hint_text

    def solution(self) -> str:
        """The reference solution as runnable source, its imports included."""
        sources = [inspect.getsource(f) for f in self.solutions]
        body = "\n\n".join(re.sub(r"^def _", "def ", s, flags=re.M) for s in sources)
        return "import math\n\nimport torch\n\n\n" + body

    def solution_functions(self) -> tuple[Callable, ...]:
        """The functions that :meth:`solution`'s source defines, run as a reader
        would run it, in the order :meth:`check` takes them."""
        namespace: dict = {}
        exec(self.solution(), namespace)
        return tuple(namespace[f.split("(")[0]] for f in self.functions)

    def folded_solution(self) -> FoldedSolution:
        """The solution folded away: a notebook or the site shows a
        ``<details>`` block that unfolds on a click (or Enter)."""
        return FoldedSolution(self.title, self.solution())

    def check(self, *fns: Callable, quiet: bool = False) -> CheckResult:
        """Run ``fns`` (the functions of ``self.functions``, in order) on every case.

        Prints the message unless ``quiet``; returns a :class:`CheckResult`.
        """
        result = self._check(fns)
        if not quiet:
            print(result.message)
        return result

    def _check(self, fns: Sequence[Callable]) -> CheckResult:
        if len(fns) != len(self.functions) or not all(callable(f) for f in fns):
            raise TypeError(
                f"fns: expected {len(self.functions)} function(s), "
                f"{', '.join(self.functions)}; got {[type(f).__name__ for f in fns]}"
            )
        failing, errors, modified, dtypes = [], [], [], []
        cases = self.cases()
        for case in cases:
            expected = self.expected(case)
            args = _clone(case.args)
            try:
                actual = fns[case.function](*args)
            except Exception as error:  # the reader's code: report, never crash
                errors.append((case, error))
                continue
            if any(
                not torch.equal(a, b)
                for a, b in zip(_tensors(args), _tensors(case.args), strict=True)
            ):
                modified.append(case)
            if not _close(expected, actual, case.tol):
                failing.append((case, expected, actual))
                continue
            problem = _dtype_problem(expected, actual, self.outputs, self.strict_dtype)
            if problem:
                dtypes.append((case, problem))
        if errors:
            case, error = min(errors, key=lambda c: c[0].size)
            tip = next((t for s, t in self.error_tips if s in str(error)), "")
            message = (
                f"Not yet: {self._name(case)} raised "
                f"{type(error).__name__}: {error}{_your_line(error)}\n"
                f"  on the case: {case.label}"
                + (f"\n  Tip: {tip}" if tip else "")
                + (f"\n  ({len(errors)} of {len(cases)} cases raised)" if len(errors) > 1 else "")
            )
            return CheckResult(False, "error", message, case=case.label, error=error)
        if failing:
            return self._diagnose(failing, len(cases))
        if modified:
            return self._mistake(
                "in_place",
                "your function changed its inputs in place (an operation ending in _, "
                "such as masked_fill_, or an assignment into an argument): work on a "
                "new tensor (masked_fill, clone()) so the caller's tensors stay intact",
                modified[0],
            )
        if dtypes:
            case, problem = dtypes[0]
            key = "not_bool" if "boolean" in problem else "dtype"
            return self._mistake(key, problem[0].upper() + problem[1:], case)
        return CheckResult(True, "passed", self._success(cases))

    def _name(self, case: Case) -> str:
        return self.functions[case.function].split("(")[0]

    def _success(self, cases: list[Case]) -> str:
        tols = sorted({c.tol for c in cases}, reverse=True)
        tol = " / ".join(f"{t:g}" for t in tols)
        lines = "\n".join(f"  - {c.label}" for c in cases)
        return (
            f"Passed: {self.title}, {len(cases)} cases, all match {self.reference} "
            f"(to {tol}):\n{lines}"
        )

    def _mistake(self, key: str, explanation: str, case: Case, more: int = 0) -> CheckResult:
        others = f" (and {more} other failing case{'s' * (more > 1)})" if more else ""
        where = f"[mistake '{key}', seen on {case.label}{others}]"
        message = f"Not yet: {explanation.rstrip('.')}.\n  {where}"
        return CheckResult(False, "mistake", message, mistake=key, case=case.label)

    def _diagnose(self, failing: list, total: int) -> CheckResult:
        failing = sorted(failing, key=lambda f: f[0].size)
        # a mistake is named when its variants (one key may have several) explain
        # every failing case: a match on some cases only can be a coincidence
        for key in dict.fromkeys(m.key for m in self.mistakes):
            variants = [m for m in self.mistakes if m.key == key]
            explained = [
                next((m for m in variants if self._matches(m, case, actual)), None)
                for case, _, actual in failing
            ]
            if all(explained):
                return self._mistake(
                    key, explained[0].explanation, failing[0][0], len(failing) - 1
                )
        if self.properties is not None:
            for case, _, actual in failing:
                found = self.properties(case, actual)
                if found:
                    return self._mistake(*found, case, len(failing) - 1)
        case, expected, actual = failing[0]
        message = (
            f"Not yet: {len(failing)} of {total} cases differ from {self.reference}. "
            f"The smallest: {case.label}\n  "
            + _mismatch_detail(expected, actual, self.outputs)
            + f"\n  Hint: {self.hint_text}"
        )
        return CheckResult(False, "mismatch", message, case=case.label)

    @staticmethod
    def _matches(mistake: Mistake, case: Case, actual) -> bool:
        if mistake.function != case.function:
            return False
        try:
            with torch.no_grad():
                wrong = mistake.wrong(*_clone(case.args))
        except Exception:
            return False
        return wrong is not None and _close(wrong, actual, max(case.tol, mistake.tol))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(g: torch.Generator, *shape: int, dtype=torch.float32) -> Tensor:
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def _dt(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


# -- 1. scaled dot-product attention -----------------------------------------------------


def _scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k)) v, masked keys (mask False) excluded."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (..., Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)  # sums to 1 over the keys
    if mask is not None:
        weights = weights * mask  # a query with no allowed key gets zeros, not NaN
    return weights @ v, weights  # (..., Lq, Dv), (..., Lq, Lk)


def _softmax_variant(scores, mask, *, dim=-1, mode="fill", fill="min"):
    """The masked softmax, right or wrong in one of the classic ways."""
    if mask is None or mode == "none":
        return torch.softmax(scores, dim=dim)
    mask = mask.expand_as(scores)
    if mode == "inverted":
        mask = ~mask
    if mode == "after":
        return torch.softmax(scores, dim=dim) * mask
    if mode == "multiply":
        return torch.softmax(scores * mask, dim=dim)
    if mode == "naive_exp":
        e = scores.exp() * mask
        return e / e.sum(dim, keepdim=True)
    value = {"min": torch.finfo(scores.dtype).min, "-inf": -math.inf, "-1e9": -1e9}[fill]
    weights = torch.softmax(scores.masked_fill(~mask, value), dim=dim)
    return weights * mask if fill == "min" else weights


def _sdpa_variant(q, k, v, mask=None, *, scale="sqrt", swap=False, **softmax):
    dk = q.shape[-1]
    div = {"sqrt": math.sqrt(dk), "none": 1.0, "dk": float(dk)}[scale]
    weights = _softmax_variant(q @ k.transpose(-2, -1) / div, mask, **softmax)
    out = weights @ v
    return (weights, out) if swap else (out, weights)


def _needs_mask(mode: str):
    def wrong(q, k, v, mask=None):
        return None if mask is None else _sdpa_variant(q, k, v, mask, **_MODES[mode])

    return wrong


_MODES = {
    "inverted": {"mode": "inverted"},
    "inverted_uniform": {"mode": "inverted", "fill": "-1e9"},
    "inverted_nan": {"mode": "inverted", "fill": "-inf"},
    "after": {"mode": "after"},
    "multiply": {"mode": "multiply"},
    "nan": {"fill": "-inf"},
    "uniform": {"fill": "-1e9"},
    "naive_exp": {"mode": "naive_exp"},
}

_INVERTED = (
    "the mask is inverted: True must mean 'may attend' (PyTorch SDPA's convention); "
    "fill the scores where the mask is False, masked_fill(~mask, ...)"
)
_MASK_MISTAKES = {
    "mask_inverted": ("inverted", _INVERTED),
    "mask_after_softmax": (
        "after",
        "the mask was applied after the softmax, so the rows no longer sum to 1 over "
        "the allowed keys: fill the masked scores with -inf (or a very negative number) "
        "before the softmax",
    ),
    "mask_multiplied": (
        "multiply",
        "the scores were multiplied by the mask: a masked key gets score 0, which still "
        "gets weight; fill the masked scores with a very negative number "
        "(masked_fill(~mask, torch.finfo(dtype).min)) before the softmax",
    ),
    "nan_masked_rows": (
        "nan",
        "a fully masked row gives NaN: the softmax of a row of -inf is 0/0. Fill with a "
        "large finite negative (torch.finfo(scores.dtype).min) and multiply the weights by "
        "the mask after the softmax, so that a query with no allowed key gets zeros",
    ),
    "uniform_masked_rows": (
        "uniform",
        "a fully masked row gets uniform weights 1/Lk instead of zeros: after the softmax, "
        "multiply the weights by the mask (a query with no allowed key attends to nothing)",
    ),
}
# the inverted mask, however the reader fills: the same diagnosis
_MASK_VARIANTS = [
    *((key, mode) for key, (mode, _) in _MASK_MISTAKES.items()),
    ("mask_inverted", "inverted_uniform"),
    ("mask_inverted", "inverted_nan"),
]


# diagnoses from properties of the output, when no known-wrong variant matches
_NAN = (
    "nan",
    "your weights contain NaN: look for 0/0 (a row with no allowed key) or exp of "
    "a large score (subtract the row's max before exp, as torch.softmax does)",
)
_MASKED_WEIGHTED = (
    "masked_keys_weighted",
    "keys where the mask is False get a nonzero weight: fill their scores with a "
    "very negative number before the softmax and zero them after it",
)
_NOT_NORMALISED = (
    "not_normalised",
    "your weights do not sum to 1 over the keys (the last axis): "
    "use torch.softmax(scores, dim=-1)",
)
_OUTPUT_NOT_WV = (
    "output_not_weights_times_values",
    "your weights are right but the output is not weights @ v "
    "(a (Lq, Lk) by (Lk, Dv) matrix product per batch)",
)
_NOT_SORTED = (
    "not_sorted",
    "you kept the right continuations but not best first: sort by score, descending (topk does)",
)
_WEIGHT_PROPERTIES = (_NAN, _MASKED_WEIGHTED, _NOT_NORMALISED)


def _weights_properties(weights: Tensor, mask: Tensor | None) -> tuple[str, str] | None:
    if not isinstance(weights, Tensor) or not weights.is_floating_point():
        return None
    w = weights.detach().to(torch.float64)
    if torch.isnan(w).any():
        return _NAN
    allowed = torch.ones_like(w, dtype=torch.bool) if mask is None else mask.expand_as(w)
    if (w.masked_select(~allowed).abs() > 1e-6).any():
        return _MASKED_WEIGHTED
    rows = allowed.any(-1)
    sums = w.sum(-1)
    if not torch.allclose(sums[rows], torch.ones_like(sums[rows]), atol=1e-4):
        return _NOT_NORMALISED
    return None


def _sdpa_cases() -> list[Case]:
    g = _gen(0)
    cases = []

    def add(label, lq, lk, d, dv, batch, mask, dtype):
        q = _randn(g, *batch, lq, d, dtype=dtype)
        k = _randn(g, *batch, lk, d, dtype=dtype)
        v = _randn(g, *batch, lk, dv, dtype=dtype)
        shapes = f"q {_shape(q)}, k {_shape(k)}, v {_shape(v)}"
        mask_text = "no mask" if mask is None else f"mask {_shape(mask)} {label}"
        cases.append(Case(f"{shapes}, {mask_text}, {_dt(dtype)}", (q, k, v, mask), 0, _TOL[dtype]))

    add("", 3, 5, 4, 6, (2,), None, torch.float32)
    add("", 1, 4, 8, 3, (2,), None, torch.float64)
    add("", 3, 1, 4, 2, (1,), None, torch.float32)  # one key
    padding = torch.tensor([[True, True, True, False, False], [True, True, True, True, False]])
    add(
        "(padding, broadcast over the queries)",
        3,
        5,
        4,
        4,
        (2,),
        padding[:, None, :],
        torch.float64,
    )
    add(
        "(causal, broadcast over batch and heads)",
        4,
        4,
        8,
        8,
        (2, 2),
        _library_causal_mask(4),
        torch.float32,
    )
    full = torch.tensor([[True, False, True, True], [False] * 4, [False, False, True, False]])
    add("(the second query has no allowed key)", 3, 4, 4, 5, (2,), full, torch.float64)
    return cases


def _sdpa_expected(case: Case):
    q, k, v, mask = case.args
    return AF.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _sdpa_properties(case: Case, actual) -> tuple[str, str] | None:
    q, k, v, mask = case.args
    if not isinstance(actual, (tuple, list)) or len(actual) != 2:
        return None
    out, weights = actual
    found = _weights_properties(weights, mask)
    if found:
        return found
    _, expected_weights = _sdpa_expected(case)
    if _close(expected_weights, weights, case.tol) and isinstance(out, Tensor):
        return _OUTPUT_NOT_WV
    return None


def _sdpa_mistakes() -> list[Mistake]:
    mistakes = [
        Mistake(
            "softmax_axis",
            "your weights sum to 1 over the queries, not the keys: take the softmax over "
            "the last axis (torch.softmax(scores, dim=-1))",
            lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, dim=-2),
        ),
        Mistake(
            "no_scale",
            "the scores are not divided by sqrt(d_k): scores = q @ k.transpose(-2, -1) / "
            "math.sqrt(q.shape[-1])",
            lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, scale="none"),
        ),
        Mistake(
            "scale_by_dk",
            "the scores are divided by d_k instead of sqrt(d_k)",
            lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, scale="dk"),
        ),
        Mistake(
            "outputs_swapped",
            "you returned (weights, output); the order is (output, weights)",
            lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, swap=True),
        ),
    ]
    for key, mode in _MASK_VARIANTS:
        mistakes.append(Mistake(key, _MASK_MISTAKES[key][1], _needs_mask(mode)))
    return mistakes


scaled_dot_product = Exercise(
    name="scaled_dot_product",
    title="scaled dot-product attention",
    functions=("scaled_dot_product_attention(q, k, v, mask=None) -> (output, weights)",),
    reference="attnlib.functional.scaled_dot_product_attention",
    make_cases=_sdpa_cases,
    expected=_sdpa_expected,
    mistakes=_sdpa_mistakes(),
    hint_text=(
        "weights = softmax(q @ k^T / sqrt(d_k)) over the last axis (the keys); masked "
        "scores (mask False) are filled with a very negative number before the softmax and "
        "the weights multiplied by the mask after it; output = weights @ v"
    ),
    solutions=(_scaled_dot_product_attention,),
    outputs=("output", "weights"),
    properties=_sdpa_properties,
    property_diagnoses=(*_WEIGHT_PROPERTIES, _OUTPUT_NOT_WV),
    error_tips=(
        ("must match the size", "k.transpose(-2, -1) swaps the last two axes of k only"),
        (
            "Expected size for first two dimensions",
            "k.T reverses every axis of a batched tensor: use k.transpose(-2, -1)",
        ),
        ("bitwise_not", "the mask is boolean: ~mask, not -mask or 1 - mask"),
        ("Subtraction, the `-` operator", "the mask is boolean: use ~mask, not 1 - mask"),
    ),
)


# -- 2. masked softmax -------------------------------------------------------------------


def _masked_softmax(scores, mask):
    """Softmax over the last axis; keys where mask is False get 0; an empty row gets 0."""
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=-1) * mask


def _softmax_cases() -> list[Case]:
    g = _gen(1)
    cases = []

    def add(label, scores, mask):
        text = f"scores {_shape(scores)}, mask {_shape(mask)} {label}, {_dt(scores.dtype)}"
        cases.append(Case(text, (scores, mask), 0, _TOL[scores.dtype]))

    add("(one key)", _randn(g, 1, 1), torch.ones(1, 1, dtype=torch.bool))
    add("(all allowed)", _randn(g, 2, 4, dtype=torch.float64), torch.ones(2, 4, dtype=torch.bool))
    padding = torch.tensor([[True, True, False, False, True]])
    add("(broadcast over the rows)", _randn(g, 2, 3, 5), padding)
    full = torch.tensor([[True, False, True], [False, False, False], [False, True, False]])
    add("(the second row fully masked)", _randn(g, 3, 3, dtype=torch.float64), full)
    add(
        "(causal; scores about 100: exp overflows in float32)",
        _randn(g, 4, 4) * 10 + 100,
        _library_causal_mask(4),
    )
    return cases


def _softmax_mistakes() -> list[Mistake]:
    mistakes = [
        Mistake(
            "softmax_axis",
            "your weights sum to 1 over the rows (the queries), not over the last axis "
            "(the keys): torch.softmax(..., dim=-1)",
            lambda s, m: _softmax_variant(s, m, dim=-2) if s.dim() > 1 else None,
        ),
        Mistake(
            "softmax_axis",
            "your weights sum to 1 over the first axis, not over the last axis "
            "(the keys): torch.softmax(..., dim=-1)",
            lambda s, m: _softmax_variant(s, m, dim=0) if s.dim() > 2 else None,
        ),
    ]
    for key, mode in _MASK_VARIANTS:
        mistakes.append(
            Mistake(
                key,
                _MASK_MISTAKES[key][1],
                lambda s, m, mode=mode: _softmax_variant(s, m, **_MODES[mode]),
            )
        )
    mistakes.append(
        Mistake(
            "unstable_exp",
            "exp(scores) / sum(exp(scores)) overflows for large scores (exp(100) is inf in "
            "float32): subtract each row's max first, or use torch.softmax",
            lambda s, m: _softmax_variant(s, m, **_MODES["naive_exp"]),
        )
    )
    return mistakes


masked_softmax = Exercise(
    name="masked_softmax",
    title="masked softmax",
    functions=("masked_softmax(scores, mask) -> weights",),
    reference="attnlib.functional.masked_softmax",
    make_cases=_softmax_cases,
    expected=lambda case: AF.masked_softmax(*case.args),
    mistakes=_softmax_mistakes(),
    hint_text=(
        "fill the scores where mask is False with torch.finfo(scores.dtype).min, take "
        "torch.softmax over the last axis, then multiply by the mask (a fully masked row "
        "becomes zeros, not NaN)"
    ),
    solutions=(_masked_softmax,),
    outputs=("weights",),
    properties=lambda case, actual: _weights_properties(actual, case.args[1]),
    property_diagnoses=_WEIGHT_PROPERTIES,
    error_tips=(("bitwise_not", "the mask is boolean: ~mask, not -mask or 1 - mask"),),
)


# -- 3. the causal mask ------------------------------------------------------------------


def _causal_mask(n):
    """(n, n) boolean, True = may attend: query i sees keys 0..i."""
    return torch.ones(n, n, dtype=torch.bool).tril()


def _ones(n: int) -> Tensor:
    return torch.ones(n, n, dtype=torch.bool)


causal_mask = Exercise(
    name="causal_mask",
    title="the causal mask",
    functions=("causal_mask(n) -> (n, n) bool",),
    reference="attnlib.masks.causal_mask",
    make_cases=lambda: [Case(f"n = {n}", (n,)) for n in (1, 2, 3, 5, 8)],
    expected=lambda case: _library_causal_mask(*case.args),
    mistakes=[
        Mistake(
            "off_by_one_self",
            "the causal mask is off by one: a token cannot see itself (the diagonal must "
            "be True): tril(), not tril(-1)",
            lambda n: _ones(n).tril(-1),
        ),
        Mistake(
            "off_by_one_next",
            "the causal mask is off by one: a token sees the next token: tril(), not tril(1)",
            lambda n: _ones(n).tril(1),
        ),
        Mistake(
            "inverted",
            "the mask is inverted: True marks the future (the 'masked' convention of "
            "torch.nn.Transformer's boolean masks); here True must mean 'may attend': "
            "tril(), or ~ of yours",
            lambda n: _ones(n).triu(1),
        ),
        Mistake(
            "upper",
            "query i sees keys i..n-1 (the future) instead of 0..i: use tril (lower "
            "triangle: row = query, column = key), not triu",
            lambda n: _ones(n).triu(),
        ),
        Mistake(
            "additive",
            "you returned an additive mask (0 where allowed, -inf where not); this "
            "exercise asks for a boolean mask, True = may attend",
            lambda n: torch.zeros(n, n).masked_fill(~_ones(n).tril(), -math.inf),
        ),
    ],
    hint_text=(
        "row i is query i, column j is key j; query i may attend to keys j <= i: "
        "the lower triangle, diagonal included (torch.tril of a boolean ones matrix)"
    ),
    solutions=(_causal_mask,),
    outputs=("mask",),
)


# -- 4. splitting and merging heads ------------------------------------------------------


def _split_heads(x, num_heads):
    """(B, L, D) -> (B, H, L, D/H): head h gets features h*D/H .. (h+1)*D/H - 1."""
    b, n, d = x.shape
    return x.reshape(b, n, num_heads, d // num_heads).transpose(1, 2)


def _merge_heads(x):
    """(B, H, L, D/H) -> (B, L, D), the inverse of split_heads."""
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


def _heads_cases() -> list[Case]:
    g = _gen(3)
    cases = []
    for shape, h, dtype in (
        ((2, 3, 8), 2, torch.float32),
        ((1, 5, 12), 3, torch.float64),
        ((2, 4, 6), 1, torch.float32),
        ((1, 1, 4), 4, torch.float64),
    ):
        x = _randn(g, *shape, dtype=dtype)
        label = f"split_heads(x {_shape(x)}, num_heads={h}), {_dt(dtype)}"
        cases.append(Case(label, (x, h), 0, _TOL[dtype]))
    for shape, dtype in (
        ((2, 2, 3, 4), torch.float32),
        ((1, 3, 5, 2), torch.float64),
        ((2, 1, 4, 6), torch.float32),
    ):
        x = _randn(g, *shape, dtype=dtype)
        cases.append(Case(f"merge_heads(x {_shape(x)}), {_dt(dtype)}", (x,), 1, _TOL[dtype]))
    return cases


def _heads_expected(case: Case):
    if case.function == 0:
        return AF.split_heads(*case.args)
    return AF.merge_heads(*case.args)


heads = Exercise(
    name="heads",
    title="splitting and merging heads",
    functions=("split_heads(x, num_heads) -> (B, H, L, D/H)", "merge_heads(x) -> (B, L, D)"),
    reference="attnlib.functional.split_heads / merge_heads",
    make_cases=_heads_cases,
    expected=_heads_expected,
    mistakes=[
        Mistake(
            "split_mixes_positions",
            "heads were split with a reshape that mixes positions (reshape(B, H, L, Dh) "
            "instead of reshape(B, L, H, Dh).transpose(1, 2)): each head must keep every "
            "position, with its own block of features",
            lambda x, h: x.reshape(x.shape[0], h, x.shape[1], x.shape[2] // h),
        ),
        Mistake(
            "split_no_transpose",
            "the heads are on axis 2, (B, L, H, Dh): add .transpose(1, 2) to get (B, H, L, Dh)",
            lambda x, h: x.reshape(x.shape[0], x.shape[1], h, x.shape[2] // h),
        ),
        Mistake(
            "split_strided",
            "head i got features i, i+H, i+2H, ... instead of the block i*Dh .. (i+1)*Dh - 1: "
            "reshape to (B, L, H, Dh), not (B, L, Dh, H)",
            lambda x, h: x.reshape(x.shape[0], x.shape[1], x.shape[2] // h, h).permute(0, 3, 1, 2),
        ),
        Mistake(
            "merge_mixes_positions",
            "heads were merged with a reshape that mixes positions (reshape(B, L, D) of "
            "(B, H, L, Dh)): transpose(1, 2) back to (B, L, H, Dh) first, then reshape",
            lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]),
            1,
        ),
        Mistake(
            "merge_strided",
            "the heads' features were interleaved (feature order Dh, H): the merged "
            "features must be head 0's block, then head 1's, ...: transpose(1, 2) then "
            "reshape(B, L, H * Dh)",
            lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
            1,
        ),
    ],
    hint_text=(
        "split: (B, L, D) -> reshape (B, L, H, D/H) -> transpose(1, 2); merge: the reverse, "
        "transpose(1, 2) then reshape(B, L, D) (reshape, not view: the transpose is not "
        "contiguous)"
    ),
    solutions=(_split_heads, _merge_heads),
    error_tips=(
        (
            "view size is not compatible",
            "after a transpose the tensor is not contiguous: use .reshape (or .contiguous().view)",
        ),
    ),
)


# -- 5. multi-head attention -------------------------------------------------------------


def _multi_head_attention(query, key, value, params, num_heads, mask=None):
    """Project, split into heads, attend per head, merge, project (Vaswani et al., 2017)."""
    b, lq, d = query.shape
    dh = d // num_heads

    def heads(x, w, bias):  # (B, L, D) -> (B, H, L, Dh)
        x = x @ w.T + bias  # nn.Linear stores (out, in)
        return x.reshape(b, x.shape[1], num_heads, dh).transpose(1, 2)

    q = heads(query, params["w_q"], params["b_q"])  # (B, H, Lq, Dh)
    k = heads(key, params["w_k"], params["b_k"])  # (B, H, Lk, Dh)
    v = heads(value, params["w_v"], params["b_v"])  # (B, H, Lk, Dh)
    scores = q @ k.transpose(-2, -1) / math.sqrt(dh)  # (B, H, Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    out = (weights @ v).transpose(1, 2).reshape(b, lq, d)  # (B, Lq, D)
    return out @ params["w_o"].T + params["b_o"], weights


def _mha_variant(
    query,
    key,
    value,
    params,
    num_heads,
    mask=None,
    *,
    split="right",
    merge="right",
    scale="head",
    linear="right",
    out_proj=True,
    average=False,
    **softmax,
):
    b, lq, d = query.shape
    dh = d // num_heads

    def project(x, name):
        w, bias = params["w_" + name], params["b_" + name]
        return (x @ w if linear == "transposed" else x @ w.T) + bias

    def heads(x):
        if split == "mixes":
            return x.reshape(b, num_heads, x.shape[1], dh)
        return x.reshape(b, x.shape[1], num_heads, dh).transpose(1, 2)

    q, k, v = (heads(project(x, n)) for x, n in ((query, "q"), (key, "k"), (value, "v")))
    div = {"head": math.sqrt(dh), "model": math.sqrt(d), "none": 1.0}[scale]
    weights = _softmax_variant(q @ k.transpose(-2, -1) / div, mask, **softmax)
    out = weights @ v  # (B, H, Lq, Dh)
    out = out.reshape(b, lq, d) if merge == "mixes" else out.transpose(1, 2).reshape(b, lq, d)
    if out_proj:
        out = project(out, "o")
    return out, weights.mean(1) if average else weights


def _mha_cases() -> list[Case]:
    g = _gen(5)
    cases = []

    def add(b, lq, lk, d, h, mask, label, dtype):
        params = {}
        for name in "qkvo":
            params["w_" + name] = _randn(g, d, d, dtype=dtype) / math.sqrt(d)
            params["b_" + name] = _randn(g, d, dtype=dtype) * 0.1
        query = _randn(g, b, lq, d, dtype=dtype)
        key = _randn(g, b, lk, d, dtype=dtype)
        value = _randn(g, b, lk, d, dtype=dtype)
        mask_text = "no mask" if mask is None else f"mask {_shape(mask)} {label}"
        text = (
            f"query {_shape(query)}, key and value {_shape(key)}, num_heads={h}, "
            f"{mask_text}, {_dt(dtype)}"
        )
        cases.append(Case(text, (query, key, value, params, h, mask), 0, _TOL[dtype]))

    add(2, 3, 5, 8, 2, None, "", torch.float32)
    add(1, 4, 4, 6, 1, None, "", torch.float64)  # one head
    add(2, 4, 4, 12, 3, _library_causal_mask(4), "(causal)", torch.float64)
    padding = torch.tensor([[True, True, False], [True, True, True]])[:, None, None, :]
    add(2, 2, 3, 8, 4, padding, "(key padding)", torch.float32)
    full = torch.tensor([[True, True], [False, False]])
    add(1, 2, 2, 4, 2, full, "(the second query has no allowed key)", torch.float64)
    return cases


def _mha_expected(case: Case):
    """torch.nn.MultiheadAttention with the weights copied; for a query with no
    allowed key (NaN in PyTorch) attnlib's convention, zeros, via attnlib.functional."""
    query, key, value, params, h, mask = case.args
    b, lq, d = query.shape
    lk = key.shape[1]
    if mask is not None and not mask.expand(b, h, lq, lk).any(-1).all():
        q, k, v = (
            F.linear(x, params["w_" + n], params["b_" + n])
            for x, n in ((query, "q"), (key, "k"), (value, "v"))
        )
        out, weights = AF.multi_head_attention(q, k, v, h, mask)
        return F.linear(out, params["w_o"], params["b_o"]), weights
    mha = torch.nn.MultiheadAttention(d, h, batch_first=True, dtype=query.dtype)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([params["w_q"], params["w_k"], params["w_v"]]))
        mha.in_proj_bias.copy_(torch.cat([params["b_q"], params["b_k"], params["b_v"]]))
        mha.out_proj.weight.copy_(params["w_o"])
        mha.out_proj.bias.copy_(params["b_o"])
        attn_mask = None
        if mask is not None:  # PyTorch's boolean masks: True = may NOT attend
            attn_mask = ~mask.expand(b, h, lq, lk).reshape(b * h, lq, lk)
        out, weights = mha(
            query, key, value, attn_mask=attn_mask, need_weights=True, average_attn_weights=False
        )
    return out, weights


def _mha(**options):
    return lambda *args: _mha_variant(*args, **options)


def _mha_masked(mode):
    def wrong(query, key, value, params, num_heads, mask=None):
        if mask is None:
            return None
        return _mha_variant(query, key, value, params, num_heads, mask, **_MODES[mode])

    return wrong


def _mha_mistakes() -> list[Mistake]:
    mistakes = [
        Mistake(
            "scale_by_model_dim",
            "the scores are divided by sqrt(d_model); per head d_k = d_model / num_heads, "
            "so divide by sqrt(d_model / num_heads)",
            _mha(scale="model"),
        ),
        Mistake(
            "no_scale",
            "the scores are not divided by sqrt(d_k), d_k = d_model / num_heads",
            _mha(scale="none"),
        ),
        Mistake(
            "softmax_axis",
            "your weights sum to 1 over the queries, not the keys: softmax over the last "
            "axis (dim=-1)",
            _mha(dim=-2),
        ),
        Mistake(
            "split_mixes_positions",
            "heads were split with a reshape that mixes positions (reshape(B, H, L, Dh) "
            "instead of reshape(B, L, H, Dh).transpose(1, 2))",
            _mha(split="mixes"),
        ),
        Mistake(
            "merge_mixes_positions",
            "heads were merged with a reshape that mixes positions: transpose(1, 2) back "
            "to (B, L, H, Dh) before reshape(B, L, D)",
            _mha(merge="mixes"),
        ),
        Mistake(
            "weight_not_transposed",
            "the projections use x @ w; nn.Linear (and these params) store w as (out, in): "
            "use x @ w.T + b, or F.linear(x, w, b)",
            _mha(linear="transposed"),
        ),
        Mistake(
            "no_output_projection",
            "the output projection is missing: after merging the heads, apply @ w_o.T + b_o",
            _mha(out_proj=False),
        ),
        Mistake(
            "weights_averaged",
            "your weights are averaged over the heads (B, Lq, Lk); return one map per "
            "head, (B, H, Lq, Lk)",
            _mha(average=True),
        ),
    ]
    for key, mode in _MASK_VARIANTS:
        if key != "mask_multiplied":
            mistakes.append(Mistake(key, _MASK_MISTAKES[key][1], _mha_masked(mode)))
    return mistakes


def _mha_properties(case: Case, actual) -> tuple[str, str] | None:
    if not isinstance(actual, (tuple, list)) or len(actual) != 2:
        return None
    return _weights_properties(actual[1], case.args[5])


multi_head = Exercise(
    name="multi_head",
    title="multi-head attention",
    functions=(
        "multi_head_attention(query, key, value, params, num_heads, mask=None) "
        "-> (output (B, Lq, D), weights (B, H, Lq, Lk)); params: a dict of w_q, b_q, w_k, "
        "b_k, w_v, b_v, w_o, b_o, each w (D, D) used as x @ w.T + b",
    ),
    reference="torch.nn.MultiheadAttention with the same weights",
    make_cases=_mha_cases,
    expected=_mha_expected,
    mistakes=_mha_mistakes(),
    hint_text=(
        "project (x @ w.T + b), split each of q, k, v into heads (reshape(B, L, H, D/H)."
        "transpose(1, 2)), scaled dot-product attention per head with d_k = D/H, merge "
        "(transpose(1, 2).reshape(B, Lq, D)), then the output projection"
    ),
    solutions=(_multi_head_attention,),
    outputs=("output", "weights"),
    properties=_mha_properties,
    property_diagnoses=_WEIGHT_PROPERTIES,
    error_tips=(
        (
            "view size is not compatible",
            "after a transpose the tensor is not contiguous: use .reshape",
        ),
    ),
)


# -- 6. sinusoidal positional encoding ---------------------------------------------------


def _sinusoidal_encoding(length, d_model):
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(same); (L, D)."""
    pos = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (D/2,)
    angle = pos / 10000 ** (two_i / d_model)  # (L, D/2)
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    return table.float()


def _pe_variant(length, d_model, *, exponent="2i", swap=False, halves=False, sign=-1, start=0):
    pos = torch.arange(start, start + length, dtype=torch.float64)[:, None]
    i = torch.arange(d_model // 2, dtype=torch.float64)
    if exponent == "column":  # each column its own frequency
        col = torch.arange(d_model, dtype=torch.float64)
        angle = pos * 10000.0 ** (sign * col / d_model)  # (L, D)
        even, odd = torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])
    else:
        power = (2 * i if exponent == "2i" else i) / d_model
        angle = pos * 10000.0 ** (sign * power)  # (L, D/2)
        even, odd = torch.sin(angle), torch.cos(angle)
    if swap:
        even, odd = odd, even
    if halves:
        return torch.cat([even, odd], -1)
    table = torch.zeros(length, d_model, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = even, odd
    return table


sinusoidal = Exercise(
    name="sinusoidal",
    title="sinusoidal positional encoding",
    functions=("sinusoidal_encoding(length, d_model) -> (L, D)",),
    reference="attnlib.positional.sinusoidal_encoding (Vaswani et al., 2017, section 3.5)",
    make_cases=lambda: [
        Case(f"length={n}, d_model={d}", (n, d)) for n, d in ((1, 2), (4, 8), (6, 4), (50, 16))
    ],
    expected=lambda case: _library_sinusoidal(*case.args, dtype=torch.float64),
    mistakes=[
        Mistake(
            "sin_cos_swapped",
            "sin and cos are swapped: even columns (2i) get sin, odd columns (2i+1) get cos",
            lambda n, d: _pe_variant(n, d, swap=True),
        ),
        Mistake(
            "frequency_uses_i",
            "the frequencies use i instead of 2i: column pair i has angle "
            "pos / 10000^(2i/d_model)",
            lambda n, d: _pe_variant(n, d, exponent="i"),
        ),
        Mistake(
            "frequency_per_column",
            "each column got its own frequency (10000^(c/d_model) for column c): the cos "
            "column 2i+1 shares the frequency of the sin column 2i, 10000^(2i/d_model)",
            lambda n, d: _pe_variant(n, d, exponent="column"),
        ),
        Mistake(
            "halves",
            "sin and cos are in two halves (all sines, then all cosines); Vaswani et al. "
            "interleave them: sin in the even columns, cos in the odd ones",
            lambda n, d: _pe_variant(n, d, halves=True),
        ),
        Mistake(
            "exponent_sign",
            "the position is multiplied by 10000^(2i/d_model) instead of divided by it: "
            "the frequencies must fall from 1 to 1/10000",
            lambda n, d: _pe_variant(n, d, sign=1),
            tol=0.05,  # angles up to 1e5 rad: float32 sines drift by 1e-2
        ),
        Mistake(
            "positions_from_one",
            "the positions start at 1; they start at 0 (row 0 is sin 0 = 0, cos 0 = 1)",
            lambda n, d: _pe_variant(n, d, start=1),
        ),
    ],
    hint_text=(
        "PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), PE[pos, 2i+1] = cos(pos / "
        "10000^(2i/d_model)), pos = 0 .. length-1; build the angles (L, D/2) by "
        "broadcasting a column of positions against a row of frequencies"
    ),
    solutions=(_sinusoidal_encoding,),
    outputs=("encoding",),
    strict_dtype=False,
)


# -- 7. one step of beam search ----------------------------------------------------------


def _beam_step(log_probs, scores, k):
    """The k best continuations over all (beam, token) pairs, best first."""
    vocab = log_probs.shape[-1]
    total = scores[:, None] + log_probs  # (K, V): log p(beam) + log p(token | beam)
    new_scores, flat = total.flatten().topk(k)  # best first
    return new_scores, flat // vocab, flat % vocab


def _beam_expected(case: Case):
    """The selection of attnlib.decoding.beam_search: one input, its beams flattened."""
    log_probs, scores, k = case.args
    vocab = log_probs.shape[-1]
    total = (scores.reshape(-1, 1) + log_probs).view(1, -1)
    top, flat = total.topk(k, -1)
    return top[0], flat[0] // vocab, flat[0] % vocab


def _beam_cases() -> list[Case]:
    g = _gen(7)
    cases = []

    def add(beams, vocab, k, scores, label, dtype):
        log_probs = torch.log_softmax(_randn(g, beams, vocab, dtype=dtype) * 2, -1)
        text = (
            f"log_probs {_shape(log_probs)}, scores {[round(s, 2) for s in scores.tolist()]}"
            f"{label}, k={k}, {_dt(dtype)}"
        )
        cases.append(Case(text, (log_probs, scores.to(dtype), k), 0, _TOL[dtype]))

    add(1, 5, 3, torch.tensor([0.0]), " (the first step)", torch.float32)
    add(2, 4, 2, torch.tensor([-0.5, -3.0]), "", torch.float64)
    add(3, 6, 3, torch.tensor([-1.0, -1.2, -4.0]), "", torch.float32)
    add(2, 3, 1, torch.tensor([-2.0, -0.1]), " (greedy)", torch.float64)
    add(3, 5, 3, torch.tensor([0.0, -math.inf, -math.inf]), " (one live beam)", torch.float64)
    add(4, 8, 4, torch.tensor([-0.3, -0.4, -2.5, -2.6]), "", torch.float32)
    return cases


def _beam_flat(log_probs, scores, k, *, total="add", rank=None, decode="right", largest=True):
    beams, vocab = log_probs.shape
    totals = {
        "add": scores[:, None] + log_probs,
        "multiply": scores[:, None] * log_probs,
        "log_probs": log_probs,
    }
    top, flat = totals[rank or total].flatten().topk(k, largest=largest)
    if decode == "swapped":
        return top, flat % vocab, flat // vocab
    if decode == "beams":
        return top, flat // beams, flat % beams
    beam, token = flat // vocab, flat % vocab
    return totals[total][beam, token], beam, token


def _beam_per_beam(log_probs, scores, k):
    best, token = (scores[:, None] + log_probs).max(-1)  # each beam's own best token
    order = best.argsort(descending=True)[:k]
    return best[order], order, token[order]


def _beam_properties(case: Case, actual) -> tuple[str, str] | None:
    if not isinstance(actual, (tuple, list)) or len(actual) != 3:
        return None
    if not all(isinstance(a, Tensor) for a in actual):
        return None
    expected = _beam_expected(case)
    best_first = [(int(b), int(t)) for b, t in zip(expected[1], expected[2], strict=True)]
    pairs = set(best_first)
    try:
        in_order = [(int(b), int(t)) for b, t in zip(actual[1], actual[2], strict=True)]
    except (TypeError, ValueError, RuntimeError):
        return None
    if set(in_order) == pairs and len(in_order) == len(pairs) and in_order != best_first:
        return _NOT_SORTED
    return None


beam_step = Exercise(
    name="beam_step",
    title="one step of beam search",
    functions=(
        "beam_step(log_probs (K, V), scores (K,), k) -> (new_scores (k,), beam (k,), "
        "token (k,)): the k best continuations over all (beam, token) pairs, best first; "
        "new_scores = scores[beam] + log_probs[beam, token]; beam and token are integers",
    ),
    reference="the candidate selection of attnlib.decoding.beam_search (topk over K * V)",
    make_cases=_beam_cases,
    expected=_beam_expected,
    mistakes=[
        Mistake(
            "per_beam",
            "the beam kept the best tokens of each beam instead of the best continuations "
            "overall: rank all K * V (beam, token) pairs together (flatten, then topk); a "
            "beam can have several children, or none",
            _beam_per_beam,
        ),
        Mistake(
            "scores_not_added",
            "the candidates were ranked by the next token's log-probability alone: add each "
            "beam's score first, total = scores[:, None] + log_probs",
            lambda lp, s, k: _beam_flat(lp, s, k, rank="log_probs"),
        ),
        Mistake(
            "scores_not_added",
            "the new scores are the next token's log-probability alone: add each "
            "beam's score, total = scores[:, None] + log_probs",
            lambda lp, s, k: _beam_flat(lp, s, k, total="log_probs"),
        ),
        Mistake(
            "scores_multiplied",
            "the log-probabilities were multiplied; log-probabilities add "
            "(p(beam) * p(token | beam) in probabilities)",
            lambda lp, s, k: _beam_flat(lp, s, k, total="multiply"),
        ),
        Mistake(
            "flat_index",
            "the flat index was decoded the wrong way: for total.flatten() of K * V "
            "candidates, beam = index // V and token = index % V",
            lambda lp, s, k: _beam_flat(lp, s, k, decode="swapped"),
        ),
        Mistake(
            "flat_index",
            "the flat index was decoded with the number of beams: for total.flatten() of "
            "K * V candidates, beam = index // V and token = index % V (V, the vocabulary)",
            lambda lp, s, k: _beam_flat(lp, s, k, decode="beams"),
        ),
        Mistake(
            "smallest",
            "you kept the worst continuations: log-probabilities are <= 0 and higher is "
            "better, topk(k) (largest=True)",
            lambda lp, s, k: _beam_flat(lp, s, k, largest=False),
        ),
    ],
    hint_text=(
        "total = scores[:, None] + log_probs (K, V); new_scores, index = "
        "total.flatten().topk(k); beam = index // V, token = index % V"
    ),
    solutions=(_beam_step,),
    outputs=("new_scores", "beam", "token"),
    properties=_beam_properties,
    property_diagnoses=(_NOT_SORTED,),
)


# -- 8. attention rollout ----------------------------------------------------------------


def _attention_rollout(weights):
    """Abnar and Zuidema (2020): R = A_L ... A_1, A_l = rownorm(mean_heads / 2 + I / 2)."""
    length = weights.shape[-1]
    eye = torch.eye(length, dtype=weights.dtype)
    rollout = eye
    for layer in weights:  # (H, L, L), first layer first
        a = 0.5 * layer.mean(0) + 0.5 * eye  # the residual connection
        a = a / a.sum(-1, keepdim=True)
        rollout = a @ rollout  # the later layer on the left
    return rollout


def _rollout_variant(weights, *, residual="half", fusion="mean", order="right", heads=False):
    w = weights.to(torch.float64)
    eye = torch.eye(w.shape[-1], dtype=w.dtype)
    a = w if heads else (w.sum(1) if fusion == "sum" else w.mean(1))  # (layers, [H,] L, L)
    if residual == "half":
        a = 0.5 * a + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
    elif residual == "unnormalised":
        a = a + eye
    elif residual == "sum":
        a = a + eye
        a = a / a.sum(-1, keepdim=True)
    rollout = a[0]
    for layer in a[1:]:
        rollout = rollout @ layer if order == "wrong" else layer @ rollout
    return rollout


def _rollout_cases() -> list[Case]:
    g = _gen(8)
    cases = []
    for layers, h, n, causal, dtype in (
        (1, 1, 3, False, torch.float64),
        (2, 2, 4, False, torch.float32),
        (3, 4, 5, True, torch.float64),
        (2, 3, 1, False, torch.float32),
        (4, 2, 6, False, torch.float64),
    ):
        scores = _randn(g, layers, h, n, n, dtype=dtype) * 2
        mask = _library_causal_mask(n) if causal else None
        weights = _masked_softmax(scores, mask) if causal else torch.softmax(scores, -1)
        label = f"weights {_shape(weights)}{' (causal)' if causal else ''}, {_dt(dtype)}"
        cases.append(Case(label, (weights,), 0, _TOL[dtype]))
    return cases


rollout = Exercise(
    name="rollout",
    title="attention rollout",
    functions=("attention_rollout(weights (layers, H, L, L)) -> (L, L)",),
    reference="attnlib.interpret.relevance.attention_rollout (Abnar and Zuidema, 2020)",
    make_cases=_rollout_cases,
    expected=lambda case: _library_rollout(*case.args),
    mistakes=[
        Mistake(
            "no_residual",
            "the residual connection is missing: each layer's map is 0.5 * A + 0.5 * I "
            "(then rows normalised), not A alone",
            lambda w: _rollout_variant(w, residual="none"),
        ),
        Mistake(
            "not_renormalised",
            "A + I was not renormalised: its rows sum to 2, and the product's to "
            "2^layers; use 0.5 * A + 0.5 * I and divide each row by its sum",
            lambda w: _rollout_variant(w, residual="unnormalised"),
        ),
        Mistake(
            "wrong_order",
            "the layers are multiplied in the wrong order: the later layer goes on the "
            "left, R = A_L ... A_2 A_1 (rollout = a @ rollout)",
            lambda w: _rollout_variant(w, order="wrong"),
        ),
        Mistake(
            "heads_summed",
            "the heads were summed, not averaged, before adding the identity: the "
            "residual then weighs 1/(H+1), not 1/2; use weights.mean(1)",
            lambda w: _rollout_variant(w, fusion="sum", residual="sum"),
        ),
        Mistake(
            "per_head",
            "your rollout keeps a map per head (H, L, L): average the heads of each layer "
            "first (weights.mean(1)), then roll out",
            lambda w: _rollout_variant(w, heads=True),
        ),
        Mistake(
            "transposed",
            "your rollout is transposed: R[i, j] is the share of input token j in the "
            "output at position i, so rows (not columns) sum to 1",
            lambda w: _rollout_variant(w).T,
        ),
    ],
    hint_text=(
        "per layer: A = weights[l].mean(0) (the heads), A = 0.5 * A + 0.5 * I, rows "
        "normalised; then R = A_L @ ... @ A_1 (start with the first layer, multiply each "
        "later one on the left)"
    ),
    solutions=(_attention_rollout,),
    outputs=("rollout",),
    strict_dtype=False,
)


EXERCISES: dict[str, Exercise] = {
    ex.name: ex
    for ex in (
        scaled_dot_product,
        masked_softmax,
        causal_mask,
        heads,
        multi_head,
        sinusoidal,
        beam_step,
        rollout,
    )
}
