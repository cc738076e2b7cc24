"""The high-confidence targeted attack of Matyasko's thesis, ch. 4 (Algorithm 1; problem 4.6, step 4.8):

    x_hat = x
    while p_t(x_hat) < C (at most `steps` times):
        g = log C - log p_t(x_hat);  w = grad_x log p_t(x_hat)
        x_hat = x_hat + g / ||w||_2^2 * w          (the step onto the linearised level set log p_t = log C)

The whole attack is differentiable in the model's parameters (`hc_perturb(..., create_graph=True)`):
the adaptive step g / ||w||^2 carries second-order terms, and the stopping indicator
prod_{j<=i} 1[p_t(x_j) < C] is passed with a sigmoid-adjusted straight-through gradient (forward: the
hard indicator; backward: the gradient of sigmoid((log C - log p_t) / tau)). Targets: the class with
the closest linearised boundary (the DeepFool criterion, the thesis's choice) or uniformly random.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.best_point import num_classes_of
from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel
from robustlab.errors import InputError
from robustlab.ops import norm as norm_of


def closest_target(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """argmin_{j != y} |f_y - f_j| / ||grad_x (f_y - f_j)||_2 (the DeepFool criterion); k backward passes."""
    xg = x.detach().requires_grad_(True)
    logits = model(xg)
    n, k = logits.shape
    rows = torch.arange(n, device=x.device)
    grads = torch.stack([torch.autograd.grad(logits[:, c].sum(), xg, retain_graph=c < k - 1)[0].flatten(1)
                         for c in range(k)], 1)  # (N, K, D)
    f = (logits[rows, y][:, None] - logits).detach()
    w = (grads[rows, y][:, None] - grads).norm(dim=2)
    dist = f.abs() / w.clamp_min(1e-12)
    dist[rows, y] = float("inf")
    return dist.argmin(1)


def random_target(y: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
    """A uniformly random class other than y."""
    off = torch.randint(1, k, y.shape, generator=generator, device="cpu").to(y.device)
    return (y + off) % k


def hc_perturb(model: nn.Module, x: Tensor, target: Tensor, confidence: Tensor | float, *, steps: int = 5,
               max_step: float = 0.0, tau: float = 0.1, overshoot: float = 0.02, create_graph: bool = False,
               box: bool = True, passes: dict[str, int] | None = None) -> tuple[Tensor, Tensor]:
    """Algorithm 1 on a batch; returns (x_adv, steps_taken (N,)). With create_graph=True the result is
    a differentiable function of the model's parameters (and of x). confidence: C, a float or (N,)
    tensor in (0, 1). max_step > 0 clips each step's l2 norm (the thesis's evaluation mode: 0.1).
    overshoot scales each step by 1 + overshoot (robustlab's addition, as DeepFool's: log p_t is concave
    for a linear model, so the plain linearised step approaches the level set from below and never
    quite reaches it; 0 = the thesis's printed step). `passes`, when given, receives the number of
    forward and backward passes every sample of the batch went through."""
    n = x.shape[0]
    rows = torch.arange(n, device=x.device)
    log_c = torch.log(torch.as_tensor(confidence, dtype=x.dtype, device=x.device).clamp(1e-6, 1 - 1e-6))
    log_c = log_c.expand(n) if log_c.dim() == 0 else log_c
    xh = x if create_graph else x.detach()
    alive = torch.ones(n, dtype=x.dtype, device=x.device)  # straight-through product of the indicators
    taken = torch.zeros(n, dtype=torch.long, device=x.device)
    shape = (-1,) + (1,) * (x.dim() - 1)
    for _ in range(steps):
        if not create_graph:
            xh = xh.detach().requires_grad_(True)
        elif not xh.requires_grad:  # a leaf (the data): a fresh leaf that needs grad, the caller's x untouched
            xh = xh.detach().requires_grad_(True)
        logp = F.log_softmax(model(xh), 1)[rows, target]
        if passes is not None:
            passes["forward"] = passes.get("forward", 0) + 1
        gap = log_c - logp
        hard = (gap > 0).to(x.dtype)
        soft = torch.sigmoid(gap / tau)
        alive = alive * (hard + soft - soft.detach())
        if not bool((alive.detach() > 0).any()):
            break
        w, = torch.autograd.grad(logp.sum(), xh, create_graph=create_graph)
        if passes is not None:
            passes["backward"] = passes.get("backward", 0) + 1
        if not create_graph:
            gap, alive_step = gap.detach(), alive.detach()
        else:
            alive_step = alive
        wn2 = w.flatten(1).pow(2).sum(1).clamp_min(1e-20)
        r = ((1 + overshoot) * gap.clamp_min(0) / wn2).view(shape) * w
        if max_step > 0:
            rn = r.flatten(1).norm(dim=1)
            r = r * (max_step / rn.clamp_min(1e-20)).clamp(max=1.0).view(shape)
        taken += (alive.detach() > 0).long()
        xh = xh + alive_step.view(shape) * r
        if box:
            xh = xh.clamp(0.0, 1.0)
    if not create_graph:
        xh = xh.detach()
    return xh, taken


@register("high_confidence", family="minnorm", norms=("l2",))
def high_confidence(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "l2", steps: int = 500,
                    confidence: float | Tensor | None = None, max_step: float = 0.1, target_rule: str = "closest",
                    tau: float = 0.1, overshoot: float = 0.02, targeted: bool = False, target: Tensor | None = None,
                    generator: torch.Generator | None = None) -> AttackResult:
    """Matyasko's high-confidence attack in the thesis's evaluation mode: at most `steps` steps of
    Algorithm 1 with each step's l2 norm clipped at `max_step`, box projection after each step, and
    the target confidence C = the model's confidence on the clean input (`confidence=None`) or a
    given float / (N,) tensor. Untargeted: the target is the closest-boundary class
    (target_rule="closest") or a random other class ("random"); targeted: `target`. success: x_adv is
    classified as the target; norm: ||x_adv - x||_2 (inf on failure); info["target"], info["reached"]
    (p_t(x_adv) >= C) and info["confidence"] (C). overshoot: see `hc_perturb`."""
    labels = target if targeted else y
    if max_step < 0 or tau <= 0 or overshoot < 0:
        raise InputError(f"need max_step >= 0, tau > 0, overshoot >= 0 (got {max_step}, {tau}, {overshoot})")
    if target_rule not in ("closest", "random"):
        raise InputError(f"target_rule must be 'closest' or 'random', got {target_rule!r}")
    n = x.shape[0]
    model = CountedModel.of(model, n, x.device)
    logits0, k = num_classes_of(model, x)
    if targeted:
        t = labels
        src = y.to(x.device)
    else:
        src = labels
        t = closest_target(model, x, labels) if target_rule == "closest" else random_target(labels, k, generator)
    if confidence is None:
        c = F.softmax(logits0, 1).amax(1).detach()
    else:
        c = torch.as_tensor(confidence, dtype=x.dtype, device=x.device)
        if bool(((c <= 0) | (c >= 1)).any()):
            raise InputError(f"confidence must be in (0, 1), got {confidence}")
        c = c.expand(n).clone() if c.dim() == 0 else c
    x_adv, taken = hc_perturb(model, x, t, c, steps=steps, max_step=max_step, tau=tau, overshoot=overshoot)
    with torch.no_grad():
        logits = model(x_adv)
    p_t = F.softmax(logits, 1)[torch.arange(n, device=x.device), t]
    success = (logits.argmax(1) == t) & (t != src)
    nr = torch.where(success, norm_of(x_adv - x, "l2"), torch.full((n,), float("inf"), device=x.device))
    return AttackResult(x_adv, success, nr, model.forward, model.backward, logits,
                        {"target": t, "reached": p_t >= c - 1e-6, "confidence": c})
