"""attnlib: attention mechanisms, from theory to implementation.

The small PyTorch library behind the attnlib tutorials. Conventions:

- masks are boolean, ``True`` = may attend, broadcastable to
  ``(batch, heads, query, key)`` (see :mod:`attnlib.masks`);
- attention functions and modules return ``(output, weights)``;
- a query with no allowed key gets zero weights and a zero output.
"""

from . import (
    attention,
    capture,
    data,
    decoding,
    functional,
    inference,
    masks,
    metrics,
    models,
    plotting,
    positional,
    report,
    seq2seq,
    tasks,
    training,
    transformer,
)
from .attention import (
    AdditiveAttention,
    AttentionModule,
    ContentBasedAttention,
    HardAttention,
    LocalAttention,
    LocationBasedAttention,
    LuongAttention,
    MultiHeadAttention,
    ScaledDotProductAttention,
)
from .capture import AttentionRecord, record_attention
from .data import generate_synthetic_data
from .functional import (
    calculate_attention_weights,
    masked_softmax,
    multi_head_attention,
    scaled_dot_product_attention,
)
from .interpret.plots import visualize_attention_weights
from .masks import causal_mask, create_masks, mask_future_tokens, padding_mask, sliding_window_mask
from .plotting import plot_attention, plot_attention_heads, plot_history
from .report import key_figure
from .seq2seq import Seq2Seq
from .training import Trainer, seed_everything, train_model
from .transformer import Transformer, build_transformer_model

__version__ = "0.1.0"

__all__ = [
    "attention",
    "capture",
    "data",
    "decoding",
    "functional",
    "inference",
    "masks",
    "metrics",
    "plotting",
    "positional",
    "report",
    "models",
    "seq2seq",
    "tasks",
    "training",
    "transformer",
    "AdditiveAttention",
    "AttentionModule",
    "AttentionRecord",
    "ContentBasedAttention",
    "HardAttention",
    "LocalAttention",
    "LocationBasedAttention",
    "LuongAttention",
    "MultiHeadAttention",
    "ScaledDotProductAttention",
    "Seq2Seq",
    "Trainer",
    "Transformer",
    "build_transformer_model",
    "calculate_attention_weights",
    "causal_mask",
    "create_masks",
    "generate_synthetic_data",
    "key_figure",
    "mask_future_tokens",
    "masked_softmax",
    "multi_head_attention",
    "padding_mask",
    "plot_attention",
    "plot_attention_heads",
    "plot_history",
    "record_attention",
    "scaled_dot_product_attention",
    "seed_everything",
    "sliding_window_mask",
    "train_model",
    "visualize_attention_weights",
]
