"""A Jupyter widget to explore a classifier's attention, computed in Python.

:func:`classifier_widget` is the ipywidgets counterpart of
:class:`attnlib.interpret.explorer.ClassifierExplorer`: the same "type your
own sentence" view, but every update runs the PyTorch model in the kernel
(:func:`~attnlib.interpret.maps.capture_attention` and a softmax of the
logits) and draws with :func:`attnlib.plotting.plot_attention`. It needs a
live kernel, and works for any attnlib classifier and tokenizer (subword ones
too). ipywidgets is an optional dependency: ``pip install ipywidgets``.
"""

from __future__ import annotations

import base64
import html
import io
import warnings
from collections.abc import Sequence

import torch
from torch import nn

from .._checks import require_optional

__all__ = ["ClassifierWidget", "classifier_widget"]


def _import_ipywidgets():
    return require_optional(
        "ipywidgets", package="ipywidgets", extra="widgets", feature="classifier_widget"
    )


class ClassifierWidget:
    """What :func:`classifier_widget` returns: the controls, the output and the state.

    Display it (last expression of a cell, or ``IPython.display.display``) to
    show :attr:`box`.

    Attributes
    ----------
    box : ipywidgets.VBox
        The whole widget.
    text : ipywidgets.Text
    layer, head : ipywidgets.Dropdown
    prediction : ipywidgets.HTML
        The class probabilities.
    output : ipywidgets.Output
        The heatmap (a matplotlib figure).
    state : dict
        The last update: ``text``, ``tokens`` (the labels of the model's
        input), ``ids``, ``truncated``, ``layer``, ``head``, ``probs`` (class
        name to probability), ``weights`` (the shown map, a ``(Lq, Lk)``
        tensor), ``maps`` (the :class:`~attnlib.interpret.maps.AttentionMaps`)
        and ``title`` (the figure's title).
    """

    def __init__(self, model, tokenizer, classes, text, layer, head, widgets) -> None:
        from ..inference import model_max_length

        self.model, self.tokenizer, self.classes = model, tokenizer, classes
        self.max_length = model_max_length(model)
        self.state: dict = {}
        self._maps = None
        self.text = widgets.Text(
            value=text,
            description="Sentence",
            placeholder="Type a sentence",
            continuous_update=False,
            layout=widgets.Layout(width="100%"),
        )
        self.layer = widgets.Dropdown(options=[("layer 0", 0)], value=0, description="Layer")
        self.head = widgets.Dropdown(options=[("head 0", 0)], value=0, description="Head")
        self.prediction = widgets.HTML()
        self.output = widgets.Output()
        self.box = widgets.VBox(
            [self.text, widgets.HBox([self.layer, self.head]), self.prediction, self.output]
        )
        self._compute(text)
        layers, heads = self._maps.num_layers(), self._maps.num_heads()
        for name, value, size in (("layer", layer, layers), ("head", head, heads)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < size:
                raise ValueError(f"{name}: expected an index in [0, {size}), got {value!r}")
        self.layer.options = [(f"layer {i}", i) for i in range(layers)]
        self.head.options = [(f"head {i}", i) for i in range(heads)]
        self.layer.value, self.head.value = layer, head
        self._draw()
        self.text.observe(self._on_text, names="value")
        self.layer.observe(self._on_view, names="value")
        self.head.observe(self._on_view, names="value")

    def _on_text(self, change) -> None:
        self._compute(change["new"])
        self._draw()

    def _on_view(self, change) -> None:
        self._draw()

    @torch.no_grad()
    def _compute(self, text: str) -> None:
        """Run the model on ``text``: the attention maps and the class probabilities."""
        from ..inference import encode_texts
        from .maps import capture_attention

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # truncation is reported in the state and title
            ids, _, truncated = encode_texts([text], self.tokenizer, max_length=self.max_length)
        ids = ids[0] or [self.tokenizer.pad_idx]  # an empty text: one padding token
        x = torch.tensor([ids], device=next(self.model.parameters()).device)
        self._maps = capture_attention(self.model, x, tokenizer=self.tokenizer)
        was_training = self.model.training
        self.model.eval()
        try:
            probs = torch.softmax(self.model(x).float(), -1)[0].cpu()
        finally:
            self.model.train(was_training)
        self.state.update(
            text=text,
            ids=ids,
            tokens=self._maps.labels()[0],
            truncated=truncated[0],
            probs=dict(zip(self.classes, probs.tolist(), strict=True)),
            maps=self._maps,
        )
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{p:.3f}</td></tr>"
            for name, p in self.state["probs"].items()
        )
        best = max(self.state["probs"], key=self.state["probs"].get)
        note = f" (cut to {self.max_length} tokens)" if truncated[0] else ""
        self.prediction.value = (
            f"<b>Prediction: {html.escape(best)}</b>{html.escape(note)}<table>{rows}</table>"
        )

    def _draw(self) -> None:
        import matplotlib.pyplot as plt

        from ..plotting import plot_attention

        layer, head = self.layer.value, self.head.value
        weights = self._maps.head(None, layer, head)
        query, key = self._maps.labels()
        title = f"layer {layer}, head {head}: {self.state['text']!r}"
        fig, ax = plt.subplots(
            figsize=(1.5 + 0.55 * len(key), 1.2 + 0.5 * len(query)), layout="constrained"
        )
        plot_attention(weights, query, key, ax=ax, title=title, mask=self._maps.mask())
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)
        plt.close(fig)
        self.state.update(layer=layer, head=head, weights=weights, title=title)
        # the Output's display data, set directly: the same with or without a live kernel
        self.output.outputs = (
            {
                "output_type": "display_data",
                "data": {
                    "image/png": base64.b64encode(buffer.getvalue()).decode("ascii"),
                    "text/plain": f"<attention map, {title}>",
                },
                "metadata": {},
            },
        )

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"ClassifierWidget(text={self.state.get('text')!r})"


