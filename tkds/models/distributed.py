"""BatchNorm over the global batch under DDP, so N ranks train as one process with the whole batch does.

Plain BatchNorm normalises each rank's share with that share's statistics, so 2 ranks of 16 clips give
other activations, losses and gradients than 1 process of 32. torch's `SyncBatchNorm` fixes that on
CUDA only (it refuses CPU tensors), so on CPU (gloo) `GlobalBatchNorm` does the same with two autograd
all-gathers per layer: the global mean, then the global variance around it (two passes, as BatchNorm's
own kernels are exact to float rounding, which E[x²] − E[x]² is not).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def _sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """`x` summed over DDP ranks; the backward hands each rank the sum of every rank's gradient."""
    from torch.distributed._functional_collectives import all_gather_single_autograd

    return all_gather_single_autograd(x[None].contiguous(), 0, dist.group.WORLD).sum(0)


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the batch of all ranks together.

    In eval mode, or on one process, it is plain BatchNorm; its state dict is BatchNorm's, so
    checkpoints load into the unconverted method.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        local_count = x.numel() // x.shape[1]
        count = _sum_over_ranks(x.new_tensor(float(local_count)))
        mean = _sum_over_ranks(x.sum(dims)) / count
        centred = x - mean.view(shape)
        var = _sum_over_ranks(centred.pow(2).sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = 1 / int(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1))
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def sync_batch_norm(model: nn.Module, device: torch.device) -> nn.Module:
    """`model` with every BatchNorm computing global-batch statistics: SyncBatchNorm on CUDA, else ours.

    Parameters and buffers are the same objects, so call it before building the optimizer or after.
    """
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        converted = GlobalBatchNorm(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        if module.affine:
            converted.weight, converted.bias = module.weight, module.bias
        if module.track_running_stats:
            converted.running_mean, converted.running_var = module.running_mean, module.running_var
            converted.num_batches_tracked = module.num_batches_tracked
        converted.train(module.training)
        return converted
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module
