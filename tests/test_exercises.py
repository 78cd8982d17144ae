"""attnlib.exercises: every reference passes, every recognised mistake is named, an
unrecognised wrong answer gets the smallest failing case, a raising function is reported.

The wrong implementations below are written the way a reader would write them, not
copied from the checker's own variants."""

from __future__ import annotations

import math

import pytest
import torch

from attnlib import exercises as E

# -- wrong readers ----------------------------------------------------------------------------


def sdpa(q, k, v, mask=None, *, dim=-1, scale="sqrt", fill="min", zero=True, how="fill"):
    """A reader's attention with one switch per classic mistake."""
    div = {"sqrt": math.sqrt(q.shape[-1]), "none": 1.0, "dk": q.shape[-1]}[scale]
    scores = q @ k.transpose(-2, -1) / div
    raw = scores
    if mask is not None and how == "fill":
        value = {"min": torch.finfo(scores.dtype).min, "-inf": float("-inf"), "-1e9": -1e9}[fill]
        scores = scores.masked_fill(~mask, value)
    if mask is not None and how == "inverted":
        scores = scores.masked_fill(mask, -1e9)
    if mask is not None and how == "multiply":
        scores = scores * mask
    if mask is not None and how == "add":
        scores = scores + mask.float()
    weights = torch.softmax(scores, dim=dim)
    if mask is not None and (how == "after" or (how == "fill" and zero and fill == "min")):
        weights = weights * mask
    if how == "raw_output":
        return raw @ v, weights
    if how == "exp":
        weights = torch.exp(scores)
    return weights @ v, weights


def _sdpa(**bugs):
    return lambda q, k, v, mask=None: sdpa(q, k, v, mask, **bugs)


def softmax(scores, mask, *, dim=-1, how="fill", fill="min"):
    if how == "inverted":
        return torch.softmax(scores.masked_fill(mask, -1e9), dim=dim)
    if how == "after":
        return torch.softmax(scores, dim=dim) * mask
    if how == "multiply":
        return torch.softmax(scores * mask, dim=dim)
    if how == "naive":
        e = torch.exp(scores) * mask
        return e / e.sum(-1, keepdim=True)
    if how == "add":
        return torch.softmax(scores + mask.float(), dim=dim)
    if how == "in_place":
        scores.masked_fill_(~mask, torch.finfo(scores.dtype).min)
        return torch.softmax(scores, -1) * mask
    value = {"min": torch.finfo(scores.dtype).min, "-inf": float("-inf"), "-1e9": -1e9}[fill]
    weights = torch.softmax(scores.masked_fill(~mask, value), dim=dim)
    return weights * mask if fill == "min" else weights


def _softmax(**bugs):
    return lambda scores, mask: softmax(scores, mask, **bugs)


