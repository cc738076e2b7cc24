"""Input gradients and the smoothness quantities of Helland & VanHoudnos (2020), per input, batched.

- l_p FGSM (Appendix E): delta* = eps * phi_{q-1}(g) / ||phi_{q-1}(g)||_p for any p in [1, inf], 1/p + 1/q = 1.
- Input-gradient maps for display (diverging colours around 0; RGB maps clipped at +-3 sigma).
- Jacobians of the probabilities f = softmax(g), M = F_f^{1/2} J (rows sqrt(f_k) grad log f_k), the
  Fisher matrix F_x = J^T F_f J = M^T M, tr(F_x) = ||M||_F^2, lambda_max(F_x) exactly (K x K) and by
  power iteration on v -> F_x v (VJP/JVP pairs, never forming F_x), Lemma 3.1's chain.
- Local Lipschitz estimates of the logits; the Sobel-edge correlation and image alignment of gradients.

Units: x in [0, 1] (N, C, H, W); d = C*H*W; norms per sample over the flattened input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.errors import InputError

INF = float("inf")


# ---------------------------------------------------------------- l_p geometry (Appendix E)

def _p(p: float | str) -> float:
    """Accept 2, 3.0, float('inf'), "inf", "linf", "l2", "l3"."""
    if isinstance(p, str):
        s = p[1:] if p.startswith("l") else p
        p = INF if s == "inf" else float(s)
    p = float(p)
    if not p >= 1:
        raise InputError(f"l_p needs p >= 1 (or inf), got {p}")
    return p


def dual_exponent(p: float | str) -> float:
    """q with 1/p + 1/q = 1 (q = 1 for p = inf, q = inf for p = 1)."""
    p = _p(p)
    if p == INF:
        return 1.0
    if p == 1:
        return INF
    return p / (p - 1)


def phi(v: Tensor, r: float) -> Tensor:
    """Entrywise signed power sign(v) * |v|^r."""
    return v.sign() * v.abs().pow(r)


def lp_norm(v: Tensor, p: float | str) -> Tensor:
    """Per-sample l_p norm of (N, ...) tensors."""
    p = _p(p)
    flat = v.flatten(1)
    if p == INF:
        return flat.abs().amax(1)
    return flat.abs().pow(p).sum(1).pow(1 / p)


def lp_steepest_ascent(grad: Tensor, p: float | str) -> Tensor:
    """Unit-l_p direction u maximising <u, grad>: phi_{q-1}(grad) / ||phi_{q-1}(grad)||_p.

    p = inf gives sign(grad); p = 2 grad / ||grad||_2; p = 1 puts all the mass on (the first of) the
    largest |grad_i|. The maximum value is ||grad||_q.
    """
    p = _p(p)
    flat = grad.flatten(1)
    if p == INF:
        return grad.sign()
    if p == 1:
        i = flat.abs().argmax(1)
        u = torch.zeros_like(flat)
        u[torch.arange(len(flat)), i] = flat[torch.arange(len(flat)), i].sign()
        return u.view_as(grad)
    q = dual_exponent(p)
    # scale first so that |g|^(q-1) neither underflows nor overflows
    s = flat.abs().amax(1, keepdim=True).clamp_min(1e-30)
    u = phi(flat / s, q - 1)
    return (u / lp_norm(u, p).clamp_min(1e-30)[:, None]).view_as(grad)


def lp_fgsm_step(grad: Tensor, p: float | str, eps: float) -> Tensor:
    """delta* = eps * lp_steepest_ascent(grad, p): ||delta*||_p = eps and <delta*, grad> = eps ||grad||_q."""
    return eps * lp_steepest_ascent(grad, p)


def loss_gradient(model: nn.Module, x: Tensor, y: Tensor, *, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """(grad_x CE(model(x_i), y_i) per sample, per-sample CE)."""
    x = x.detach().requires_grad_(True)
    ce = F.cross_entropy(model(x), y, reduction="none")
    g, = torch.autograd.grad(ce.sum(), x, create_graph=create_graph)
    return g, ce.detach()


def lp_fgsm(model: nn.Module, x: Tensor, y: Tensor, *, p: float | str = "inf", eps: float = 0.1,
            targeted: bool = False) -> Tensor:
    """One l_p FGSM step x' = clamp(x + delta*, 0, 1) on the CE of label y (descent toward y if targeted)."""
    g, _ = loss_gradient(model, x, y)
    step = lp_fgsm_step(-g if targeted else g, p, eps)
    return (x + step).clamp(0, 1).detach()


# ---------------------------------------------------------------- Jacobians and the Fisher matrix

