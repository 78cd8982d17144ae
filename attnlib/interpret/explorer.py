"""Interactive attention explorers for Jupyter and the documentation site.

Two views, each an HTML fragment with its own (inlined) JavaScript and CSS,
that need no server, no CDN and no network access at all:

- :class:`AttentionExplorer` shows captured :class:`~attnlib.interpret.maps.AttentionMaps`:
  a kind selector, a layer x head grid of thumbnails (BertViz's model view),
  the chosen head's heatmap with token labels, hover details, PNG and SVG
  export, BertViz's head view of the chosen layer (lines from queries to keys,
  one colour per head, with a filter for sentence pairs), and an optional bar
  chart of a prediction.
- :class:`ClassifierExplorer` ships an
  :class:`~attnlib.transformer.EncoderClassifier` (its weights, see
  :func:`export_classifier`) and its :class:`~attnlib.data.text.WordTokenizer`
  to the page, which runs the forward pass in JavaScript: type a sentence and
  its attention maps and class probabilities update as you type.

Both have ``_repr_html_`` (Jupyter and sphinx-gallery display them when they
are the last expression of a cell or block), ``to_html()``
and ``save()`` (a standalone HTML document). For a
Jupyter view computed in Python instead, see
:func:`attnlib.interpret.widgets.classifier_widget`.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
import operator
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .._checks import check_choice
from .maps import AttentionMaps

__all__ = ["AttentionExplorer", "ClassifierExplorer", "export_classifier"]

_STATIC = Path(__file__).with_name("static")
#: Format tag of :func:`export_classifier`'s output, checked by the JavaScript.
CLASSIFIER_FORMAT = "attnlib-classifier/2"
#: The views of :class:`AttentionExplorer`'s chosen layer: one head's heatmap, or the
#: head view of all its heads (BertViz's, Vig 2019, arXiv:1904.02679).
VIEWS = ("heatmap", "heads")
_KIND_LABELS = {
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention",
}


@functools.cache
def _asset(name: str) -> str:
    """The text of ``static/<name>``, made lighter: comments and indentation dropped (the
    line breaks stay, so JavaScript's automatic semicolons are unchanged). It must not be
    able to end its ``<script>`` or ``<style>`` element."""
    text = (_STATIC / name).read_text("utf-8")
    if name.endswith(".css"):
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    else:  # the header comment and whole-line // comments (no template literal spans lines)
        text = re.sub(r"\A/\*.*?\*/", "", text, flags=re.S)
    lines = (line.strip() for line in text.splitlines())
    text = "\n".join(line for line in lines if line and not line.startswith("//"))
    for bad in ("</script", "</style", "<!--"):
        if bad in text.lower():
            raise RuntimeError(f"{name}: contains {bad!r}, which would break the inlined HTML")
    return text


def _json_for_html(data) -> str:
    """JSON safe inside ``<script type="application/json">``: ``<``, ``>`` and ``&`` are
    escaped, so no string (a token ``</script>``, ``<!--``) can end the element."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def _quantize(weights: Tensor, bits: int) -> tuple[str, float, float]:
    """Codes ``round((w - lo) / (hi - lo) * (2**bits - 1))`` as base64 (uint8, or
    little-endian uint16), with ``lo = min(0, min w)`` and ``hi = max w``."""
    w = weights.detach().double().cpu().numpy()
    lo = min(0.0, float(w.min())) if w.size else 0.0
    hi = float(w.max()) if w.size else 1.0
    if not hi > lo:
        hi = lo + 1.0
    levels = 2**bits - 1
    codes = np.rint((w - lo) / (hi - lo) * levels)
    dtype = np.uint8 if bits == 8 else np.dtype("<u2")
    return _b64(np.clip(codes, 0, levels).astype(dtype)), lo, hi


def _colormap(cmap: str) -> str:
    """256 colours of a matplotlib colormap, as one hex string (RRGGBB each)."""
    import matplotlib

    try:
        colours = matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"cmap: expected a matplotlib colormap name, got {cmap!r}") from exc
    rgb = np.rint(np.asarray(colours)[:, :3] * 255).astype(np.uint8)
    return rgb.tobytes().hex()


def _check_title(title) -> str | None:
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title: expected a str or None, got {type(title).__name__}")
    return title