def split(x, h, *, how="right"):
    b, n, d = x.shape
    if how == "mixes":
        return x.view(b, h, n, d // h)
    if how == "no_transpose":
        return x.view(b, n, h, d // h)
    if how == "strided":
        return x.view(b, n, d // h, h).permute(0, 3, 1, 2)
    return x.view(b, n, h, d // h).transpose(1, 2)


def merge(x, *, how="right"):
    b, h, n, dh = x.shape
    if how == "mixes":
        return x.reshape(b, n, h * dh)
    if how == "strided":
        return x.permute(0, 2, 3, 1).reshape(b, n, h * dh)
    if how == "view":
        return x.transpose(1, 2).view(b, n, h * dh)
    return x.transpose(1, 2).reshape(b, n, h * dh)


def mha(query, key, value, params, num_heads, mask=None, **bugs):
    """A reader's multi-head attention (nn.Linear convention), with switches."""
    b, lq, d = query.shape
    h, dh = num_heads, d // num_heads

    def lin(x, name):
        w, bias = params["w_" + name], params["b_" + name]
        return (x @ w if bugs.get("linear") == "no_T" else x @ w.T) + bias

    def heads(x):
        if bugs.get("split") == "mixes":
            return x.reshape(b, h, x.shape[1], dh)
        return x.reshape(b, x.shape[1], h, dh).transpose(1, 2)

    q, k, v = heads(lin(query, "q")), heads(lin(key, "k")), heads(lin(value, "v"))
    div = {"head": math.sqrt(dh), "model": math.sqrt(d), "none": 1.0}[bugs.get("scale", "head")]
    _, weights = sdpa(
        q * math.sqrt(dh) / div,
        k,
        v,
        mask,
        dim=bugs.get("dim", -1),
        fill=bugs.get("fill", "min"),
        how=bugs.get("how", "fill"),
    )
    weights = bugs.get("then", lambda w: w)(weights)
    out = weights @ v
    if bugs.get("merge") == "mixes":
        out = out.reshape(b, lq, d)
    else:
        out = out.transpose(1, 2).reshape(b, lq, d)
    if not bugs.get("no_out"):
        out = lin(out, "o")
    return out, weights.mean(1) if bugs.get("average") else weights


def _mha(**bugs):
    return lambda q, k, v, p, h, mask=None: mha(q, k, v, p, h, mask, **bugs)


def pe(length, d_model, *, how="right"):
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    if how == "from_one":
        pos = pos + 1
    i = torch.arange(0, d_model, 2, dtype=torch.float32)
    if how == "i":
        i = i / 2
    freq = 10000 ** (i / d_model) if how == "sign" else 1 / 10000 ** (i / d_model)
    if how == "base_1000":
        freq = 1 / 1000 ** (i / d_model)
    out = torch.zeros(length, d_model)
    if how == "column":
        c = torch.arange(d_model, dtype=torch.float32)
        angle = pos / 10000 ** (c / d_model)
        out[:, 0::2], out[:, 1::2] = torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])
        return out
    if how == "halves":
        return torch.cat([torch.sin(pos * freq), torch.cos(pos * freq)], 1)
    sin, cos = torch.sin(pos * freq), torch.cos(pos * freq)
    if how == "swapped":
        sin, cos = cos, sin
    out[:, 0::2], out[:, 1::2] = sin, cos
    return out


def beam(log_probs, scores, k, *, how="right"):
    n_beams, vocab = log_probs.shape
    total = scores.unsqueeze(1) + log_probs
    if how == "per_beam":
        best, tok = total.max(dim=1)
        order = torch.argsort(best, descending=True)[:k]
        return best[order], order, tok[order]
    if how == "rank_log_probs":
        _, idx = log_probs.reshape(-1).topk(k)
        return total.reshape(-1)[idx], idx // vocab, idx % vocab
    if how == "no_add":
        top, idx = log_probs.reshape(-1).topk(k)
        return top, idx // vocab, idx % vocab
    if how == "multiply":
        total = scores.unsqueeze(1) * log_probs
    top, idx = total.reshape(-1).topk(k, largest=how != "smallest")
    if how == "swapped":
        return top, idx % vocab, idx // vocab
    if how == "by_beams":
        return top, idx // n_beams, idx % n_beams
    if how == "ascending":
        return top.flip(0), (idx // vocab).flip(0), (idx % vocab).flip(0)
    if how == "float_tokens":
        return top, idx // vocab, (idx % vocab).float()
    if how == "off":
        return top + 0.5, idx // vocab, idx % vocab
    return top, idx // vocab, idx % vocab


def rollout(weights, *, how="right"):
    layers, h, n, _ = weights.shape
    eye = torch.eye(n, dtype=weights.dtype)
    result = eye
    per_head = how == "per_head"
    for w in weights:
        a = w if per_head else (w.sum(0) if how == "summed" else w.mean(0))
        if how == "summed":
            a = (a + eye) / (a + eye).sum(-1, keepdim=True)
        elif how == "unnormalised":
            a = a + eye
        elif how == "halved":
            a = 0.4 * a + 0.6 * eye
            a = a / a.sum(-1, keepdim=True)
        elif how != "no_residual":
            a = 0.5 * a + 0.5 * eye
            a = a / a.sum(-1, keepdim=True)
        result = result @ a if how == "wrong_order" else a @ result
    return result.T if how == "transposed" else result


# (exercise, wrong functions, expected mistake key)
WRONG = {
    "scaled_dot_product": [
        (_sdpa(dim=-2), "softmax_axis"),
        (_sdpa(scale="none"), "no_scale"),
        (_sdpa(scale="dk"), "scale_by_dk"),
        (lambda q, k, v, mask=None: sdpa(q, k, v, mask)[::-1], "outputs_swapped"),
        (_sdpa(how="inverted"), "mask_inverted"),
        (_sdpa(how="after"), "mask_after_softmax"),
        (_sdpa(how="multiply"), "mask_multiplied"),
        (_sdpa(fill="-inf"), "nan_masked_rows"),
        (_sdpa(fill="-1e9"), "uniform_masked_rows"),
        (_sdpa(how="add"), "masked_keys_weighted"),
        (_sdpa(how="exp"), "not_normalised"),
        (_sdpa(how="raw_output"), "output_not_weights_times_values"),
        (
            lambda q, k, v, mask=None: (sdpa(q, k, v, mask)[0], sdpa(q, k, v, mask)[1] * math.nan),
            "nan",
        ),
    ],
    "masked_softmax": [
        (_softmax(dim=-2), "softmax_axis"),
        (_softmax(dim=0), "softmax_axis"),
        (_softmax(how="inverted"), "mask_inverted"),
        (_softmax(how="after"), "mask_after_softmax"),
        (_softmax(how="multiply"), "mask_multiplied"),
        (_softmax(fill="-inf"), "nan_masked_rows"),
        (_softmax(fill="-1e9"), "uniform_masked_rows"),
        (_softmax(how="naive"), "unstable_exp"),
        (_softmax(how="add"), "masked_keys_weighted"),
        (_softmax(how="in_place"), "in_place"),
        (lambda s, m: torch.exp(s.masked_fill(~m, -math.inf)), "not_normalised"),
        (lambda s, m: softmax(s, m) * math.nan, "nan"),
    ],
    "causal_mask": [
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(-1), "off_by_one_self"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).tril(1), "off_by_one_next"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).triu(1), "inverted"),
        (lambda n: torch.ones(n, n, dtype=torch.bool).triu(), "upper"),
        (
            lambda n: torch.full((n, n), float("-inf")).triu(1),
            "additive",
        ),
        (lambda n: torch.ones(n, n).tril(), "not_bool"),
    ],
    "heads": [
        ((lambda x, h: split(x, h, how="mixes"), merge), "split_mixes_positions"),
        ((lambda x, h: split(x, h, how="no_transpose"), merge), "split_no_transpose"),
        ((lambda x, h: split(x, h, how="strided"), merge), "split_strided"),
        ((split, lambda x: merge(x, how="mixes")), "merge_mixes_positions"),
        ((split, lambda x: merge(x, how="strided")), "merge_strided"),
    ],
    "multi_head": [
        (_mha(scale="model"), "scale_by_model_dim"),
        (_mha(scale="none"), "no_scale"),
        (_mha(dim=-2), "softmax_axis"),
        (_mha(split="mixes"), "split_mixes_positions"),
        (_mha(merge="mixes"), "merge_mixes_positions"),
        (_mha(linear="no_T"), "weight_not_transposed"),
        (_mha(no_out=True), "no_output_projection"),
        (_mha(average=True), "weights_averaged"),
        (_mha(how="inverted"), "mask_inverted"),
        (_mha(how="after"), "mask_after_softmax"),
        (_mha(fill="-inf"), "nan_masked_rows"),
        (_mha(fill="-1e9"), "uniform_masked_rows"),
        (_mha(how="add"), "masked_keys_weighted"),
        (_mha(then=lambda w: 2 * w), "not_normalised"),
        (_mha(then=lambda w: w * math.nan), "nan"),
    ],
    "sinusoidal": [
        (lambda n, d: pe(n, d, how="swapped"), "sin_cos_swapped"),
        (lambda n, d: pe(n, d, how="i"), "frequency_uses_i"),
        (lambda n, d: pe(n, d, how="column"), "frequency_per_column"),
        (lambda n, d: pe(n, d, how="halves"), "halves"),
        (lambda n, d: pe(n, d, how="sign"), "exponent_sign"),
        (lambda n, d: pe(n, d, how="from_one"), "positions_from_one"),
    ],
    "beam_step": [
        (lambda lp, s, k: beam(lp, s, k, how="per_beam"), "per_beam"),
        (lambda lp, s, k: beam(lp, s, k, how="rank_log_probs"), "scores_not_added"),
        (lambda lp, s, k: beam(lp, s, k, how="no_add"), "scores_not_added"),
        (lambda lp, s, k: beam(lp, s, k, how="multiply"), "scores_multiplied"),
        (lambda lp, s, k: beam(lp, s, k, how="swapped"), "flat_index"),
        (lambda lp, s, k: beam(lp, s, k, how="by_beams"), "flat_index"),
        (lambda lp, s, k: beam(lp, s, k, how="smallest"), "smallest"),
        (lambda lp, s, k: beam(lp, s, k, how="ascending"), "not_sorted"),
        (lambda lp, s, k: beam(lp, s, k, how="float_tokens"), "dtype"),
    ],
    "rollout": [
        (lambda w: rollout(w, how="no_residual"), "no_residual"),
        (lambda w: rollout(w, how="unnormalised"), "not_renormalised"),
        (lambda w: rollout(w, how="wrong_order"), "wrong_order"),
        (lambda w: rollout(w, how="summed"), "heads_summed"),
        (lambda w: rollout(w, how="per_head"), "per_head"),
        (lambda w: rollout(w, how="transposed"), "transposed"),
    ],
}

