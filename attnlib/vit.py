"""The Vision Transformer, made of attnlib's own layers, able to load Hugging Face weights.

A Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words:
Transformers for Image Recognition at Scale", arXiv:2010.11929) reads an image
as a sequence: it cuts the image into non-overlapping ``p x p`` patches
(:class:`PatchEmbedding`), projects each flattened patch to ``D`` features,
prepends a learned class token, adds position embeddings and runs the
encoder of "Attention Is All You Need" (pre-norm, GELU). The class token's
final vector, or the mean of the patch vectors, goes through a linear head.

- :class:`PatchEmbedding`: patches -> ``(B, N, D)``, and its equivalent
  ``nn.Conv2d(kernel_size=p, stride=p)`` (:meth:`PatchEmbedding.to_conv`,
  :meth:`PatchEmbedding.from_conv`);
- :func:`sincos_2d_positions`: the fixed 2-D sine-cosine position embedding of
  MAE (He et al., 2022, arXiv:2111.06377) and of "Better plain ViT baselines
  for ImageNet-1k" (Beyer et al., 2022, arXiv:2205.01580);
- :class:`VisionTransformer`: the model; its attention maps come from
  :func:`attnlib.capture.record_attention` (layers
  ``encoder.layers.<i>.self_attn``) and its positions are labelled by
  :meth:`VisionTransformer.token_labels` (``"[CLS]"``, ``"r0c0"``, ...), which
  :func:`attnlib.interpret.maps.capture_attention` uses;
  :meth:`VisionTransformer.from_huggingface` copies a ``transformers`` ViT.

The sequence of a ViT: ``N = (H / p) (W / p)`` patch tokens in row-major
order (``r0c0, r0c1, ...``), after the class token when there is one, so
``L = N + 1`` (``"cls"`` pooling) or ``L = N`` (``"mean"`` pooling).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import check_choice, check_positive_int, check_rank, shape_str
from .positional import LearnedPositionalEmbedding
from .transformer import EncoderLayer, TransformerEncoder

__all__ = [
    "PatchEmbedding",
    "sincos_2d_positions",
    "VisionTransformer",
    "huggingface_names",
]


def _pair(value: int | tuple[int, int] | list[int], name: str) -> tuple[int, int]:
    """An int ``s`` as ``(s, s)``; a pair of positive ints as a tuple."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name}: expected an int or a pair (height, width), got {value!r}")
    for v in pair:
        check_positive_int(v, name)
    return pair  # type: ignore[return-value]


