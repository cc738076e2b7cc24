"""Model layer: a registry of architectures mapping [0, 1] images (N, C, H, W) to logits (N, K).

    model = build("small_cnn", in_channels=1, num_classes=10, image_size=28, normalize=(0.286, 0.353))
    save_model(model, run_dir); model = load_model(run_dir)

Normalisation is a layer inside the model, so eps is always in pixel units.
"""

from robustlab.models import cnn, dense, resnet, stn  # noqa: F401 - importing registers the architectures
from robustlab.models.io import CheckpointError, load_model, safe_torch_load, save_model
from robustlab.models.layers import ImageClassifier, Normalize, Normalized, PerImageStandardize, with_normalization
from robustlab.models.layout import channels_last, has_conv
from robustlab.models.registry import MODELS, arch_kwargs, build, build_from_spec, known_models, register, spec_of
from robustlab.models.summary import count_params, has_batchnorm, has_dropout, mode_dependent_layers

__all__ = [
    "MODELS", "CheckpointError", "ImageClassifier", "Normalize", "Normalized", "PerImageStandardize", "arch_kwargs",
    "build", "build_from_spec", "channels_last", "count_params", "has_batchnorm", "has_conv", "has_dropout",
    "known_models", "load_model", "mode_dependent_layers", "register", "safe_torch_load", "save_model", "spec_of",
    "with_normalization",
]
