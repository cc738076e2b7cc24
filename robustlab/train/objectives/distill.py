"""Distillation from a teacher (Seguin et al. 2022; Hinton et al.; Papernot et al.'s defensive distillation).

Teacher targets are fixed per image: the teacher's logits averaged over `passes` augmented passes
(random crop with `crop_padding`, horizontal flip when `hflip`), computed once in setup() with the
teacher in eval mode and looked up by dataset index during training.

loss="l1": mean_i ||z_S(x_i) - z_T(x_i)||_1 (sum over classes; the paper's loss).
loss="kl": T^2 KL(softmax(z_T / T) || softmax(z_S / T)) (Hinton; ARD's T = 30 default).
loss="defensive": CE(softmax(z_T / T), softmax(z_S)) with the student at temperature 1 (the Helland
spec's reading of Papernot et al.); student_temperature=True trains the student at T instead.
reduction: "sum" (over classes; the paper's L1 as written) or "mean" (over classes) for loss="l1".

Manipulated targets (Seguin et al. 2022; robustlab.train.distill_targets), applied once to the fixed
targets: target="fix_perm" / "fix_avg" keep each image's top-k values and permute / average the rest;
"correct_fix_1" is fix-1 (perm) with the teacher's wrong predictions swapped to the label; "hybrid"
puts the teacher's sorted values at the class ranks of `st_teacher`'s averaged logits. One seeded
draw per image (`target_seed`). bn_mode="train" averages the teacher's logits under batch
statistics (running statistics untouched) instead of eval mode.
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
    reduction: str = "sum"
    target: str = "normal"  # normal | fix_perm | fix_avg | correct_fix_1 | hybrid
    k: int = 0  # fix_perm / fix_avg: top-k values kept
    st_teacher: str = ""  # hybrid: the model whose class ranking the teacher's values take
    target_seed: int = 0
    bn_mode: str = "eval"  # eval | train (batch statistics, running statistics untouched)
    targets: Tensor | None = field(default=None, init=False, repr=False)

    def setup(self, model: nn.Module, x_train: Tensor, y_train: Tensor) -> None:
        from robustlab.train.distill_targets import manipulate

        if not self.teacher:
            raise ValueError('the distill objective needs a teacher: set objective.teacher = "RUN_DIR"')
        if self.target == "hybrid" and not self.st_teacher:
            raise ValueError('target "hybrid" needs objective.st_teacher = "RUN_DIR" (the ST model)')
        if self.reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {self.reduction!r}")
        dev = next(model.parameters()).device
        z = self._averaged(self.teacher, x_train, dev)
        z_st = self._averaged(self.st_teacher, x_train, dev) if self.target == "hybrid" else None
        gen = torch.Generator().manual_seed(self.target_seed)
        self.targets = manipulate(z.cpu(), self.target, k=self.k or None, y=y_train.cpu(),
                                  z_st=None if z_st is None else z_st.cpu(), generator=gen).to(z.device)

    def _averaged(self, path: str, x: Tensor, dev: torch.device) -> Tensor:
        from robustlab.models.io import load_model

        if self.bn_mode not in ("eval", "train"):
            raise ValueError(f"bn_mode must be 'eval' or 'train', got {self.bn_mode!r}")
        teacher = load_model(path, map_location=dev).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        if self.bn_mode == "train":
            for m in teacher.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
                    m.momentum = 0.0  # batch statistics, the running ones untouched
        return average_teacher_logits(teacher, x, passes=self.passes, crop_padding=self.crop_padding,
                                      hflip=self.hflip, seed=self.target_seed)

    def loss(self, model: nn.Module, x: Tensor, y: Tensor, ctx: StepContext) -> ObjectiveOutput:
        if self.targets is None or ctx.index is None:
            raise RuntimeError("distill.setup() was not called, or the Trainer gave no sample indices")
        zt = self.targets[ctx.index.to(self.targets.device)].to(x.device)
        zs = model(x)
        T = self.temperature
        if self.loss_type == "l1":
            d = (zs - zt).abs()
            loss = (d.sum(1) if self.reduction == "sum" else d.mean(1)).mean()
        elif self.loss_type == "kl":
            loss = T * T * F.kl_div(F.log_softmax(zs / T, 1), F.softmax(zt / T, 1), reduction="batchmean")
        elif self.loss_type == "defensive":
            zs_t = zs / T if self.student_temperature else zs
            loss = -(F.softmax(zt / T, 1) * F.log_softmax(zs_t, 1)).sum(1).mean()
        else:
            raise ValueError(f"loss_type must be 'l1', 'kl' or 'defensive', got {self.loss_type!r}")
        return ObjectiveOutput(loss, zs)
