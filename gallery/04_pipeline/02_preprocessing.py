"""
Preprocessing: from raw text to padded batches
==============================================

A model reads tensors of integers, not reviews. This tutorial takes the
synthetic sentiment corpus from raw text to the padded batches a Transformer
classifier trains on, one step at a time: a stratified train/validation/test
split, cleaning with :func:`attnlib.data.text.clean_text`, word tokens and a
:class:`attnlib.data.text.Vocabulary` with its special tokens, subword tokens
with :class:`attnlib.data.text.SubwordTokenizer` — including byte-pair encoding
written from scratch and checked, merge for merge, against that tokenizer
(Hugging Face ``tokenizers``) — label encoding, and finally datasets, loaders and dynamic
padding with :class:`attnlib.data.datasets.TextClassificationDataset` and
:func:`attnlib.data.datasets.make_loader`, where we measure how much padding
each strategy wastes.
"""

import json
import re
import string
import tempfile
from collections import Counter
from itertools import pairwise
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import ListedColormap
from sklearn.preprocessing import LabelEncoder
from torch.utils.data import DataLoader

from attnlib.data.datasets import (
    Collate,
    TextClassificationDataset,
    make_loader,
    pad_sequences,
    stratified_split,
)
from attnlib.data.synthetic import SENTIMENT_LABELS, generate_synthetic_data, sentiment_corpus
from attnlib.data.text import (
    SPECIALS,
    SubwordTokenizer,
    Vocabulary,
    WordTokenizer,
    clean_text,
    word_tokenize,
)
from attnlib.report import key_figure
from attnlib.training import seed_everything

SEED = seed_everything()  # $ATTNLIB_SEED, else 0: seeds Python, NumPy and PyTorch

# %%
# Split first
# -----------
#
# Everything that is *learned* from text — the vocabulary, the subword merges,
# the label encoding — must be learned from the training split only; otherwise
# words of the test set leak into the model's inputs and the test score is
# too kind. So we split before anything else.
# :func:`attnlib.data.datasets.stratified_split` makes an 80/10/10 split that
# keeps each class's share in every part (scikit-learn's ``train_test_split``
# with ``stratify``). Next to it, the same split without stratification
# (``label_column=None``) for comparison: its shares drift in the small
# parts (last row of the table).

reviews = sentiment_corpus(3000, seed=SEED)
train, val, test = stratified_split(
    reviews, label_column="label", fractions=(0.8, 0.1, 0.1), seed=SEED
)
parts = {"all": reviews, "train": train, "validation": val, "test": test}
random_parts = dict(
    zip(
        ["train", "validation", "test"],
        stratified_split(reviews, label_column=None, seed=SEED),
        strict=True,
    )
)
overall = reviews["label"].value_counts(normalize=True)


def max_share_deviation(part: pd.DataFrame) -> float:
    """Largest difference between a class's share in ``part`` and in the corpus."""
    shares = part["label"].value_counts(normalize=True).reindex(overall.index, fill_value=0)
    return float((shares - overall).abs().max())


split_table = pd.DataFrame(
    {
        name: {
            **{
                label: f"{(part['label'] == label).sum()} ({(part['label'] == label).mean():.1%})"
                for label in SENTIMENT_LABELS
            },
            "rows": len(part),
            "max |share - corpus share|": f"{max_share_deviation(part):.2%}",
            "same, without stratification": (
                f"{max_share_deviation(random_parts[name]):.2%}" if name != "all" else "-"
            ),
        }
        for name, part in parts.items()
    }
)
split_table

# %%
# Cleaning
# --------
#
# Text from the wild comes in many encodings of the same thing: full-width
# letters from East Asian keyboards, typographic ligatures (``ﬁ`` is one
# character), curly quotes, long dashes, stray tabs and double spaces.
# :func:`attnlib.data.text.clean_text` normalises Unicode (NFKC), maps
# typographic quotes and dashes to ASCII, lower-cases and squeezes white
# space, so each of these becomes one spelling the vocabulary knows.
# :func:`attnlib.data.text.word_tokenize` then splits words from punctuation,
# keeping inner apostrophes ("didn't").

