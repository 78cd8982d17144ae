"""
Fewer keys and values: multi-query, grouped-query attention and the KV cache
============================================================================

A language model generates one token at a time, and every new token attends
to all the tokens before it. Recomputing their keys and values at every step
would cost a full forward pass per token, so generation keeps them: the
*key/value cache*. For long contexts that cache, not the weights, fills the
memory. Multi-query attention (Shazeer, 2019, arXiv:1911.02150) and
grouped-query attention (Ainslie et al., 2023, arXiv:2305.13245) shrink it by
letting several query heads share one key/value head.

This page computes the cache's size by formula and measures it on attnlib's
:class:`~attnlib.transformer.DecoderLM`, checks that grouped-query attention is
multi-head attention with repeated key/value heads, measures generation speed
with the cache, and ends with the same masks written for PyTorch's
``flex_attention``.
"""

# %%
# The KV cache and why it dominates generation memory
# ---------------------------------------------------
#
# At step :math:`t` a layer needs the keys and values of tokens
# :math:`1, \dots, t`. The cache stores, per layer, one key and one value
# vector of :math:`d_h` numbers per key/value head and per token, so for a
# model of :math:`n_\text{layers}` layers with :math:`h_{kv}` key/value heads
#
# .. math::
#
#     \text{cache bytes per token} = 2 \cdot n_\text{layers} \cdot h_{kv}
#     \cdot d_h \cdot \text{bytes per number},
#
# and the whole cache is that times the context length and the batch size. In
# ordinary multi-head attention (MHA) :math:`h_{kv} = h`, the number of query
# heads. Grouped-query attention (GQA) uses :math:`1 < h_{kv} < h` key/value
# heads, each shared by a group of :math:`h / h_{kv}` query heads;
# multi-query attention (MQA) uses a single one. The cache shrinks by
# :math:`h / h_{kv}`; the query heads, and so the weights' shape
# ``(B, H, Lq, Lk)``, stay.
#
# First the formula on a published configuration: Llama 2 70B (Touvron et
# al., 2023, arXiv:2307.09288) has 80 layers, 64 query heads of
# :math:`d_h = 128` and 8 key/value heads, in 16-bit numbers, and about
# :math:`70 \times 10^9` parameters, i.e. 140 GB of weights.

import time
from contextlib import contextmanager

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch.nn.attention.flex_attention import create_block_mask

import attnlib.functional as AF
from attnlib.attention import MultiHeadAttention
from attnlib.decoding import greedy_decode
from attnlib.efficient import flex
from attnlib.masks import causal_mask, sliding_window_mask
from attnlib.positional import alibi_bias
from attnlib.report import key_figure
from attnlib.training import seed_everything, seeded_generator
from attnlib.transformer import DecoderLM

SEED = seed_everything()  # $ATTNLIB_SEED, else 0


