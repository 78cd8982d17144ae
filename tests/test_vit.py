"""attnlib's Vision Transformer: the patch embedding against its Conv2d form and a patch cut by
hand, the 2-D sine-cosine positions against Hugging Face's, the whole model against Hugging
Face's ViT with copied weights (logits, every attention map, gradients), clear errors, and
attention capture + rollout on an image model."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from attnlib.capture import record_attention
from attnlib.interpret.maps import capture_attention
from attnlib.interpret.relevance import attention_rollout
from attnlib.vit import PatchEmbedding, VisionTransformer, huggingface_names, sincos_2d_positions

transformers = pytest.importorskip("transformers")


def small_vit(
    dtype: torch.dtype = torch.float64,
    attn: str = "eager",
    cls=None,
    **overrides,
) -> nn.Module:
    config = dict(
        hidden_size=24,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=40,
        image_size=(8, 12),  # a rectangular grid: 2 x 3 patches
        patch_size=4,
        num_channels=2,
        num_labels=5,
        layer_norm_eps=1e-7,
        attn_implementation=attn,
    )
    config.update(overrides)
    cls = cls or transformers.ViTForImageClassification
    return cls(transformers.ViTConfig(**config)).to(dtype).eval()


def images(dtype=torch.float64, batch=3, shape=(2, 8, 12)) -> torch.Tensor:
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(1), dtype=dtype)


# -- the patch embedding ---------------------------------------------------------------


def test_patch_embedding_equals_its_convolution():
    embed = PatchEmbedding((8, 12), 4, 3, 10).double()
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    conv = embed.to_conv()
    assert (conv.kernel_size, conv.stride) == ((4, 4), (4, 4))
    expected = conv(x).flatten(2).transpose(1, 2)  # (B, N, D), row-major grid
    torch.testing.assert_close(embed(x), expected, atol=1e-12, rtol=1e-12)
    back = PatchEmbedding.from_conv(conv, (8, 12))
    torch.testing.assert_close(back(x), expected, atol=1e-12, rtol=1e-12)
    assert back.proj.weight.dtype == torch.float64 and back.grid_size == (2, 3)
    # a convolution of someone else, copied in
    other = nn.Conv2d(3, 10, kernel_size=4, stride=4).double()
    torch.testing.assert_close(
        PatchEmbedding.from_conv(other, (8, 12))(x),
        other(x).flatten(2).transpose(1, 2),
        atol=1e-12,
        rtol=1e-12,
    )


def test_patch_embedding_cuts_row_major_patches_channel_by_channel():
    embed = PatchEmbedding((4, 6), 2, 2, 3)
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(1, 2, 4, 6)
    patches = embed.patches(x)  # (1, 6, 8)
    assert patches.shape == (1, 6, 8)
    # patch 4 is row 1, column 1 of the 2 x 3 grid: image rows 2-3, columns 2-3
    expected = [x[0, c, r, col] for c in (0, 1) for r in (2, 3) for col in (2, 3)]
    assert patches[0, 4].tolist() == [float(v) for v in expected]
    assert patches[0, 0, :4].tolist() == [0.0, 1.0, 6.0, 7.0]
    with torch.no_grad():
        embed.proj.weight.zero_()
        embed.proj.bias.zero_()
        embed.proj.weight[0, 5] = 1.0  # feature 0 reads channel 1, row 0, column 1 of a patch
    assert embed(x)[0, :, 0].tolist() == [25.0, 27.0, 29.0, 37.0, 39.0, 41.0]


def test_patch_embedding_errors_name_the_argument():
    with pytest.raises(
        ValueError, match=r"image_size: .*divisible by patch_size \(4\).*\(10, 8\)"
    ):
        PatchEmbedding((10, 8), 4, 1, 8)
    embed = PatchEmbedding(8, 4, 1, 8)
    with pytest.raises(ValueError, match=r"images: expected a 4-D tensor .*got shape \(8, 8\)"):
        embed(torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"images: expected 1 channel.*\(2, 3, 8, 8\)"):
        embed(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"images: expected height and width \(8, 8\).*12"):
        embed(torch.zeros(2, 1, 8, 12))
    with pytest.raises(ValueError, match="conv: expected a square kernel equal to the stride"):
        PatchEmbedding.from_conv(nn.Conv2d(1, 4, kernel_size=4, stride=2), 8)
    with pytest.raises(TypeError, match="conv: expected a torch.nn.Conv2d"):
        PatchEmbedding.from_conv(nn.Linear(4, 4), 8)


# -- 2-D sine-cosine positions ----------------------------------------------------------


def huggingface_sincos(h: int, w: int, d: int) -> torch.Tensor:
    """Hugging Face's 2-D sin-cos embedding (float64, row half first), whichever version."""
    mae = pytest.importorskip("transformers.models.vit_mae.modeling_vit_mae")
    if hasattr(mae, "build_2d_sinusoidal_position_embedding"):  # transformers >= 5
        return mae.build_2d_sinusoidal_position_embedding(h, w, d, dtype=torch.float64)
    if h != w:
        pytest.skip("this transformers' get_2d_sincos_pos_embed builds square grids only")
    table = torch.as_tensor(mae.get_2d_sincos_pos_embed(d, h), dtype=torch.float64)
    return torch.cat([table[:, d // 2 :], table[:, : d // 2]], dim=1)  # MAE: the column first


@pytest.mark.parametrize("grid", [4, (3, 5), (1, 2)])
def test_sincos_positions_equal_huggingface(grid):
    h, w = (grid, grid) if isinstance(grid, int) else grid
    ours = sincos_2d_positions(grid, 16, dtype=torch.float64)
    assert ours.shape == (h * w, 16)
    torch.testing.assert_close(ours, huggingface_sincos(h, w, 16), atol=1e-15, rtol=0)
    assert sincos_2d_positions(grid, 16).dtype == torch.float32


def test_sincos_positions_encode_the_row_then_the_column():
    table = sincos_2d_positions((3, 5), 8, dtype=torch.float64)  # row r, column c at r * 5 + c
    # features 0..3 depend on the row only, 4..7 on the column only
    assert torch.equal(table[5 * 2 + 1, :4], table[5 * 2 + 4, :4])
    assert torch.equal(table[5 * 0 + 3, 4:], table[5 * 2 + 3, 4:])
    # row 1, column 2 with D = 8: frequencies 1 and 10000^(-1/2) = 0.01
    by_hand = [math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)]
    by_hand += [math.sin(2), math.sin(0.02), math.cos(2), math.cos(0.02)]
    assert table[5 * 1 + 2].tolist() == pytest.approx(by_hand, abs=1e-15)


def test_sincos_positions_match_the_mae_model():
    """ViT-MAE's frozen embedding (the layout of its checkpoints: column half first)."""
    config = transformers.ViTMAEConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8,
        decoder_hidden_size=8, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
        decoder_intermediate_size=8, image_size=12, patch_size=4, num_channels=1,
    )  # fmt: skip
    module = pytest.importorskip("transformers.models.vit_mae.modeling_vit_mae")
    embeddings = module.ViTMAEEmbeddings(config)
    embeddings.initialize_weights()  # what a ViTMAEModel's initialisation calls
    table = embeddings.position_embeddings[0].double()  # (1 + 9, 16), the class row first
    ours = sincos_2d_positions(3, 16, dtype=torch.float64)
    assert torch.equal(table[0], torch.zeros(16, dtype=torch.float64))
    torch.testing.assert_close(
        torch.cat([ours[:, 8:], ours[:, :8]], dim=1), table[1:], atol=1e-7, rtol=0
    )  # stored in float32


def test_sincos_errors_name_the_argument():
    with pytest.raises(ValueError, match="d_model: expected a multiple of 4.*got 10"):
        sincos_2d_positions(3, 10)
    with pytest.raises(ValueError, match="grid_size: expected a positive integer, got 0"):
        sincos_2d_positions((0, 2), 8)


# -- the model ---------------------------------------------------------------------------


@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("positions", ["learned", "sincos"])
def test_shapes_and_labels(pooling, positions):
    vit = VisionTransformer(
        (8, 12), 4, 7, in_channels=2, d_model=16, nhead=2, pooling=pooling, positions=positions
    )
    x = images(torch.float32)
    length = 6 + (pooling == "cls")
    assert vit(x).shape == (3, 7)
    assert vit.features(x).shape == (3, length, 16)
    assert vit.grid_size == (2, 3) and vit.num_patches == 6
    labels = vit.token_labels()
    assert labels[-6:] == ["r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2"]
    assert labels[:1] == (["[CLS]"] if pooling == "cls" else ["r0c0"]) and len(labels) == length
    learned = [n for n, _ in vit.named_parameters() if n.startswith("position.")]
    assert learned == (["position.embedding.weight"] if positions == "learned" else [])
    if positions == "sincos":
        table = vit.position.table  # a buffer: class row zero, then the grid
        torch.testing.assert_close(table[-6:], sincos_2d_positions((2, 3), 16))
        assert pooling == "mean" or not table[0].any()


def test_mean_pooling_is_the_mean_of_the_patch_tokens():
    vit = VisionTransformer(8, 4, 3, d_model=16, nhead=2, pooling="mean").double()
    x = images(torch.float64, shape=(1, 8, 8))
    expected = vit.head(vit.features(x).mean(1))
    torch.testing.assert_close(vit(x), expected, atol=1e-12, rtol=1e-12)


def test_positions_make_the_model_see_where_a_patch_is():
    """Without positions a ViT is blind to the patches' order; with them it is not."""
    vit = VisionTransformer(8, 4, 3, d_model=16, nhead=2, pooling="mean", positions="sincos")
    vit = vit.double().eval()
    x = images(torch.float64, batch=1, shape=(1, 8, 8))
    swapped = torch.cat([x[..., 4:], x[..., :4]], dim=-1)  # the two columns of patches swapped
    assert (vit(x) - vit(swapped)).abs().max() > 1e-3
    vit.position.table.zero_()
    torch.testing.assert_close(vit(x), vit(swapped), atol=1e-12, rtol=1e-12)


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="pooling: expected one of 'cls', 'mean', got 'max'"):
        VisionTransformer(8, 4, 3, pooling="max")
    with pytest.raises(ValueError, match="positions: expected one of 'learned', 'sincos'"):
        VisionTransformer(8, 4, 3, positions="rotary")
    with pytest.raises(ValueError, match="num_classes: expected a non-negative integer"):
        VisionTransformer(8, 4, -1)
    with pytest.raises(ValueError, match="image_size: .*divisible by patch_size"):
        VisionTransformer(10, 4, 3)
    with pytest.raises(ValueError, match="d_model: expected a multiple of 4"):
        VisionTransformer(8, 4, 3, d_model=18, nhead=2, positions="sincos")
    vit = VisionTransformer(8, 4, 3, d_model=16, nhead=2)
    with pytest.raises(ValueError, match=r"images: expected height and width \(8, 8\)"):
        vit(torch.zeros(1, 1, 16, 16))


