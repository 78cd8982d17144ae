"""Text to token ids: cleaning, word and subword tokenizers, the vocabulary.

Both tokenizers share one interface, which :mod:`attnlib.inference`,
:mod:`attnlib.interpret.maps` and the plotting helpers rely on:

- ``fit(texts, *, min_freq, ...)`` (a class method) learns one from texts;
- ``tokenize(text) -> list[str]``;
- ``encode(text, *, add_bos=False, add_eos=False) -> list[int]`` (one id per
  token of ``tokenize``, plus the optional BOS/EOS);
- ``decode(ids, *, skip_special=True) -> str``;
- ``id_to_token(idx) -> str`` and ``token_to_id(token) -> int`` (``unk_idx``
  for an unknown token), which :class:`Vocabulary` offers too;
- ``len()`` (the vocabulary size), ``save(path)`` and ``load(path)``;
- the special ids ``pad_idx``, ``bos_idx``, ``eos_idx``, ``unk_idx`` (0, 1, 2
  and 3: the padding, start and end ids are those of :mod:`attnlib.tasks` and
  the defaults of :mod:`attnlib.decoding`).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from .._checks import check_positive_int

__all__ = [
    "SPECIALS",
    "clean_text",
    "word_tokenize",
    "Vocabulary",
    "WordTokenizer",
    "SubwordTokenizer",
]

#: The special tokens in id order (padding 0, begin 1, end 2, unknown 3).
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")

_TYPOGRAPHIC = str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "–": "-", "—": "-"})
_PUNCT = re.compile(r"[^\w\s']|(?<!\w)'|'(?!\w)")
_WORD = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def clean_text(text: str, *, lowercase: bool = True, remove_punctuation: bool = False) -> str:
    """Normalise a string before tokenization.

    Unicode NFKC normalisation (full-width letters, ligatures and other
    compatibility forms become their plain equivalents), typographic quotes and
    dashes to ASCII, optional lower-casing and punctuation removal (apostrophes
    inside words are kept: "don't"), and runs of white space to one space.

    Examples
    --------
    >>> clean_text("  The ﬁlm was ＧＲＥＡＴ — wasn’t it?! ")
    "the film was great - wasn't it?!"
    >>> clean_text("Good, but dull.", remove_punctuation=True)
    'good but dull'
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    text = unicodedata.normalize("NFKC", text).translate(_TYPOGRAPHIC)
    if lowercase:
        text = text.lower()
    if remove_punctuation:
        text = _PUNCT.sub(" ", text)
    return " ".join(text.split())


def word_tokenize(text: str) -> list[str]:
    """Split into words (letters, digits, inner apostrophes) and single
    punctuation marks.

    Examples
    --------
    >>> word_tokenize("not good, but isn't bad.")
    ['not', 'good', ',', 'but', "isn't", 'bad', '.']
    """
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    return _WORD.findall(text)