def _batched_rows(out: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
    """Rows d out[:, k] / dx for every k: (N, K, d). Samples must not interact (eval-mode BatchNorm)."""
    rows = [torch.autograd.grad(out[:, k].sum(), x, retain_graph=True, create_graph=create_graph)[0].flatten(1)
            for k in range(out.shape[1])]
    return torch.stack(rows, 1)


def fisher_factor(model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(M = F_f^{1/2} J, J, f): J (N, K, d) the Jacobian of the probabilities, M rows sqrt(f_k) grad log f_k,
    so that F_x = M^T M (exact, K backward passes through log-softmax)."""
    x = x.detach().requires_grad_(True)
    logp = F.log_softmax(model(x), 1)
    f = logp.exp().detach()
    grad_logp = _batched_rows(logp, x)
    jac = f[:, :, None] * grad_logp  # grad f_k = f_k grad log f_k
    m = f.sqrt()[:, :, None] * grad_logp
    return m.detach(), jac.detach(), f


def fisher_matrix(model: nn.Module, x: Tensor) -> Tensor:
    """F_x = J^T F_f J = sum_k f_k grad log f_k grad log f_k^T, (N, d, d). Only for tiny inputs."""
    m, _, _ = fisher_factor(model, x)
    return m.transpose(1, 2) @ m


def jacobian_norms(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Per sample: ||J_logits||_F, ||J_logits||_{2->2}, ||J||_F (probabilities), ||F_f^{1/2} J||_F,
    tr(F_x) = ||F_f^{1/2} J||_F^2, and lambda_max(F_x) (exact, from the K x K matrix M M^T)."""
    xg = x.detach().requires_grad_(True)
    jz = _batched_rows(model(xg), xg).detach()
    m, jac, _ = fisher_factor(model, x)
    lam = torch.linalg.eigvalsh(m @ m.transpose(1, 2))[:, -1]
    fro = m.flatten(1).norm(dim=1)
    return {"logit_jacobian_fro": jz.flatten(1).norm(dim=1), "logit_jacobian_spectral": torch.linalg.matrix_norm(jz, 2),
            "jacobian_fro": jac.flatten(1).norm(dim=1), "fisher_fro": fro, "fisher_trace": fro ** 2,
            "fisher_lambda_max": lam}


def fisher_lambda_max(model: nn.Module, x: Tensor, *, iters: int = 50, tol: float = 1e-7,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(lambda_max(F_x), unit top eigenvector) per sample by power iteration on v -> M^T (M v).

    M v is a Jacobian-vector product, obtained as the gradient of <M^T w, v> with respect to w (the
    double-VJP trick), M^T u a vector-Jacobian product through log-softmax; F_x is never formed.
    """
    x = x.detach().requires_grad_(True)
    logp = F.log_softmax(model(x), 1)
    s = logp.exp().sqrt().detach()
    w = torch.zeros_like(logp, requires_grad=True)
    mtw, = torch.autograd.grad(logp, x, grad_outputs=w * s, create_graph=True)  # linear in w

    def fx(v: Tensor) -> Tensor:
        mv, = torch.autograd.grad(mtw, w, grad_outputs=v, retain_graph=True)
        out, = torch.autograd.grad(logp, x, grad_outputs=mv * s, retain_graph=True)
        return out

    v = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    v = v / lp_norm(v, 2).clamp_min(1e-30).view(-1, *[1] * (x.dim() - 1))
    lam = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    for _ in range(iters):
        u = fx(v)
        new = (u * v).flatten(1).sum(1)  # Rayleigh quotient
        n = lp_norm(u, 2)
        v = torch.where(n.view(-1, *[1] * (x.dim() - 1)) > 0, u / n.clamp_min(1e-30).view(-1, *[1] * (x.dim() - 1)), v)
        done = bool(((new - lam).abs() <= tol * new.abs().clamp_min(1e-30)).all())
        lam = new
        if done:
            break
    return lam.detach(), v.detach()


def induced_norm_inf_to_2(a: Tensor, max_cols: int = 16) -> Tensor:
    """||A||_{inf->2} = max_{||x||_inf <= 1} ||A x||_2 for (N, K, d) A: the maximum sits at a vertex of the
    cube; exact by enumerating the 2^d sign vectors (d <= max_cols) or ||a||_1 when A has one row."""
    n, k, d = a.shape
    if k == 1:
        return a.abs().sum((1, 2))
    if d > max_cols:
        raise InputError(f"||A||_inf->2 is exact here only for one row or d <= {max_cols} (got d={d})")
    signs = torch.tensor([[1.0 if (i >> j) & 1 else -1.0 for j in range(d)] for i in range(2 ** d)],
                         dtype=a.dtype, device=a.device)
    return (a @ signs.T).norm(dim=1).amax(1)


def lemma31_chain(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """The quantities of Lemma 3.1 (p = 2) per sample, each a tensor (N,):

    lower = ||J^T F_f^{1/2}||_{2,inf}^2 (largest squared column norm) <= lambda_max(F_x) = ||F_f^{1/2} J||_{2->2}^2
    <= ||J^T F_f^{1/2}||_F^2 = tr(F_x), and ||J^T F_f^{1/2}||_F >= ||J||_F (3.5). For p = inf the middle
    step can fail (||.||_{inf->2} may exceed the Frobenius norm by up to sqrt(d)); see `induced_norm_inf_to_2`.
    """
    m, jac, _ = fisher_factor(model, x)
    return {"lower": m.pow(2).sum(2).amax(1),
            "lambda_max": torch.linalg.eigvalsh(m @ m.transpose(1, 2))[:, -1],
            "p2_squared": torch.linalg.matrix_norm(m, 2) ** 2,
            "frobenius_squared": m.pow(2).sum((1, 2)),
            "fisher_fro": m.flatten(1).norm(dim=1), "jacobian_fro": jac.flatten(1).norm(dim=1)}


# ---------------------------------------------------------------- Lipschitz estimates

def local_lipschitz(model: nn.Module, x: Tensor, *, radius: float, samples: int = 8,
                    generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Two lower estimates of the local l2 Lipschitz constant of the logits g on the l_inf ball of
    `radius` around each x (clamped to [0, 1]): the largest spectral norm ||J_g(x')||_{2->2} over x and
    `samples` uniform points x', and the largest finite-difference ratio ||g(x') - g(x)||_2 / ||x' - x||_2."""
    best_j = torch.zeros(len(x), dtype=x.dtype, device=x.device)
    best_fd = torch.zeros_like(best_j)
    with torch.no_grad():
        gx = model(x)
    for i in range(samples + 1):
        xp = x if i == 0 else (x + (torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) * 2 - 1)
                               * radius).clamp(0, 1)
        xg = xp.detach().requires_grad_(True)
        jz = _batched_rows(model(xg), xg).detach()
        best_j = torch.maximum(best_j, torch.linalg.matrix_norm(jz, 2))
        if i:
            with torch.no_grad():
                num = (model(xp) - gx).norm(dim=1)
            den = lp_norm(xp - x, 2)
            best_fd = torch.maximum(best_fd, torch.where(den > 0, num / den.clamp_min(1e-30), best_fd))
    return {"jacobian_spectral_max": best_j, "finite_difference_max": best_fd}


# ---------------------------------------------------------------- image alignment

SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def sobel_edges(x: Tensor) -> Tensor:
    """Sobel gradient magnitude of the channel-mean image, (N, H, W) (replicate padding)."""
    g = x.mean(1, keepdim=True)
    k = torch.stack([SOBEL_X, SOBEL_X.T])[:, None].to(x)
    e = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), k)
    return e.pow(2).sum(1).sqrt()


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    a = a.flatten(1) - a.flatten(1).mean(1, keepdim=True)
    b = b.flatten(1) - b.flatten(1).mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-30)