def test_num_classes_zero_returns_pooled_features():
    vit = VisionTransformer(8, 4, 0, d_model=16, nhead=2)
    x = images(torch.float32, shape=(1, 8, 8))
    torch.testing.assert_close(vit(x), vit.features(x)[:, 0])


# -- against Hugging Face ----------------------------------------------------------------


def test_equals_huggingface_vit_float32():
    hf = small_vit(torch.float32)
    ours = VisionTransformer.from_huggingface(hf).eval()
    x = images(torch.float32)
    with torch.no_grad(), record_attention(ours) as record:
        expected = hf(x, output_attentions=True)
        got = ours(x)
    tol = {"atol": 1e-5, "rtol": 1e-5}
    torch.testing.assert_close(got, expected.logits, **tol)
    assert len(expected.attentions) == 3 and len(record) == 3
    for i, weights in enumerate(expected.attentions):
        torch.testing.assert_close(record[f"encoder.layers.{i}.self_attn"], weights, **tol)


def test_equals_huggingface_vit_float64():
    """Hugging Face's eager ViT attention takes its softmax in float32 even for float64
    inputs, so its float64 outputs are exact only with the ``sdpa`` kernel (no weights)
    and its float64 maps carry float32 rounding (~1e-8)."""
    exact = small_vit(torch.float64, attn="sdpa")
    ours = VisionTransformer.from_huggingface(exact).eval()
    x = images(torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), exact(x).logits, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(
            ours.features(x), exact.vit(x).last_hidden_state, atol=1e-10, rtol=1e-10
        )
    eager = small_vit(torch.float64, attn="eager")
    eager.load_state_dict(exact.state_dict())
    with torch.no_grad(), record_attention(ours) as record:
        expected = eager(x, output_attentions=True)
        ours(x)
    for i, weights in enumerate(expected.attentions):
        torch.testing.assert_close(
            record[f"encoder.layers.{i}.self_attn"], weights, atol=1e-7, rtol=0
        )
    # and the maps are exactly the softmax of scaled dot products, in float64
    layer, y = ours.layers[0], ours.position(torch.cat([ours.cls_token.expand(3, -1, -1),
        ours.patch_embed(x)], 1))  # fmt: skip
    h = layer.norm1(y)
    q = layer.self_attn.q_proj(h).unflatten(-1, (4, 6)).transpose(1, 2)
    k = layer.self_attn.k_proj(h).unflatten(-1, (4, 6)).transpose(1, 2)
    by_hand = (q @ k.transpose(-2, -1) / 6**0.5).softmax(-1)
    torch.testing.assert_close(
        record["encoder.layers.0.self_attn"], by_hand.detach(), atol=1e-12, rtol=1e-12
    )