@contextmanager
def one_thread():
    """Run a block on one thread. Generation is a long chain of tiny
    operations: a second thread cannot speed them up, and on a busy machine
    waiting for it at every operation makes them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def cache_bytes_per_token(num_layers, num_kv_heads, head_dim, itemsize):
    """Bytes of keys and values one token adds to the cache (all layers)."""
    return 2 * num_layers * num_kv_heads * head_dim * itemsize


LLAMA = dict(num_layers=80, num_heads=64, head_dim=128, itemsize=2, weights_gb=140)
llama = {
    name: cache_bytes_per_token(LLAMA["num_layers"], hkv, LLAMA["head_dim"], LLAMA["itemsize"])
    for name, hkv in (("MHA (64 kv heads)", 64), ("GQA (8 kv heads)", 8), ("MQA (1 kv head)", 1))
}
BATCH_70B = 8
for name, per_token in llama.items():
    tokens_to_weights = LLAMA["weights_gb"] * 1e9 / (per_token * BATCH_70B)
    print(
        f"{name:18s} {per_token / 2**20:6.3f} MiB per token; the cache of a batch of "
        f"{BATCH_70B} outgrows the weights after {tokens_to_weights:8.0f} tokens"
    )

# %%
# With multi-head attention a batch of 8 sequences needs more memory for its
# cache than for the whole model after a few thousand tokens; the 8
# key/value heads that Llama 2 70B actually uses push that point 8 times
# further. This is exact arithmetic; the rest of the page measures.
#
# Three small models, one cache each
# ----------------------------------
#
# ``DecoderLM(..., num_kv_heads=...)`` builds every layer's
# :class:`~attnlib.attention.MultiHeadAttention` with that many key/value
# heads: ``k_proj`` and ``v_proj`` output ``num_kv_heads * head_dim``
# features instead of ``d_model``, and its
# :class:`~attnlib.attention.KVCache` holds ``(B, Hkv, L, Dh)`` keys and values.
# Three models of 8 query heads — MHA, GQA with 2 key/value heads, MQA — with
# random weights (speed and memory do not depend on training).

VOCAB, D_MODEL, HEADS, LAYERS, MAX_LEN = 256, 128, 8, 4, 512
HEAD_DIM = D_MODEL // HEADS
VARIANTS = {"MHA": 8, "GQA": 2, "MQA": 1}  # name -> num_kv_heads


def build(num_kv_heads, k):
    seed_everything(offset=k)
    model = DecoderLM(
        VOCAB, d_model=D_MODEL, nhead=HEADS, num_layers=LAYERS, dim_feedforward=4 * D_MODEL,
        dropout=0.0, max_len=MAX_LEN, num_kv_heads=num_kv_heads,
    )  # fmt: skip
    return model.eval()


models = {name: build(hkv, k) for k, (name, hkv) in enumerate(VARIANTS.items())}
for name, model in models.items():
    attn = model.blocks.layers[0].self_attn
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name}: {attn}; k_proj {tuple(attn.k_proj.weight.shape)}; {n_params} parameters")

# %%
# Generation with the cache, written out: the prompt goes through the model
# once and fills each layer's cache; then every step feeds only the newest
# token, whose keys and values are appended. After each step we read the
# cache's size with :attr:`KVCache.nbytes <attnlib.attention.KVCache.nbytes>`
# and compare it with the formula.

BATCH, PROMPT, NEW = 4, 16, 128
prompt = torch.randint(3, VOCAB, (BATCH, PROMPT), generator=seeded_generator(1))


@torch.no_grad()
def generate_with_cache(model, prompt, new_tokens):
    """Greedy generation, one token per step; returns the tokens, the logits
    of each step and the cache's size (bytes, all layers) after each step."""
    cache = model.new_cache()  # one KVCache per layer
    logits = model(prompt, cache)[:, -1]  # (B, V): the prompt fills the cache
    tokens, steps, sizes = [prompt], [], []
    for _ in range(new_tokens):
        steps.append(logits)
        sizes.append(sum(layer_cache.nbytes for layer_cache in cache))
        nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
        tokens.append(nxt)
        logits = model(nxt, cache)[:, -1]  # only the new token goes through
    return torch.cat(tokens, 1), torch.stack(steps, 1), sizes


measured, formula = {}, {}
for name, model in models.items():
    with one_thread():
        tokens, step_logits, sizes = generate_with_cache(model, prompt, NEW)
    lengths = np.arange(PROMPT, PROMPT + NEW)  # tokens in the cache at each step
    measured[name] = np.array(sizes)
    per_token = cache_bytes_per_token(LAYERS, VARIANTS[name], HEAD_DIM, 4)  # float32
    formula[name] = BATCH * lengths * per_token
    # the cached logits are those of a full forward pass over the whole prefix
    with torch.no_grad(), one_thread():
        full = model(tokens[:, :-1])[:, PROMPT - 1 :]  # (B, NEW, V)
    err = (step_logits - full).abs().max().item()
    print(f"{name}: cache after {lengths[-1]} tokens = {sizes[-1] / 2**10:.0f} KiB "
          f"(formula {formula[name][-1] / 2**10:.0f} KiB); "
          f"max |cached - full logits| = {err:.1e}")  # fmt: skip
    assert err < 1e-4, (name, err)
    assert np.array_equal(measured[name], formula[name]), name