class _Explorer:
    """The parts both explorers share: the HTML fragment, the document, the repr."""

    _type = ""
    title: str | None = None
    #: Inline the JavaScript and CSS (about 60 kB). Set it to ``False`` for
    #: the second and later explorers of one page: the first one's code serves
    #: them all.
    assets: bool = True

    def _data(self) -> dict:
        raise NotImplementedError

    def to_html(self) -> str:
        """The explorer as an HTML fragment: inline CSS, the container, the data (JSON)
        and inline JavaScript. Each call gives the explorer a new unique id, so one page
        (or notebook) can hold several, each with its own data.

        Returns
        -------
        str
        """
        uid = f"attnlib-explorer-{uuid.uuid4().hex[:12]}"
        data = _json_for_html(self._data())
        name = html.escape(self.title or "attention explorer")
        style = f"<style>{_asset('explorer.css')}</style>\n" if self.assets else ""
        code = f"<script>{_asset('explorer.js')}</script>\n" if self.assets else ""
        return (
            f"{style}"
            f'<div class="attnlib-explorer" id="{uid}" data-explorer="{self._type}">'
            f'<p class="attnlib-ex-fallback">{name}: this interactive view needs '
            "JavaScript.</p></div>\n"
            f'<script type="application/json" id="{uid}-data">{data}</script>\n'
            f"{code}"
            f'<script>window.attnlibExplorer.mount("{uid}");</script>\n'
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def save(self, path: str | Path) -> Path:
        """Write a standalone HTML document (UTF-8) holding the explorer.

        Parameters
        ----------
        path : str or pathlib.Path

        Returns
        -------
        pathlib.Path
            The path written.
        """
        path = Path(path)
        title = html.escape(self.title or "attnlib attention explorer")
        assets, self.assets = self.assets, True  # a document needs its own code
        try:
            fragment = self.to_html()
        finally:
            self.assets = assets
        path.write_text(
            "<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{title}</title>\n</head>\n"
            '<body style="margin: 16px auto; max-width: 760px; padding: 0 8px;">\n'
            f"{fragment}</body>\n</html>\n",
            encoding="utf-8",
        )
        return path


class AttentionExplorer(_Explorer):
    """Explore captured attention maps in the browser: kinds, layers, heads, tokens.

    The view has a kind selector (the kinds present), the *model view*: a
    layer x head grid of thumbnails of every head at once (click one, or
    focus it and press Enter, to show it below), and two views of the chosen
    layer, switched with the *Heatmap* and *Head view* buttons:

    - the **heatmap** of the chosen head, with token labels on both axes and
      a colour scale (0 to the head's largest weight, like
      :func:`attnlib.plotting.plot_attention`), where hovering a query (row
      label) or a cell shows where that query attends with the numbers,
      masked cells drawn grey and hatched;
    - the **head view** of BertViz (Vig, 2019, "A Multiscale Visualization of
      Attention in the Transformer Model", arXiv:1904.02679), drawn in SVG:
      the queries in a column on the left, the keys on the right, a line from
      each query to each key (masked pairs excepted) whose opacity is the
      weight, one colour per head. A coloured button per head turns its
      lines on or off (all heads are on at first; choosing a head in the
      grid or the *Head* menu shows it alone); hovering or focusing a token
      shows only its lines (the arrow keys move between tokens), and, for a
      sentence pair (``segments``), a filter keeps the lines from text A or
      B to text A or B (*A→A*, *A→B*, *B→A*, *B→B*).

    Then "Export PNG" and "Export SVG" buttons (in the heatmap view: the
    current heatmap as a figure), and an optional bar chart of a prediction. Unlike BertViz, the
    page needs no network (no script from a CDN) and no server.

    The weights travel compactly: quantised to ``bits`` bits over
    ``[lo, hi]`` (``lo = min(0, smallest weight)``, ``hi`` = largest weight,
    per kind) and base64-encoded, so a weight read back is within
    ``(hi - lo) / (2 * (2**bits - 1))`` of the captured one: at most
    ``1/510 ≈ 0.00196`` with 8 bits and ``1/131070 ≈ 7.6e-6`` with 16 bits
    for attention weights (which lie in ``[0, 1]``). The view prints 2
    decimals with 8 bits, 4 with 16. Masks travel as packed bits.

    Parameters
    ----------
    maps : attnlib.interpret.maps.AttentionMaps
        From :func:`~attnlib.interpret.maps.capture_attention`.
    title : str, optional
    prediction : mapping of str to float, optional
        Class name to probability (non-negative), drawn as bars.
    kind : {"encoder", "decoder", "cross"}, optional
        The kind shown first (default: the first present).
    layer, head : int
        The head shown first.
    bits : {8, 16}
        Quantisation of the weights.
    cmap : str
        A matplotlib colormap name.
    view : {"heatmap", "heads"}
        The view of the chosen layer shown first: the heatmap of one head or
        the head view of all its heads.
    segments : int or sequence of int or Tensor, optional
        For a sentence pair (text A and text B, as BERT takes them): the
        segment of each token of the self-attention (the ``"encoder"`` kind,
        else ``"decoder"``), ``0`` for text A and ``1`` for text B, e.g. the
        tokenizer's ``token_type_ids`` of the pair as they are (shape
        ``(L,)`` or ``(1, L)``); or an int, the position of the first token
        of text B. Adds the head view's A/B filter; both segments must be
        present.

    Raises
    ------
    ValueError
        For an index, ``bits``, ``view`` or ``segments`` out of range (the
        message names the argument, what it expected and what it got).

    Shape
    -----
    - ``maps[kind]``: ``(layers, H, Lq, Lk)``, weights usually in ``[0, 1]``
    - ``segments``: ``(L,)`` or ``(1, L)``, ``L`` the tokens of the
      self-attention kind (``Lq = Lk = L``)

    Examples
    --------
    >>> import torch
    >>> from attnlib.interpret.maps import capture_attention
    >>> from attnlib.transformer import EncoderClassifier
    >>> model = EncoderClassifier(20, 2, d_model=16, nhead=2, num_layers=2)
    >>> maps = capture_attention(model, torch.tensor([[5, 6, 7]]), labels=["a", "b", "c"])
    >>> explorer = AttentionExplorer(maps, title="Three tokens")
    >>> "attnlibExplorer.mount" in explorer.to_html()
    True

    A sentence pair in the head view: text A is ``a b``, text B is ``c``.

    >>> pair = AttentionExplorer(maps, view="heads", segments=[0, 0, 1])
    >>> pair.segments
    [0, 0, 1]
    >>> AttentionExplorer(maps, segments=2).segments  # the first token of text B
    [0, 0, 1]
    """

    _type = "attention"

    def __init__(
        self,
        maps: AttentionMaps,
        *,
        title: str | None = None,
        prediction: Mapping[str, float] | None = None,
        kind: str | None = None,
        layer: int = 0,
        head: int = 0,
        bits: int = 8,
        cmap: str = "viridis",
        view: str = "heatmap",
        segments=None,
    ) -> None:
        if not isinstance(maps, AttentionMaps):
            raise TypeError(
                "maps: expected an AttentionMaps (from capture_attention), "
                f"got {type(maps).__name__}"
            )
        self.maps = maps
        self.title = _check_title(title)
        self.kind = maps.kinds[0] if kind is None else check_choice(kind, "kind", maps.kinds)
        for name, value, size in (
            ("layer", layer, maps.num_layers(self.kind)),
            ("head", head, maps.num_heads(self.kind)),
        ):
            try:
                index = None if isinstance(value, bool) else operator.index(value)
            except TypeError:
                index = None
            if index is None or not 0 <= index < size:
                raise ValueError(
                    f"{name}: expected an index in [0, {size}) for kind {self.kind!r}, "
                    f"got {value!r}"
                )
        self.layer, self.head = operator.index(layer), operator.index(head)
        if bits not in (8, 16):
            raise ValueError(f"bits: expected 8 or 16, got {bits!r}")
        self.bits = bits
        self.cmap = cmap
        self._lut = _colormap(cmap)
        for k in maps.kinds:
            if not torch.isfinite(maps[k]).all():
                raise ValueError(f"maps[{k!r}]: expected finite weights, got NaN or inf")
        self.prediction = None if prediction is None else _check_prediction(prediction)
        self.view = check_choice(view, "view", VIEWS)
        self.segment_kind = next((k for k in ("encoder", "decoder") if k in maps), None)
        self.segments = None if segments is None else self._check_segments(segments)

    def _check_segments(self, segments) -> list[int]:
        """``segments`` as a list of 0 (text A) and 1 (text B), one per token of
        :attr:`segment_kind`, or a ``ValueError``/``TypeError`` that says what is wrong."""
        kind = self.segment_kind
        if kind is None:
            raise ValueError(
                "segments: expected maps with self-attention (the 'encoder' or 'decoder' "
                f"kind) to split into text A and B, got only {self.maps.kinds}"
            )
        n = len(self.maps.labels(kind)[0])
        where = f"the {n} tokens of the {kind!r} attention"
        if isinstance(segments, bool):
            raise TypeError("segments: expected an int or a sequence of segment ids, got bool")
        if isinstance(segments, (int, np.integer)):
            if not 1 <= segments < n:
                raise ValueError(
                    f"segments: expected the first token of text B, a position in [1, {n}) "
                    f"for {where}, got {int(segments)}"
                )
            return [0] * int(segments) + [1] * (n - int(segments))
        if isinstance(segments, str):
            raise TypeError("segments: expected an int or a sequence of segment ids, got str")
        try:
            if isinstance(segments, Tensor):
                segments = segments.detach().cpu().numpy()
            ids = np.asarray(segments)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                "segments: expected an int or a sequence of segment ids, "
                f"got {type(segments).__name__}"
            ) from exc
        if ids.ndim == 2 and ids.shape[0] == 1:
            ids = ids[0]  # the token_type_ids of one text pair, (1, L)
        if ids.ndim != 1 or ids.shape[0] != n:
            raise ValueError(
                f"segments: expected {n} segment ids, shape ({n},) or (1, {n}), one per token "
                f"of {where}, got shape {tuple(ids.shape)}"
            )
        if not (np.issubdtype(ids.dtype, np.integer) or np.issubdtype(ids.dtype, np.bool_)):
            if not (np.issubdtype(ids.dtype, np.floating) and np.all(ids == np.round(ids))):
                raise TypeError(f"segments: expected integer segment ids, got dtype {ids.dtype}")
        values = sorted({int(v) for v in ids.tolist()})
        if values != [0, 1]:
            raise ValueError(
                "segments: expected the segment ids 0 (text A) and 1 (text B), both present "
                f"(a sentence pair), got the values {values}"
            )
        return [int(v) for v in ids.tolist()]

    @property
    def max_error(self) -> float:
        """The largest difference between a weight and its quantised value, over the kinds."""
        errors = []
        for k in self.maps.kinds:
            w = self.maps[k]
            lo, hi = min(0.0, float(w.min())), float(w.max())
            hi = hi if hi > lo else lo + 1.0
            errors.append((hi - lo) / (2 * (2**self.bits - 1)))
        return max(errors)

    def _data(self) -> dict:
        kinds = []
        for k in self.maps.kinds:
            w = self.maps[k]  # (layers, heads, query, key)
            query, key = self.maps.labels(k)
            codes, lo, hi = _quantize(w, self.bits)
            mask = self.maps.mask(k)
            kinds.append(
                {
                    "name": k,
                    "label": _KIND_LABELS[k],
                    "layers": int(w.shape[0]),
                    "heads": int(w.shape[1]),
                    "query": [str(t) for t in query],
                    "key": [str(t) for t in key],
                    "lo": lo,
                    "hi": hi,
                    "weights": codes,
                    "mask": None if mask is None else _b64(np.packbits(mask.numpy().ravel())),
                    "segments": self.segments if k == self.segment_kind else None,
                }
            )
        return {
            "type": "attention",
            "title": self.title,
            "bits": self.bits,
            "digits": 2 if self.bits == 8 else 4,
            "cmap": self._lut,
            "kind": self.kind,
            "layer": self.layer,
            "head": self.head,
            "view": self.view,
            "kinds": kinds,
            "prediction": self.prediction,
        }

    def __repr__(self) -> str:
        return f"AttentionExplorer({self.maps!r}, title={self.title!r}, view={self.view!r})"


