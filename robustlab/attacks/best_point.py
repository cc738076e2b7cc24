"""The minimum-norm toolkit: the best point found so far, and the closing steps that shrink it.

`BestTracker` keeps, per sample, the smallest clearly adversarial point seen (it never grows);
`start_minnorm`, `offer_start` and `finish_last_iterate` are the opening, warm start and closing every
minimum-norm loop shares; `boundary_polish` projects onto the linearised boundary and `refine_along_ray`
bisects along each best perturbation's own direction.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from robustlab.attacks.result import AttackResult, CountedModel, view_n


class BestTracker:
    """Best-so-far for minimum-norm attacks: per sample, the smallest-norm adversarial seen.

    Never grows: an update is accepted only when the candidate is clearly adversarial (on the logits
    given, i.e. of that exact tensor: the adversarial class ahead by `REFINE_GAP`, so that a tie of logits,
    which another batch or memory layout can break the other way, is never kept as a success) and strictly
    smaller in `norm` than the current best.
    """

    def __init__(self, x: Tensor, norm: str, num_classes: int):
        self.x, self.normname = x, norm
        self.x_adv = x.clone()
        self.norm = torch.full((x.shape[0],), float("inf"), device=x.device, dtype=x.dtype)
        self.logits = torch.zeros(x.shape[0], num_classes, device=x.device, dtype=x.dtype)
        self.has_logits = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)

    @classmethod
    def seeded(cls, x: Tensor, norm: str, x_adv: Tensor, size: Tensor, logits: Tensor) -> BestTracker:
        """A tracker whose best so far is given (size inf where there is none), e.g. a portfolio's result."""
        track = cls(x, norm, logits.shape[1])
        track.x_adv, track.norm, track.logits = x_adv.clone(), size.clone(), logits.clone()
        track.has_logits = torch.isfinite(size)
        return track

    def update(self, idx: Tensor, x_cand: Tensor, logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
        """Offer candidates for samples `idx`; returns the (len(idx),) mask of the clearly adversarial ones (a
        candidate on a tie is not: an attack that stops at its first success goes on from it)."""
        from robustlab.ops import norm as norm_of

        adv = _clearly_adversarial(logits, labels, targeted)
        size = norm_of(x_cand - self.x[idx], self.normname)
        better = adv & (size < self.norm[idx])
        if bool(better.any()):
            b = idx[better]
            self.x_adv[b] = x_cand[better].detach()
            self.norm[b] = size[better].detach()
            self.logits[b] = logits[better].detach()
            self.has_logits[b] = True
        return adv

    @property
    def success(self) -> Tensor:
        return torch.isfinite(self.norm)

    def result(self, model: CountedModel, info: dict[str, Any] | None = None) -> AttackResult:
        """The best-so-far as a result, with the passes `model` counted (logits of points never adversarial stay
        zero: the entry point's verification pass gives every returned point its logits)."""
        return AttackResult(self.x_adv, self.success, self.norm.clone(), model.forward, model.backward,
                            self.logits, info or {})


def still_running(track: BestTracker, idx: Tensor, stop_at: float | None) -> Tensor | None:
    """stop_at for minimum-norm loops: the mask over `idx` of the samples to go on attacking (best size
    still > stop_at), or None when every one goes on (nothing to compact). A sample that leaves keeps its
    best point as its result."""
    if stop_at is None or idx.numel() == 0:
        return None
    keep = track.norm[idx] > stop_at
    return None if bool(keep.all()) else keep


def start_minnorm(model: nn.Module, x: Tensor, labels: Tensor, norm: str,
                  targeted: bool) -> tuple[CountedModel, BestTracker, Tensor, Tensor]:
    """The opening every minimum-norm attack shares: one counted clean forward pass and a `BestTracker` that
    records the points already adversarial (size 0). Returns (the counted model, track, clean logits, done
    mask): the model counts the attack's passes from here on (`result.CountedModel`)."""
    model = CountedModel.of(model, x.shape[0], x.device)
    logits0, k = num_classes_of(model, x)
    track = BestTracker(x, norm, k)
    done = track.update(torch.arange(x.shape[0], device=x.device), x, logits0, labels, targeted)
    return model, track, logits0, done


def offer_start(model: CountedModel, track: BestTracker, idx: Tensor, x_start: Tensor,
                labels: Tensor, targeted: bool) -> Tensor:
    """A warm start: samples `idx` of x_start (N, ...) offered to the tracker after one counted forward pass;
    returns the (len(idx),) mask of those clearly adversarial (the tracker's rule), whose start is now their
    best so far."""
    if idx.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=x_start.device)
    with torch.no_grad():
        logits = model(x_start[idx], rows=idx)
    return track.update(idx, x_start[idx], logits, labels[idx], targeted)


