"""
Fine-tuning a pre-trained BERT on a CPU
=======================================

With only a few hundred labelled reviews, should we train a small Transformer
from scratch, or start from a BERT that has already read a lot of English? We
take 300 reviews of the chapter-4 sentiment corpus and get a classifier from
them in four ways: frozen sentence embeddings of all-MiniLM-L6-v2 with a
logistic regression; its top two layers retrained; the whole model fine-tuned
with a small learning rate and warm-up (the recipe of Devlin et al., 2019,
arXiv:1810.04805, and Howard and Ruder, 2018, arXiv:1801.06146); and the
chapter-4 classifier trained from scratch. We compare their accuracy,
trainable parameters and training time, all on one CPU core — and then look
at what fine-tuning did to the attention of each layer and head, as Kovaleva
et al. (2019, "Revealing the Dark Secrets of BERT", arXiv:1908.08593) did.
"""

# %%
# Few labelled reviews
# --------------------
#
# :func:`attnlib.data.synthetic.sentiment_corpus` writes reviews from a small
# English grammar with negation (``"not good"``), contrast (``"X, but Y"``:
# the clause after ``but`` decides) and intensifiers. We keep 300 reviews for
# training, 100 for validation (the learning curves) and 400 held-out reviews
# for the test, split with the same class proportions by
# :func:`attnlib.data.datasets.stratified_split`.
#
# The grammar has a small vocabulary, and 300 reviews already use nearly
# all of it (the share of test reviews with a word missing from the training
# split is printed below). What 300 reviews do not give a model trained from
# scratch is enough examples to learn what each word means and how ``not``
# and ``but`` combine them; a pre-trained model brings what it learned about
# English words and their combinations from its pre-training.

import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from scipy.spatial.distance import jensenshannon
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from attnlib.bert import BertClassifier, BertEncoder, mean_pool, sentence_embeddings
from attnlib.capture import record_attention
from attnlib.data.datasets import (
    Collate,
    TextClassificationDataset,
    make_loader,
    pad_sequences,
    stratified_split,
)
from attnlib.data.synthetic import SENTIMENT_LABELS, sentiment_corpus
from attnlib.data.text import WordTokenizer
from attnlib.plotting import plot_attention, plot_history
from attnlib.pretrained import minilm
from attnlib.report import key_figure
from attnlib.training import Trainer, seed_everything, warmup_cosine_schedule
from attnlib.transformer import EncoderClassifier

SEED = seed_everything()  # $ATTNLIB_SEED, else 0

N_TRAIN, N_VAL, N_TEST = 300, 100, 400
CLASSES = list(SENTIMENT_LABELS)
reviews = sentiment_corpus(N_TRAIN + N_VAL + N_TEST, seed=SEED)
reviews["y"] = reviews["label"].map(CLASSES.index)
n = len(reviews)
train, val, test = stratified_split(
    reviews, fractions=(N_TRAIN / n, N_VAL / n, N_TEST / n), seed=SEED
)
words = WordTokenizer.fit(train["text"], min_freq=2)  # the chapter-4 tokenizer
unknown = test["text"].map(lambda t: words.unk_idx in words.encode(t))
print(f"train / validation / test: {len(train)} / {len(val)} / {len(test)} reviews")
print(f"word vocabulary of the training split: {len(words)} tokens")
print(f"test reviews with a word missing from the training split: {unknown.mean():.1%}")
train[["text", "label"]].head(4)

# %%
# Tokens and batches
# ------------------
#
# :func:`attnlib.pretrained.minilm` gives the pre-trained model and its
# tokenizer; :meth:`attnlib.bert.BertEncoder.from_huggingface` copies the
# model into attnlib's own layers (see
# :ref:`sphx_glr_auto_gallery_07_bert_04_our_encoder.py`), which we train
# below. The datasets of :mod:`attnlib.data.datasets` need a tokenizer with
# an ``encode`` method and a ``pad_idx``; a three-line adapter gives them the
# WordPiece tokenizer (``encode`` adds ``[CLS]`` and ``[SEP]``).
#
# Padding costs: a batch is as long as its longest review, and a BERT layer
# costs the same for a padding token as for a word. The reviews are short but
# their lengths vary (filler sentences), so we batch reviews of similar length
# together: ``LengthBatches`` shuffles the reviews, sorts each chunk of four
# batches by length, cuts it into batches and shuffles the batches (Hugging
# Face's ``group_by_length`` does the same). Evaluation batches are simply
# sorted by length. Two more savings for a CPU: dropout is switched off (in
# the model's configuration, before we copy it), because on one core it made
# a training step markedly slower and, in our trials over seeds 0-2, the runs
# without it were as accurate or more; and AdamW uses PyTorch's fused kernel
# (``adamw`` below), which updates ten million weights several times faster
# than the default loop over tensors.