class Vocabulary:
    """A bijection between tokens and ids, with the special tokens first.

    Parameters
    ----------
    tokens : iterable of str
        The ordinary tokens, in id order (they follow ``SPECIALS``).

    Examples
    --------
    >>> vocab = Vocabulary.build([["a", "b", "a"], ["a", "c"]], min_freq=2)
    >>> list(vocab)
    ['<pad>', '<bos>', '<eos>', '<unk>', 'a']
    >>> vocab.encode(["a", "zzz"], add_eos=True)
    [4, 3, 2]
    >>> vocab.id_to_token(4), vocab.token_to_id("a")
    ('a', 4)
    """

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        self.itos: list[str] = list(SPECIALS)
        for tok in tokens:
            if not isinstance(tok, str):
                raise TypeError(f"tokens: expected str tokens, got {type(tok).__name__}")
            if tok not in SPECIALS:
                self.itos.append(tok)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            dup = [t for t, c in Counter(self.itos).items() if c > 1]
            raise ValueError(f"tokens: expected distinct tokens, got duplicates {dup[:5]}")

    pad_idx, bos_idx, eos_idx, unk_idx = 0, 1, 2, 3

    @classmethod
    def build(
        cls,
        sentences: Iterable[Sequence[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
    ) -> Vocabulary:
        """Count tokens and keep those seen at least ``min_freq`` times, most
        frequent first (ties alphabetical), at most ``max_size`` of them
        (specials not counted)."""
        check_positive_int(min_freq, "min_freq")
        if max_size is not None:
            check_positive_int(max_size, "max_size")
        counts: Counter[str] = Counter()
        for sentence in sentences:
            if isinstance(sentence, str):
                raise TypeError(
                    "sentences: expected lists of tokens, got a str (tokenize it first)"
                )
            counts.update(sentence)
        kept = sorted(
            (t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t)
        )
        return cls(kept[:max_size])

    def __len__(self) -> int:
        return len(self.itos)

    def __iter__(self):
        return iter(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        """The id of ``token``, or ``unk_idx`` for an unknown token."""
        return self.stoi.get(token, self.unk_idx)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens: {self.itos[:8]}{' ...' if len(self) > 8 else ''})"

    def id_to_token(self, idx: int) -> str:
        """The token of id ``idx``."""
        _check_id(idx, len(self))
        return self.itos[idx]

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or ``unk_idx`` for an unknown token."""
        return self[token]

    def encode(
        self, tokens: Sequence[str], *, add_bos: bool = False, add_eos: bool = False
    ) -> list[int]:
        """Ids of ``tokens`` (unknown ones get ``unk_idx``)."""
        ids = [self[t] for t in tokens]
        return [self.bos_idx] * add_bos + ids + [self.eos_idx] * add_eos

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> list[str]:
        """Tokens of ``ids``; stops at EOS and drops padding/BOS when
        ``skip_special``."""
        out = []
        for i in ids:
            i = int(i)
            if skip_special and i == self.eos_idx:
                break
            if skip_special and i in (self.pad_idx, self.bos_idx):
                continue
            out.append(self.id_to_token(i))
        return out

    def save(self, path: str | Path) -> None:
        """Write the tokens, in id order, as JSON."""
        Path(path).write_text(json.dumps({"tokens": self.itos}, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        tokens = data.get("tokens") if isinstance(data, dict) else None
        if not isinstance(tokens, list) or tokens[: len(SPECIALS)] != list(SPECIALS):
            raise ValueError(
                f"path: expected a vocabulary file written by Vocabulary.save, got {path}"
            )
        return cls(tokens[len(SPECIALS) :])


class WordTokenizer:
    """:func:`clean_text`, :func:`word_tokenize` and a :class:`Vocabulary`.

    Unknown words are kept by :meth:`tokenize` and become ``<unk>`` in
    :meth:`encode`.

    Parameters
    ----------
    vocab : Vocabulary
    lowercase, remove_punctuation : bool
        Passed to :func:`clean_text`.
    """

    def __init__(
        self, vocab: Vocabulary, *, lowercase: bool = True, remove_punctuation: bool = False
    ) -> None:
        if not isinstance(vocab, Vocabulary):
            raise TypeError(f"vocab: expected a Vocabulary, got {type(vocab).__name__}")
        self.vocab = vocab
        self.lowercase, self.remove_punctuation = lowercase, remove_punctuation

    pad_idx, bos_idx, eos_idx, unk_idx = (
        Vocabulary.pad_idx,
        Vocabulary.bos_idx,
        Vocabulary.eos_idx,
        Vocabulary.unk_idx,
    )

    @classmethod
    def fit(
        cls,
        texts: Iterable[str],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        lowercase: bool = True,
        remove_punctuation: bool = False,
    ) -> WordTokenizer:
        """Build the vocabulary from ``texts``."""
        tok = cls(Vocabulary(), lowercase=lowercase, remove_punctuation=remove_punctuation)
        words = (tok.tokenize(t) for t in _texts(texts))
        tok.vocab = Vocabulary.build(words, min_freq=min_freq, max_size=max_size)
        return tok

    def __len__(self) -> int:
        return len(self.vocab)

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` (unknown ones included, as text)."""
        return word_tokenize(
            clean_text(text, lowercase=self.lowercase, remove_punctuation=self.remove_punctuation)
        )

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """One id per token of :meth:`tokenize`, with optional BOS and EOS ids."""
        return self.vocab.encode(self.tokenize(text), add_bos=add_bos, add_eos=add_eos)

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """The text of ``ids``; with ``skip_special``, stop at EOS and drop padding and BOS."""
        return " ".join(self.vocab.decode(ids, skip_special=skip_special))

    def id_to_token(self, idx: int) -> str:
        """The token of id ``idx``."""
        return self.vocab.id_to_token(idx)

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or ``unk_idx`` for an unknown token."""
        return self.vocab.token_to_id(token)

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to ``path`` (JSON)."""
        options = {"lowercase": self.lowercase, "remove_punctuation": self.remove_punctuation}
        Path(path).write_text(json.dumps({"tokens": self.vocab.itos, "options": options}))

    @classmethod
    def load(cls, path: str | Path) -> WordTokenizer:
        """Read a tokenizer written by :meth:`save`."""
        data = json.loads(Path(path).read_text())
        return cls(Vocabulary(data["tokens"][len(SPECIALS) :]), **data["options"])


class SubwordTokenizer:
    """A byte-pair-encoding tokenizer (Sennrich et al., 2016, arXiv:1508.07909)
    trained with Hugging Face ``tokenizers``.

    Text is NFKC-normalised and lower-cased, then split into words and
    punctuation marks; each of them starts with ``"▁"`` (as in SentencePiece),
    so that :meth:`decode` knows where words begin: ``"unwatchable"`` may
    become ``["▁un", "watch", "able"]``. Use :meth:`fit` to create one.

    Training is reproducible: the same texts give the same merges in every
    process. (With a ``"##"`` continuation prefix, as BERT's WordPiece uses,
    ``tokenizers`` numbers the continuation symbols in hash-table order and
    breaks ties between equally frequent pairs by those numbers, so the
    merges change from one run to the next; that is why this class uses the
    word-start marker and does not offer WordPiece.)

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
        With the :data:`SPECIALS` as ids 0-3.
    """

    def __init__(self, tokenizer) -> None:
        for idx, special in enumerate(SPECIALS):
            if tokenizer.token_to_id(special) != idx:
                raise ValueError(
                    f"tokenizer: expected special token {special!r} at id {idx}, "
                    f"got {tokenizer.token_to_id(special)}"
                )
        self.tokenizer = tokenizer

    pad_idx, bos_idx, eos_idx, unk_idx = (
        Vocabulary.pad_idx,
        Vocabulary.bos_idx,
        Vocabulary.eos_idx,
        Vocabulary.unk_idx,
    )

    @classmethod
    def fit(
        cls, texts: Iterable[str], *, min_freq: int = 2, vocab_size: int = 1000
    ) -> SubwordTokenizer:
        """Learn merges from ``texts`` until the vocabulary (specials and single
        characters included) has ``vocab_size`` entries, merging only pairs
        seen at least ``min_freq`` times."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        check_positive_int(min_freq, "min_freq")
        check_positive_int(vocab_size, "vocab_size")
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Punctuation(), pre_tokenizers.Metaspace()]
        )
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_freq,
            special_tokens=list(SPECIALS),
            show_progress=False,
        )
        tok.train_from_iterator(list(_texts(texts)), trainer=trainer)
        return cls(tok)

    def __len__(self) -> int:
        return self.tokenizer.get_vocab_size()

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text`` (unknown ones included, as text)."""
        return self.tokenizer.encode(_text(text), add_special_tokens=False).tokens

    def encode(self, text: str, *, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        """One id per token of :meth:`tokenize`, with optional BOS and EOS ids."""
        ids = self.tokenizer.encode(_text(text), add_special_tokens=False).ids
        return [self.bos_idx] * add_bos + ids + [self.eos_idx] * add_eos

    def decode(self, ids: Iterable[int], *, skip_special: bool = True) -> str:
        """The text of ``ids``; with ``skip_special``, stop at EOS and drop padding and BOS."""
        ids = [int(i) for i in ids]
        if skip_special:  # as Vocabulary.decode: stop at EOS, drop padding and BOS
            ids = ids[: ids.index(self.eos_idx)] if self.eos_idx in ids else ids
            ids = [i for i in ids if i not in (self.pad_idx, self.bos_idx)]
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def id_to_token(self, idx: int) -> str:
        """The token of id ``idx``."""
        _check_id(idx, len(self))
        return self.tokenizer.id_to_token(int(idx))

    def token_to_id(self, token: str) -> int:
        """The id of ``token``, or ``unk_idx`` for an unknown token."""
        idx = self.tokenizer.token_to_id(token)
        return self.unk_idx if idx is None else idx

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to ``path`` (JSON)."""
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> SubwordTokenizer:
        """Read a tokenizer written by :meth:`save`."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))


def _check_id(idx: int, size: int) -> None:
    if not 0 <= idx < size:
        raise IndexError(f"idx: expected an id in [0, {size}), got {idx}")


def _text(text: object) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    return text


def _texts(texts: Iterable[str]) -> Iterable[str]:
    if isinstance(texts, str):
        raise TypeError("texts: expected an iterable of strings, got a single str")
    for t in texts:
        yield _text(t)
