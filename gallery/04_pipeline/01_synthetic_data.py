"""
Synthetic data and validation
=============================

Every project starts with a table, and every table must be checked before a
model sees it. This chapter works on data we generate ourselves: nothing to
download, any size we like, and — the real reason — a **known ground truth**,
so that later pages can measure whether a model (and its attention) found what
is really there. This tutorial generates the seed notebook's table of
tokenized sentences with :func:`attnlib.data.synthetic.generate_synthetic_data`,
saves it as CSV and JSON and reads it back unchanged, validates it against a
written schema with :func:`attnlib.data.frames.validate_dataframe` (and breaks
it on purpose four ways to see the errors), summarises and plots it, and then
meets the corpus the rest of the chapter uses: movie reviews from
:func:`attnlib.data.synthetic.sentiment_corpus`, whose labels and the words
that decide them are recorded for every review.
"""

import tempfile
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from attnlib.data.frames import (
    DataValidationError,
    load_frame,
    numeric_summary,
    save_frame,
    validate_dataframe,
)
from attnlib.data.synthetic import (
    SENTIMENT_LABELS,
    SENTIMENT_LEXICON,
    generate_synthetic_data,
    sentiment_corpus,
)
from attnlib.report import key_figure
from attnlib.training import seed_everything

SEED = seed_everything()  # $ATTNLIB_SEED, else 0: seeds Python, NumPy and PyTorch

# %%
# Why synthetic data
# ------------------
#
# Real corpora need a download, a licence and a long cleaning step, and —
# more to the point for a site about attention — nobody knows which words a
# human annotator actually relied on. A generator avoids all three problems:
#
# - **no download**: the data is made from a seed in a fraction of a second,
#   so the site builds offline and every number on it is reproducible;
# - **known ground truth**: the generator knows its own rules (how token ids
#   are distributed, which words decide a review's label), so we can check a
#   model's answer *and its reasons*;
# - **any size**: a hundred rows for a unit test, a hundred thousand for a
#   learning curve, with the same call.
#
# The first generator is the one of the seed notebook: sentences already
# turned into numbers (token ids), with a numerical, a categorical and a
# time-series field next to them — the shape of a typical logged data set.

sentences = generate_synthetic_data(
    num_sentences=2000, vocab_size=1000, max_length=30, seed=SEED, min_length=3
)
print(f"{len(sentences)} rows, columns {list(sentences.columns)}")
print(sentences.dtypes.to_string())
sentences.head(6)

# %%
# The columns:
#
# - ``id``: the primary key, ``0 .. 1999``; every row has its own.
# - ``tokens``: the sentence as token ids separated by spaces. Ids ``0-3`` are
#   reserved for ``<pad>``, ``<bos>``, ``<eos>`` and ``<unk>`` (as in
#   :class:`attnlib.data.text.Vocabulary`), so words start at ``4``. Id
#   :math:`4 + r` is drawn with probability proportional to :math:`1/(r+1)`:
#   a few ids are very frequent and most are rare, as words are (Zipf's law).
#   It is stored as a string so that CSV and JSON keep it exactly.
# - ``length``: the number of tokens, uniform in ``[3, 30]``.
# - ``score``: a numerical field, ``0.1 * length`` plus standard normal noise.
# - ``category``: a categorical field, ``news``, ``review`` or ``dialogue``.
# - ``timestamp``: the time-series field; each row is logged 1 to 60 minutes
#   after the previous one, starting on 2024-01-01.
#
# Two columns describe the same thing twice (``tokens`` and ``length``),
# which gives a first consistency check for free:

token_lists = sentences["tokens"].str.split()
lengths_agree = bool((token_lists.str.len() == sentences["length"]).all())
all_ids = np.concatenate(token_lists.map(lambda ts: np.array(ts, dtype=int)).to_numpy())
print(f"every 'length' equals the number of ids in 'tokens': {lengths_agree}")
print(f"token ids range from {all_ids.min()} to {all_ids.max()} (reserved: 0-3)")

# %%
# Saving and loading: the same table back
# ---------------------------------------
#
# :func:`attnlib.data.frames.save_frame` writes CSV (no index column) or JSON
# (a list of records, dates in ISO 8601), picked by the file's suffix.
# :func:`attnlib.data.frames.load_frame` reads it back; given the schema, it
# reads the string columns as strings (so ``"0012"`` or ``"12 5 7"`` are
# never turned into numbers) and parses the date column, as
# ``datetime64[ns]`` like the generator's. We write both formats into a
# temporary directory, which disappears at the end, and compare what comes
# back with ``pandas.testing.assert_frame_equal``: same columns, same dtypes,
# same values, compared exactly (``check_exact=True``): both files give back
# every bit. (For JSON that takes pandas' ``precise_float`` parser, which
# ``load_frame`` uses; the default one reads some decimals one unit off in the
# last binary place.)

