"""Binary linear models sign(w^T x + b), y in {-1, +1}: exact worst-case attacks, exact adversarial
training, and correlation-based robust feature selection (Tsipras et al. 2019, Sec. 2.3, Table 4, Fig. 2).

Inputs are flat (N, D) or images (N, C, H, W) (flattened); w has D entries. For a linear model the inner
maximisation of adversarial training is solved exactly, so "adversarial accuracy" here is exact, not a
lower bound from an attack:

* l_inf, no box: x - eps y sign(w), margin y(w^T x + b) - eps norm(w)_1;
* l_inf, box [0, 1]: x_i <- clip(x_i - eps y sign(w_i), 0, 1), optimal per coordinate;
* l2, no box: x - eps y w / norm(w)_2, margin y(w^T x + b) - eps norm(w)_2;
* l2, box: the KKT solution delta_i = clip(-t y w_i, lo_i, hi_i) with t >= 0 found by bisection so that
  norm(delta)_2 = eps (or the box corner when the whole box fits in the ball).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from robustlab.errors import InputError

NORMS = ("linf", "l2")


def _flat(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise InputError("x must be a floating-point tensor")
    if x.dim() < 1:
        raise InputError("x must have a batch dimension")
    return x.reshape(x.shape[0], -1) if x.dim() > 1 else x[None]


def _pm1(y: Tensor, n: int) -> Tensor:
    y = torch.as_tensor(y)
    if y.shape != (n,):
        raise InputError(f"y must have shape ({n},), got {tuple(y.shape)}")
    if not bool(((y == 1) | (y == -1)).all()):
        raise InputError("y must hold labels -1 / +1 (map 0/1 labels with 2 y - 1)")
    return y


def _check_w(w: Tensor, dim: int) -> Tensor:
    w = torch.as_tensor(w).flatten()
    if w.numel() != dim:
        raise InputError(f"w has {w.numel()} entries but x has {dim} features")
    return w


def worst_case(w: Tensor, b: float | Tensor, x: Tensor, y: Tensor, eps: float, norm: str = "linf",
               box: bool = True, iters: int = 100) -> tuple[Tensor, Tensor]:
    """The exact worst-case input in the eps-ball (and the box [0, 1] when `box`) for the model (w, b).

    Returns (x_adv with x's shape, margin y (w^T x_adv + b)) -- the smallest margin any perturbation in the
    set can reach. With the box, x must lie in [0, 1]. `iters` bisection steps for l2 with the box.
    """
    if norm not in NORMS:
        raise InputError(f"norm must be one of {NORMS}, got {norm!r}")
    if not eps >= 0:
        raise InputError(f"eps must be non-negative, got {eps}")
    xf = _flat(x)
    n, dim = xf.shape
    w = _check_w(w, dim).to(xf.dtype)
    yf = _pm1(y, n).to(xf.dtype)[:, None]
    if box and (xf.min() < 0 or xf.max() > 1):
        raise InputError("with box=True, x must lie in [0, 1]")
    if norm == "linf":
        xa = xf - eps * yf * torch.sign(w)
        if box:
            xa = xa.clamp(0.0, 1.0)
    else:
        wn = w.norm()
        if float(wn) == 0:
            xa = xf.clone()
        elif not box:
            xa = xf - eps * yf * w / wn
        else:
            lo, hi = -xf, 1.0 - xf  # delta in [lo, hi]
            direction = -yf * w  # descent direction of the margin, per sample

            def delta(t: Tensor) -> Tensor:
                return torch.minimum(torch.maximum(t[:, None] * direction, lo), hi)

            big = torch.full((n,), 1e12, dtype=xf.dtype)
            full = delta(big).norm(dim=1) <= eps  # the whole reachable corner fits in the ball
            t_lo, t_hi = torch.zeros(n, dtype=xf.dtype), torch.full((n,), float(eps) / float(wn), dtype=xf.dtype)
            # grow t_hi until norm(delta) >= eps (clipping only shrinks delta, so start at eps / norm(w))
            for _ in range(200):
                short = (delta(t_hi).norm(dim=1) < eps) & ~full
                if not bool(short.any()):
                    break
                t_hi = torch.where(short, 2 * t_hi, t_hi)
            for _ in range(iters):
                mid = 0.5 * (t_lo + t_hi)
                over = delta(mid).norm(dim=1) > eps
                t_hi = torch.where(over, mid, t_hi)
                t_lo = torch.where(over, t_lo, mid)
            xa = xf + torch.where(full[:, None], delta(big), delta(t_lo))
    margin = yf.squeeze(1) * (xa @ w + b)
    return xa.reshape(x.shape), margin


def margin(w: Tensor, b: float | Tensor, x: Tensor, y: Tensor) -> Tensor:
    """y (w^T x + b) per sample."""
    xf = _flat(x)
    w = _check_w(w, xf.shape[1]).to(xf.dtype)
    return _pm1(y, xf.shape[0]).to(xf.dtype) * (xf @ w + b)


def accuracy(w: Tensor, b: float | Tensor, x: Tensor, y: Tensor, eps: float = 0.0, norm: str = "linf",
             box: bool = True) -> float:
    """Exact clean (eps = 0) or adversarial accuracy of sign(w^T x + b); a zero margin counts as an error."""
    m = margin(w, b, x, y) if eps == 0 else worst_case(w, b, x, y, eps, norm, box)[1]
    return float((m > 0).float().mean())


def min_norm(w: Tensor, b: float | Tensor, x: Tensor, norm: str = "linf") -> Tensor:
    """Smallest perturbation (no box) that reaches the decision boundary: abs(w^T x + b) / norm(w)_q,
    q the dual norm (l1 for l_inf, l2 for l2)."""
    if norm not in NORMS:
        raise InputError(f"norm must be one of {NORMS}, got {norm!r}")
    xf = _flat(x)
    w = _check_w(w, xf.shape[1]).to(xf.dtype)
    dual = w.abs().sum() if norm == "linf" else w.norm()
    return (xf @ w + b).abs() / dual


@dataclass
class LinearModel:
    w: Tensor
    b: Tensor
    history: list[dict[str, float]] = field(default_factory=list)

    def logits(self, x: Tensor) -> Tensor:
        return _flat(x) @ self.w + self.b


def train_linear(x: Tensor, y: Tensor, *, eps: float = 0.0, norm: str = "linf", box: bool = True,
                 epochs: int = 100, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 0.0,
                 mask: Tensor | None = None, lr_decay: bool = True) -> LinearModel:
    """Logistic regression on the exact worst case (eps = 0: standard training), full-batch gradient descent
    from zero (the paper: 100 epochs of gradient descent; lr and init unspecified, erratum 13).

    The worst-case loss max_delta log(1 + exp(-y w^T (x + delta))) is convex in (w, b) and its gradient is
    the loss gradient at the exact worst case x_adv(w) (Danskin), which is what each step uses. `mask`
    (bool, D) restricts the model to those features (the others keep weight 0). With `lr_decay` the step
    follows a cosine schedule to 0, so the weights settle instead of oscillating around the kinks of the
    adversarial loss (fixed-step subgradient descent leaves non-robust weights non-zero).
    """
    xf = _flat(x)
    n, dim = xf.shape
    yf = _pm1(y, n).to(xf.dtype)
    if epochs < 1:
        raise InputError(f"epochs must be positive, got {epochs}")
    keep = torch.ones(dim, dtype=xf.dtype) if mask is None else _check_w(mask, dim).to(xf.dtype)
    w = torch.zeros(dim, dtype=xf.dtype)
    b = torch.zeros((), dtype=xf.dtype)
    vw, vb = torch.zeros_like(w), torch.zeros_like(b)
    hist = []
    for ep in range(epochs):
        step = lr * (0.5 * (1 + torch.cos(torch.tensor(torch.pi * ep / epochs))).item() if lr_decay else 1.0)
        xa = worst_case(w, b, xf, yf, eps, norm, box)[0] if eps > 0 else xf
        z = yf * (xa @ w + b)
        loss = F.softplus(-z).mean()
        s = -torch.sigmoid(-z) * yf / n  # d loss / d logit
        gw = (xa.T @ s) * keep + weight_decay * w
        gb = s.sum()
        vw = momentum * vw + gw
        vb = momentum * vb + gb
        w = w - step * vw
        b = b - step * vb
        hist.append({"epoch": ep + 1, "loss": float(loss)})
    return LinearModel(w, b, hist)


def feature_correlation(x: Tensor, y: Tensor, signed: bool = False) -> Tensor:
    """Pearson correlation of each feature with the label y in {-1, +1} (absolute value unless `signed`);
    constant features get 0."""
    xf = _flat(x).to(torch.float64)
    yf = _pm1(y, xf.shape[0]).to(torch.float64)
    xc = xf - xf.mean(0)
    yc = yf - yf.mean()
    cov = (xc * yc[:, None]).mean(0)
    sd = xc.pow(2).mean(0).sqrt() * yc.pow(2).mean().sqrt()
    const = xf.amax(0) == xf.amin(0)
    r = torch.where(const | (sd == 0), torch.zeros_like(cov), cov / sd.clamp_min(1e-300))
    return r if signed else r.abs()


def top_k_mask(corr: Tensor, k: int) -> Tensor:
    """Bool mask of the k features with the largest `corr` (ties broken by index)."""
    if not 1 <= k <= corr.numel():
        raise InputError(f"k must be in [1, {corr.numel()}], got {k}")
    mask = torch.zeros(corr.numel(), dtype=torch.bool)
    mask[torch.argsort(corr, descending=True, stable=True)[:k]] = True
    return mask


def top_k_curve(x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor, ks: list[int], eps: float, *,
                norm: str = "linf", box: bool = True, **train_kw: float) -> list[dict[str, float]]:
    """Fig. 2c: a *standard* linear model trained on the top-k label-correlated features, for each k;
    its clean and exact adversarial test accuracy."""
    corr = feature_correlation(x_train, y_train)
    rows = []
    for k in ks:
        mask = top_k_mask(corr, k)
        m = train_linear(x_train, y_train, mask=mask, **train_kw)  # type: ignore[arg-type]
        rows.append({"k": k, "std": accuracy(m.w, m.b, x_test, y_test),
                     "adv": accuracy(m.w, m.b, x_test, y_test, eps, norm, box), "l1": float(m.w.abs().sum())})
    return rows


def weight_mass_low_corr(w: Tensor, corr: Tensor, fraction: float = 0.5) -> float:
    """Share of total abs(w) on the `fraction` least label-correlated features (Fig. 2b's pattern)."""
    k = int(round(fraction * corr.numel()))
    low = torch.argsort(corr, stable=True)[:k]
    total = float(w.abs().sum())
    return float(w.abs()[low].sum()) / total if total > 0 else 0.0
