"""attnlib.seq2seq.Seq2Seq with every single-head attention layer, and without attention."""

from __future__ import annotations

import pytest
import torch

from attnlib.attention import (
    AdditiveAttention,
    ContentBasedAttention,
    HardAttention,
    LocalAttention,
    LocationBasedAttention,
    LuongAttention,
)
from attnlib.capture import record_attention
from attnlib.decoding import greedy_decode
from attnlib.seq2seq import RecurrentEncoder, Seq2Seq

V_SRC, V_TGT, EMB, HID = 11, 9, 4, 6
B, S, T = 3, 6, 5
PAD, BOS, EOS = 0, 1, 2

ATTENTIONS = {
    "none": lambda: None,
    "additive": lambda: AdditiveAttention(HID),
    "luong_dot": lambda: LuongAttention(HID, method="dot"),
    "luong_general": lambda: LuongAttention(HID, method="general"),
    "luong_concat": lambda: LuongAttention(HID, method="concat"),
    "content": lambda: ContentBasedAttention(HID),
    "location": lambda: LocationBasedAttention(HID, max_keys=S + 2),
    "local_m": lambda: LocalAttention(HID, window=1, mode="local-m"),
    "local_p": lambda: LocalAttention(HID, window=2, mode="local-p"),
    "hard": lambda: HardAttention(HID),
}
WITH_ATTENTION = [name for name in ATTENTIONS if name != "none"]
SOFTMAX_ROWS = ["additive", "luong_dot", "luong_general", "luong_concat", "content", "location"]


def make_model(name: str) -> Seq2Seq:
    return Seq2Seq(V_SRC, V_TGT, EMB, HID, attention=ATTENTIONS[name](), pad_idx=PAD)


def run(model: Seq2Seq, src: torch.Tensor, tgt_in: torch.Tensor):
    """Logits and the decoder's weights ``(B, T, S)`` (``None`` without attention),
    recorded the way every attnlib model gives its weights."""
    with record_attention(model) as record:
        logits = model(src, tgt_in)
    weights = record.steps("decoder.attention") if len(record) else None
    return logits, weights


def make_src() -> torch.Tensor:
    src = torch.randint(3, V_SRC, (B, S))
    src[1, -2:] = PAD  # length 4
    src[2, -4:] = PAD  # length 2
    return src


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_forward_shapes(name):
    model = make_model(name)
    logits, weights = run(model, make_src(), torch.randint(1, V_TGT, (B, T)))
    assert logits.shape == (B, T, V_TGT)
    assert not logits.isnan().any()
    if name == "none":
        assert weights is None
    else:
        assert weights.shape == (B, T, S)
        assert not weights.isnan().any() and (weights >= 0).all()


@pytest.mark.parametrize("name", WITH_ATTENTION)
def test_padding_never_receives_attention(name):
    """The weights at source padding positions are exactly 0, for every layer (train mode)."""
    model = make_model(name).train()
    src = make_src()
    _, weights = run(model, src, torch.randint(1, V_TGT, (B, T)))
    pad = (src == PAD)[:, None, :].expand(B, T, S)
    assert torch.equal(weights[pad], torch.zeros_like(weights[pad]))
    if name in SOFTMAX_ROWS or name == "hard":
        torch.testing.assert_close(weights.sum(-1), torch.ones(B, T), atol=1e-5, rtol=0)


def test_local_m_window_follows_the_decoder_step():
    """local-m in the decoder: step t attends only to source positions t - D .. t + D."""
    model = make_model("local_m").eval()
    src = torch.randint(3, V_SRC, (B, S))
    _, weights = run(model, src, torch.randint(1, V_TGT, (B, T)))
    t = torch.arange(T)[:, None]
    inside = ((torch.arange(S)[None, :] - t).abs() <= 1).expand(B, T, S)
    assert torch.equal(weights[~inside], torch.zeros_like(weights[~inside]))
    assert (weights[inside] > 0).all()


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_padding_does_not_change_the_result(name):
    """A padded source sequence gives the same logits and weights as the same sequence alone,
    unpadded: the encoder packs the sequences, and the decoder masks the padding."""
    model = make_model(name).eval()
    src = make_src()
    tgt = torch.randint(1, V_TGT, (B, T))
    logits, weights = run(model, src, tgt)
    alone_logits, alone_weights = run(model, src[1:2, :4], tgt[1:2])
    torch.testing.assert_close(logits[1:2], alone_logits, atol=1e-5, rtol=1e-5)
    if weights is not None:
        torch.testing.assert_close(weights[1:2, :, :4], alone_weights, atol=1e-5, rtol=1e-5)


def test_forward_returns_logits_only():
    """One return convention for every model: logits; the weights come from capture."""
    logits = make_model("additive")(make_src(), torch.randint(1, V_TGT, (B, T)))
    assert isinstance(logits, torch.Tensor) and logits.shape == (B, T, V_TGT)


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_greedy_decode_is_argmax_of_teacher_forced_logits(name):
    """Feeding the greedy tokens back with teacher forcing reproduces the same logits' argmax
    (and the same attention weights, recorded during generation), padding excluded."""
    model = make_model(name).eval()
    src = make_src()
    with record_attention(model) as record:
        out = greedy_decode(model, src, max_new_tokens=T, bos_idx=BOS, eos_idx=None)
    assert out.shape == (B, T + 1) and out.dtype == torch.long and (out[:, 0] == BOS).all()
    tokens = out[:, 1:]
    logits, forced_weights = run(model, src, out[:, :-1])
    logits[..., PAD] = float("-inf")  # the decoders never generate padding
    assert torch.equal(logits.argmax(-1), tokens)
    if name == "none":
        assert not len(record) and forced_weights is None
    else:
        weights = record.steps("decoder.attention")
        assert weights.shape == (B, T, S)
        torch.testing.assert_close(weights, forced_weights, atol=1e-6, rtol=0)


