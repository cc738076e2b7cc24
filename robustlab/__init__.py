"""robustlab: a PyTorch laboratory for adversarial robustness."""

__version__ = "0.1.0"
