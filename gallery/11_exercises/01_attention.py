"""
Exercises: attention itself
===========================

Three functions that everything else in this course is built on: the scaled
dot-product attention of Vaswani et al. (2017, arXiv:1706.03762), the masked
softmax inside it, and the causal mask of a decoder. For each one: the task
and its formula, a stub for you to fill in, the checker run on the stub and
on a typical wrong answer (so you see what a diagnosis looks like), and the
solution, folded away.

**How to use this page.** Download it as a notebook (the button at the
bottom), replace each stub's body with your code and run the cell with
``check``. ``hint()`` gives a hint; the folded solution is there when you
are done, or stuck. The checker runs your function on a few dozen generated
cases and compares it with the library's implementation (itself tested
against PyTorch's ``F.scaled_dot_product_attention``).
"""

# %%
# Exercise 1: scaled dot-product attention
# ----------------------------------------
#
# Given queries :math:`Q` ``(..., Lq, Dk)``, keys :math:`K` ``(..., Lk, Dk)``
# and values :math:`V` ``(..., Lk, Dv)``,
#
# .. math::
#
#    \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V
#
# where the softmax runs over the keys (the last axis), so that each query's
# weights sum to 1. An optional boolean ``mask``, broadcastable to
# ``(..., Lq, Lk)``, says which keys each query may attend to (``True`` =
# may attend, PyTorch's convention); a masked key gets weight 0, and a query
# that may attend to no key at all gets zeros, not NaN. Return
# ``(output, weights)``.

import torch

from attnlib import exercises


def scaled_dot_product_attention(q, k, v, mask=None):
    """Your code here: return (output (..., Lq, Dv), weights (..., Lq, Lk))."""
    raise NotImplementedError("write scaled_dot_product_attention")


stub_result = exercises.scaled_dot_product.check(scaled_dot_product_attention)

# %%
# The stub raises, and the checker says so (with the case it was running).
# A first attempt that many of us write: the softmax over the wrong axis.


def attention_first_try(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (..., Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = torch.softmax(scores, dim=-2)  # over the queries: the mistake
    if mask is not None:
        weights = weights * mask
    return weights @ v, weights


wrong_result = exercises.scaled_dot_product.check(attention_first_try)

# %%
# The hint, and the solution (click to unfold):

print(exercises.scaled_dot_product.hint())
exercises.scaled_dot_product.folded_solution()

# %%
# Exercise 2: the masked softmax
# ------------------------------
#
# The step inside attention that handles the mask, on its own: given
# ``scores`` ``(..., Lq, Lk)`` and a boolean ``mask`` broadcastable to them,
# return weights that are the softmax of the allowed scores over the last
# axis, exactly 0 at masked keys, and all zeros in a row with no allowed key:
#
# .. math::
#
#    w_{ij} = \frac{m_{ij}\, e^{s_{ij}}}{\sum_{j'} m_{ij'}\, e^{s_{ij'}}}
#    \quad (0 \text{ if } \textstyle\sum_{j'} m_{ij'} = 0)
#
# Large scores must not overflow (subtract the row's maximum, or let
# ``torch.softmax`` do it).


def masked_softmax(scores, mask):
    """Your code here: return weights, the same shape as scores."""
    raise NotImplementedError("write masked_softmax")


# %%
# A typical wrong answer: softmax first, then zero the masked keys. The
# masked keys do get 0, but the remaining weights no longer sum to 1.


def masked_softmax_first_try(scores, mask):
    return torch.softmax(scores, dim=-1) * mask


softmax_result = exercises.masked_softmax.check(masked_softmax_first_try)
exercises.masked_softmax.folded_solution()

# %%
# Exercise 3: the causal mask
# ---------------------------
#
# A decoder predicts token :math:`i + 1` from tokens :math:`0 \dots i`, so
# query :math:`i` may attend to key :math:`j` only when :math:`j \le i`.
# Return the ``(n, n)`` boolean mask, ``True`` where attending is allowed.


def causal_mask(n):
    """Your code here: return an (n, n) boolean tensor."""
    raise NotImplementedError("write causal_mask")


# %%
# A typical wrong answer: the strict lower triangle, so that a token cannot
# see itself (and the first token sees nothing).


def causal_mask_first_try(n):
    return torch.ones(n, n, dtype=torch.bool).tril(-1)


causal_result = exercises.causal_mask.check(causal_mask_first_try)
exercises.causal_mask.folded_solution()

# %%
# Checks
# ------
#
# The solutions pass their own checks (the checker's message lists the
# cases it verified), the stub is reported as an error rather than crashing
# the checker, and each typical wrong answer is named for what it is.

for exercise in (exercises.scaled_dot_product, exercises.masked_softmax, exercises.causal_mask):
    assert exercise.check(*exercise.solution_functions()), exercise.name

assert stub_result.status == "error" and isinstance(stub_result.error, NotImplementedError)
assert wrong_result.mistake == "softmax_axis", wrong_result
assert softmax_result.mistake == "mask_after_softmax", softmax_result
assert causal_result.mistake == "off_by_one_self", causal_result
print("all checks passed")
