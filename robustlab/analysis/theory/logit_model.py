"""The analytically tractable logit model of Seguin et al. (2022), appendix C.

Notation (N classes, beta = max logit, phî = one-hot of the argmax, y = one-hot label):

- the cross-entropy around beta phî (eq. 3): ``log_z``, ``h``, ``Q``, ``ce_expansion`` (to third
  order; the error is O(norm(v)^4)), checked against the exact ``ce``;
- surrogate logits of correctly classified samples, v = f±(beta)(1 - y), and of misclassified ones,
  v = g±(beta) y + psi±(beta)(1 - phî - y), with ``f``, ``g``, ``kappa``, ``psi`` as printed in the
  paper (``kappa_form="printed"``: inner denominator unsquared) or with a squared denominator
  (``kappa_form="squared"``, the form f± has);
- admissible sets: (A) beta > f±(beta), (B) beta > max(g±(beta), psi±(beta)), computed on a grid;
  the paper's beta✗ > 3.5 is *not* hard-coded (the printed formulas do not give it);
- gap shrinkage under the linearised L2-FGSM attack: the eq.-9 summand (z·1)^2 - N z·z <= 0, the
  eq.-9 sum and the correct/misclassified split, and the Fig. C.2 / C.3 surfaces.

All functions take and return float64 numpy arrays (broadcasting over beta); poles give inf/nan.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Branch = Literal["+", "-"]


def _sign(branch: str) -> float:
    if branch not in ("+", "-"):
        raise ValueError(f"branch must be '+' or '-', got {branch!r}")
    return 1.0 if branch == "+" else -1.0


def _arr(beta: float | np.ndarray) -> np.ndarray:
    return np.asarray(beta, dtype=np.float64)


# ------------------------------------------------------------------------------------ eq. 3 pieces

def log_z(beta: float | np.ndarray, n: int) -> np.ndarray:
    """log Z_beta = beta + ln(1 + e^-beta (N - 1)), the log-partition function of beta phî."""
    b = _arr(beta)
    return b + np.log1p(np.exp(-b) * (n - 1))


def h(beta: float, n: int, top: int = 0) -> np.ndarray:
    """h_beta = softmax(beta phî) = [1 + (e^beta - 1) phî] / (e^beta + N - 1) (phî at index `top`)."""
    out = np.full(n, 1.0 / (np.exp(beta) + n - 1))
    out[top] = np.exp(beta) / (np.exp(beta) + n - 1)
    return out


def Q(hv: np.ndarray) -> np.ndarray:
    """Q(h) = DIAG(h) - h ⊗ h (the softmax Jacobian / CE Hessian)."""
    return np.diag(hv) - np.outer(hv, hv)


def ce(z: np.ndarray, label: int) -> float:
    """Exact cross-entropy log sum_i e^{z_i} - z_label (stable)."""
    z = np.asarray(z, dtype=np.float64)
    m = z.max()
    return float(m + np.log(np.exp(z - m).sum()) - z[label])


def ce_expansion(beta: float, v: np.ndarray, label: int, top: int = 0) -> float:
    """Eq. 3: CE(beta phî + v | y) to third order in v (error O(norm(v)^4))."""
    v = np.asarray(v, dtype=np.float64)
    n = len(v)
    hv = h(beta, n, top)
    q = Q(hv)
    y = np.zeros(n)
    y[label] = 1.0
    phi = np.zeros(n)
    phi[top] = 1.0
    qv = q @ v
    return float(log_z(beta, n) - beta * phi @ y + v @ (hv - y) + 0.5 * v @ qv + (v * v) @ qv / 6.0
                 - (v @ hv) * (v @ qv) / 3.0)


def expansion_error_exponent(beta: float = 3.0, n: int = 10, label: int = 0, top: int = 0,
                             scales: np.ndarray | None = None, seed: int = 0) -> float:
    """Slope of log|CE - eq.3| against log s for v = s u, u a random unit vector of S_N(beta phî)
    (orthogonal to phî); the expansion is correct to third order iff the slope is about 4."""
    rng = np.random.default_rng(seed)
    u = rng.standard_normal(n)
    u[top] = 0.0  # v · phî = 0
    u /= np.linalg.norm(u)
    scales = np.geomspace(0.2, 0.02, 8) if scales is None else np.asarray(scales)
    z0 = np.zeros(n)
    z0[top] = beta
    err = [abs(ce(z0 + s * u, label) - ce_expansion(beta, s * u, label, top)) for s in scales]
    return float(np.polyfit(np.log(scales), np.log(err), 1)[0])


# ------------------------------------------------------------------------------- surrogate logits

def f(beta: float | np.ndarray, n: int, branch: Branch = "+") -> np.ndarray:
    """f±(beta): the non-label value of the correct-sample surrogate v = f(1 - y)."""
    b = _arr(beta)
    e = np.exp(-b)
    a, c = 1 + e * (n - 1), 1 - e * (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / c * (-1 + _sign(branch) * np.sqrt(1 + 2 * e ** 2 * c / a ** 2))


def kappa(beta: float | np.ndarray, n: int, kappa_form: str = "printed") -> np.ndarray:
    b = _arr(beta)
    e = np.exp(-b)
    a, c, d = 1 + e * (n - 1), 1 - e * (n - 1), 1 - e * (n - 3)
    if kappa_form == "printed":
        den = a
    elif kappa_form == "squared":
        den = a ** 2
    else:
        raise ValueError(f"kappa_form must be 'printed' or 'squared', got {kappa_form!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / d * np.sqrt(1 + 2 * c * d / den)


def g(beta: float | np.ndarray, n: int, branch: Branch = "+", kappa_form: str = "printed") -> np.ndarray:
    """g±(beta): the label's value in the misclassified-sample surrogate."""
    b = _arr(beta)
    e = np.exp(-b)
    c, d = 1 - e * (n - 1), 1 - e * (n - 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -d / c * (1 + _sign(branch) * kappa(b, n, kappa_form))


def psi(beta: float | np.ndarray, n: int, branch: Branch = "+", kappa_form: str = "printed") -> np.ndarray:
    """psi±(beta): the value of the classes that are neither the prediction nor the label."""
    b = _arr(beta)
    e = np.exp(-b)
    a, c, d = 1 + e * (n - 1), 1 - e * (n - 1), 1 - e * (n - 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * (e * g(b, n, branch, kappa_form) / c - a / d)


def poles(n: int) -> dict[str, float]:
    """beta where 1 - e^-beta (N-1) = 0 (all of f, g, psi) and 1 - e^-beta (N-3) = 0 (g, psi via kappa)."""
    return {"ln(N-1)": float(np.log(n - 1)), "ln(N-3)": float(np.log(n - 3)) if n > 3 else float("nan")}


def admissible_correct(beta: float | np.ndarray, n: int, branch: Branch = "+") -> np.ndarray:
    """(A) holds: beta > f±(beta) (False at poles / NaN)."""
    b = _arr(beta)
    fv = f(b, n, branch)
    return np.isfinite(fv) & (b > fv)


def admissible_misclassified(beta: float | np.ndarray, n: int, branch: Branch = "+",
                             kappa_form: str = "printed") -> np.ndarray:
    """(B) holds: beta > max(g±(beta), psi±(beta)) (False at poles / NaN)."""
    b = _arr(beta)
    gv, pv = g(b, n, branch, kappa_form), psi(b, n, branch, kappa_form)
    return np.isfinite(gv) & np.isfinite(pv) & (b > np.maximum(gv, pv))


def admissible_intervals(n: int, case: str = "misclassified", branch: Branch = "-", kappa_form: str = "printed",
                         lo: float = 0.05, hi: float = 10.0, points: int = 20001) -> list[tuple[float, float]]:
    """Maximal runs of grid points in [lo, hi] where the admissibility condition holds, as (first, last)."""
    grid = np.linspace(lo, hi, points)
    if case == "correct":
        ok = admissible_correct(grid, n, branch)
    elif case == "misclassified":
        ok = admissible_misclassified(grid, n, branch, kappa_form)
    else:
        raise ValueError(f"case must be 'correct' or 'misclassified', got {case!r}")
    out: list[tuple[float, float]] = []
    start = None
    for i, flag in enumerate(ok):
        if flag and start is None:
            start = i
        if not flag and start is not None:
            out.append((float(grid[start]), float(grid[i - 1])))
            start = None
    if start is not None:
        out.append((float(grid[start]), float(grid[-1])))
    return out


def surrogate_correct(beta: float, n: int, label: int = 0, branch: Branch = "+") -> np.ndarray:
    """z̃ = beta y + f(beta)(1 - y) for a correctly classified sample (prediction = label)."""
    z = np.full(n, float(f(beta, n, branch)))
    z[label] = beta
    return z


def surrogate_misclassified(beta: float, n: int, label: int = 0, top: int = 1, branch: Branch = "+",
                            kappa_form: str = "printed") -> np.ndarray:
    """z̃ = beta phî + g(beta) y + psi(beta)(1 - phî - y) for a misclassified sample."""
    if label == top:
        raise ValueError("a misclassified sample needs top != label")
    z = np.full(n, float(psi(beta, n, branch, kappa_form)))
    z[top] = beta
    z[label] = float(g(beta, n, branch, kappa_form))
    return z


def gap_correct(beta: float | np.ndarray, n: int, branch: Branch = "+") -> np.ndarray:
    return _arr(beta) - f(beta, n, branch)


def gap_misclassified(beta: float | np.ndarray, n: int, branch: Branch = "+", kappa_form: str = "printed"
                      ) -> np.ndarray:
    return _arr(beta) - g(beta, n, branch, kappa_form)


# --------------------------------------------------------------------------------- gap shrinkage

def eq9_summand(z: np.ndarray) -> np.ndarray:
    """(z·1)^2 - N z·z per row of z (<= 0 by Cauchy-Schwarz, 0 iff z is constant)."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    return z.sum(1) ** 2 - z.shape[1] * (z * z).sum(1)


def delta_gap_eq9(z: np.ndarray, omega: np.ndarray, eps: float) -> float:
    """Eq. 9: delta(beta✓ - f) = eps/(N-1) sum_nu Omega_nu ((z^nu·1)^2 - N z^nu·z^nu), Omega_nu >= 0."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    omega = np.asarray(omega, dtype=np.float64)
    if (omega < 0).any():
        raise ValueError("Omega_nu must be >= 0")
    return float(eps / (z.shape[1] - 1) * (omega * eq9_summand(z)).sum())


def delta_gap_split(beta_c: float | np.ndarray, beta_x: float | np.ndarray, eps_err: float, n: int,
                    omega_c: float, omega_x: float, branch: Branch = "+", kappa_form: str = "printed") -> np.ndarray:
    """The correct/misclassified split of the gap change (appendix C, the formula after eq. 9):

    -[(1-eps_err) Ω✓ (β✓ - f)^2 + eps_err Ω✗ (β✗ - g)^2] - 2 (N-2)/(N-1) eps_err Ω✗ (β✗ - g)(g - psi)
    """
    bc, bx = _arr(beta_c), _arr(beta_x)
    gc = bc - f(bc, n, branch)
    gx = bx - g(bx, n, branch, kappa_form)
    gpsi = g(bx, n, branch, kappa_form) - psi(bx, n, branch, kappa_form)
    return -((1 - eps_err) * omega_c * gc ** 2 + eps_err * omega_x * gx ** 2) \
        - 2 * (n - 2) / (n - 1) * eps_err * omega_x * gx * gpsi


def relative_gap_change(beta_c: np.ndarray, beta_x: np.ndarray, eps_err: float, n: int, eps: float = 0.1,
                        branch: Branch = "+", kappa_form: str = "printed") -> np.ndarray:
    """Fig. C.3: |Δ gap| / |gap| of the correct samples with Ω✓(eps) = Ω✗(eps) = eps (unit-norm inputs,
    unit weights Omega_nu: an assumption, the paper does not give them)."""
    d = delta_gap_split(beta_c, beta_x, eps_err, n, eps, eps, branch, kappa_form)
    return np.abs(d) / np.abs(gap_correct(beta_c, n, branch))


def mean_field_loss(beta_c: np.ndarray, beta_x: np.ndarray, eps_err: float, n: int, branch: Branch = "+",
                    kappa_form: str = "printed") -> np.ndarray:
    """Fig. C.2: (1 - eps_err) CE(z̃✓(β✓)) + eps_err CE(z̃✗(β✗)), exact CE on the surrogate logits
    (NaN where a surrogate is undefined)."""
    bc, bx = np.broadcast_arrays(_arr(beta_c), _arr(beta_x))
    fc = f(bc, n, branch)
    gx, px = g(bx, n, branch, kappa_form), psi(bx, n, branch, kappa_form)
    # CE(beta y + f(1-y)) = log(e^beta + (N-1) e^f) - beta; CE(beta phî + g y + psi rest) = log(...) - g
    with np.errstate(over="ignore", invalid="ignore"):
        m_c = np.maximum(bc, fc)
        l_c = m_c + np.log(np.exp(bc - m_c) + (n - 1) * np.exp(fc - m_c)) - bc
        m_x = np.maximum(np.maximum(bx, gx), px)
        l_x = m_x + np.log(np.exp(bx - m_x) + np.exp(gx - m_x) + (n - 2) * np.exp(px - m_x)) - gx
    return (1 - eps_err) * l_c + eps_err * l_x


__all__ = ["log_z", "h", "Q", "ce", "ce_expansion", "expansion_error_exponent", "f", "kappa", "g", "psi",
           "poles", "admissible_correct", "admissible_misclassified", "admissible_intervals", "surrogate_correct",
           "surrogate_misclassified", "gap_correct", "gap_misclassified", "eq9_summand", "delta_gap_eq9",
           "delta_gap_split", "relative_gap_change", "mean_field_loss"]