def finish_last_iterate(model: CountedModel, track: BestTracker, idx: Tensor, xa: Tensor,
                        labels: Tensor, targeted: bool, *, refine: int = 0, polish: int = 0,
                        all_labels: Tensor | None = None, stop_at: float | None = None) -> AttackResult:
    """The closing of a minimum-norm loop: the samples still running (`idx`) have their last iterate `xa`
    evaluated (one counted forward pass) and offered to the tracker; with `refine` or `polish` > 0 (and
    `all_labels`, the labels of every sample), `refine_along_ray` then shrinks each best point; returns every
    sample's best."""
    if idx.numel():
        with torch.no_grad():
            logits = model(xa, rows=idx)
        track.update(idx, xa, logits, labels, targeted)
    if (refine > 0 or polish > 0) and all_labels is not None:
        refine_along_ray(model, track, all_labels, targeted, refine, stop_at, polish=polish)
    return track.result(model)


def num_classes_of(model: nn.Module, x: Tensor) -> tuple[Tensor, int]:
    """(logits of x, number of classes), one forward pass without gradient."""
    with torch.no_grad():
        logits = model(x)
    return logits, logits.shape[1]


def _refinable(track: BestTracker, stop_at: float | None) -> Tensor:
    """The samples a closing step works on: a success of size > 0 (and > stop_at)."""
    ok = track.success & (track.norm > 0)
    if stop_at is not None:
        ok &= track.norm > stop_at
    return ok.nonzero().flatten()


def boundary_polish(model: CountedModel, track: BestTracker, labels: Tensor, targeted: bool, steps: int,
                    stop_at: float | None = None, *, classes: int = 2, searches: int = 5) -> None:
    """The closing polish of a minimum-norm attack (linf, l2, l1): `steps` rounds, each one counted forward
    pass at every best point x_b with `classes` counted backward passes, then at most `searches` counted
    forward passes.

    A round linearises at x_b the margin between the label and each of the `classes` strongest other
    classes there (targeted: between the target and the strongest other class, one backward pass), and
    projects the original point x onto each linearised boundary in the attack's norm inside the [0, 1] box
    (the exact box-constrained step of FAB and DeepFool, `ops.hyperplane_step_box`, aimed a hair past the
    boundary); the smallest of these steps is the candidate c. On a linear model c is the exact minimum
    (the attack may have ended in the region of a class whose boundary is not the nearest: the second class
    looked at is the one it most often is). Where the model curves, c may not be adversarial: the round
    then bisects the segment x_b .. c for its adversarial point nearest c. Every point of that segment is
    no larger than x_b (the norm is convex) and strictly smaller when c is, so the best never grows; a
    point is kept only when clearly adversarial (`REFINE_GAP`)."""
    from robustlab.ops import hyperplane_step_box
    from robustlab.ops import norm as norm_of

    if steps <= 0 or classes <= 0 or track.normname not in ("linf", "l2", "l1"):
        return
    for _ in range(steps):
        idx = _refinable(track, stop_at)
        if idx.numel() == 0:
            return
        x0, xb, lab = track.x[idx], track.x_adv[idx], labels[idx]
        with torch.enable_grad():
            z = xb.detach().clone().requires_grad_(True)
            lg = model(z, rows=idx)
            own = lg.gather(1, lab[:, None]).squeeze(1)
            rest = lg.detach().scatter(1, lab[:, None], float("-inf"))
            c = 1 if targeted else min(classes, lg.shape[1] - 1)
            js = rest.topk(c, dim=1).indices
            gs, ws = [], []
            for k in range(c):
                other = lg.gather(1, js[:, k:k + 1]).squeeze(1)
                g = other - own if targeted else own - other  # < 0: on the adversarial side of this boundary
                w, = torch.autograd.grad(g.sum(), z, retain_graph=k + 1 < c)
                gs.append(g.detach())
                ws.append(w)
        gap = 2 * REFINE_GAP * (1 + lg.detach().abs().amax(1))
        cand, size = xb, track.norm[idx]
        for g, w in zip(gs, ws):
            # the linearised margin g(x_b) + <w, x0 + d - x_b> = -gap, solved for the smallest d in the box
            c0 = -(g + gap) - (w * (x0 - xb)).flatten(1).sum(1)
            ck = (x0 + hyperplane_step_box(w, c0, -x0, 1 - x0, track.normname)).clamp(0, 1)
            sk = norm_of(ck - x0, track.normname)
            smaller = sk < size
            cand, size = torch.where(view_n(smaller, xb), ck, cand), torch.where(smaller, sk, size)
        live = size < track.norm[idx]
        if not bool(live.any()):
            return
        idx, xb, cand, lab = idx[live], xb[live], cand[live], lab[live]
        # the largest a in (0, 1] with x_b + a (c - x_b) clearly adversarial: a = 1 first, then bisection
        lo, hi = torch.zeros(len(idx), device=xb.device, dtype=xb.dtype), torch.ones(len(idx), device=xb.device,
                                                                                     dtype=xb.dtype)
        a = hi.clone()
        for k in range(max(searches, 1)):
            pt = (xb + view_n(a, xb) * (cand - xb)).clamp(0, 1)  # (rounding can leave the box by an ulp)
            with torch.no_grad():
                out = model(pt, rows=idx)
            adv = _clearly_adversarial(out, lab, targeted)
            if bool(adv.any()):
                track.update(idx[adv], pt[adv], out[adv], lab[adv], targeted)
            lo, hi = torch.where(adv, a, lo), torch.where(adv, hi, a)
            if k == 0:  # only the points whose full step failed search on
                go = ~adv
                if not bool(go.any()):
                    break
                idx, xb, cand, lab, lo, hi = idx[go], xb[go], cand[go], lab[go], lo[go], hi[go]
            a = (lo + hi) / 2


