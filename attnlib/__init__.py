"""attnlib: attention mechanisms, from theory to implementation.

The small PyTorch library behind the attnlib tutorials. Conventions:

- masks are boolean, ``True`` = may attend, broadcastable to
  ``(B, H, Lq, Lk)`` (see :mod:`attnlib.masks`);
- attention functions and modules return ``(output, weights)``; models
  return logits, and :func:`record_attention` gives the weights of any model;
- a query with no allowed key gets zero weights and a zero output.

Shape legend (the same symbols in every docstring, the tutorials, and, in
math, the theory pages):

==========  =======================  ============================================================
code        math                     meaning
==========  =======================  ============================================================
B           :math:`B`                batch size
H           :math:`h`                number of heads
Lq, Lk      :math:`L_q, L_k`         number of queries; number of keys (= values)
L           :math:`L`                sequence length, when queries and keys are the same sequence
S, T        :math:`S, T`             source and target lengths of an encoder-decoder
D           :math:`d_{model}`        model width
Dq, Dk, Dv  :math:`d_q, d_k, d_v`    features of a query, a key, a value (per head: Dk = D / H)
Dh          :math:`d_h`              hidden width of a recurrent state or of a scoring network
E           :math:`d_e`              token-embedding width of the recurrent models
V           :math:`V`                vocabulary size
==========  =======================  ============================================================
"""

from . import (
    attention,
    bert,
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
    "bert",
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