ratio_gqa = key_figure(
    "cache size MHA / GQA (measured)", measured["MHA"][-1] / measured["GQA"][-1]
)
ratio_mqa = key_figure(
    "cache size MHA / MQA (measured)", measured["MHA"][-1] / measured["MQA"][-1]
)

# %%
# The measured sizes equal the formula at every step (asserted above), and the
# cached logits are those of recomputing the whole prefix. The figure shows
# both scales: our small models, measured, and the 70B configuration, by
# formula, against the size of its weights.

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
for name in VARIANTS:
    (line,) = ax1.plot(lengths, formula[name] / 2**20, label=f"{name}, formula")
    ax1.plot(lengths[::12], measured[name][::12] / 2**20, "o", color=line.get_color(),
             label=f"{name}, KVCache.nbytes")  # fmt: skip
ax1.set(xlabel="tokens in the cache (context length)", ylabel="cache size (MiB)",
        title=f"DecoderLM, {LAYERS} layers, 8 query heads, batch {BATCH}, float32")  # fmt: skip
ax1.legend(fontsize=8)
context = np.linspace(256, 32768, 200)
for name, per_token in llama.items():
    ax2.plot(context, BATCH_70B * context * per_token / 1e9, label=name)
ax2.axhline(LLAMA["weights_gb"], color="gray", ls="--", label="the weights (16-bit)")
ax2.set(xlabel="context length (tokens)", ylabel="cache size (GB)", yscale="log",
        title=f"Llama 2 70B's shape, batch {BATCH_70B}, 16-bit (formula)")  # fmt: skip
ax2.legend(fontsize=8)
plt.show()

# %%
# Grouped-query attention is multi-head attention with repeated heads
# -------------------------------------------------------------------
#
# Query head :math:`i` of a layer with :math:`h_{kv}` key/value heads reads
# key/value head :math:`\lfloor i / (h / h_{kv}) \rfloor`. So a GQA layer
# computes exactly what an MHA layer computes when its key and value
# projections are the GQA ones with each head's rows repeated for its group
# (Ainslie et al. go the other way: they turn a trained MHA checkpoint into
# GQA by mean-pooling the key and value heads of each group, then train it a
# little longer). We build that MHA layer
# from the GQA layer's weights and compare outputs and weights in float64.
# The GQA layer stores and projects 2 key/value heads, the MHA copy 8.


def repeated_heads_copy(gqa):
    """An ordinary MultiHeadAttention computing what the GQA layer ``gqa`` computes."""
    group = gqa.num_heads // gqa.num_kv_heads
    mha = MultiHeadAttention(gqa.embed_dim, gqa.num_heads).to(gqa.q_proj.weight.dtype)
    mha.q_proj.load_state_dict(gqa.q_proj.state_dict())
    mha.out_proj.load_state_dict(gqa.out_proj.state_dict())
    with torch.no_grad():
        for name in ("k_proj", "v_proj"):
            src, dst = getattr(gqa, name), getattr(mha, name)
            # rows j*Dh .. (j+1)*Dh belong to kv head j; repeat each head `group` times
            w = src.weight.view(gqa.num_kv_heads, gqa.head_dim, -1).repeat_interleave(group, 0)
            dst.weight.copy_(w.reshape(gqa.embed_dim, -1))
            b = src.bias.view(gqa.num_kv_heads, gqa.head_dim).repeat_interleave(group, 0)
            dst.bias.copy_(b.reshape(-1))
    return mha.eval()


gqa_layer = models["GQA"].blocks.layers[0].self_attn.double()
mha_copy = repeated_heads_copy(gqa_layer)
x = torch.randn(BATCH, 24, D_MODEL, dtype=torch.float64, generator=seeded_generator(2))
with torch.no_grad():
    out_gqa, w_gqa = gqa_layer(x, x, x, is_causal=True)
    out_mha, w_mha = mha_copy(x, x, x, is_causal=True)
    fast_gqa, _ = gqa_layer(x, x, x, is_causal=True, need_weights=False)  # fused path
