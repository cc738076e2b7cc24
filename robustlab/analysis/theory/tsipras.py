"""Exact theory of the Tsipras et al. (2019) distribution (eq. 3) of one robust and d non-robust features.

    y ~ Uniform{-1, +1};  x_1 = +y w.p. p, -y w.p. 1 - p;  x_2, ..., x_{d+1} ~ i.i.d. N(eta y, 1)

Every linear classifier sign(w^T x + b) has a closed-form accuracy: given y and whether x_1 agrees with
y, the margin y(w^T x + b) is Gaussian with mean y b +- w_1 + eta S (S = sum_{i>=2} w_i) and standard
deviation norm(w_{2:})_2. Three adversaries are exact here:

* ``"none"``: clean accuracy;
* ``"shift"``: the proofs' adversary x_i <- x_i - eps y for i >= 2 (x_1 untouched), mean eta -> eta - eps;
* ``"linf"`` / ``"l2"``: the exact worst case in the ball, margin minus eps norm(w)_1 (resp. norm(w)_2).

Ties (margin exactly 0) count as errors. The reduced family w^T x = w_1 x_1 + v z with
z = (1/sqrt(d)) sum_{i>=2} x_i (Lemma C.1: the SVM's non-robust weights are all equal) is
`reduced_accuracy`; `svm_2param` solves the distributional soft-margin SVM over it exactly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from robustlab.data.synthetic import sample

ATTACKS = ("none", "shift", "linf", "l2")
SQRT2 = math.sqrt(2.0)


def Phi(t: float) -> float:
    """Standard normal CDF (accurate in both tails)."""
    if t == math.inf:
        return 1.0
    if t == -math.inf:
        return 0.0
    return 0.5 * math.erfc(-t / SQRT2)


def phi(t: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)


def gauss_hinge(mu: float, s: float) -> float:
    """E[max(0, 1 - N(mu, s^2))] = (1 - mu) Phi((1 - mu)/s) + s phi((1 - mu)/s); s = 0 gives max(0, 1 - mu)."""
    if s < 0:
        raise ValueError(f"s must be non-negative, got {s}")
    if s == 0:
        return max(0.0, 1.0 - mu)
    t = (1.0 - mu) / s
    return (1.0 - mu) * Phi(t) + s * phi(t)


_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(80)


def gauss_logistic(mu: float, s: float) -> float:
    """E[log(1 + exp(-N(mu, s^2)))] by 80-point Gauss-Hermite quadrature (exact for s = 0)."""
    if s < 0:
        raise ValueError(f"s must be non-negative, got {s}")
    if s == 0:
        return float(np.logaddexp(0.0, -mu))
    m = mu + SQRT2 * s * _GH_NODES
    return float(np.sum(_GH_WEIGHTS * np.logaddexp(0.0, -m)) / math.sqrt(math.pi))


def _check(d: int, eta: float, p: float, eps: float, attack: str) -> None:
    if not isinstance(d, int) or d <= 0:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if not math.isfinite(eta):
        raise ValueError(f"eta must be finite, got {eta}")
    if not eps >= 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")


def _accuracy_from_stats(w1: float, s_sum: float, sd: float, l1: float, l2: float, b: float, eta: float, p: float,
                         eps: float, attack: str) -> float:
    """Exact accuracy from the sufficient statistics of a linear classifier (see the module docstring)."""
    shift = {"none": 0.0, "shift": -eps * s_sum, "linf": -eps * l1, "l2": -eps * l2}[attack]
    acc = 0.0
    for y in (1.0, -1.0):
        for agree, prob in ((1.0, p), (-1.0, 1.0 - p)):
            mean = y * b + agree * w1 + eta * s_sum + shift
            if sd > 0:
                acc += 0.5 * prob * Phi(mean / sd)
            else:
                acc += 0.5 * prob * float(mean > 0)
    return acc


def linear_accuracy(w: Any, b: float = 0.0, *, eta: float, p: float = 0.7, eps: float = 0.0,
                    attack: str = "none") -> float:
    """Exact (clean or adversarial) accuracy of sign(w^T x + b) on the distribution; w has d + 1 entries."""
    w = torch.as_tensor(w, dtype=torch.float64).flatten()
    if w.numel() < 2:
        raise ValueError("w must have d + 1 >= 2 entries (x_1 and at least one non-robust feature)")
    _check(w.numel() - 1, eta, p, eps, attack)
    rest = w[1:]
    return _accuracy_from_stats(float(w[0]), float(rest.sum()), float(rest.norm()), float(w.abs().sum()),
                                float(w.norm()), float(b), eta, p, eps, attack)


def reduced_accuracy(w1: float, v: float, d: int, eta: float, p: float = 0.7, eps: float = 0.0,
                     attack: str = "none") -> float:
    """Exact accuracy of w_1 x_1 + v z (z = sum_{i>=2} x_i / sqrt(d): every w_i = v / sqrt(d)), no bias."""
    _check(d, eta, p, eps, attack)
    rd = math.sqrt(d)
    return _accuracy_from_stats(w1, v * rd, abs(v), abs(w1) + abs(v) * rd, math.hypot(w1, v), 0.0, eta, p, eps,
                                attack)


def f_avg_accuracy(d: int, eta: float, eps: float = 0.0, attack: str = "shift") -> float:
    """Accuracy of the averaging classifier sign(sum_{i>=2} x_i / d) (eq. 4): Phi((eta - eps) sqrt(d)).

    Under "shift" and "linf" alike (its weight on x_1 is 0 and norm(w)_1 = sum w_i = 1).
    """
    return reduced_accuracy(0.0, 1.0, d, eta, 0.5, eps, attack)


def bayes_weights(d: int, eta: float, p: float = 0.7) -> torch.Tensor:
    """The Bayes-optimal standard classifier (not in the paper): sign(x_1 log(p/(1-p)) + 2 eta sum_{i>=2} x_i).

    It is the log-likelihood ratio log p(x | y=+1) / p(x | y=-1); needs 0 < p < 1.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1) for the Bayes classifier, got {p}")
    w = torch.full((d + 1,), 2.0 * eta, dtype=torch.float64)
    w[0] = math.log(p / (1.0 - p))
    return w


