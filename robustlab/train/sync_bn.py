"""BatchNorm over the global batch of a data-parallel run, on any device (PyTorch's SyncBatchNorm is GPU-only).

`GlobalBatchNorm` normalises with the mean and (biased) variance of the whole global batch, computed
with two differentiable all-reduces (sums and counts, then centred squares), so forward and backward
are those of ordinary BatchNorm on the concatenated batch of all ranks; running statistics follow
PyTorch's update (unbiased variance, momentum or cumulative average). In eval mode it is BatchNorm.
Parameters, buffers and state-dict keys are those of the layer it replaces.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class GlobalBatchNorm(_BatchNorm):
    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not self.training and self.track_running_stats:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        import torch.distributed as dist
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        sums = torch.cat([x.sum(dims), count])
        if distributed:
            sums = all_reduce(sums)
        n = sums[-1].detach()
        mean = sums[:-1] / n
        xc = x - mean.view(shape)
        sq = xc.pow(2).sum(dims)
        var = (all_reduce(sq) if distributed else sq) / n
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.training and self.track_running_stats:
            assert self.running_mean is not None and self.running_var is not None
            with torch.no_grad():
                self.num_batches_tracked += 1  # type: ignore[operator]
                m = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        return y


def convert_global_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer below `module` by a GlobalBatchNorm sharing its parameters and
    buffers (in place; returns `module`, or the new layer when `module` itself is a BatchNorm layer)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        new_child = convert_global_batchnorm(child)
        if new_child is not child:
            setattr(module, name, new_child)
    return module
