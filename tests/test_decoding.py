"""Decoding: the key/value cache changes nothing but speed; beam 1 is greedy."""

import pytest
import torch

from attnlib.decoding import beam_search, greedy_decode, sample_decode
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