class PatchEmbedding(nn.Module):
    """Cut images into non-overlapping ``p x p`` patches and project each one.

    The patches are taken in row-major order of the grid (left to right,
    then top to bottom); each is flattened channel by channel, each channel
    row by row, which is the layout of a ``Conv2d`` weight ``(D, C, p, p)``:
    the projection is the convolution ``Conv2d(C, D, kernel_size=p, stride=p)``
    written as a matrix product (:meth:`to_conv`, :meth:`from_conv`).

    Parameters
    ----------
    image_size : int or tuple of int
        Height and width of the images the layer reads.
    patch_size : int
        Side ``p`` of a square patch; must divide the height and the width.
    in_channels : int
        Channels ``C`` (1 for grey images, 3 for RGB).
    d_model : int
        Features ``D`` of a patch token.

    Attributes
    ----------
    proj : torch.nn.Linear
        ``C p^2 -> D``.
    grid_size : tuple of int
        Patches per column and per row, ``(H / p, W / p)``.
    num_patches : int
        ``N = (H / p) (W / p)``.

    Shape
    -----
    - images: ``(B, C, H, W)``; output: ``(B, N, D)``

    Examples
    --------
    >>> embed = PatchEmbedding(8, 4, 1, 16)
    >>> embed(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 4, 16])
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        patch_size: int,
        in_channels: int,
        d_model: int,
    ) -> None:
        super().__init__()
        self.image_size = _pair(image_size, "image_size")
        self.patch_size = check_positive_int(patch_size, "patch_size")
        self.in_channels = check_positive_int(in_channels, "in_channels")
        check_positive_int(d_model, "d_model")
        if any(s % patch_size for s in self.image_size):
            raise ValueError(
                f"image_size: expected a height and width divisible by patch_size "
                f"({patch_size}), got image_size {self.image_size} and patch_size {patch_size}"
            )
        self.grid_size = (self.image_size[0] // patch_size, self.image_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Linear(in_channels * patch_size * patch_size, d_model)

    def patches(self, images: Tensor) -> Tensor:
        """The flattened patches, before the projection (checked).

        Shape
        -----
        - images: ``(B, C, H, W)``; output: ``(B, N, C p^2)``
        """
        check_rank(images, "images", (4,), "(batch, channels, height, width)")
        if images.shape[1] != self.in_channels:
            raise ValueError(
                f"images: expected {self.in_channels} channel(s) in dimension 1, "
                f"got shape {shape_str(images.shape)}"
            )
        if tuple(images.shape[2:]) != self.image_size:
            raise ValueError(
                f"images: expected height and width {self.image_size}, "
                f"got shape {shape_str(images.shape)}"
            )
        return self._patches(images)

    def _patches(self, images: Tensor) -> Tensor:
        b, c = images.shape[:2]
        (gh, gw), p = self.grid_size, self.patch_size
        x = images.reshape(b, c, gh, p, gw, p)  # (B, C, gh, p, gw, p)
        x = x.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
        return x.reshape(b, gh * gw, c * p * p)  # (B, N, C p^2)

    def forward(self, images: Tensor) -> Tensor:
        return self.proj(self.patches(images))  # (B, N, D)

    def to_conv(self) -> nn.Conv2d:
        """The same map as ``nn.Conv2d(C, D, kernel_size=p, stride=p)`` (weights
        copied), whose output ``(B, D, H/p, W/p)`` flattened and transposed is
        this layer's ``(B, N, D)``."""
        d, p = self.proj.out_features, self.patch_size
        conv = nn.Conv2d(self.in_channels, d, kernel_size=p, stride=p)
        conv = conv.to(device=self.proj.weight.device, dtype=self.proj.weight.dtype)
        with torch.no_grad():
            conv.weight.copy_(self.proj.weight.reshape(d, self.in_channels, p, p))
            conv.bias.copy_(self.proj.bias)
        return conv

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, image_size: int | tuple[int, int]) -> PatchEmbedding:
        """A copy of a patchifying convolution (square kernel = stride, no padding,
        dilation or groups, with a bias), such as Hugging Face's ViT patch
        projection, for images of ``image_size`` (a convolution does not know it).
        """
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"conv: expected a torch.nn.Conv2d, got {type(conv).__name__}")
        k = conv.kernel_size
        padded = conv.padding != "valid" if isinstance(conv.padding, str) else any(conv.padding)
        if k[0] != k[1] or tuple(conv.stride) != tuple(k) or padded:
            raise ValueError(
                f"conv: expected a square kernel equal to the stride and no padding, got "
                f"kernel_size {k}, stride {conv.stride}, padding {conv.padding}"
            )
        if tuple(conv.dilation) != (1, 1) or conv.groups != 1 or conv.bias is None:
            raise ValueError(
                f"conv: expected dilation (1, 1), groups 1 and a bias, got dilation "
                f"{conv.dilation}, groups {conv.groups}, bias {conv.bias is not None}"
            )
        new = cls(image_size, k[0], conv.in_channels, conv.out_channels)
        new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            new.proj.weight.copy_(conv.weight.reshape(conv.out_channels, -1))
            new.proj.bias.copy_(conv.bias)
        return new


