"""A stored reproduction run is reused by the slow tests only when this code and this profile made it
(robustlab.experiments.stored; tests/conftest.py::cpu_profile_results): tampered copies are refused, saying why."""

import json
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

import robustlab.experiments.stored as stored
from robustlab.experiments.stored import profile_of, settings_differences, stored_run_problems
from tests.conftest import cpu_profile_results

ROOT = Path(__file__).resolve().parents[1]
NAME = "tsipras2019"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A repository with a robustlab/ source folder and one commit."""
    r = tmp_path / "repo"
    (r / "robustlab").mkdir(parents=True)
    (r / "robustlab" / "a.py").write_text("X = 1\n")
    git(r, "init", "-q")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "one")
    return r


def write_run(folder, commit, *, clean=True, finished=True, profile="cpu", settings=None):
    folder.mkdir(parents=True, exist_ok=True)
    st = asdict(profile_of(NAME, "cpu")) if settings is None else settings
    (folder / "results.json").write_text(json.dumps({"profile": profile, "settings": st}))
    (folder / "provenance.json").write_text(json.dumps({"git": {"commit": commit, "clean": clean},
                                                        "finished": finished}))
    return folder


def test_a_run_of_this_code_and_profile_is_accepted_and_every_difference_refused(repo, tmp_path):
    head = git(repo, "rev-parse", "HEAD")
    run = write_run(tmp_path / "run", head)
    assert stored_run_problems(run, NAME, "cpu", repo=repo) == []
    # a commit that changes no library source (documents, tests) keeps the run valid
    (repo / "docs").mkdir()
    (repo / "docs" / "x.md").write_text("x\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "docs")
    assert stored_run_problems(run, NAME, "cpu", repo=repo) == []
    # the library source changed since the run: uncommitted, committed, or a new file
    (repo / "robustlab" / "a.py").write_text("X = 2\n")
    (p,) = stored_run_problems(run, NAME, "cpu", repo=repo)
    assert p.startswith("made by other code") and "robustlab/a.py" in p and head[:12] in p
    git(repo, "commit", "-qam", "code")
    assert "robustlab/a.py" in stored_run_problems(run, NAME, "cpu", repo=repo)[0]
    git(repo, "checkout", "-q", head, "--", "robustlab")
    assert stored_run_problems(run, NAME, "cpu", repo=repo) == []  # the same source as the run's commit again
    (repo / "robustlab" / "b.py").write_text("Y = 1\n")
    assert "robustlab/b.py" in stored_run_problems(run, NAME, "cpu", repo=repo)[0]


def test_tampered_runs_are_refused_naming_what_differs(repo, tmp_path):
    head = git(repo, "rev-parse", "HEAD")
    settings = asdict(profile_of(NAME, "cpu"))
    cases = {
        "settings": (dict(settings=dict(settings, eval_n=7)), f"eval_n: 7.0 -> {float(settings['eval_n'])!r}"),
        "new key": (dict(settings={k: v for k, v in settings.items() if k != "topk"}), "topk: '<absent>' -> ["),
        "profile": (dict(profile="quick"), "its profile is 'quick', not 'cpu'"),
        "dirty": (dict(clean=False), "uncommitted changes"),
        "unfinished": (dict(finished=False), "did not finish"),
        "commit": (dict(commit="0" * 40), "is not in this repository"),
    }
    for case, (kw, why) in cases.items():
        run = write_run(tmp_path / case, kw.pop("commit", head), **kw)
        problems = stored_run_problems(run, NAME, "cpu", repo=repo)
        assert len(problems) == 1 and why in problems[0], (case, problems)
    run = write_run(tmp_path / "no provenance", head)
    (run / "provenance.json").unlink()
    assert stored_run_problems(run, NAME, "cpu", repo=repo) == ["no provenance.json: which code made it is unknown"]
    # a chapter of a whole-thesis run reads its parent's provenance
    chapter = write_run(tmp_path / "thesis" / "pdpgd", head, settings=asdict(profile_of("matyasko2020-pdpgd", "cpu")))
    shutil.move(chapter / "provenance.json", chapter.parent / "provenance.json")
    assert stored_run_problems(chapter, "matyasko2020-pdpgd", "cpu", repo=repo) == []


def test_settings_compare_as_json_stores_them():
    assert settings_differences({"a": [1, 2], "e": "inf", "t": ["0.5"]}, {"a": (1.0, 2), "e": float("inf"),
                                                                          "t": [0.5]}) == []
    assert settings_differences({"b": {"x": 1}}, {"b": {"x": 2, "y": 3}}) == ["b.x: 1.0 -> 2.0",
                                                                             "b.y: '<absent>' -> 3.0"]


@pytest.fixture
def fmnist():
    if not Path("/usr/share/datasets/fashion-mnist").exists():
        pytest.skip("apt-get install -y dataset-fashion-mnist (cpu_profile_results skips first without it)")


def test_slow_tests_skip_a_tampered_copy_of_a_committed_run(fmnist, tmp_path, monkeypatch):
    """docs/results' tsipras2019 run with one setting changed: cpu_profile_results skips (it neither trusts it
    nor silently runs the profile for an hour), naming the setting and the missing commit."""
    run = tmp_path / "runs" / NAME
    shutil.copytree(ROOT / "docs" / "results" / f"{NAME}-cpu", run)
    res = json.loads((run / "results.json").read_text())
    from dataclasses import asdict

    from robustlab.experiments.stored import profile_of

    res["settings"] = {**json.loads(json.dumps(asdict(profile_of(NAME, "cpu")))), "eval_n": 10}  # one change only
    (run / "results.json").write_text(json.dumps(res))
    monkeypatch.setenv("ROBUSTLAB_CPU_RUNS", str(tmp_path / "runs"))
    with pytest.raises(pytest.skip.Exception, match="is not this code's cpu profile") as e:
        cpu_profile_results(NAME, tmp_path / "out")
    assert "eval_n: 10.0 -> 1000.0" in str(e.value) and "no git commit" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_slow_tests_reuse_a_run_this_code_made(fmnist, repo, tmp_path, monkeypatch):
    monkeypatch.setattr(stored, "_source_root", lambda: repo)  # "this code": the repository above
    run = write_run(tmp_path / "runs" / NAME, git(repo, "rev-parse", "HEAD"))
    monkeypatch.setenv("ROBUSTLAB_CPU_RUNS", str(tmp_path / "runs"))
    assert cpu_profile_results(NAME, tmp_path / "out") == json.loads((run / "results.json").read_text())
    (repo / "robustlab" / "a.py").write_text("X = 3\n")
    with pytest.raises(pytest.skip.Exception, match="made by other code: robustlab/ differs"):
        cpu_profile_results(NAME, tmp_path / "out")
