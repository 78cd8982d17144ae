"""Gradient-weighted attention (Chefer et al., 2021, arXiv:2103.15679) and gradient x input on
images: a Vision Transformer labels its own positions, so both methods read one image
``(1, C, H, W)``. Checked against the rule recomputed on Hugging Face's ViT with copied weights
(an independent forward and autograd), against the pixels' gradient x input computed with
autograd, and for the errors that name the argument."""

from __future__ import annotations

import re

import pytest
import torch

from attnlib.capture import record_attention
from attnlib.interpret.relevance import gradient_weighted_attention, gradient_x_input
from attnlib.vit import VisionTransformer


def tiny_vit(**overrides) -> VisionTransformer:
    torch.manual_seed(0)
    config = dict(d_model=16, nhead=2, num_layers=2, dim_feedforward=24)
    config.update(overrides)
    return VisionTransformer(8, 4, 3, **config).double().eval()  # 2 x 2 patches


def image(seed: int = 1, shape=(1, 1, 8, 8)) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def chefer_by_hand(maps, grads) -> torch.Tensor:
    """R = I; R <- R + mean_h[(grad * A)^+] R, layer by layer."""
    n = maps[0].shape[-1]
    r = torch.eye(n, dtype=torch.float64)
    for a, g in zip(maps, grads, strict=True):
        r = r + (g * a).clamp_min(0).mean(1)[0].double() @ r
    return r


# -- gradient-weighted attention ------------------------------------------------------------


def test_gradient_weighted_attention_on_an_image_shapes_and_rows():
    vit, x = tiny_vit(), image()
    rel = gradient_weighted_attention(vit, x)
    n = len(vit.token_labels())  # [CLS] + 4 patches
    assert rel.shape == (n, n) == (5, 5) and rel.dtype == torch.float64
    assert (rel >= 0).all()
    assert torch.all(torch.diagonal(rel) >= 1)  # R starts from the identity, adds >= 0
    assert (rel[0, 1:] > 0).any()  # the [CLS] row gives relevance to some patch
    # the default target is the predicted class, and another target changes the map
    with torch.no_grad():
        predicted = int(vit(x)[0].argmax())
    assert torch.equal(rel, gradient_weighted_attention(vit, x, predicted))
    other = gradient_weighted_attention(vit, x, (predicted + 1) % 3)
    assert not torch.allclose(rel, other)
    assert all(p.grad is None for p in vit.parameters())
    assert not vit.training


def test_gradient_weighted_attention_on_an_image_by_hand_and_mean_pooling():
    for pooling in ("cls", "mean"):
        vit, x = tiny_vit(pooling=pooling), image(2)
        rel = gradient_weighted_attention(vit, x, target=1)
        with torch.enable_grad(), record_attention(vit, detach=False) as record:
            logits = vit(x)
            maps = [record[n] for n in record.names()]
            grads = torch.autograd.grad(logits[0, 1], maps)
        assert len(maps) == 2
        assert rel.shape == (len(vit.token_labels()),) * 2
        torch.testing.assert_close(rel, chefer_by_hand(maps, grads).detach())


def test_gradient_weighted_attention_against_hugging_face_vit():
    """The same rule on Hugging Face's ViT (its own forward, its attention probabilities,
    torch.autograd) with the weights copied into ours gives the same relevance."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(3)
    config = transformers.ViTConfig(
        hidden_size=16,
        num_hidden_layers=3,
        num_attention_heads=2,
        intermediate_size=24,
        image_size=8,
        patch_size=4,
        num_channels=1,
        num_labels=3,
        attn_implementation="eager",
    )
    theirs = transformers.ViTForImageClassification(config).double().eval()
    ours = VisionTransformer.from_huggingface(theirs).eval()
    x = image(4)
    for target in (0, 2):
        out = theirs(pixel_values=x, output_attentions=True)
        maps = list(out.attentions)  # each (1, H, L, L), in the graph
        grads = torch.autograd.grad(out.logits[0, target], maps)
        expected = chefer_by_hand(maps, grads).detach()
        got = gradient_weighted_attention(ours, x, target)
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-8)


# -- gradient x input ------------------------------------------------------------------------


def per_patch(t: torch.Tensor, p: int) -> torch.Tensor:
    """Sum ``(1, C, H, W)`` over each ``p x p`` patch, row-major: ``(N,)``."""
    return torch.nn.functional.avg_pool2d(t.sum(1, keepdim=True), p, p).flatten() * p * p


def test_gradient_x_input_on_an_image_equals_pixel_gradients_without_bias():
    """With a zero bias the patch embedding is linear, so its gradient x input is the pixels'
    gradient x input summed over the patch (computed here with torch.autograd on the pixels)."""
    vit = tiny_vit(in_channels=2)
    with torch.no_grad():
        vit.patch_embed.proj.bias.zero_()
    x = image(5, (1, 2, 8, 8)).requires_grad_(True)
    for target in (0, 1):
        got = gradient_x_input(vit, x.detach(), target)
        (grad,) = torch.autograd.grad(vit(x)[0, target], x)
        expected = per_patch(grad * x, 4).abs().detach()
        assert got.shape == (vit.num_patches,) == (4,) and got.dtype == torch.float64
        torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)
    assert all(p.grad is None for p in vit.parameters())


def test_gradient_x_input_on_an_image_with_bias_adds_the_bias_term():
    vit, x = tiny_vit(), image(6)
    got = gradient_x_input(vit, x)  # predicted class
    with torch.no_grad():
        target = int(vit(x)[0].argmax())
    store = {}
    handle = vit.patch_embed.register_forward_hook(lambda m, a, out: store.update(e=out))
    try:
        xg = x.clone().requires_grad_(True)
        logit = vit(xg)[0, target]
    finally:
        handle.remove()
    grad_e, grad_x = torch.autograd.grad(logit, [store["e"], xg])  # (1, N, D), (1, 1, 8, 8)
    bias_term = (grad_e[0] * vit.patch_embed.proj.bias).sum(-1)  # (N,)
    expected = (per_patch(grad_x * xg, 4) + bias_term).abs().detach()
    torch.testing.assert_close(got, expected, atol=1e-12, rtol=1e-10)
    blank = torch.zeros(1, 1, 8, 8, dtype=torch.float64)  # no ink: scores from the bias alone
    assert gradient_x_input(vit, blank).abs().sum() > 0


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [gradient_weighted_attention, gradient_x_input])
def test_image_errors_name_the_argument(method):
    vit = tiny_vit()
    batch = image(7, (3, 1, 8, 8))
    with pytest.raises(ValueError, match=re.escape("tokens: expected one example (batch 1)")):
        method(vit, batch)
    with pytest.raises(ValueError, match=re.escape("got (3, 1, 8, 8)")):
        method(vit, batch)
    with pytest.raises(ValueError, match="tokens: expected one example"):
        method(vit, torch.zeros(8))
    with pytest.raises(TypeError, match="tokens: expected a torch.Tensor"):
        method(vit, [[0.0]])
    with pytest.raises(ValueError, match=re.escape("images: expected height and width (8, 8)")):
        method(vit, image(7, (1, 1, 8, 12)))
