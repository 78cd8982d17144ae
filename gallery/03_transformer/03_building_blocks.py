"""
Encoder and decoder blocks, built up and checked against torch.nn.Transformer
=============================================================================

The Transformer of Vaswani et al. (2017, arXiv:1706.03762) is two stacks of
one repeated block each. An *encoder block* is multi-head self-attention,
Add & Norm, a position-wise feed-forward network, Add & Norm. A *decoder
block* is masked self-attention, Add & Norm, cross-attention over the encoder
output, Add & Norm, feed-forward, Add & Norm. This tutorial writes one of
each out line by line with every shape printed, proves them equal to
:class:`attnlib.transformer.EncoderLayer` and
:class:`attnlib.transformer.DecoderLayer`, measures what moving the
LayerNorm in front of the sublayer (pre-norm) changes in a deep stack,
checks the whole :class:`attnlib.transformer.Transformer` against
``torch.nn.Transformer`` with padding and causal masks, looks at every
layer's attention, and counts the parameters.
"""

import math
import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from torch import nn

from attnlib.attention import MultiHeadAttention
from attnlib.capture import record_attention
from attnlib.masks import (
    causal_mask,
    create_masks,
    padding_mask,
    to_key_padding_mask,
    to_torch_attn_mask,
)
from attnlib.plotting import plot_attention_heads
from attnlib.positional import SinusoidalPositionalEncoding
from attnlib.report import key_figure
from attnlib.training import seed_everything
from attnlib.transformer import (
    DecoderLayer,
    EncoderLayer,
    Seq2SeqTransformer,
    Transformer,
    TransformerEncoder,
)

SEED = seed_everything()  # $ATTNLIB_SEED, default 0

# %%
# A toy sentence pair, embedded
# -----------------------------
#
# The blocks work on vectors, not on words: each token id becomes a learned
# vector of :math:`d_{model}` numbers. The paper multiplies the embedding by
# :math:`\sqrt{d_{model}}` (section 3.4) so that it is not drowned by the
# position code, and then *adds* the sinusoidal positions of section 3.5
# (:class:`attnlib.positional.SinusoidalPositionalEncoding`) -- attention
# itself does not know the order of its inputs. The scaling assumes the
# embedding is initialised small, with standard deviation
# :math:`d_{model}^{-1/2}` as in the paper's code, so that the scaled
# embedding has size about 1, like the position code (PyTorch's default
# :math:`\mathcal{N}(0, 1)` would give :math:`\sqrt{d_{model}}` and drown the
# positions). We use a batch of two
# translation pairs; the second is shorter and padded with ``<pad>`` (id 0).

src_words = [
    "<s> the cat sat on the mat </s>".split(),
    "<s> a dog ran </s>".split(),
]
tgt_words = [
    "<s> le chat était assis".split(),
    "<s> un chien".split(),
]
vocab = {"<pad>": 0}
for sentence in src_words + tgt_words:
    for word in sentence:
        vocab.setdefault(word, len(vocab))


def to_ids(sentences: list[list[str]]) -> torch.Tensor:
    """Token ids, padded with 0 to the longest sentence: ``(B, L)``."""
    length = max(len(s) for s in sentences)
    return torch.tensor([[vocab[w] for w in s] + [0] * (length - len(s)) for s in sentences])


src = to_ids(src_words)  # (B, S)
tgt = to_ids(tgt_words)  # (B, T)
B, S = src.shape
T = tgt.shape[1]
D, H, F_FF = 32, 4, 64  # d_model, heads, feed-forward width
print(f"vocabulary: {len(vocab)} words; src {tuple(src.shape)}, tgt {tuple(tgt.shape)}")
print("src ids:\n", src)

embed = nn.Embedding(len(vocab), D, padding_idx=0)
with torch.no_grad():
    embed.weight.normal_(std=D**-0.5)
    embed.weight[0].zero_()  # the <pad> row
