"""Cleaning, tokenizers and the vocabulary."""

from __future__ import annotations

import inspect

import pytest

from attnlib.data.text import (
    SPECIALS,
    SubwordTokenizer,
    Vocabulary,
    WordTokenizer,
    clean_text,
    word_tokenize,
)

CORPUS = [
    "The acting was not good, but the plot was brilliant.",
    "A dull, dull film. The music was very good!",
    "I did not like the ending; the acting was bad.",
    "An unbelievable plot and unforgettable music.",
] * 10


def test_clean_text():
    messy = "  The ﬁlm was ＧＲＥＡＴ — wasn’t it?! "
    assert clean_text(messy) == "the film was great - wasn't it?!"
    assert clean_text("Good, but DULL.", remove_punctuation=True) == "good but dull"
    assert clean_text("Keep Case", lowercase=False) == "Keep Case"
    assert clean_text("café") == "café"  # NFKC keeps the accent, in one code point
    assert len(clean_text("cafe\u0301")) == 4
    with pytest.raises(TypeError, match="text: expected a str, got int"):
        clean_text(3)


def test_word_tokenize():
    assert word_tokenize("not good, but isn't bad.") == [
        "not", "good", ",", "but", "isn't", "bad", "."
    ]  # fmt: skip
    assert word_tokenize("") == []


def test_vocabulary_build_order_and_min_freq():
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "a", "b"]], min_freq=2)
    assert list(vocab) == [*SPECIALS, "b", "a"]  # most frequent first
    assert (vocab.pad_idx, vocab.bos_idx, vocab.eos_idx, vocab.unk_idx) == (0, 1, 2, 3)
    # the same ids as attnlib.tasks and the defaults of attnlib.decoding
    from attnlib import tasks

    assert (vocab.pad_idx, vocab.bos_idx, vocab.eos_idx) == (tasks.PAD, tasks.BOS, tasks.EOS)
    assert vocab["c"] == vocab.unk_idx and "c" not in vocab
    assert len(Vocabulary.build([["a", "b", "c"]], max_size=2)) == len(SPECIALS) + 2
    with pytest.raises(TypeError, match="sentences: expected lists of tokens, got a str"):
        Vocabulary.build(["abc"])
    with pytest.raises(ValueError, match="min_freq: expected a positive integer, got 0"):
        Vocabulary.build([["a"]], min_freq=0)


def test_vocabulary_encode_decode_and_save(tmp_path):
    vocab = Vocabulary(["hello", "world"])
    ids = vocab.encode(["hello", "there", "world"], add_bos=True, add_eos=True)
    assert ids == [1, 4, 3, 5, 2]
    assert vocab.decode(ids) == ["hello", "<unk>", "world"]
    assert vocab.decode([4, 2, 5]) == ["hello"]  # stops at EOS
    assert vocab.decode(ids, skip_special=False)[0] == "<bos>"
    vocab.save(tmp_path / "v.json")
    assert Vocabulary.load(tmp_path / "v.json") == vocab
    (tmp_path / "bad.json").write_text('{"tokens": ["a"]}')
    with pytest.raises(ValueError, match="path: expected a vocabulary file"):
        Vocabulary.load(tmp_path / "bad.json")
    with pytest.raises(IndexError, match=r"idx: expected an id in \[0, 6\), got 6"):
        vocab.id_to_token(6)
    assert vocab.id_to_token(4) == "hello" and vocab.token_to_id("hello") == 4
    assert vocab.token_to_id("there") == vocab.unk_idx
    with pytest.raises(ValueError, match="tokens: expected distinct tokens"):
        Vocabulary(["a", "a"])


def test_word_tokenizer_unknown_words_and_round_trip(tmp_path):
    tok = WordTokenizer.fit(CORPUS, min_freq=2)
    tokens = tok.tokenize("The acting was SUPERB!")
    ids = tok.encode("The acting was SUPERB!", add_bos=True, add_eos=True)
    assert tokens == ["the", "acting", "was", "superb", "!"]
    assert len(ids) == len(tokens) + 2 and ids[4] == tok.unk_idx  # "superb" is unknown
    assert tok.decode(ids) == "the acting was <unk> !"
    tok.save(tmp_path / "w.json")
    back = WordTokenizer.load(tmp_path / "w.json")
    assert back.vocab == tok.vocab and back.encode(CORPUS[0]) == tok.encode(CORPUS[0])
    with pytest.raises(TypeError, match="texts: expected an iterable of strings, got a single"):
        WordTokenizer.fit("just one text")