def bayes_accuracy(d: int, eta: float, p: float = 0.7) -> float:
    """Clean accuracy of the Bayes classifier (the best any classifier can do)."""
    return linear_accuracy(bayes_weights(d, eta, p), eta=eta, p=p)


# ---------------------------------------------------------------- Theorem 2.1

def tradeoff_bound(std: float, p: float = 0.7) -> float:
    """Theorem 2.1 (general p): std accuracy 1 - delta => adversarial accuracy <= (p / (1 - p)) delta
    against an l_inf adversary with eps >= 2 eta. p = 0.7 gives the paper's (7/3) delta."""
    if not 0.5 <= p < 1.0:
        raise ValueError(f"the bound needs p in [0.5, 1), got {p}")
    return p / (1.0 - p) * (1.0 - std)


def check_tradeoff(std: float, adv: float, p: float = 0.7, tol: float = 1e-9) -> bool:
    """True when (std, adv) satisfies Theorem 2.1's bound (within tol)."""
    return adv <= tradeoff_bound(std, p) + tol


def frontier(d: int, eta: float, eps: float, p: float = 0.7, n: int = 1000, attack: str = "shift"
             ) -> dict[str, np.ndarray]:
    """Clean and adversarial accuracy of the unit-norm family (w_1, v) = (cos t, sin t), t on n points of
    [-pi, pi) (t = 0 is sign(x_1), t = pi/2 pools the non-robust features only)."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    t = np.linspace(-math.pi, math.pi, n, endpoint=False)
    std = np.array([reduced_accuracy(math.cos(a), math.sin(a), d, eta, p) for a in t])
    adv = np.array([reduced_accuracy(math.cos(a), math.sin(a), d, eta, p, eps, attack) for a in t])
    return {"theta": t, "w1": np.cos(t), "v": np.sin(t), "std": std, "adv": adv}


# ---------------------------------------------------------------- Theorem 2.2: the distributional SVM

def svm_loss(w1: float, v: float, d: int, eta: float, eps: float = 0.0, p: float = 0.7, loss: str = "hinge",
             adversarial: bool = False) -> float:
    """Expected (adversarial) loss of w_1 x_1 + v z: E[L(y w^T x - eps norm(w)_1)] (eps only when adversarial;
    the l_inf inner max of a linear model is exact, Lemma C.5)."""
    if loss not in ("hinge", "logistic"):
        raise ValueError(f"loss must be 'hinge' or 'logistic', got {loss!r}")
    rd = math.sqrt(d)
    pen = eps * (abs(w1) + rd * abs(v)) if adversarial else 0.0
    f = gauss_hinge if loss == "hinge" else gauss_logistic
    mu = v * eta * rd - pen
    return p * f(w1 + mu, abs(v)) + (1.0 - p) * f(-w1 + mu, abs(v))


@dataclass
class SVMSolution:
    w1: float
    v: float
    loss: float
    std: float  # clean accuracy
    adv_shift: float  # accuracy against the proofs' adversary (x_i -= eps y, i >= 2)
    adv_linf: float  # exact l_inf worst case (x_1 moves too)


def svm_2param(d: int, eta: float, eps: float, p: float = 0.7, loss: str = "hinge", adversarial: bool = False,
               grid: int = 2000, tol: float = 1e-12) -> SVMSolution:
    """The distributional soft-margin SVM (eq. 5) with lambda tuned so norm(w*)_2 = 1, solved exactly.

    By Lemma C.1 the optimum has equal non-robust weights, so it minimises `svm_loss` over the unit circle
    (w_1, v) = (cos t, sin t): a grid of `grid` angles, then golden-section search on the best cell.
    """
    _check(d, eta, p, eps, "none")

    def f(t: float) -> float:
        return svm_loss(math.cos(t), math.sin(t), d, eta, eps, p, loss, adversarial)

    ts = np.linspace(-math.pi, math.pi, grid, endpoint=False)
    vals = np.array([f(t) for t in ts])
    k = int(np.argmin(vals))
    h = 2 * math.pi / grid
    lo, hi = ts[k] - h, ts[k] + h
    g = (math.sqrt(5) - 1) / 2
    a, c = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fc = f(a), f(c)
    while hi - lo > tol:
        if fa <= fc:
            hi, c, fc = c, a, fa
            a = hi - g * (hi - lo)
            fa = f(a)
        else:
            lo, a, fa = a, c, fc
            c = lo + g * (hi - lo)
            fc = f(c)
    t = 0.5 * (lo + hi)
    if vals[k] < f(t):  # keep the grid point if the refinement did not improve it
        t = float(ts[k])
    w1, v = math.cos(t), math.sin(t)
    if abs(v) < 1e-9:  # snap the exact corner (the adversarial SVM's v* = 0) so accuracies are not 1e-10 noise
        v = 0.0
        w1 = math.copysign(1.0, w1)
    return SVMSolution(w1, v, f(t), reduced_accuracy(w1, v, d, eta, p),
                       reduced_accuracy(w1, v, d, eta, p, eps, "shift"),
                       reduced_accuracy(w1, v, d, eta, p, eps, "linf"))


def lemma_c2_constants() -> dict[str, float]:
    """Lemma C.2's two numbers (d-free, eta = 4/sqrt(d)): the loss lower bound when v < 1/sqrt(2),
    0.3 E[max(0, 1 + 1/sqrt(2) - N(4/sqrt(2), 1/2))] (> 0.005), and the loss of (w_1, v) = (0, 1),
    E[max(0, 1 - N(4, 1))] (< 0.0004)."""
    r = 1.0 / SQRT2
    return {"lower_bound_v_small": 0.3 * gauss_hinge(4.0 * r - r, r), "loss_w1_0_v_1": gauss_hinge(4.0, 1.0)}


# ---------------------------------------------------------------- Monte Carlo

def monte_carlo(ws: list[Any], *, n: int, eta: float, p: float = 0.7, eps: float = 0.0,
                attacks: tuple[str, ...] = ("none",), biases: list[float] | None = None, seed: int = 0,
                chunk: int = 10_000) -> np.ndarray:
    """Accuracy of each sign(w^T x + b) under each attack on the same n seeded draws (chunked);
    returns an array (len(ws), len(attacks)).

    The attacks are applied to the samples themselves (x - eps y sign(w), x - eps y w / norm(w)_2, or the
    shift), not through the closed-form margin, so this is an independent check of `linear_accuracy`.
    """
    W = torch.stack([torch.as_tensor(w, dtype=torch.float64).flatten() for w in ws])
    b = torch.tensor(biases if biases is not None else [0.0] * len(ws), dtype=torch.float64)
    d = W.shape[1] - 1
    for a in attacks:
        _check(d, eta, p, eps, a)
    g = torch.Generator().manual_seed(seed)
    correct = np.zeros((len(ws), len(attacks)))
    done = 0
    while done < n:
        m = min(chunk, n - done)
        x, y = sample(m, d, eta, p, generator=g, dtype=torch.float64)
        yf = y.to(torch.float64)[:, None]
        clean = x @ W.T + b  # (m, k)
        for j, a in enumerate(attacks):
            if a == "none":
                out = clean
            elif a == "shift":  # x_i -= eps y for i >= 2
                out = clean - eps * yf * W[:, 1:].sum(1)
            else:
                for i in range(len(ws)):
                    w = W[i]
                    if a == "linf":
                        xa = x - eps * yf * torch.sign(w)
                    else:
                        xa = x - eps * yf * w / w.norm() if float(w.norm()) > 0 else x
                    correct[i, j] += int(((xa @ w + b[i]) * y > 0).sum())
                continue
            correct[:, j] += ((out * y[:, None]) > 0).sum(0).numpy()
        done += m
    return correct / n


def monte_carlo_accuracy(w: Any, b: float = 0.0, *, n: int, eta: float, p: float = 0.7, eps: float = 0.0,
                         attack: str = "none", seed: int = 0, chunk: int = 10_000) -> float:
    """`monte_carlo` for one classifier and one attack."""
    return float(monte_carlo([w], n=n, eta=eta, p=p, eps=eps, attacks=(attack,), biases=[b], seed=seed,
                             chunk=chunk)[0, 0])


def reduced_weights(w1: float, v: float, d: int) -> torch.Tensor:
    """The full (d + 1)-vector of the reduced classifier w_1 x_1 + v z."""
    w = torch.full((d + 1,), v / math.sqrt(d), dtype=torch.float64)
    w[0] = w1
    return w


def summary(d: int = 1000, p: float = 0.7, eta: float | None = None, n_mc: int = 0, seed: int = 0
            ) -> dict[str, Any]:
    """The closed-form numbers of Section 2 at eps = 2 eta (eta = 4/sqrt(d) by default; f_avg at
    3/sqrt(d)), optionally with Monte-Carlo estimates on n_mc draws."""
    eta = 4.0 / math.sqrt(d) if eta is None else eta
    eps = 2.0 * eta
    out: dict[str, Any] = {"d": d, "p": p, "eta": eta, "eps": eps}
    eta3 = 3.0 / math.sqrt(d)
    out["f_avg"] = {"eta": eta3, "std": f_avg_accuracy(d, eta3), "adv": f_avg_accuracy(d, eta3, 2 * eta3)}
    for name, adversarial in (("standard_svm", False), ("adversarial_svm", True)):
        sol = svm_2param(d, eta, eps, p, adversarial=adversarial)
        out[name] = asdict(sol)
    if n_mc:
        atk = ("none", "shift", "linf")
        ws = [reduced_weights(out[k]["w1"], out[k]["v"], d) for k in ("standard_svm", "adversarial_svm")]
        mc = monte_carlo(ws, n=n_mc, eta=eta, p=p, eps=eps, attacks=atk, seed=seed)
        for i, k in enumerate(("standard_svm", "adversarial_svm")):
            out[k]["mc"] = dict(zip(("std", "adv_shift", "adv_linf"), map(float, mc[i])))
    if n_mc:
        wavg = reduced_weights(0.0, 1.0, d)
        mc = monte_carlo([wavg], n=n_mc, eta=eta3, p=p, eps=2 * eta3, attacks=("none", "shift"), seed=seed + 1)
        out["f_avg"]["mc"] = {"std": float(mc[0, 0]), "adv": float(mc[0, 1])}
    out["bayes_std"] = bayes_accuracy(d, eta, p)
    out["lemma_c2"] = lemma_c2_constants()
    return out


def transfer_demo(d: int = 100, n: int = 5000, eta: float | None = None, eps: float | None = None, p: float = 0.7,
                  seed: int = 0, epochs: int = 200, lr: float = 0.5) -> dict[str, float]:
    """Transferability (Sec. 2.1): two standard logistic-regression models A and B trained on independent
    samples; the exact l_inf adversarial examples of A (x - eps y sign(w_A), eps = 2 eta by default) fool B
    too, because they shift the non-robust features toward -y whatever model they were made for.
    Returns clean and adversarial test accuracies (fractions)."""
    from robustlab.analysis.linear import accuracy, train_linear

    eta = 4.0 / math.sqrt(d) if eta is None else eta
    eps = 2.0 * eta if eps is None else eps
    xa, ya = sample(n, d, eta, p, seed=3 * seed)
    xb, yb = sample(n, d, eta, p, seed=3 * seed + 1)
    xt, yt = sample(n, d, eta, p, seed=3 * seed + 2)
    ma = train_linear(xa, ya, epochs=epochs, lr=lr)
    mb = train_linear(xb, yb, epochs=epochs, lr=lr)
    x_adv = xt - eps * yt.to(xt.dtype)[:, None] * torch.sign(ma.w)
    return {"A_clean": accuracy(ma.w, ma.b, xt, yt), "B_clean": accuracy(mb.w, mb.b, xt, yt),
            "A_on_A_adv": accuracy(ma.w, ma.b, x_adv, yt), "B_on_A_adv": accuracy(mb.w, mb.b, x_adv, yt),
            "B_exact_adv": accuracy(mb.w, mb.b, xt, yt, eps, "linf", box=False),
            "sign_agreement": float((torch.sign(ma.w) == torch.sign(mb.w)).float().mean())}