schema = {
    "id": "int",
    "tokens": "str",
    "length": "int",
    "score": "float",
    "category": "str",
    "timestamp": "datetime",
}
workdir = tempfile.TemporaryDirectory()
tmp = Path(workdir.name)

round_trips = {}
for suffix in ("csv", "json"):
    path = save_frame(sentences, tmp / f"sentences.{suffix}")
    back = load_frame(path, schema)
    # raises on any difference, dtypes included
    pd.testing.assert_frame_equal(back, sentences, check_exact=True)
    round_trips[suffix] = {
        "file": path.name,
        "size (kB)": round(path.stat().st_size / 1000, 1),
        "timestamp dtype read": str(back["timestamp"].dtype),
        "same dtypes": back.dtypes.equals(sentences.dtypes),
        "scores bit-identical": int((back["score"] == sentences["score"]).sum()),
        "assert_frame_equal": "passed",
    }
print("\n".join((tmp / "sentences.csv").read_text().splitlines()[:2]))
print("\n".join((tmp / "sentences.json").read_text().splitlines()[:9]), "\n ...")
pd.DataFrame(round_trips).T

# %%
# Validation against a schema
# ---------------------------
#
# Before training on a table, state what it must look like and check it:
# the expected columns and the kind of value in each, a unique primary key,
# and no missing values in the fields the model needs. The schema above is
# that statement, written as a plain ``dict``;
# :func:`attnlib.data.frames.validate_dataframe` checks it. It returns the
# table unchanged when everything holds, so it chains:

loaded = load_frame(tmp / "sentences.csv", schema)
validated = validate_dataframe(loaded, schema, key="id")
print(f"the loaded table passes: {len(validated)} rows, key 'id' unique, no missing values")

# %%
# Broken on purpose
# -----------------
#
# A validator is only useful if its errors say exactly what is wrong. We
# damage four copies of the table, one way each, as real pipelines do: a
# column dropped by an upstream change, a value typed by hand into a numeric
# column, a row exported twice, an empty cell. Each raises
# :class:`attnlib.data.frames.DataValidationError` (a ``ValueError``) whose
# message names the column and the rows at fault. The hand-typed values are
# a word and a number typed as text: a digit string such as ``"12"`` in an
# ``int`` column is text, not a number, and is reported too.

broken = {}
broken["missing column"] = ("score", sentences.drop(columns="score"))
wrong_type = sentences.astype({"length": object})
wrong_type.loc[3, "length"] = "seven"
wrong_type.loc[9, "length"] = "12"  # a number, but stored as text
broken["wrong dtype"] = ("length", wrong_type)
duplicated_key = sentences.copy()
duplicated_key.loc[5, "id"] = 4  # row 5 now claims row 4's key
broken["duplicate id"] = ("id", duplicated_key)
missing_value = sentences.copy()
missing_value.loc[7, "category"] = None
broken["missing value"] = ("category", missing_value)

caught = {}
for name, (column, frame) in broken.items():
    try:
        validate_dataframe(frame, schema, key="id")
    except DataValidationError as err:
        caught[name] = (column, err)
        print(f"{name}:\n  {err}\n")

# %%
# Every problem is collected before raising, so a table broken in all four
# ways at once gets one error with four lines, not four rounds of fixing:

all_broken = duplicated_key.drop(columns="score").astype({"length": object})
all_broken.loc[3, "length"] = "seven"
all_broken.loc[9, "length"] = "12"
all_broken.loc[7, "category"] = None
try:
    validate_dataframe(all_broken, schema, key="id")
except DataValidationError as err:
    combined_problems = err.problems
    print(err)

# %%
# A malformed file
# ----------------
#
# Files break too. Here the fourth line of a CSV file gets an extra field (a
# stray comma is enough). :func:`attnlib.data.frames.load_frame` refuses it
# with a ``ValueError`` naming the file and the line, instead of silently
# shifting the columns:

csv_lines = (tmp / "sentences.csv").read_text().splitlines()[:6]
csv_lines[3] += ",oops"  # line 4 of the file: one field too many
bad_file = tmp / "broken.csv"
bad_file.write_text("\n".join(csv_lines) + "\n")
try:
    load_frame(bad_file, schema)
except ValueError as err:
    malformed_message = str(err)