def test_gradients_equal_huggingface_vit():
    hf = small_vit(torch.float64, attn="sdpa")
    ours = VisionTransformer.from_huggingface(hf).eval()
    x = images(torch.float64)
    weight = torch.randn(3, 5, dtype=torch.float64)
    (hf(x).logits * weight).sum().backward()
    (ours(x) * weight).sum().backward()
    names = huggingface_names(3)
    theirs = dict(hf.named_parameters())
    for mine, parameter in ours.named_parameters():
        expected = theirs[names[mine]].grad
        got = parameter.grad
        if mine == "patch_embed.proj.weight":
            expected = expected.reshape(expected.shape[0], -1)
        elif mine == "position.embedding.weight":
            expected = expected[0]
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10, msg=mine)
    assert len(names) == len(theirs)  # every parameter of theirs was compared


def test_vit_model_maps_to_features_and_keeps_dtype_and_mode():
    hf = small_vit(torch.float64, attn="sdpa", cls=transformers.ViTModel).train()
    ours = VisionTransformer.from_huggingface(hf)
    assert ours.training and next(ours.parameters()).dtype == torch.float64
    assert ours.num_classes == 0 and isinstance(ours.head, nn.Identity)
    hf.eval(), ours.eval()
    x = images(torch.float64)
    with torch.no_grad():
        out = hf(x)
        torch.testing.assert_close(ours.features(x), out.last_hidden_state, atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(ours(x), out.last_hidden_state[:, 0], atol=1e-10, rtol=1e-10)
    hf_count = sum(p.numel() for n, p in hf.named_parameters() if not n.startswith("pooler."))
    assert sum(p.numel() for p in ours.parameters()) == hf_count
    layer = ours.layers[0]
    assert layer.norm1.eps == 1e-7 and ours.encoder.norm.eps == 1e-7


def test_copies_dropout_and_qkv_bias_and_tanh_gelu():
    hf = small_vit(
        torch.float64,
        attn="sdpa",
        qkv_bias=False,
        hidden_act="gelu_pytorch_tanh",
        hidden_dropout_prob=0.2,
        attention_probs_dropout_prob=0.3,
    )
    ours = VisionTransformer.from_huggingface(hf)
    layer = ours.layers[0]
    assert layer.self_attn.q_proj.bias is None and layer.self_attn.out_proj.bias is not None
    assert layer.ff.activation == "gelu_tanh" and layer.self_attn.dropout == 0.3
    assert layer.dropout1.p == layer.dropout2.p == ours.dropout.p == 0.2
    assert layer.ff.dropout.p == 0.0  # Hugging Face's ViT MLP has no inner dropout
    x = images(torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), hf(x).logits, atol=1e-10, rtol=1e-10)


