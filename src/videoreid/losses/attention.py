"""Regularisers on multi-part spatial attention maps: diversity (STAN, CMMANet) and
concentration (CMMANet).

Both read ``out.attention[key]`` of shape ``(..., K, *spatial)`` — e.g. ``(B, T, K, H, W)`` —
where the last ``spatial_dims`` dims are positions and the dim before them indexes the K
attention submodules. Each image's maps form ``A ∈ R^{K × L}`` (``L`` = positions,
flattened row-major) and are expected to be distributions (each row sums to 1, as after a
spatial softmax). Per-image values are averaged over images; when the leading dims are
``(B, T)`` and the batch has a ``frame_mask``, padded frames are left out.

Diversity (STAN, Li et al. 2018, sec. 3.3; CMMANet eq. 7–8):
    - ``"hellinger"``: ``Q = ‖√A √Aᵀ − I‖²_F`` (STAN eq. 9). Off-diagonal entries of
      ``√A √Aᵀ`` are ``1 − H²`` (eq. 8), the overlap of two maps; the diagonal is 1 for
      distributions. Disjoint maps give 0, K identical one-hot maps give ``K(K−1)``.
    - ``"q_prime"``: ``Q' = ‖A Aᵀ − I‖²_F`` (STAN eq. 10, from Lin et al. 2017), which also
      pulls each map towards a single position.
    - ``"bhattacharyya"``: CMMANet eq. 7 as printed, ``Σ_j Σ_{k≠j} (1 − D²(a_j, a_k))`` with
      ``D`` the Hellinger distance (eq. 6), i.e. the sum of the *unsquared* off-diagonal
      Bhattacharyya coefficients ``(√A √Aᵀ)_{jk}``. CMMANet's eq. 8 states it equals
      ``‖√A √Aᵀ − I‖²_F``, which sums their squares instead (the two agree only at 0 and 1);
      ``"hellinger"`` follows eq. 8 (and STAN), this variant follows eq. 7.
    The square root is taken of ``A`` clamped at 1e-12 so its gradient stays finite at 0.

Concentration (CMMANet, Hu et al., eq. 9–10): the positions of each map are split into K
horizontal stripes; ``Â_{k,l}`` = mass of map ``k`` in stripe ``l``; loss
``tr(−log Â) = −Σ_k log(Â_{k,k} + eps)`` (``eps`` default 1e-8). Adding ``eps`` rather than
clamping at it keeps the gradient ``−1/(Â_kk + eps)`` alive even for a submodule whose mass
has left its stripe entirely (a clamp would give it exactly zero gradient, so it could never
come back). It is 0 (up to ``eps``) exactly when every submodule's mass lies in its own
stripe. Stripes (a choice; eq. 9
assumes ``K`` divides ``h·w``): with 2-D maps and ``H ≥ K`` the stripes are groups of whole
rows, ``H`` rows split as evenly as possible (the first ``H mod K`` stripes get one extra
row) — identical to eq. 9's contiguous segments of length ``h·w/K`` whenever ``K`` divides
``H``, and still true horizontal stripes otherwise. With flattened maps (``spatial_dims=1``)
or ``H < K``, the ``L`` flattened positions are split the same way.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from videoreid.models.output import ReIDOutput

VARIANTS: tuple[str, ...] = ("hellinger", "q_prime", "bhattacharyya")


def attention_maps(out: ReIDOutput, key: str, spatial_dims: int, term: str) -> Tensor:
    """``out.attention[key]`` checked to have at least ``(K, *spatial)`` dims."""
    if key not in out.attention:
        raise KeyError(
            f"loss {term!r}: no attention {key!r} in the model output; available: {sorted(out.attention)}"
        )
    maps = out.attention[key]
    if maps.dim() < spatial_dims + 1:
        raise ValueError(
            f"loss {term!r}: attention {key!r} has shape {tuple(maps.shape)}; "
            f"expected (..., K, {spatial_dims} spatial dims)"
        )
    return maps


def mean_over_images(values: Tensor, batch: dict[str, Tensor]) -> Tensor:
    """Mean of per-image values ``(...)``, skipping padded frames when the shape is ``(B, T)``."""
    mask = batch.get("frame_mask")
    if mask is not None and values.dim() >= 2 and values.shape[:2] == mask.shape:
        m = mask.to(values.dtype).reshape(*mask.shape, *([1] * (values.dim() - 2)))
        m = m.expand_as(values)
        return (values * m).sum() / m.sum().clamp_min(1.0)
    return values.mean()


def stripe_assignment(shape: tuple[int, ...], k: int, device: torch.device | None = None) -> Tensor:
    """One-hot ``(L, K)`` matrix giving the horizontal stripe of each flattened position.

    Args:
        shape: spatial shape ``(H, W)`` or ``(L,)``.
        k: number of stripes.
    """
    if len(shape) == 2 and shape[0] >= k:
        rows = torch.arange(shape[0], device=device)
        stripe = (rows[:, None].expand(shape[0], shape[1])).reshape(-1)
        n = shape[0]
    else:
        n = 1
        for s in shape:
            n *= s
        stripe = torch.arange(n, device=device)
    if n < k:
        raise ValueError(f"cannot split {n} rows/positions into {k} stripes")
    # Even split: the first n % k stripes get one extra unit (like numpy.array_split).
    base, extra = divmod(n, k)
    bounds = torch.tensor(
        [i * base + min(i, extra) for i in range(1, k)], device=device, dtype=torch.long
    )
    index = torch.bucketize(stripe, bounds, right=True)
    return torch.nn.functional.one_hot(index, k)


class DiversityLoss(nn.Module):
    """Hellinger diversity ``Q`` (STAN eq. 9) or its ``Q'`` variant (eq. 10) on one attention.

    Args:
        key: name in ``out.attention`` of the maps ``(..., K, *spatial)``.
        weight: factor in the objective's total.
        variant: ``"hellinger"`` (eq. 9 / CMMANet eq. 8), ``"q_prime"`` (STAN eq. 10) or
            ``"bhattacharyya"`` (CMMANet eq. 7 as printed, unsquared overlaps).
        spatial_dims: how many trailing dims are positions (2 for ``(H, W)``).
    """

    kind = "diversity"

    def __init__(
        self, key: str, weight: float = 1.0, variant: str = "hellinger", spatial_dims: int = 2
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown diversity variant {variant!r}; valid: {list(VARIANTS)}")
        self.key = key
        self.name = f"{self.kind}/{key}"
        self.weight = float(weight)
        self.variant = variant
        self.spatial_dims = int(spatial_dims)

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> Tensor:
        maps = attention_maps(out, self.key, self.spatial_dims, self.kind).float()
        a = maps.flatten(-self.spatial_dims)  # (..., K, L)
        if self.variant in ("hellinger", "bhattacharyya"):
            a = a.clamp_min(1e-12).sqrt()
        gram = a @ a.transpose(-1, -2)  # (..., K, K)
        eye = torch.eye(gram.shape[-1], device=gram.device, dtype=gram.dtype)
        if self.variant == "bhattacharyya":  # Σ_{j≠k} (1 − D²) = Σ_{j≠k} BC_jk (eq. 7)
            q = (gram * (1 - eye)).sum((-2, -1))
        else:
            q = (gram - eye).pow(2).sum((-2, -1))
        return mean_over_images(q, batch)


class ConcentrationLoss(nn.Module):
    """CMMANet concentration loss ``tr(−log Â)`` (eq. 9–10) on one attention.

    Args:
        key: name in ``out.attention`` of the maps ``(..., K, *spatial)``.
        weight: factor in the objective's total.
        spatial_dims: how many trailing dims are positions (2 for ``(H, W)``).
        eps: added to ``Â_kk`` inside the log (keeps the value finite and the gradient
            non-zero when a stripe holds no mass).
    """

    kind = "concentration"

    def __init__(
        self, key: str, weight: float = 1.0, spatial_dims: int = 2, eps: float = 1e-8
    ) -> None:
        super().__init__()
        self.key = key
        self.name = f"{self.kind}/{key}"
        self.weight = float(weight)
        self.spatial_dims = int(spatial_dims)
        self.eps = float(eps)

    def forward(self, out: ReIDOutput, batch: dict[str, Tensor]) -> Tensor:
        maps = attention_maps(out, self.key, self.spatial_dims, self.kind).float()
        k = maps.shape[-self.spatial_dims - 1]
        assign = stripe_assignment(tuple(maps.shape[-self.spatial_dims :]), k, maps.device)
        a_hat = maps.flatten(-self.spatial_dims) @ assign.to(maps.dtype)  # (..., K, K)
        diag = a_hat.diagonal(dim1=-2, dim2=-1)
        return mean_over_images(-(diag + self.eps).log().sum(-1), batch)
