"""Interpretability: capture, plot, measure and explore attention.

- :mod:`attnlib.interpret.maps` -- :func:`~attnlib.interpret.maps.capture_attention`
  from attnlib and Hugging Face models into
  :class:`~attnlib.interpret.maps.AttentionMaps`;
- :mod:`attnlib.interpret.plots` -- heatmaps by layer and head, per-token bar
  charts, highlighted text, and the seed's
  :func:`~attnlib.interpret.plots.visualize_attention_weights`;
- :mod:`attnlib.interpret.stats` -- per-token and per-head statistics;
- :mod:`attnlib.interpret.circuits` -- induction-circuit scores per head and
  one-head ablation for decoder-only models;
- :mod:`attnlib.interpret.relevance` -- rollout, flow, gradient-weighted
  attention, gradient x input, leave-one-out;
- :mod:`attnlib.interpret.faithfulness` -- agreement, permutation and
  uniform-attention tests, scores against ground truth;
- :mod:`attnlib.interpret.explorer` -- interactive views for a static page or
  Jupyter, including a classifier that runs in the page's JavaScript;
- :mod:`attnlib.interpret.widgets` -- the same for Jupyter with ipywidgets.
"""

from .explorer import AttentionExplorer, ClassifierExplorer, export_classifier
from .faithfulness import (
    evidence_scores,
    evidence_token_positions,
    explanation_table,
    intervene_attention,
    permutation_test,
    rank_agreement,
    token_scores,
    uniform_attention_test,
    word_token_positions,
)
from .maps import KINDS, AttentionMaps, capture_attention, token_labels
from .plots import (
    plot_attention_received,
    plot_evidence_scores,
    plot_head_across_layers,
    plot_kinds,
    plot_layer,
    plot_token_highlights,
    visualize_attention_weights,
)
from .relevance import (
    attention_flow,
    attention_rollout,
    gradient_weighted_attention,
    gradient_x_input,
    leave_one_out,
    pooled_relevance,
)
from .stats import (
    SPECIAL_TOKENS,
    attention_entropy,
    attention_stats,
    attention_to_tokens,
    head_js_divergence,
    head_stats,
    offset_attention,
)
from .widgets import ClassifierWidget, classifier_widget

__all__ = [
    "KINDS",
    "SPECIAL_TOKENS",
    "AttentionExplorer",
    "AttentionMaps",
    "ClassifierExplorer",
    "ClassifierWidget",
    "classifier_widget",
    "export_classifier",
    "attention_flow",
    "attention_rollout",
    "attention_entropy",
    "attention_stats",
    "attention_to_tokens",
    "head_js_divergence",
    "offset_attention",
    "capture_attention",
    "evidence_scores",
    "evidence_token_positions",
    "explanation_table",
    "gradient_weighted_attention",
    "gradient_x_input",
    "head_stats",
    "intervene_attention",
    "leave_one_out",
    "permutation_test",
    "plot_attention_received",
    "plot_evidence_scores",
    "plot_head_across_layers",
    "plot_kinds",
    "plot_layer",
    "plot_token_highlights",
    "pooled_relevance",
    "rank_agreement",
    "token_labels",
    "token_scores",
    "uniform_attention_test",
    "visualize_attention_weights",
    "word_token_positions",
]