gqa_vs_mha = key_figure(
    "max |GQA - MHA with repeated heads| (float64)",
    max((out_gqa - out_mha).abs().max(), (w_gqa - w_mha).abs().max(),
        (fast_gqa - out_mha).abs().max()),
    fmt="{:.1e}",
)  # fmt: skip
print("weights:", tuple(w_gqa.shape), "(B, H, Lq, Lk): one map per query head")
gqa_layer.float()

# %%
# The weights keep one map per *query* head. The heads of a group read the
# same keys, but with their own queries, so their maps differ: below, the
# eight heads of the first sequence, framed by the key/value head they share.

GROUP = HEADS // VARIANTS["GQA"]  # query heads per key/value head
fig, axes = plt.subplots(2, 4, figsize=(10, 5.2), layout="constrained")
for head, ax in enumerate(axes.flat):
    im = ax.imshow(w_gqa[0, head].numpy(), cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"query head {head} → kv head {head // GROUP}", fontsize=9)
    ax.set(xlabel="key position", ylabel="query position")
    for side in ax.spines.values():
        side.set_edgecolor(("tab:blue", "tab:orange")[head // GROUP])
        side.set_linewidth(2.5)
fig.colorbar(im, ax=axes, label="attention weight", shrink=0.8)
fig.suptitle("GQA, 8 query heads sharing 2 key/value heads (layer 0, random weights)")
plt.show()

# %%
# Generation speed with the cache
# -------------------------------
#
# With the cache each step costs a forward pass over one token plus one
# attention over the cached keys and values. Without it, every step
# recomputes the whole prefix. Fewer key/value heads also mean smaller
# ``k_proj``/``v_proj`` and fewer cached bytes to read at every step; in the
# fused path attnlib's GQA stacks the queries of a group instead of copying
# the keys and values for every query head. We time greedy generation
# (:func:`attnlib.decoding.greedy_decode`) of the three models, and of the MHA
# model without the cache, in one run, alternating them, and report ratios
# (as :mod:`attnlib.bench` does), which do not depend on how fast the machine
# is; each figure is the fastest of several runs, the one least disturbed
# by whatever else the machine does. A small model on one CPU core is
# dominated by per-step overheads, so the gains of a large model on an
# accelerator, whose generation is limited by reading the cache from memory,
# should not be expected here.

RUNS = {
    **{name: (model, True) for name, model in models.items()},
    "MHA, no cache": (models["MHA"], False),
}
BATCH_T, NEW_T, REPEATS = 4, 64, 6
prompt_t = torch.randint(3, VOCAB, (BATCH_T, PROMPT), generator=seeded_generator(3))
times = {name: [] for name in RUNS}
with torch.no_grad(), one_thread():
    for r in range(REPEATS + 1):  # round 0 warms up the cached runs
        for name, (model, use_cache) in RUNS.items():
            if not use_cache and (r == 0 or r > 2):  # the slow one: two timed runs
                continue
            start = time.perf_counter()
            greedy_decode(
                model, prompt=prompt_t, max_new_tokens=NEW_T, eos_idx=None, use_cache=use_cache
            )
            times[name].append(time.perf_counter() - start)
# the fastest run of each: the least disturbed by whatever else the machine does
fastest = {name: min(t if name == "MHA, no cache" else t[1:]) for name, t in times.items()}
for name, t in fastest.items():
    print(f"{name:14s} {1000 * t / NEW_T:6.2f} ms per step (batch {BATCH_T})")
speed_cache = key_figure("speed-up of the cache (MHA, no cache / cache)",
                         fastest["MHA, no cache"] / fastest["MHA"], fmt="{:.2f}")  # fmt: skip
speed_gqa = key_figure("time MHA / GQA, cached", fastest["MHA"] / fastest["GQA"], fmt="{:.2f}")
speed_mqa = key_figure("time MHA / MQA, cached", fastest["MHA"] / fastest["MQA"], fmt="{:.2f}")

fig, ax = plt.subplots(figsize=(6.5, 3), layout="constrained")
names = list(fastest)
ax.barh(names, [fastest["MHA"] / fastest[n] for n in names], color="tab:blue")
ax.axvline(1, color="gray", ls="--")
ax.set(xlabel="speed relative to MHA with the cache (higher is faster)",
       title=f"Greedy generation, {NEW_T} new tokens, batch {BATCH_T}, one thread")  # fmt: skip
ax.invert_yaxis()
plt.show()

# %%
# The cache is what makes generation affordable (the first ratio above): it
# turns every step's cost from the whole prefix into one token, and the gap
# grows with the number of tokens generated. The other two ratios are what
# fewer key/value heads buy *here*, measured in this run: smaller
# ``k_proj``/``v_proj`` and a smaller cache to read. They are small next to
# the cache's own, and on a busy machine they move from run to run: when this
# page was written, on a machine shared by several jobs, they ranged from
# about 0.6 to 2 over seeds 0-2 and one or two threads, while the cache's
# speed-up stayed between about 3.5 and 8 (the robustness matrix of
# :doc:`/claims` gives the current spread). At this size, the difference
# between the variants is lost in that noise; the saving that does not
# depend on the machine is the memory of the figure above. Whether a GQA
# model is as good as an MHA model of the same size is a question of
# training, which this page does not measure; Ainslie et al. report quality
# close to MHA with speed close to MQA for their uptrained T5 models.
#
# The cached and uncached generations are the same tokens. We check it in
# float64: in float32 the two computations differ by rounding (the logit
# differences printed in the first section), and a near tie between two
# tokens could flip one; in float64 such a tie is vanishingly unlikely.

same_tokens = []
with torch.no_grad(), one_thread():
    for model in models.values():
        m64 = model.double()
        kw = dict(prompt=prompt[:2], max_new_tokens=32, eos_idx=None)
        with_cache = greedy_decode(m64, use_cache=True, **kw)
        without = greedy_decode(m64, use_cache=False, **kw)
        same_tokens.append(torch.equal(with_cache, without))
        model.float()
print("cached == uncached tokens:", dict(zip(models, same_tokens, strict=True)))

# %%
# The same masks in flex_attention
# --------------------------------
#
# PyTorch's ``flex_attention`` (Dong et al., 2024, arXiv:2412.05496) takes
# attention variants as two small functions of indices instead of dense
# tensors: a ``mask_mod(b, h, q_idx, kv_idx)`` that says whether a pair may
# attend (attnlib's convention, ``True`` = may attend) and a
# ``score_mod(score, b, h, q_idx, kv_idx)`` that changes one scaled score.
# :mod:`attnlib.efficient.flex` writes attnlib's masks that way:
# :func:`~attnlib.efficient.flex.causal_mask_mod`,
# :func:`~attnlib.efficient.flex.sliding_window_mask_mod`,
# :func:`~attnlib.efficient.flex.padding_mask_mod` and ALiBi's bias
# (Press, Smith and Lewis, 2022, arXiv:2108.12409) as
# :func:`~attnlib.efficient.flex.alibi_score_mod`. Written out, the first two
# are one line each:


def causal(b, h, q_idx, kv_idx):
    return q_idx >= kv_idx


def window_8(b, h, q_idx, kv_idx):
    return (q_idx - kv_idx).abs() <= 8


# %%
# On this CPU build flex_attention runs in eager mode: it materialises the
# scores like the dense form (and warns about it; attnlib's helpers silence
# the warning), so here it saves neither time nor memory — the point is that
# one description serves both. ``torch.compile`` of flex_attention also
# works on this machine (a C++ compiler is present), but compiling the
# kernel took a large part of this page's one-minute budget when the page
# was written, so the page stays eager. We check each form against attnlib's
# dense mask with :func:`attnlib.functional.scaled_dot_product_attention`, in
# float32, with 8 heads of 16 features over 96 tokens.

L, H = 96, 8
g = seeded_generator(4)
q, k, v = (torch.randn(2, H, L, 16, generator=g) for _ in range(3))
cases = {
    "causal": (dict(mask_mod=causal), dict(is_causal=True)),
    "sliding window, w = 8": (
        dict(mask_mod=window_8),
        dict(attn_mask=sliding_window_mask(L, window=8)),
    ),
    "causal window (library helpers)": (
        dict(mask_mod=flex.and_masks(flex.causal_mask_mod, flex.sliding_window_mask_mod(8))),
        dict(attn_mask=sliding_window_mask(L, window=8, causal=True)),
    ),
    "ALiBi + causal": (
        dict(score_mod=flex.alibi_score_mod(H), mask_mod=flex.causal_mask_mod),
        dict(attn_mask=alibi_bias(H, L), is_causal=True),
    ),
}
flex_errors = {}
for name, (flex_kw, dense_kw) in cases.items():
    out_flex, _ = flex.flex_attention(q, k, v, **flex_kw)
    out_dense, _ = AF.scaled_dot_product_attention(q, k, v, **dense_kw)
    flex_errors[name] = (out_flex - out_dense).abs().max().item()
    print(f"{name:32s} max |flex - attnlib| = {flex_errors[name]:.1e}")
flex_err = key_figure("max |flex_attention - attnlib| (float32)", max(flex_errors.values()),
                      fmt="{:.1e}")  # fmt: skip
dense_window = flex.mask_from_mod(window_8, 1, 1, L)[0, 0]
assert torch.equal(dense_window, sliding_window_mask(L, window=8))
assert torch.equal(flex.mask_from_mod(causal, 1, 1, L)[0, 0], causal_mask(L))

# %%
# Grouped-query attention is a flag of flex_attention too
# (``enable_gqa=True``): fed the GQA layer's projected queries (8 heads) and
# keys and values (2 heads), it gives the layer's own attention.

x = torch.randn(2, L, D_MODEL, generator=seeded_generator(5))
with torch.no_grad():
    q8 = gqa_layer.q_proj(x).view(2, L, HEADS, HEAD_DIM).transpose(1, 2)  # (B, H, L, Dh)
    k2 = gqa_layer.k_proj(x).view(2, L, 2, HEAD_DIM).transpose(1, 2)  # (B, Hkv, L, Dh)
    v2 = gqa_layer.v_proj(x).view(2, L, 2, HEAD_DIM).transpose(1, 2)
    heads, _ = flex.flex_attention(q8, k2, v2, mask_mod=causal, enable_gqa=True)
    out_flex = gqa_layer.out_proj(heads.transpose(1, 2).reshape(2, L, D_MODEL))
    out_layer, _ = gqa_layer(x, x, x, is_causal=True, need_weights=False)
gqa_flex_err = (out_flex - out_layer).abs().max().item()
print(f"GQA through flex_attention: max |flex - MultiHeadAttention| = {gqa_flex_err:.1e}")

# %%
# What a compiled kernel would skip: ``create_block_mask`` summarises a
# ``mask_mod`` by tiles of 128 x 128 pairs and records the tiles with no
# allowed pair; a compiled flex_attention never loads them. For a sliding
# window over a long sequence most tiles are empty, for a causal mask about
# half.

for name, mod in (
    ("causal", causal),
    ("sliding window, w = 128", flex.sliding_window_mask_mod(128)),
):
    block = create_block_mask(mod, None, None, 4096, 4096, device="cpu")
    print(f"{name:24s} at L = 4096: {block.sparsity():.1f}% of the tiles skipped")

# %%
# Checks
# ------
#
# Exact statements only: the measured cache equals the formula and shrinks
# by exactly :math:`h / h_{kv}`; grouped-query attention equals multi-head
# attention with repeated heads to float64 rounding; the cache changes no
# token; flex_attention's forms equal attnlib's masks to float32 rounding.
# No speed is asserted: it depends on the machine.

assert ratio_gqa == HEADS / VARIANTS["GQA"] and ratio_mqa == HEADS / VARIANTS["MQA"]
assert gqa_vs_mha < 1e-12
assert all(same_tokens)
assert flex_err < 1e-5
assert gqa_flex_err < 1e-5
print("all checks passed")
