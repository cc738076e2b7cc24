"""What the attacks' entry point does for models that would otherwise change the caller's data or mislead it
(issue 33): models that write to their input, BatchNorm in training mode, low-precision models, randomised
models. Each helper is one step of `robustlab.attacks.registry.run_attack` (or of `evaluate`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

LOW_PRECISION = (torch.float16, torch.bfloat16)


class InputCopy(nn.Module):
    """`model` run on a copy of its input: a model that writes to its input (an in-place clamp, a
    normalisation done in place) then changes neither the caller's tensors nor an attack's iterate."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Any:
        return self.model(x.clone())


def guard_input_writes(model: Any, x: Tensor, seen: Tensor) -> Any:
    """`model`, wrapped in InputCopy when the copy `seen` of `x` (finite) it was just run on differs from `x`
    (the model wrote to its input), else unchanged."""
    if torch.equal(seen, x):
        return model
    return InputCopy(model) if isinstance(model, nn.Module) else (lambda t: model(t.clone()))


def batchnorm_training(model: Any) -> bool:
    """The model has a BatchNorm layer in training mode: its output for a point depends on the batch."""
    return isinstance(model, nn.Module) and any(
        m.training for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm))


def fit_in_budget(x: Tensor, x_adv: Tensor, eps: Tensor, norm: str) -> Tensor:
    """x_adv brought inside the budget in its own (low) precision: the perturbation is projected in float32
    (linf: clamped to eps; l2, l1: scaled to eps) and rounded toward x in x's dtype, entry by entry, so that
    |x_adv - x| never exceeds the float32 projection's |d| and the size, measured in float32, is within eps.
    Rows already within the budget and rows with an infinite eps are returned unchanged. The box is kept: the
    rounded point lies between x and the projected one, both in [0, 1]."""
    from robustlab.ops import norm as norm_of

    x32, d = x.float(), x_adv.float() - x.float()
    e = eps.float().view(-1, *([1] * (x.dim() - 1)))
    if norm == "linf":
        dp = torch.minimum(torch.maximum(d, -e), e)
    elif norm in ("l2", "l1"):
        size = norm_of(d, norm).view_as(e)
        dp = d * torch.where(size > e, e / size.clamp_min(1e-30), torch.ones_like(size))
    else:  # l0 and pixel counts do not round
        return x_adv
    cand = (x32 + dp).to(x.dtype)
    over = (cand.float() - x32).abs() > dp.abs()
    cand = torch.where(over, torch.nextafter(cand, x), cand)
    keep = ~torch.isfinite(e) | (d.abs() <= dp.abs()).flatten(1).all(1).view_as(e)
    return torch.where(keep, x_adv, cand)


@torch.no_grad()
def is_randomised(model: nn.Module, x: Tensor, points: int = 16) -> bool:
    """Two identical forward passes on the first `points` points differ (input noise, dropout left on, a
    random transformation): a deterministic attack then sees one draw of the model, and the robust accuracy
    varies with the seed; such a model is evaluated with EOT (version 'rand'). Torch's random state is
    left as it was."""
    devices = [x.device] if x.device.type == "cuda" else []
    buffers = [(b, b.clone()) for b in model.buffers()]
    while True:
        xs = x[:points]
        try:
            with torch.random.fork_rng(devices=devices):
                a, b = model(xs.clone()), model(xs.clone())
            break
        except RuntimeError as e:  # out of memory: fewer points tell it as well
            if "out of memory" not in str(e) or points <= 1:
                raise
            points //= 2
        finally:
            for t, saved in buffers:
                t.copy_(saved)
    if not (isinstance(a, Tensor) and isinstance(b, Tensor)) or a.shape != b.shape:
        return False
    same = (a == b) | (torch.isnan(a) & torch.isnan(b))
    return not bool(same.all())


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@torch.no_grad()
def clean_pass(model: Any, x: Tensor) -> Any:
    """The entry point's clean forward pass: a model that cannot run on x (another image size, channel count)
    is an InputError of one line, not PyTorch's traceback; so are outputs other than a (N, K) tensor (a tuple)
    and integer logits (no gradient, no margin)."""
    from robustlab.errors import InputError

    try:
        out = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        if isinstance(e, RuntimeError) and "out of memory" in str(e):
            raise  # not bad input: the caller may retry with a smaller batch (evaluate.attacking)
        raise InputError(f"the model cannot be run on x of shape {tuple(x.shape)}: {_first_line(e)}") from None
    if not isinstance(out, Tensor) or out.dim() != 2:
        raise InputError(f"the model must return logits of shape (N, K), got "
                         f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
    if not out.is_floating_point():
        raise InputError(f"the model returns {out.dtype} logits; attacks need floating-point logits (return the "
                         "scores before any rounding or argmax)")
    return out


def run_impl(spec: Any, model: Any, x: Tensor, y: Tensor, kw: dict[str, Any]) -> Any:
    """An attack's implementation, with the model's failures that are the model's, not the attack's, as one
    line: a graph that does not reach the input (``.long()``, ``argmax`` inside the model) and a model that
    cannot run on a smaller batch (BatchNorm1d in training mode on one point)."""
    from robustlab.errors import InputError

    try:
        return spec.impl(model, x, y, **kw)
    except RuntimeError as e:
        msg = _first_line(e)
        if "does not require grad" in msg or "does not have a grad_fn" in msg:
            raise InputError(f"attack {spec.name!r} needs gradients, but the model's logits do not depend "
                             "differentiably on its input (e.g. .long(), round or argmax inside it): use a "
                             "gradient-free attack (square) or a differentiable stand-in (BPDA)") from None
        raise
    except ValueError as e:
        if "Expected more than 1 value per channel when training" in str(e):
            raise InputError(f"attack {spec.name!r}: the model's BatchNorm in training mode cannot run on a batch "
                             "of one point; call model.eval() or attack more points at once") from None
        raise


def eps_in_dtype(eps: Tensor, dtype: torch.dtype) -> Tensor:
    """The budget an implementation gets for inputs of `dtype`: float32 budgets as they are; for float16 and
    bfloat16 the nearest value of that dtype not above eps (0.1 in bfloat16 rounds up to 0.10009765625, a
    budget larger than the one asked for)."""
    if dtype not in LOW_PRECISION:
        return eps
    low = eps.to(dtype)
    return torch.where(low.float() > eps.float(), torch.nextafter(low, torch.zeros_like(low)), low)
