"""One place for seeds (ATTNLIB_SEED) and key figures (ATTNLIB_KEY_FIGURES),
and the robustness matrix's bookkeeping (docs/sphinxext/gallery_matrix.py)."""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import attnlib
from attnlib.report import key_figure
from attnlib.training import base_seed, seed_everything, seeded_generator

sys.path.insert(0, str(Path(__file__).parents[1] / "docs" / "sphinxext"))
import gallery_matrix  # noqa: E402


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("ATTNLIB_SEED", raising=False)
    monkeypatch.delenv("ATTNLIB_KEY_FIGURES", raising=False)


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_base_seed_defaults_to_zero_and_reads_the_environment(monkeypatch):
    assert base_seed() == 0
    monkeypatch.setenv("ATTNLIB_SEED", " 7 ")
    assert base_seed() == 7


@pytest.mark.parametrize("bad", ["one", "-1", "1.5"])
def test_a_bad_seed_variable_names_itself(monkeypatch, bad):
    monkeypatch.setenv("ATTNLIB_SEED", bad)
    with pytest.raises(
        ValueError, match=rf"ATTNLIB_SEED must be a non-negative integer, got '{bad}'"
    ):
        base_seed()


def test_seed_everything_follows_the_environment(monkeypatch):
    assert seed_everything() == 0
    zero = draws()
    monkeypatch.setenv("ATTNLIB_SEED", "3")
    assert seed_everything() == 3
    three = draws()
    assert three != zero
    assert seed_everything(3) == 3 and draws() == three  # an explicit seed is the same seed
    assert seed_everything(offset=2) == 5
    assert seed_everything(0) == 0 and draws() == zero  # explicit wins over the variable


def test_seeded_generator_is_seed_plus_offset(monkeypatch):
    monkeypatch.setenv("ATTNLIB_SEED", "2")
    expected = torch.rand(3, generator=torch.Generator().manual_seed(12))
    assert torch.equal(torch.rand(3, generator=seeded_generator(10)), expected)
    assert torch.equal(torch.rand(3, generator=seeded_generator(12, seed=0)), expected)
    assert not torch.equal(torch.rand(3, generator=seeded_generator(11)), expected)


def test_key_figure_prints_and_records(tmp_path, monkeypatch, capsys):
    assert key_figure("accuracy", 0.5) == 0.5  # not recorded: no file named
    monkeypatch.setenv("ATTNLIB_KEY_FIGURES", str(tmp_path / "figures.jsonl"))
    assert key_figure("loss", torch.tensor(1.25), fmt="{:.1f}") == 1.25
    assert key_figure("count", np.int64(3), show=False) == 3.0
    assert capsys.readouterr().out == "accuracy: 0.500\nloss: 1.2\n"
    lines = (tmp_path / "figures.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"name": "loss", "value": 1.25},
        {"name": "count", "value": 3.0},
    ]


@pytest.mark.parametrize(
    "name, value, match",
    [
        ("", 1.0, "name must be a non-empty string"),
        ("x", "0.9", "must be a real number"),
        ("x", True, "must be a real number"),
        ("x", torch.ones(2), "must be a real number"),
    ],
)
def test_key_figure_rejects_what_is_not_a_named_number(name, value, match):
    with pytest.raises((TypeError, RuntimeError, ValueError), match=match):
        key_figure(name, value)


def test_the_seed_functions_are_importable_from_the_top():
    for name in [
        "calculate_attention_weights",
        "multi_head_attention",
        "mask_future_tokens",
        "create_masks",
        "build_transformer_model",
        "train_model",
        "generate_synthetic_data",
        "visualize_attention_weights",
    ]:
        assert callable(getattr(attnlib, name)), name
        assert name in attnlib.__all__


# -- the robustness matrix --------------------------------------------------------


def test_matrix_runs_a_script_in_an_empty_folder(tmp_path, monkeypatch):
    gallery = tmp_path / "gallery" / "01_chapter"
    gallery.mkdir(parents=True)
    (gallery / "01_ok.py").write_text(
        "import os, torch\n"
        "from attnlib.report import key_figure\n"
        "from attnlib.training import base_seed\n"
        "assert os.listdir('.') == ['01_ok.py'], os.listdir('.')\n"
        "key_figure('seed', base_seed())\n"
        "key_figure('threads', torch.get_num_threads())\n"
    )
    (gallery / "02_fails.py").write_text("assert 1 + 1 == 3, 'arithmetic'\n")
    monkeypatch.setattr(gallery_matrix, "GALLERY", tmp_path / "gallery")
    assert gallery_matrix.tutorials() == ["01_chapter/01_ok.py", "01_chapter/02_fails.py"]
    assert gallery_matrix.tutorials("fails") == ["01_chapter/02_fails.py"]
    runs = gallery_matrix.run_matrix(
        gallery_matrix.tutorials(), [1, 2], [2], jobs=2, timeout=120, four_threads=False
    )
    ok = [r for r in runs if r.tutorial.endswith("ok.py")]
    assert [(r.status, r.figures) for r in ok] == [
        ("pass", {"seed": 1.0, "threads": 2.0}),
        ("pass", {"seed": 2.0, "threads": 2.0}),
    ]
    failed = [r for r in runs if r.status != "pass"]
    assert len(failed) == 2 and all("AssertionError: arithmetic" in r.error for r in failed)
    table = gallery_matrix.summary_table(runs)
    assert "FAIL" in table and "2 of 4 runs passed" in table


def test_matrix_page_shows_passes_and_spreads(monkeypatch):
    monkeypatch.setattr(gallery_matrix, "tutorials", lambda pattern=None: ["a/x.py"])
    runs = [
        gallery_matrix.Run(
            "a/x.py", s, t, "pass" if s < 2 else "fail", 10.0 + s, {"acc": 0.9 + s / 100}
        )
        for s in (0, 1, 2)
        for t in (1, 2)
    ]
    results = gallery_matrix.merge(
        {"runs": [{"tutorial": "gone.py", "seed": 0, "threads": 1}]}, runs
    )
    assert {r["tutorial"] for r in results["runs"]} == {"a/x.py"}  # a deleted tutorial is dropped
    page = gallery_matrix.render_markdown(results)
    assert "**4 of 6 runs passed**" in page
    assert "| 4 / 6 | seed 2/1 thr, seed 2/2 thr |" in page
    assert "| acc | 0.9 – 0.92 | 0.91 | 6 |" in page


def test_matrix_never_oversubscribes_and_serves_in_order():
    from concurrent.futures import ThreadPoolExecutor

    cores = gallery_matrix.Cores(2)
    started, in_use, peak = [], [0], [0]
    lock = threading.Lock()

    def job(name, threads):
        with lock:
            started.append(name)
            in_use[0] += threads
            peak[0] = max(peak[0], in_use[0])
        time.sleep(0.02)
        with lock:
            in_use[0] -= threads

    plan = [("a", 1), ("b", 2), ("c", 1), ("d", 1), ("e", 4), ("f", 1)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        for future in [pool.submit(cores.run, t, job, n, min(t, 2)) for n, t in plan]:
            future.result()
    assert started == [n for n, _ in plan]  # a run needing both cores is not starved
    assert peak[0] <= 2