def _check_prediction(prediction) -> list[list]:
    if not isinstance(prediction, Mapping):
        raise TypeError(
            "prediction: expected a mapping of class name to probability, "
            f"got {type(prediction).__name__}"
        )
    out = []
    for name, value in prediction.items():
        try:
            p = float(value)
        except (TypeError, ValueError):
            p = math.nan
        if not (math.isfinite(p) and p >= 0):
            raise ValueError(
                f"prediction[{name!r}]: expected a finite non-negative probability, got {value!r}"
            )
        out.append([str(name), p])
    if not out:
        raise ValueError("prediction: expected at least one class, got an empty mapping")
    return out


# -- the classifier in the page ---------------------------------------------------------


def _exact_type(obj, expected: type, name: str) -> None:
    if type(obj) is not expected:
        got = "None" if obj is None else type(obj).__name__
        raise TypeError(
            f"{name}: expected a {expected.__name__} (the JavaScript reproduces exactly "
            f"that computation), got {got}"
        )


def _modules_by_role(model: nn.Module) -> dict:
    """The one place that knows where an EncoderClassifier keeps the modules whose
    parameters the JavaScript reads: role name to module, each layer's under ``"layers"``
    (``"final_norm"`` is ``None`` without a final LayerNorm).

    :func:`_parameter_map` turns it into the exported map of role to state-dict key, so a
    renamed or moved attribute needs a change here only (and until then raises here, in
    Python, rather than breaking the page).
    """
    try:
        return {
            "embedding": model.embed.embedding,
            "layers": [
                {
                    "q": layer.self_attn.q_proj,
                    "k": layer.self_attn.k_proj,
                    "v": layer.self_attn.v_proj,
                    "out": layer.self_attn.out_proj,
                    "ff1": layer.ff.linear1,
                    "ff2": layer.ff.linear2,
                    "norm1": layer.norm1,
                    "norm2": layer.norm2,
                }
                for layer in model.encoder.layers
            ],
            "final_norm": model.encoder.norm,
            "head": model.head,
        }
    except AttributeError as exc:
        raise TypeError(
            f"model: {exc}: the explorer finds an EncoderClassifier's parameters through "
            "these attributes; update attnlib.interpret.explorer._modules_by_role to the "
            "model's layout"
        ) from None


