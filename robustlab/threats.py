"""Threat models: kinds of perturbation budget.

A threat says how large a perturbation is (`size`) and whether it is within a budget (`within`). Every
attack result names its threat, and verification and the robust-accuracy curves ask the threat for sizes,
so a new kind of budget (a spatial flow field, measured on the flow carried in the result's ``aux``)
plugs in without touching them. Projections and random starts are the attacks' own (robustlab.ops for
the Lp balls, robustlab.attacks.spatial for flows).

- ``Lp(norm)``: the additive perturbation ``x_adv - x`` measured in linf, l2, l1, l0 (values
  changed) or pixel (pixels with any channel changed), intersected with the [0, 1] box.
- ``Unbounded(norm)``: eps = inf, only the box; sizes are still reported in `norm`.
- ``Flow``: a spatial flow field carried in ``aux["flow"]``; `size` is recomputed from it (||M r|| for a
  tied flow, L_flow for a two-channel one) and x_adv must be the warp of x by it.

Budgets are checked with one tolerance everywhere (`within`): ``size <= eps * (1 + REL_TOL) + ABS_TOL``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from robustlab.errors import InputError
from robustlab.ops import norm as norm_of

REL_TOL = 1e-5  # relative float tolerance on a budget
ABS_TOL = 1e-6  # absolute float tolerance on a budget (pixel units)


def fits(size: Tensor | float, eps: Tensor | float) -> Tensor | bool:
    """size <= eps with robustlab's one budget tolerance (inf eps: always)."""
    return size <= eps * (1 + REL_TOL) + ABS_TOL
LP_NORMS = ("linf", "l2", "l1", "l0", "pixel")


def _per_sample(eps: float | Tensor, x: Tensor) -> Tensor:
    e = torch.as_tensor(eps, dtype=x.dtype, device=x.device)
    return e.expand(x.shape[0]) if e.dim() == 0 else e


class Threat:
    """Base of every kind of budget.

    Subclasses implement:

    - ``size(x, x_adv, aux) -> (N,)``: the size of each sample's perturbation (aux: the result's
      ``aux`` dict, e.g. ``{"flow": ...}``; Lp threats ignore it);
    - ``consistent(x, x_adv, aux) -> (N,)``: x_adv is what aux's parameter produces (default: always);
      `within` (and so verification) refuses a point that is not.

    `within` and `name` come for free. Threats are small immutable values: equal when their
    `name` is equal.
    """

    name: str = "threat"

    def size(self, x: Tensor, x_adv: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
        raise NotImplementedError

    def consistent(self, x: Tensor, x_adv: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
        """Bool (N,): x_adv is what the perturbation parameter in aux produces (Lp: always)."""
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)

    def within(self, x: Tensor, x_adv: Tensor, eps: float | Tensor | None,
               aux: dict[str, Any] | None = None) -> Tensor:
        """Bool (N,): x_adv is `consistent` with aux and the perturbation's size is within eps (None or
        inf: no budget), with one tolerance."""
        ok = self.consistent(x, x_adv, aux)
        if eps is None:
            return ok
        e = _per_sample(eps, x)
        return ok & (fits(self.size(x, x_adv, aux), e) | torch.isinf(e))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Threat) and type(other) is type(self) and other.name == self.name

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.name))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Lp(Threat):
    """The additive perturbation x_adv - x in an Lp "norm" (linf, l2, l1, l0, pixel) and the [0, 1] box."""

    def __init__(self, norm: str):
        if norm not in LP_NORMS:
            raise InputError(f"unknown norm {norm!r}; choose one of {LP_NORMS}")
        self.norm = norm
        self.name = norm

    def size(self, x: Tensor, x_adv: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
        return norm_of(x_adv - x, self.norm)

    def diameter(self, x: Tensor) -> float:
        """The largest size a perturbation inside the box can have: a budget this large is no budget."""
        d = x[0].numel()
        return {"linf": 1.0, "l2": math.sqrt(d), "l1": float(d), "l0": float(d),
                "pixel": float(x.shape[-1] * x.shape[-2]) if x.dim() == 4 else float(d)}[self.norm]

class Unbounded(Lp):
    """No budget (eps = inf): only the [0, 1] box; sizes are reported in `norm` (default linf)."""

    def __init__(self, norm: str = "linf"):
        super().__init__(norm)
        self.name = f"unbounded-{norm}"

    def within(self, x: Tensor, x_adv: Tensor, eps: float | Tensor | None,
               aux: dict[str, Any] | None = None) -> Tensor:
        return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)

    def __repr__(self) -> str:
        return f"Unbounded({self.norm!r})"


class Flow(Threat):
    """A flow field that moves pixels (robustlab.attacks.spatial). Its size is measured on the flow, not on
    x_adv - x: the result's ``aux["flow"]`` carries the flow (zero for a point not attacked) and
    ``aux["padding"]`` the warp's padding ("zeros" by default). The size is recomputed from the flow,
    never read from the attack: ||M r|| for a tied (N, H, W) flow (spatial_pgd, the certificates' budget),
    L_flow for a two-channel (N, 2, H, W) flow (stadv). A point whose x_adv is not the warp of x by its
    flow (within WARP_TOL) is not `consistent`, so never within a budget nor verified."""

    name = "flow"
    WARP_TOL = 1e-5  # max |x_adv - warp(x, flow)| (pixel units): float rounding of the same warp

    @staticmethod
    def _flow(x: Tensor, aux: dict[str, Any] | None) -> Tensor:
        if not aux or not isinstance(aux.get("flow"), Tensor):
            raise InputError("a flow threat measures the flow field: the result's aux must carry 'flow'")
        r = aux["flow"]
        if x.dim() != 4 or r.shape[0] != x.shape[0] or tuple(r.shape[-2:]) != tuple(x.shape[-2:]) \
                or not (r.dim() == 3 or (r.dim() == 4 and r.shape[1] == 2)):
            raise InputError(f"aux['flow'] of shape {tuple(r.shape)} is no flow for x of shape {tuple(x.shape)}: "
                             "it must be (N, H, W) (tied) or (N, 2, H, W) (two-channel)")
        return r

    def size(self, x: Tensor, x_adv: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
        from robustlab.ops.flow import flow_size

        return flow_size(self._flow(x, aux).to(x.dtype))

    def consistent(self, x: Tensor, x_adv: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
        from robustlab.ops.flow import warp_image

        r = self._flow(x, aux).to(x.dtype)
        ref = warp_image(x, r, padding=(aux or {}).get("padding", "zeros"))
        if x_adv.shape != ref.shape:
            return torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        gap = (x_adv.to(ref.dtype) - ref).abs().flatten(1).amax(1)
        return (gap <= self.WARP_TOL) & torch.isfinite(r.flatten(1)).all(1)


def threat_of(norm: str | Threat, eps: float | Tensor | None = None) -> Threat:
    """The threat for a norm name and a budget: Flow for "flow", Unbounded(norm) when eps is inf
    everywhere, else Lp(norm)."""
    if isinstance(norm, Threat):
        return norm
    if norm == "flow":
        return Flow()
    if eps is not None:
        e = torch.as_tensor(eps)
        if e.numel() and bool(torch.isinf(e).all()):
            return Unbounded(norm)
    return Lp(norm)
