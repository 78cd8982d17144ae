"""
Exercises: many heads
=====================

Multi-head attention (Vaswani et al., 2017, arXiv:1706.03762) runs
:math:`h` attentions side by side on slices of the model's features. Two
exercises: moving between the ``(B, L, D)`` layout of a layer's input and
the ``(B, H, L, D/H)`` layout of its heads — where the most common bug of
the whole topic lives — and then the complete multi-head attention, checked
against PyTorch's ``torch.nn.MultiheadAttention`` with the same weights.
The checker and the workflow are those of the previous page.
"""

# %%
# Exercise 4: splitting and merging heads
# ---------------------------------------
#
# Head :math:`h` works on features :math:`h \cdot D/H` to
# :math:`(h + 1) \cdot D/H - 1` of every position. Write
# ``split_heads(x, num_heads)``: ``(B, L, D)`` → ``(B, H, L, D/H)``, and
# ``merge_heads(x)``: ``(B, H, L, D/H)`` → ``(B, L, D)``, its inverse. The
# checker takes both functions, in that order.

import torch

from attnlib import exercises


def split_heads(x, num_heads):
    """Your code here: (B, L, D) -> (B, H, L, D/H)."""
    raise NotImplementedError("write split_heads")


def merge_heads(x):
    """Your code here: (B, H, L, D/H) -> (B, L, D)."""
    raise NotImplementedError("write merge_heads")


# %%
# A typical wrong answer: ``split_heads`` reshapes straight to
# ``(B, H, L, D/H)``. The shape is right and nothing raises, but each "head"
# now holds a block of *positions*, mixed with features of other positions.
# (``merge_heads`` is right here.)


def split_first_try(x, num_heads):
    b, n, d = x.shape
    return x.reshape(b, num_heads, n, d // num_heads)  # the shape is right, the layout is not


def merge_first_try(x):
    b, h, n, dh = x.shape
    return x.transpose(1, 2).reshape(b, n, h * dh)


heads_result = exercises.heads.check(split_first_try, merge_first_try)
exercises.heads.folded_solution()

# %%
# Exercise 5: multi-head attention
# --------------------------------
#
# .. math::
#
#    \mathrm{MultiHead}(Q, K, V) = \mathrm{Concat}(\mathrm{head}_1, \dots,
#    \mathrm{head}_h)\, W^O, \qquad
#    \mathrm{head}_i = \mathrm{Attention}(Q W_i^Q, K W_i^K, V W_i^V)
#
# Write ``multi_head_attention(query, key, value, params, num_heads,
# mask=None)`` returning ``(output (B, Lq, D), weights (B, H, Lq, Lk))``.
# ``params`` is a dict of ``w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o``, each
# weight ``(D, D)`` used as ``x @ w.T + b`` (the layout of
# ``torch.nn.Linear``). Each head's scores are divided by
# :math:`\sqrt{d_k}` with :math:`d_k = D/H`, the size of *one head*.


def multi_head_attention(query, key, value, params, num_heads, mask=None):
    """Your code here: return (output, weights)."""
    raise NotImplementedError("write multi_head_attention")


# %%
# A typical wrong answer: everything right except the scale, divided by
# :math:`\sqrt{D}` (the model width) instead of :math:`\sqrt{D/H}`. The
# attention is then too flat, and the checker says why.


def multi_head_first_try(query, key, value, params, num_heads, mask=None):
    b, lq, d = query.shape

    def heads(x, w, bias):  # (B, L, D) -> (B, H, L, D/H)
        x = x @ w.T + bias
        return x.reshape(b, x.shape[1], num_heads, d // num_heads).transpose(1, 2)

    q = heads(query, params["w_q"], params["b_q"])
    k = heads(key, params["w_k"], params["b_k"])
    v = heads(value, params["w_v"], params["b_v"])
    scores = q @ k.transpose(-2, -1) / d**0.5  # the mistake: the model width
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights * mask
    out = (weights @ v).transpose(1, 2).reshape(b, lq, d)
    return out @ params["w_o"].T + params["b_o"], weights


mha_result = exercises.multi_head.check(multi_head_first_try)
exercises.multi_head.folded_solution()

# %%
# Checks
# ------

for exercise in (exercises.heads, exercises.multi_head):
    assert exercise.check(*exercise.solution_functions()), exercise.name

assert heads_result.mistake == "split_mixes_positions", heads_result
assert mha_result.mistake == "scale_by_model_dim", mha_result
print("all checks passed")