def sincos_2d_positions(
    grid_size: int | tuple[int, int],
    d_model: int,
    *,
    base: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    r"""The fixed 2-D sine-cosine position embedding of a grid of patches.

    A quarter of the features encode the row :math:`r` by sines, a quarter by
    cosines, and the other half the column :math:`c` the same way:

    .. math::

        \mathrm{PE}(r, c) = [\sin(r\omega), \cos(r\omega), \sin(c\omega), \cos(c\omega)],
        \qquad \omega_i = base^{-i / (D/4)},\ i = 0, \dots, D/4 - 1

    This is MAE's embedding (He et al., 2022, arXiv:2111.06377), as Hugging
    Face's ``build_2d_sinusoidal_position_embedding`` computes it (the row
    half first; MAE's released checkpoints put the column half first), and
    the one of "Better plain ViT baselines for ImageNet-1k" (Beyer et al.,
    2022, arXiv:2205.01580), whose code divides by :math:`D/4 - 1` instead of
    :math:`D/4` and puts the column first: the same idea, other numbers.

    Parameters
    ----------
    grid_size : int or tuple of int
        Rows and columns of patches (an int: a square grid).
    d_model : int
        Features ``D``; must be divisible by 4.
    base : float
        The wavelengths grow geometrically from :math:`2\pi` to
        :math:`2\pi \cdot base`.
    dtype : torch.dtype
        Of the result (computed in float64).

    Returns
    -------
    Tensor
        Row ``r W + c`` holds the position of the patch in row ``r``,
        column ``c`` (row-major, the order of :class:`PatchEmbedding`).

    Shape
    -----
    - output: ``(grid_h * grid_w, D)``
    """
    gh, gw = _pair(grid_size, "grid_size")
    check_positive_int(d_model, "d_model")
    if d_model % 4:
        raise ValueError(
            f"d_model: expected a multiple of 4 (sin and cos of the row and of the column), "
            f"got {d_model}"
        )
    if not base > 0:
        raise ValueError(f"base: expected a positive number, got {base!r}")
    quarter = d_model // 4
    omega = base ** -(torch.arange(quarter, dtype=torch.float64) / quarter)  # (D/4,)
    rows, cols = torch.meshgrid(
        torch.arange(gh, dtype=torch.float64), torch.arange(gw, dtype=torch.float64), indexing="ij"
    )  # (gh, gw) each
    r = rows.flatten()[:, None] * omega  # (N, D/4)
    c = cols.flatten()[:, None] * omega  # (N, D/4)
    return torch.cat([r.sin(), r.cos(), c.sin(), c.cos()], dim=1).to(dtype)  # (N, D)


class _FixedPositions(nn.Module):
    """Add a fixed table of positions (a buffer, not a parameter).

    Shape
    -----
    - x: ``(B, L, D)``; table: ``(L, D)``; output: ``(B, L, D)``
    """

    def __init__(self, table: Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.table.to(x.dtype)  # (B, L, D)


class VisionTransformer(nn.Module):
    """An image classifier: patches, a class token, positions, a pre-norm encoder, a head.

    Dosovitskiy et al. (2021, "An Image is Worth 16x16 Words", arXiv:2010.11929):

    1. :class:`PatchEmbedding` cuts the image into ``N`` patches -> ``(B, N, D)``;
    2. ``"cls"`` pooling puts a learned class token first (token 0);
    3. position embeddings are added: ``"learned"`` (one vector per token,
       the class token's too, initialised with std 0.02 as ViT) or
       ``"sincos"`` (:func:`sincos_2d_positions`, fixed; the class token
       gets zeros); then dropout;
    4. a :class:`~attnlib.transformer.TransformerEncoder` of
       :class:`~attnlib.transformer.EncoderLayer` and a final LayerNorm (when
       the layers are pre-norm);
    5. the class token's vector (``"cls"``) or the mean of the patch tokens
       (``"mean"``, Beyer et al., 2022, arXiv:2205.01580) goes through a linear head.

    Parameters
    ----------
    image_size : int or tuple of int
    patch_size : int
        Must divide the height and the width.
    num_classes : int
        Outputs of the head; 0: no head, ``forward`` returns the pooled
        features ``(B, D)`` (as Hugging Face's ``ViTForImageClassification``
        with ``num_labels=0``).
    in_channels : int
    d_model, nhead, num_layers, dim_feedforward : int
        ViT-Base: 768, 12, 12, 3072.
    dropout : float
        After the positions, inside the layers and on the attention weights.
    pooling : {"cls", "mean"}
    positions : {"learned", "sincos"}
    norm_first : bool
        Pre-norm layers (ViT's) and a final LayerNorm; ``False``: post-norm
        layers, whose last LayerNorm is already the final one.
    activation : {"gelu", "gelu_tanh", "relu"}
    layer_norm_eps : float
        1e-6 in the paper's code; Hugging Face's configurations use 1e-12.
    qkv_bias : bool
        Biases in the query, key and value projections (the output
        projection always has one).

    Attributes
    ----------
    patch_embed : PatchEmbedding
    cls_token : torch.nn.Parameter or None
        ``(1, 1, D)``, ``None`` with ``"mean"`` pooling.
    position : torch.nn.Module
        :class:`~attnlib.positional.LearnedPositionalEmbedding` of ``L``
        positions, or a fixed table ``position.table`` ``(L, D)``.
    encoder : attnlib.transformer.TransformerEncoder
        :func:`attnlib.capture.record_attention` records the weights
        ``(B, H, L, L)`` under ``encoder.layers.<i>.self_attn``.
    head : torch.nn.Linear or torch.nn.Identity
    grid_size : tuple of int
        Patches per column and per row.
    num_patches : int
        ``N``.

    Shape
    -----
    - images: ``(B, C, H, W)``
    - output: logits ``(B, num_classes)`` (``(B, D)`` when ``num_classes`` is 0)
    - :meth:`features`: ``(B, L, D)``, ``L = N + 1`` with ``"cls"`` pooling, else ``N``

    Examples
    --------
    >>> vit = VisionTransformer(8, 4, 10, d_model=16, nhead=2, num_layers=1)
    >>> vit(torch.zeros(3, 1, 8, 8)).shape
    torch.Size([3, 10])
    >>> vit.token_labels()
    ['[CLS]', 'r0c0', 'r0c1', 'r1c0', 'r1c1']
    """

    def __init__(
        self,
        image_size: int | tuple[int, int],
        patch_size: int,
        num_classes: int,
        *,
        in_channels: int = 1,
        d_model: int = 64,
        nhead: int = 4,
        num_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.0,
        pooling: str = "cls",
        positions: str = "learned",
        norm_first: bool = True,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-6,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.pooling = check_choice(pooling, "pooling", ("cls", "mean"))
        check_choice(positions, "positions", ("learned", "sincos"))
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(
                f"num_classes: expected a non-negative integer (0: no head), got {num_classes!r}"
            )
        check_positive_int(num_layers, "num_layers")
        self.num_classes = num_classes
        self.patch_embed = PatchEmbedding(image_size, patch_size, in_channels, d_model)
        self.grid_size = self.patch_embed.grid_size
        self.num_patches = self.patch_embed.num_patches
        has_cls = pooling == "cls"
        # ViT's code starts the class token at zero; it is learned like any weight
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d_model)) if has_cls else None
        length = self.num_patches + int(has_cls)
        if positions == "learned":
            self.position: nn.Module = LearnedPositionalEmbedding(d_model, length)
        else:
            table = sincos_2d_positions(self.grid_size, d_model)  # (N, D)
            if has_cls:
                table = torch.cat([torch.zeros(1, d_model), table])  # (N + 1, D)
            self.position = _FixedPositions(table)
        self.positions = positions
        self.dropout = nn.Dropout(dropout)
        layer = EncoderLayer(
            d_model,
            nhead,
            dim_feedforward,
            dropout,
            norm_first=norm_first,
            activation=activation,
            layer_norm_eps=layer_norm_eps,
        )
        if not qkv_bias:
            attn = layer.self_attn
            attn.q_proj, attn.k_proj, attn.v_proj = (
                nn.Linear(d_model, d_model, bias=False) for _ in range(3)
            )
            attn.reset_parameters()
        final = nn.LayerNorm(d_model, eps=layer_norm_eps) if norm_first else None
        self.encoder = TransformerEncoder(layer, num_layers, final)
        self.head = nn.Linear(d_model, num_classes) if num_classes else nn.Identity()

    @property
    def layers(self) -> nn.ModuleList:
        """The encoder layers; each ``.self_attn`` is a
        :class:`~attnlib.attention.MultiHeadAttention`."""
        return self.encoder.layers

    def token_labels(self) -> list[str]:
        """A label per token of the sequence: ``"[CLS]"`` (with ``"cls"`` pooling),
        then ``"r{row}c{col}"`` per patch in row-major order.

        :func:`attnlib.interpret.maps.capture_attention` labels the attention
        maps of any model with this method."""
        gh, gw = self.grid_size
        patches = [f"r{r}c{c}" for r in range(gh) for c in range(gw)]
        return (["[CLS]"] if self.cls_token is not None else []) + patches

    def features(self, images: Tensor) -> Tensor:
        """The final (normalised) vector of every token.

        Shape
        -----
        - images: ``(B, C, H, W)``; output: ``(B, L, D)``
        """
        x = self.patch_embed(images)  # (B, N, D)
        if self.cls_token is not None:
            cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)
            x = torch.cat([cls, x], dim=1)  # (B, N + 1, D)
        x = self.dropout(self.position(x))  # (B, L, D)
        return self.encoder(x)  # (B, L, D)

    def pool(self, features: Tensor) -> Tensor:
        """The class token's vector, or the mean of the patch tokens.

        Shape
        -----
        - features: ``(B, L, D)``; output: ``(B, D)``
        """
        if self.cls_token is not None:
            return features[:, 0]  # (B, D)
        return features.mean(1)  # (B, D)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.pool(self.features(images)))  # (B, num_classes)

    @classmethod
    def from_huggingface(cls, model: nn.Module) -> VisionTransformer:
        """A copy of a Hugging Face ``transformers`` ViT, in its dtype and training mode.

        - ``ViTForImageClassification``: the same logits (its classifier reads
          the final class token, as ``"cls"`` pooling does);
        - ``ViTModel``: a model with ``num_classes=0``, whose :meth:`features`
          equal the ``last_hidden_state`` and whose ``forward`` returns the
          class token's final vector ``last_hidden_state[:, 0]``; the pooler
          (a dense layer and tanh, trained for nothing in most checkpoints) is
          left out, as :meth:`attnlib.bert.BertEncoder.from_huggingface` does.

        Every parameter is mapped by name (:func:`huggingface_names`); one the
        map does not know (a masked-image-modelling decoder, say) is refused.

        Raises
        ------
        ValueError
            If the model is not a ViT this class can represent: another
            activation than ``gelu``, ``gelu_new``, ``gelu_pytorch_tanh`` or
            ``relu``, rectangular patches, a head size other than
            ``hidden_size / num_attention_heads``, unknown parameters.
        """
        config = getattr(model, "config", None)
        if getattr(config, "model_type", None) != "vit":
            raise ValueError(
                "model: expected a transformers ViTModel or ViTForImageClassification, "
                f"got {type(model).__name__}"
            )
        activations = {
            "gelu": "gelu",
            "gelu_new": "gelu_tanh",
            "gelu_pytorch_tanh": "gelu_tanh",
            "relu": "relu",
        }
        if config.hidden_act not in activations:
            raise ValueError(
                f"model.config.hidden_act: expected one of {sorted(activations)}, "
                f"got {config.hidden_act!r}"
            )
        patch = _pair(config.patch_size, "model.config.patch_size")
        if patch[0] != patch[1]:
            raise ValueError(
                f"model.config.patch_size: expected square patches, got {config.patch_size!r}"
            )
        d, heads = config.hidden_size, config.num_attention_heads
        head_dim = getattr(config, "head_dim", None)
        if head_dim is not None and head_dim * heads != d:
            raise ValueError(
                f"model.config.head_dim: expected hidden_size / num_attention_heads "
                f"({d} / {heads}), got {head_dim}"
            )
        state = model.state_dict()
        prefix = "vit." if any(k.startswith("vit.") for k in state) else ""
        has_head = isinstance(getattr(model, "classifier", None), nn.Linear)
        num_classes = config.num_labels if has_head else 0
        new = cls(
            config.image_size,
            patch[0],
            num_classes,
            in_channels=config.num_channels,
            d_model=d,
            nhead=heads,
            num_layers=config.num_hidden_layers,
            dim_feedforward=config.intermediate_size,
            dropout=config.hidden_dropout_prob,
            pooling="cls",
            positions="learned",
            norm_first=True,
            activation=activations[config.hidden_act],
            layer_norm_eps=config.layer_norm_eps,
            qkv_bias=config.qkv_bias,
        )
        for layer in new.layers:
            layer.self_attn.dropout = config.attention_probs_dropout_prob
            layer.ff.dropout.p = 0.0  # Hugging Face's ViT has no dropout inside its MLP
        names = huggingface_names(
            config.num_hidden_layers,
            prefix,
            qkv_bias=config.qkv_bias,
            head=has_head,
            layout=_layout(state, prefix),
        )
        ignored = (f"{prefix}pooler.", f"{prefix}embeddings.mask_token")
        unknown = sorted(k for k in set(state) - set(names.values()) if not k.startswith(ignored))
        if unknown:
            raise ValueError(
                f"model: has parameters a VisionTransformer cannot represent: {unknown}"
            )
        ours = {}
        for mine, theirs in names.items():
            value = state[theirs]
            if mine == "patch_embed.proj.weight":
                value = value.reshape(value.shape[0], -1)  # (D, C, p, p) -> (D, C p^2)
            elif mine == "position.embedding.weight":
                value = value[0]  # (1, N + 1, D) -> (N + 1, D)
            ours[mine] = value
        dtype = next(model.parameters()).dtype
        new.to(dtype).load_state_dict(ours)
        return new.train(model.training)