messy = [
    "The ＧＲＥＡＴ ＧＡＴＳＢＹ was ＧＲＥＡＴ",
    "a ﬁne, ﬂawless ﬁlm",
    "I “loved” it — didn’t you?",
    "  too   many\tspaces \n here  ",
]
cleaned = [clean_text(text) for text in messy]
pd.DataFrame(
    {
        "raw (repr)": [repr(text) for text in messy],
        "length raw": [len(text) for text in messy],
        "clean_text": cleaned,
        "length clean": [len(text) for text in cleaned],
        "word_tokenize(clean_text)": [word_tokenize(text) for text in cleaned],
    }
)

# %%
# The generated reviews are already clean (lower case, single spaces), so
# cleaning them changes nothing — which is what we want a cleaning step to do
# with clean input:

unchanged = float(np.mean([clean_text(text) == text for text in reviews["text"]]))
print(f"reviews left unchanged by clean_text: {unchanged:.0%}")

# %%
# Words and the vocabulary
# ------------------------
#
# :class:`attnlib.data.text.WordTokenizer` cleans, splits into words and looks
# each word up in a :class:`attnlib.data.text.Vocabulary` built from the
# training texts. Four special tokens come first, with fixed ids that the rest
# of the library relies on: ``<pad>`` = 0 fills the short sentences of a batch,
# ``<bos>`` = 1 and ``<eos>`` = 2 mark the beginning and end of a sequence for
# decoders, ``<unk>`` = 3 stands for any word the vocabulary lacks. The
# ordinary words follow, most frequent first.

word_tok = WordTokenizer.fit(train["text"])
vocab = word_tok.vocab
print(vocab)
print(f"pad {vocab.pad_idx}, bos {vocab.bos_idx}, eos {vocab.eos_idx}, unk {vocab.unk_idx}")
example = "The plot was unwatchable, but the cast was brilliant."
example_ids = word_tok.encode(example, add_bos=True, add_eos=True)
pd.DataFrame(
    {
        "token": ["<bos>", *word_tok.tokenize(example), "<eos>"],
        "id": example_ids,
        "decoded": [vocab.id_to_token(i) for i in example_ids],
    }
).T

# %%
# "unwatchable" never occurs in the training texts, so it became ``<unk>``:
# the model will see *that* a word was there but not which. The vocabulary is
# saved as JSON (its tokens in id order) and loaded back identical:

workdir = tempfile.TemporaryDirectory()
vocab_path = Path(workdir.name) / "vocab.json"
vocab.save(vocab_path)
vocab_back = Vocabulary.load(vocab_path)
print(vocab_path.read_text()[:120], "...")
print(f"loaded == saved: {vocab_back == vocab}; {len(vocab_back)} tokens")

# %%
# How big should a vocabulary be? ``min_freq`` drops the rare tokens, which
# then become ``<unk>``. The review corpus, written from a small grammar, has
# about a hundred distinct words and each of them occurs many times, so small
# cut-offs change nothing. On the Zipf-distributed ids of
# :func:`attnlib.data.synthetic.generate_synthetic_data` (previous tutorial)
# the vocabulary shrinks fast while the share of running tokens it still
# covers falls slowly: most of the vocabulary is rare tokens that few
# positions use.

train_words = [word_tok.tokenize(text) for text in train["text"]]
zipf_tokens = generate_synthetic_data(2000, 1000, 30, seed=SEED)["tokens"].str.split().tolist()
cutoffs = [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000]
rows = []
for corpus, token_lists in (("reviews (words)", train_words), ("synthetic ids", zipf_tokens)):
    counts = Counter(t for tokens in token_lists for t in tokens)
    for min_freq in cutoffs:
        v = Vocabulary.build(token_lists, min_freq=min_freq)
        covered = sum(c for t, c in counts.items() if t in v) / sum(counts.values())
        rows.append((corpus, min_freq, len(v), covered))
vocab_sizes = pd.DataFrame(rows, columns=["corpus", "min_freq", "size", "coverage"])

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
for corpus, group in vocab_sizes.groupby("corpus"):
    axes[0].plot(group["min_freq"], group["size"], marker="o", label=corpus)
    axes[1].plot(group["min_freq"], group["coverage"], marker="o", label=corpus)
axes[0].set_xscale("log")
axes[0].set_yscale("log")
axes[0].set_xlabel("min_freq")
axes[0].set_ylabel("vocabulary size (with 4 specials)")
axes[0].set_title("Vocabulary size against min_freq")
axes[1].set_xscale("log")
axes[1].set_xlabel("min_freq")
axes[1].set_ylabel("share of running tokens not <unk>")
axes[1].set_title("Coverage of the training tokens")
for ax in axes:
    ax.legend()
