"""Positional encodings: the paper's table, the relative-position properties."""

import inspect
import math

import pytest
import torch

from attnlib.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
    alibi_bias,
    alibi_slopes,
    apply_rotary,
    rotary_cos_sin,
    sinusoidal_encoding,
)


def test_sinusoidal_matches_the_paper_formula():
    pe = sinusoidal_encoding(20, 8)
    pos, i = 7, 2  # dims 4 (sin) and 5 (cos)
    angle = pos / 10000 ** (2 * i / 8)
    assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_offset_is_a_fixed_linear_map():
    """PE[pos + k] = PE[pos] @ M_k for one matrix M_k, whatever pos is."""
    d, k = 16, 5
    pe = sinusoidal_encoding(64, d, dtype=torch.float64)
    m = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        b = k / 10000 ** (2 * i / d)  # the angle step of frequency i over k positions
        # [sin(a + b), cos(a + b)] = [sin a, cos a] @ [[cos b, -sin b], [sin b, cos b]]
        m[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor(
            [[math.cos(b), -math.sin(b)], [math.sin(b), math.cos(b)]], dtype=torch.float64
        )
    torch.testing.assert_close(pe[: 64 - k] @ m, pe[k:], atol=1e-10, rtol=0)
    assert not torch.allclose(pe[: 64 - k], pe[k:])  # positions really differ


def test_rotary_scores_depend_only_on_relative_position():
    q, k = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)

    def score(m, n):
        cq, sq = rotary_cos_sin(1, 8, offset=m, dtype=torch.float64)
        ck, sk = rotary_cos_sin(1, 8, offset=n, dtype=torch.float64)
        return (apply_rotary(q[None], cq, sq) * apply_rotary(k[None], ck, sk)).sum()

    assert score(3, 1).item() == pytest.approx(score(12, 10).item(), abs=1e-10)
    assert score(3, 1).item() != pytest.approx(score(3, 2).item(), abs=1e-6)


def test_rotary_preserves_norms_and_module_matches_function():
    x = torch.randn(2, 3, 6, 8)
    q, k = RotaryEmbedding(8)(x, x)
    torch.testing.assert_close(q.norm(dim=-1), x.norm(dim=-1))
    cos, sin = rotary_cos_sin(6, 8)
    torch.testing.assert_close(k, apply_rotary(x, cos, sin))


def test_alibi_slopes_follow_the_paper():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert alibi_slopes(6).shape == (6,)
    bias = alibi_bias(2, 3, 3)
    assert bias.shape == (2, 3, 3)
    torch.testing.assert_close(
        bias[0], -0.0625 * (torch.arange(3)[:, None] - torch.arange(3)).abs()
    )


def test_modules_add_positions_and_reject_long_inputs():
    x = torch.zeros(2, 5, 8)
    torch.testing.assert_close(
        SinusoidalPositionalEncoding(8, 10)(x)[0], sinusoidal_encoding(5, 8)
    )
    learned = LearnedPositionalEmbedding(8, 10)
    torch.testing.assert_close(learned(x)[1], learned.embedding.weight[:5])
    with pytest.raises(ValueError, match=r"x: expected at most 10 positions"):
        SinusoidalPositionalEncoding(8, 10)(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match="d_model: expected an even number, got 7"):
        sinusoidal_encoding(4, 7)


def test_bad_offsets_and_lengths_are_named():
    with pytest.raises(ValueError, match="offset: expected a non-negative integer, got -5"):
        SinusoidalPositionalEncoding(4, max_len=5)(torch.zeros(1, 3, 4), offset=-5)
    with pytest.raises(ValueError, match="offset: expected a non-negative integer, got -2"):
        LearnedPositionalEmbedding(4, max_len=5)(torch.zeros(1, 3, 4), offset=-2)
    with pytest.raises(ValueError, match="length: expected a positive integer, got -3"):
        rotary_cos_sin(-3, 8)
    with pytest.raises(ValueError, match=r"key_len: expected at least query_len \(5\)"):
        alibi_bias(2, 5, 3)


@pytest.mark.parametrize("cls", [SinusoidalPositionalEncoding, LearnedPositionalEmbedding])
def test_position_modules_take_d_model_then_max_len(cls):
    names = list(inspect.signature(cls).parameters)
    assert names[:3] == ["d_model", "max_len", "dropout"]
    module = cls(8, 10)  # positionally: d_model, then max_len
    assert (module.d_model, module.max_len) == (8, 10)
    assert cls(8).max_len == SinusoidalPositionalEncoding(8).max_len  # the same default
    x = torch.randn(2, 10, 8)
    assert module(x).shape == (2, 10, 8)
    assert module(x[:, :3], offset=7).shape == (2, 3, 8)
    with pytest.raises(ValueError, match=r"x: expected at most 10 positions"):
        module(torch.zeros(1, 11, 8))
    with pytest.raises(ValueError, match=r"x: expected at most 3 positions"):
        module(x[:, :4], offset=7)


def test_learned_table_is_max_len_by_d_model():
    learned = LearnedPositionalEmbedding(8, 10)
    assert learned.embedding.weight.shape == (10, 8)
    with pytest.raises(ValueError, match="max_len: expected a positive integer, got 0"):
        LearnedPositionalEmbedding(8, 0)


def test_rotary_takes_head_dim_then_keyword_base():
    params = inspect.signature(RotaryEmbedding).parameters
    assert list(params) == ["head_dim", "base"]
    assert params["base"].kind == inspect.Parameter.KEYWORD_ONLY  # not RotaryEmbedding(d, 512)
    with pytest.raises(TypeError):
        RotaryEmbedding(8, 512)
    rope = RotaryEmbedding(8, base=100.0)
    x = torch.randn(2, 4, 5, 8)
    q, k = rope(x, torch.randn(2, 4, 7, 8))
    assert (q.shape, k.shape) == ((2, 4, 5, 8), (2, 4, 7, 8))
    cos, sin = rotary_cos_sin(5, 8, 100.0)
    torch.testing.assert_close(q, apply_rotary(x, cos, sin))
    with pytest.raises(ValueError, match="head_dim: expected an even number, got 7"):
        RotaryEmbedding(7)


def test_position_functions_take_sizes_in_output_order():
    assert sinusoidal_encoding(6, 4).shape == (6, 4)  # (length, d_model)
    assert all(t.shape == (6, 4) for t in rotary_cos_sin(6, 4))  # (length, head_dim)
    assert alibi_bias(3, 2, 5).shape == (3, 2, 5)  # (num_heads, query_len, key_len)