positions = SinusoidalPositionalEncoding(D, max_len=64)
e = embed(src)  # (B, S, D)
print("token embedding      ", tuple(e.shape))
x = positions(e * math.sqrt(D))  # (B, S, D): scaled embedding + PE[0..S-1]
print("scaled + positions   ", tuple(x.shape))
y = positions(embed(tgt) * math.sqrt(D))  # (B, T, D)
print("target, embedded     ", tuple(y.shape))
print(
    f"rms of scaled embedding {(e * math.sqrt(D)).pow(2).mean().sqrt():.2f}, "
    f"of the position code {positions.table[:S].pow(2).mean().sqrt():.2f}"
)

# %%
# The masks
# ---------
#
# :func:`attnlib.masks.create_masks` gives the two masks an encoder-decoder
# needs, in attnlib's convention (``True`` = *may attend*): the source mask
# hides the padding keys (for encoder self-attention and for the decoder's
# cross-attention), the target mask hides padding keys *and* the future.

src_mask, tgt_mask = create_masks(src, tgt)
print("src_mask", tuple(src_mask.shape), " tgt_mask", tuple(tgt_mask.shape))
print("target mask of sentence 1 (1 = may attend):\n", tgt_mask[1, 0].int())

# %%
# One encoder block, line by line
# -------------------------------
#
# Each sublayer is wrapped in a residual connection and a LayerNorm. The
# paper puts the norm *after* the addition (post-norm):
#
# .. math::
#
#    x \leftarrow \mathrm{LN}\big(x + \mathrm{MultiHead}(x, x, x)\big), \qquad
#    x \leftarrow \mathrm{LN}\big(x + W_2\,\mathrm{ReLU}(W_1 x + b_1) + b_2\big)
#
# The feed-forward network acts on each position separately ("position-wise"):
# it widens every vector to :math:`d_{ff}` features and back. Attention is
# the only place where positions exchange information.

self_attn = MultiHeadAttention(D, H)
linear1, linear2 = nn.Linear(D, F_FF), nn.Linear(F_FF, D)
norm1, norm2 = nn.LayerNorm(D), nn.LayerNorm(D)

a, w_enc = self_attn(x, x, x, src_mask)  # (B, S, D), weights (B, H, S, S)
print("self-attention output ", tuple(a.shape), " weights", tuple(w_enc.shape))
h = norm1(x + a)  # (B, S, D): Add & Norm
print("after Add & Norm      ", tuple(h.shape))
f = linear1(h)  # (B, S, F): widen
print("feed-forward, inner   ", tuple(f.shape))
f = linear2(torch.relu(f))  # (B, S, D): back to d_model
print("feed-forward, output  ", tuple(f.shape))
enc_hand = norm2(h + f)  # (B, S, D): Add & Norm
print("encoder block output  ", tuple(enc_hand.shape))

# %%
# The library's :class:`attnlib.transformer.EncoderLayer` holds the same
# five modules under its own names; we copy our weights into it with
# ``load_state_dict`` (strict: every name must match) and compare.


def prefixed(prefix: str, module: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


enc_layer = EncoderLayer(D, H, F_FF, dropout=0.0)
enc_layer.load_state_dict(
    prefixed("self_attn", self_attn)
    | prefixed("ff.linear1", linear1)
    | prefixed("ff.linear2", linear2)
    | prefixed("norm1", norm1)
    | prefixed("norm2", norm2)
)
enc_lib = enc_layer(x, src_mask)
err_enc = (enc_hand - enc_lib).abs().max().item()
print(f"max |hand - EncoderLayer| = {err_enc:.1e}")
memory = enc_hand  # the encoder output the decoder attends to

# %%
# One decoder block, line by line
# -------------------------------
#
# The decoder block has three sublayers. Its self-attention is *masked*: the
# target is fed shifted right during training, so position :math:`t` must not
# see the words it is about to predict. Then *cross-attention*: queries from
# the decoder, keys and values from the encoder output (the "memory"), with
# the source padding mask so that no query reads a ``<pad>``. Then the same
# feed-forward network, each with Add & Norm.

dec_self = MultiHeadAttention(D, H)
dec_cross = MultiHeadAttention(D, H)
dlinear1, dlinear2 = nn.Linear(D, F_FF), nn.Linear(F_FF, D)
dnorm1, dnorm2, dnorm3 = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)

