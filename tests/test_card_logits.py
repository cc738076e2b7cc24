"""The model card carries the clean-logit summary (max logit, gap) of Seguin et al. (2022)."""

import pytest
import torch

from robustlab.analysis.logits import logit_gap, max_logit
from robustlab.evaluate import evaluate, summary
from tests.helpers import digits_mlp


def test_card_has_max_logit_and_gap_summary():
    m, x, y = digits_mlp()
    card = evaluate(m, x[:50], y[:50], norm="linf", eps=[0.05], custom=[("pgd", {"steps": 3})], checks=False,
                    batch_size=20)
    with torch.no_grad():
        z = m(x[:50])
    assert card["logits"]["n"] == 50
    assert card["logits"]["max_logit"]["mean"] == pytest.approx(float(max_logit(z).mean()), rel=1e-5)
    assert card["logits"]["gap"]["mean"] == pytest.approx(float(logit_gap(z).mean()), rel=1e-5)
    assert card["logits"]["accuracy"] == pytest.approx(card["clean_accuracy"])
    assert "clean logits: max logit" in summary(card)
