"""Training objectives of the spatial paper's defenses (Sec. 4.2): f_fro, f_spe, f_at (stAdv pool), f_sdp.

f_nt is the ``standard`` objective; f_stn is ``standard`` (or ``spatial_norm_reg`` with lam = 0) on the
``stn`` model. All expect a robustlab ``one_hidden`` model (W, v) on single-channel images except
``stadv_at``, which works with any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.errors import InputError
from robustlab.ops import multiclass_hinge
from robustlab.ops.flow import tv_matrix
from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective


def _layers(model: nn.Module) -> tuple[Tensor, Tensor, float]:
    """(W, V, 1/std) of a one_hidden model; 1/std folds a Normalize layer into pixel units."""
    if not (hasattr(model, "W") and hasattr(model, "v")):
        raise InputError("this objective needs a robustlab 'one_hidden' model (attributes W and v)")
    norm = getattr(model, "normalize", None)
    std = getattr(norm, "std", None)
    return model.W, model.v, 1.0 / float(std.flatten()[0]) if std is not None else 1.0


def spectral_norm(w: Tensor, u: Tensor | None, iters: int = 3) -> tuple[Tensor, Tensor]:
    """sigma_max(W) by warm-started power iteration; differentiable in W (u, v held fixed)."""
    if u is None or u.shape[0] != w.shape[0]:
        u = torch.randn(w.shape[0], dtype=w.dtype, device=w.device)
    with torch.no_grad():
        u = u / u.norm()
        for _ in range(iters):
            v = w.T @ u
            v = v / v.norm().clamp_min(1e-12)
            u = w @ v
            u = u / u.norm().clamp_min(1e-12)
        v = w.T @ u
        v = v / v.norm().clamp_min(1e-12)
    return u @ w @ v, u


@register_objective("spatial_norm_reg")
@dataclass
class SpatialNormReg(Objective):
    """f_fro / f_spe: multiclass hinge + lam * (||W|| + ||V||), Frobenius (kind="fro", paper lam = 0.08)
    or spectral (kind="spectral", power iteration, paper lam = 0.09). For one output ||V|| = ||v||_2."""

    lam: float = 0.08
    kind: str = "fro"
    base_loss: str = "hinge"
    _u: dict = field(default_factory=dict, init=False, repr=False)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        if self.kind not in ("fro", "spectral"):
            raise ValueError(f"kind must be 'fro' or 'spectral', got {self.kind!r}")
        logits = model(x)
        base = multiclass_hinge(logits, y).mean() if self.base_loss == "hinge" else F.cross_entropy(logits, y)
        W, V, _ = _layers(model)
        if self.kind == "fro":
            reg = W.norm() + V.norm()
        else:
            sw, self._u["W"] = spectral_norm(W, self._u.get("W"))
            sv, self._u["V"] = spectral_norm(V, self._u.get("V"))
            reg = sw + sv
        return ObjectiveOutput(base + self.lam * reg, logits, {"reg": float(reg.detach())})


def pair_block(W: Tensor, V: Tensor, scale: float, lam: Tensor, i: int, j: int) -> Tensor:
    """A_ij = diag(V_i - V_j) W diag(lambda) in pixel units (differentiable)."""
    return (V[i] - V[j]).unsqueeze(1) * (W * scale) * lam.unsqueeze(0)


def dual_rayleigh(a: Tensor, c: Tensor, u: Tensor | None, iters: int) -> tuple[Tensor, Tensor]:
    """Rayleigh-quotient estimate of lambda_max([[0, A], [A^T, 0]] - diag c) by warm-started power iteration."""
    h = a.shape[0]
    with torch.no_grad():
        ad, cd = a.detach(), c.detach()
        shift = cd.abs().max() + ad.abs().sum(1).max() + ad.abs().sum(0).max()
        if u is None:
            u = torch.randn(a.shape[0] + a.shape[1], dtype=a.dtype, device=a.device)
        u = u / u.norm()
        for _ in range(iters):
            u = torch.cat([ad @ u[h:], ad.T @ u[:h]]) - cd * u + shift * u
            u = u / u.norm()
    val = 2 * (u[:h] @ a @ u[h:]) - (c * u * u).sum()
    return val, u


@register_objective("spatial_sdp")
@dataclass
class SpatialSDP(Objective):
    """f_sdp: CE + sdp_weight * mean over a random subset of class pairs of the SDP dual bound
    1^T max(c_ij + lambda_max(P_ij - diag c_ij), 0) (eps folded into the weight).

    lambda_max comes from `power_iters` warm-started power iterations (its gradient is u u^T); the
    dual variables c_ij are trained alongside by their own Adam-style step (`c_lr`, relative).
    """

    sdp_weight: float = 0.05
    pairs_per_step: int = 4
    power_iters: int = 3
    c_lr: float = 0.02
    _c: dict = field(default_factory=dict, init=False, repr=False)
    _u: dict = field(default_factory=dict, init=False, repr=False)

    def _bound(self, model: nn.Module, i: int, j: int, side: int) -> Tensor:
        W, V, scale = _layers(model)
        lam = tv_matrix(side, W.shape[1] // side).lam.to(W.dtype).to(W.device)
        a = pair_block(W, V, scale, lam, i, j)
        key = (i, j)
        if key not in self._c:
            self._c[key] = a.detach().abs().sum(1).tolist() + a.detach().abs().sum(0).tolist()
        c = torch.tensor(self._c[key], dtype=a.dtype, device=a.device).requires_grad_(True)
        lmax, self._u[key] = dual_rayleigh(a, c, self._u.get(key), self.power_iters)
        bound = (c + lmax).clamp_min(0).sum()
        (gc,) = torch.autograd.grad(bound, c, retain_graph=True)
        with torch.no_grad():  # signed step on c (scale-free), then store
            step = self.c_lr * (c.abs().mean() + 1e-12)
            self._c[key] = (c - step * torch.sign(gc)).tolist()
        return bound

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        k = logits.shape[1]
        h, w = x.shape[-2:]
        if h != w:
            raise InputError("spatial_sdp expects square images")
        allp = [(i, j) for i in range(k) for j in range(k) if i != j]
        pick = torch.randperm(len(allp), generator=_cpu(ctx.generator))[: self.pairs_per_step].tolist()
        bounds = torch.stack([self._bound(model, *allp[p], h) for p in pick])
        reg = bounds.mean()
        return ObjectiveOutput(ce + self.sdp_weight * reg, logits, {"sdp_bound": float(reg.detach())})

    def state_dict(self) -> dict[str, Any]:
        return {"c": {f"{i},{j}": v for (i, j), v in self._c.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._c = {tuple(int(t) for t in k.split(",")): v for k, v in state.get("c", {}).items()}


def _cpu(g: torch.Generator | None) -> torch.Generator | None:
    return g if g is None or g.device.type == "cpu" else None


@register_objective("stadv_at")
@dataclass
class StAdvAT(Objective):
    """f_at (Sec. 4): CE(x) + lambda_r CE(x_adv) with x_adv drawn from a pool of stAdv examples of
    training images, regenerated every `every` epochs (paper: lambda_r = 0.3, tau = 0.05, k = 3)."""

    lambda_r: float = 0.3
    tau: float = 0.05
    every: int = 3
    pool_size: int = 512
    steps: int = 50
    optimizer: str = "adam"
    lr: float = 0.01
    _data: tuple | None = field(default=None, init=False, repr=False)
    _pool: tuple | None = field(default=None, init=False, repr=False)
    _pool_epoch: int = field(default=-1, init=False, repr=False)

    def setup(self, model: nn.Module, x_train: Tensor, y_train: Tensor) -> None:
        self._data = (x_train, y_train)

    def _refresh(self, model: nn.Module, ctx: StepContext, device: torch.device) -> None:
        from robustlab.attacks.spatial import stadv

        xs, ys = self._data
        g = _cpu(ctx.generator)
        idx = torch.randperm(len(xs), generator=g)[: self.pool_size]
        was = model.training
        model.eval()
        try:
            res = stadv(model, xs[idx].to(device), ys[idx].to(device), tau=self.tau, steps=self.steps,
                        optimizer=self.optimizer, lr=self.lr)
        finally:
            model.train(was)
        self._pool = (res.x_adv.detach(), ys[idx].to(device))
        self._pool_epoch = ctx.epoch

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        if self._data is None:
            raise RuntimeError("stadv_at needs setup() with the training data (the Trainer calls it)")
        if self._pool is None or (ctx.epoch != self._pool_epoch and ctx.epoch % self.every == 0):
            self._refresh(model, ctx, x.device)
        px, py = self._pool
        pick = torch.randint(len(px), (len(x),), generator=_cpu(ctx.generator)).to(px.device)
        logits = model(x)
        loss = F.cross_entropy(logits, y) + self.lambda_r * F.cross_entropy(model(px[pick]), py[pick])
        return ObjectiveOutput(loss, logits)