def refine_along_ray(model: CountedModel, track: BestTracker, labels: Tensor, targeted: bool,
                     steps: int, stop_at: float | None = None, *, polish: int = 0) -> None:
    """The closing of a minimum-norm attack: `polish` rounds of `boundary_polish` (the gradient steps onto
    the linearised boundary), then `refine` along the scaling path only, per sample with
    a success of size > 0 (and > stop_at): a bisection on t in [0, 1] for the smallest t that keeps
    x + t (x_best - x) adversarial, `steps` counted forward passes and no gradient; the tracker keeps what
    shrank. It takes back the overshoot an iterative attack leaves when its last steps are large against the
    sample's own minimum; it does not change the perturbation's direction (the attack's own result), so it
    does nothing for L0 and pixel counts."""
    boundary_polish(model, track, labels, targeted, polish, stop_at)
    if steps <= 0 or track.normname not in ("linf", "l2", "l1"):
        return
    idx = _refinable(track, stop_at)
    if idx.numel() == 0:
        return
    x_adv, size, logits, _ = refine(model.restrict(idx), track.x[idx], labels[idx], track.x_adv[idx], track.norm[idx],
                                      track.logits[idx], track.normname, targeted, searches=steps,
                                      families=("scale",), prune=0)
    track.update(idx, x_adv, logits, labels[idx], targeted)


# refine's one-parameter paths from no perturbation (t = 0) to a point's own perturbation d (t = 1), the norm
# growing with t: scaled by t, soft-thresholded at (1 - t) max|d| (L1's proximal step), clamped at t max|d|
FAMILIES = {"l2": ("scale",), "l1": ("soft", "scale"), "linf": ("clamp", "scale")}
PRUNE = ("l0", "l1")  # norms whose size drops with every entry put back


def _shrink(d: Tensor, t: Tensor, family: str) -> Tensor:
    t = view_n(t, d)
    if family == "scale":
        return t * d
    top = view_n(d.flatten(1).abs().amax(1), d)
    if family == "soft":
        return d.sign() * (d.abs() - (1 - t) * top).clamp_min(0)
    return torch.minimum(torch.maximum(d, -t * top), t * top)


