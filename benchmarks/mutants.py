"""Issue 36 mutant set: apply each one-line mutant in ROOT, run its test files (pytest -q -x), restore the file.

usage: python benchmarks/mutants.py ROOT [M1 M2 ...]  (prints one JSON line per mutant; see docs/testing.md)
"""

import json
import os
import subprocess
import sys

P = sys.executable
M = [
 ("M1", "pgd_at inner attack returns x", "robustlab/train/objectives/pgd_at.py",
  "            return perturb(model, x, y, norm=self.norm, eps=self.eps, steps=self.steps, step_size=step,",
  "            return x.detach(); perturb(model, x, y, norm=self.norm, eps=self.eps, steps=self.steps, step_size=step,",
  ["tests/test_objectives.py"]),
 ("M2", "VAT direction: no power iteration (random start returned)", "robustlab/train/objectives/vat.py",
  "        for _ in range(power_iterations):\n            u, =", "        for _ in range(0):\n            u, =",
  ["tests/test_objectives.py"]),
 ("M3", "TRADES KL reversed (KL(adv || clean))", "robustlab/train/objectives/trades.py",
  'kl = F.kl_div(F.log_softmax(adv, 1), F.softmax(logits, 1), reduction="batchmean")',
  'kl = F.kl_div(F.log_softmax(logits, 1), F.softmax(adv, 1), reduction="batchmean")',
  ["tests/test_objectives.py"]),
 ("M4", "stadv_at pool term computed on clean x", "robustlab/train/objectives/spatial.py",
  "loss = F.cross_entropy(logits, y) + self.lambda_r * F.cross_entropy(model(px[pick]), py[pick])",
  "loss = F.cross_entropy(logits, y) + self.lambda_r * F.cross_entropy(model(x), y)",
  ["tests/test_objectives_spatial.py"]),
 ("M5", "distill kl loses its T^2 factor", "robustlab/train/objectives/distill.py",
  "loss = T * T * F.kl_div(", "loss = F.kl_div(",
  ["tests/test_objectives.py", "tests/test_distill_objective_targets.py", "tests/test_behaviours.py"]),
 ("M6", "FGSM-RS step eps instead of 1.25 eps", "robustlab/train/objectives/pgd_at.py",
  "step_size=self.step_size or 1.25 * self.eps", "step_size=self.step_size or 1.0 * self.eps",
  ["tests/test_objectives.py"]),
 ("M7", "PGD: final evaluation pass not counted (pass counting off by one)", "robustlab/attacks/projected_gradient.py",
  "                counter.add(idx, forward=eot_iter)\n", "                counter.add(idx, forward=0)\n",
  ["tests/test_attacks_pgd.py"]),
 ("M8", "perturb (training's PGD) drops the projection", "robustlab/attacks/projected_gradient.py",
  "        delta = project_ball_box(delta + a * steepest_ascent(grad, norm, sparsity=sparsity), x, norm, eps)",
  "        delta = (x + delta + a * steepest_ascent(grad, norm, sparsity=sparsity)).clamp(0, 1) - x",
  ["tests/test_attacks_pgd.py", "tests/test_objectives.py"]),
 ("M9", "evaluation skips verification (every claim counted)", "robustlab/evaluate/ensemble.py",
  "            ok = verify(model, xb[idx], yb[idx], r.x_adv, norm=r.threat or norm, eps=e, aux=r.aux)",
  "            ok = r.success.clone()",
  ["tests/test_evaluate.py", "tests/test_amp.py"]),
 ("M10", "per-attack broken counts include clean misclassifications", "robustlab/evaluate/ensemble.py",
  'if b not in ("", "clean"):', 'if b not in ("",):', ["tests/test_evaluate.py"]),
 ("M11", "checklist zero_at_large_eps never fires", "robustlab/evaluate/sanity.py",
  'out.append(_check("zero_at_large_eps", rob_large <= 0.05,',
  'out.append(_check("zero_at_large_eps", rob_large <= 1.0,',
  ["tests/test_evaluate.py", "tests/test_behaviours.py"]),
 ("M12", "Trainer robust accuracy returns clean accuracy (attack does nothing)", "robustlab/train/trainer.py",
  "        return res.robust_accuracy()[cfg.eval.eps]",
  "        return float((self.model(x).argmax(1) == y).float().mean())",
  ["tests/test_contract.py::test_trainer_robust_accuracy_for_any_registered_attack"]),
 ("M13", "far-rank fraction ranks model A twice", "robustlab/analysis/logits.py",
  "ra, rb = within_class_ranks(conf_a, y), within_class_ranks(conf_b, y)",
  "ra, rb = within_class_ranks(conf_a, y), within_class_ranks(conf_a, y)",
  ["tests/test_analysis_logits.py", "tests/test_cli_analyze_logits.py"]),
]
only = sys.argv[2:] or [m[0] for m in M]
root = sys.argv[1]
out = []
for mid, desc, f, old, new, files in M:
    if mid not in only:
        continue
    path = os.path.join(root, f)
    src = open(path).read()
    assert src.count(old) == 1, (mid, src.count(old))
    line = src[:src.index(old)].count("\n") + 1
    files = [t for t in files if os.path.exists(os.path.join(root, t.split("::")[0]))]
    open(path, "w").write(src.replace(old, new))
    try:
        env = dict(os.environ, PYTHONPATH=root, OMP_NUM_THREADS="1")
        r = subprocess.run(["nice", P, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *files], cwd=root, env=env,
                           capture_output=True, text=True)
    finally:
        open(path, "w").write(src)
    lines = r.stdout.strip().splitlines()
    failed = [l.split(" ")[1] for l in lines if l.startswith("FAILED") or l.startswith("ERROR")]
    rec = {"id": mid, "desc": desc, "where": f"{f}:{line}", "files": files, "rc": r.returncode,
           "killed": r.returncode == 1, "by": failed[:2], "summary": lines[-1] if lines else ""}
    print(json.dumps(rec), flush=True)