print("\n".join(csv_lines[2:5]))
print("\n" + malformed_message.replace(str(tmp), "<tmpdir>"))

# %%
# Summary statistics
# ------------------
#
# :func:`attnlib.data.frames.numeric_summary` gives the count, mean, spread
# and quartiles of every numeric column. Against the generator's rules:
# ``length`` is uniform over the 28 integers 3 to 30, so its mean is
# :math:`(3+30)/2 = 16.5` and its variance :math:`(28^2 - 1)/12 = 65.25`
# (standard deviation about 8.08); ``score`` has mean
# :math:`0.1 \times 16.5 = 1.65` and a standard deviation of
# :math:`\sqrt{1 + 0.01 \,\mathrm{var}(\text{length})} = \sqrt{1.6525} \approx 1.29`.
# With 2,000 rows, the standard error of the mean of ``length`` is
# :math:`8.08 / \sqrt{2000} \approx 0.18`: the checks at the end allow four.

summary = numeric_summary(sentences)
length_mean = key_figure("mean length", summary.loc["length", "mean"])
score_std = key_figure("std of score", summary.loc["score", "std"])
summary.round(3)

# %%
# Looking at the data
# -------------------
#
# Three views, each checking one rule of the generator:
#
# - **lengths by category**: lengths are uniform and independent of the
#   category, so the three histograms are flat and alike;
# - **token frequency against rank**, on log-log axes: Zipf's law
#   :math:`f(r) \propto 1/r` is a straight line of slope :math:`-1` (the
#   slope fitted over the 100 most frequent ids stayed between -1.004 and
#   -0.993 over seeds 0-2 and 1-2 threads);
# - **sentences per day**: a row every 30.5 minutes on average gives about
#   :math:`1440 / 30.5 \approx 47` rows per day.

id_counts = pd.Series(all_ids).value_counts()  # sorted, most frequent first
ranks = np.arange(1, len(id_counts) + 1)
top = slice(0, 100)  # fit where counts are large enough to be reliable
zipf_slope, zipf_intercept = np.polyfit(np.log(ranks[top]), np.log(id_counts.to_numpy()[top]), 1)
per_day = sentences.set_index("timestamp").resample("D").size()
full_days = per_day.iloc[:-1]  # the last day is cut off by the end of the data
gaps_min = sentences["timestamp"].diff().dt.total_seconds().dropna() / 60

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
bins = np.arange(2.5, 31.5, 1)
for category in ("news", "review", "dialogue"):
    axes[0].hist(
        sentences.loc[sentences["category"] == category, "length"],
        bins=bins,
        histtype="step",
        linewidth=1.5,
        label=category,
    )
axes[0].set_xlabel("sentence length (tokens)")
axes[0].set_ylabel("number of sentences")
axes[0].set_title("Lengths by category")
axes[0].set_ylim(0, 50)
axes[0].legend(title="category", ncols=3, loc="upper center", fontsize="small")

axes[1].loglog(ranks, id_counts.to_numpy(), ".", markersize=3, label="observed")
axes[1].loglog(
    ranks, np.exp(zipf_intercept) * ranks**zipf_slope, "r-", label=f"fit, slope {zipf_slope:.2f}"
)
axes[1].set_xlabel("rank of token id")
axes[1].set_ylabel("count in the corpus")
axes[1].set_title("Zipf: frequency against rank")
axes[1].legend()

axes[2].plot(full_days.index, full_days.to_numpy(), marker="o", markersize=3)
axes[2].axhline(1440 / 30.5, color="grey", ls="--", lw=1, label="expected 47.2")
axes[2].set_xlabel("day (2024)")
axes[2].xaxis.set_major_formatter(mdates.DateFormatter("%b %d"))
axes[2].set_ylabel("sentences logged")
axes[2].set_title("Sentences per day")
axes[2].tick_params(axis="x", labelrotation=45)
axes[2].legend()
fig.suptitle("generate_synthetic_data(2000, vocab_size=1000, max_length=30)")
plt.show()
key_figure("Zipf slope over the 100 most frequent ids (generator: -1)", zipf_slope)
key_figure("mean gap in minutes (generator: 30.5)", gaps_min.mean(), fmt="{:.2f}")
print(f"{full_days.mean():.1f} rows per day (generator: 47.2)")

