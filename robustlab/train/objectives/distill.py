"""Distillation from a teacher (Seguin et al. 2022; Hinton et al.; Papernot et al.'s defensive distillation).

Teacher targets are fixed per image: the teacher's logits averaged over `passes` augmented passes
(random crop with `crop_padding`, horizontal flip when `hflip`), computed once in setup() with the
teacher in eval mode and looked up by dataset index during training.

loss="l1": mean_i ||z_S(x_i) - z_T(x_i)||_1 (sum over classes; the paper's loss).
loss="kl": T^2 KL(softmax(z_T / T) || softmax(z_S / T)) (Hinton; ARD's T = 30 default).
loss="defensive": CE(softmax(z_T / T), softmax(z_S)) with the student at temperature 1 (the Helland
spec's reading of Papernot et al.); student_temperature=True trains the student at T instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustlab.train.objectives.base import Objective, ObjectiveOutput, StepContext, register_objective


@torch.no_grad()
def average_teacher_logits(teacher: nn.Module, x: Tensor, *, passes: int = 8, crop_padding: int = 0,
                           hflip: bool = False, batch_size: int = 1000, seed: int = 0) -> Tensor:
    """Per-image teacher logits averaged over `passes` augmented views (teacher run as given)."""
    from robustlab.data import augment

    dev = next(teacher.parameters()).device
    gen = torch.Generator(device=dev).manual_seed(seed)
    augmented = crop_padding > 0 or hflip
    total = None
    for _ in range(passes if augmented else 1):
        outs = []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size].to(dev)
            if crop_padding:
                xb = augment.random_crop(xb, crop_padding, generator=gen)
            if hflip:
                xb = augment.random_hflip(xb, generator=gen)
            outs.append(teacher(xb).float())
        z = torch.cat(outs)
        total = z if total is None else total + z
    assert total is not None
    return total / (passes if augmented else 1)


@register_objective("distill")
@dataclass
class Distill(Objective):
    """teacher: a run folder, model folder or kept checkpoint (``RUN/epochs/epoch_040``) of the teacher."""

    teacher: str = ""
    loss_type: str = "l1"
    temperature: float = 30.0
    student_temperature: bool = False
    passes: int = 8
    crop_padding: int = 0
    hflip: bool = False
    targets: Tensor | None = field(default=None, init=False, repr=False)

    def setup(self, model: nn.Module, x_train: Tensor, y_train: Tensor) -> None:
        from robustlab.models.io import load_model

        if not self.teacher:
            raise ValueError('the distill objective needs a teacher: set objective.teacher = "RUN_DIR"')
        teacher = load_model(self.teacher, map_location=next(model.parameters()).device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.targets = average_teacher_logits(teacher, x_train, passes=self.passes, crop_padding=self.crop_padding,
                                              hflip=self.hflip)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        if self.targets is None or ctx.index is None:
            raise RuntimeError("distill.setup() was not called, or the Trainer gave no sample indices")
        zt = self.targets[ctx.index.to(self.targets.device)].to(x.device)
        zs = model(x)
        T = self.temperature
        if self.loss_type == "l1":
            loss = (zs - zt).abs().sum(1).mean()
        elif self.loss_type == "kl":
            loss = T * T * F.kl_div(F.log_softmax(zs / T, 1), F.softmax(zt / T, 1), reduction="batchmean")
        elif self.loss_type == "defensive":
            zs_t = zs / T if self.student_temperature else zs
            loss = -(F.softmax(zt / T, 1) * F.log_softmax(zs_t, 1)).sum(1).mean()
        else:
            raise ValueError(f"loss_type must be 'l1', 'kl' or 'defensive', got {self.loss_type!r}")
        return ObjectiveOutput(loss, zs)
