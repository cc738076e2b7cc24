"""The adversary critic of Matyasko's thesis, ch. 4 (objective 4.2), as a two-network training method.

A class-conditional critic D (`critic_mlp`; output k = logit of "natural example of class k") learns to
tell natural examples of class k from the classifier's high-confidence adversarial examples targeted
at k (standard binary cross-entropy, the spec's reading of (4.3)), with a gradient-norm penalty at the
real and at the adversarial points separately (no interpolation; (||grad_x D_k|| - 1)^2 by default).
The classifier minimises

    CE(f(x), y) + lam * -log sigmoid(D_t(A_f(x; t)))   [non-saturating (4.4); saturating=True: log(1 - D)]
                + lam_rec * ||A_f(A_f(x; t); y) - x||_2   [adversarial cycle consistency (4.5)]

back-propagating through the differentiable attack A_f (`attacks.high_confidence.hc_perturb` with
create_graph=True; `attack_steps` = N_max). Targets: the closest linearised boundary (thesis) or random.
The attack's target confidence C is the running mean of the classifier's confidence on natural data of
each class; the first `pretrain_epochs` epochs train the classifier alone (CE) to initialise it.
Updates alternate: one classifier step, then one critic step, on every batch. Adam with beta1 = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.attacks.confident_target import closest_target, hc_perturb, random_target
from robustlab.train.method import Batch, BuildEnv, Method, StepContext, StepOutput, register_method


def gradient_penalty(d_out: Tensor, x: Tensor, kind: str = "one_centered") -> Tensor:
    """Mean (||grad_x d||_2 - 1)^2 ("one_centered", WGAN-GP form) or ||grad_x d||_2^2 ("zero_centered")."""
    g, = torch.autograd.grad(d_out.sum(), x, create_graph=True)
    n = g.flatten(1).norm(dim=1)
    return ((n - 1) ** 2).mean() if kind == "one_centered" else (n ** 2).mean()


@register_method("adversary_critic")
@dataclass
class AdversaryCritic(Method):
    lam: float = 0.5  # critic term (thesis: 0.5 MLP, 0.1 LeNet-5)
    lam_rec: float = 1e-2  # cycle consistency
    lam_grad: float = 10.0  # critic gradient penalty
    attack_steps: int = 5  # N_max
    max_step: float = 0.0  # per-step l2 clip inside training (0 = none)
    target: str = "closest"  # "closest" | "random"
    critic_hidden: list[int] = field(default_factory=lambda: [1200, 1200])
    critic_noise: float = 0.1
    critic_lr: float = 1e-3
    beta1: float = 0.5
    pretrain_epochs: int = 1
    conf_momentum: float = 0.99  # running mean of the confidence per class
    saturating: bool = False
    gp: str = "one_centered"

    def __post_init__(self) -> None:
        if self.target not in ("closest", "random") or self.gp not in ("one_centered", "zero_centered"):
            raise ValueError(f"target must be closest|random and gp one_centered|zero_centered (got {self.target!r}, "
                             f"{self.gp!r})")
        if self.attack_steps < 1 or not 0 <= self.conf_momentum < 1 or self.lam < 0 or self.lam_rec < 0:
            raise ValueError("need attack_steps >= 1, 0 <= conf_momentum < 1, lam >= 0, lam_rec >= 0")

    def build(self, model: nn.Module, env: BuildEnv) -> None:
        from robustlab.models import build

        c, h, w = env.input_shape
        self.model = model
        self.critic = build("critic_mlp", c, env.num_classes, (h, w), hidden=list(self.critic_hidden),
                            noise=self.critic_noise).to(env.device)
        self.opt_f = env.optimizer(model.parameters(), name="adam", betas=[self.beta1, 0.999], weight_decay=0.0)
        self.opt_c = env.optimizer(self.critic.parameters(), name="adam", lr=self.critic_lr,
                                   betas=[self.beta1, 0.999], weight_decay=0.0)
        self.conf = torch.full((env.num_classes,), 0.9, device=env.device)

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "critic": self.critic}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.opt_f, "critic": self.opt_c}

    def state_dict(self) -> dict[str, Any]:
        return {"conf": self.conf.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "conf" in state:
            self.conf = torch.as_tensor(state["conf"]).to(self.conf.device)

    def _update_conf(self, logits: Tensor, y: Tensor) -> None:
        p = F.softmax(logits.detach(), 1)[torch.arange(len(y), device=y.device), y]
        for k in y.unique():
            m = y == k
            self.conf[k] = self.conf_momentum * self.conf[k] + (1 - self.conf_momentum) * p[m].mean()

    def step(self, batch: Batch, ctx: StepContext) -> StepOutput:
        f, d = ctx.module("model"), ctx.module("critic")
        x, y = batch.x, batch.y
        rows = torch.arange(len(y), device=y.device)
        logits = f(x)
        ce = F.cross_entropy(logits, y)
        self._update_conf(logits, y)
        if ctx.epoch < self.pretrain_epochs:  # initialise the classifier (and its running confidence)
            self.opt_f.zero_grad(set_to_none=True)
            ctx.backward(ce)
            self.opt_f.step()
            return StepOutput(ce.detach(), logits.detach(), {"ce": float(ce.detach())})
        # --- classifier step: through the differentiable attack
        with torch.enable_grad():
            t = closest_target(f, x, y) if self.target == "closest" else \
                random_target(y, logits.shape[1], ctx.generator if ctx.generator is not None and
                              ctx.generator.device.type == "cpu" else None)
        c_t = self.conf[t].clamp(0.05, 0.999)
        x_adv, _ = hc_perturb(f, x, t, c_t, steps=self.attack_steps, max_step=self.max_step, create_graph=True)
        d_adv = d(x_adv)[rows, t]
        # non-saturating -log D_nat(x_adv) (default), or the printed log(1 - D_nat(x_adv))
        adv_term = F.logsigmoid(-d_adv).mean() if self.saturating else -F.logsigmoid(d_adv).mean()
        x_rec, _ = hc_perturb(f, x_adv, y, self.conf[y].clamp(0.05, 0.999), steps=self.attack_steps,
                              max_step=self.max_step, create_graph=True)
        cyc = (x_rec - x).flatten(1).norm(dim=1).mean()
        loss_f = ce + self.lam * adv_term + self.lam_rec * cyc
        self.opt_f.zero_grad(set_to_none=True)
        ctx.backward(loss_f)
        self.opt_f.step()
        # --- critic step: natural x of class y against adversarial x targeted at t
        xr = x.detach().requires_grad_(True)
        xa = x_adv.detach().requires_grad_(True)
        dr, da = d(xr)[rows, y], d(xa)[rows, t]
        loss_c = F.softplus(-dr).mean() + F.softplus(da).mean()
        pen = gradient_penalty(dr, xr, self.gp) + gradient_penalty(da, xa, self.gp)
        self.opt_c.zero_grad(set_to_none=True)
        ctx.backward(loss_c + self.lam_grad * pen)
        self.opt_c.step()
        with torch.no_grad():
            fooled = float((torch.sigmoid(da) > 0.5).float().mean())
            hit = float((f(x_adv).argmax(1) == t).float().mean())
        return StepOutput(loss_f.detach(), logits.detach(),
                          {"ce": float(ce.detach()), "critic_term": float(adv_term.detach()),
                           "cycle": float(cyc.detach()), "critic_loss": float(loss_c.detach()),
                           "grad_penalty": float(pen.detach()), "critic_fooled": fooled, "adv_target_rate": hit})
