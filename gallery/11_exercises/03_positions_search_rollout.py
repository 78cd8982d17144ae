"""
Exercises: positions, beam search, rollout
==========================================

Three more pieces from the course, each short to write and easy to get
subtly wrong: the sinusoidal positional encoding of the Transformer, one
step of beam search, and attention rollout. The checker and the workflow
are those of the first page of this chapter.
"""

# %%
# Exercise 6: the sinusoidal positional encoding
# ----------------------------------------------
#
# Vaswani et al. (2017, arXiv:1706.03762, section 3.5) add to each position
# :math:`pos` a vector whose even features are sines and odd features
# cosines of geometrically spaced frequencies:
#
# .. math::
#
#    PE_{pos, 2i} = \sin\!\left(\frac{pos}{10000^{2i/d}}\right), \qquad
#    PE_{pos, 2i+1} = \cos\!\left(\frac{pos}{10000^{2i/d}}\right)
#
# for :math:`pos = 0 \dots L - 1`. Write ``sinusoidal_encoding(length,
# d_model)`` returning the ``(L, D)`` table.

import torch

from attnlib import exercises


def sinusoidal_encoding(length, d_model):
    """Your code here: return the (length, d_model) table."""
    raise NotImplementedError("write sinusoidal_encoding")


# %%
# A typical wrong answer: the exponent uses the index :math:`i` of the
# feature pair where the formula has :math:`2i`, so the frequencies fall
# twice as fast.


def sinusoidal_first_try(length, d_model):
    pos = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    i = torch.arange(d_model // 2, dtype=torch.float32)  # (D/2,)
    angle = pos / 10000 ** (i / d_model)  # the mistake: i where the formula has 2i
    table = torch.zeros(length, d_model)
    table[:, 0::2], table[:, 1::2] = torch.sin(angle), torch.cos(angle)
    return table


pe_result = exercises.sinusoidal.check(sinusoidal_first_try)
exercises.sinusoidal.folded_solution()

# %%
# Exercise 7: one step of beam search
# -----------------------------------
#
# Beam search keeps the :math:`k` best partial outputs. One step: given the
# next-token log-probabilities ``log_probs`` ``(K, V)`` of the :math:`K`
# current beams and their scores ``scores`` ``(K,)`` (summed
# log-probabilities), return the :math:`k` best continuations over *all*
# (beam, token) pairs, best first: ``(new_scores, beam, token)``, each
# ``(k,)``, with ``new_scores = scores[beam] + log_probs[beam, token]`` and
# integer ``beam`` and ``token``.


def beam_step(log_probs, scores, k):
    """Your code here: return (new_scores, beam, token)."""
    raise NotImplementedError("write beam_step")


# %%
# A typical wrong answer: extend each beam by its own best token. It is
# greedy search run :math:`k` times; a beam with two good continuations
# should have given both.


def beam_step_first_try(log_probs, scores, k):
    total = scores[:, None] + log_probs  # (K, V)
    best, token = total.max(-1)  # the mistake: one continuation per beam
    order = best.argsort(descending=True)[:k]
    return best[order], order, token[order]


beam_result = exercises.beam_step.check(beam_step_first_try)
exercises.beam_step.folded_solution()

# %%
# Exercise 8: attention rollout
# -----------------------------
#
# Abnar and Zuidema (2020, arXiv:2005.00928) follow information through the
# layers by multiplying their attention maps, with the residual connection
# counted as attention to oneself: for each layer :math:`l`, average the
# heads, :math:`\hat A_l = \mathrm{rownorm}(\tfrac12 \bar A_l + \tfrac12 I)`,
# and
#
# .. math::
#
#    R = \hat A_L \hat A_{L-1} \cdots \hat A_1 .
#
# Write ``attention_rollout(weights)`` for ``weights`` ``(layers, H, L, L)``,
# returning ``R`` ``(L, L)``.


def attention_rollout(weights):
    """Your code here: return the (L, L) rollout."""
    raise NotImplementedError("write attention_rollout")


# %%
# A typical wrong answer: the layers multiplied in the wrong order (the
# first layer on the left), which answers another question.


def rollout_first_try(weights):
    n = weights.shape[-1]
    eye = torch.eye(n, dtype=weights.dtype)
    rollout = eye
    for layer in weights:
        a = 0.5 * layer.mean(0) + 0.5 * eye
        a = a / a.sum(-1, keepdim=True)
        rollout = rollout @ a  # the mistake: the later layer on the right
    return rollout


rollout_result = exercises.rollout.check(rollout_first_try)
exercises.rollout.folded_solution()

# %%
# Checks
# ------

for exercise in (exercises.sinusoidal, exercises.beam_step, exercises.rollout):
    assert exercise.check(*exercise.solution_functions()), exercise.name

assert pe_result.mistake == "frequency_uses_i", pe_result
assert beam_result.mistake == "per_beam", beam_result
assert rollout_result.mistake == "wrong_order", rollout_result
print("all checks passed")