def classifier_widget(
    model: nn.Module,
    tokenizer,
    classes: Sequence[str],
    text: str = "",
    *,
    layer: int = 0,
    head: int = 0,
) -> ClassifierWidget:
    """A Jupyter widget: type a sentence, pick a layer and a head, see the attention.

    A text box, layer and head dropdowns, the predicted probabilities and the
    chosen head's heatmap (:func:`attnlib.plotting.plot_attention`),
    recomputed in the kernel with
    :func:`~attnlib.interpret.maps.capture_attention` and a softmax of the
    logits whenever the text (on Enter or when the box loses focus), the layer
    or the head changes. Text longer than the model's positions is cut as
    :func:`attnlib.inference.predict` does.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier: token ids ``(1, L)`` to logits ``(1, num_classes)``,
        such as :class:`~attnlib.transformer.EncoderClassifier`.
    tokenizer
        Its tokenizer (:class:`~attnlib.data.text.WordTokenizer` or
        :class:`~attnlib.data.text.SubwordTokenizer`).
    classes : sequence of str
        Class names in id order.
    text : str
        The first sentence.
    layer, head : int
        The head shown first.

    Returns
    -------
    ClassifierWidget
        Display it; its :attr:`~ClassifierWidget.state` holds the last result.

    Raises
    ------
    ImportError
        If ipywidgets is not installed (``pip install ipywidgets``).
    """
    widgets = _import_ipywidgets()
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    if not hasattr(tokenizer, "encode") or not hasattr(tokenizer, "tokenize"):
        raise TypeError(
            f"tokenizer: expected an attnlib tokenizer (encode, tokenize), "
            f"got {type(tokenizer).__name__}"
        )
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"classes: expected a sequence of names, got {type(classes).__name__}")
    if not isinstance(text, str):
        raise TypeError(f"text: expected a str, got {type(text).__name__}")
    classes = [str(c) for c in classes]
    head_layer = getattr(model, "head", None)
    num_classes = getattr(head_layer, "out_features", None)
    if num_classes is not None and num_classes != len(classes):
        raise ValueError(
            f"classes: expected {num_classes} names (the model's outputs), got {len(classes)}"
        )
    return ClassifierWidget(model, tokenizer, classes, text, layer, head, widgets)