def test_refusals_name_what_cannot_be_represented():
    with pytest.raises(ValueError, match="model: expected a transformers ViTModel"):
        VisionTransformer.from_huggingface(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"config.hidden_act: expected one of .*got 'silu'"):
        VisionTransformer.from_huggingface(small_vit(hidden_act="silu"))
    with pytest.raises(ValueError, match="config.patch_size: expected square patches"):
        VisionTransformer.from_huggingface(small_vit(patch_size=(4, 2)))
    masked = small_vit(cls=transformers.ViTForMaskedImageModeling, encoder_stride=4)
    with pytest.raises(ValueError, match=r"cannot represent: \['decoder\.0\.bias'"):
        VisionTransformer.from_huggingface(masked)


# -- capture and rollout ------------------------------------------------------------------


def test_capture_and_rollout_on_a_vit():
    vit = VisionTransformer((8, 12), 4, 3, in_channels=2, d_model=16, nhead=2, num_layers=3)
    vit.train()
    x = images(torch.float32)
    maps = capture_attention(vit, x[0:1])
    assert vit.training  # the mode is restored
    assert maps.kinds == ["encoder"] and maps["encoder"].shape == (3, 2, 7, 7)
    queries, keys = maps.labels("encoder")
    assert queries == keys == ["[CLS]", "r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2"]
    assert maps.mask("encoder").all()  # no padding in an image
    with torch.no_grad(), record_attention(vit) as record:
        vit.eval()(x[0:1])
    torch.testing.assert_close(maps["encoder"][1], record["encoder.layers.1.self_attn"][0])
    rollout = attention_rollout(maps)
    assert rollout.shape == (7, 7)
    torch.testing.assert_close(rollout.sum(-1), torch.ones(7, dtype=rollout.dtype))
    custom = capture_attention(vit, x[0:1], labels=list("abcdefg"))
    assert custom.labels()[0] == list("abcdefg")
    mean = VisionTransformer(8, 4, 3, d_model=16, nhead=2, pooling="mean")
    assert capture_attention(mean, images(torch.float32, 1, (1, 8, 8))).labels()[0][0] == "r0c0"


def test_capture_asks_for_one_image():
    vit = VisionTransformer(8, 4, 3, d_model=16, nhead=2)
    with pytest.raises(ValueError, match=r"inputs: expected one example.*\(2, 1, 8, 8\)"):
        capture_attention(vit, torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="expected 5 and 5 labels, got 2 and 2"):
        capture_attention(vit, torch.zeros(1, 1, 8, 8), labels=["a", "b"])
