"""Decoding: the key/value cache changes nothing but speed; beam 1 is greedy."""

import math

import pytest
import torch

from attnlib.decoding import beam_search, greedy_decode, sample_decode
from attnlib.models import DecodingState, LanguageModel
from attnlib.transformer import DecoderLM, Seq2SeqTransformer, build_transformer_model


@pytest.fixture
def seq2seq():
    torch.manual_seed(0)
    model = Seq2SeqTransformer(12, 14, 32, 4, 2, 2, 64, dropout=0.0).double().eval()
    src = torch.randint(3, 12, (4, 7))
    src[0, 5:] = 0
    return model, src


def test_cached_logits_equal_full_decoder(seq2seq):
    model, src = seq2seq
    tgt = torch.randint(3, 14, (4, 6))
    full = model(src, tgt)  # (B, T, V)
    memory, src_mask = model.encode(src)
    cache = model.transformer.decoder.new_cache()
    steps = [model.decode(tgt[:, t : t + 1], memory, src_mask, cache) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-10, rtol=0)


def test_decoder_lm_cache_equals_full_pass():
    torch.manual_seed(0)
    lm = DecoderLM(12, dropout=0.0).double().eval()
    tokens = torch.randint(0, 12, (2, 7))
    cache = lm.new_cache()
    steps = [lm(tokens[:, :3], cache)] + [lm(tokens[:, t : t + 1], cache) for t in range(3, 7)]
    torch.testing.assert_close(torch.cat(steps, 1), lm(tokens), atol=1e-10, rtol=0)


@pytest.mark.parametrize("use_cache", [True, False])
def test_greedy_with_and_without_cache_agree(seq2seq, use_cache):
    model, src = seq2seq
    reference = greedy_decode(model, src, 9, eos_idx=None, use_cache=True)
    tokens = greedy_decode(model, src, 9, eos_idx=None, use_cache=use_cache)
    assert tokens.shape == (4, 10)
    assert torch.equal(tokens, reference)
    # greedy really is the argmax of the model's own logits, step by step
    logits = model(src, tokens[:, :-1])
    logits[..., model.pad_idx] = float("-inf")  # decoding never emits padding
    assert torch.equal(logits.argmax(-1), tokens[:, 1:])
    assert not (tokens[:, 1:] == model.pad_idx).any()


def test_beam_of_one_is_greedy(seq2seq):
    model, src = seq2seq
    greedy = greedy_decode(model, src, 9, eos_idx=2)
    beam, scores = beam_search(model, src, 9, eos_idx=2, beam_size=1)
    assert torch.equal(beam[:, : greedy.shape[1]], greedy)
    assert scores.shape == (4,)


def test_wider_beam_never_scores_lower(seq2seq):
    model, src = seq2seq
    _, one = beam_search(model, src, 6, eos_idx=2, beam_size=1, length_penalty=0.0)
    _, four = beam_search(model, src, 6, eos_idx=2, beam_size=4, length_penalty=0.0)
    assert (four >= one - 1e-9).all()


def test_sampling_is_seeded_and_top_k_one_is_greedy(seq2seq):
    model, src = seq2seq
    a = sample_decode(model, src, 8, generator=torch.Generator().manual_seed(1))
    b = sample_decode(model, src, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    top1 = sample_decode(model, src, 8, top_k=1, generator=torch.Generator().manual_seed(2))
    assert torch.equal(top1, greedy_decode(model, src, 8))


def test_errors_name_the_argument(seq2seq):
    model, src = seq2seq
    with pytest.raises(ValueError, match="temperature: expected a positive number, got 0"):
        sample_decode(model, src, 5, temperature=0)
    with pytest.raises(
        TypeError, match="model: expected a Seq2SeqTransformer, a Seq2Seq or a DecoderLM"
    ):
        greedy_decode(torch.nn.Linear(2, 2), src, 5)


def test_build_transformer_model_ties_embeddings():
    model = build_transformer_model(30, 32, 4, 2, 64)
    assert model.generator.weight is model.tgt_embed.embedding.weight
    assert model.src_embed.embedding.weight is model.tgt_embed.embedding.weight
    assert len(model.transformer.encoder.layers) == len(model.transformer.decoder.layers) == 2


def _sequence_log_prob(model, src, seq, eos=2):
    """Total log-probability of ``seq`` (BOS ... EOS, then padding) for each input."""
    logp = model(src, seq[:, :-1]).log_softmax(-1)  # (B, T, V)
    token_logp = logp.gather(-1, seq[:, 1:, None])[..., 0]  # (B, T)
    ended = (seq[:, 1:] == eos).cumsum(1)
    keep = (ended == 0) | ((ended == 1) & (seq[:, 1:] == eos))  # up to the first EOS
    return (token_logp * keep).sum(1)


def test_beam_search_finds_sequences_at_least_as_likely_as_greedy():
    """With no length penalty, beam search maximises log-probability: its output is never
    less likely than greedy's."""
    torch.manual_seed(3)
    model = Seq2SeqTransformer(8, 8, 16, 2, 1, 1, 32, dropout=0.0).double().eval()
    with torch.no_grad():
        model.generator.bias[2] += 1.5  # make EOS likely early, where short beams tempt
    src = torch.randint(3, 8, (32, 5))
    greedy = greedy_decode(model, src, 6)
    beam, _ = beam_search(model, src, 6, beam_size=4, length_penalty=0.0)
    n = max(greedy.shape[1], beam.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, n - t.shape[1]), value=2)  # noqa: E731
    with torch.no_grad():
        lp_greedy = _sequence_log_prob(model, src, pad(greedy))
        lp_beam = _sequence_log_prob(model, src, pad(beam))
    assert (lp_beam >= lp_greedy - 1e-9).all(), (lp_beam - lp_greedy).min()