hf_model, hf_tokenizer = minilm()
hf_model.config.hidden_dropout_prob = hf_model.config.attention_probs_dropout_prob = 0.0
pretrained = BertEncoder.from_huggingface(hf_model).eval()
PAD = hf_tokenizer.pad_token_id
WIDTH = hf_model.config.hidden_size  # D = 384


class WordPieces:
    """MiniLM's tokenizer with the interface of attnlib's datasets."""

    pad_idx = PAD

    def encode(self, text: str) -> list[int]:
        return hf_tokenizer.encode(text)  # [CLS] ... [SEP]


class LengthBatches(Sampler):
    """Batches of indices of items of similar length, drawn afresh every epoch.

    With ``shuffle=False``: consecutive batches of the items sorted by length.
    """

    def __init__(self, lengths, batch_size: int, *, shuffle: bool = False, seed: int = 0):
        self.lengths, self.batch_size, self.shuffle = np.asarray(lengths), batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        size = self.batch_size
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from (order[i : i + size].tolist() for i in range(0, len(order), size))
            return
        order = torch.randperm(len(self.lengths), generator=self.generator).numpy()
        batches = []
        for start in range(0, len(order), 4 * size):
            chunk = order[start : start + 4 * size]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + size].tolist() for i in range(0, len(chunk), size)]
        for k in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[k]


def wordpiece_loader(table, batch_size, *, shuffle=False, seed=0):
    """Padded batches of WordPiece ids (:class:`attnlib.data.datasets.Batch`)."""
    data = TextClassificationDataset(table["text"], table["y"], WordPieces())
    lengths = [len(ids) for ids in data.ids]
    batches = LengthBatches(lengths, batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(data, batch_sampler=batches, collate_fn=Collate(PAD))


@torch.no_grad()
def predict_classes(model, loader, inputs=lambda batch: batch[:1]):
    """The predicted class id of every item of ``loader``'s dataset, in its order
    (``inputs(batch)`` are the model's arguments)."""
    model.eval()
    predicted = np.zeros(len(loader.dataset), dtype=int)
    for indices, batch in zip(loader.batch_sampler, loader, strict=True):
        predicted[indices] = model(*inputs(batch)).argmax(-1).numpy()
    return predicted


lengths = pd.Series([len(WordPieces().encode(t)) for t in reviews["text"]])
batches = list(LengthBatches(lengths[:N_TRAIN], 16, shuffle=True, seed=SEED))
padded = sum(len(b) * lengths[b].max() for b in batches)
random_batches = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(SEED))
random_padded = sum(16 * lengths[b.numpy()].max() for b in random_batches.split(16))
print(f"WordPiece tokens per review: median {lengths.median():.0f}, longest {lengths.max()}")
print(f"tokens computed per epoch: {padded} with length batches, {random_padded} at random")

# %%
# The pre-trained encoder has 22.6 M parameters, half of them in the table
# of 30,522 WordPiece embeddings; each of its six layers has 1.8 M.


def count(params) -> int:
    return sum(p.numel() for p in params)


table_size = pretrained.embeddings.token.weight.numel()
layer_size = count(pretrained.layers[0].parameters())
print(f"parameters: {count(pretrained.parameters()):,}, of which the WordPiece table ", end="")
print(f"{table_size:,}; one layer {layer_size:,}")

# %%
# 1. Frozen features
# ------------------
#
# The cheapest way: run the pre-trained model once over every review, take
# the mean of its last hidden states over the real tokens
# (:func:`attnlib.bert.mean_pool`, the sentence embedding of
# all-MiniLM-L6-v2 before its normalisation) and fit a scikit-learn
# ``LogisticRegression`` on them; only the regression's
# :math:`3 \times 384 + 3` weights are trained.
#
# We run the encoder in two halves — the embeddings and layers 0-3, then
# layers 4-5 — and keep each review's hidden states after layer 3: method 2
# starts from them. A check: the pooled features equal those of
# :func:`attnlib.bert.sentence_embeddings`, which runs the whole encoder.

TOP = 2  # layers retrained by method 2
SPLIT = len(pretrained.layers) - TOP


