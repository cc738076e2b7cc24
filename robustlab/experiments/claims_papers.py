"""The headline claims of the five reproduced works, each with the paper's numbers, the comparison set the
paper itself uses, the robustlab quantity and a pre-registered rule (see `robustlab.experiments.claims`).

Each `measure` reads the run's results.json (as `claims.load_results` returns it) and returns estimates
with intervals; it raises `NotRun` with the reason when the run lacks what the claim needs.
"""

from __future__ import annotations

from typing import Any

from robustlab.experiments.claims import (
    Claim,
    Estimate,
    NotRun,
    NotShown,
    Part,
    binomial,
    bootstrap,
    exact,
    mean_se,
    point,
    seeds,
)

R = dict[str, Any]


def P(label: str, left: str, op: str, right: str | float, margin: float = 0.0, scale: float = 1.0,
      can_contradict: bool = True) -> Part:
    return Part(label, left, op, right, margin, scale, can_contradict)


# ================================================================== Tsipras et al. 2019

def _t_deep(r: R) -> tuple[R, int]:
    if "deep" not in r:
        raise NotRun("the deep part was not run")
    return r["deep"], int(r["settings"]["eval_n"])


def _t_svm_std(r: R) -> dict[str, Estimate]:
    s = r["theory"]["standard_svm"]
    return {"standard SVM std": exact(s["std"]), "standard SVM adv": exact(s["adv_shift"])}


def _t_svm_adv(r: R) -> dict[str, Estimate]:
    s = r["theory"]["adversarial_svm"]
    return {"adversarial SVM std": exact(s["std"]), "adversarial SVM adv (exact l_inf)": exact(s["adv_linf"])}


def _t_thm21(r: R) -> dict[str, Estimate]:
    b = r["theory"]["theorem_2_1"]
    return {"min slack of adv <= p/(1-p) (1 - std) over the frontier, all p": exact(min(v["min_slack"]
                                                                                      for v in b.values()))}


def _t_favg(r: R) -> dict[str, Estimate]:
    f = r["theory"]["f_avg"]
    return {"f_avg std": exact(f["std"]), "f_avg adv": exact(f["adv"])}


def _t_table4(r: R) -> dict[str, Estimate]:
    b = r["binary_linear"]
    n = int(b["n_test"])
    s, a = b["table4"]["standard"], b["table4"]["adversarial"]
    return {"AT adv test": binomial(a["adv_test"], n), "standard adv test": binomial(s["adv_test"], n),
            "AT norm(w)_1": exact(a["l1"]), "standard norm(w)_1": exact(s["l1"])}


def _t_fig2b(r: R) -> dict[str, Estimate]:
    sh = r["binary_linear"]["fig2b_low_corr_weight_share"]
    return {"AT weight share on low-correlation pixels": exact(sh["adversarial"]),
            "standard weight share": exact(sh["standard"])}


def _t_fig2c(r: R) -> dict[str, Estimate]:
    b = r["binary_linear"]
    n = int(b["n_test"])
    rows = {row["k"]: row for row in b["fig2c_topk"]}
    if 784 not in rows or 20 not in rows:
        raise NotRun("the top-k curve lacks k = 20 or k = 784")
    best = max((row for row in b["fig2c_topk"] if row["k"] < 784), key=lambda row: row["adv"])
    return {"std acc, all 784 pixels": binomial(rows[784]["std"], n), "std acc, top 20": binomial(rows[20]["std"], n),
            "adv acc, best k < 784": binomial(best["adv"], n),
            "adv acc, all 784 pixels": binomial(rows[784]["adv"], n)}


def _t_fig1(r: R) -> dict[str, Estimate]:
    d, n = _t_deep(r)
    out = {}
    for norm, pts in d["fig1"].items():
        for e, acc in pts:
            out[f"clean {norm} eps_train {e}"] = binomial(acc, n)
    return out


def _t_pgd(r: R) -> dict[str, Estimate]:
    d, n = _t_deep(r)
    m = d["models"]
    lk = f"linf-{max(r['settings']['linf_eps'])}"
    l2 = f"l2-{max(r['settings']['l2_eps'])}"
    el, e2 = lk.split("-")[1], l2.split("-")[1]
    return {"l_inf-AT PGD acc": binomial(m[lk][f"pgd_linf_{el}"], n),
            "standard PGD acc (l_inf)": binomial(m["standard"][f"pgd_linf_{el}"], n),
            "l2-AT PGD acc": binomial(m[l2][f"pgd_l2_{e2}"], n),
            "standard PGD acc (l2)": binomial(m["standard"][f"pgd_l2_{e2}"], n)}


def _t_sobel(r: R) -> dict[str, Estimate]:
    d, _ = _t_deep(r)
    g = d["gradient_sobel_corr"]
    why = "mean over images, per-image values not stored"
    out = {"standard": point(g["standard"], why)}
    out.update({k: point(v, why) for k, v in g.items() if k in (f"linf-{max(r['settings']['linf_eps'])}",
                                                                  f"l2-{max(r['settings']['l2_eps'])}")})
    return out


def _t_large(r: R) -> dict[str, Estimate]:
    d, _ = _t_deep(r)
    n = int(r["settings"]["n_large"])
    out = {}
    for att, row in d["large_eps"].items():
        for k in ("standard", f"linf-{max(r['settings']['linf_eps'])}", f"l2-{max(r['settings']['l2_eps'])}"):
            out[f"{att} {k}"] = binomial(row[k]["oracle_agrees_with_new_label"], n)
    return out


def _t_interp(r: R) -> dict[str, Estimate]:
    raise NotRun("a figure for a person to judge (fig4_interpolation.png); robustlab computes no score for "
                 "perceptual smoothness")