a, w_self = dec_self(y, y, y, tgt_mask)  # (B, T, D), weights (B, H, T, T)
print("masked self-attention ", tuple(a.shape), " weights", tuple(w_self.shape))
g = dnorm1(y + a)  # (B, T, D)
a, w_cross = dec_cross(g, memory, memory, src_mask)  # (B, T, D), weights (B, H, T, S)
print("cross-attention       ", tuple(a.shape), " weights", tuple(w_cross.shape))
g = dnorm2(g + a)  # (B, T, D)
f = dlinear2(torch.relu(dlinear1(g)))  # (B, T, F) -> (B, T, D)
print("feed-forward          ", tuple(f.shape))
dec_hand = dnorm3(g + f)  # (B, T, D)
print("decoder block output  ", tuple(dec_hand.shape))

dec_layer = DecoderLayer(D, H, F_FF, dropout=0.0)
dec_layer.load_state_dict(
    prefixed("self_attn", dec_self)
    | prefixed("cross_attn", dec_cross)
    | prefixed("ff.linear1", dlinear1)
    | prefixed("ff.linear2", dlinear2)
    | prefixed("norm1", dnorm1)
    | prefixed("norm2", dnorm2)
    | prefixed("norm3", dnorm3)
)
dec_lib = dec_layer(y, memory, tgt_mask, src_mask)
err_dec = (dec_hand - dec_lib).abs().max().item()
print(f"max |hand - DecoderLayer| = {err_dec:.1e}")
print(
    f"weight on future keys: {w_self.triu(1).abs().max():.1e}, "
    f"on source padding: {w_cross[1, :, :, len(src_words[1]) :].abs().max():.1e}"
)

# %%
# Post-norm or pre-norm?
# ----------------------
#
# Most Transformers since the paper move the LayerNorm *inside* the residual
# branch (pre-norm, ``norm_first=True``), with one final LayerNorm after the
# stack:
#
# .. math::
#
#    \text{post-norm:}\quad x_{l+1} = \mathrm{LN}\big(x_l + F_l(x_l)\big)
#    \qquad\qquad
#    \text{pre-norm:}\quad x_{l+1} = x_l + F_l\big(\mathrm{LN}(x_l)\big)
#
# Xiong et al. (2020, arXiv:2002.04745) show that at initialisation the
# post-norm Transformer has large gradients for the layers near its output,
# which is why it needs a learning-rate warm-up, while in pre-norm the
# gradients are scaled down as the residual stream :math:`x_l` grows. We
# measure both on a 12-layer encoder stack with independently initialised
# layers, a random input and a regression loss on the output, over 5 seeds:
# the root-mean-square size of the residual stream after each layer, and the
# norm of the gradient of each layer's parameters.

N_LAYERS, SEEDS = 12, range(5)


