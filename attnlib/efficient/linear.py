r"""Linear attention (Katharopoulos et al., 2020, arXiv:2006.16236).

Replace the softmax's :math:`\exp(q^\top k)` by a product of feature maps
:math:`\phi(q)^\top \phi(k)` with :math:`\phi(x) = \mathrm{elu}(x) + 1 > 0`;
then the sum over keys can be taken first:

.. math::

    o_i = \frac{\sum_j \phi(q_i)^\top \phi(k_j)\, v_j}{\sum_j \phi(q_i)^\top \phi(k_j)}
        = \frac{\phi(q_i)^\top \big(\sum_j \phi(k_j) v_j^\top\big)}
               {\phi(q_i)^\top \sum_j \phi(k_j)} ,

a :math:`(D_k, D_v)` matrix shared by every query: :math:`O(L D_k D_v)`
instead of :math:`O(L^2 D)`. Causal attention takes prefix sums of
:math:`\phi(k_j) v_j^\top` instead; :func:`linear_attention` does that in chunks
(a small quadratic tile inside each chunk, a running state across chunks), so
that the ``(L, Dk, Dv)`` prefix sums are never stored.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .._checks import check_positive_int, check_tensor, shape_str

__all__ = ["linear_attention", "elu_feature_map"]


def elu_feature_map(x: Tensor) -> Tensor:
    r""":math:`\phi(x) = \mathrm{elu}(x) + 1`, positive everywhere (Katharopoulos et al., 2020).

    Shape
    -----
    - x: any; output: same
    """
    check_tensor(x, "x")
    return F.elu(x) + 1.0


def _check_linear_args(query: Tensor, key: Tensor, value: Tensor, causal: bool) -> None:
    for name, x in (("query", query), ("key", key), ("value", value)):
        check_tensor(x, name)
        if x.dim() < 2:
            raise ValueError(
                f"{name}: expected at least 2 dimensions (..., length, features), "
                f"got shape {shape_str(x.shape)}"
            )
    if key.dim() != query.dim() or key.shape[:-2] != query.shape[:-2]:
        raise ValueError(
            f"key: expected the batch dimensions {shape_str(query.shape[:-2])} of query "
            f"{shape_str(query.shape)}, got shape {shape_str(key.shape)}"
        )
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(
            f"key: expected feature size Dk = {query.shape[-1]} (the query's), "
            f"got shape {shape_str(key.shape)}"
        )
    if value.shape[:-1] != key.shape[:-1]:
        raise ValueError(
            f"value: expected shape {shape_str((*key.shape[:-1], 'Dv'))} (one value per key), "
            f"got {shape_str(value.shape)}"
        )
    if causal and query.shape[-2] != key.shape[-2]:
        raise ValueError(
            f"key: expected {query.shape[-2]} keys (one per query) for causal linear "
            f"attention, got shape {shape_str(key.shape)}"
        )


def linear_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    *,
    causal: bool = False,
    eps: float = 1e-6,
    need_weights: bool = False,
    chunk_size: int = 64,
) -> tuple[Tensor, Tensor | None]:
    r"""Linear attention with :math:`\phi = \mathrm{elu} + 1` (Katharopoulos et al., 2020).

    .. math::

        o_i = \frac{\phi(q_i)^\top S_i}{\phi(q_i)^\top z_i + \varepsilon}, \qquad
        S_i = \sum_{j} \phi(k_j) v_j^\top, \quad z_i = \sum_j \phi(k_j),

    the sums over every key, or over :math:`j \le i` when ``causal``. The
    result equals the *quadratic form*
    :math:`W = A / (A \mathbf{1} + \varepsilon)`, :math:`A = \phi(Q)\phi(K)^\top`
    (lower-triangular part when causal), :math:`O = W V`, which is what
    ``need_weights`` returns as weights. Unlike softmax attention no score is
    exponentiated: the weights are a different function of :math:`q, k`, not
    an approximation of the softmax's.

    Non-causal: :math:`\phi(K)^\top V` once, :math:`O(L D_k D_v)`. Causal:
    the sequence is cut into chunks of ``chunk_size``; inside a chunk the
    quadratic form (masked, :math:`O(L c D)`), across chunks the state
    :math:`S` of the chunks before (exclusive prefix sums over chunks), so the
    cost stays linear in :math:`L` and the per-position prefix sums
    :math:`(L, D_k, D_v)` are never stored.

    Parameters
    ----------
    query, key, value : Tensor
        Same leading (batch, head) dimensions.
    causal : bool
        Query ``i`` sums over keys ``j <= i`` (needs ``Lq == Lk``).
    eps : float
        Added to the denominator.
    need_weights : bool
        Also return the quadratic form's ``(Lq, Lk)`` weights (built for
        that purpose only).
    chunk_size : int
        Chunk length of the causal form.

    Returns
    -------
    output : Tensor
    weights : Tensor or None
        The quadratic form's weights when ``need_weights``, else ``None``.

    Shape
    -----
    - query: ``(..., Lq, Dk)``; key: ``(..., Lk, Dk)``; value: ``(..., Lk, Dv)``,
      typically ``(B, H, L, Dh)``
    - output: ``(..., Lq, Dv)``; weights: ``(..., Lq, Lk)``
    """
    _check_linear_args(query, key, value, bool(causal))
    check_positive_int(chunk_size, "chunk_size")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
        raise ValueError(f"eps: expected a non-negative number, got {eps!r}")
    phi_q, phi_k = F.elu(query) + 1.0, F.elu(key) + 1.0
    if causal:
        out = _causal_linear(phi_q, phi_k, value, float(eps), chunk_size)
    else:
        kv = phi_k.transpose(-2, -1) @ value  # (..., Dk, Dv)
        z = phi_k.sum(-2)  # (..., Dk)
        out = (phi_q @ kv) / ((phi_q @ z[..., None]) + eps)  # (..., Lq, Dv)
    weights = None
    if need_weights:
        a = phi_q @ phi_k.transpose(-2, -1)  # (..., Lq, Lk)
        if causal:
            a = a.tril()
        weights = a / (a.sum(-1, keepdim=True) + eps)
    return out, weights


def _causal_linear(phi_q: Tensor, phi_k: Tensor, value: Tensor, eps: float, c: int) -> Tensor:
    """Chunked causal linear attention, unchecked."""
    n = phi_q.shape[-2]
    c = min(c, n)
    nc = -(-n // c)
    pad = nc * c - n
    # padded keys have phi = 0 (they add nothing); padded queries (phi = 1, so that their
    # denominators stay positive even with eps = 0) are dropped at the end
    q = F.pad(phi_q, (0, 0, 0, pad), value=1.0).unflatten(-2, (nc, c))  # (..., nc, c, Dk)
    k = F.pad(phi_k, (0, 0, 0, pad)).unflatten(-2, (nc, c))  # (..., nc, c, Dk)
    v = F.pad(value, (0, 0, 0, pad)).unflatten(-2, (nc, c))  # (..., nc, c, Dv)
    kv = k.transpose(-2, -1) @ v  # (..., nc, Dk, Dv): each chunk's sum of phi(k) v^T
    z = k.sum(-2)  # (..., nc, Dk)
    # the state before each chunk: exclusive prefix sums over chunks
    s_before = F.pad(kv.cumsum(-3), (0, 0, 0, 0, 1, 0))[..., :-1, :, :]  # (..., nc, Dk, Dv)
    z_before = F.pad(z.cumsum(-2), (0, 0, 1, 0))[..., :-1, :]  # (..., nc, Dk)
    a = (q @ k.transpose(-2, -1)).tril()  # (..., nc, c, c): inside the chunk, j <= i
    num = q @ s_before + a @ v  # (..., nc, c, Dv)
    den = (q @ z_before[..., None]).squeeze(-1) + a.sum(-1)  # (..., nc, c)
    out = num / (den[..., None] + eps)
    return out.flatten(-3, -2)[..., :n, :]  # (..., L, Dv)