#: The module type of each role of :func:`_modules_by_role`.
_ROLE_TYPES: dict[str, type] = {
    "embedding": nn.Embedding,
    **dict.fromkeys(("q", "k", "v", "out", "ff1", "ff2", "head"), nn.Linear),
    **dict.fromkeys(("norm1", "norm2", "final_norm"), nn.LayerNorm),
}
#: The parameters the JavaScript reads of each type of module, with the value that stands
#: in for one that is ``None`` (a bias or a LayerNorm affine turned off).
_PARAMETERS: dict[type, dict[str, float]] = {
    nn.Embedding: {"weight": math.nan},  # never None
    nn.Linear: {"weight": math.nan, "bias": 0.0},  # the weight is never None
    nn.LayerNorm: {"weight": 1.0, "bias": 0.0},
}


def _leaves(roles: dict) -> list[tuple[str, str, object]]:
    """``(where, role, value)`` of every entry of a role dict (of modules or of keys), the
    layers' included: ``("embedding", "embedding", ...)``, ``("layers[0].q", "q", ...)``."""
    items = []
    for role, value in roles.items():
        if role == "layers":
            for i, layer in enumerate(value):
                items += [(f"layers[{i}].{r}", r, v) for r, v in layer.items()]
        else:
            items.append((role, role, value))
    return items