# refine drives points onto the decision boundary, where a tie of logits can go either way with the batch a
# point is evaluated in (measured: logits equal to 1e-6, one class in one batch, the other in another); it
# accepts a candidate only when the adversarial class leads by REFINE_GAP * (1 + max |logit|)
REFINE_GAP = 1e-5


def _clearly_adversarial(logits: Tensor, labels: Tensor, targeted: bool) -> Tensor:
    from robustlab.ops import margin

    # m < -gap implies the prediction (untargeted: not the label; targeted: the target); NaN logits never pass
    m = -margin(logits, labels) if targeted else margin(logits, labels)  # < 0: adversarial
    return m < -REFINE_GAP * (1 + logits.abs().amax(1))


@torch.no_grad()
def refine(model: nn.Module, x: Tensor, labels: Tensor, x_adv: Tensor, size: Tensor, logits: Tensor, norm: str,
           targeted: bool, *, searches: int = 12, families: tuple[str, ...] | None = None,
           prune: int = 64) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Forward-only shrinking of each point's adversarial example (points with a finite `size`), never
    larger and verified: every accepted candidate was classified adversarial on its own forward pass, its
    class ahead by a margin (`REFINE_GAP`) that a different batch's rounding cannot undo.

    First, for each of the norm's paths in `FAMILIES` (l1/l2/linf; or the given `families`), a bisection
    for the smallest t in (0, 1] with x + path(t) adversarial, `searches` forward passes (the segment
    x .. x_adv stays in the box, and so do its soft-thresholded and clamped versions). Then, for the norms
    in `PRUNE` (l0, l1) and prune > 0, the changed entries, in increasing |change|, are put back to x one
    at a time while the point stays adversarial, one forward pass per try, at most `prune` tries per point
    (each success shrinks the size by the entry: l0 by one, l1 by |change|). Used by `minimum` after each
    run and, along the scaling path only, by the attacks' own closing (`refine_along_ray`). Returns
    (x_adv, size, logits, forward passes per point)."""
    from robustlab.ops import norm as norm_of

    x_adv, size, logits = x_adv.clone(), size.clone(), logits.clone()
    model = CountedModel.of(model, len(x), x.device)
    fwd = model.forward  # a fresh count unless the caller hands a counted model on (then its counts)
    idx = torch.isfinite(size).nonzero().flatten()
    if idx.numel() == 0:
        return x_adv, size, logits, fwd
    x0, lab = x[idx], labels[idx]
    for family in FAMILIES.get(norm, ()) if families is None else families:
        d = x_adv[idx] - x0
        lo, hi = torch.zeros_like(size[idx]), torch.ones_like(size[idx])
        for _ in range(searches):
            mid = (lo + hi) / 2
            cand = (x0 + _shrink(d, mid, family)).clamp(0, 1)
            lg = model(cand, rows=idx)
            adv = _clearly_adversarial(lg, lab, targeted)
            lo, hi = torch.where(adv, lo, mid), torch.where(adv, mid, hi)
            s = norm_of(cand - x0, norm)
            b = adv & (s < size[idx])
            j = idx[b]
            x_adv[j], size[j], logits[j] = cand[b], s[b], lg[b].to(logits.dtype)
    if norm not in PRUNE or prune <= 0:
        return x_adv, size, logits, fwd
    cur = x_adv[idx].flatten(1).clone()
    flat0 = x0.flatten(1)
    change = (cur - flat0).abs()
    count = (change > 0).sum(1)
    order = torch.where(change > 0, change, torch.full_like(change, float("inf"))).argsort(1)
    for k in range(min(prune, int(count.max()))):
        live = (k < count).nonzero().flatten()
        if live.numel() == 0:
            break
        c = order[live, k]
        cand = cur[live].clone()
        cand[torch.arange(len(live), device=x.device), c] = flat0[live, c]
        lg = model(cand.view((len(live),) + tuple(x0.shape[1:])), rows=idx[live])
        adv = _clearly_adversarial(lg, lab[live], targeted)
        keep = live[adv]
        cur[keep] = cand[adv]
        j = idx[keep]
        x_adv[j] = cand[adv].view((len(keep),) + tuple(x0.shape[1:]))
        size[j] = norm_of(x_adv[j] - x[j], norm)
        logits[j] = lg[adv].to(logits.dtype)
    return x_adv, size, logits, fwd
