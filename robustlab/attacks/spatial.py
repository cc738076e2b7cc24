"""Flow-field (spatial) attacks: stAdv (Xiao et al. 2018) and budgeted spatial PGD in ||M r|| <= eps.

Both move pixels with the bilinear warp of :mod:`robustlab.ops.flow` (zero padding), so x_adv stays in
[0, 1]. ``stadv`` is a penalty method on a two-channel flow (CW(kappa = 0) + tau * L_flow; ``norm``
reports L_flow). ``spatial_pgd`` is a fixed-budget attack on a tied flow r = M^{-1} s with
||s||_2 <= eps, so ||M r|| <= eps holds exactly (``norm`` reports ||M r||); it is the attack the
spatial certificates are checked against. ``info["flow"]`` holds the flows, ``info["m_norm"]`` and
``info["l_diff"]`` the other sizes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel, is_adversarial
from robustlab.errors import InputError
from robustlab.ops import attack_loss, cw_loss
from robustlab.ops.flow import l_diff, l_flow, m_norm, tv_matrix, warp, warp_image


def _flow_norms(r: Tensor) -> tuple[Tensor, Tensor]:
    """(||M r||, l_diff) of a tied flow, or of the tied projection (mean of the channels) of a two-channel flow."""
    tied = r if r.dim() == 3 else r.mean(1)
    return m_norm(tied.double()).to(r.dtype), l_diff(r)


@register("spatial_pgd", family="fixed", norms=("flow",))
def spatial_pgd(
    model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "flow", eps: float | Tensor = 0.05, steps: int = 100,
    step_size: float | None = None, restarts: int = 1, random_start: bool = True, loss: str = "margin",
    targeted: bool = False, target: Tensor | None = None, padding: str = "zeros",
    generator: torch.Generator | None = None,
) -> AttackResult:
    """PGD on a tied flow r = M^{-1} s, ||s||_2 <= eps (so ||M r||_2 <= eps exactly); eps in TV units.

    Normalised-gradient ascent of `loss` ("margin", "cw" or "ce") in s, projected on the l2 ball;
    ``step_size`` defaults to 2.5 eps / steps; restarts begin uniformly in the ball and only
    continue the unsolved samples. The best iterate (highest loss; first success) is returned.
    """
    labels = target if targeted else y
    n, _, h, w = x.shape
    e = eps
    a = 2.5 * e / steps if step_size is None else e.new_full(e.shape, step_size)
    m_inv = tv_matrix(h, w).m_inv.to(x.dtype).to(x.device)
    model = CountedModel.of(model, n, x.device)
    best_r = torch.zeros(n, h, w, dtype=x.dtype, device=x.device)
    best_loss = torch.full((n,), -float("inf"), dtype=x.dtype, device=x.device)
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    d = h * w

    def evaluate(s: Tensor, xs: Tensor, lab: Tensor, idx: Tensor, grad: bool):
        s = s.detach().requires_grad_(grad)
        r = (s @ m_inv).view(-1, h, w)
        with torch.set_grad_enabled(grad):
            logits = model(warp(xs, r, padding=padding), rows=idx)
            vals = attack_loss(loss, logits, lab, targeted=targeted)
        g = torch.autograd.grad(vals.sum(), s)[0] if grad else None
        return r.detach(), vals.detach(), logits.detach(), g

    for _ in range(restarts):
        idx = (~success).nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        xs, lab, ee, aa = x[idx], labels[idx], e[idx], a[idx]
        if random_start:
            u = torch.randn(len(idx), d, dtype=x.dtype, device=x.device, generator=generator)
            rad = torch.rand(len(idx), 1, dtype=x.dtype, device=x.device, generator=generator) ** (1 / d)
            s = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12) * rad * ee[:, None]
        else:
            s = torch.zeros(len(idx), d, dtype=x.dtype, device=x.device)
        for t in range(steps + 1):
            r, vals, logits, g = evaluate(s, xs, lab, idx, grad=t < steps)
            adv = is_adversarial(logits, lab, targeted)
            better = (vals > best_loss[idx]) & ~success[idx] | (adv & ~success[idx])
            if better.any():
                j = idx[better]
                best_r[j], best_loss[j] = r[better], vals[better]
                success[j] = adv[better]
            if t == steps:
                break
            live = ~success[idx]
            step = g / g.norm(dim=1, keepdim=True).clamp_min(1e-12) * aa[:, None]
            s_new = s + step
            s_new = s_new * (ee[:, None] / s_new.norm(dim=1, keepdim=True).clamp_min(1e-12)).clamp(max=1)
            s = torch.where(live[:, None], s_new, s)
    x_adv = warp_image(x, best_r, padding=padding)
    with torch.no_grad():
        logits = model(x_adv)
    success = is_adversarial(logits, labels, targeted)
    mn, ld = _flow_norms(best_r)
    return AttackResult(x_adv, success, mn, model.forward, model.backward, logits,
                        {"flow": best_r, "m_norm": mn, "l_diff": ld, "threat": "flow"},
                        aux={"flow": best_r, "padding": padding})


@register("stadv", family="minnorm", norms=("flow",))
def stadv(
    model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "flow", tau: float = 0.05, steps: int = 100,
    optimizer: str = "lbfgs", lr: float = 0.01, kappa: float = 0.0, smooth: float = 1e-8,
    targeted: bool = False, target: Tensor | None = None, padding: str = "zeros",
    generator: torch.Generator | None = None,
) -> AttackResult:
    """stAdv: minimise CW(kappa) + tau * L_flow over a two-channel flow (Xiao et al. 2018).

    ``optimizer="lbfgs"`` (default, as the paper) or ``"adam"`` (learning rate ``lr``); ``steps`` is the
    number of L-BFGS iterations or Adam steps. ``tau = inf`` is the benign input (no attack). The
    returned flow is the smallest-L_flow successful iterate seen (``norm`` = its L_flow; inf where the
    attack failed). Larger tau gives smaller, smoother flows.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise InputError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if not (tau >= 0):
        raise InputError(f"tau must be >= 0, got {tau}")
    labels = target if targeted else y
    n, _, h, w = x.shape
    model = CountedModel.of(model, n, x.device)
    best_r = torch.zeros(n, 2, h, w, dtype=x.dtype, device=x.device)
    best_size = torch.full((n,), float("inf"), dtype=x.dtype, device=x.device)
    if not math.isinf(tau):
        flow = torch.zeros(n, 2, h, w, dtype=x.dtype, device=x.device)
        # a tiny random start breaks the symmetry of L_flow's kink at zero
        flow += 1e-4 * torch.randn(flow.shape, dtype=x.dtype, device=x.device, generator=generator)
        flow.requires_grad_(True)

        def objective() -> Tensor:
            logits = model(warp(x, flow, padding=padding))  # its backward pass counted where it runs
            adv_loss = cw_loss(logits, labels, targeted=targeted, kappa=kappa)  # higher = more adversarial
            size = l_flow(flow, smooth=smooth)
            with torch.no_grad():
                ok = is_adversarial(logits, labels, targeted)
                sz = l_flow(flow, smooth=0.0)
                upd = ok & (sz < best_size)
                best_r[upd] = flow.detach()[upd]
                best_size[upd] = sz[upd]
            # CW term: clamp at -kappa so an adversarial sample only minimises its flow
            return (-adv_loss + tau * size).sum()

        if optimizer == "adam":
            opt = torch.optim.Adam([flow], lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                objective().backward()
                opt.step()
        else:
            opt = torch.optim.LBFGS([flow], lr=1.0, max_iter=steps, history_size=10,
                                    line_search_fn="strong_wolfe")

            def closure() -> Tensor:
                opt.zero_grad()
                val = objective()
                val.backward()
                return val

            opt.step(closure)
    x_adv = warp_image(x, best_r, padding=padding)
    with torch.no_grad():
        logits = model(x_adv)
    success = is_adversarial(logits, labels, targeted)
    size = torch.where(success, l_flow(best_r), torch.full_like(best_size, float("inf")))
    mn, ld = _flow_norms(best_r)
    return AttackResult(x_adv, success, size, model.forward, model.backward, logits,
                        {"flow": best_r, "m_norm": mn, "l_diff": ld, "l_flow": size, "tau": tau, "threat": "flow"},
                        aux={"flow": best_r, "padding": padding})