def _check_classifier(model: nn.Module) -> None:
    """Raise unless the JavaScript forward pass reproduces ``model`` exactly."""
    from ..attention import MultiHeadAttention
    from ..positional import SinusoidalPositionalEncoding, sinusoidal_encoding
    from ..transformer import _ACTIVATIONS, EncoderClassifier, EncoderLayer, TransformerEncoder

    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an EncoderClassifier, got {type(model).__name__}")
    if type(model) is not EncoderClassifier:
        raise TypeError(
            "model: expected an attnlib.transformer.EncoderClassifier (the only model the "
            f"explorer's JavaScript reproduces), got {type(model).__name__}; "
            "use AttentionExplorer(capture_attention(model, ...)) for other models"
        )
    roles = _modules_by_role(model)
    names = {module: name for name, module in model.named_modules()}
    for where, role, module in _leaves(roles):
        if module is None and role == "final_norm":
            continue
        name = f"model.{names[module]}" if module in names else f"model (role {where})"
        _exact_type(module, _ROLE_TYPES[role], name)
    check_choice(model.pooling, "model.pooling", ("mean", "first"))
    _exact_type(model.embed.positions, SinusoidalPositionalEncoding, "model.embed.positions")
    _exact_type(model.encoder, TransformerEncoder, "model.encoder")
    table = model.embed.positions.table
    d_model = model.embed.embedding.embedding_dim
    if d_model % 2 or not torch.equal(
        table.float().cpu(), sinusoidal_encoding(table.shape[0], d_model)
    ):
        raise ValueError(
            "model.embed.positions: expected the standard sinusoidal table "
            "(sinusoidal_encoding, base 10000), got a modified one"
        )
    for i, layer in enumerate(model.encoder.layers):
        where = f"model.encoder.layers[{i}]"
        _exact_type(layer, EncoderLayer, where)
        attn = layer.self_attn
        _exact_type(attn, MultiHeadAttention, f"{where}.self_attn")
        if attn.weights_hook is not None:
            raise ValueError(
                f"{where}.self_attn.weights_hook: expected None (the JavaScript cannot "
                f"reproduce an intervention), got {attn.weights_hook!r}"
            )
        if attn.embed_dim != d_model or attn.kdim != d_model or attn.vdim != d_model:
            raise ValueError(
                f"{where}.self_attn: expected embed_dim, kdim and vdim {d_model}, got "
                f"{attn.embed_dim}, {attn.kdim} and {attn.vdim}"
            )
        if not attn.batch_first:
            raise ValueError(f"{where}.self_attn.batch_first: expected True, got False")
        activation = layer.ff.activation
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"{where}.ff.activation: expected one of {sorted(_ACTIVATIONS)} (the "
                f"activations the JavaScript implements), got {activation!r}"
            )
    for name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) and tuple(module.normalized_shape) != (d_model,):
            raise ValueError(
                f"model.{name}.normalized_shape: expected ({d_model},), "
                f"got {tuple(module.normalized_shape)}"
            )


