"""Decoding: greedy, beam search and sampling, batched, with a key/value cache.

Every decoder works on any :class:`attnlib.models.SequenceModel`: an
encoder-decoder (:class:`~attnlib.transformer.Seq2SeqTransformer`, the
recurrent :class:`~attnlib.seq2seq.Seq2Seq`), given ``src``, or a language
model (:class:`~attnlib.transformer.DecoderLM`), given a ``prompt``. The model
supplies a :class:`~attnlib.models.DecodingState` that feeds it tokens. With
``use_cache=True`` each step feeds only the newest token and reuses the keys
and values of the earlier ones (:class:`attnlib.attention.KVCache`); with
``use_cache=False`` it re-runs the whole prefix, which gives the same tokens
and is slower as the output grows. A recurrent decoder always carries its
state.

Every decoder returns the prefix (BOS or the prompt) followed by the
generated tokens; after its EOS a row is filled with ``eos_idx``. To see
where the model looked while it generated, wrap the call in
:func:`attnlib.capture.record_attention`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_positive_int
from .models import SequenceModel

__all__ = ["greedy_decode", "sample_decode", "beam_search"]


class _Stepper:
    """The prefix generated so far, fed to the model's decoding state."""

    def __init__(self, model, src: Tensor | None, prefix: Tensor, use_cache: bool) -> None:
        if not isinstance(model, SequenceModel):
            raise TypeError(
                "model: expected a Seq2SeqTransformer, a Seq2Seq or a DecoderLM "
                f"(an attnlib.models.SequenceModel), got {type(model).__name__}"
            )
        if model.needs_source and src is None:
            raise ValueError("src: expected source token ids for an encoder-decoder model")
        self.state = model.start_decoding(src, use_cache)
        self.incremental = self.state.incremental  # the state says what it remembers
        self.prefix = prefix  # (N, T) every token so far
        self.fed = 0  # how many prefix tokens the state has seen

    def logits(self) -> Tensor:
        """Next-token logits ``(N, V)`` after the current prefix."""
        start = self.fed if self.incremental else 0
        out = self.state.feed(self.prefix[:, start:], start)  # (N, t, V)
        self.fed = self.prefix.shape[1]
        logits = out[:, -1]  # (N, V)
        banned = self.state.banned_token
        if banned is not None:
            logits = logits.index_fill(-1, torch.tensor([banned]), float("-inf"))
        return logits

    def append(self, tokens: Tensor) -> None:
        self.prefix = torch.cat([self.prefix, tokens[:, None]], 1)

    def reorder(self, index: Tensor) -> None:
        self.prefix = self.prefix[index]
        self.state.reorder(index)


def _start(model, src, prompt, bos_idx) -> tuple[Tensor | None, Tensor]:
    if prompt is not None:
        return src, prompt
    if src is None:
        raise ValueError("src: expected source token ids (or a prompt for a DecoderLM)")
    return src, torch.full((src.shape[0], 1), bos_idx, dtype=torch.long, device=src.device)


@torch.no_grad()
def greedy_decode(
    model,
    src: Tensor | None = None,
    max_new_tokens: int = 50,
    bos_idx: int = 1,
    eos_idx: int | None = 2,
    *,
    prompt: Tensor | None = None,
    use_cache: bool = True,
) -> Tensor:
    """Pick the most probable token at every step.

    Parameters
    ----------
    model : attnlib.models.SequenceModel
        A :class:`~attnlib.transformer.Seq2SeqTransformer`, a
        :class:`~attnlib.seq2seq.Seq2Seq` or a :class:`~attnlib.transformer.DecoderLM`.
    src : Tensor, optional
        Source token ids (encoder-decoder models).
    max_new_tokens : int
        Tokens to generate at most.
    bos_idx, eos_idx : int
        Start token (when no ``prompt``) and end token (``None``: never stop).
    prompt : Tensor, optional
        Tokens to continue (instead of ``[bos_idx]``).
    use_cache : bool

    Returns
    -------
    Tensor
        The prefix followed by the generated tokens; after EOS a row is filled
        with ``eos_idx``.

    Shape
    -----
    - src: ``(B, S)``; prompt: ``(B, P)``
    - output: ``(B, P + T)`` with ``T <= max_new_tokens`` (``P = 1`` without prompt)
    """
    return sample_decode(
        model,
        src,
        max_new_tokens,
        bos_idx,
        eos_idx,
        prompt=prompt,
        use_cache=use_cache,
        greedy=True,
    )


@torch.no_grad()
def sample_decode(
    model,
    src: Tensor | None = None,
    max_new_tokens: int = 50,
    bos_idx: int = 1,
    eos_idx: int | None = 2,
    *,
    prompt: Tensor | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    greedy: bool = False,
) -> Tensor:
    """Sample each token from the softmax of the logits divided by ``temperature``.

    ``top_k`` keeps the ``k`` most probable tokens; ``top_p`` keeps the
    smallest set whose probability reaches ``p`` (nucleus sampling, Holtzman
    et al., 2020, arXiv:1904.09751). Arguments and output as
    :func:`greedy_decode`.

    Shape
    -----
    - output: ``(B, P + T)``
    """
    check_positive_int(max_new_tokens, "max_new_tokens")
    if temperature <= 0:
        raise ValueError(f"temperature: expected a positive number, got {temperature}")
    src, prefix = _start(model, src, prompt, bos_idx)
    stepper = _Stepper(model, src, prefix, use_cache)
    done = torch.zeros(prefix.shape[0], dtype=torch.bool, device=prefix.device)
    for _ in range(max_new_tokens):
        logits = stepper.logits()  # (B, V)
        if greedy:
            token = logits.argmax(-1)
        else:
            probs = torch.softmax(_filter(logits / temperature, top_k, top_p), -1)
            token = torch.multinomial(probs, 1, generator=generator)[:, 0]
        if eos_idx is not None:
            token = token.masked_fill(done, eos_idx)
            done |= token == eos_idx
        stepper.append(token)
        if bool(done.all()):
            break
    return stepper.prefix