plt.show()
vocab_sizes.pivot(index="min_freq", columns="corpus", values=["size", "coverage"]).round(3).astype(
    {("size", corpus): int for corpus in vocab_sizes["corpus"].unique()}
)

# %%
# Subword tokens
# --------------
#
# A word vocabulary cannot name a word it has not seen, and real text is full
# of them: misspellings, rare words, new compounds. Subword tokenizers split
# words into pieces learned from the training text, so that frequent words
# stay whole and any other word is spelled with smaller pieces, down to single
# characters. :meth:`attnlib.data.text.SubwordTokenizer.fit` learns a
# byte-pair encoding (BPE) with Hugging Face ``tokenizers``. Every word and
# every punctuation mark starts with the marker ``▁`` (as in SentencePiece),
# so a piece that begins with ``▁`` begins a word and decoding knows where to
# put the spaces back. ``vocab_size`` counts everything: the 4 specials, the
# characters (the marker among them) and the merged pieces.

subword_tok = SubwordTokenizer.fit(train["text"], vocab_size=300)
unseen = ["unwatchable", "borring", "dellightful", "soundtracks"]
subword_rows = []
for word in unseen:
    pieces = subword_tok.tokenize(word)
    subword_rows.append(
        {
            "word": word,
            "word tokenizer": [vocab.id_to_token(i) for i in word_tok.encode(word)],
            "subword pieces": pieces,
            "decode(encode(word))": subword_tok.decode(subword_tok.encode(word)),
        }
    )
print(f"word vocabulary: {len(word_tok)} tokens; subword vocabulary: {len(subword_tok)} tokens")
print("tokenize:", subword_tok.tokenize(example))
print("decode(encode):", subword_tok.decode(subword_tok.encode(example)))
pd.DataFrame(subword_rows).set_index("word")

# %%
# Decoding gives the lower-cased text back with one change: a punctuation
# mark is a word of its own, so it comes back with a space before it
# (``"unwatchable , but"``).
#
# Byte-pair encoding from scratch
# -------------------------------
#
# BPE (Sennrich, Haddow and Birch, 2016, arXiv:1508.07909) starts from
# characters and learns merges greedily: count every pair of adjacent
# symbols over the word-frequency table (a pair inside a word that occurs
# 500 times counts 500), merge the most frequent pair into one new symbol
# everywhere, and repeat. The list of merges, in order, *is* the model. To
# tokenize a word, start from its characters and apply the learned merges in
# the order they were learned, as long as one applies.
#
# One detail decides whether two implementations agree exactly: ties.
# ``tokenizers`` breaks a tie between equally frequent pairs by the smaller
# pair of symbol ids, and numbers the symbols as: the 4 specials, the
# characters in code-point order (the marker ``▁``, U+2581, comes after
# every ASCII character), then every new symbol in the order it was created.
# We do the same, and stop, as it does, when the most frequent pair occurs
# fewer than ``min_frequency`` times.


def learn_bpe(word_counts, num_merges, min_frequency=2):
    """The first ``num_merges`` BPE merges of a {word: count} table, most frequent first."""
    words = {w: list(w) for w in word_counts}  # each word as a list of symbols
    start = {c for symbols in words.values() for c in symbols}
    rank = {c: i for i, c in enumerate(sorted(start))}  # ties: smallest ids win
    merges = []
    for _ in range(num_merges):
        pairs = Counter()
        for word, symbols in words.items():
            for pair in pairwise(symbols):
                pairs[pair] += word_counts[word]
        if not pairs:
            break  # every word is a single symbol
        a, b = min(pairs, key=lambda p: (-pairs[p], rank[p[0]], rank[p[1]]))
        if pairs[a, b] < min_frequency:
            break
        merges.append((a, b))
        rank.setdefault(a + b, len(rank))
        for word, symbols in words.items():  # replace every (a, b), left to right
            out, i = [], 0
            while i < len(symbols):
                if symbols[i : i + 2] == [a, b]:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(symbols[i])
                    i += 1
            words[word] = out
    return merges


def bpe_tokenize(word, merges):
    """Apply learned merges to one word: always the earliest-learned pair first."""
    priority = {pair: i for i, pair in enumerate(merges)}
    symbols = list(word)
    while len(symbols) > 1:
        best, i = min((priority.get(p, len(priority)), i) for i, p in enumerate(pairwise(symbols)))
        if best == len(priority):
            break  # no learned merge applies
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