def run_layers(layers, hidden, mask):
    """Run encoder layers on ``hidden`` ``(B, L, D)``; ``mask`` ``(B, L)`` True at tokens."""
    for layer in layers:
        hidden = layer(hidden, mask[:, None, None, :])  # keys: (B, 1, 1, L)
    return hidden


@torch.no_grad()
def encode_split(table):
    """Each review's hidden states after layer SPLIT - 1 ``(L_i, D)``, and the
    mean-pooled last hidden states ``(N, D)``; with the seconds each half took."""
    ids = [WordPieces().encode(t) for t in table["text"]]
    lower, features = [None] * len(ids), torch.zeros(len(ids), WIDTH)
    seconds = [0.0, 0.0]
    for batch in LengthBatches([len(i) for i in ids], 64):
        tokens = pad_sequences([ids[i] for i in batch], PAD)  # (B, L)
        mask = tokens != PAD  # (B, L)
        start = time.perf_counter()
        hidden = run_layers(pretrained.layers[:SPLIT], pretrained.embeddings(tokens), mask)
        seconds[0] += time.perf_counter() - start
        start = time.perf_counter()
        top = run_layers(pretrained.layers[SPLIT:], hidden, mask)  # (B, L, D)
        features[batch] = mean_pool(top, mask)
        seconds[1] += time.perf_counter() - start
        for row, i in enumerate(batch):
            lower[i] = hidden[row, : len(ids[i])]
    return lower, features, seconds


(lower_train, x_train, (lower_s, upper_s)), (lower_val, _, _), (lower_test, x_test, _) = (
    encode_split(part) for part in (train, val, test)
)
check = sentence_embeddings(pretrained, hf_tokenizer, list(train["text"][:8]), normalize=False)
assert torch.allclose(x_train[:8], check, atol=1e-4), (x_train[:8] - check).abs().max()

start = time.perf_counter()
regression = LogisticRegression(max_iter=2000).fit(x_train.numpy(), train["y"])
frozen_s = lower_s + upper_s + time.perf_counter() - start
predicted = {"frozen + regression": regression.predict(x_test.numpy())}
frozen_accuracy = np.mean(predicted["frozen + regression"] == test["y"])
print(f"frozen features + logistic regression: test accuracy {frozen_accuracy:.3f}")

# %%
# 2. The top layers
# -----------------
#
# Layers 0-3 stay frozen, so their output for a review never changes: we
# computed it once above, and train only copies of layers 4-5 and a linear
# head on mean pooling, starting from those cached states. A review costs a
# third of a full forward and backward pass. The batches are padded hidden
# states; :class:`attnlib.training.Trainer` takes a ``loss_fn`` for batches
# that are not token ids.


class TopLayers(nn.Module):
    """Encoder layers on cached hidden states, mean pooling and a linear head.

    Shape
    -----
    - hidden: ``(B, L, D)``; mask: ``(B, L)``, True at real tokens; output: ``(B, C)``
    """

    def __init__(self, layers, num_classes: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(list(layers)))
        self.head = nn.Linear(self.layers[0].norm1.normalized_shape[0], num_classes)

    def forward(self, hidden, mask):
        return self.head(mean_pool(run_layers(self.layers, hidden, mask), mask))


class Cached(Dataset):
    """Cached hidden states ``(L_i, D)`` and class ids."""

    def __init__(self, hidden, labels):
        self.hidden, self.labels = hidden, list(labels)

    def __len__(self):
        return len(self.hidden)

    def __getitem__(self, i):
        return self.hidden[i], self.labels[i]


def pad_hidden(items):
    """Pad a list of ``(hidden (L_i, D), label)`` to ``(B, L, D)``, a mask ``(B, L)``
    and labels ``(B,)``."""
    length = max(len(h) for h, _ in items)
    hidden = torch.zeros(len(items), length, items[0][0].shape[-1])
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    for i, (h, _) in enumerate(items):
        hidden[i, : len(h)], mask[i, : len(h)] = h, True
    return hidden, mask, torch.tensor([y for _, y in items])


