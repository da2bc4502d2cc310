"""Synchronised batch normalisation: statistics over every rank's batch (``train.sync_bn``).

Under DDP each rank normalises with the statistics of its own P/W identities unless BN is
synchronised; with it, a W-rank run normalises exactly as one process on the concatenated
global batch would (outputs, gradients and running statistics), which is what the papers'
single-GPU batch sizes assume.

:func:`convert_sync_batchnorm` replaces, in place and recursively:

* plain ``nn.BatchNorm1d/2d/3d`` by :class:`SyncBatchNorm` (or by ``torch.nn.SyncBatchNorm``
  with ``native=True``: torch's fused CUDA kernels; torch's version does not run on CPU);
* any BN module with a ``to_sync()`` method by what that method returns — the hook for BN
  subclasses with their own forward (RGSA/RGTR's token BN and its analytic pair BN, see
  :mod:`videoreid.models.rgsa_rgtr`);
* any other ``_BatchNorm`` subclass is an error naming the module (converting it to a plain
  BN would silently change what it computes).

State-dict keys are unchanged, so checkpoints load into either form.

Statistics. Per channel, rank r contributes ``Σx`` and its count; one differentiable
all-reduce gives the global mean, a second the global ``Σ(x − mean)²`` (two passes rather
than ``E[x²] − E[x]²``, which cancels catastrophically in float32 when ``|mean| ≫ std``).
The all-reduce's backward sums every rank's gradient of the pooled statistic, so each rank
back-propagates the global objective; DDP's gradient average then equals the single-process
gradient of the mean loss over the global batch (equal local batch sizes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from videoreid.utils.collectives import all_reduce_sum

__all__ = [
    "SyncBatchNorm",
    "batch_norm_rows",
    "folded_affine",
    "global_moments",
    "convert_sync_batchnorm",
    "update_running_stats",
]


def global_moments(rows: Tensor) -> tuple[Tensor, Tensor, int]:
    """Mean and population variance per column over the rows of every rank.

    Args:
        rows: ``(N_r, C)`` this rank's rows (float32 or wider recommended).
    Returns:
        mean ``(C,)``, variance ``(C,)``, total row count ``N = Σ_r N_r``.
    """
    c = rows.shape[1]
    packed = torch.cat([rows.sum(0), rows.new_tensor([float(rows.shape[0])])])
    packed = all_reduce_sum(packed)
    n = packed[c]
    mean = packed[:c] / n
    m2 = all_reduce_sum(((rows - mean) ** 2).sum(0))
    return mean, m2 / n, int(round(float(n.detach())))


@torch.no_grad()
def update_running_stats(bn: _BatchNorm, mean: Tensor, var: Tensor, n: int) -> None:
    """Running-statistics update exactly as ``nn.BatchNorm*`` does for a batch of ``n`` values.

    Momentum (or the cumulative average when ``momentum=None``), ``num_batches_tracked``, and
    the *unbiased* variance ``var · n / (n − 1)``.
    """
    if not (bn.training and bn.track_running_stats):
        return
    assert bn.num_batches_tracked is not None
    bn.num_batches_tracked.add_(1)
    factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    if bn.running_mean is not None:
        bn.running_mean.mul_(1 - factor).add_(mean.to(bn.running_mean.dtype), alpha=factor)
    if bn.running_var is not None:
        unbiased = var * (n / max(n - 1, 1))
        bn.running_var.mul_(1 - factor).add_(unbiased.to(bn.running_var.dtype), alpha=factor)


class SyncBatchNorm(_BatchNorm):
    """Batch norm whose training statistics cover the batches of all ranks (CPU and CUDA).

    Args:
        num_features: channels ``C``.
        channel_dim: where ``C`` is: ``1`` for ``(N, C, *)`` inputs (``BatchNorm1d/2d/3d``),
            ``-1`` for token inputs ``(..., C)`` (statistics over every other dim).
        eps, momentum, affine, track_running_stats: as ``nn.BatchNorm*``.

    Without a process group (or with one rank) the result equals ``nn.BatchNorm*``'s.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 channel_dim: int = 1) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        if channel_dim not in (1, -1):
            raise ValueError(f"SyncBatchNorm: channel_dim must be 1 or -1, got {channel_dim}")
        self.channel_dim = channel_dim

    @classmethod
    def from_module(cls, bn: _BatchNorm, channel_dim: int = 1) -> SyncBatchNorm:
        """A synchronised copy of ``bn`` (same parameters, buffers, mode, ``requires_grad``)."""
        out = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                  channel_dim=channel_dim)
        out.load_state_dict(bn.state_dict())
        if bn.affine:
            out.weight.requires_grad_(bn.weight.requires_grad)
            out.bias.requires_grad_(bn.bias.requires_grad)
        out.train(bn.training)
        tensors = [*bn.parameters(), *bn.buffers()]
        return out.to(tensors[0].device) if tensors else out

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[self.channel_dim] != self.num_features:
            raise ValueError(f"SyncBatchNorm: expected {self.num_features} channels at dim "
                             f"{self.channel_dim}, got input {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        rows = x.reshape(-1, self.num_features) if self.channel_dim == -1 else (
            x.transpose(0, 1).reshape(self.num_features, -1).t())
        out = batch_norm_rows(self, rows)
        if self.channel_dim == -1:
            return out.reshape(x.shape)
        moved = x.transpose(0, 1).shape
        return out.t().reshape(moved).transpose(0, 1)