# %%
# The word-frequency table needs the library's pre-tokenization: the cleaned
# text cut into words and single punctuation marks (``tokenizers``'
# ``Punctuation``), each with the marker in front (``Metaspace``). It is one
# regular expression; we check that it cuts every training text exactly as
# the trained tokenizer does.

PUNCTUATION = re.escape(string.punctuation)


def pre_tokenize(text: str) -> list[str]:
    """Words and single punctuation marks of a cleaned text, each starting with "▁"."""
    return ["▁" + piece for piece in re.findall(rf"[^\s{PUNCTUATION}]+|[{PUNCTUATION}]", text)]


train_clean = [clean_text(text) for text in train["text"]]
hf_pre_tokenizer = subword_tok.tokenizer.pre_tokenizer
same_pre_tokens = all(
    pre_tokenize(text) == [w for w, _ in hf_pre_tokenizer.pre_tokenize_str(text)]
    for text in train_clean
)
word_counts = Counter(w for text in train_clean for w in pre_tokenize(text))
alphabet = sorted({c for word in word_counts for c in word})
print(f"same pre-tokens as the library, all {len(train_clean)} training texts: {same_pre_tokens}")
print(f"{len(word_counts)} distinct words, {sum(word_counts.values())} in all")
print(f"alphabet of {len(alphabet)} characters: {''.join(alphabet)!r}")
print("most frequent:", word_counts.most_common(8))

# %%
# **Against our SubwordTokenizer.** Its vocabulary of 300 holds the 4
# specials and the alphabet, so it learned 300 - 4 - (size of the alphabet) merges (with
# its default ``min_freq=2``); we learn as many from the same table.
# The merges come out identical, in the same order, and so do the
# tokenizations of every word of the validation and test texts plus some
# words that never occur (words with a character outside the training
# alphabet, such as "z", are left out: both would have to map it to
# ``<unk>``).
#
# Why the word-start marker, rather than BERT's ``##`` in front of the
# pieces that *continue* a word? Reproducibility: with the ``##`` prefix,
# ``tokenizers`` numbers the continuing characters in the order it walks a
# hash table, which changes from one process to the next, so ties are
# broken differently and the same texts give different merges in different
# runs. With the marker, every character is numbered in code-point order and
# training gives the same tokenizer every time.


def merges_of(tokenizer) -> list[tuple[str, str]]:
    """The merges of a trained ``tokenizers`` BPE, in the order they were learned."""
    merges = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


lib_merges = merges_of(subword_tok.tokenizer)
num_merges = len(subword_tok) - len(SPECIALS) - len(alphabet)
our_merges = learn_bpe(word_counts, num_merges)
merges_equal = our_merges == lib_merges

invented = ["unwatchable", "borring", "dellightful", "soundtracks", "overacted", "plotline"]
held_out = {w for text in [*val["text"], *test["text"]] for w in pre_tokenize(clean_text(text))}
held_out = sorted(w for w in held_out | {"▁" + w for w in invented} if set(w) <= set(alphabet))
# the library is given the word itself and adds the marker
same_tokens = [bpe_tokenize(w, our_merges) == subword_tok.tokenize(w[1:]) for w in held_out]
print(f"{len(lib_merges)} merges in SubwordTokenizer(vocab_size=300), {len(our_merges)} ours;")
print(f"identical, in order: {merges_equal}")
print("first merges:", [a + "+" + b for a, b in our_merges[:12]])
print(f"same tokens for {sum(same_tokens)} of {len(held_out)} held-out words")
pd.DataFrame(
    {
        "ours": [" ".join(bpe_tokenize("▁" + w, our_merges)) for w in invented],
        "SubwordTokenizer": [" ".join(subword_tok.tokenize(w)) for w in invented],
    },
    index=invented,
)

# %%
# Sequence lengths: words against subwords
# ----------------------------------------
#
# The price of an open vocabulary is longer sequences, and attention costs
# grow with the square of the length. With 300 subword symbols most of the
# distinct training words (punctuation included) stay whole and mostly the
# rarer adjectives are spelled in pieces, so a review is only a little longer
# in subwords than in words; with 100 symbols only a few words stay whole and
# the average length more than doubles. The counts and the ratios of the mean
# lengths are printed below (over seeds 0-2 and 1-2 threads: 87-90 of the 109
# distinct words whole with 300 symbols, 19 with 100; mean lengths 1.14 and
# 2.29-2.30 times the word count), then the distribution of tokens per review:

small_subword_tok = SubwordTokenizer.fit(train["text"], vocab_size=100)
lengths = pd.DataFrame(
    {
        f"words ({len(word_tok)} tokens)": [len(word_tok.encode(t)) for t in train["text"]],
        f"subwords ({len(subword_tok)})": [len(subword_tok.encode(t)) for t in train["text"]],
        f"subwords ({len(small_subword_tok)})": [
            len(small_subword_tok.encode(t)) for t in train["text"]
        ],
    }
)
whole_words = {
    size: sum(len(tok.tokenize(w.removeprefix("▁"))) == 1 for w in word_counts)
    for size, tok in ((len(subword_tok), subword_tok), (len(small_subword_tok), small_subword_tok))
}
print(f"distinct training words left whole, of {len(word_counts)}: {whole_words}")
mean_lengths = lengths.mean().to_numpy()
key_figure("distinct words left whole, 300 subwords", whole_words[300], fmt="{:.0f}")
key_figure("distinct words left whole, 100 subwords", whole_words[100], fmt="{:.0f}")
key_figure("mean length, 300 subwords / words", mean_lengths[1] / mean_lengths[0], fmt="{:.2f}")
key_figure("mean length, 100 subwords / words", mean_lengths[2] / mean_lengths[0], fmt="{:.2f}")
fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
bins = np.arange(0, lengths.to_numpy().max() + 3, 2)
for column in lengths:
    ax.hist(lengths[column], bins=bins, histtype="step", linewidth=1.6, label=column)
ax.set_xlabel("tokens per review")
ax.set_ylabel("number of training reviews")
ax.set_title("Sequence length by tokenizer")
ax.legend(title="tokenizer (vocabulary size)")
plt.show()
lengths.describe().loc[["mean", "50%", "max"]].round(1)

# %%
# Labels as integers
# ------------------
#
# The loss function wants class ids ``0 .. C-1``. scikit-learn's
# ``LabelEncoder`` learns the classes from the training labels (sorted
# alphabetically, which here is the order of
# ``attnlib.data.synthetic.SENTIMENT_LABELS``), turns names into ids with
# ``fit_transform`` / ``transform`` and ids back into names with
# ``inverse_transform`` — what the inference step will need to print a
# prediction.

encoder = LabelEncoder()
y_train = encoder.fit_transform(train["label"])
y_val, y_test = encoder.transform(val["label"]), encoder.transform(test["label"])
labels_back = encoder.inverse_transform(y_train)
print("classes_:", list(encoder.classes_))
print("first labels:", train["label"].head(5).tolist(), "->", y_train[:5].tolist())
print("inverse_transform gives them back:", bool((labels_back == train["label"]).all()))

# %%
# Datasets, loaders and a padded batch
# ------------------------------------
#
# :class:`attnlib.data.datasets.TextClassificationDataset` tokenizes every
# text once and keeps ``(ids, label)`` pairs of different lengths.
# :func:`attnlib.data.datasets.make_loader` batches them with
# :class:`attnlib.data.datasets.Collate`, which pads each batch with
# ``<pad>`` = 0 to the length of *its own* longest text and returns a
# :class:`attnlib.data.datasets.Batch`: the ``inputs``, the ``targets``, the
# boolean ``mask`` (``True`` at real tokens, shaped ``(B, 1, 1, L)`` to
# broadcast over heads and queries, as :func:`attnlib.masks.padding_mask`)
# and the ``lengths``.

train_set = TextClassificationDataset(train["text"], y_train, word_tok)
train_loader = make_loader(train_set, batch_size=32, shuffle=True, seed=SEED)
batch = next(iter(make_loader(train_set, batch_size=8, shuffle=True, seed=SEED + 1)))
for name, value in batch._asdict().items():
    print(f"{name:8s} {str(tuple(value.shape)):16s} {value.dtype}")
print("lengths:", batch.lengths.tolist())

# %%
# Drawn: each row is one review, each column a position. The token ids on
# the left (padding in light grey), the mask on the right, and the same batch
# as words in the table below (``·`` is padding). The mask is exactly
# ``inputs != <pad>``: attention will give the grey cells zero weight, so the
# padding cannot change the result.