# %%
# The sentiment corpus
# --------------------
#
# The rest of the chapter classifies movie reviews as ``negative``,
# ``neutral`` or ``positive``. :func:`attnlib.data.synthetic.sentiment_corpus`
# writes them from a small English grammar: an opinion clause such as "the
# plot was very dull", optional filler sentences with no opinion ("i had
# popcorn."), **negation** ("not dull" is positive), **intensifiers**
# ("very", "really", "extremely": they never change the label) and
# **contrast** ("X, but Y": the clause after "but" decides). The label is
# the polarity of the last opinion clause; a review without a polar adjective
# is neutral.
#
# For every review the generator also records its **evidence**: the words that
# decide the label (adjective, with its "not" and intensifier), and their
# positions in ``text.split()``. Below, the evidence words are in capitals.

reviews = sentiment_corpus(3000, seed=SEED)


def highlight(row: pd.Series) -> str:
    """The review with its evidence words in capitals."""
    words = row["text"].split()
    for position in map(int, row["evidence_positions"].split()):
        words[position] = words[position].upper()
    return " ".join(words)


plain = ~reviews[["negated", "contrast", "intensified"]].any(axis=1)
examples = {
    "plain positive": plain & (reviews["label"] == "positive"),
    "plain negative": plain & (reviews["label"] == "negative"),
    "negation": reviews["negated"] & ~reviews["contrast"] & ~reviews["intensified"],
    "intensifier": reviews["intensified"] & ~reviews["negated"] & ~reviews["contrast"],
    "contrast": reviews["contrast"],
    "neutral adjective": (reviews["label"] == "neutral") & (reviews["evidence"] != ""),
    "filler only": reviews["evidence"] == "",
}
shown = pd.DataFrame(
    [
        {"kind": kind, "review (evidence in capitals)": highlight(row), **row[cols]}
        for kind, chosen in examples.items()
        for row in [reviews[chosen].iloc[0]]
        for cols in [["label", "evidence", "evidence_positions"]]
    ]
).set_index("kind")
pd.set_option("display.max_colwidth", 120)  # whole reviews (reset at the end)
shown

# %%
# Class balance and how often each construction appears: the three classes
# are equally frequent by construction (a third neutral, the rest split
# evenly). The generator makes a polar review a contrast with probability
# 0.3 and negates each opinion clause with probability 0.3, so roughly a
# third of the polar reviews use "but" and more than a third use "not" (the
# shares in this corpus are printed below the plots) — exactly the cases
# where the *order* of the words matters, and where a model must find the
# right adjective rather than count words.

class_counts = reviews["label"].value_counts().reindex(SENTIMENT_LABELS)
class_shares = class_counts / len(reviews)
constructions = reviews.groupby("label")[["negated", "contrast", "intensified"]].mean()
constructions = constructions.reindex(SENTIMENT_LABELS)
polar = reviews["label"] != "neutral"
polar_rates = reviews.loc[polar, ["negated", "contrast", "intensified"]].mean()

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
colours = {"negative": "#d95f02", "neutral": "#7f7f7f", "positive": "#1b9e77"}
axes[0].bar(SENTIMENT_LABELS, class_counts, color=[colours[c] for c in SENTIMENT_LABELS])
for x, n in enumerate(class_counts):
    axes[0].text(x, n, f"{n} ({n / len(reviews):.0%})", ha="center", va="bottom")
axes[0].set_xlabel("label")
axes[0].set_ylabel("number of reviews")
axes[0].set_ylim(0, class_counts.max() * 1.15)
axes[0].set_title("Class balance")
x = np.arange(3)
for i, construction in enumerate(["negated", "contrast", "intensified"]):
    axes[1].bar(x + (i - 1) * 0.27, constructions[construction], width=0.27, label=construction)
axes[1].set_xticks(x, SENTIMENT_LABELS)
axes[1].set_xlabel("label")
axes[1].set_ylabel("share of reviews")
axes[1].set_title("Negation, contrast and intensifiers")
axes[1].legend()
fig.suptitle(f"sentiment_corpus({len(reviews)}, seed={SEED})")
plt.show()
key_figure("share of polar reviews negated", polar_rates["negated"])
key_figure("share of polar reviews with a contrast", polar_rates["contrast"])
constructions.round(3)

# %%
# The evidence is ground truth
# ----------------------------
#
# Two checks make the recorded evidence trustworthy. First, every evidence
# word sits at its recorded position in the text (a word may carry a comma or
# a period there). Second, the evidence alone gives the label back: reading
# each clause's adjective from the lexicon
# (``attnlib.data.synthetic.SENTIMENT_LEXICON``) and flipping it after "not"
# reproduces every label, with no exception. A model sees only the text; in
# chapter 6 (interpretability) we will compare where its attention goes with
# these positions.


