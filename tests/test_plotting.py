"""attnlib.plotting: heatmaps with titles, token labels, colour bars, masks drawn as masks,
and several heads on one shared colour scale. (Agg backend, set in conftest.)"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from attnlib import masks
from attnlib.plotting import outline_cells, plot_attention, plot_attention_heads

QUERIES = ["le", "chat", "dort"]
KEYS = ["the", "cat", "is", "sleeping"]


def heatmap_axes(fig: Figure) -> list[Axes]:
    """Visible axes that show an attention map (the colour bar's axes have no image)."""
    return [ax for ax in fig.axes if ax.get_visible() and ax.images]


def test_plot_attention_title_labels_colorbar():
    weights = torch.softmax(torch.randn(3, 4), -1)
    ax = plot_attention(weights, QUERIES, KEYS, title="cross-attention")
    assert isinstance(ax, Axes)
    assert ax.get_title() == "cross-attention"
    assert [t.get_text() for t in ax.get_xticklabels()] == KEYS
    assert [t.get_text() for t in ax.get_yticklabels()] == QUERIES
    assert ax.get_xlabel() == "key" and ax.get_ylabel() == "query"
    image = ax.images[0]
    assert image.colorbar is not None  # a colour bar is attached to the heatmap
    assert len(ax.figure.axes) == 2  # the heatmap and its colour bar
    np.testing.assert_allclose(np.asarray(image.get_array()), weights.numpy(), rtol=0, atol=1e-7)
    assert image.get_clim() == (0.0, float(weights.max()))


def test_plot_attention_without_colorbar_on_given_axes():
    fig, ax = plt.subplots()
    out = plot_attention(np.eye(3), ax=ax, colorbar=False, vmax=2.0)
    assert out is ax
    assert ax.images[0].colorbar is None and fig.axes == [ax]
    assert ax.images[0].get_clim() == (0.0, 2.0)


def test_plot_attention_masked_cells_are_masked():
    """Forbidden cells are masked in the image array (drawn hatched, not as small weights)."""
    mask = masks.causal_mask(3, 4)
    weights = torch.softmax(torch.randn(3, 4).masked_fill(~mask, -torch.inf), -1)
    ax = plot_attention(weights, mask=mask)
    shown = ax.images[0].get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), ~mask.numpy())
    np.testing.assert_allclose(shown.data, weights.numpy(), rtol=0, atol=1e-7)
    # annotations (on by default for small maps) only in the allowed cells
    assert len(ax.texts) == int(mask.sum())


def test_plot_attention_mask_broadcasts():
    """A (1, Lk) padding mask masks the same columns in every row."""
    pad = torch.tensor([[True, True, False, False]])
    ax = plot_attention(torch.rand(3, 4), mask=pad, annotate=False)
    expected = np.broadcast_to(~pad.numpy(), (3, 4))
    np.testing.assert_array_equal(np.ma.getmaskarray(ax.images[0].get_array()), expected)
    assert len(ax.texts) == 0


def test_plot_attention_unmasked_without_mask_and_annotations():
    weights = torch.tensor([[0.25, 0.75], [1.0, 0.0]], requires_grad=True)
    ax = plot_attention(weights, annotate=True)
    assert not np.ma.getmaskarray(ax.images[0].get_array()).any()
    assert sorted(t.get_text() for t in ax.texts) == ["0.00", "0.25", "0.75", "1.00"]


def test_plot_attention_large_maps_not_annotated_by_default():
    ax = plot_attention(np.random.default_rng(0).random((9, 9)))
    assert len(ax.texts) == 0


def test_plot_attention_heads_one_axes_per_head_shared_scale():
    heads = torch.softmax(torch.randn(5, 3, 4) * torch.arange(1, 6)[:, None, None], -1)
    fig = plot_attention_heads(heads, QUERIES, KEYS, ncols=3, title="layer 0")
    assert isinstance(fig, Figure)
    maps = heatmap_axes(fig)
    assert len(maps) == 5  # 2 x 3 grid: the sixth axes is hidden
    assert sum(not ax.get_visible() for ax in fig.axes) == 1
    clims = {ax.images[0].get_clim() for ax in maps}
    assert clims == {(0.0, float(heads.max()))}  # one colour scale for every head
    colorbars = {ax.images[0].colorbar for ax in maps} - {None}
    assert len(colorbars) == 1  # one shared colour bar
    assert [ax.get_title() for ax in maps] == [f"head {h}" for h in range(5)]
    for h, ax in enumerate(maps):
        np.testing.assert_allclose(
            np.asarray(ax.images[0].get_array()), heads[h].numpy(), rtol=0, atol=1e-7
        )
        assert [t.get_text() for t in ax.get_xticklabels()] == KEYS
    assert fig.texts[0].get_text() == "layer 0"  # the suptitle
    # query labels on the first column only
    assert [t.get_text() for t in maps[0].get_yticklabels()] == QUERIES
    assert list(maps[1].get_yticks()) == []


def test_plot_attention_heads_mask_and_titles():
    weights = torch.rand(2, 3, 3)
    mask = masks.causal_mask(3)
    fig = plot_attention_heads(weights, mask=mask, head_titles=["a", "b"])
    maps = heatmap_axes(fig)
    assert [ax.get_title() for ax in maps] == ["a", "b"]
    for ax in maps:
        np.testing.assert_array_equal(np.ma.getmaskarray(ax.images[0].get_array()), ~mask.numpy())


def test_outline_cells_boxes_exactly_the_true_cells():
    ax = plot_attention(torch.rand(3, 4), QUERIES, KEYS)
    cells = torch.zeros(3, 4, dtype=torch.bool)
    cells[0, 1] = cells[2, 3] = True
    boxes = outline_cells(ax, cells, color="red", linewidth=1.5)
    assert [(b.get_x(), b.get_y(), b.get_width(), b.get_height()) for b in boxes] == [
        (0.5, -0.5, 1, 1),  # row 0, column 1: centred on the cell
        (2.5, 1.5, 1, 1),
    ]
    assert all(b in ax.patches and not b.get_fill() and b.get_linewidth() == 1.5 for b in boxes)
    assert outline_cells(ax, np.zeros((3, 4), bool)) == []
    with pytest.raises(ValueError, match=r"cells: expected a 2-D \(row, column\) map"):
        outline_cells(ax, torch.ones(4, dtype=torch.bool))