def test_subword_tokenizer(tmp_path, capsys):
    tok = SubwordTokenizer.fit(CORPUS, vocab_size=120)
    assert capsys.readouterr().out == ""  # no progress output
    assert len(tok) <= 120
    assert [tok.id_to_token(i) for i in range(4)] == list(SPECIALS)
    # an unseen word is split into known pieces, not mapped to <unk>
    pieces = tok.tokenize("filmmusic")
    assert len(pieces) > 1 and tok.unk_idx not in tok.encode("filmmusic")
    assert pieces[0].startswith("▁") and not any(p.startswith("▁") for p in pieces[1:])
    # a character never seen is unknown, one id per token
    assert tok.tokenize("zq") == ["▁", "<unk>", "<unk>"]
    assert tok.encode("zq")[1:] == [tok.unk_idx] * 2
    ids = tok.encode("The plot was brilliant.", add_bos=True, add_eos=True)
    assert ids[0] == tok.bos_idx and ids[-1] == tok.eos_idx
    assert tok.decode(ids) == "the plot was brilliant ."  # punctuation is a word of its own
    tok.save(tmp_path / "s.json")
    assert SubwordTokenizer.load(tmp_path / "s.json").encode(CORPUS[2]) == tok.encode(CORPUS[2])
    with pytest.raises(ValueError, match="vocab_size: expected a positive integer, got 0"):
        SubwordTokenizer.fit(CORPUS, vocab_size=0)
    with pytest.raises(ValueError, match="min_freq: expected a positive integer, got 0"):
        SubwordTokenizer.fit(CORPUS, min_freq=0)


def test_subword_training_is_reproducible_across_processes():
    """The merges must not depend on hash order (a fresh interpreter each time)."""
    import subprocess
    import sys

    code = (
        "from attnlib.data.text import SubwordTokenizer as S;"
        "from attnlib.data.synthetic import sentiment_corpus as c;"
        "print(S.fit(c(500).text, vocab_size=150).tokenizer.to_str())"
    )
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(3)}  # fmt: skip
    assert len(runs) == 1


# -- the shared interface ---------------------------------------------------

SHARED = ("fit", "tokenize", "encode", "decode", "id_to_token", "token_to_id", "save", "load")


@pytest.fixture(scope="module")
def tokenizers():
    return {
        "word": WordTokenizer.fit(CORPUS, min_freq=2),
        "subword": SubwordTokenizer.fit(CORPUS, vocab_size=120),
    }


def _params(func):
    return [(p.name, p.kind) for p in inspect.signature(func).parameters.values()]


@pytest.mark.parametrize("name", SHARED)
def test_tokenizers_share_method_names_and_parameters(name):
    word, subword = getattr(WordTokenizer, name), getattr(SubwordTokenizer, name)
    if name == "fit":  # the texts, then keyword-only options; min_freq in both
        for fit in (word, subword):
            (first, kind), *rest = _params(fit)
            assert (first, kind) == ("texts", inspect.Parameter.POSITIONAL_OR_KEYWORD)
            assert all(k == inspect.Parameter.KEYWORD_ONLY for _, k in rest), rest
            assert "min_freq" in dict(rest)
        assert not hasattr(SubwordTokenizer, "train")  # one name for learning a tokenizer
    else:
        assert _params(word) == _params(subword)


def test_vocabulary_shares_the_id_methods():
    for name in ("id_to_token", "token_to_id"):
        assert _params(getattr(Vocabulary, name)) == _params(getattr(WordTokenizer, name))
    assert not hasattr(Vocabulary, "lookup")  # one name: id_to_token


def test_tokenizers_share_the_special_ids(tokenizers):
    for tok in (Vocabulary(), *tokenizers.values()):
        assert (tok.pad_idx, tok.bos_idx, tok.eos_idx, tok.unk_idx) == (0, 1, 2, 3)
        assert [tok.id_to_token(i) for i in range(4)] == list(SPECIALS)
        assert [tok.token_to_id(t) for t in SPECIALS] == [0, 1, 2, 3]


@pytest.mark.parametrize("kind", ["word", "subword"])
def test_id_to_token_round_trips_encode(tokenizers, kind):
    tok = tokenizers[kind]
    text = "The plot was brilliant, the music dull."
    ids = tok.encode(text, add_bos=True, add_eos=True)
    tokens = [tok.id_to_token(i) for i in ids]
    assert tokens == ["<bos>", *tok.tokenize(text), "<eos>"]
    assert [tok.token_to_id(t) for t in tokens] == ids
    assert tok.token_to_id("never-seen-token") == tok.unk_idx
    with pytest.raises(IndexError, match=rf"idx: expected an id in \[0, {len(tok)}\), got"):
        tok.id_to_token(len(tok))