def measure(norm_first: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    seed_everything(offset=seed)  # the same weights and data for post- and pre-norm
    layers = [
        EncoderLayer(D, H, F_FF, dropout=0.0, norm_first=norm_first) for _ in range(N_LAYERS)
    ]
    stack = TransformerEncoder(layers[0], N_LAYERS, nn.LayerNorm(D))
    # TransformerEncoder deep-copies one layer: use distinct ones
    stack.layers = nn.ModuleList(layers)
    z = torch.randn(8, 10, D)
    target = torch.randn(8, 10, D)
    rms = []
    for layer in stack.layers:
        z = layer(z)  # (8, 10, D): the residual stream after this layer
        rms.append(z.pow(2).mean().sqrt().item())
    loss = (stack.norm(z) - target).pow(2).mean()
    loss.backward()
    grads = [
        torch.sqrt(sum(p.grad.pow(2).sum() for p in layer.parameters())).item()
        for layer in stack.layers
    ]
    return np.array(rms), np.array(grads)


results = {
    name: [measure(nf, s) for s in SEEDS]
    for name, nf in (("post-norm", False), ("pre-norm", True))
}
rms_of = {k: np.stack([r for r, _ in v]) for k, v in results.items()}  # (seeds, layers)
grad_of = {k: np.stack([g for _, g in v]) for k, v in results.items()}

fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
layer_ids = np.arange(1, N_LAYERS + 1)
for name, colour in (("post-norm", "tab:blue"), ("pre-norm", "tab:orange")):
    for ax, data in ((axes[0], rms_of[name]), (axes[1], grad_of[name])):
        ax.plot(layer_ids, data.mean(0), "o-", color=colour, label=name)
        ax.fill_between(layer_ids, data.min(0), data.max(0), color=colour, alpha=0.2)
axes[0].set(
    title="Size of the residual stream at initialisation",
    xlabel="layer",
    ylabel="rms of $x_l$",
)
axes[1].set(
    title="Gradient norm per layer at initialisation",
    xlabel="layer",
    ylabel="$\\|\\partial L / \\partial \\theta_l\\|$",
)
for ax in axes:
    ax.legend()
    ax.set_xticks(layer_ids)
fig.suptitle("12-layer encoder, mean and range over 5 seeds")
plt.show()

prenorm_table = pd.DataFrame(
    {
        "rms x_1": [rms_of[k][:, 0].mean() for k in results],
        "rms x_12": [rms_of[k][:, -1].mean() for k in results],
        "grad layer 1": [grad_of[k][:, 0].mean() for k in results],
        "grad layer 12": [grad_of[k][:, -1].mean() for k in results],
        "grad 12 / grad 1": [(grad_of[k][:, -1] / grad_of[k][:, 0]).mean() for k in results],
    },
    index=list(results),
).round(3)
pre_rms = rms_of["pre-norm"]
stream_growth = pre_rms[:, -1] / pre_rms[:, 0]  # per seed
top_grad_ratio = grad_of["post-norm"][:, -1] / grad_of["pre-norm"][:, -1]
ratio = {k: (v[:, -1] / v[:, 0]).mean() for k, v in grad_of.items()}
pre_fall = grad_of["pre-norm"][:, -1] / grad_of["pre-norm"][:, 0]
key_figure("pre-norm rms x_12 / x_1, min over seeds", stream_growth.min())
key_figure("post / pre gradient at layer 12, min over seeds", top_grad_ratio.min())
key_figure("pre-norm grad 12 / grad 1, max over seeds", pre_fall.max())
key_figure(
    "grad 12 / grad 1, mean post-norm minus mean pre-norm", ratio["post-norm"] - ratio["pre-norm"]
)
prenorm_table

# %%
# In post-norm every layer ends with a LayerNorm, so the stream has rms 1
# after every layer. In pre-norm the residual branches pile up: the stream
# grows steadily with depth (the ``rms x_12`` column of the table), and since
# each sublayer only sees :math:`\mathrm{LN}(x_l)`, its gradient is divided by
# the size of :math:`x_l`: pre-norm's gradient falls smoothly with depth (the
# last column). Post-norm's top layers get a larger gradient than pre-norm's
# on every seed (the smallest ratio is printed above); its first layers vary a
# lot from seed to seed (the wide blue band). We ran this measurement on seeds
# 0-79, beyond the 5 drawn here: the pre-norm stream grew by a factor between
# 1.5 and 2.0 from layer 1 to 12, post-norm's layer-12 gradient was 1.6 to 2.2
# times pre-norm's, and pre-norm's layer-12 gradient was 0.38 to 0.66 times its
# layer-1 gradient, on every seed. Xiong et al. (2020)
# prove the post-norm gradient near the output does not shrink as the stack
# gets deeper while pre-norm's shrinks like :math:`1/\sqrt{L}`: post-norm's
# large top-layer gradients are why it needs warm-up, and pre-norm does not.
#
# The whole model against ``torch.nn.Transformer``
# ------------------------------------------------
#
# ``Transformer.from_torch`` copies the weights of a ``torch.nn.Transformer``
# into attnlib's modules. PyTorch's masks use the opposite convention
# (``True`` = *ignore*) and split padding from the attention mask, so we
# translate at the boundary with :func:`attnlib.masks.to_key_padding_mask`
# and :func:`attnlib.masks.to_torch_attn_mask`. Both models get the same
# embedded source and target, with padding in the second pair and the
# causal mask on the target, in both post-norm and pre-norm form.

torch_masks = dict(
    src_key_padding_mask=to_key_padding_mask(src_mask),  # (B, S), True = padding
    tgt_key_padding_mask=to_key_padding_mask(padding_mask(tgt)),  # (B, T)
    memory_key_padding_mask=to_key_padding_mask(src_mask),  # (B, S)
    tgt_mask=to_torch_attn_mask(causal_mask(T)),  # (T, T), True = not allowed
)
x_in, y_in = x.detach(), y.detach()
models, errors = {}, {}
for norm_first in (False, True):
    with warnings.catch_warnings():  # torch warns about nested tensors with norm_first
        warnings.simplefilter("ignore")
        ref = nn.Transformer(
            D,
            H,
            num_encoder_layers=2,
            num_decoder_layers=2,
            dim_feedforward=F_FF,
            dropout=0.0,
            batch_first=True,
            norm_first=norm_first,
        ).eval()
    ours = Transformer.from_torch(ref).eval()
    with torch.no_grad(), warnings.catch_warnings():  # and about its nested-tensor fast path
        warnings.simplefilter("ignore")
        out_ref = ref(x_in, y_in, **torch_masks)  # (B, T, D)
        out_ours = ours(x_in, y_in, src_mask=src_mask, tgt_mask=tgt_mask, memory_mask=src_mask)
    name = "pre-norm" if norm_first else "post-norm"
    errors[name] = (out_ref - out_ours).abs().max().item()
    models[name] = ours
    print(f"{name}: output {tuple(out_ours.shape)}, max |torch - attnlib| = {errors[name]:.1e}")

# %%
# Every layer's attention
# -----------------------
#
# :func:`attnlib.capture.record_attention` hooks every attention module of
# the model and keeps its weights: two encoder self-attentions, and per
# decoder layer a self- and a cross-attention, each ``(batch, heads, query,
# key)``.

model = models["post-norm"]
with record_attention(model) as record, torch.no_grad():
    model(x_in, y_in, src_mask=src_mask, tgt_mask=tgt_mask, memory_mask=src_mask)
for layer_name in record.names():
    print(f"{layer_name:32s} {tuple(record[layer_name].shape)}")

# %%
# The weights are untrained, so the patterns mean nothing about language:
# what the figures show is the *structure* the masks impose. In decoder
# self-attention every query sees only itself and earlier words -- a lower
# triangle, the upper one hatched and exactly zero.

dec_self_w = record["decoder.layers.0.self_attn"]  # (B, H, T, T)
fig = plot_attention_heads(
    dec_self_w[0],
    tgt_words[0],
    tgt_words[0],
    mask=causal_mask(T),
    title="Decoder layer 0, masked self-attention (untrained weights)",
    annotate=True,
    cell_size=0.5,
)
plt.show()

# %%
# In cross-attention the decoder queries read the source sentence; for the
# short second pair, the padding keys are hatched and get no weight, and the
# target's own padding query still produces a (harmless) row.

cross_w = record["decoder.layers.1.cross_attn"]  # (B, H, T, S)
src_labels = src_words[1] + ["<pad>"] * (S - len(src_words[1]))
tgt_labels = tgt_words[1] + ["<pad>"] * (T - len(tgt_words[1]))
fig = plot_attention_heads(
    cross_w[1],
    tgt_labels,
    src_labels,
    mask=src_mask[1, 0],
    title="Decoder layer 1, cross-attention to a padded source (untrained weights)",
)
plt.show()

# %%
# Counting the parameters
# -----------------------
#
# Where do the parameters of a Transformer live? A multi-head attention has
# four :math:`d_{model} \times d_{model}` projections with biases,
# :math:`4d^2 + 4d`; a feed-forward network :math:`2 d\, d_{ff} + d_{ff} + d`;
# a LayerNorm :math:`2d`. An encoder layer has one attention, one FFN and two
# norms; a decoder layer two attentions, one FFN and three norms; each stack
# ends with a LayerNorm. Around the stacks sit the embeddings and the output
# layer. We group the parameters of a small
# :class:`attnlib.transformer.Seq2SeqTransformer` by name and compare with
# these formulas.

V, N = 1000, 2
s2s = Seq2SeqTransformer(
    V,
    V,
    d_model=D,
    nhead=H,
    num_encoder_layers=N,
    num_decoder_layers=N,
    dim_feedforward=F_FF,
    dropout=0.0,
)


def component(name: str) -> str:
    if "embed" in name:
        return "embeddings"
    if "generator" in name:
        return "output layer"
    if "attn" in name:
        return "attention"
    if ".ff." in name:
        return "feed-forward"
    if "norm" in name:
        return "layer norms"
    raise ValueError(name)


counted: dict[str, int] = {}
for pname, p in s2s.named_parameters():
    counted[component(pname)] = counted.get(component(pname), 0) + p.numel()
mha, ffn, ln = 4 * D * D + 4 * D, 2 * D * F_FF + F_FF + D, 2 * D
formula = {
    "embeddings": 2 * V * D,
    "attention": N * mha + N * 2 * mha,
    "feed-forward": 2 * N * ffn,
    "layer norms": N * 2 * ln + N * 3 * ln + 2 * ln,
    "output layer": V * D + V,
}
params = pd.DataFrame({"parameters": counted, "formula": formula})
params["share"] = (params["parameters"] / params["parameters"].sum()).map("{:.1%}".format)
params.loc["total"] = [params["parameters"].sum(), params["formula"].sum(), "100%"]
total_s2s = sum(p.numel() for p in s2s.parameters())
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch_twin = nn.Transformer(D, H, N, N, F_FF, dropout=0.0, batch_first=True)
stack_ours = sum(p.numel() for p in s2s.transformer.parameters())
stack_torch = sum(p.numel() for p in torch_twin.parameters())
print(
    f"sum(p.numel()) = {total_s2s}; encoder-decoder stacks: attnlib {stack_ours}, "
    f"torch.nn.Transformer {stack_torch}"
)
params

# %%
# With a vocabulary of 1000 words and :math:`d_{model} = 32`, the embeddings
# and the output layer dominate. In the stacks, attention holds more than
# the feed-forward networks because each decoder layer has two attentions
# and here :math:`d_{ff} = 2d`; with the paper's :math:`d_{ff} = 4d`, the
# feed-forward networks hold :math:`16Nd^2` against attention's
# :math:`12Nd^2`.
#
# Checks
# ------

# Hand-written blocks equal the library's layers (the same operations: rounding at most).
assert err_enc < 1e-6 and err_dec < 1e-6, (err_enc, err_dec)
# Masks really mask: no weight on future target words or on source padding.
assert w_self.triu(1).abs().max() == 0
assert w_cross[1, :, :, len(src_words[1]) :].abs().max() == 0
# Post-norm keeps the stream at rms 1 after every layer (LayerNorm output, eps aside);
# pre-norm's stream grows with depth (seeds 0-79: rms x_12 / x_1 between 1.5 and 2.0).
assert np.allclose(rms_of["post-norm"], 1.0, atol=1e-3)
assert ((pre_rms[:, 0] < pre_rms[:, 5]) & (pre_rms[:, 5] < pre_rms[:, -1])).all()
assert (stream_growth > 1.3).all()
# Post-norm's top layer gets a larger gradient than pre-norm's (seeds 0-79: 1.6-2.2x), and
# pre-norm's gradient falls with depth (layer 12 / layer 1, seeds 0-79: 0.38-0.66; post-norm
# 0.58-1.6; the 5-seed means differ by 0.18 to 0.50 over every window of 5 seeds in 0-79).
assert (top_grad_ratio > 1.3).all()
assert (pre_fall < 0.75).all()
assert ratio["pre-norm"] < ratio["post-norm"] - 0.05, ratio
# The whole model equals torch.nn.Transformer with padding and causal masks.
assert max(errors.values()) < 1e-5, errors
# Recorded: 2 encoder self, 2 decoder self, 2 cross-attentions, with the right shapes.
assert len(record) == 6
assert record["encoder.layers.1.self_attn"].shape == (B, H, S, S)
assert record["decoder.layers.1.cross_attn"].shape == (B, H, T, S)
# The causal triangle: exactly zero above the diagonal in every decoder self-attention.
for layer_name in ("decoder.layers.0.self_attn", "decoder.layers.1.self_attn"):
    assert (record[layer_name].triu(1) == 0).all()
    assert torch.allclose(record[layer_name].sum(-1), torch.ones(B, H, T))
# Parameter counts: grouped = formula = sum(p.numel()); stacks = torch.nn.Transformer's.
assert (params["parameters"] == params["formula"]).all()
assert params.loc["total", "parameters"] == total_s2s
assert stack_ours == stack_torch