B, L = batch.inputs.shape
mask_2d = batch.mask[:, 0, 0, :]  # (B, L)
row_names = [
    f"review {i}: {encoder.inverse_transform([y])[0]} ({n})"
    for i, (y, n) in enumerate(zip(batch.targets.tolist(), batch.lengths.tolist(), strict=True))
]
fig, axes = plt.subplots(
    1, 2, figsize=(12, 3.8), layout="constrained", gridspec_kw={"width_ratios": [1, 1]}
)
id_cmap = plt.get_cmap("viridis").copy()
id_cmap.set_bad("#e6e6e6")
shown_ids = np.ma.masked_where(~mask_2d.numpy(), batch.inputs.numpy())
image = axes[0].imshow(shown_ids, cmap=id_cmap, aspect="auto")
for (i, j), token_id in np.ndenumerate(batch.inputs.numpy()):
    light = token_id == 0 or token_id > 0.6 * batch.inputs.max()  # dark text on light cells
    colour = "black" if light else "white"
    axes[0].text(j, i, token_id, ha="center", va="center", fontsize=6, color=colour)
fig.colorbar(image, ax=axes[0], label="token id (grey: <pad> = 0)")
axes[0].set_yticks(range(B), row_names)
axes[0].set_title("batch.inputs")
bool_cmap = ListedColormap(["#e6e6e6", "#2b8cbe"])
mask_image = axes[1].imshow(mask_2d.int(), cmap=bool_cmap, vmin=0, vmax=1, aspect="auto")
bar = fig.colorbar(mask_image, ax=axes[1], ticks=[0.25, 0.75])
bar.set_ticklabels(["False (padding)", "True (token)"])
axes[1].set_yticks(range(B), [f"review {i}" for i in range(B)])
axes[0].set_ylabel("review in the batch: label (length)")
axes[1].set_ylabel("review in the batch")
axes[1].set_title("batch.mask[:, 0, 0, :]")
for ax in axes:
    ax.set_xlabel("position in the padded sequence")
fig.suptitle(f"One batch of 8 reviews, padded to its longest ({L} tokens)")
plt.show()
print(f"padding fraction of this batch: {1 - mask_2d.float().mean():.2f}")
pd.DataFrame(
    [[vocab.id_to_token(i) if i else "·" for i in row] for row in batch.inputs.tolist()],
    index=[f"review {i}" for i in range(B)],
)

# %%
# Dynamic padding
# ---------------
#
# Padding is wasted work: the model computes on every cell of the batch,
# real or not. The simplest scheme pads every text to the longest text of the
# whole data set; **dynamic padding** (what :class:`attnlib.data.datasets.Collate`
# does) pads each batch only to its own longest text. Grouping texts of
# similar length into the same batch (*bucketing*: sort by length, cut into
# batches, shuffle the batches) saves more. We measure the share of padded
# cells over one pass through the training set, batches of 32:


def padding_fraction(batches) -> float:
    padded = sum(b.inputs.numel() for b in batches)
    real = sum(int(b.lengths.sum()) for b in batches)
    return 1 - real / padded


global_max = max(len(ids) for ids, _ in train_set)
global_inputs = pad_sequences([ids for ids, _ in train_set], length=global_max)
global_fraction = float((global_inputs == word_tok.pad_idx).float().mean())
dynamic_batches = list(train_loader)
by_length = np.argsort([len(ids) for ids, _ in train_set], kind="stable")
buckets = [by_length[i : i + 32].tolist() for i in range(0, len(by_length), 32)]
buckets = [buckets[i] for i in np.random.default_rng(SEED).permutation(len(buckets))]
bucket_loader = DataLoader(train_set, batch_sampler=buckets, collate_fn=Collate(0))
bucket_batches = list(bucket_loader)
padding_table = pd.DataFrame(
    {
        "padded length": [f"{global_max} for all", "longest in batch", "longest in bucket"],
        "padded cells": [
            global_inputs.numel(),
            sum(b.inputs.numel() for b in dynamic_batches),
            sum(b.inputs.numel() for b in bucket_batches),
        ],
        "padding fraction": [
            global_fraction,
            padding_fraction(dynamic_batches),
            padding_fraction(bucket_batches),
        ],
    },
    index=["global max length", "dynamic (shuffled batches)", "dynamic + length buckets"],
)
mask_matches = all(torch.equal(b.mask[:, 0, 0, :], b.inputs != 0) for b in dynamic_batches)
lengths_match = all(torch.equal(b.mask.sum((1, 2, 3)), b.lengths) for b in dynamic_batches)
dynamic_fraction = padding_table.loc["dynamic (shuffled batches)", "padding fraction"]
bucket_fraction = padding_table.loc["dynamic + length buckets", "padding fraction"]
key_figure("padding fraction, global max length", global_fraction, show=False)
key_figure("padding fraction, dynamic", dynamic_fraction, show=False)
key_figure("padding fraction, length buckets", bucket_fraction, show=False)
padding_table.round(3)