def test_greedy_decode_stops_when_all_sequences_hit_eos(monkeypatch):
    """Scripted decoder outputs: item 0 says EOS at step 1, item 1 at step 3. Decoding stops
    after step 3 (not max_len), and item 0 is filled with EOS after its EOS."""
    model = make_model("additive").eval()
    script = [[5, 3], [EOS, 4], [6, 7], [8, EOS], [3, 3], [3, 3]]
    real_step = model.decoder.step
    calls = []

    def scripted_step(token, state, memory, memory_mask, t):
        logits, state = real_step(token, state, memory, memory_mask, t)
        calls.append(t)
        forced = torch.full_like(logits, -10.0)
        forced[torch.arange(2), torch.tensor(script[t])] = 10.0
        return forced, state

    monkeypatch.setattr(model.decoder, "step", scripted_step)
    src = make_src()[:2]
    with record_attention(model) as record:
        out = greedy_decode(model, src, max_new_tokens=6, bos_idx=BOS, eos_idx=EOS)
    assert calls == [0, 1, 2, 3]
    assert out.tolist() == [[BOS, 5, EOS, EOS, EOS], [BOS, 3, 4, 7, EOS]]
    assert record.steps("decoder.attention").shape == (2, 4, S)


def test_greedy_decode_immediate_eos():
    """A decoder that always prefers EOS stops after one step."""
    model = make_model("luong_general").eval()
    with torch.no_grad():
        model.decoder.out.bias[EOS] = 1e4
    out = greedy_decode(model, make_src(), max_new_tokens=7, bos_idx=BOS, eos_idx=EOS)
    assert out.tolist() == [[BOS, EOS]] * B


def test_greedy_decode_without_eos_runs_to_max_new_tokens():
    model = make_model("none").eval()
    with torch.no_grad():
        model.decoder.out.bias[EOS] = 1e4
    out = greedy_decode(model, make_src(), max_new_tokens=4, bos_idx=BOS, eos_idx=None)
    assert out.shape == (B, 5)
    assert (out[:, 1:] == EOS).all()


def test_without_attention_decoder_context_is_final_encoder_state():
    """No attention: the context is the encoder's last state (of the unpadded sequence)."""
    model = make_model("none").eval()
    src = make_src()
    memory, mask, state = model.encode(src)
    assert memory.shape == (B, 1, HID) and mask.shape == (B, 1, S)
    torch.testing.assert_close(memory[:, 0], state, atol=1e-6, rtol=0)


def test_attention_memory_is_every_encoder_state():
    model = make_model("additive").eval()
    src = make_src()
    memory, mask, state = model.encode(src)
    assert memory.shape == (B, S, HID)
    assert torch.equal(mask[:, 0], src != PAD)
    # padded positions of the memory are zeros (pad_packed_sequence), and the final state
    # is the state at the last real token
    assert torch.equal(memory[2, 2:], torch.zeros(4, HID))
    torch.testing.assert_close(memory[2, 1], state[2], atol=1e-6, rtol=0)


def test_training_reduces_loss():
    """The model trains: a few Adam steps on a copy task lower the cross-entropy."""
    model = make_model("additive").train()
    src = torch.randint(3, V_TGT, (8, 5))
    tgt_in = torch.cat([torch.full((8, 1), BOS), src[:, :-1]], 1)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(15):
        logits = model(src, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V_TGT), src.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_bidirectional_encoder_shapes_and_padding():
    """The bidirectional encoder keeps the decoder's interface, padding gets no weight, and
    its annotations depend on later source tokens (a one-way GRU's first state cannot)."""
    torch.manual_seed(0)
    model = Seq2Seq(10, 10, 8, 16, attention=AdditiveAttention(16), bidirectional=True).eval()
    src = torch.tensor([[4, 5, 6, 0, 0], [4, 5, 6, 7, 8]])
    logits, weights = run(model, src, torch.randint(1, 10, (2, 3)))
    assert logits.shape == (2, 3, 10) and weights.shape == (2, 3, 5)
    assert torch.equal(weights[0, :, 3:], torch.zeros(3, 2))
    memory = model.encode(src)[0]
    changed = src.clone()
    changed[1, 4] = 9
    assert not torch.allclose(model.encode(changed)[0][1, 0], memory[1, 0])


def test_bidirectional_encoder_is_bahdanaus():
    """Bahdanau et al.'s encoder: two GRUs of half the width, annotations
    h_j = [forward_j; backward_j], final state [forward_last; backward_first]; checked against
    two one-directional torch GRUs with the same weights, run on the sequence and its reverse."""
    torch.manual_seed(0)
    enc = RecurrentEncoder(10, 4, 6, bidirectional=True).eval()
    fwd, bwd = torch.nn.GRU(4, 3, batch_first=True), torch.nn.GRU(4, 3, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(fwd, f"{name}_l0").copy_(getattr(enc.rnn, f"{name}_l0"))
            getattr(bwd, f"{name}_l0").copy_(getattr(enc.rnn, f"{name}_l0_reverse"))
    src = torch.randint(1, 10, (2, 5))
    outputs, state = enc(src)
    emb = enc.embedding(src)
    out_f, last_f = fwd(emb)
    out_b, last_b = bwd(emb.flip(1))
    torch.testing.assert_close(outputs, torch.cat([out_f, out_b.flip(1)], -1))
    torch.testing.assert_close(state[0], torch.cat([last_f[0], last_b[0]], -1))
    with pytest.raises(ValueError, match="hidden_dim: expected an even number"):
        RecurrentEncoder(10, 4, 5, bidirectional=True)
