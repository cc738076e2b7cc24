"""Facts about a model that attacks and reports need: parameter counts, stochastic layers."""

from __future__ import annotations

from torch import nn

_NORM_TYPES = (nn.modules.batchnorm._BatchNorm,)
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (buffers such as BatchNorm statistics are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def has_batchnorm(model: nn.Module) -> bool:
    """True if the model contains a BatchNorm layer (its output then depends on train/eval mode)."""
    return any(isinstance(m, _NORM_TYPES) for m in model.modules())


def has_dropout(model: nn.Module) -> bool:
    """True if the model contains a Dropout layer with p > 0."""
    return any(isinstance(m, _DROPOUT_TYPES) and m.p > 0 for m in model.modules())


def mode_dependent_layers(model: nn.Module, training_only: bool = False) -> list[str]:
    """Names of BatchNorm/Dropout layers, whose behaviour differs between train() and eval().

    With `training_only=True` only those currently in training mode are listed: the ones that make
    an attack's forward passes random or change BatchNorm statistics (attacks warn about them).
    """
    names = []
    for name, m in model.named_modules():
        if isinstance(m, _NORM_TYPES) or (isinstance(m, _DROPOUT_TYPES) and m.p > 0):
            if m.training or not training_only:
                names.append(name)
    return names