def _check_tokenizer(tokenizer, model: nn.Module) -> None:
    from ..data.text import SubwordTokenizer, Vocabulary, WordTokenizer

    if isinstance(tokenizer, SubwordTokenizer):
        raise TypeError(
            "tokenizer: a SubwordTokenizer is not supported: the explorer's JavaScript "
            "reproduces only attnlib's WordTokenizer (not the byte-pair-encoding merges of "
            "Hugging Face tokenizers); use AttentionExplorer(capture_attention(model, ...)) "
            "or attnlib.interpret.widgets.classifier_widget instead"
        )
    if not isinstance(tokenizer, WordTokenizer) or not isinstance(tokenizer.vocab, Vocabulary):
        raise TypeError(
            "tokenizer: expected an attnlib WordTokenizer (the one tokenizer the JavaScript "
            f"reproduces), got {type(tokenizer).__name__}"
        )
    vocab_size = model.embed.embedding.num_embeddings
    if len(tokenizer) > vocab_size:
        raise ValueError(
            f"tokenizer: expected at most {vocab_size} tokens (the model's vocab_size), "
            f"got {len(tokenizer)}"
        )


def _check_classes(classes, model: nn.Module) -> list[str]:
    if isinstance(classes, str) or not isinstance(classes, Sequence):
        raise TypeError(f"classes: expected a sequence of names, got {type(classes).__name__}")
    classes = [str(c) for c in classes]
    if len(classes) != model.head.out_features:
        raise ValueError(
            f"classes: expected {model.head.out_features} names (the model's outputs), "
            f"got {len(classes)}"
        )
    return classes


def _float32(t: Tensor | None, like: tuple[int, ...], fill: float) -> np.ndarray:
    """A parameter as little-endian float32 (a missing bias or affine as ``fill``)."""
    if t is None:
        return np.full(like, fill, dtype="<f4")
    return t.detach().cpu().to(torch.float32).numpy().astype("<f4")


def _parameter_map(model: nn.Module) -> tuple[dict, dict[str, np.ndarray]]:
    """The exported parameter map, role to state-dict key, and the arrays by key.

    The roles are :func:`_modules_by_role`'s, each module's role ``r`` giving one entry
    ``r_weight``, ``r_bias``, ... per parameter in :data:`_PARAMETERS`; the keys are the
    modules' names in ``model.named_modules()``, so they follow the model's layout. A
    parameter that is ``None`` keeps the key it would have and is exported as its neutral
    value; a missing final LayerNorm has ``None`` keys. Raises where a module is not one
    of the model's, or where a parameter of the model is not in the map (the page would
    ignore it).
    """
    names = {module: name for name, module in model.named_modules()}
    parameters = dict(model.named_parameters(remove_duplicate=False))
    arrays: dict[str, np.ndarray] = {}

    def entries(where: str, role: str, module: nn.Module | None) -> dict[str, str | None]:
        kind = _ROLE_TYPES[role]
        if module is None:
            return {f"{role}_{p}": None for p in _PARAMETERS[kind]}
        if module not in names:
            raise ValueError(f"model: the module of role {where} is not one of the model's")
        like = (
            tuple(module.normalized_shape)
            if isinstance(module, nn.LayerNorm)
            else (getattr(module, "out_features", 0),)
        )
        out = {}
        for param, fill in _PARAMETERS[kind].items():
            key = f"{names[module]}.{param}" if names[module] else param
            value = getattr(module, param)
            if value is not None and parameters.get(key) is not value:
                raise ValueError(f"model: {key} is not the parameter of role {where}_{param}")
            arrays[key] = _float32(value, like, fill)
            out[f"{role}_{param}"] = key
        return out

    params: dict = {}
    for role, value in _modules_by_role(model).items():
        if role == "layers":
            params[role] = [
                {
                    k: v
                    for r, m in layer.items()
                    for k, v in entries(f"layers[{i}].{r}", r, m).items()
                }
                for i, layer in enumerate(value)
            ]
        else:
            params.update(entries(role, role, value))
    ignored = [name for name in parameters if name not in arrays]
    if ignored:
        raise ValueError(
            f"model: the explorer's map has no role for the parameters {ignored}, which "
            "the page would ignore; add their modules to "
            "attnlib.interpret.explorer._modules_by_role and the JavaScript"
        )
    return params, arrays