# wrong answers no diagnosis covers: the checker shows the smallest failing case
UNRECOGNISED = {
    "scaled_dot_product": lambda q, k, v, mask=None: sdpa(q * 0.5, k, v, mask),
    "masked_softmax": lambda s, m: softmax(s * 2, m),
    "causal_mask": lambda n: torch.ones(n, n, dtype=torch.bool),
    "heads": (lambda x, h: split(x, h).flip(-1), merge),
    "multi_head": lambda q, k, v, p, h, mask=None: (mha(q, k, v, p, h, mask)[0] * 2, None),
    "sinusoidal": lambda n, d: pe(n, d, how="base_1000"),
    "beam_step": lambda lp, s, k: beam(lp, s, k, how="off"),
    "rollout": lambda w: rollout(w, how="halved"),
}


def _fns(fn):
    return fn if isinstance(fn, tuple) else (fn,)


def _explanation(exercise, key):
    return [m.explanation for m in exercise.mistakes if m.key == key]


CASES = [(name, fn, key) for name, rows in WRONG.items() for fn, key in rows]


@pytest.mark.parametrize("name", list(E.EXERCISES))
def test_the_solution_passes_its_own_check(name, capsys):
    exercise = E.EXERCISES[name]
    fns = exercise.solution_functions()  # the printed source, run as a reader would
    assert [f.__name__ for f in fns] == [f.split("(")[0] for f in exercise.functions]
    result = exercise.check(*fns)
    assert result, result.message
    assert result.status == "passed" and result.mistake is None
    printed = capsys.readouterr().out
    assert printed.startswith("Passed") and f"{len(exercise.cases())} cases" in printed
    assert exercise.hint() and isinstance(exercise.hint(), str)