def evidence_in_place(row: pd.Series) -> bool:
    words = row["text"].split()
    found = [words[int(p)].rstrip(",.") for p in row["evidence_positions"].split()]
    return found == row["evidence"].split()


polarity = {
    **dict.fromkeys(SENTIMENT_LEXICON["positive"], 1),
    **dict.fromkeys(SENTIMENT_LEXICON["negative"], -1),
}


def label_from_evidence(evidence: str) -> str:
    """The label the grammar's rule gives: each clause's adjective, flipped by "not"."""
    clause_polarities, negate = [], False
    for word in evidence.split():
        if word == "not":
            negate = True
        elif word in polarity:
            clause_polarities.append(-polarity[word] if negate else polarity[word])
            negate = False
    if not clause_polarities:
        return "neutral"
    if len(set(clause_polarities)) > 1:
        return "disagreeing clauses"
    return "positive" if clause_polarities[0] > 0 else "negative"


in_place = reviews.apply(evidence_in_place, axis=1)
rule_labels = reviews["evidence"].map(label_from_evidence)
rule_accuracy = (rule_labels == reviews["label"]).mean()
evidence_lengths = reviews["evidence"].str.split().str.len()
print(f"evidence words at their recorded positions: {in_place.mean():.1%} of reviews")
print(f"labels recovered from the evidence alone: {rule_accuracy:.1%}")
print(f"evidence words per review: {evidence_lengths.mean():.2f} on average, of")
print(f"{reviews['text'].str.split().str.len().mean():.1f} words per review")
pd.crosstab(reviews["label"], rule_labels, rownames=["label"], colnames=["rule on evidence"])

# %%
# Summary and checks
# ------------------
#
# - :func:`attnlib.data.synthetic.generate_synthetic_data` makes the seed's
#   table of tokenized sentences with numeric, categorical and time fields;
#   its Zipf exponent, lengths and logging rate are visible in the data.
# - CSV and JSON round trips through :func:`attnlib.data.frames.save_frame` and
#   :func:`attnlib.data.frames.load_frame` give back the same table, dtypes
#   included.
# - :func:`attnlib.data.frames.validate_dataframe` checks a written schema and
#   names the column and rows of every problem; a malformed CSV file fails
#   with its name and line.
# - The sentiment corpus is balanced, uses negation and contrast often, and
#   records the evidence for each label, which recovers every label.

workdir.cleanup()
pd.reset_option("display.max_colwidth")

assert lengths_agree and all_ids.min() >= 4 and all_ids.max() <= 999
assert set(round_trips) == {"csv", "json"}
assert all(r["same dtypes"] for r in round_trips.values())
assert all(r["timestamp dtype read"] == "datetime64[ns]" for r in round_trips.values())
assert all(r["scores bit-identical"] == len(sentences) for r in round_trips.values())
assert set(caught) == set(broken)  # every broken copy raised
for name, (column, err) in caught.items():
    assert len(err.problems) == 1 and f"'{column}'" in err.problems[0], (name, err)
assert "2 bad value(s) ('seven', '12') in rows [3, 9]" in str(caught["wrong dtype"][1])
assert "rows [4, 5]" in str(caught["duplicate id"][1])
assert "rows [7]" in str(caught["missing value"][1])
assert len(combined_problems) == 4
assert "broken.csv" in malformed_message and "line 4" in malformed_message
# Against the generator's rules, with bars of four standard errors of a mean over the rows
# (uniform lengths 3..30: variance (28^2 - 1) / 12; uniform gaps 1..60 min: (60^2 - 1) / 12).
length_se = np.sqrt((28**2 - 1) / 12 / len(sentences))
gap_se = np.sqrt((60**2 - 1) / 12 / len(gaps_min))
assert abs(length_mean - 16.5) < 4 * length_se, length_mean
assert abs(score_std - np.sqrt(1 + 0.01 * (28**2 - 1) / 12)) < 0.1, score_std
assert abs(gaps_min.mean() - 30.5) < 4 * gap_se, gaps_min.mean()
# Zipf exponent -1 (generator) over the top 100 ranks
assert -1.1 < zipf_slope < -0.9, zipf_slope
assert (abs(class_shares - 1 / 3) < 0.01).all()  # 1000 / 1000 / 1000 by construction
assert 0.3 < polar_rates["negated"] < 0.5, polar_rates
assert 0.25 < polar_rates["contrast"] < 0.35, polar_rates  # probability 0.3 in the generator
assert constructions.loc["neutral"].eq(0).all()  # neutral reviews use none of them
assert in_place.all()  # every evidence word at its recorded position
assert rule_accuracy == 1.0
