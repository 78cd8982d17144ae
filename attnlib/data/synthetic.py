"""Generated data sets for the data chapters: nothing is downloaded, and every
generator is deterministic given its ``seed`` (a :func:`numpy.random.default_rng`
of its own, never the global random state).

- :func:`generate_synthetic_data`: tokenized sentences as numbers, with a
  numerical, a categorical and a time-series field (a table to clean, validate
  and save);
- :func:`sentiment_corpus`: movie reviews from a small English grammar with
  three labels and the words that decide each label;
- :func:`translation_corpus`: English paired with a toy language whose word
  order and agreement differ, with the true word alignment of every pair.

Sentiment grammar
-----------------
A review is one *opinion sentence*, plus up to two *filler* sentences with no
sentiment before or after it ("i saw it on sunday.", "the film is two hours
long."); some neutral reviews are one to three filler sentences only. The
opinion sentence may start with a neutral opener ("overall,", "to be honest,")
and is one or more *clauses*, each about an aspect of the film:

=================  ==========================================================
clause             ``the plot was [not] [very] dull``,
                   ``the plot is ...``, ``the plot felt ...`` /
                   ``the plot did not feel ...``,
                   ``i found the plot [very] dull`` /
                   ``i did not find the plot [very] dull``,
                   ``it had a [very] dull plot`` / ``it did not have ...``
negation           ``not`` flips the polarity of its clause:
                   "not good" is negative, "not dull" is positive
intensifier        ``very``, ``really``, ``extremely``: never change the label
``X and Y``        clauses of the same polarity
``X, but Y``       contrast: the clause after ``but`` decides the label
neutral            ``average``, ``ordinary``, ``okay``, ``standard``: a neutral
                   review has only neutral clauses (never negated nor
                   intensified) or only filler
=================  ==========================================================

The rule, in one line: **the label is the polarity of the last opinion clause**
(every clause of a review without ``but`` agrees; with ``but`` the clause after
it decides), and a review without a polar adjective is neutral. Negation and
contrast make word order matter, so a bag-of-words model cannot be perfect.

Translation grammar
-------------------
English is subject-verb-object with adjectives before the noun; the toy target
language is subject-object-verb with adjectives after the noun (several
adjectives in mirror order: the one nearest the noun stays nearest), and an
adverb just before the verb:

=======================  ==================================  =====================
                         English                             target
=======================  ==================================  =====================
noun phrase              det adj1 adj2 noun                  det noun adj2 adj1
sentence                 S V [O] [adv]                       S [O] [adv] V
plural noun              dog → dogs                          kano → kanoi (``-i``)
adjective of a plural    big (invariable)                    grano → granoi (``-i``)
verb, singular subject   the dog sees                        vida (``-a``)
verb, plural subject     the dogs see                        viden (``-en``)
determiners              the, a/an (sg.), some (pl.)         lo, un, su
=======================  ==================================  =====================

Example: "the big dog sees some small cats often" ↔ "lo kano grano su mizui
pikui sempe vida", alignment ``0-0 1-2 2-1 3-7 4-3 5-5 6-4 7-6``. Every word
has exactly one translation, so the alignment is a permutation (one-to-one);
"an" is the form of "a" before a vowel. The lexicon is :data:`TRANSLATION_LEXICON`.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real

import numpy as np
import pandas as pd

from .._checks import check_positive_int

__all__ = [
    "SENTIMENT_LABELS",
    "SENTIMENT_LEXICON",
    "TRANSLATION_LEXICON",
    "TRANSLATION_WORD_CLASSES",
    "generate_synthetic_data",
    "sentiment_corpus",
    "translation_corpus",
]

# ---------------------------------------------------------------------------
# shared checks
# ---------------------------------------------------------------------------


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    """One of ``options``, uniformly (faster than ``rng.choice`` for one item)."""
    return options[int(rng.integers(len(options)))]


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise TypeError(f"seed: expected a non-negative int, got {type(seed).__name__} {seed!r}")
    if seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed}")
    return int(seed)


def _check_int_at_least(value: object, name: str, low: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__} {value!r}")
    if value < low:
        raise ValueError(f"{name}: expected an int >= {low}{what}, got {value}")
    return value


def _check_fraction(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value <= 1:
        raise ValueError(f"{name}: expected a number in [0, 1], got {value!r}")
    return float(value)


# ---------------------------------------------------------------------------
# tokenized sentences as numbers
# ---------------------------------------------------------------------------

_CATEGORIES = ("news", "review", "dialogue")
_FIRST_WORD_ID = 4  # 0-3: <pad>, <bos>, <eos>, <unk> (attnlib.data.text.SPECIALS)
_START = np.datetime64("2024-01-01T00:00", "ns")


def generate_synthetic_data(
    num_sentences: int,
    vocab_size: int,
    max_length: int,
    *,
    seed: int = 0,
    min_length: int = 3,
) -> pd.DataFrame:
    """A synthetic data set of tokenized sentences represented as numerical
    sequences, with numerical, categorical and time-series fields.

    Token ids are drawn from ``4 .. vocab_size - 1`` (ids 0-3 are reserved for
    ``<pad>``, ``<bos>``, ``<eos>`` and ``<unk>``) with a Zipf-like frequency:
    id ``4 + r`` has probability proportional to ``1 / (r + 1)``, so a few ids
    are frequent and most are rare (a ``min_freq`` cut of a vocabulary matters).

    Parameters
    ----------
    num_sentences : int
        Number of rows.
    vocab_size : int
        At least 5 (the 4 reserved ids and one word).
    max_length : int
        Sentence lengths are uniform in ``[min_length, max_length]``.
    seed : int
        Seed of the random generator: the same seed gives the same table.
    min_length : int
        At least 1 and at most ``max_length``.

    Returns
    -------
    pandas.DataFrame
        One row per sentence, columns in this order:

        - ``id`` (int64): ``0 .. num_sentences - 1``, the primary key;
        - ``tokens`` (str): the token ids separated by single spaces, e.g.
          ``"12 5 7"`` (a string, so CSV and JSON round trips are exact);
        - ``length`` (int64): the number of tokens;
        - ``score`` (float64): a numerical field, ``0.1 * length`` plus
          standard normal noise, rounded to 3 decimals;
        - ``category`` (str): a categorical field, one of ``"news"``,
          ``"review"``, ``"dialogue"``;
        - ``timestamp`` (datetime64[ns]): the time-series field, from
          2024-01-01 00:00, each row 1 to 60 minutes after the previous one.

    Examples
    --------
    >>> df = generate_synthetic_data(3, 50, 6, seed=0)
    >>> list(df.columns)
    ['id', 'tokens', 'length', 'score', 'category', 'timestamp']
    >>> df["tokens"].tolist()
    ['4 4 23 35 11 17', '9 38 24 4 28', '4 17 4 28 9']
    >>> df["length"].tolist()
    [6, 5, 5]
    """
    check_positive_int(num_sentences, "num_sentences")
    _check_int_at_least(vocab_size, "vocab_size", _FIRST_WORD_ID + 1, " (4 reserved ids + 1)")
    check_positive_int(min_length, "min_length")
    check_positive_int(max_length, "max_length")
    if max_length < min_length:
        raise ValueError(
            f"max_length: expected at least min_length ({min_length}), got {max_length}"
        )
    rng = np.random.default_rng(_check_seed(seed))

    lengths = rng.integers(min_length, max_length + 1, size=num_sentences)
    ids = np.arange(_FIRST_WORD_ID, vocab_size)
    weights = 1.0 / np.arange(1, len(ids) + 1)
    flat = rng.choice(ids, size=int(lengths.sum()), p=weights / weights.sum())
    sentences = np.split(flat, np.cumsum(lengths)[:-1])
    score = np.round(0.1 * lengths + rng.normal(size=num_sentences), 3)
    category = rng.choice(_CATEGORIES, size=num_sentences)
    minutes = np.concatenate([[0], np.cumsum(rng.integers(1, 61, size=num_sentences - 1))])
    return pd.DataFrame(
        {
            "id": np.arange(num_sentences, dtype=np.int64),
            "tokens": [" ".join(map(str, s.tolist())) for s in sentences],
            "length": lengths.astype(np.int64),
            "score": score.astype(np.float64),
            "category": [str(c) for c in category],
            "timestamp": pd.Series(
                _START + minutes.astype("timedelta64[m]"), dtype="datetime64[ns]"
            ),
        }
    )


# ---------------------------------------------------------------------------
# sentiment
# ---------------------------------------------------------------------------

SENTIMENT_LABELS = ("negative", "neutral", "positive")
"""The labels of :func:`sentiment_corpus`, in this order."""

SENTIMENT_LEXICON: dict[str, tuple[str, ...]] = {
    "positive": (
        "good", "great", "excellent", "wonderful", "brilliant", "superb", "delightful",
        "charming", "moving", "gripping", "clever", "beautiful", "funny", "stunning",
        "enjoyable",
    ),
    "negative": (
        "bad", "dull", "boring", "awful", "terrible", "weak", "poor", "clumsy", "tedious",
        "predictable", "messy", "bland", "forgettable", "painful", "lifeless",
    ),
    "neutral": ("average", "ordinary", "okay", "standard"),
    "intensifier": ("very", "really", "extremely"),
    "negator": ("not",),
    "aspect": (
        "plot", "acting", "music", "ending", "dialogue", "cast", "script", "pacing", "story",
        "soundtrack", "direction",
    ),
}  # fmt: skip
"""The words of the sentiment grammar by role (adjectives of each polarity,
intensifiers, the negator and the aspects of a film a clause is about)."""

_OPENERS = (("overall",), ("honestly",), ("to", "be", "honest"), ("in", "my", "opinion"))
_FILLERS = (
    "i saw it on sunday",
    "the film is two hours long",
    "i watched it with my sister",
    "it came out last year",
    "we went to the late show",
    "the cinema was full",
    "i bought the tickets online",
    "it is based on a novel",
    "my friend recommended it",
    "i had popcorn",
    "it was shown in the small theatre",
    "the director made it in france",
)
_TEMPLATES = ("was", "is", "felt", "found", "had")
_COUNT_ASPECTS = ("plot", "ending", "cast", "script", "story", "soundtrack")  # "it had a ..."
_P_NEGATED = 0.3  # per polar clause
_P_INTENSIFIED = 0.3  # per polar clause
_P_CONTRAST = 0.3  # per non-neutral review (needs max_clauses >= 2)
_P_NEUTRAL_BEFORE_BUT = 0.25  # a clause before "but" is neutral, not opposite
_P_OPENER = 0.2
_P_FILLER_ONLY = 0.4  # per neutral review

# A sentence is a list of (word, role): role "" for words that do not decide the
# label, "evidence" for those that do; "," and "." are separate words until _render.
_Words = list[tuple[str, str]]


def _article(next_word: str) -> str:
    return "an" if next_word[0] in "aeiou" else "a"


def _clause(
    rng: np.random.Generator, adjective: str, negated: bool, intensifier: str, used: list[str]
) -> _Words:
    """One opinion clause about an aspect not in ``used`` (while there is one; the
    aspect is appended to it); the negator, intensifier and adjective are evidence."""
    phrase = ([(intensifier, "evidence")] if intensifier else []) + [(adjective, "evidence")]
    neg = [("not", "evidence")] if negated else []
    template = _pick(rng, _TEMPLATES)
    allowed = _COUNT_ASPECTS if template == "had" else SENTIMENT_LEXICON["aspect"]
    fresh = [a for a in allowed if a not in used]
    aspect = _pick(rng, fresh or allowed)
    used.append(aspect)
    if template in ("was", "is"):
        return [("the", ""), (aspect, ""), (template, ""), *neg, *phrase]
    if template == "felt":
        verb = [("did", ""), *neg, ("feel", "")] if negated else [("felt", "")]
        return [("the", ""), (aspect, ""), *verb, *phrase]
    if template == "found":
        head = (
            [("i", ""), ("did", ""), *neg, ("find", "")] if negated else [("i", ""), ("found", "")]
        )
        return [*head, ("the", ""), (aspect, ""), *phrase]
    head = [("it", ""), ("did", ""), *neg, ("have", "")] if negated else [("it", ""), ("had", "")]
    return [*head, (_article(phrase[0][0]), ""), *phrase, (aspect, "")]


def _polar_clause(
    rng: np.random.Generator, polarity: str, used: list[str], *, evidence: bool
) -> tuple[_Words, bool, bool]:
    """A clause whose *effective* polarity (after negation) is ``polarity``."""
    negated = bool(rng.random() < _P_NEGATED)
    intensifier = ""
    if rng.random() < _P_INTENSIFIED:
        intensifier = _pick(rng, SENTIMENT_LEXICON["intensifier"])
    opposite = "negative" if polarity == "positive" else "positive"
    adjective = _pick(rng, SENTIMENT_LEXICON[opposite if negated else polarity])
    words = _clause(rng, adjective, negated, intensifier, used)
    if not evidence:
        words = [(w, "") for w, _ in words]
    return words, negated, bool(intensifier)


def _neutral_clause(rng: np.random.Generator, used: list[str], *, evidence: bool) -> _Words:
    words = _clause(rng, _pick(rng, SENTIMENT_LEXICON["neutral"]), False, "", used)
    return words if evidence else [(w, "") for w, _ in words]


def _num_clauses(rng: np.random.Generator, low: int, high: int) -> int:
    """``low .. high`` clauses, each extra one half as likely as the previous."""
    if high <= low:
        return low
    weights = 0.5 ** np.arange(high - low + 1)
    return low + int(rng.choice(len(weights), p=weights / weights.sum()))


def _join(clauses: list[_Words], word: str) -> _Words:
    out: _Words = list(clauses[0])
    for clause in clauses[1:]:
        out += [(word, ""), *clause]
    return out


def _opinion(
    rng: np.random.Generator, label: str, max_clauses: int
) -> tuple[_Words, bool, bool, bool]:
    """The opinion sentence of a review with this label: (words, negated,
    contrast, intensified)."""
    used: list[str] = []  # aspects, each at most once per review
    if label == "neutral":
        n = _num_clauses(rng, 1, max_clauses)
        clauses = [_neutral_clause(rng, used, evidence=True) for _ in range(n)]
        return _join(clauses, "and"), False, False, False
    contrast = max_clauses >= 2 and bool(rng.random() < _P_CONTRAST)
    opposite = "negative" if label == "positive" else "positive"
    negated = intensified = False
    before: list[_Words] = []
    if contrast:
        for _ in range(_num_clauses(rng, 1, max_clauses - 1)):
            if rng.random() < _P_NEUTRAL_BEFORE_BUT:
                before.append(_neutral_clause(rng, used, evidence=False))
                continue
            words, neg, inten = _polar_clause(rng, opposite, used, evidence=False)
            before.append(words)
            negated, intensified = negated or neg, intensified or inten
    deciding: list[_Words] = []
    for _ in range(_num_clauses(rng, 1, max_clauses - len(before))):
        words, neg, inten = _polar_clause(rng, label, used, evidence=True)
        deciding.append(words)
        negated, intensified = negated or neg, intensified or inten
    sentence = _join(deciding, "and")
    if before:
        sentence = _join(before, "and") + [(",", ""), ("but", "")] + sentence
    return sentence, negated, contrast, intensified


def _render(sentences: list[_Words]) -> tuple[str, str, str]:
    """Text, evidence words and evidence positions (indices into ``text.split()``)."""
    words: list[str] = []
    evidence: list[str] = []
    positions: list[str] = []
    for sentence in sentences:
        for word, role in [*sentence, (".", "")]:
            if word in (",", "."):
                words[-1] += word
                continue
            if role:
                evidence.append(word)
                positions.append(str(len(words)))
            words.append(word)
    return " ".join(words), " ".join(evidence), " ".join(positions)


def _filler(rng: np.random.Generator, n: int) -> list[_Words]:
    chosen = rng.permutation(len(_FILLERS))[:n]
    return [[(w, "") for w in _FILLERS[i].split()] for i in chosen]


def _review(rng: np.random.Generator, label: str, max_clauses: int) -> dict[str, object]:
    if label == "neutral" and rng.random() < _P_FILLER_ONLY:
        text, evidence, positions = _render(_filler(rng, int(rng.integers(1, 4))))
        flags = (False, False, False)
    else:
        sentence, *flags = _opinion(rng, label, max_clauses)
        if rng.random() < _P_OPENER:
            opener = _OPENERS[int(rng.integers(len(_OPENERS)))]
            sentence = [(w, "") for w in opener] + [(",", "")] + sentence
        fillers = _filler(rng, int(rng.choice(3, p=[0.5, 0.35, 0.15])))
        cut = int(rng.integers(len(fillers) + 1))
        text, evidence, positions = _render([*fillers[:cut], sentence, *fillers[cut:]])
    return {
        "text": text,
        "label": label,
        "evidence": evidence,
        "evidence_positions": positions,
        "negated": flags[0],
        "contrast": flags[1],
        "intensified": flags[2],
    }


def sentiment_corpus(
    num_reviews: int,
    *,
    seed: int = 0,
    neutral_fraction: float = 1 / 3,
    max_clauses: int = 2,
) -> pd.DataFrame:
    """Short movie reviews from a small English grammar, labelled
    ``"negative"``, ``"neutral"`` or ``"positive"``, with the words that decide
    each label.

    The grammar (see the module docstring for its table) has ~15 positive and
    ~15 negative adjectives, 4 neutral ones, 11 aspects of a film, negation
    (``"the plot was not good"`` is negative, ``"not dull"`` positive),
    intensifiers (``"very"``, ``"really"``, ``"extremely"``: they never change
    the label), contrast and neutral filler sentences. **Rule:** in a contrast
    ``"X, but Y"`` the clause after ``"but"`` decides the label; clauses joined
    by ``"and"`` agree; a review with no polar adjective is neutral. The label
    is fully determined by the text, but a bag-of-words model cannot reach
    100 %: it cannot tell which adjective ``"not"`` or ``"but"`` applies to.

    Frequencies: ``round(neutral_fraction * num_reviews)`` neutral reviews,
    the rest split evenly between positive and negative (a coin decides an odd
    one), in random order.
    A neutral review is filler only (40 %) or neutral-adjective clauses. A
    polar review is a contrast with probability 0.3 (when ``max_clauses >= 2``);
    every polar clause is negated with probability 0.3 and intensified with
    probability 0.3 (so about 40 % of polar reviews use ``"not"``); a clause
    before ``"but"`` is neutral with probability 0.25, else of the opposite
    polarity. Up to two filler sentences go before or after the opinion.

    Parameters
    ----------
    num_reviews : int
        Number of rows.
    seed : int
        Seed of the random generator: the same seed gives the same table.
    neutral_fraction : float
        Fraction of neutral reviews, in ``[0, 1]``.
    max_clauses : int
        Most opinion clauses in a review (joined by ``"and"`` or ``", but"``);
        each extra clause is half as likely as the previous number. ``1``
        disables contrast.

    Returns
    -------
    pandas.DataFrame
        One row per review, columns in this order:

        - ``id`` (int64): ``0 .. num_reviews - 1``;
        - ``text`` (str): lower case, words separated by single spaces, commas
          and periods attached to the preceding word (``"good, but"``,
          ``"dull."``), one or more sentences;
        - ``label`` (str): one of :data:`SENTIMENT_LABELS`;
        - ``evidence`` (str): the words that decide the label, space-separated,
          without punctuation, in text order: the adjective with its negator
          and intensifier (``"not good"``, ``"very dull"``), of every deciding
          clause (for a contrast only the clause after ``"but"``); the neutral
          adjective(s) of a neutral review, ``""`` for a filler-only review;
        - ``evidence_positions`` (str): their positions, space-separated,
          0-based indices into ``text.split()`` (where a word may carry a
          trailing comma or period);
        - ``negated``, ``contrast``, ``intensified`` (bool): whether the review
          uses ``"not"``, ``"but"``, an intensifier (anywhere in it).

    Examples
    --------
    >>> row = sentiment_corpus(1, seed=3).iloc[0]
    >>> row["text"]
    'i found the cast very poor, but the dialogue was not bad.'
    >>> row["label"], row["evidence"], row["evidence_positions"]
    ('positive', 'not bad', '10 11')
    """
    check_positive_int(num_reviews, "num_reviews")
    neutral_fraction = _check_fraction(neutral_fraction, "neutral_fraction")
    check_positive_int(max_clauses, "max_clauses")
    rng = np.random.default_rng(_check_seed(seed))

    num_neutral = int(round(neutral_fraction * num_reviews))
    num_polar = num_reviews - num_neutral
    num_positive = num_polar // 2 + int(num_polar % 2 and rng.random() < 0.5)  # odd: a coin
    num_negative = num_polar - num_positive
    labels = ["neutral"] * num_neutral + ["positive"] * num_positive + ["negative"] * num_negative
    labels = [labels[i] for i in rng.permutation(num_reviews)]
    rows = [_review(rng, label, max_clauses) for label in labels]
    df = pd.DataFrame(rows, columns=list(rows[0]))
    df.insert(0, "id", np.arange(num_reviews, dtype=np.int64))
    return df.astype({"negated": bool, "contrast": bool, "intensified": bool})


# ---------------------------------------------------------------------------
# translation
# ---------------------------------------------------------------------------

_NOUNS = {
    "dog": "kano", "cat": "mizu", "bird": "pipo", "horse": "kabu", "cow": "muka",
    "frog": "rano", "duck": "pato", "farmer": "fermo", "girl": "nela", "boy": "tuno",
    "teacher": "doka", "doctor": "medo", "king": "rego", "queen": "rena", "friend": "amiko",
    "baker": "pano", "apple": "pomo", "book": "libro", "ball": "bola", "house": "domo",
}  # fmt: skip
_ADJECTIVES = {
    "big": "grano", "small": "piku", "red": "roso", "old": "vetu", "young": "nuva",
    "happy": "felu", "black": "nero", "white": "blanku", "fast": "zipo", "lazy": "lento",
    "hungry": "famu", "clever": "sabu",
}  # fmt: skip
_TRANSITIVE = {
    "see": "vida", "chase": "kasa", "like": "gusta", "follow": "sega", "find": "trova",
    "help": "yuda", "hear": "oda", "visit": "vizita",
}  # fmt: skip
_INTRANSITIVE = {"sleep": "dorma", "run": "kura", "sing": "kanta", "swim": "nada", "dance": "bala"}
_ADVERBS = {"often": "sempe", "slowly": "lanu", "today": "oje", "quietly": "silu"}
_DETERMINERS = {"the": "lo", "a": "un", "some": "su"}

TRANSLATION_LEXICON: dict[str, str] = {
    **_DETERMINERS,
    **_NOUNS,
    **_ADJECTIVES,
    **_TRANSITIVE,
    **_INTRANSITIVE,
    **_ADVERBS,
}
"""English lemma → target word in its singular form (nouns and adjectives take
``-i`` in the plural; a verb's final ``-a`` becomes ``-en`` with a plural
subject). English nouns add ``-s`` in the plural, verbs ``-s`` with a singular
subject; ``"an"`` is the form of ``"a"`` before a vowel."""

TRANSLATION_WORD_CLASSES: dict[str, str] = {
    **dict.fromkeys(_DETERMINERS, "determiner"),
    **dict.fromkeys(_NOUNS, "noun"),
    **dict.fromkeys(_ADJECTIVES, "adjective"),
    **dict.fromkeys(_TRANSITIVE, "transitive verb"),
    **dict.fromkeys(_INTRANSITIVE, "intransitive verb"),
    **dict.fromkeys(_ADVERBS, "adverb"),
}
"""The word class of each English lemma (``"determiner"``, ``"noun"``,
``"adjective"``, ``"transitive verb"``, ``"intransitive verb"`` or ``"adverb"``)."""

_MAX_ADJECTIVES = 3  # per noun phrase
_MIN_WORDS = 3  # "the dog sleeps"
_MAX_WORDS = 2 * (2 + _MAX_ADJECTIVES) + 2  # two full noun phrases, verb, adverb
_P_PLURAL = 0.4

# A word is (english, target); a phrase is a list of words in English order plus
# the permutation giving the target order.
_Word = tuple[str, str]


def _noun_phrase(
    rng: np.random.Generator, num_adjectives: int, plural: bool
) -> tuple[list[_Word], list[int]]:
    """``det adj.. noun`` in English, ``det noun ..adj`` (mirror order) in the target."""
    noun = _pick(rng, list(_NOUNS))
    adjectives = [list(_ADJECTIVES)[i] for i in rng.permutation(len(_ADJECTIVES))[:num_adjectives]]
    det = _pick(rng, ("the", "some") if plural else ("the", "a"))
    suffix = "i" if plural else ""
    words = [(a, _ADJECTIVES[a] + suffix) for a in adjectives]
    words.append((noun + "s" if plural else noun, _NOUNS[noun] + suffix))
    if det == "a":
        det_word = (_article(words[0][0]), _DETERMINERS["a"])
    else:
        det_word = (det, _DETERMINERS[det])
    words.insert(0, det_word)
    n = len(words)
    return words, [0, n - 1, *range(n - 2, 0, -1)]


def _verb(rng: np.random.Generator, transitive: bool, plural_subject: bool) -> _Word:
    lexicon = _TRANSITIVE if transitive else _INTRANSITIVE
    lemma = _pick(rng, list(lexicon))
    target = lexicon[lemma]
    return (lemma, target[:-1] + "en") if plural_subject else (lemma + "s", target)


def _shape(rng: np.random.Generator, length: int) -> tuple[bool, bool, list[int]]:
    """(transitive, adverb, adjectives per noun phrase) for a sentence of ``length`` words."""
    options = []
    for transitive in (False, True):
        for adverb in (False, True):
            phrases = 2 if transitive else 1
            slack = length - (2 * phrases + 1 + adverb)
            if 0 <= slack <= _MAX_ADJECTIVES * phrases:
                options.append((transitive, adverb, phrases, slack))
    transitive, adverb, phrases, slack = options[int(rng.integers(len(options)))]
    if phrases == 1:
        return transitive, adverb, [slack]
    first = int(rng.integers(max(0, slack - _MAX_ADJECTIVES), min(slack, _MAX_ADJECTIVES) + 1))
    return transitive, adverb, [first, slack - first]


def _sentence_pair(rng: np.random.Generator, length: int) -> dict[str, str]:
    transitive, adverb, num_adjectives = _shape(rng, length)
    plural_subject = bool(rng.random() < _P_PLURAL)
    subject, subject_order = _noun_phrase(rng, num_adjectives[0], plural_subject)
    english = list(subject)
    target_order = list(subject_order)
    verb_index = len(english)
    english.append(_verb(rng, transitive, plural_subject))
    if transitive:
        obj, obj_order = _noun_phrase(rng, num_adjectives[1], bool(rng.random() < _P_PLURAL))
        target_order += [len(english) + i for i in obj_order]
        english += obj
    if adverb:
        lemma = _pick(rng, list(_ADVERBS))
        target_order.append(len(english))
        english.append((lemma, _ADVERBS[lemma]))
    target_order.append(verb_index)
    target_position = {i: j for j, i in enumerate(target_order)}
    return {
        "source": " ".join(w for w, _ in english),
        "target": " ".join(english[i][1] for i in target_order),
        "alignment": " ".join(f"{i}-{target_position[i]}" for i in range(len(english))),
    }


def translation_corpus(
    num_pairs: int,
    *,
    seed: int = 0,
    min_words: int = 3,
    max_words: int = 10,
) -> pd.DataFrame:
    """English sentences and their translations into a toy language with its
    own word order and agreement, with the true word alignment of each pair.

    The target language is subject-object-verb with adjectives after their
    noun (in mirror order) and the adverb before the verb; plural nouns and
    their adjectives take ``-i``; the verb ends in ``-a`` after a singular
    subject and ``-en`` after a plural one (see the grammar table in the
    module docstring and :data:`TRANSLATION_LEXICON`). Every word translates
    to exactly one word, so each alignment is a permutation.

    A sentence of ``n`` words (``n`` uniform in ``[min_words, max_words]``) is
    chosen uniformly among the feasible shapes: intransitive or transitive, with
    or without an adverb, then 0 to 3 adjectives per noun phrase fill the rest.
    A noun phrase is plural with probability 0.4.

    Parameters
    ----------
    num_pairs : int
        Number of rows.
    seed : int
        Seed of the random generator: the same seed gives the same table.
    min_words, max_words : int
        English sentence lengths, ``3 <= min_words <= max_words <= 12`` (the
        shortest sentence is "the dog sleeps"; the longest has two noun phrases
        with 3 adjectives each, a verb and an adverb).

    Returns
    -------
    pandas.DataFrame
        One row per pair, columns in this order:

        - ``id`` (int64): ``0 .. num_pairs - 1``;
        - ``source`` (str): English, lower case, words separated by single
          spaces, no punctuation;
        - ``target`` (str): its translation, same conventions;
        - ``alignment`` (str): Pharaoh format ``"i-j i-j ..."``, source word
          ``i`` translates to target word ``j`` (0-based over ``.split()``),
          sorted by ``i``, one pair per source word.

    Examples
    --------
    >>> row = translation_corpus(1, seed=0, max_words=7).iloc[0]
    >>> row["source"]
    'some red frogs see a red apple'
    >>> row["target"]
    'su ranoi rosoi un pomo roso viden'
    >>> row["alignment"]
    '0-0 1-2 2-1 3-6 4-3 5-5 6-4'
    """
    check_positive_int(num_pairs, "num_pairs")
    _check_int_at_least(min_words, "min_words", _MIN_WORDS, ' ("the dog sleeps")')
    _check_int_at_least(max_words, "max_words", 1)
    if max_words < min_words:
        raise ValueError(f"max_words: expected at least min_words ({min_words}), got {max_words}")
    if max_words > _MAX_WORDS:
        raise ValueError(
            f"max_words: expected at most {_MAX_WORDS} (the longest sentence of the grammar), "
            f"got {max_words}"
        )
    rng = np.random.default_rng(_check_seed(seed))
    lengths = rng.integers(min_words, max_words + 1, size=num_pairs)
    rows = [_sentence_pair(rng, int(n)) for n in lengths]
    df = pd.DataFrame(rows, columns=["source", "target", "alignment"])
    df.insert(0, "id", np.arange(num_pairs, dtype=np.int64))
    return df