@pytest.fixture
def gru():
    from attnlib.attention import AdditiveAttention
    from attnlib.seq2seq import Seq2Seq

    torch.manual_seed(0)
    return Seq2Seq(12, 12, 8, 16, attention=AdditiveAttention(16)).eval()


def test_recurrent_seq2seq_greedy_equals_its_own_loop(gru):
    src = torch.randint(3, 12, (3, 5))
    src[0, 3:] = 0
    memory, mask, state = gru.encode(src)
    token, own = torch.full((3,), 1), []
    for t in range(7):  # the decoder's own loop, by hand: argmax of each step, never padding
        logits, state = gru.decoder.step(token, state, memory, mask, t)
        token = logits.index_fill(-1, torch.tensor([0]), float("-inf")).argmax(-1)
        own.append(token)
    own = torch.stack(own, 1)
    assert torch.equal(greedy_decode(gru, src, 7, bos_idx=1, eos_idx=None)[:, 1:], own)


def test_recurrent_seq2seq_beam(gru):
    src = torch.randint(3, 12, (3, 5))
    greedy = greedy_decode(gru, src, 6)
    tokens, _ = beam_search(gru, src, 6, beam_size=1)
    assert torch.equal(tokens[:, : greedy.shape[1]], greedy)
    # a wider beam finds outputs at least as likely as greedy's
    wide, _ = beam_search(gru, src, 6, beam_size=4, length_penalty=0.0)

    def logp(tokens):
        logits = gru(src, tokens[:, :-1])
        lp = torch.log_softmax(logits, -1).gather(-1, tokens[:, 1:, None])[..., 0]
        keep = torch.cumsum((tokens[:, :-1] == 2).long(), 1) == 0  # up to the first EOS
        return (lp * keep).sum(1)

    assert (logp(wide) >= logp(beam_search(gru, src, 6, beam_size=1)[0]) - 1e-5).all()


class _Scripted(LanguageModel):
    """A language model with fixed next-token probabilities: after the prompt, EOS has
    probability e^-0.5 and token 3 e^-1; after that, token 3 is almost certain. Short is
    likely, long is likelier once divided by a strong length penalty."""

    def forward(self, tokens):
        n = tokens.shape[1]
        probs = torch.full((tokens.shape[0], n, 5), 1e-9, dtype=torch.float64)
        probs[:, 0, 2], probs[:, 0, 3] = math.exp(-0.5), math.exp(-1.0)
        probs[:, 0, 4] = 1 - math.exp(-0.5) - math.exp(-1.0)  # the rest, so rows sum to 1
        probs[:, 1:, 3] = 1 - 1e-6
        return probs.log()

    def start_decoding(self, src, use_cache):
        return _WholePrefix(self)


class _WholePrefix(DecodingState):
    incremental = False

    def __init__(self, model):
        self.model = model

    def feed(self, tokens, start):
        return self.model(tokens)

    def reorder(self, index):
        pass


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_early_stop_uses_the_best_reachable_length_penalty(alpha):
    """With a length penalty, a live beam may still overtake a finished one: the early stop
    must bound it with the penalty of the longest length it can reach. Here the one-token
    answer [EOS] (log p = -0.5) loses, for alpha = 2, to the 8-token answer (log p ~ -1)."""
    prompt = torch.ones(1, 1, dtype=torch.long)
    tokens, scores = beam_search(
        _Scripted(), prompt=prompt, max_new_tokens=8, beam_size=1, length_penalty=alpha
    )
    lp = lambda n: ((5 + n) / 6) ** alpha  # noqa: E731
    long_score = (-1.0 + 7 * math.log(1 - 1e-6)) / lp(8)
    if long_score > -0.5 / lp(1):
        assert tokens.shape[1] == 9 and (tokens[0, 1:] == 3).all()
        assert scores.item() == pytest.approx(long_score, rel=1e-5)
    else:
        assert tokens[0, :2].tolist() == [1, 2] and scores.item() == pytest.approx(
            -0.5 / lp(1), rel=1e-5
        )


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_beam_early_stop_never_changes_the_result(alpha, monkeypatch):
    """Stopping once no live beam can beat the finished ones gives the same hypotheses as
    searching to max_new_tokens: with a length penalty, a live beam's bound uses the penalty of the
    longest length it can still reach, not of the current one."""
    import attnlib.decoding as decoding

    torch.manual_seed(5)
    model = Seq2SeqTransformer(9, 9, 16, 2, 1, 1, 32, dropout=0.0).double().eval()
    with torch.no_grad():
        model.generator.bias[2] += 2.0  # EOS likely early: many short hypotheses finish
    src = torch.randint(3, 9, (24, 5))
    early, early_scores = beam_search(model, src, 8, beam_size=3, length_penalty=alpha)
    monkeypatch.setattr(decoding, "_can_stop", lambda *args: False)
    full, full_scores = beam_search(model, src, 8, beam_size=3, length_penalty=alpha)
    torch.testing.assert_close(early_scores, full_scores)
    n = max(early.shape[1], full.shape[1])
    pad = lambda t: torch.nn.functional.pad(t, (0, n - t.shape[1]), value=2)  # noqa: E731
    assert torch.equal(pad(early), pad(full))