def test_a_passing_check_says_what_it_verified():
    result = E.scaled_dot_product.check(E._scaled_dot_product_attention, quiet=True)
    for words in ("6 cases", "float32", "float64", "no allowed key", "causal", "1e-05"):
        assert words in result.message


@pytest.mark.parametrize(("name", "fn", "key"), CASES, ids=[f"{n}-{k}" for n, _, k in CASES])
def test_each_mistake_is_named(name, fn, key):
    exercise = E.EXERCISES[name]
    result = exercise.check(*_fns(fn), quiet=True)
    assert not result
    assert result.status == "mistake", result.message
    assert result.mistake == key, result.message
    explanations = _explanation(exercise, key)
    if explanations:  # a variant's diagnosis: its explanation is in the message
        assert any(e.rstrip(".") in result.message for e in explanations)
    assert result.case in result.message


GENERIC = {"in_place", "dtype", "not_bool"}  # every checker's; tested on one exercise each


def test_every_recognised_mistake_has_a_wrong_reader():
    for name, exercise in E.EXERCISES.items():
        tested = {key for _, key in WRONG[name]}
        listed = set(exercise.recognised())
        assert listed >= {m.key for m in exercise.mistakes}
        assert listed == tested - GENERIC, f"{name}: listed {listed}, tested {tested}"