# our parameter name -> Hugging Face's, for one layer, in the two layouts of transformers:
# "layers" (transformers 5) and "encoder.layer" (transformers 4)
_LAYER_NAMES = {
    "layers": {
        "self_attn.q_proj": "attention.q_proj",
        "self_attn.k_proj": "attention.k_proj",
        "self_attn.v_proj": "attention.v_proj",
        "self_attn.out_proj": "attention.o_proj",
        "norm1": "layernorm_before",
        "ff.linear1": "mlp.fc1",
        "ff.linear2": "mlp.fc2",
        "norm2": "layernorm_after",
    },
    "encoder.layer": {
        "self_attn.q_proj": "attention.attention.query",
        "self_attn.k_proj": "attention.attention.key",
        "self_attn.v_proj": "attention.attention.value",
        "self_attn.out_proj": "attention.output.dense",
        "norm1": "layernorm_before",
        "ff.linear1": "intermediate.dense",
        "ff.linear2": "output.dense",
        "norm2": "layernorm_after",
    },
}


_QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


def _layout(state: dict[str, Tensor], prefix: str) -> str:
    for layout in _LAYER_NAMES:
        if any(k.startswith(f"{prefix}{layout}.") for k in state):
            return layout
    raise ValueError(
        f"model: expected encoder layers under {prefix}layers or {prefix}encoder.layer, "
        f"found none (parameters: {sorted(state)[:6]}...)"
    )