def export_classifier(model: nn.Module, tokenizer, classes: Sequence[str]) -> dict:
    """Export an :class:`~attnlib.transformer.EncoderClassifier` and its tokenizer for
    :class:`ClassifierExplorer`'s JavaScript.

    The JavaScript finds every tensor through ``params``, a map of role (what the
    forward pass does with the tensor) to state-dict key, built from the model's modules:
    a renamed or moved attribute changes the keys, not the page's code.

    Parameters
    ----------
    model : attnlib.transformer.EncoderClassifier
        Exactly that class, with its standard layers (relu or gelu activation,
        no ``weights_hook`` intervention); anything else raises, since the
        page could not reproduce it.
    tokenizer : attnlib.data.text.WordTokenizer
        The tokenizer the model was trained with (a ``SubwordTokenizer``
        raises ``TypeError``).
    classes : sequence of str
        Class names in id order.

    Returns
    -------
    dict
        JSON-serialisable:

        - ``format``: ``"attnlib-classifier/2"`` (the page refuses any other);
        - ``config``: sizes, ``norm_first``, ``final_norm``, ``pooling``,
          ``activation``, ``pad_idx``, ``max_len``, the embedding ``scale``, the
          LayerNorm epsilons by role in ``norm_eps`` (``{"layers": [{"norm1": eps,
          "norm2": eps}, ...], "final_norm": eps or None}``) and by module name in
          ``eps``, ...;
        - ``tokenizer``: ``tokens`` in id order, ``lowercase``,
          ``remove_punctuation``, ``unk_idx``, ``pad_idx``;
        - ``classes``;
        - ``params``: role to state-dict key, ``<module role>_<parameter>``::

            {"embedding_weight": "embed.embedding.weight",
             "layers": [{"q_weight": "encoder.layers.0.self_attn.q_proj.weight",
                         "q_bias": "encoder.layers.0.self_attn.q_proj.bias",
                         ...  # k_, v_, out_ (attention), ff1_, ff2_ (feed-forward),
                              # norm1_, norm2_ (LayerNorms): _weight and _bias
                        }, ...],  # one per layer
             "final_norm_weight": "encoder.norm.weight",  # None without a final norm
             "final_norm_bias": "encoder.norm.bias",
             "head_weight": "head.weight", "head_bias": "head.bias"}

          Every key that is not ``None`` is in ``tensors``, and every parameter
          of the model is in the map;
        - ``tensors``: state-dict key to ``[shape, base64]``, the bytes of the
          little-endian float32 values (exact for a float32 model; a missing
          bias or LayerNorm affine is exported as zeros or ones, under the key
          it would have).

    Raises
    ------
    TypeError
        For another model or tokenizer, or a module that is not where
        ``_modules_by_role`` looks for it.
    ValueError
        For what the page cannot reproduce, or a parameter the map misses.

    Shape
    -----
    - ``tensors[params["embedding_weight"]]``: ``(vocab_size, D)``
    - ``tensors[params["layers"][i][r + "_weight"]]``: ``(D, D)`` for
      ``r`` in ``q``, ``k``, ``v``, ``out``; ``(dim_feedforward, D)`` for
      ``ff1``; ``(D, dim_feedforward)`` for ``ff2``; ``(D,)`` for
      ``norm1``, ``norm2``
    - ``tensors[params["layers"][i][r + "_bias"]]``: ``(dim_feedforward,)`` for
      ``ff1``, else ``(D,)``
    - ``tensors[params["final_norm_weight"]]``, ``..._bias``: ``(D,)``
    - ``tensors[params["head_weight"]]``: ``(num_classes, D)``;
      ``..._bias``: ``(num_classes,)``
    """
    _check_classifier(model)
    _check_tokenizer(tokenizer, model)
    classes = _check_classes(classes, model)
    params, arrays = _parameter_map(model)
    tensors = {key: [list(a.shape), _b64(a)] for key, a in arrays.items()}
    for where, _, key in _leaves(params):
        if key is not None and key not in tensors:  # by construction; the page relies on it
            raise RuntimeError(f"params[{where!r}]: {key!r} is not among the tensors")
    roles = _modules_by_role(model)
    embedding, final_norm = roles["embedding"], roles["final_norm"]
    layers = list(model.encoder.layers)
    first = layers[0]
    activations = {layer.ff.activation for layer in layers}
    norm_first = {layer.norm_first for layer in layers}
    if len(activations) != 1 or len(norm_first) != 1:
        raise ValueError(
            "model.encoder.layers: expected one activation and one norm_first for all layers, "
            f"got {sorted(activations)} and {sorted(norm_first)}"
        )
    config = {
        "d_model": embedding.embedding_dim,
        "nhead": first.self_attn.num_heads,
        "num_layers": len(layers),
        "dim_feedforward": roles["layers"][0]["ff1"].out_features,
        "num_classes": roles["head"].out_features,
        "vocab_size": embedding.num_embeddings,
        "activation": first.ff.activation,
        "norm_first": bool(first.norm_first),
        "final_norm": final_norm is not None,
        "pooling": model.pooling,
        "pad_idx": int(model.pad_idx),
        "max_len": int(model.embed.positions.table.shape[0]),
        "base": 10000.0,
        "scale": float(model.embed.scale),
        "norm_eps": {
            "layers": [
                {r: float(m.eps) for r, m in layer.items() if _ROLE_TYPES[r] is nn.LayerNorm}
                for layer in roles["layers"]
            ],
            "final_norm": None if final_norm is None else float(final_norm.eps),
        },
        "eps": {
            name: float(m.eps) for name, m in model.named_modules() if isinstance(m, nn.LayerNorm)
        },
    }
    for i, (layer, layer_roles) in enumerate(zip(layers, roles["layers"], strict=True)):
        if layer_roles["ff1"].out_features != config["dim_feedforward"] or (
            layer.self_attn.num_heads != config["nhead"]
        ):
            raise ValueError(
                f"model.encoder.layers[{i}]: expected the same heads and feed-forward width as "
                "layer 0"
            )
    return {
        "format": CLASSIFIER_FORMAT,
        "config": config,
        "tokenizer": {
            "tokens": list(tokenizer.vocab.itos),
            "lowercase": bool(tokenizer.lowercase),
            "remove_punctuation": bool(tokenizer.remove_punctuation),
            "unk_idx": int(tokenizer.unk_idx),
            "pad_idx": int(tokenizer.pad_idx),
        },
        "classes": classes,
        "params": params,
        "tensors": tensors,
    }


