"""One-Pixel attack (Su, Vargas and Sakurai 2019): differential evolution over a few pixels, black-box.

A candidate is eps pixels, each (row, column, one value per channel); the population evolves by DE/rand/1
(mutant = a + F (b - c) of three other members, F = 0.5, no crossover, as in the paper), a child replacing
its parent when it lowers the model's probability of the label (targeted: raises the target's). A sample
stops at its first adversarial child. Forward passes only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustlab.attacks.registry import register
from robustlab.attacks.result import AttackResult, CountedModel, is_adversarial
from robustlab.errors import InputError
from robustlab.ops import norm as norm_of


def _check(x: Tensor, *, population: int = 400, steps: int = 100, **_: object) -> None:
    if x.dim() != 4:
        raise InputError(f"one_pixel changes pixels of (N, C, H, W) images, got shape {tuple(x.shape)}")
    if isinstance(population, bool) or not isinstance(population, int) or population < 4:
        raise InputError(f"population must be an integer >= 4 (DE/rand/1 draws three others), got {population!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise InputError(f"steps must be an integer >= 0, got {steps!r}")


def _paint(x: Tensor, genes: Tensor, k_of: Tensor) -> Tensor:
    """x (N, C, H, W) repeated per candidate, genes (N, P, K, 2 + C): the first k_of[n] pixels of each candidate
    set (row, column rounded and clamped to the image; values clamped to [0, 1])."""
    n, c, h, w = x.shape
    p, k = genes.shape[1], genes.shape[2]
    rows = genes[..., 0].round().clamp(0, h - 1).long()
    cols = genes[..., 1].round().clamp(0, w - 1).long()
    pos = rows * w + cols  # (N, P, K)
    vals = genes[..., 2:].clamp(0, 1)  # (N, P, K, C)
    out = x.flatten(2)[:, None].expand(n, p, c, h * w).clone()  # (N, P, C, HW)
    use = torch.arange(k, device=x.device)[None, None, :] < k_of[:, None, None]  # (N, 1, K)
    use = use.expand(n, p, k)
    cur = out.gather(3, pos[:, :, None, :].expand(n, p, c, k))
    new = torch.where(use[:, :, None, :], vals.permute(0, 1, 3, 2), cur)
    out.scatter_(3, pos[:, :, None, :].expand(n, p, c, k), new)
    return out.view(n, p, c, h, w)


@register("one_pixel", family="fixed", norms=("pixel",), stochastic=True, check=_check)
def one_pixel(model: nn.Module, x: Tensor, y: Tensor, *, norm: str = "pixel", eps: float | Tensor = 1.0,
              steps: int = 100, population: int = 400, f: float = 0.5, batch_rows: int = 4096,
              targeted: bool = False, target: Tensor | None = None,
              generator: torch.Generator | None = None) -> AttackResult:
    """One-Pixel: eps pixels changed (the pixel "norm": budget = number of pixels, floor of eps, at least 1
    where eps >= 1; eps < 1 changes nothing), found by differential evolution, `population` candidates per
    sample for `steps` generations (the thesis's settings: 400 and 100, via ART). The first population is
    uniform (positions over the image, values in [0, 1]); fitness is the softmax probability of the label
    (targeted: minus the target's). `batch_rows` bounds the images evaluated in one forward pass.
    Cost: population * (steps + 1) forward passes per sample at most, no backward pass."""
    labels = target if targeted else y
    _check(x, population=population, steps=steps)
    if not 0 < f <= 2:
        raise InputError(f"f (DE's differential weight) must be in (0, 2], got {f}")
    n, ch, h, w = x.shape
    e = eps
    k_of = e.floor().long().clamp(0, h * w)
    k = max(int(k_of.max()), 1)
    model = CountedModel.of(model, n, x.device)
    lo = torch.tensor([0.0, 0.0] + [0.0] * ch, device=x.device, dtype=x.dtype)
    hi = torch.tensor([h - 1.0, w - 1.0] + [1.0] * ch, device=x.device, dtype=x.dtype)
    u = torch.rand((n, population, k, 2 + ch), generator=generator, dtype=x.dtype).to(x.device)
    genes = lo + u * (hi - lo)

    def evaluate(ids: Tensor, g: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        imgs = _paint(x[ids], g, k_of[ids]).flatten(0, 1)
        with torch.no_grad():
            of = ids.repeat_interleave(g.shape[1])  # the sample of each image
            logits = torch.cat([model(imgs[i:i + batch_rows], rows=of[i:i + batch_rows])
                                for i in range(0, len(imgs), batch_rows)])
        logits = logits.view(len(ids), g.shape[1], -1)
        prob = logits.float().softmax(-1).gather(2, labels[ids][:, None, None].expand(-1, g.shape[1], 1))[..., 0]
        fit = -prob if targeted else prob
        adv = is_adversarial(logits.flatten(0, 1), labels[ids].repeat_interleave(g.shape[1]), targeted)
        return fit.to(x.dtype), adv.view(len(ids), -1), logits

    x_adv = x.clone()
    success = torch.zeros(n, dtype=torch.bool, device=x.device)
    logits_out = torch.zeros(n, 1, device=x.device, dtype=x.dtype)
    attack = (k_of > 0).nonzero().squeeze(1)
    fit = torch.zeros(n, population, device=x.device, dtype=x.dtype)

    def record(ids: Tensor, g: Tensor, fv: Tensor, adv: Tensor, logits: Tensor) -> Tensor:
        nonlocal logits_out
        if logits_out.shape[1] != logits.shape[2]:
            logits_out = torch.zeros(n, logits.shape[2], device=x.device, dtype=x.dtype)
        score = torch.where(adv, fv - 1e9, fv)  # an adversarial candidate first, then the lowest fitness
        j = score.argmin(1)
        r = torch.arange(len(ids), device=x.device)
        x_adv[ids] = _paint(x[ids], g[r, j][:, None], k_of[ids])[:, 0]
        logits_out[ids] = logits[r, j].to(x.dtype)
        hit = adv[r, j]
        success[ids] = hit
        return hit

    if attack.numel():
        fv, adv, logits = evaluate(attack, genes[attack])
        fit[attack] = fv
        hit = record(attack, genes[attack], fv, adv, logits)
        attack = attack[~hit]
    for _ in range(steps):
        if attack.numel() == 0:
            break
        g = genes[attack]
        m = len(attack)
        # three distinct others per member: random permutations' first three entries other than the member
        scores = torch.rand((m, population, population), generator=generator).to(x.device)
        scores[:, torch.arange(population), torch.arange(population)] = 2.0
        abc = scores.topk(3, dim=2, largest=False).indices  # (m, P, 3)
        r = torch.arange(m, device=x.device)[:, None]
        a, b, c = g[r, abc[..., 0]], g[r, abc[..., 1]], g[r, abc[..., 2]]
        child = torch.minimum(torch.maximum(a + f * (b - c), lo), hi)
        fv, adv, logits = evaluate(attack, child)
        better = (fv < fit[attack]) | adv
        genes[attack] = torch.where(better[..., None, None], child, g)
        fit[attack] = torch.where(better, fv, fit[attack])
        if bool(adv.any()):
            rows = adv.any(1)
            record(attack[rows], child[rows], fv[rows], adv[rows], logits[rows])
            attack = attack[~rows]
    size = norm_of(x_adv - x, "pixel")
    return AttackResult(x_adv, success, size, model.forward, model.backward, logits_out)