def edge_correlation(grad: Tensor, x: Tensor) -> Tensor:
    """Per-sample Pearson correlation between |grad| (summed over channels) and the Sobel edges of x:
    a proxy for "the gradient follows the object's outline" (high for robust models)."""
    return _pearson(grad.abs().sum(1), sobel_edges(x))


def image_alignment(grad: Tensor, x: Tensor) -> Tensor:
    """Per-sample cosine between grad and x - mean(x) (Etmann et al.'s alignment, sign-free use: |cos|)."""
    c = x.flatten(1) - x.flatten(1).mean(1, keepdim=True)
    g = grad.flatten(1)
    return (g * c).sum(1) / (g.norm(dim=1) * c.norm(dim=1)).clamp_min(1e-30)


# ---------------------------------------------------------------- display

def gradient_map(grad: Tensor, clip_sigma: float = 3.0) -> Tensor:
    """Gradients scaled for display, per image. One channel: values in [-1, 1] (divided by max |g|), meant
    for a diverging colour map centred at 0. RGB: clipped at +-clip_sigma standard deviations and mapped
    to [0, 1] with 0.5 = no gradient (as Tsipras et al. show them)."""
    n, c = grad.shape[:2]
    flat = grad.flatten(1)
    if c == 1:
        return (flat / flat.abs().amax(1, keepdim=True).clamp_min(1e-30)).view_as(grad)
    s = clip_sigma * flat.std(1, keepdim=True).clamp_min(1e-30)
    return ((flat.clamp(-s, s) / s + 1) / 2).view_as(grad)


def gradient_summary(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """Means over the batch of the per-sample diagnostics (for experiment tables)."""
    g, _ = loss_gradient(model, x, y)
    out = {"grad_l1": float(lp_norm(g, 1).mean()), "grad_l2": float(lp_norm(g, 2).mean()),
           "edge_correlation": float(edge_correlation(g, x).mean()),
           "image_alignment": float(image_alignment(g, x).abs().mean())}
    if x[0].numel() <= 4096:
        jn = jacobian_norms(model, x)
        out.update({k: float(v.mean()) for k, v in jn.items()})
    return {k: (v if math.isfinite(v) else float("nan")) for k, v in out.items()}