def _tsipras() -> list[Claim]:
    le, l2e = "linf-0.1", "l2-1.0"

    def fig1_measure(r: R) -> dict[str, Estimate]:
        out = _t_fig1(r)
        d, _ = _t_deep(r)
        keep = {}
        for norm, pts in d["fig1"].items():
            for i, (e, _) in enumerate(pts):
                keep[f"{norm} step {i}"] = out[f"clean {norm} eps_train {e}"]
        return keep

    return [
        Claim("T1", "the standard SVM on the synthetic distribution: > 99% standard, < 1% adversarial accuracy",
              "Thm 2.2", "> 99% / < 1%", (), "closed form, d = 1000, p = 0.7", _t_svm_std,
              (P("std > 99%", "standard SVM std", ">", 0.99), P("adv < 1%", "standard SVM adv", "<", 0.01)), pct=True),
        Claim("T2", "the adversarially trained SVM puts all weight on the robust feature: 70% / 70%",
              "Thm 2.2", "70% / 70%", ("standard SVM",), "closed form", _t_svm_adv,
              (P("std = 70% +- 0.5", "adversarial SVM std", "~", 0.70, 0.005),
               P("adv = 70% +- 0.5", "adversarial SVM adv (exact l_inf)", "~", 0.70, 0.005)), pct=True),
        Claim("T3", "no free lunch: adv accuracy <= p/(1-p) (1 - std accuracy) for every classifier",
              "Thm 2.1", "bound", (), "min slack over the unit-norm linear frontier, p in the profile", _t_thm21,
              (P("slack >= 0", "min slack of adv <= p/(1-p) (1 - std) over the frontier, all p", ">", -1e-9),)),
        Claim("T4", "f_avg: standard accuracy Phi(3), adversarial accuracy Phi(-3) at eps = 2 eta",
              "Sec. 2.1", "99.87% / 0.13%", (), "closed form", _t_favg,
              (P("std = Phi(3)", "f_avg std", "~", 0.99865, 1e-5), P("adv = Phi(-3)", "f_avg adv", "~", 0.00135, 1e-5)),
              pct=True),
        Claim("T5", "linear AT: much higher adversarial test accuracy and smaller norm(w)_1 than standard training",
              "Table 4", "adv test 74.65 vs 14.95; norm(w)_1 13.69 vs 41.08", ("standard training",),
              "exact attack on Fashion-MNIST 5 vs 7 (not MNIST), eps = profile's lin_eps", _t_table4,
              (P("adv test >= standard's + 20 points", "AT adv test", ">", "standard adv test", 0.2),
               P("smaller norm(w)_1", "AT norm(w)_1", "<", "standard norm(w)_1"))),
        Claim("T6", "the AT linear model puts (almost) no weight on weakly label-correlated pixels",
              "Fig. 2b", "zero weight below a correlation threshold", ("standard training",),
              "share of norm(w)_1 on the 50% least correlated pixels", _t_fig2b,
              (P("AT share < standard share / 2", "AT weight share on low-correlation pixels", "<",
                 "standard weight share", 0.0, 0.5),)),
        Claim("T7", "a standard model on the top-k correlated pixels: more pixels raise std accuracy and lower "
              "adversarial accuracy", "Fig. 2c", "qualitative curve", ("all pixels",), "top-k linear models",
              _t_fig2c,
              (P("std(784) > std(20)", "std acc, all 784 pixels", ">", "std acc, top 20"),
               P("adv(best k < 784) > adv(784)", "adv acc, best k < 784", ">", "adv acc, all 784 pixels")), pct=True),
        Claim("T8", "standard accuracy falls as eps_train grows (l_inf and l2)", "Fig. 1",
              "monotone decline (MNIST, CIFAR-10, Restricted ImageNet)", ("standard model",),
              "clean accuracy of small_cnn on Fashion-MNIST at each eps_train (one seed)", fig1_measure,
              (P("l_inf: eps_train step 1 below standard", "linf step 1", "<", "linf step 0"),
               P("l_inf: step 2 below step 1", "linf step 2", "<", "linf step 1"),
               P("l2: step 1 below standard", "l2 step 1", "<", "l2 step 0"),
               P("l2: step 2 below step 1", "l2 step 2", "<", "l2 step 1")),
              min_seeds=3, seeds_of=lambda r: 1),
        Claim("T9", "PGD-trained models are robust at their training eps (l_inf and l2)", "Sec. 3 (all figures)",
              "robust models", ("standard model",), "PGD accuracy at the largest eps_train", _t_pgd,
              (P("l_inf-AT > standard + 20 points", "l_inf-AT PGD acc", ">", "standard PGD acc (l_inf)", 0.2),
               P("l2-AT > standard + 20 points", "l2-AT PGD acc", ">", "standard PGD acc (l2)", 0.2)), pct=True),
        Claim("T10", "robust models' input gradients align with edges; standard models' look like noise",
              "Figs. 5, 8", "qualitative", ("standard model",), "Sobel-edge correlation of abs(grad), mean over images",
              _t_sobel,
              (P("l_inf-AT > standard", le, ">", "standard"), P("l2-AT > standard", l2e, ">", "standard"))),
        Claim("T11", "large-eps examples of robust models look like the new class; a standard model's do not",
              "Figs. 3, 6, 7", "qualitative", ("standard model",),
              "an independent l_inf-AT oracle agrees with the attacked model's new label", _t_large,
              (P("l2 eps 4: l2-AT above standard + 20 points", f"l2_4.0 {l2e}", ">", "l2_4.0 standard", 0.2),
               P("l_inf eps 0.3: l_inf-AT above standard + 20 points", f"linf_0.3 {le}", ">", "linf_0.3 standard",
                 0.2)), pct=True),
        Claim("T12", "interpolating from x to x_adv gives smooth class transitions", "Fig. 4", "qualitative", (),
              "none", _t_interp, ()),
    ]


# ================================================================== Matyasko 2020 (thesis)

def _ch3(r: R) -> R:
    if "margin" not in r:
        raise NotRun("chapter 3 (margin) was not run")
    return r["margin"]


def _ch3_measure(q: str, names: tuple[str, ...]) -> Any:
    def m(r: R) -> dict[str, Estimate]:
        c = _ch3(r)
        n = int(c["settings"]["n_test"])
        out = {}
        for name in names:
            runs = c["models"][name]["runs"]
            vals = [run[q] for run in runs]
            out[name] = binomial(vals, n) if q in ("error", "fgsm_error") else seeds(vals)
        return out
    return m


def _ch4(r: R) -> R:
    if "critic" not in r:
        raise NotRun("chapter 4 (critic) was not run")
    return r["critic"]


def _ch4_rho(q: str) -> Any:
    def m(r: R) -> dict[str, Estimate]:
        c = _ch4(r)
        return {k: point(v[q], "one seed, per-point norms not stored") for k, v in c["models"].items()}
    return m


def _ch4_error(r: R) -> dict[str, Estimate]:
    c = _ch4(r)
    n = int(c["settings"]["n_test"])
    return {k: binomial(v["error"], n) for k, v in c["models"].items()}


def _ch4_oracle(r: R) -> dict[str, Estimate]:
    c = _ch4(r)
    return {k: binomial(v["oracle"]["change"], int(v["oracle"]["n"])) for k, v in c["models"].items()}


def _ch5(r: R) -> R:
    if "pdpgd" not in r:
        raise NotRun("chapter 5 (PDPGD) was not run")
    return r["pdpgd"]


def _ch5_measure(norm: str, baselines: tuple[str, ...]) -> Any:
    def m(r: R) -> dict[str, Estimate]:
        c = _ch5(r)
        out = {}
        for model, v in c["models"].items():
            for a in ("pdpgd-10",) + baselines:
                row = v["norms"][norm].get(a, {})
                if row.get("unavailable") or "median_norm" not in row:
                    continue
                out[f"{model} {a}"] = point(row["median_norm"], "median, per-point norms not stored")
        return out
    return m


def _ch5_parts(norm: str, baselines: tuple[str, ...], models: tuple[str, ...] = ("plain", "linf-AT", "l2-AT")
               ) -> tuple[Part, ...]:
    return tuple(P(f"{m}: PDPGD-10 median <= 1.01 x {a}'s", f"{m} pdpgd-10", "<", f"{m} {a}", 0.0, 1.01)
                 for m in models for a in baselines)


def _ch5_group(r: R) -> dict[str, Estimate]:
    g = _ch5(r)["group_l0"]["rows"]
    why = "median, per-point counts not stored"
    return {"pixel (group) l0 median pixels": point(g["pixel"]["median_pixels"], why),
            "element l0 median pixels": point(g["l0"]["median_pixels"], why)}


def _m2_seeds(r: R) -> int:
    return len(_ch3(r)["settings"]["seeds"])


def _matyasko() -> list[Claim]:
    base = ("baseline", "dropout", "fgsm-at", "vat")
    margin = "C=0.1"
    rho = _ch3_measure("rho_deepfool", (margin,) + base)
    cs = [
        Claim("M1", "margin maximisation (l2, C = 0.1) is more robust (DeepFool rho_adv) than the baseline, dropout "
              "and FGSM-AT, and close to VAT", "Table 3.1 (MLP)",
              "rho x1e-1: margin 2.59; baseline 1.14, dropout 1.2, FGSM-AT 1.6, VAT 2.69",
              ("baseline", "dropout", "FGSM-AT", "VAT"), "mean ||r||_2/||x||_2 of DeepFool, per seed", rho,
              (P("above baseline", margin, ">", "baseline"), P("above dropout", margin, ">", "dropout"),
               P("above FGSM-AT", margin, ">", "fgsm-at"), P("at least 0.9 x VAT", margin, ">", "vat", 0.0, 0.9)),
              min_seeds=3, seeds_of=_m2_seeds, group="margin"),
        Claim("M2", "the same ordering under C&W and the thesis's own attack", "Table 3.1 (MLP)",
              "margin above FGSM-AT and about VAT under every attack", ("baseline", "dropout", "FGSM-AT", "VAT"),
              "rho_adv of C&W and own attack, per seed",
              lambda r: {f"{k} cw": v for k, v in _ch3_measure("rho_cw", (margin,) + base)(r).items()}
              | {f"{k} own": v for k, v in _ch3_measure("rho_own", (margin,) + base)(r).items()},
              tuple(P(f"{att}: above {b}", f"{margin} {att}", ">", f"{b} {att}", 0.0, 0.9 if b == "vat" else 1.0)
                    for att in ("cw", "own") for b in base),
              min_seeds=3, seeds_of=_m2_seeds, group="margin"),
        Claim("M3", "margin maximisation lowers the clean error below the baseline and dropout, to VAT's level",
              "Table 3.1 (MLP)", "error %: margin 0.86; baseline 1.42, dropout 1.34, FGSM-AT 1.19, VAT 0.87",
              ("baseline", "dropout", "FGSM-AT", "VAT"), "test error (10,000 images), per seed",
              _ch3_measure("error", (margin,) + base),
              (P("below baseline", margin, "<", "baseline"), P("below dropout", margin, "<", "dropout"),
               P("below FGSM-AT", margin, "<", "fgsm-at"), P("at most VAT + 0.5 points", margin, "<", "vat", -0.005)),
              min_seeds=3, seeds_of=_m2_seeds, pct=True, group="margin"),
        Claim("M4", "FGSM error: margin far below baseline and dropout, above FGSM-AT and VAT",
              "Table 3.1 (MLP)", "FGSM error %: margin 42.56; baseline 95.8, dropout 93.4, FGSM-AT 10.17, VAT 24.33",
              ("baseline", "dropout", "FGSM-AT", "VAT"), "FGSM error (linf 0.1), per seed",
              _ch3_measure("fgsm_error", (margin,) + base),
              (P("below baseline", margin, "<", "baseline"), P("below dropout", margin, "<", "dropout"),
               P("above FGSM-AT", margin, ">", "fgsm-at"), P("above VAT", margin, ">", "vat")),
              min_seeds=3, seeds_of=_m2_seeds, pct=True, group="margin"),
        Claim("M5", "rho_adv grows with the margin weight C", "Figs. 3.4, 3.5 (C sweep)",
              "robustness steadily increases with C (LeNet-5; MLP up to C = 0.1)",
              ("C = 0", "C = 0.001", "C = 0.01"), "DeepFool rho_adv per seed",
              _ch3_measure("rho_deepfool", ("C=0", "C=0.001", "C=0.01", "C=0.1")),
              (P("C=0.001 above C=0", "C=0.001", ">", "C=0"), P("C=0.01 above C=0.001", "C=0.01", ">", "C=0.001"),
               P("C=0.1 above C=0.01", "C=0.1", ">", "C=0.01")), min_seeds=3, seeds_of=_m2_seeds, group="margin"),
        Claim("M6", "the adversary-critic model is the most robust (DeepFool rho)", "Table 4.1 (MLP)",
              "rho: critic 0.29; plain 0.131, AT 0.228, VAT 0.244, MM 0.262", ("plain", "AT", "VAT", "MM"),
              "DeepFool rho, one seed", _ch4_rho("rho_deepfool"),
              tuple(P(f"above {b}", "critic", ">", b) for b in ("plain", "AT", "VAT", "MM")), group="critic"),
        Claim("M7", "the adversary-critic model is the most robust under C&W and the own attack", "Table 4.1 (MLP)",
              "C&W: critic 0.272 vs AT 0.21, VAT 0.215, MM 0.23; own: 0.575 vs 0.299, 0.355, 0.453",
              ("plain", "AT", "VAT", "MM"), "rho of C&W and own attack, one seed",
              lambda r: {f"{k} cw": v for k, v in _ch4_rho("rho_cw")(r).items()}
              | {f"{k} own": v for k, v in _ch4_rho("rho_own")(r).items()},
              tuple(P(f"{a}: above {b}", f"critic {a}", ">", f"{b} {a}") for a in ("cw", "own")
                    for b in ("plain", "AT", "VAT", "MM")), group="critic"),
        Claim("M8", "the critic's adversarial examples are the most often seen as the target class",
              "Table 4.2 (MTurk)", "% change: critic 87.99; plain 0.57, AT 19.02, VAT 35.08, MM 60.47",
              ("plain", "AT", "VAT", "MM"), "an independent l_inf-AT oracle labels the own attack's examples "
              "(in place of MTurk workers)", _ch4_oracle,
              tuple(P(f"above {b}", "critic", ">", b) for b in ("plain", "AT", "VAT", "MM")), pct=True,
              group="critic"),
        Claim("M9", "the critic keeps the clean error at or below the plain model's", "Table 4.1 (MLP)",
              "error %: critic 1.18, plain 1.46", ("plain",), "test error (10,000 images), one seed", _ch4_error,
              (P("at most plain's", "critic", "<", "plain", -0.0),), pct=True, group="critic"),
    ]
    for norm, bl in (("l2", ("deepfool", "cw", "ddn", "fab", "fmn")), ("linf", ("deepfool", "fab", "fmn")),
                     ("l1", ("sparsefool", "ead", "fab", "fmn")), ("l0", ("jsma", "fmn"))):
        cs.append(Claim(f"M{10 + len(cs) - 9}", f"PDPGD finds {norm} perturbations no larger than every baseline's",
                        "Table 5.1", "PDPGD's norms the smallest on MNIST plain / l_inf-AT / l2-AT",
                        bl, f"median {norm} norm on 200 Fashion-MNIST points (first 20 for JSMA)",
                        _ch5_measure(norm, bl), _ch5_parts(norm, bl), group="pdpgd"))
    cs.append(Claim("M14", "the group-sparse (pixel) attack changes fewer pixels than the element-wise l0 one",
                    "Sec. 5.5 / Table 5.5", "fewer pixels", ("element-wise l0",), "median pixels changed",
                    _ch5_group, (P("fewer pixels", "pixel (group) l0 median pixels", "<", "element l0 median pixels"),),
                    group="pdpgd"))
    return cs


# ================================================================== Seguin et al. 2022

def _s_seeds(r: R) -> list[int]:
    return list(r["settings"]["seeds"])


def _s_logits(r: R) -> dict[str, Estimate]:
    st = r["logit_stats"]
    ss = _s_seeds(r)
    n = int(st[f"AT s{ss[0]}"]["n"])
    out = {}
    for m in ("AT", "ST"):
        rows = [st[f"{m} s{s}"] for s in ss]
        out[f"{m} mean max logit"] = mean_se([x["max_logit"]["mean"] for x in rows],
                                             [x["max_logit"]["std"] for x in rows], n)
        out[f"{m} mean gap"] = mean_se([x["gap"]["mean"] for x in rows], [x["gap"]["std"] for x in rows], n)
        out[f"{m} frac gap < 1"] = binomial([x["frac_gap_below_1"] for x in rows], n)
    return out


def _s_skew(r: R) -> dict[str, Estimate]:
    st = r["logit_stats"]
    out = {}
    for s in _s_seeds(r):
        row = st[f"AT s{s}"]
        se = (6.0 / row["n"]) ** 0.5  # standard error of the sample skewness
        v = row["max_logit"]["skew"]
        out[f"AT s{s} skew of max logit"] = Estimate(v, v - 1.96 * se, v + 1.96 * se, f"skew +- 1.96 sqrt(6/n), "
                                                                                      f"n={row['n']}")
    return out


def _s_table1(r: R) -> dict[str, Estimate]:
    t = r["table1"]
    n = int(r["attack_n"])
    return {f"{m} {q}": binomial(t[m]["per_seed"][q], n) for m in ("ST", "AT") for q in ("nat", "adv")}


def _s_terciles(r: R) -> dict[str, Estimate]:
    n = int(r["attack_n"]) // 3
    t = r["adv_acc_gap_terciles"]["AT"]
    return {"AT low-gap tercile adv acc": binomial([s[0] for s in t], n),
            "AT high-gap tercile adv acc": binomial([s[2] for s in t], n)}


def _s_far(r: R) -> dict[str, Estimate]:
    f = r["far_rank_fraction"]
    n = int(r["settings"]["n_test"])
    return {k: binomial(v["pairs"], n) for k, v in f.items()}


def _s_ao(r: R) -> dict[str, Estimate]:
    why = "average over test points, per-point values not stored"
    return {"AT-AT AO@3": point(r["ao"]["AT-AT"][2], why), "AT-ST AO@3": point(r["ao"]["AT-ST"][2], why),
            "AT-AT AO@3 permuted": point(r["ao_permuted"]["AT-AT"][2], why),
            "ST-ST AO@3": point(r["ao"]["ST-ST"][2], why),
            "ST-ST AO@3 permuted": point(r["ao_permuted"]["ST-ST"][2], why)}


def _s_error_rank(r: R) -> dict[str, Estimate]:
    h = r["error_rank"]["ST natural"]
    ss = _s_seeds(r)
    acc = r["logit_stats"][f"ST s{ss[0]}"]["accuracy"]
    n_err = max(1, round((1 - acc) * int(r["settings"]["n_test"])))
    return {"ST errors at rank 2": binomial(h[1], n_err), "ST errors at rank 3": binomial(h[2], n_err)}


def _s_students(names: tuple[str, ...], q: str = "adv") -> Any:
    def m(r: R) -> dict[str, Estimate]:
        t = r["table2"]
        n = int(r["attack_n"])
        missing = [k for k in names if k not in t]
        if missing:
            raise NotRun(f"students not trained in this run: {', '.join(missing)}")
        return {k: binomial(t[k]["per_seed"][q], n) for k in names}
    return m


def _s_student_seeds(r: R) -> int:
    return len(r["settings"]["student_seeds"])


def _s_mftma(r: R) -> dict[str, Estimate]:
    if "mftma" not in r:
        raise NotRun("MFTMA manifold capacities (Fig. 5) are not in this run (only the simulated-capacity proxy)")
    raise NotRun("MFTMA results present but no rule registered yet")


def _seguin() -> list[Claim]:
    fix = ("normal", "fix-1 (perm)", "correct-fix-1 (perm)", "hybrid ST-AT")
    return [
        Claim("S1", "AT models have smaller max logits and logit gaps than ST models", "Fig. 1, Fig. 2A",
              "AT max logit and gap far below ST's", ("ST",), "test-set logit statistics, every seed", _s_logits,
              (P("max logit AT < ST", "AT mean max logit", "<", "ST mean max logit"),
               P("gap AT < ST", "AT mean gap", "<", "ST mean gap"),
               P("more small gaps (< 1) for AT", "AT frac gap < 1", ">", "ST frac gap < 1"))),
        Claim("S2", "the AT max-logit distribution is positively skewed", "Fig. 1", "positive skew", (),
              "sample skewness of the max logit, per seed", _s_skew,
              (P("seed 0 skew > 0", "AT s0 skew of max logit", ">", 0.0),
               P("seed 1 skew > 0", "AT s1 skew of max logit", ">", 0.0))),
        Claim("S3", "AT trades clean accuracy for robustness; ST has none", "Table 1",
              "A_nat 94.5 (ST) vs 74.0 (AT); A_adv 0.0 vs 41.5", ("ST",), "APGD-CE + APGD-DLR on 1000 points",
              _s_table1,
              (P("AT adv > ST adv + 20 points", "AT adv", ">", "ST adv", 0.2),
               P("AT nat < ST nat", "AT nat", "<", "ST nat"), P("ST adv < 2%", "ST adv", "<", 0.02)), pct=True),
        Claim("S4", "AT adversarial accuracy rises with the clean logit gap", "Fig. 2B", "monotone rise",
              ("low-gap points",), "adversarial accuracy by clean-gap tercile", _s_terciles,
              (P("high tercile > low + 20 points", "AT high-gap tercile adv acc", ">", "AT low-gap tercile adv acc",
                 0.2),), pct=True),
        Claim("S5", "far-rank disagreements are common between AT and ST, rare within AT-AT and ST-ST",
              "Fig. 3B", "far-rank 11.8% AT-ST vs 1.1% AT-AT", ("AT-AT", "ST-ST"), "far-rank fraction per pair",
              _s_far, (P("AT-ST > AT-AT", "AT-ST", ">", "AT-AT"), P("AT-ST > ST-ST", "AT-ST", ">", "ST-ST")),
              pct=True),
        Claim("S6", "rankings of AT models agree more with each other than with ST (average overlap)", "Fig. 3D",
              "AO AT-AT above AT-ST, above the permuted control", ("AT-ST", "permuted control"), "AO@3",
              _s_ao, (P("AT-AT > AT-ST", "AT-AT AO@3", ">", "AT-ST AO@3"),
                      P("AT-AT > permuted", "AT-AT AO@3", ">", "AT-AT AO@3 permuted"))),
        Claim("S7", "errors concentrate on the second-ranked class", "Fig. 3C", "rank 2 dominant",
              ("ranks 3..K",), "share of ST errors by rank of the true class", _s_error_rank,
              (P("rank 2 > rank 3", "ST errors at rank 2", ">", "ST errors at rank 3"),), pct=True),
        Claim("S8", "distilling from manipulated logits: the normal student is more robust than fix-1 (perm), "
              "correct-fix-1 and the hybrid ST-AT student", "Table 2",
              "A_adv: normal 30.4; fix-1 13.3, correct-fix-1 0.1, hybrid 0.0", fix[1:],
              "students' adversarial accuracy (1000 points)", _s_students(fix),
              tuple(P(f"normal above {k}", "normal", ">", k) for k in fix[1:]), min_seeds=3,
              seeds_of=_s_student_seeds, pct=True),
        Claim("S9", "fixing the top-1 logit to the correct class restores clean accuracy but removes robustness",
              "Table 2", "correct-fix-1 A_nat 92.1 vs normal 75.2; hybrid 87.86", ("normal",),
              "students' clean accuracy", _s_students(("normal", "correct-fix-1 (perm)", "hybrid ST-AT"), "nat"),
              (P("correct-fix-1 above normal", "correct-fix-1 (perm)", ">", "normal"),
               P("hybrid above normal", "hybrid ST-AT", ">", "normal")),
              min_seeds=3, seeds_of=_s_student_seeds, pct=True),
        Claim("S10", "keeping more of the teacher's ranking (fix-k, larger k) keeps more robustness",
              "Table 2 / Sec. 4",
              "fix-k robustness grows with k", ("fix-1 (perm)",), "students' adversarial accuracy",
              _s_students(("fix-1 (perm)", "fix-7 (perm)")),
              (P("fix-7 above fix-1", "fix-7 (perm)", ">", "fix-1 (perm)"),), min_seeds=3,
              seeds_of=_s_student_seeds, pct=True),
        Claim("S11", "an L1 loss on the logits and a KL loss on the softmax give similar students", "App. A.7",
              "similar", ("L1 student",), "adversarial accuracy of the normal student, L1 vs KL T=30",
              lambda r: {k: v for k, v in _s_students(("normal", "normal, KL T=30"))(r).items()},
              (P("within 5 points", "normal, KL T=30", "~", "normal", 0.05),), pct=True),
        Claim("S12", "ST and AT differ in the manifold capacity of their representations", "Fig. 5 (MFTMA)",
              "AT: higher capacity in late layers", ("ST",), "MFTMA capacity", _s_mftma, ()),
    ]


# ================================================================== spatial

def _sp_n(r: R) -> int:
    return int(r["settings"]["eval_n"])


def _sp_sound(r: R) -> dict[str, Estimate]:
    sound = r["e2"]["soundness"]
    broken = sum(n for d in sound.values() for v in d.values() for n in v["certified_but_broken"].values())
    clean = r["clean_accuracy"]
    power = max(v["pgd_error"] - (1 - clean[name]) for name, d in sound.items() for v in d.values())
    return {"certified points broken by spatial PGD": exact(broken),
            "most the attack adds to clean error (any model, any eps tried)": exact(power)}


def _sp_best_bound(eps: float, names: tuple[str, ...]) -> Any:
    def m(r: R) -> dict[str, Estimate]:
        grid = r["settings"]["cert_eps"]
        if eps not in grid:
            raise NotRun(f"eps {eps} not in the certification grid {grid}")
        k = grid.index(eps)
        b = r["e2"]["bounds"]
        return {name: binomial(min(v["loss01"][k] for v in b[name].values()), _sp_n(r)) for name in names}
    return m


def _sp_bounds_on(name: str, eps: float) -> Any:
    def m(r: R) -> dict[str, Estimate]:
        grid = r["settings"]["cert_eps"]
        k = grid.index(eps)
        return {f"{name} {b}": binomial(v["loss01"][k], _sp_n(r)) for b, v in r["e2"]["bounds"][name].items()}
    return m


def _sp_stadv(tau: str, q: str) -> Any:
    def m(r: R) -> dict[str, Estimate]:
        out = {}
        for name, rows in r["stadv"].items():
            row = next((x for x in rows if float(x["tau"]) == float(tau)), None)
            if row is not None and name != "f_rd":
                out[name] = binomial(row[q], _sp_n(r))
        return out
    return m


def _sp_growth(r: R) -> dict[str, Estimate]:
    rows = sorted(r["e1"]["f_nt"], key=lambda x: x["eps"])
    if len(rows) < 3:
        raise NotRun("fewer than three eps in E1")
    mid = len(rows) // 2
    a, b, c = rows[0], rows[mid], rows[-1]
    s1 = (b["algorithm1_delta_f"] - a["algorithm1_delta_f"]) / (b["eps"] - a["eps"])
    s2 = (c["algorithm1_delta_f"] - b["algorithm1_delta_f"]) / (c["eps"] - b["eps"])
    return {"f_nt slope of Algorithm 1, upper eps half": exact(s2), "lower eps half": exact(s1)}


def _sp_iters(r: R) -> dict[str, Estimate]:
    rows = [row for v in r["e1"].values() for row in v]
    cap = max(row["iterations"] for row in rows)
    return {"share of E1 runs stopping within 10 outer iterations": exact(
        sum(row["iterations"] <= 10 for row in rows) / len(rows)), "iteration cap reached": exact(cap)}


def _sp_alg_vs_thm(r: R) -> dict[str, Estimate]:
    gaps = [row["algorithm1_delta_f"] - max(row["theorem1_linearised"], row["theorem1_delta_f"])
            for name in ("f_nt", "f_rd") for row in r["e1"].get(name, [])]
    return {"min over eps of Algorithm 1 - Theorem 1 (f_nt, f_rd)": exact(min(gaps))}


def _sp_e1_at(r: R) -> dict[str, Estimate]:
    if "f_at" not in r["e1"]:
        raise NotRun(f"E1 runs {', '.join(r['e1'])}; the paper's f_at panel of Fig. 2 is not run")
    rows = sorted(r["e1"]["f_at"], key=lambda x: x["eps"])
    return {"f_at Algorithm 1 at the largest eps": exact(rows[-1]["algorithm1_delta_f"]),
            "at the smallest": exact(rows[0]["algorithm1_delta_f"])}


def _spatial() -> list[Claim]:
    others = ("f_nt", "f_at", "f_fro", "f_spe")
    return [
        Claim("P1", "the certificates are sound: no certified point is broken", "Sec. 4 (Thm 3)",
              "sound by construction", (), "spatial PGD on every certified point at eps in the soundness grid; the "
              "test has power only where the attack breaks points beyond clean error", _sp_sound,
              (P("no certified point broken", "certified points broken by spatial PGD", "<", 0.5),
               P("the attack breaks >= 5% of points beyond clean error somewhere (power)",
                 "most the attack adds to clean error (any model, any eps tried)", ">", 0.05, 1.0, False))),
        Claim("P2", "the impossibility lower bound grows fast ('exponentially') with eps", "Fig. 2",
              "exponential growth on [0, 7.84]", (), "Algorithm 1's delta_f on f_nt: slope over the upper half of "
              "the eps grid against the lower half (growth that accelerates)", _sp_growth,
              (P("slope grows", "f_nt slope of Algorithm 1, upper eps half", ">", "lower eps half"),)),
        Claim("P3", "Algorithm 1 gives a much higher lower bound than Theorem 1", "Fig. 2", "much higher",
              ("Theorem 1",), "Algorithm 1 minus the larger Theorem 1 value, every eps", _sp_alg_vs_thm,
              (P("above at every eps", "min over eps of Algorithm 1 - Theorem 1 (f_nt, f_rd)", ">", 0.0),)),
        Claim("P4", "Algorithm 1 converges fast", "Fig. 4", "a few iterations", (),
              "share of E1 runs that stop within 10 outer iterations", _sp_iters,
              (P("at least 90% within 10", "share of E1 runs stopping within 10 outer iterations", ">", 0.9),)),
        Claim("P5", "the lower bound also grows for the adversarially trained f_at", "Fig. 2 (f_at)", "grows",
              ("f_nt", "f_rd"), "Algorithm 1 on f_at", _sp_e1_at,
              (P("grows", "f_at Algorithm 1 at the largest eps", ">", "at the smallest"),)),
        Claim("P6", "certificates are loose for a naturally trained network: certified 0/1 loss near 1 at eps 0.1",
              "Fig. 5", "reaches 1 by eps 0.1", (), "f_nt's certified 0/1 loss at eps 0.1, best bound",
              _sp_best_bound(0.1, ("f_nt",)), (P(">= 0.9", "f_nt", ">", 0.9),), pct=True),
        Claim("P7", "the SDP (dual) bound is slightly tighter than the norm bounds under f_sdp", "Fig. 5",
              "slightly tighter", ("Frobenius", "spectral"), "f_sdp's certified 0/1 loss at eps 0.05 per bound",
              _sp_bounds_on("f_sdp", 0.05),
              (P("dual <= Frobenius", "f_sdp dual", "<", "f_sdp frobenius"),
               P("dual <= spectral", "f_sdp dual", "<", "f_sdp spectral")), pct=True),
        Claim("P8", "f_sdp certifies more than the other objectives", "Figs. 5, 11", "f_sdp lowest certified loss",
              others, "certified 0/1 loss at eps 0.05, each model's best bound",
              _sp_best_bound(0.05, ("f_sdp",) + others),
              tuple(P(f"below {o}", "f_sdp", "<", o) for o in others), pct=True),
        Claim("P9", "f_sdp is more robust to stAdv than every other objective (about +0.08 adversarial accuracy)",
              "Fig. 6b", "+0.08 adversarial accuracy", others + ("f_stn",),
              "adversarial accuracy under stAdv, tau 0.05",
              _sp_stadv("0.05", "adv_accuracy"), tuple(P(f"above {o}", "f_sdp", ">", o) for o in others + ("f_stn",)),
              pct=True),
        Claim("P10", "stAdv succeeds less often on f_sdp (about -0.1 success rate)", "Fig. 6a", "-0.1 success rate",
              others + ("f_stn",), "stAdv success rate, tau 0.05", _sp_stadv("0.05", "success_rate"),
              tuple(P(f"below {o}", "f_sdp", "<", o) for o in others + ("f_stn",)), pct=True),
    ]


# ================================================================== Helland & VanHoudnos 2020

MINIMAX = ("pgd_at", "fgsm_rs", "trades6")
PENALTY = ("grad_penalty", "fim_penalty")
UNDEFENDED = ("standard", "distilled")


def _h_robust(r: R) -> dict[str, Estimate]:
    n = int(r["settings"]["eval_n"])
    e = str(r["settings"]["eps"])
    return {k: binomial(v["robust_acc"][e], n) for k, v in r["models"].items() if k != "trades_extreme"}


def _h_clean(r: R) -> dict[str, Estimate]:
    n = int(r["settings"]["eval_n"])
    return {k: binomial(v["robust_acc"]["0.0"], n) for k, v in r["models"].items() if k != "trades_extreme"}


def _h_robust_at(eps: str) -> Any:
    def m(r: R) -> dict[str, Estimate]:
        n = int(r["settings"]["eval_n"])
        return {k: binomial(r["models"][k]["robust_acc"][eps], n) for k in MINIMAX}
    return m


def _h_recog(where: str) -> Any:
    def m(r: R) -> dict[str, Estimate]:
        return {k: bootstrap(v[where]["recognizability"]["per_seed"]) for k, v in r["models"].items()
                if k != "trades_extreme"}
    return m


def _order_parts(minimax: tuple[str, ...] = MINIMAX) -> tuple[Part, ...]:
    return (tuple(P(f"{a} above {b}", a, ">", b) for a in minimax for b in PENALTY)
            + tuple(P(f"{a} above {b}", a, ">", b) for a in PENALTY for b in UNDEFENDED)
            + (P("distilled above standard", "distilled", ">", "standard"),))


def _h_grad(r: R) -> dict[str, Estimate]:
    why = "mean over images, per-image values not stored"
    return {k: point(v["gradients"]["grad_l1"], why) for k, v in r["models"].items() if k != "trades_extreme"}


def _h_extreme(r: R) -> dict[str, Estimate]:
    m = r["models"]["trades_extreme"]
    tm = m.get("train_metrics", {})
    curve = tm if isinstance(tm, list) else None
    if not curve or len(curve) < 2:
        st = r["settings"]
        lr = st.get("trades_extreme_lr") or st["lr"] * 6.0 / st["trades_extreme_beta"]
        raise NotShown(f"not shown trained: its training curve is not stored, only the last epoch (train loss "
                       f"{tm.get('train_loss'):.4f}, "
                     f"train accuracy {tm.get('train_acc'):.3f}, KL {tm.get('kl'):.2g} at learning rate {lr:.2g}); "
                     f"clean accuracy {m['clean_acc']:.3f} is chance, as an untrained network's would be")
    return {"first train loss": exact(curve[0]["train_loss"]), "last train loss": exact(curve[-1]["train_loss"])}


def _helland() -> list[Claim]:
    return [
        Claim("H1", "robust accuracy: minimax training above the gradient/FIM penalties, above no defense",
              "Sec. 4, robust accuracy curves", "minimax > penalties > standard / distilled",
              MINIMAX + PENALTY + UNDEFENDED, "PGD accuracy at the training eps (500 points)", _h_robust,
              _order_parts()[:-1], pct=True),
        Claim("H2", "inversions (model inversion by unbounded targeted attacks) are recognizable in the order "
              "FGSM / PGD (minimax) > penalties > distilled > standard", "Fig. 4.2", "the paper's ordering by eye",
              ("pgd_at", "fgsm_rs") + PENALTY + UNDEFENDED,
              "the oracle's target-class rate of inversions, bootstrap over 10 noise seeds (the paper: FGSM and PGD "
              "above the penalties, TRADES-6 less recognizable, H10)",
              _h_recog("inversion"), _order_parts(("pgd_at", "fgsm_rs")), pct=True),
        Claim("H3", "large-eps targeted examples follow the same order", "Sec. 4 (robustlab's "
              "second score)", "same ordering", ("pgd_at", "fgsm_rs") + PENALTY + UNDEFENDED,
              "the oracle's target-class rate of large-eps examples",
              _h_recog("large_eps"), _order_parts(("pgd_at", "fgsm_rs")), pct=True),
        Claim("H4", "robust training shrinks the input gradient", "Sec. 2 (theory)", "smaller ||grad L||",
              ("standard",), "mean ||grad_x L||_1", _h_grad,
              tuple(P(f"{a} below standard", a, "<", "standard") for a in MINIMAX + PENALTY)),
        Claim("H5", "defensive distillation alone gives little robustness", "Sec. 4", "distilled ~ standard",
              ("standard",) + MINIMAX, "PGD accuracy at the training eps", _h_robust,
              (P("distilled within 5 points of standard", "distilled", "~", "standard", 0.05),)
              + tuple(P(f"distilled below {a}", "distilled", "<", a) for a in MINIMAX), pct=True),
        Claim("H7", "undefended models have the highest clean accuracy", "Fig. 4.1 / Sec. 4",
              "undefended highest unperturbed accuracy", MINIMAX + PENALTY, "clean accuracy (500 points)", _h_clean,
              tuple(P(f"{u} above {a}", u, ">", a) for u in UNDEFENDED for a in MINIMAX + PENALTY), pct=True),
        Claim("H8", "the approximate (penalty) methods have the lowest clean accuracy of the three categories",
              "Fig. 4.1 / Sec. 4", "approximate methods lowest unperturbed accuracy", MINIMAX + UNDEFENDED,
              "clean accuracy (500 points)", _h_clean,
              tuple(P(f"{a} below {b}", a, "<", b) for a in PENALTY for b in MINIMAX), pct=True),
        Claim("H9", "TRADES is the most robust, followed closely by PGD and FGSM", "Fig. 4.1 / Sec. 4",
              "TRADES > PGD > FGSM (CIFAR-10)", ("pgd_at", "fgsm_rs"), "PGD accuracy at eps 0.15 (1.5 x training eps)",
              _h_robust_at("0.15"),
              (P("TRADES above PGD-AT", "trades6", ">", "pgd_at"), P("PGD-AT above FGSM-RS", "pgd_at", ">", "fgsm_rs")),
              min_seeds=3, seeds_of=lambda r: 1, pct=True),
        Claim("H10", "TRADES-6's perturbations are less recognizable than FGSM's and PGD's", "Fig. 4.2 / Sec. 4",
              "TRADES less recognizable (by eye)", ("fgsm_rs", "pgd_at"),
              "the oracle's target-class rate of inversions",
              _h_recog("inversion"),
              (P("below FGSM-RS", "trades6", "<", "fgsm_rs"), P("below PGD-AT", "trades6", "<", "pgd_at")), pct=True),
        Claim("H6", "an extreme TRADES beta trades all accuracy away (a trained, near-constant classifier)",
              "Sec. 4 (TRADES extreme)", "trained, near-constant", (), "the training curve of trades_extreme",
              _h_extreme, (P("the loss moved", "first train loss", ">", "last train loss", 1e-3),)),
    ]


# ================================================================== registry

CLAIMS = {"tsipras2019": _tsipras(), "matyasko2020": _matyasko(), "seguin2022": _seguin(),
          "spatial": _spatial(), "helland2020": _helland()}


def work_of(name: str) -> str:
    """The work a run name or folder name belongs to (tsipras2019-cpu -> tsipras2019)."""
    for w in CLAIMS:
        if name == w or name.startswith(w + "-") or name.startswith(w + "_"):
            return w
    raise ValueError(f"no claims registered for {name!r}; known works: {sorted(CLAIMS)}")


def claims_for(work: str) -> list[Claim]:
    return CLAIMS[work_of(work)]
