"""Optional metric sinks besides ``metrics.jsonl``: TensorBoard (the optional extra ``tensorboard``).

Training: ``[log] tensorboard = true`` in a config writes every epoch's numeric metrics to
``RUN/tensorboard/`` (step = epoch, 1-based). Evaluation: ``robustlab evaluate --tensorboard`` (or
``write_card_scalars``) writes clean and robust accuracy per eps beside the model card. Without the
``tensorboard`` package both print one note on stderr and write nothing; training and evaluation go on.
Watch with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any


class TensorBoardSink:
    """Scalars to a TensorBoard events file in `folder`; does nothing when tensorboard is not installed
    (``available`` says which). Tags are ``GROUP/KEY`` (``train/loss``, ``test/test_acc``, ...)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.writer: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("note: tensorboard is not installed (pip install 'robustlab[tensorboard]'); "
                  "metrics stay in metrics.jsonl only", file=sys.stderr)
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    @property
    def available(self) -> bool:
        return self.writer is not None

    def scalars(self, metrics: dict[str, Any], step: int, group: str | None = None) -> int:
        """Write every finite int/float of `metrics` at `step` (bools and other values skipped); returns
        how many were written."""
        if self.writer is None:
            return 0
        n = 0
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                continue
            tag = f"{group or _group(k)}/{k}"
            self.writer.add_scalar(tag, float(v), global_step=step)
            n += 1
        self.writer.flush()
        return n

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _group(key: str) -> str:
    for prefix in ("test", "val", "train"):
        if key.startswith(prefix):
            return prefix
    return "train" if key not in ("epoch", "lr") else "progress"


def write_card_scalars(card: dict[str, Any], folder: str | Path) -> int:
    """A model card's clean accuracy and robust accuracy (every attack, and the ensemble's alone) per eps,
    as TensorBoard scalars in `folder` (step = eps index; the eps is in the tag). Returns the number of
    scalars written (0 without tensorboard)."""
    sink = TensorBoardSink(folder)
    if not sink.available:
        return 0
    norm = card["threat_model"]["norm"]
    n = sink.scalars({"clean_acc": card["clean_accuracy"]}, 0, group="eval")
    for i, (e, a) in enumerate(card["robust_accuracy"].items()):
        n += sink.scalars({f"robust_acc_{norm}_eps{float(e):g}": a}, i, group="eval")
        n += sink.scalars({f"robust_acc_{norm}": a}, i, group="eval")
        ens = card.get("ensemble_robust_accuracy", {}).get(e)
        if ens is not None:
            n += sink.scalars({f"ensemble_robust_acc_{norm}": ens}, i, group="eval")
    sink.close()
    return n