# %%
# Dynamic padding removes part of the waste; on this corpus, whose reviews
# range from 3 to 30-odd words, random batches still mix short and long
# texts, and bucketing removes almost all of the rest (over seeds 0-2 and
# 1-2 threads the padding fraction went from 0.58-0.60 to 0.48-0.49, and
# to 0.013-0.015 with buckets). (Bucketing makes
# batches less random, which is usually harmless for classification.)
#
# Summary and checks
# ------------------
#
# - Split first (stratified: every part keeps the class shares), then learn
#   vocabularies and label encodings on the training part only.
# - :func:`attnlib.data.text.clean_text` makes one spelling of many; a
#   :class:`attnlib.data.text.Vocabulary` has ``<pad>``, ``<bos>``, ``<eos>``,
#   ``<unk>`` at ids 0-3 and saves/loads as JSON.
# - Subwords spell unseen words instead of hiding them behind ``<unk>``, at
#   the cost of longer sequences. Our 30-line BPE learns exactly the merges of
#   :class:`attnlib.data.text.SubwordTokenizer` (Hugging Face ``tokenizers``)
#   once ties are broken the same way, and tokenizes unseen words the same.
# - Batches are padded per batch; the mask is ``inputs != <pad>``, and
#   dynamic padding (better: with length buckets) wastes less compute than
#   one global length.

workdir.cleanup()

assert cleaned[0] == "the great gatsby was great"
assert cleaned[1] == "a fine, flawless film"
assert cleaned[2] == 'i "loved" it - didn\'t you?'
assert cleaned[3] == "too many spaces here"
assert list(vocab)[:4] == list(SPECIALS) == ["<pad>", "<bos>", "<eos>", "<unk>"]
assert (vocab.pad_idx, vocab.bos_idx, vocab.eos_idx, vocab.unk_idx) == (0, 1, 2, 3)
assert example_ids[0] == vocab.bos_idx and example_ids[-1] == vocab.eos_idx
assert vocab.unk_idx in example_ids  # "unwatchable"
assert vocab_back == vocab and vocab_back.itos == vocab.itos  # save/load round trip
for row in subword_rows:
    assert row["word tokenizer"] == ["<unk>"]  # unseen word: one unknown token
    assert len(row["subword pieces"]) > 1 and "<unk>" not in row["subword pieces"]
    assert row["decode(encode(word))"] == row["word"]  # subword round trip
# From-scratch BPE against SubwordTokenizer(vocab_size=300): every merge identical, in order,
# and every held-out word tokenized identically.
assert same_pre_tokens  # our regular expression cuts the text as the library does
assert merges_equal and len(our_merges) == num_merges == 269
assert all(same_tokens) and len(held_out) > 100
assert (lengths.iloc[:, 1] >= lengths.iloc[:, 0]).all()  # subwords never fewer than words
assert 1 < mean_lengths[1] / mean_lengths[0] < 1.3 and mean_lengths[2] / mean_lengths[0] > 2
assert whole_words[300] > 80 > 30 > whole_words[100]
assert list(encoder.classes_) == list(SENTIMENT_LABELS)
assert (labels_back == train["label"].to_numpy()).all()  # LabelEncoder round trip
assert (len(train), len(val), len(test)) == (2400, 300, 300)
assert set(train["id"]).isdisjoint(val["id"]) and set(val["id"]).isdisjoint(test["id"])
assert set(train["id"]) | set(val["id"]) | set(test["id"]) == set(reviews["id"])
# stratified: every class share within one review of the corpus share
assert max(max_share_deviation(p) for p in (train, val, test)) <= 1 / len(test)
assert mask_matches and lengths_match  # mask == (inputs != pad); lengths == mask.sum
assert tuple(batch.mask.shape) == (8, 1, 1, L) and batch.mask.dtype == torch.bool
assert bucket_fraction < dynamic_fraction < global_fraction
assert global_fraction - dynamic_fraction > 0.05
assert bucket_fraction < 0.1  # buckets remove almost all of the padding