def huggingface_names(
    num_layers: int,
    prefix: str = "vit.",
    *,
    qkv_bias: bool = True,
    head: bool = True,
    layout: str = "layers",
) -> dict[str, str]:
    """Where each parameter of a :class:`VisionTransformer` comes from in a Hugging
    Face ViT: attnlib's name -> Hugging Face's.

    Parameters
    ----------
    num_layers : int
    prefix : str
        ``"vit."`` for ``ViTForImageClassification``, ``""`` for ``ViTModel``.
    qkv_bias : bool
        Whether the query, key and value projections have biases.
    head : bool
        Whether there is a classifier (``classifier.*`` -> ``head.*``).
    layout : {"layers", "encoder.layer"}
        Where the layers live: ``layers.<i>`` (transformers 5) or
        ``encoder.layer.<i>`` (transformers 4).

    Examples
    --------
    >>> huggingface_names(1)["encoder.layers.0.norm1.weight"]
    'vit.layers.0.layernorm_before.weight'
    >>> huggingface_names(1, layout="encoder.layer")["encoder.layers.0.self_attn.q_proj.bias"]
    'vit.encoder.layer.0.attention.attention.query.bias'
    """
    check_choice(layout, "layout", tuple(_LAYER_NAMES))
    names = {
        "cls_token": f"{prefix}embeddings.cls_token",
        "position.embedding.weight": f"{prefix}embeddings.position_embeddings",
        "patch_embed.proj.weight": f"{prefix}embeddings.patch_embeddings.projection.weight",
        "patch_embed.proj.bias": f"{prefix}embeddings.patch_embeddings.projection.bias",
        "encoder.norm.weight": f"{prefix}layernorm.weight",
        "encoder.norm.bias": f"{prefix}layernorm.bias",
    }
    for i in range(num_layers):
        for ours, theirs in _LAYER_NAMES[layout].items():
            names[f"encoder.layers.{i}.{ours}.weight"] = f"{prefix}{layout}.{i}.{theirs}.weight"
            if qkv_bias or ours not in _QKV:
                names[f"encoder.layers.{i}.{ours}.bias"] = f"{prefix}{layout}.{i}.{theirs}.bias"
    if head:
        names["head.weight"], names["head.bias"] = "classifier.weight", "classifier.bias"
    return names