@pytest.mark.parametrize("name", list(E.EXERCISES))
def test_an_unrecognised_answer_gets_the_smallest_failing_case(name):
    exercise = E.EXERCISES[name]
    result = exercise.check(*_fns(UNRECOGNISED[name]), quiet=True)
    assert not result and result.status == "mismatch", result.message
    assert result.mistake is None
    assert "The smallest:" in result.message and result.case in result.message
    assert "expected" in result.message and "got" in result.message
    failing = [
        c
        for c in exercise.cases()
        if not E._close(exercise.expected(c), _fns(UNRECOGNISED[name])[c.function](*c.args), c.tol)
    ]
    assert result.case == min(failing, key=lambda c: c.size).label


def test_the_smallest_case_shows_the_values():
    result = E.causal_mask.check(lambda n: torch.ones(n, n, dtype=torch.bool), quiet=True)
    assert result.case == "n = 2"
    assert "shape (2, 2)" in result.message
    assert "expected tensor([[ True, False]," in result.message
    assert "got      tensor([[True, True]," in result.message


@pytest.mark.parametrize("name", list(E.EXERCISES))
def test_a_raising_function_is_reported(name):
    exercise = E.EXERCISES[name]

    def broken(*args):
        raise ZeroDivisionError("the reader's bug")

    result = exercise.check(*[broken] * len(exercise.functions), quiet=True)
    assert not result and result.status == "error"
    assert isinstance(result.error, ZeroDivisionError)
    assert "ZeroDivisionError: the reader's bug" in result.message
    assert "raise ZeroDivisionError" in result.message  # the reader's line
    assert result.case in result.message


def test_an_error_gets_a_tip():
    result = E.heads.check(split, lambda x: merge(x, how="view"), quiet=True)
    assert result.status == "error" and "merge_heads raised RuntimeError" in result.message
    assert "Tip:" in result.message and ".reshape" in result.message


def test_check_wants_the_exercise_functions():
    with pytest.raises(TypeError, match="split_heads"):
        E.heads.check(split)
    with pytest.raises(TypeError, match="function"):
        E.causal_mask.check("tril")


def test_a_result_is_truthy_only_when_passed():
    good = E.causal_mask.check(E._causal_mask, quiet=True)
    bad = E.causal_mask.check(lambda n: torch.ones(n, n, dtype=torch.bool).triu(), quiet=True)
    assert bool(good) and not bool(bad)
    assert str(bad) == bad.message and "upper" in repr(bad)


def test_the_solutions_match_pytorch():
    """The references the checker compares with, against PyTorch's own."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.rand(2, 1, 5, 5, generator=g) > 0.3
    mask[..., 0] = True
    out, _ = E._scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(
        out, torch.nn.functional.scaled_dot_product_attention(q, k, v, mask)
    )
    for case in E.multi_head.cases():
        torch.testing.assert_close(
            E._multi_head_attention(*case.args), E.multi_head.expected(case)
        )


def test_folded_solution_is_a_details_block_with_the_source():
    folded = E.causal_mask.folded_solution()
    html_text = folded._repr_html_()
    assert html_text.startswith('<details class="attnlib-solution"><summary>Solution: ')
    assert html_text.endswith("</details>")
    assert "tril" in html_text  # the highlighted source is inside
    assert repr(folded) == E.causal_mask.solution()
