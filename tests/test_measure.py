"""attnlib.efficient.measure: the child's JSON, the peak-memory reading, and that every
method times the computation it claims to (no timing asserts: speed is measured by
``nox -s bench-attention``)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from attnlib.efficient.measure import (
    METHODS,
    Measurement,
    attention_call,
    estimate_naive_bytes,
    make_inputs,
    measure,
    measure_in_process,
    measure_peak,
    measure_series,
)
from attnlib.masks import sliding_window_mask

MIB = 2**20


def test_child_prints_one_json_line_per_length():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "attnlib.efficient.measure", "--method=tiled", "--n", "96", "64"]
    proc = subprocess.run(
        cmd + ["--repeats=2"], capture_output=True, text=True, env=env, check=True
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["n"] for r in rows] == [64, 96]  # increasing order
    for row in rows:
        m = Measurement(**row)
        assert m.method == "tiled" and m.mode == "forward" and m.threads == 1
        assert len(m.times) == 2 and m.seconds == statistics.median(m.times) > 0
        assert m.input_bytes == 3 * m.n * 64 * 4
        assert m.peak_source in ("clear_refs", "ru_maxrss")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_known_allocation_is_measured_within_five_percent():
    size = 100 * MIB
    extra, source = measure_peak(lambda: torch.ones(size // 4))  # touched: every page resident
    assert source == "clear_refs"
    assert 0.95 * size < extra < 1.05 * size + 4 * MIB, extra / MIB
    nothing, _ = measure_peak(lambda: None)
    assert nothing < 4 * MIB, nothing / MIB


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_series_in_one_child_agrees_with_the_single_measurement():
    rows = measure_series(["tiled", "naive"], [1024, 512], repeats=1)
    assert [(m.method, m.n) for m in rows] == [
        ("tiled", 512),
        ("tiled", 1024),
        ("naive", 512),
        ("naive", 1024),
    ]
    naive_1024 = rows[-1].extra_peak_bytes
    assert (
        0.9 * estimate_naive_bytes(1024) < naive_1024 < 1.5 * estimate_naive_bytes(1024) + 4 * MIB
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_naive_peak_holds_the_scores_and_tiled_does_not():
    n = 2048
    naive = measure("naive", n, repeats=0)
    scores = estimate_naive_bytes(n)  # scores and weights, float32: 32 MiB
    assert scores == 2 * n * n * 4
    assert 0.9 * scores < naive.extra_peak_bytes < 1.5 * scores + 8 * MIB, naive
    tiled = measure_in_process("tiled", n, repeats=0)  # small: the allocator cannot hide 32 MiB
    assert tiled.extra_peak_bytes < naive.extra_peak_bytes / 10, (tiled, naive)


@pytest.mark.parametrize("causal_window", [3, 200])
def test_every_method_computes_attention(causal_window):
    torch.manual_seed(0)
    n = 50
    q, k, v = make_inputs(n, batch=2, heads=3, head_dim=8, dtype="float64")
    full = F.scaled_dot_product_attention(q, k, v)
    for method in ("naive", "sdpa_math", "sdpa_default", "tiled"):
        torch.testing.assert_close(attention_call(method)(q, k, v), full, rtol=0, atol=1e-12)
    # the band and the dense masked form agree, and with a window >= n - 1 equal full attention
    w = causal_window
    dense = F.scaled_dot_product_attention(q, k, v, attn_mask=sliding_window_mask(n, window=w))
    for method in ("band", "dense_window"):
        torch.testing.assert_close(attention_call(method, w)(q, k, v), dense, rtol=0, atol=1e-12)
    if w >= n - 1:
        torch.testing.assert_close(dense, full, rtol=0, atol=1e-12)
    # linear attention is another function: phi(q) (phi(k)^T v) / (phi(q) sum_j phi(k_j))
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    want = (phi_q @ (phi_k.transpose(-2, -1) @ v)) / (phi_q @ phi_k.sum(-2)[..., None])
    torch.testing.assert_close(attention_call("linear")(q, k, v), want, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_both_modes_run_in_process(method):
    window = 4 if method in ("band", "dense_window") else None
    for mode in ("forward", "train"):
        m = measure_in_process(method, 40, head_dim=8, window=window, mode=mode, repeats=1)
        assert len(m.times) == 1 and m.seconds > 0 and m.extra_peak_bytes >= 0


def test_arguments_are_checked():
    with pytest.raises(ValueError, match="method: expected one of"):
        measure("flash", 128)
    with pytest.raises(ValueError, match="window: expected an int >= 0"):
        measure_in_process("band", 128)
    with pytest.raises(ValueError, match="mode: expected one of"):
        measure_in_process("naive", 128, mode="backward")
    assert estimate_naive_bytes(100, batch=2, heads=3, dtype="float64", mode="train") == (
        4 * 2 * 3 * 100 * 100 * 8
    )