def _filter(logits: Tensor, top_k: int | None, top_p: float | None) -> Tensor:
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), -1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(-1, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the tokens before it already reach top_p
        drop_sorted = (cumulative - sorted_logits.softmax(-1)) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


@torch.no_grad()
def beam_search(
    model,
    src: Tensor | None = None,
    max_new_tokens: int = 50,
    bos_idx: int = 1,
    eos_idx: int = 2,
    *,
    beam_size: int = 4,
    length_penalty: float = 0.6,
    prompt: Tensor | None = None,
    use_cache: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""Keep the ``beam_size`` best partial outputs at every step.

    Finished hypotheses are ranked by :math:`\log p / lp(y)`,
    :math:`lp(y) = ((5 + |y|) / 6)^\alpha` (Wu et al., 2016,
    arXiv:1609.08144), ``alpha = length_penalty``. With ``beam_size=1`` this
    is greedy decoding.

    Returns
    -------
    tokens : Tensor
        The best hypothesis per input (prefix included), padded with
        ``eos_idx``.
    scores : Tensor
        Their length-normalised log-probabilities.

    Shape
    -----
    - tokens: ``(B, P + T)``; scores: ``(B,)``
    """
    check_positive_int(beam_size, "beam_size")
    check_positive_int(max_new_tokens, "max_new_tokens")
    src, prefix = _start(model, src, prompt, bos_idx)
    b, k = prefix.shape[0], beam_size
    expand = torch.arange(b, device=prefix.device).repeat_interleave(k)  # (B*K,)
    stepper = _Stepper(model, None if src is None else src[expand], prefix[expand], use_cache)
    # only the first beam of each input is alive at the start
    scores = torch.full((b, k), float("-inf"), device=prefix.device)
    scores[:, 0] = 0.0
    finished: list[list[tuple[float, Tensor]]] = [[] for _ in range(b)]
    start = prefix.shape[1]
    for step in range(1, max_new_tokens + 1):
        logp = torch.log_softmax(stepper.logits().float(), -1)  # (B*K, V)
        vocab = logp.shape[-1]
        total = (scores.reshape(-1, 1) + logp).view(b, k * vocab)
        top, flat = total.topk(2 * k, -1)  # candidates, (B, 2K)
        beam, token = flat // vocab, flat % vocab
        new_scores = torch.full((b, k), float("-inf"), device=prefix.device)
        rows = torch.zeros(b, k, dtype=torch.long, device=prefix.device)
        new_tokens = torch.full((b, k), eos_idx, dtype=torch.long, device=prefix.device)
        for i in range(b):
            kept = 0
            candidates = zip(top[i].tolist(), beam[i].tolist(), token[i].tolist(), strict=True)
            for score, bm, tok in candidates:
                if score == float("-inf") or kept == k:
                    continue
                row = i * k + bm
                if tok == eos_idx:
                    seq = torch.cat([stepper.prefix[row], prefix.new_tensor([tok])])
                    finished[i].append((score / _lp(step, length_penalty), seq))
                    finished[i] = sorted(finished[i], key=lambda c: -c[0])[:k]
                    continue
                new_scores[i, kept], rows[i, kept], new_tokens[i, kept] = score, row, tok
                kept += 1
        stepper.reorder(rows.view(-1))
        stepper.append(new_tokens.view(-1))
        scores = new_scores
        if _can_stop(finished, scores, step, max_new_tokens, length_penalty, k):
            break
    out, best = [], []
    for i in range(b):
        candidates = list(finished[i])
        for j in range(k):  # unfinished beams count too, at max_new_tokens
            if scores[i, j] > float("-inf"):
                seq = stepper.prefix[i * k + j]
                candidates.append(
                    (scores[i, j].item() / _lp(seq.shape[0] - start, length_penalty), seq)
                )
        score, seq = max(candidates, key=lambda c: c[0])
        out.append(seq)
        best.append(score)
    length = max(s.shape[0] for s in out)
    tokens = torch.full((b, length), eos_idx, dtype=torch.long, device=prefix.device)
    for i, seq in enumerate(out):
        tokens[i, : seq.shape[0]] = seq
    return tokens, torch.tensor(best)


def _can_stop(
    finished: list[list[tuple[float, Tensor]]],
    scores: Tensor,
    step: int,
    max_new_tokens: int,
    alpha: float,
    k: int,
) -> bool:
    """Whether every input has ``k`` finished hypotheses that no live beam can still beat.

    A live beam's log-probability (``scores``, ``(B, K)``, never positive) can
    only fall as tokens are added, but its length-normalised score is divided
    by the length penalty of its *final* length, anywhere in ``step + 1 ..
    max_new_tokens``: the best it can reach is its log-probability divided by the
    largest penalty over those lengths.
    """
    best_lp = max(_lp(step + 1, alpha), _lp(max_new_tokens, alpha))
    best_alive = scores.max(-1).values / best_lp  # (B,)
    return all(len(f) >= k and best_alive[i] <= f[-1][0] for i, f in enumerate(finished))


def _lp(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha
