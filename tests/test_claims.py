"""Claims as data: the verdict rule on known cases, the intervals against closed forms, and the verdicts of
the stored `cpu` runs (docs/results/) recomputed from their raw results, as the README and claims.md state."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from robustlab.experiments import claims as C
from robustlab.experiments.claims_papers import CLAIMS, claims_for, work_of

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
WORKS = ["tsipras2019", "matyasko2020", "seguin2022", "spatial", "helland2020"]


def _claim(measure, parts, **kw) -> C.Claim:
    return C.Claim("X1", "s", "Fig. 1", "p", ("b",), "q", measure, tuple(parts), **kw)


# ------------------------------------------------------------------ intervals

def test_wilson_interval_matches_the_closed_form():
    e = C.binomial(0.5, 100)  # Wilson 95%: 0.5 +- 1.96 * sqrt(0.25/100 + 1.96^2/40000) / (1 + 1.96^2/100)
    assert e.lo == pytest.approx(0.4038, abs=1e-4) and e.hi == pytest.approx(0.5962, abs=1e-4)
    two = C.binomial([0.4, 0.6], 100)  # several seeds: the union of the seeds' intervals
    assert two.lo == pytest.approx(C.binomial(0.4, 100).lo) and two.hi == pytest.approx(C.binomial(0.6, 100).hi)


def test_bootstrap_is_reproducible_and_brackets_the_mean():
    v = [0.5, 0.5, 0.7, 0.8, 0.7, 0.6, 0.6, 0.6, 0.7, 0.7]
    a, b = C.bootstrap(v), C.bootstrap(v)
    assert (a.lo, a.hi) == (b.lo, b.hi)
    assert a.value == pytest.approx(0.64) and a.lo < a.value < a.hi and a.hi - a.lo < 0.2
    assert C.bootstrap([1.0, 1.0, 1.0]).lo == C.bootstrap([1.0, 1.0, 1.0]).hi == 1.0


def test_one_seed_has_no_interval():
    assert not C.seeds([0.3]).has_interval and C.seeds([0.3, 0.4]).has_interval
    assert "no interval" in C.point(0.3).text() and "±" not in C.seeds([0.3]).text()


# ------------------------------------------------------------------ the verdict rule

def test_separated_intervals_reproduce_and_reversed_ones_contradict():
    est = {"a": C.binomial(0.8, 1000), "b": C.binomial(0.5, 1000)}
    assert C.verdict(_claim(lambda r: est, [C.Part("a>b", "a", ">", "b")]), {}).verdict == "reproduced"
    assert C.verdict(_claim(lambda r: est, [C.Part("b>a", "b", ">", "a")]), {}).verdict == "contradicted"


def test_overlapping_intervals_are_not_reproduced_even_when_the_point_holds():
    est = {"a": C.binomial(0.52, 100), "b": C.binomial(0.50, 100)}
    v = C.verdict(_claim(lambda r: est, [C.Part("a>b", "a", ">", "b")]), {})
    assert v.verdict == "not reproduced" and "not beyond the interval" in v.reason


def test_margin_is_part_of_the_rule():
    est = {"a": C.binomial(0.6, 1000), "b": C.binomial(0.5, 1000)}
    v = C.verdict(_claim(lambda r: est, [C.Part("a > b + 20 points", "a", ">", "b", 0.2)]), {})
    assert v.verdict == "not reproduced"  # the direction is right, the size is not


def test_mixed_parts_say_which_part():
    est = {"m": C.binomial(0.8, 1000), "x": C.binomial(0.5, 1000), "y": C.binomial(0.79, 1000)}
    v = C.verdict(_claim(lambda r: est, [C.Part("above x", "m", ">", "x"), C.Part("above y", "m", ">", "y")]), {})
    assert v.verdict == "partly reproduced" and "holds: above x" in v.reason and "above y" in v.reason
    est["y"] = C.binomial(0.95, 1000)
    v = C.verdict(_claim(lambda r: est, [C.Part("above x", "m", ">", "x"), C.Part("above y", "m", ">", "y")]), {})
    assert v.verdict == "contradicted" and "above y" in v.reason and "holds: above x" in v.reason


def test_point_estimates_never_reproduce():
    est = {"a": C.point(3.0), "b": C.point(1.0)}
    assert C.verdict(_claim(lambda r: est, [C.Part("a>b", "a", ">", "b")]), {}).verdict == "partly reproduced"
    assert C.verdict(_claim(lambda r: est, [C.Part("b>a", "b", ">", "a")]), {}).verdict == "not reproduced"


def test_orderings_of_training_methods_need_their_seeds():
    est = {"a": C.binomial(0.8, 1000), "b": C.binomial(0.5, 1000)}
    c = _claim(lambda r: est, [C.Part("a>b", "a", ">", "b")], min_seeds=3, seeds_of=lambda r: r["n"])
    assert C.verdict(c, {"n": 1}).verdict == "partly reproduced"
    assert C.verdict(c, {"n": 3}).verdict == "reproduced"


def test_a_failed_precondition_is_not_a_contradiction():
    est = {"broken": C.exact(0), "power": C.exact(0.01)}
    c = _claim(lambda r: est, [C.Part("sound", "broken", "<", 0.5),
                               C.Part("power", "power", ">", 0.05, can_contradict=False)])
    v = C.verdict(c, {})
    assert v.verdict == "partly reproduced" and "not shown: power" in v.reason


def test_a_claim_without_a_rule_is_never_reproduced():
    assert C.verdict(_claim(lambda r: {"a": C.exact(1.0)}, []), {}).verdict == "not run at this profile"


def test_missing_results_are_not_run_with_the_reason():
    def m(r):
        raise C.NotRun("the deep part was not run")
    v = C.verdict(_claim(m, [C.Part("a>b", "a", ">", "b")]), {})
    assert v.verdict == "not run at this profile" and v.reason == "the deep part was not run"
    v = C.verdict(_claim(lambda r: {"a": C.exact(r["x"])}, [C.Part("a>0", "a", ">", 0.0)]), {})
    assert v.verdict == "not run at this profile" and "'x'" in v.reason
    def not_shown(r):
        raise C.NotShown("its training curve is not stored")
    assert C.verdict(_claim(not_shown, [C.Part("a>b", "a", ">", "b")]), {}).verdict == "not reproduced"
    v = C.verdict(_claim(lambda r: {"a": C.exact(1.0)}, [C.Part("a>b", "a", ">", "b")]), {})  # b's model not run
    assert v.verdict == "not run at this profile" and "'b'" in v.reason


def test_every_registered_claim_is_well_formed():
    for work, cs in CLAIMS.items():
        assert 6 <= len(cs) <= 15, work
        assert len({c.id for c in cs}) == len(cs)
        for c in cs:
            assert c.statement and c.source and c.paper and c.quantity
    assert work_of("tsipras2019-cpu") == "tsipras2019" and work_of("matyasko2020-margin") == "matyasko2020"
    with pytest.raises(ValueError):
        work_of("demo")


# ------------------------------------------------------------------ the stored cpu runs

def _verdicts(work: str) -> dict[str, C.Verdict]:
    _, _, vs = C.run_verdicts(RESULTS / f"{work}-cpu")
    return {v.claim.id: v for v in vs}


def test_known_contradictions_of_the_stored_runs_come_out():
    m = _verdicts("matyasko2020")
    assert m["M1"].verdict == "contradicted" and "above FGSM-AT" in m["M1"].reason  # Table 3.1: rho vs FGSM-AT
    assert m["M8"].verdict == "contradicted"  # Table 4.2: critic below AT and VAT by the oracle
    assert m["M6"].verdict != "reproduced" and m["M3"].verdict != "reproduced"
    s = _verdicts("spatial")
    assert s["P9"].verdict == "contradicted"  # Fig. 6: f_fro, f_spe, f_stn beat f_sdp under stAdv
    assert all(o in s["P9"].reason for o in ("f_fro", "f_spe", "f_stn"))
    assert s["P1"].verdict != "reproduced"  # soundness tested where the attack barely beats clean error
    h = _verdicts("helland2020")
    assert h["H2"].verdict in ("contradicted", "partly reproduced", "not reproduced")
    assert h["H6"].verdict != "reproduced"  # the extreme-TRADES model is not shown trained
    g = _verdicts("seguin2022")
    assert g["S8"].verdict != "reproduced"  # Table 2 ordering on one student seed
    t = _verdicts("tsipras2019")
    assert t["T8"].verdict != "reproduced"  # check 11: a one-seed tie (0.858 vs 0.858)


def test_no_claim_reads_a_stored_boolean():
    src = (ROOT / "robustlab" / "experiments" / "claims_papers.py").read_text()
    assert '["checks"]' not in src and "score_order_check" not in src


@pytest.mark.parametrize("work", WORKS)
def test_stored_claims_md_is_what_the_stored_results_give(work, tmp_path):
    run = tmp_path / f"{work}-cpu"
    shutil.copytree(RESULTS / f"{work}-cpu", run)
    C.write_claims(run)
    assert (run / "claims.md").read_text() == (RESULTS / f"{work}-cpu" / "claims.md").read_text(), \
        f"regenerate: robustlab claims docs/results/{work}-cpu"
    stored = json.loads((RESULTS / f"{work}-cpu" / "claims.json").read_text())
    assert stored == json.loads((run / "claims.json").read_text())


def test_readme_claims_column_equals_the_computed_counts():
    readme = (ROOT / "README.md").read_text()
    for work in WORKS:
        _, _, vs = C.run_verdicts(RESULTS / f"{work}-cpu")
        m = re.search(rf"(\d+) of (\d+) \(\[verdicts\]\(docs/results/{work}-cpu/claims.md\)\)", readme)
        assert m, work
        assert (int(m.group(1)), int(m.group(2))) == (C.counts(vs)["reproduced"], len(vs)), work


def test_committed_results_name_no_machine_paths():
    bad = []
    for folder in (RESULTS, ROOT / "benchmarks" / "results"):
        for f in folder.rglob("*"):
            if f.is_file() and f.suffix in (".json", ".md", ".txt", ".toml", ".csv"):
                if re.search(r"(?<![\w$])/(work|home)/", f.read_text(errors="replace")):
                    bad.append(str(f.relative_to(ROOT)))
    assert not bad, bad


def test_scrub_names_folders_by_role(tmp_path, monkeypatch):
    from robustlab.report.provenance import path_roles, scrub_folder

    cache = tmp_path / "cache"
    monkeypatch.setenv("ROBUSTLAB_CACHE", str(cache))
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"run": f"{cache}/m-1", "out": f"{run}/sub", "n": "runs/x"}))
    (run / "model.bin").write_bytes(b"keep " + str(cache).encode())
    assert scrub_folder(run) == [run / "results.json"]
    assert json.loads((run / "results.json").read_text()) == {"run": "$ROBUSTLAB_CACHE/m-1", "out": "RUN_DIR/sub",
                                                              "n": "runs/x"}
    assert path_roles("--out out") == "--out out"  # relative folders are left alone


def test_cli_claims_writes_the_table_and_rejects_a_bad_folder(tmp_path, capsys):
    from robustlab.cli import main

    run = tmp_path / "spatial-cpu"
    shutil.copytree(RESULTS / "spatial-cpu", run)
    (run / "claims.md").unlink()
    assert main(["claims", str(run)]) == 0
    assert "contradicted" in capsys.readouterr().out and (run / "claims.md").is_file()
    assert main(["claims", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.json" in err[0]
    other = tmp_path / "demo-run"
    shutil.copytree(RESULTS / "spatial-cpu", other)
    assert main(["claims", str(other)]) == 2  # no claims registered for a folder name that names no work


def test_claims_for_a_chapter_run_alone():
    _, _, vs = C.run_verdicts(RESULTS / "matyasko2020-cpu" / "margin", "matyasko2020-margin")
    assert [v.claim.id for v in vs] == [c.id for c in claims_for("matyasko2020") if c.group == "margin"]
    assert all(v.verdict != "not run at this profile" for v in vs)


def test_reproduce_prints_the_verdicts_and_records_provenance(tmp_path, monkeypatch, capsys):
    """`robustlab reproduce` (with the experiment replaced by one that writes a stored run's results): the
    verdict table at the end, provenance with commit / machine / times / seeds, and no absolute folders."""
    import robustlab.experiments as E
    from robustlab.cli import main

    cache = tmp_path / "cache"
    monkeypatch.setenv("ROBUSTLAB_CACHE", str(cache))

    def fake(out, profile, device):
        res = json.loads((RESULTS / "tsipras2019-cpu" / "results.json").read_text())
        res["deep"]["models"]["standard"]["run"] = f"{cache}/t2019-standard-0"
        res["figure"] = f"{Path(out).resolve()}/fig.png"
        (Path(out) / "results.json").write_text(json.dumps(res))
        C.write_claims(out, "tsipras2019")
        return res

    monkeypatch.setattr(E, "get_experiment", lambda name: fake)
    out = tmp_path / "run"
    assert main(["reproduce", "tsipras2019", "--profile", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tsipras2019 claims at profile `cpu`" in printed and "**contradicted**" not in printed
    assert "8 of 12 reproduced" in printed
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["finished"] and prov["profile"] == "cpu" and prov["cpu_s"] >= 0 and prov["wall_s"] >= 0
    assert prov["seeds"] == {"seed": 0} and set(prov["git"]) == {"commit", "clean"} and prov["machine"]["cpus"]
    assert prov["command"].endswith("--out RUN_DIR")
    res = json.loads((out / "results.json").read_text())
    assert res["deep"]["models"]["standard"]["run"] == "$ROBUSTLAB_CACHE/t2019-standard-0"
    assert res["figure"] == "RUN_DIR/fig.png"


def test_report_section_opens_with_the_verdicts(tmp_path):
    from robustlab.report.html import section

    run = tmp_path / "tsipras2019-cpu"
    shutil.copytree(RESULTS / "tsipras2019-cpu", run)
    (run / "a_notes.md").write_text("# Notes sorted before claims.md\n")
    html = section("tsipras2019", run)
    assert 0 <= html.find("claims at profile") < html.find("Notes sorted before") < html.find("Table 4 analogue")


def test_benchmark_command_lines_name_their_output_folder_by_role(tmp_path):
    from robustlab.report.provenance import command_line

    out = tmp_path / "measure" / "b100.json"
    line = command_line(out, ["benchmarks/minnorm_sota.py", "--steps", "100", "--out", str(out)])
    assert line == "benchmarks/minnorm_sota.py --steps 100 --out OUT_DIR/b100.json"