def cached_loader(hidden, table, batch_size, *, shuffle=False, seed=0):
    batches = LengthBatches([len(h) for h in hidden], batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(Cached(hidden, table["y"]), batch_sampler=batches, collate_fn=pad_hidden)


def cached_loss(model, batch):
    """The ``loss_fn`` of :class:`attnlib.training.Trainer`: (loss, correct, count)."""
    hidden, mask, labels = batch
    logits = model(hidden, mask)
    loss = nn.functional.cross_entropy(logits, labels)
    return loss, int((logits.argmax(-1) == labels).sum()), len(labels)


# the copied layers, run on the cached states, give the pre-trained features
with torch.no_grad():
    probe = pad_hidden([(lower_train[i], 0) for i in range(4)])
    same = mean_pool(run_layers(pretrained.layers[SPLIT:], *probe[:2]), probe[1])
assert torch.allclose(same, x_train[:4], atol=1e-5)


def adamw(params, lr: float) -> torch.optim.AdamW:
    """AdamW with weight decay 0.01, with the fused kernel where PyTorch has one for
    the CPU (2.4 and later): one pass over the weights instead of several."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01, fused=True)
    except RuntimeError:
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


TOP_EPOCHS, TOP_LR, BATCH = 4, 3e-4, 16
seed_everything(offset=1)
top_model = TopLayers(pretrained.layers[SPLIT:], len(CLASSES))
train_loader = cached_loader(lower_train, train, BATCH, shuffle=True, seed=SEED + 1)
optimizer = adamw(top_model.parameters(), TOP_LR)
steps = TOP_EPOCHS * len(train_loader)
top_trainer = Trainer(
    top_model,
    optimizer,
    warmup_cosine_schedule(optimizer, steps // 10, steps),
    loss_fn=cached_loss,
    device="cpu",
    progress=False,
    verbose=False,
)
start = time.perf_counter()
top_history = top_trainer.fit(train_loader, cached_loader(lower_val, val, 128), TOP_EPOCHS)
top_s = lower_s + time.perf_counter() - start
top_model.eval()
predicted[f"top {TOP} layers"] = predict_classes(
    top_model, cached_loader(lower_test, test, 128), inputs=lambda batch: batch[:2]
)
top_accuracy = np.mean(predicted[f"top {TOP} layers"] == test["y"])
print(f"top {TOP} layers retrained: test accuracy {top_accuracy:.3f}")

# %%
# 3. The whole model
# ------------------
#
# Fine-tuning proper: every layer learns, with a learning rate small enough
# not to wipe out what pre-training put there. The recipe of BERT (Devlin et
# al., 2019) and ULMFiT (Howard and Ruder, 2018): AdamW, a peak rate of
# 1e-4 (BERT-base used 2e-5 to 5e-5; a six-layer model takes a larger one),
# a linear warm-up over the first tenth of the steps — so that the Adam
# statistics settle before the first large step — then a decay to zero
# (a cosine, :func:`attnlib.training.warmup_cosine_schedule`), three epochs,
# batches of 16, no dropout (see above). The classifier,
# :class:`attnlib.bert.BertClassifier`, is the encoder,
# :func:`attnlib.bert.mean_pool` and a new linear head.
#
# One saving: the table of 30,522 WordPiece embeddings stays frozen. Only the
# rows of the few hundred pieces in our reviews would get a gradient, but
# PyTorch computes a dense gradient for the whole table and AdamW updates
# all of it at every step, which on one core made each step much slower.


FT_EPOCHS, FT_LR = 3, 1e-4
seed_everything(offset=2)
fine_tuned = BertClassifier(copy.deepcopy(pretrained), len(CLASSES))
fine_tuned.encoder.embeddings.token.weight.requires_grad_(False)
trainable = [p for p in fine_tuned.parameters() if p.requires_grad]
train_loader = wordpiece_loader(train, BATCH, shuffle=True, seed=SEED + 2)
optimizer = adamw(trainable, FT_LR)
steps = FT_EPOCHS * len(train_loader)
ft_trainer = Trainer(
    fine_tuned,
    optimizer,
    warmup_cosine_schedule(optimizer, steps // 10, steps),
    device="cpu",
    progress=False,
    verbose=False,
)
start = time.perf_counter()
ft_history = ft_trainer.fit(train_loader, wordpiece_loader(val, 128), FT_EPOCHS)
ft_s = time.perf_counter() - start
fine_tuned.eval()
predicted["fine-tuned"] = predict_classes(fine_tuned, wordpiece_loader(test, 128))
ft_accuracy = np.mean(predicted["fine-tuned"] == test["y"])
print(f"whole model fine-tuned: test accuracy {ft_accuracy:.3f}")

# %%
# 4. From scratch
# ---------------
#
# The classifier of :ref:`sphx_glr_auto_gallery_04_pipeline_03_classifier.py`
# with its recipe (two pre-norm layers of four heads, width 48, the word
# tokenizer above, AdamW at 8e-3 with warm-up, batches of 64, early stopping
# on the validation loss with a patience of three epochs), on the same 300
# reviews. Chapter 4 gave it ten epochs of 3,200 reviews; here we allow up
# to 30 epochs and let early stopping decide.

seed_everything(offset=3)
scratch = EncoderClassifier(
    len(words),
    len(CLASSES),
    d_model=48,
    nhead=4,
    num_layers=2,
    dim_feedforward=96,
    dropout=0.0,
    pad_idx=words.pad_idx,
    norm_first=True,
    max_len=64,
)


def word_loader(table, batch_size, **kwargs):
    return make_loader(
        TextClassificationDataset(table["text"], table["y"], words), batch_size, **kwargs
    )


train_loader = word_loader(train, 64, shuffle=True, seed=SEED + 3)
optimizer = torch.optim.AdamW(scratch.parameters(), lr=8e-3, weight_decay=0.01)
scratch_trainer = Trainer(
    scratch,
    optimizer,
    warmup_cosine_schedule(optimizer, len(train_loader) // 2, 30 * len(train_loader)),
    patience=3,
    device="cpu",
    progress=False,
    verbose=False,
)
start = time.perf_counter()
scratch_history = scratch_trainer.fit(train_loader, word_loader(val, 256), 30)
scratch_s = time.perf_counter() - start
scratch.eval()
predicted["from scratch"] = predict_classes(scratch, word_loader(test, 256))
scratch_accuracy = np.mean(predicted["from scratch"] == test["y"])
print(f"from scratch: test accuracy {scratch_accuracy:.3f} after {len(scratch_history)} epochs")

# %%
# Side by side
# ------------
#
# The seconds are training time (on one core when this page is built): for
# the pre-trained methods including the forward passes over the training
# reviews that they need (the frozen layers' outputs), for all of them
# excluding the test. They vary from machine to machine; their ratios are
# what to look at.

results = pd.DataFrame(
    {
        "test accuracy": [frozen_accuracy, top_accuracy, ft_accuracy, scratch_accuracy],
        "trainable parameters": [
            regression.coef_.size + regression.intercept_.size,
            count(top_model.parameters()),
            count(trainable),
            count(scratch.parameters()),
        ],
        "seconds": [frozen_s, top_s, ft_s, scratch_s],
    },
    index=[
        "1. frozen features + logistic regression",
        f"2. top {TOP} layers + head",
        "3. whole model fine-tuned",
        "4. chapter-4 model from scratch",
    ],
)
for name, accuracy in zip(
    ("frozen features", "top layers", "fine-tuned", "from scratch"),
    results["test accuracy"],
    strict=True,
):
    key_figure(f"test accuracy, {name}", accuracy)

fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), layout="constrained", sharey=True)
short = ["frozen + regression", f"top {TOP} layers", "fine-tuned", "from scratch"]
formats = {"test accuracy": "{:.3f}", "trainable parameters": "{:,.0f}", "seconds": "{:.1f}"}
for ax, column in zip(axes, results.columns, strict=True):
    bars = ax.barh(short, results[column], color=[f"C{i}" for i in range(len(results))])
    ax.bar_label(bars, [formats[column].format(v) for v in results[column]], padding=3)
    ax.set_xlabel(column)
    ax.set_title(column)
    if column != "test accuracy":
        ax.set_xscale("log")
        ax.set_xlim(right=ax.get_xlim()[1] * 30)  # room for the labels
axes[0].axvline(1 / 3, color="grey", ls=":")
axes[0].set_xlim(0, 1.25)
axes[0].set_xlabel("test accuracy (dotted: chance)")
axes[0].invert_yaxis()
fig.suptitle(f"Four classifiers from the same {N_TRAIN} reviews (log scales on the right)")
plt.show()
results.round(3)

# %%
# The order was the same for every seed and thread count we ran (seeds 0-2,
# one and two threads): the whole model fine-tuned is best (0.960-0.975 test
# accuracy), then the top two layers (0.825-0.900), the frozen features
# (0.777-0.810) and last the model trained from scratch (0.690-0.735), the
# only one that has to learn English from these 300 reviews. For comparison,
# :ref:`sphx_glr_auto_gallery_04_pipeline_03_classifier.py` trains that same
# model on 3,200 reviews of this grammar and reports 0.983-0.990 over seeds
# 0-2: fine-tuning a pre-trained model comes within a few points of it with
# a tenth of the labels. Most of a BERT's parameters are what it brings from
# pre-training; the model from scratch has few, but has to find all their
# values in 300 reviews.
#
# The test accuracy by kind of review: with a negation, with a contrast, or
# with neither (the corpus marks each review).

groups = {
    "negated": test["negated"],
    "contrast": test["contrast"],
    "neither": ~(test["negated"] | test["contrast"]),
}
by_group = pd.DataFrame(
    {
        method: {g: np.mean(guess[m] == test["y"][m]) for g, m in groups.items()}
        for method, guess in predicted.items()
    }
)
by_group.insert(0, "test reviews", {g: int(m.sum()) for g, m in groups.items()})
negation_gain = key_figure(
    "negated reviews: fine-tuned minus frozen features",
    by_group.loc["negated", "fine-tuned"] - by_group.loc["negated", "frozen + regression"],
)
by_group.round(3)

# %%
# Frozen features are almost free — one forward pass and a logistic
# regression on a thousand weights — and on reviews with neither a negation
# nor a contrast they do well (above 0.9 over seeds 0-2): a sentence
# embedding made for semantic similarity carries the sentiment of the words.
# On negated reviews and contrasts they fall to 0.52-0.67 (seeds 0-2), and
# the fine-tuned model's lead on negated reviews (printed above) was
# 0.25-0.37. The pre-trained model was never asked to keep "not good" far
# from "good", and a linear classifier on the mean of its token vectors does
# not separate them. Retraining the top two layers re-reads the sentence for
# the task at a third of the cost of a full pass, but layers 0-3 still
# encode the words as they did for pre-training. Fine-tuning every layer
# costs the most, and is what reads the negations and contrasts here.

# %%
# Learning curves
# ---------------
#
# :func:`attnlib.plotting.plot_history` draws the three trained networks'
# histories over the same axes (the training curves average over the batches
# of an epoch while the weights still change; the validation point is taken
# at its end). The fine-tuned model starts from a representation that
# already separates the classes: after one epoch it is ahead of where the
# model from scratch ends. The model from scratch stops when its validation
# loss stops improving (early stopping), its accuracy still far below.

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
for history, label in (
    (top_history, f"top {TOP} layers"),
    (ft_history, "fine-tuned"),
    (scratch_history, "from scratch"),
):
    plot_history(history, axes=axes, label=label, columns=["loss", "val_accuracy"])
axes[1].axhline(1 / 3, color="grey", ls=":", label="chance")
axes[1].legend(fontsize=8)
fig.suptitle(f"Training on {N_TRAIN} reviews")
plt.show()

# %%
# How much did attention change?
# ------------------------------
#
# Kovaleva et al. (2019) fine-tuned BERT-base on the GLUE tasks and compared
# each head's attention maps before and after: the last two layers changed
# most, the first ones little. We do the same with our fine-tuned model on 100
# held-out reviews. For every query token, its attention row is a probability
# distribution over the keys; we measure how far apart the two models' rows
# are with the Jensen-Shannon distance, in bits (0 for equal rows, 1 for rows
# with disjoint supports),
#
# .. math::
#
#     d_{JS}(p, q) = \sqrt{\tfrac12 \mathrm{KL}(p \,\|\, m) + \tfrac12 \mathrm{KL}(q \,\|\, m)},
#     \qquad m = \tfrac12 (p + q),
#
# averaged over the real queries of every review, per layer and head
# (checked against SciPy's ``jensenshannon`` on a few rows). Kovaleva et al.
# used the cosine similarity of the flattened maps; we compute it too.


def js_distance(p, q):
    """Jensen-Shannon distance (base 2) between distributions along the last axis."""
    m = (p + q) / 2
    kl_pm = (torch.xlogy(p, p) - torch.xlogy(p, m)).sum(-1)
    kl_qm = (torch.xlogy(q, q) - torch.xlogy(q, m)).sum(-1)
    return ((kl_pm + kl_qm) / (2 * np.log(2))).clamp_min(0).sqrt()


@torch.no_grad()
def attention_maps(encoder, tokens):
    """All attention weights of ``encoder`` on ``tokens``: ``(layers, B, H, L, L)``."""
    with record_attention(encoder) as record:
        encoder(tokens, attention_mask=tokens != PAD)
    return record.stack()


held_out = test["text"][:100].tolist()
tokens = pad_sequences([WordPieces().encode(t) for t in held_out], PAD)  # (B, L)
real = tokens != PAD  # (B, L)
before = attention_maps(pretrained, tokens)  # (layers, B, H, L, L)
after = attention_maps(fine_tuned.encoder, tokens)
distance = js_distance(before, after)  # (layers, B, H, L): one per query row

rows = [(0, 0, 0, 0), (5, 3, 7, 2), (2, 1, 11, 4)]  # (layer, review, head, query)
theirs = [jensenshannon(before[r].double(), after[r].double(), base=2) for r in rows]
assert np.allclose([float(distance[r]) for r in rows], theirs, atol=1e-5), theirs

queries = real[None, :, None, :].expand_as(distance)  # real query rows only


def mean_over_queries(values, dims=(1, 2, 3)):
    """Mean of ``(layers, B, H, L)`` values over the real queries, keeping the other dims."""
    return (values * queries).sum(dims) / queries.sum(dims)


per_head = mean_over_queries(distance, (1, 3))  # (layers, H)
rows_kept = real[None, :, None, :, None]  # padding queries' rows set to 0 (keys already are)
cosine = nn.functional.cosine_similarity(
    (before * rows_kept).flatten(-2), (after * rows_kept).flatten(-2), dim=-1
)  # (layers, B, H): one per flattened map

# %%
# Which part of the change is a layer's own? Layer :math:`\ell`'s maps differ
# for two reasons: its own weights moved, and its input — the output of the
# layers below — moved too. To separate them we run each fine-tuned layer on
# the *pre-trained* model's input to that layer: the distance that remains is
# the layer's own. We also give the relative change of each layer's weights,
# :math:`\lVert W_{\text{fine-tuned}} - W_{\text{pre-trained}} \rVert /
# \lVert W_{\text{pre-trained}} \rVert` over all its parameters.


@torch.no_grad()
def own_change():
    """Per layer ``(layers,)``: the JS distance when the fine-tuned layer reads the
    pre-trained model's input to that layer."""
    hidden, inputs = pretrained.embeddings(tokens), []
    for layer in pretrained.layers:
        inputs.append(hidden)
        hidden = layer(hidden, real[:, None, None, :])
    with record_attention(fine_tuned.encoder) as record:
        for layer, x in zip(fine_tuned.encoder.layers, inputs, strict=True):
            layer(x, real[:, None, None, :])
    return mean_over_queries(js_distance(before, record.stack()))


@torch.no_grad()
def weight_change(layer_before, layer_after):
    """Relative change of a layer's weights: ||after - before|| / ||before||."""
    pairs = zip(layer_before.parameters(), layer_after.parameters(), strict=True)
    diff, norm = zip(*(((a - b).square().sum(), b.square().sum()) for b, a in pairs), strict=True)
    return float((sum(diff) / sum(norm)).sqrt())


specials = (tokens == hf_tokenizer.cls_token_id) | (tokens == hf_tokenizer.sep_token_id)


def on_specials(maps):
    """Per layer ``(layers,)``: the mean weight the real queries give [CLS] and [SEP]."""
    return mean_over_queries((maps * specials[None, :, None, None, :]).sum(-1))


per_layer = pd.DataFrame(
    {
        "JS distance": per_head.mean(1).numpy(),
        "JS distance, most changed head": per_head.max(1).values.numpy(),
        "JS distance, same input": own_change().numpy(),
        "cosine similarity": cosine.mean((1, 2)).numpy(),
        "weight change": [
            weight_change(b, a)
            for b, a in zip(pretrained.layers, fine_tuned.encoder.layers, strict=True)
        ],
        "on [CLS]/[SEP], pre-trained": on_specials(before).numpy(),
        "on [CLS]/[SEP], fine-tuned": on_specials(after).numpy(),
    },
    index=pd.RangeIndex(len(per_head), name="layer"),
)

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
layers = per_layer.index.to_numpy()
axes[0].plot(layers, per_head.numpy(), "o", color="C0", alpha=0.35, ms=4)
axes[0].plot([], [], "o", color="C0", alpha=0.35, ms=4, label="one head")
axes[0].plot(layers, per_layer["JS distance"], "-o", color="C3", label="mean of the 12 heads")
axes[0].plot(layers, per_layer["JS distance, same input"], "--s", color="C2", label="same input")
axes[0].set_xlabel("layer")
axes[0].set_ylabel("Jensen-Shannon distance (bits)")
axes[0].set_title("Pre-trained vs fine-tuned attention rows")
axes[0].set_ylim(bottom=0)
axes[0].legend()
image = axes[1].imshow(per_head.numpy(), cmap="viridis", aspect="auto", vmin=0)
axes[1].set_xlabel("head")
axes[1].set_ylabel("layer")
axes[1].set_xticks(range(per_head.shape[1]))
axes[1].set_title("Per head (mean over the queries)")
fig.colorbar(image, ax=axes[1], label="Jensen-Shannon distance (bits)")
plt.show()

change, own = per_layer["JS distance"], per_layer["JS distance, same input"]
key_figure("JS distance, last layer", change.iloc[-1])
key_figure("JS distance with the same input, largest over layers", own.max())
drop = per_layer["on [CLS]/[SEP], pre-trained"] - per_layer["on [CLS]/[SEP], fine-tuned"]
key_figure("drop of attention on [CLS]/[SEP], last layer", drop.iloc[-1])
per_layer.round(3)

# %%
# What the figure and the table show (the ranges quoted are those of seeds
# 0-2 with one and two threads, which gave the same numbers):
#
# - **The change grows with depth**, as Kovaleva et al. found: layer 0's
#   attention barely moves (a mean distance of 0.014-0.016 bits), and the
#   distance rises layer after layer to its largest in one of the last two
#   layers (which one varies with the seed; 0.35-0.44 bits in the last
#   layer). The cosine similarity of the flattened maps tells the same story.
# - **But mostly by compounding.** Every layer's weights moved by about the
#   same small fraction (the ``weight change`` column), and run on the
#   pre-trained model's input, each fine-tuned layer attends almost as
#   before (the dashed line: at most 0.043-0.057 bits in any layer). A deep
#   layer's maps change because its input carries every change below it.
#   Kovaleva et al.'s observation holds here, but it does not mean that
#   fine-tuning rewrote the last layers more than the first: measured in the
#   weights, it did not.
# - **Where the attention went:** pre-trained BERT parks much of its
#   attention on ``[CLS]`` and ``[SEP]`` — a "no-op" that Clark et al. (2019,
#   "What Does BERT Look At?", arXiv:1906.04341) described — and after
#   fine-tuning the upper layers park less of it and read the words more
#   (the last two columns; in the last layer the share fell by 0.11-0.22).
#
# The head that changed most, on one held-out review, before and after:

layer, head = divmod(int(per_head.argmax()), per_head.shape[1])
review = 0
n_tokens = int(real[review].sum())
labels = hf_tokenizer.convert_ids_to_tokens(tokens[review, :n_tokens])
fig, axes = plt.subplots(1, 2, figsize=(12, 5.4), layout="constrained")
for ax, maps, name in ((axes[0], before, "pre-trained"), (axes[1], after, "fine-tuned")):
    plot_attention(
        maps[layer, review, head, :n_tokens, :n_tokens],
        labels,
        labels,
        ax=ax,
        vmax=1,
        annotate=False,
        title=f"{name}: layer {layer}, head {head}",
    )
fig.suptitle(f"{held_out[review]!r} ({test['label'][review]})")
plt.show()

# %%
# Checks
# ------
#
# The thresholds leave room for the spread measured over seeds 0-2 with one
# and two threads (given in the comments), and fail if the claims above are
# false.

# fine-tuning beats training from scratch on the same few reviews, by far (0.225-0.285)
assert ft_accuracy > scratch_accuracy + 0.15, results
# the pre-trained features alone are far above chance, 1/3 (0.777-0.810)
assert frozen_accuracy > 0.65, results
# the whole model fine-tuned beats retraining its top layers (by 0.06-0.135)
assert ft_accuracy > top_accuracy + 0.02 and ft_accuracy > 0.9, results
# attention changes little in layer 0 (0.014-0.016 bits), far more in the last two
# layers (at least 0.35), and grows from layer to layer up to layer 4 (steps >= 0.06)
assert change.iloc[0] < 0.05 and change.iloc[-2:].min() > 5 * change.iloc[0], per_layer
assert (np.diff(change.iloc[:5]) > 0).all(), per_layer
# ... mostly through the input: each layer's own change is small (0.043-0.057 at most)
assert own.max() < 0.1 and own.max() < change.iloc[-2:].min() / 3, per_layer
# ... while all layers' weights moved by similar fractions (largest / smallest < 1.5)
weights = per_layer["weight change"]
assert weights.max() < 2 * weights.min(), per_layer
# negations are where fine-tuning pays (lead 0.25-0.37); frozen features are much
# weaker on negations and contrasts than on the other reviews (by 0.26-0.38)
assert negation_gain > 0.15, by_group
frozen_by_group = by_group["frozen + regression"]
assert frozen_by_group["neither"] > frozen_by_group[["negated", "contrast"]].max() + 0.15
# the last layer parks less attention on [CLS]/[SEP] after fine-tuning (0.106-0.220)
assert drop.iloc[-1] > 0.05, per_layer
print("all checks passed")