def batch_norm_rows(bn: _BatchNorm, rows: Tensor) -> Tensor:
    """``bn`` applied to ``rows (N, C)`` with training statistics over every rank's rows.

    In eval mode (with running statistics) this is plain ``F.batch_norm``. Used by
    :class:`SyncBatchNorm` and by BN subclasses that synchronise themselves.
    """
    if not bn.training and bn.running_mean is not None:
        return F.batch_norm(rows, bn.running_mean, bn.running_var, bn.weight, bn.bias, False,
                            0.0, bn.eps)
    dtype = torch.promote_types(rows.dtype, torch.float32)
    mean, var, n = global_moments(rows.to(dtype))
    if bn.training and n <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got {n}")
    update_running_stats(bn, mean.detach(), var.detach(), n)
    scale, shift = folded_affine(bn, mean, var)
    return rows * scale.to(rows.dtype) + shift.to(rows.dtype)


def folded_affine(bn: _BatchNorm, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` with ``BN(x) = x · scale + shift`` for statistics ``mean``, ``var``."""
    scale = torch.rsqrt(var + bn.eps)
    if bn.affine:
        scale = scale * bn.weight
    shift = -mean * scale
    if bn.affine:
        shift = shift + bn.bias
    return scale, shift


_PLAIN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def convert_sync_batchnorm(module: nn.Module, native: bool = False) -> nn.Module:
    """Replace every BatchNorm in ``module`` by its synchronised form (see module docstring).

    Args:
        module: the model (modified in place; also returned, replaced itself if it is a BN).
        native: use ``torch.nn.SyncBatchNorm`` for plain BN layers (CUDA only).
    Raises:
        ValueError: a BatchNorm subclass with no synchronised form (names the module).
    """

    def convert(m: nn.Module, name: str) -> nn.Module:
        if isinstance(m, (SyncBatchNorm, nn.SyncBatchNorm)):
            return m
        if isinstance(m, _BatchNorm):
            to_sync = getattr(m, "to_sync", None)
            if callable(to_sync):
                return to_sync()
            if type(m) in _PLAIN:
                if native:
                    return nn.SyncBatchNorm.convert_sync_batchnorm(m)
                return SyncBatchNorm.from_module(m)
            raise ValueError(
                f"train.sync_bn: module {name or '<root>'} is a {type(m).__name__}, a BatchNorm "
                "subclass with its own forward and no synchronised form (give it a to_sync() "
                "method returning one); refusing to replace it by a plain SyncBatchNorm")
        for child_name, child in list(m.named_children()):
            new = convert(child, f"{name}.{child_name}" if name else child_name)
            if new is not child:
                setattr(m, child_name, new)
        return m

    return convert(module, "")
