"""Data for the tutorials: synthetic corpora with known ground truth, tables
on disk and their validation, text preprocessing, datasets and batches.

Submodules:

- :mod:`attnlib.data.synthetic` -- :func:`generate_synthetic_data` (the seed's
  numeric sentences), a sentiment corpus with its evidence words, a toy
  translation corpus with its word alignments;
- :mod:`attnlib.data.frames` -- CSV/JSON round trips, :func:`validate_dataframe`,
  :func:`numeric_summary`;
- :mod:`attnlib.data.text` -- cleaning, word and subword tokenizers,
  :class:`Vocabulary`;
- :mod:`attnlib.data.datasets` -- stratified splits, datasets, dynamic padding,
  loaders.
"""

from .datasets import (
    Batch,
    Collate,
    TextClassificationDataset,
    TranslationDataset,
    make_loader,
    pad_sequences,
    stratified_split,
)
from .frames import (
    DataValidationError,
    load_frame,
    numeric_summary,
    save_frame,
    validate_dataframe,
)
from .synthetic import (
    SENTIMENT_LABELS,
    SENTIMENT_LEXICON,
    TRANSLATION_LEXICON,
    TRANSLATION_WORD_CLASSES,
    generate_synthetic_data,
    sentiment_corpus,
    translation_corpus,
)
from .text import SPECIALS, SubwordTokenizer, Vocabulary, WordTokenizer, clean_text, word_tokenize

__all__ = [
    "Batch",
    "Collate",
    "DataValidationError",
    "SENTIMENT_LABELS",
    "SENTIMENT_LEXICON",
    "TRANSLATION_LEXICON",
    "TRANSLATION_WORD_CLASSES",
    "SPECIALS",
    "SubwordTokenizer",
    "TextClassificationDataset",
    "TranslationDataset",
    "Vocabulary",
    "WordTokenizer",
    "clean_text",
    "generate_synthetic_data",
    "load_frame",
    "make_loader",
    "numeric_summary",
    "pad_sequences",
    "save_frame",
    "sentiment_corpus",
    "stratified_split",
    "translation_corpus",
    "validate_dataframe",
    "word_tokenize",
]
