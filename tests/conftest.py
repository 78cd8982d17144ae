"""Shared fixtures of the attnlib test suite.

- every test starts from the same torch seed (``seed``, autouse);
- ``dtype`` / ``tol`` parametrize a test over float32 (1e-5) and float64 (1e-10);
- ``assert_matches_torch`` compares with PyTorch and keeps the largest absolute
  difference seen per dtype, printed in the terminal summary;
- matplotlib uses the non-interactive Agg backend;
- hypothesis runs a small, derandomized number of examples, without a database
  (so the suite is fast, reproducible and writes nothing into the repository).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

settings.register_profile(
    "attnlib", max_examples=30, deadline=None, derandomize=True, database=None
)
settings.load_profile("attnlib")

# the tensors here are tiny: one intra-op thread avoids oversubscribing a shared machine
torch.set_num_threads(1)

TOLERANCES = {
    torch.float32: {"atol": 1e-5, "rtol": 1e-5},
    torch.float64: {"atol": 1e-10, "rtol": 1e-10},
}

# largest |attnlib - torch| seen by ``assert_matches_torch``, by dtype name
MAX_DIFF_VS_TORCH: dict[str, float] = {}


@pytest.fixture(autouse=True)
def seed() -> int:
    """Seed torch's global generator before every test, so every test is reproducible."""
    torch.manual_seed(0)
    return 0


@pytest.fixture(autouse=True)
def close_figures():
    """Close every matplotlib figure a test opened (even when it failed)."""
    yield
    plt.close("all")


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


@pytest.fixture
def tol(dtype: torch.dtype) -> dict[str, float]:
    """``atol``/``rtol`` for ``dtype``: 1e-5 in float32, 1e-10 in float64."""
    return TOLERANCES[dtype]


def _record_diff(actual: torch.Tensor, expected: torch.Tensor) -> None:
    if actual.numel() == 0 or actual.shape != expected.shape:
        return
    diff = (actual.detach() - expected.detach()).abs().max().item()
    name = str(actual.dtype).removeprefix("torch.")
    MAX_DIFF_VS_TORCH[name] = max(MAX_DIFF_VS_TORCH.get(name, 0.0), diff)


@pytest.fixture
def assert_matches_torch():
    """``check(actual, expected)``: ``assert_close`` at the dtype's tolerance, recording
    the absolute difference for the summary."""

    def check(actual: torch.Tensor, expected: torch.Tensor) -> None:
        assert actual.dtype == expected.dtype
        _record_diff(actual, expected)
        torch.testing.assert_close(actual, expected, **TOLERANCES[actual.dtype])

    return check


def pytest_terminal_summary(terminalreporter) -> None:
    if MAX_DIFF_VS_TORCH:
        parts = ", ".join(f"{k}: {v:.3e}" for k, v in sorted(MAX_DIFF_VS_TORCH.items()))
        terminalreporter.write_line(f"largest |attnlib - torch| difference: {parts}")
