"""Logit statistics of Seguin et al. (2022): what adversarial training changes in a model's logits.

Every function works on plain tensors -- logits ``z`` of shape (n, K), integer labels ``y`` (n,),
optional sample ids -- so it does not care whether the logits come from a run folder's logit store,
a model card or a fresh forward pass.

- max logit beta = max_i z_i and logit gap z_(1) - z_(2); mean, std, skewness; per-epoch histograms
  on common bin edges (Fig. 1, B.1, B.4);
- robust accuracy binned by the clean gap, mean and std over models (Fig. 2B);
- within-class confidence-rank disagreement between two networks, the far-rank fraction (Fig. 3A-B);
- the error-rank histogram: where a wrong prediction sits in the ordering of the true class's mean
  logit vector (Fig. 3C);
- average overlap AO@k of two networks' class rankings on the same image, with the within-class
  permuted control (Fig. 3D, B.6);
- logit-cosine nearest neighbours (Fig. B.3).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from robustlab.errors import InputError


def _check_logits(z: Tensor, name: str = "logits", min_classes: int = 2) -> Tensor:
    if not isinstance(z, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if z.dim() != 2 or z.shape[1] < min_classes:
        raise InputError(f"{name} must have shape (n, K) with K >= {min_classes}, got {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise InputError(f"{name} contains NaN or inf")
    return z.float()


def _check_labels(y: Tensor, n: int, k: int | None = None, name: str = "labels") -> Tensor:
    if not isinstance(y, Tensor) or y.dim() != 1 or len(y) != n:
        raise InputError(f"{name} must be a 1-d tensor of length {n}")
    if y.dtype.is_floating_point:
        raise InputError(f"{name} must be integer class indices, got {y.dtype}")
    if k is not None and len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise InputError(f"{name} must lie in [0, {k - 1}]")
    return y.long()


# ------------------------------------------------------------------------------------ max logit / gap

def max_logit(z: Tensor) -> Tensor:
    """beta = max_i z_i per sample, shape (n,)."""
    return _check_logits(z, min_classes=1).max(1).values


def logit_gap(z: Tensor) -> Tensor:
    """Top-1 minus top-2 logit per sample (>= 0), shape (n,)."""
    top = _check_logits(z).topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def skewness(v: Tensor) -> float:
    """Sample skewness g1 = m3 / m2^(3/2) (central moments, population normalisation); 0 for constants."""
    v = v.double().flatten()
    if v.numel() < 2:
        raise InputError("skewness needs at least two values")
    d = v - v.mean()
    m2 = (d * d).mean()
    if m2 <= 0:
        return 0.0
    return float((d ** 3).mean() / m2 ** 1.5)


def describe(v: Tensor) -> dict[str, float]:
    v = v.double().flatten()
    return {"mean": float(v.mean()), "std": float(v.std(unbiased=False)), "skew": skewness(v),
            "median": float(v.median())}


def summary(z: Tensor, y: Tensor | None = None, small_gap: float = 1.0) -> dict[str, Any]:
    """Max-logit and gap statistics of one logit matrix (the model-card summary)."""
    z = _check_logits(z)
    beta, gap = max_logit(z), logit_gap(z)
    out: dict[str, Any] = {"n": len(z), "max_logit": describe(beta), "gap": describe(gap),
                           f"frac_gap_below_{small_gap:g}": float((gap < small_gap).float().mean())}
    if y is not None:
        y = _check_labels(y, len(z), z.shape[1])
        out["accuracy"] = float((z.argmax(1) == y).float().mean())
    return out


def histograms(values: list[Tensor] | Tensor, bins: int = 40, range_: tuple[float, float] | None = None
               ) -> tuple[Tensor, Tensor]:
    """Normalised histograms (rows sum to 1) of several value sets on common edges.

    `values` is a list (e.g. one max-logit vector per epoch); returns (density (E, bins), edges (bins+1,)).
    """
    vs = [values] if isinstance(values, Tensor) else list(values)
    if not vs:
        raise InputError("histograms needs at least one value set")
    vs = [v.double().flatten() for v in vs]
    if range_ is None:
        lo = min(float(v.min()) for v in vs)
        hi = max(float(v.max()) for v in vs)
        if hi <= lo:
            hi = lo + 1.0
        range_ = (lo, hi)
    edges = torch.linspace(range_[0], range_[1], bins + 1, dtype=torch.float64)
    rows = []
    for v in vs:
        h = torch.histc(v.clamp(range_[0], range_[1]), bins=bins, min=range_[0], max=range_[1])
        rows.append(h / max(len(v), 1))
    return torch.stack(rows), edges


# ------------------------------------------------------------------------------ accuracy by clean gap

def accuracy_by_gap(gap: Tensor, correct: Tensor, edges: Tensor) -> tuple[Tensor, Tensor]:
    """(accuracy per bin, count per bin) of `correct` (bool per sample) binned by `gap` on `edges`.

    Bin i holds edges[i] <= gap < edges[i+1] (the last bin is closed); empty bins give NaN accuracy.
    Values outside the edges are put in the first / last bin.
    """
    gap = gap.double().flatten()
    correct = correct.flatten().bool()
    if len(gap) != len(correct):
        raise InputError("gap and correct must have the same length")
    edges = edges.double()
    nb = len(edges) - 1
    if nb < 1:
        raise InputError("accuracy_by_gap needs at least two edges")
    b = (torch.bucketize(gap, edges[1:-1], right=True)).clamp(0, nb - 1)
    count = torch.bincount(b, minlength=nb).double()
    hits = torch.bincount(b, weights=correct.double(), minlength=nb)
    acc = torch.where(count > 0, hits / count.clamp_min(1), torch.full_like(count, float("nan")))
    return acc, count


def accuracy_by_gap_models(gaps: list[Tensor], corrects: list[Tensor], edges: Tensor) -> dict[str, Tensor]:
    """Per-bin accuracy over several models: mean and std (NaN-aware) of accuracy_by_gap."""
    if len(gaps) != len(corrects) or not gaps:
        raise InputError("give one `correct` vector per gap vector (at least one model)")
    accs = torch.stack([accuracy_by_gap(g, c, edges)[0] for g, c in zip(gaps, corrects)])
    counts = torch.stack([accuracy_by_gap(g, c, edges)[1] for g, c in zip(gaps, corrects)])
    valid = ~torch.isnan(accs)
    n = valid.sum(0).double()
    filled = torch.where(valid, accs, torch.zeros_like(accs))
    mean = torch.where(n > 0, filled.sum(0) / n.clamp_min(1), torch.full_like(n, float("nan")))
    var = torch.where(valid, (accs - mean) ** 2, torch.zeros_like(accs)).sum(0) / n.clamp_min(1)
    std = torch.where(n > 0, var.sqrt(), torch.full_like(n, float("nan")))
    return {"mean": mean, "std": std, "count": counts.sum(0), "edges": edges.double()}


def accuracy_by_quantile(gap: Tensor, correct: Tensor, q: int = 3) -> list[float]:
    """Accuracy within each of `q` equal-count groups of samples sorted by gap (lowest first)."""
    gap = gap.double().flatten()
    correct = correct.flatten().bool()
    order = gap.argsort()
    return [float(correct[c].double().mean()) for c in order.tensor_split(q)]


# ------------------------------------------------------------------------------------- rank analysis

def confidence(z: Tensor, y: Tensor | None = None, kind: str = "max_softmax") -> Tensor:
    """Per-sample confidence: 'max_softmax' (default), 'true_class' (softmax of y) or 'max_logit'."""
    z = _check_logits(z, min_classes=1)
    if kind == "max_softmax":
        return z.softmax(1).max(1).values
    if kind == "max_logit":
        return z.max(1).values
    if kind == "true_class":
        if y is None:
            raise InputError("confidence kind 'true_class' needs labels")
        y = _check_labels(y, len(z), z.shape[1])
        return z.softmax(1).gather(1, y[:, None])[:, 0]
    raise InputError(f"confidence kind must be 'max_softmax', 'true_class' or 'max_logit', got {kind!r}")


def within_class_ranks(conf: Tensor, y: Tensor) -> Tensor:
    """Rank (0 = most confident) of each sample among the samples of its own class; ties by index."""
    conf = conf.double().flatten()
    y = _check_labels(y, len(conf))
    ranks = torch.empty(len(conf), dtype=torch.long)
    for c in y.unique():
        idx = (y == c).nonzero()[:, 0]
        order = torch.sort(-conf[idx], stable=True).indices
        ranks[idx[order]] = torch.arange(len(idx))
    return ranks


def rank_disagreement(conf_a: Tensor, conf_b: Tensor, y: Tensor, threshold: float = 0.5) -> dict[str, Any]:
    """Within-class confidence ranks of two networks; the 'far-rank' fraction (Fig. 3A-B).

    An image is ranked far apart if |rank_A - rank_B| > threshold * (max rank) of its class (max rank =
    class size - 1). Returns per-class fractions, their mean ('fraction'), the ranks and the far mask.
    """
    conf_a, conf_b = conf_a.flatten(), conf_b.flatten()
    if len(conf_a) != len(conf_b):
        raise InputError("the two confidence vectors must have the same length")
    y = _check_labels(y, len(conf_a))
    ra, rb = within_class_ranks(conf_a, y), within_class_ranks(conf_b, y)
    far = torch.zeros(len(y), dtype=torch.bool)
    per_class: dict[int, float] = {}
    for c in y.unique().tolist():
        m = y == c
        max_rank = int(m.sum()) - 1
        f = (ra[m] - rb[m]).abs().double() > threshold * max_rank
        far[m] = f
        per_class[int(c)] = float(f.double().mean())
    return {"fraction": sum(per_class.values()) / len(per_class), "per_class": per_class, "far": far,
            "rank_a": ra, "rank_b": rb}


def class_mean_logits(z: Tensor, y: Tensor, num_classes: int | None = None) -> Tensor:
    """m_c = mean logit vector over correctly classified samples of class c, shape (K, K); NaN rows if none."""
    z = _check_logits(z)
    k = num_classes or z.shape[1]
    y = _check_labels(y, len(z), k)
    ok = z.argmax(1) == y
    m = torch.full((k, z.shape[1]), float("nan"))
    for c in range(k):
        sel = ok & (y == c)
        if sel.any():
            m[c] = z[sel].mean(0)
    return m


def error_ranks(pred: Tensor, y: Tensor, class_means: Tensor) -> Tensor:
    """For every wrong prediction, the rank k (1 = largest) of the predicted class in m_y (Fig. 3C)."""
    pred, y = pred.long().flatten(), y.long().flatten()
    wrong = pred != y
    if class_means.dim() != 2:
        raise InputError("class_means must be (K, K)")
    rows = class_means[y[wrong]]
    if torch.isnan(rows).any():
        raise InputError("some true class has no correctly classified sample: its mean logit is undefined")
    # rank = 1 + number of classes whose mean logit is strictly larger (ties by index)
    order = torch.sort(-rows, dim=1, stable=True).indices
    return (order == pred[wrong][:, None]).float().argmax(1) + 1


def error_rank_histogram(z_clean: Tensor, y: Tensor, pred: Tensor | None = None) -> Tensor:
    """Fraction of errors at each rank k = 1..K (index k-1); m_c from the clean logits.

    `pred` defaults to the clean prediction (natural errors); pass adversarial predictions for the
    adversarial errors. All zeros when there is no error; errors of a class without any correctly
    classified sample are left out (its mean logit vector is undefined).
    """
    z_clean = _check_logits(z_clean)
    y = _check_labels(y, len(z_clean), z_clean.shape[1])
    pred = z_clean.argmax(1) if pred is None else pred.long().flatten()
    m = class_mean_logits(z_clean, y)
    defined = ~torch.isnan(m).any(1)[y]  # errors of a class without any correct sample have no ordering
    r = error_ranks(pred[defined], y[defined], m)
    k = z_clean.shape[1]
    h = torch.bincount(r - 1, minlength=k).double()
    return h / max(len(r), 1)


def average_overlap(za: Tensor, zb: Tensor, k: int) -> Tensor:
    """AO@k per sample: (1/k) sum_{i=1..k} |top_i(za) ∩ top_i(zb)| / i (Webber et al.)."""
    za, zb = _check_logits(za, "za"), _check_logits(zb, "zb")
    if za.shape != zb.shape:
        raise InputError(f"za and zb must have the same shape, got {tuple(za.shape)} and {tuple(zb.shape)}")
    n_cls = za.shape[1]
    if not 1 <= k <= n_cls:
        raise InputError(f"k must lie in [1, {n_cls}], got {k}")
    # position of every class in each network's descending ordering; class c lies in both top-i lists
    # iff max(pos_a[c], pos_b[c]) < i
    pos_a = torch.sort(-za, dim=1, stable=True).indices.argsort(1)
    pos_b = torch.sort(-zb, dim=1, stable=True).indices.argsort(1)
    m = torch.maximum(pos_a, pos_b)
    i = torch.arange(1, k + 1)
    inter = (m[:, None, :] < i[None, :, None]).sum(2).float()  # (n, k): |A_{:i} ∩ B_{:i}|
    o = inter / torch.arange(1, k + 1, dtype=torch.float32)
    return o.mean(1)


def ao_curve(za: Tensor, zb: Tensor) -> Tensor:
    """Mean AO@k over samples for k = 1..K (index k-1)."""
    k = za.shape[1]
    return torch.stack([average_overlap(za, zb, i).mean() for i in range(1, k + 1)])


def within_class_permutation(y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """An index map sending each sample to a random *other* sample of the same class (a random cyclic
    shift of a shuffled class, so no fixed points when a class has >= 2 members)."""
    y = _check_labels(y, len(y))
    out = torch.arange(len(y))
    for c in y.unique():
        idx = (y == c).nonzero()[:, 0]
        if len(idx) < 2:
            continue
        p = idx[torch.randperm(len(idx), generator=generator)]
        out[p] = p.roll(1)
    return out


def ao_curve_permuted(za: Tensor, zb: Tensor, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The control of Fig. 3D: network A on image i against network B on another image of i's class."""
    return ao_curve(za, zb[within_class_permutation(y, generator)])


# ------------------------------------------------------------------------------- nearest neighbours

def cosine_neighbours(z: Tensor, seeds: Tensor | list[int], k: int = 5) -> Tensor:
    """Indices (len(seeds), k) of the k samples with the largest logit cosine to each seed (seed excluded)."""
    z = _check_logits(z, min_classes=1)
    seeds_t = torch.as_tensor(seeds, dtype=torch.long).flatten()
    if len(seeds_t) and (int(seeds_t.min()) < 0 or int(seeds_t.max()) >= len(z)):
        raise InputError("seed indices out of range")
    if not 1 <= k < len(z):
        raise InputError(f"k must lie in [1, {len(z) - 1}]")
    u = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = u[seeds_t] @ u.T
    sim[torch.arange(len(seeds_t)), seeds_t] = -float("inf")
    return sim.topk(k, dim=1).indices


# ----------------------------------------------------------------------------------- several models

def compare(logits: dict[str, Tensor], y: Tensor, generator: torch.Generator | None = None) -> dict[str, Any]:
    """Per-model summaries and, for every pair of models on the same points, the far-rank fraction
    (max-softmax confidence) and the AO@k curve with its within-class permuted control."""
    names = list(logits)
    if not names:
        raise InputError("compare needs at least one model's logits")
    n = len(logits[names[0]])
    if any(len(v) != n for v in logits.values()):
        raise InputError("every model's logits must cover the same points (same length)")
    y = _check_labels(y, n)
    out: dict[str, Any] = {"models": {k: summary(v, y) for k, v in logits.items()}, "pairs": {}}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            rd = rank_disagreement(confidence(logits[a]), confidence(logits[b]), y)
            out["pairs"][f"{a} vs {b}"] = {
                "far_rank_fraction": rd["fraction"],
                "ao": ao_curve(logits[a], logits[b]).tolist(),
                "ao_permuted": ao_curve_permuted(logits[a], logits[b], y, generator).tolist(),
            }
    return out


def compare_runs(runs: dict[str, dict[str, Any]], generator: torch.Generator | None = None) -> dict[str, Any]:
    """`compare` over runs' logits on their common first points, with where each came from and, for runs
    with several stored epochs, the per-epoch max-logit and gap statistics. `runs`: name -> {"logits",
    "labels", "source", "epochs", "per_epoch" ((epochs, N, K) or None)}; labels must agree."""
    n = min(len(v["logits"]) for v in runs.values())
    labels = next(iter(runs.values()))["labels"][:n]
    if any(not torch.equal(v["labels"][:n], labels) for v in runs.values()):
        raise InputError("the runs' logits are not on the same points (labels differ): compare runs of one dataset")
    res = compare({k: v["logits"][:n] for k, v in runs.items()}, labels, generator)
    for k, v in runs.items():
        res["models"][k]["source"] = v["source"]
        if v["per_epoch"] is not None and len(v["epochs"]) > 1:
            res["models"][k]["per_epoch"] = {
                "epochs": v["epochs"],
                "max_logit_mean": [float(max_logit(e).mean()) for e in v["per_epoch"]],
                "max_logit_skew": [skewness(max_logit(e)) for e in v["per_epoch"]],
                "gap_mean": [float(logit_gap(e).mean()) for e in v["per_epoch"]],
                "gap_skew": [skewness(logit_gap(e)) for e in v["per_epoch"]],
            }
    return res


def comparison_table(res: dict[str, Any]) -> str:
    """`compare_runs`'s result as text: a row per run, a line per pair."""
    lines = [f"{'run':<24} {'n':>6} {'acc':>6} {'max logit':>18} {'gap':>18} {'gap<1':>6}"]
    for k, m in res["models"].items():
        ml, gp = m["max_logit"], m["gap"]
        lines.append(f"{k:<24} {m['n']:>6} {m.get('accuracy', float('nan')):>6.3f} "
                     f"{ml['mean']:>7.2f} (skew {ml['skew']:>5.2f}) {gp['mean']:>7.2f} (skew {gp['skew']:>5.2f}) "
                     f"{m['frac_gap_below_1']:>6.3f}")
    for p, v in res["pairs"].items():
        j = min(2, len(v["ao"]) - 1)
        lines.append(f"{p}: far-rank fraction {v['far_rank_fraction']:.3f}, AO@3 {v['ao'][j]:.3f} "
                     f"(permuted {v['ao_permuted'][j]:.3f})")
    return "\n".join(lines)


__all__ = ["max_logit", "logit_gap", "skewness", "describe", "summary", "histograms", "accuracy_by_gap",
           "accuracy_by_gap_models", "accuracy_by_quantile", "confidence", "within_class_ranks",
           "rank_disagreement", "class_mean_logits", "error_ranks", "error_rank_histogram", "average_overlap",
           "ao_curve", "within_class_permutation", "ao_curve_permuted", "cosine_neighbours", "compare",
           "compare_runs", "comparison_table"]
