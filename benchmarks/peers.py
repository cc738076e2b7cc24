"""Import the peer libraries (test-only oracles) beside the CPU torch; see shared/PEERS.md."""

from __future__ import annotations

import sys
import types
from typing import Any


def import_peers() -> dict[str, Any]:
    """{'torchattacks': module, 'foolbox': module, 'adv_lib': adv_lib.attacks} for those importable."""
    out: dict[str, Any] = {}
    try:
        import torchattacks

        out["torchattacks"] = torchattacks
    except Exception:  # noqa: BLE001 - a peer that does not import is simply absent
        pass
    try:
        import foolbox

        out["foolbox"] = foolbox
    except Exception:  # noqa: BLE001
        pass
    # adv-lib imports torchvision.models for LPIPS only: a placeholder module is enough
    for name in ("torchvision", "torchvision.models"):
        sys.modules.setdefault(name, types.ModuleType(name))
    try:
        import adv_lib.attacks

        out["adv_lib"] = adv_lib.attacks
    except Exception:  # noqa: BLE001
        pass
    return out