class ClassifierExplorer(_Explorer):
    """Type your own sentence: a classifier that runs in the page.

    The page holds the model's weights and the tokenizer (see
    :func:`export_classifier`) and runs the tokenizer and the forward pass in
    JavaScript (in float64 from the exact float32 weights: the attention
    weights and probabilities agree with PyTorch's to about 1e-6): a text box
    (pre-filled with ``text`` or the first example, plus one button per
    example), the layer x head grid, the heatmap of the chosen head and the
    predicted class probabilities, all updated as you type. Unknown words are
    read as ``<unk>`` (shown in italics) and a text longer than the model's
    positions is cut to them, as :func:`attnlib.inference.predict` does.

    The weights are exported when the HTML is made (``to_html()``,
    ``_repr_html_``, ``save()``), so a model trained further shows its new
    weights the next time it is displayed.

    Parameters
    ----------
    model : attnlib.transformer.EncoderClassifier
        Exactly that class (see :func:`export_classifier`); another model, an
        activation other than relu/gelu or an attention intervention raise.
    tokenizer : attnlib.data.text.WordTokenizer
        A ``SubwordTokenizer`` raises ``TypeError``.
    classes : sequence of str
        Class names in id order.
    examples : sequence of str
        Example sentences, one button each.
    text : str, optional
        The sentence shown first (default: the first example, or none).
    title : str, optional
    cmap : str
        A matplotlib colormap name.

    Examples
    --------
    >>> from attnlib.data.text import WordTokenizer
    >>> from attnlib.transformer import EncoderClassifier
    >>> tok = WordTokenizer.fit(["a good film", "a dull film"])
    >>> model = EncoderClassifier(len(tok), 2, d_model=16, nhead=2, num_layers=1)
    >>> explorer = ClassifierExplorer(model, tok, ["negative", "positive"], text="a good film")
    >>> page = explorer.to_html()
    """

    _type = "classifier"

    def __init__(
        self,
        model: nn.Module,
        tokenizer,
        classes: Sequence[str],
        *,
        examples: Sequence[str] = (),
        text: str | None = None,
        title: str | None = None,
        cmap: str = "viridis",
    ) -> None:
        _check_classifier(model)
        _check_tokenizer(tokenizer, model)
        self.classes = _check_classes(classes, model)
        if isinstance(examples, str) or not isinstance(examples, Sequence):
            raise TypeError(f"examples: expected a sequence of str, got {type(examples).__name__}")
        for i, e in enumerate(examples):
            if not isinstance(e, str):
                raise TypeError(f"examples[{i}]: expected a str, got {type(e).__name__}")
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text: expected a str or None, got {type(text).__name__}")
        self.model, self.tokenizer = model, tokenizer
        self.examples = list(examples)
        self.text = text if text is not None else (self.examples[0] if self.examples else "")
        self.title = _check_title(title)
        self.cmap = cmap
        self._lut = _colormap(cmap)

    def _data(self) -> dict:
        return {
            "type": "classifier",
            "title": self.title,
            "digits": 4,
            "cmap": self._lut,
            "model": export_classifier(self.model, self.tokenizer, self.classes),
            "examples": self.examples,
            "text": self.text,
        }

    def __repr__(self) -> str:
        return (
            f"ClassifierExplorer({type(self.model).__name__}, classes={self.classes!r}, "
            f"text={self.text!r})"
        )
