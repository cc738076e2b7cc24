import os

import pytest
import torch
from hypothesis import settings

# Hypothesis draws the same examples in every run (replayable in CI, no run-to-run flakiness). Set
# HYPOTHESIS_PROFILE=explore to search with fresh random examples instead.
settings.register_profile("derandomized", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))

# Tests are small; one thread keeps them deterministic and leaves the other core free.
torch.set_num_threads(1)
os.environ.setdefault("ROBUSTLAB_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def cpu_profile_results(name: str, out: os.PathLike | str) -> dict:
    """The results of `robustlab reproduce NAME --profile cpu` for the slow acceptance tests.

    A finished cpu run is reused when ``$ROBUSTLAB_CPU_RUNS/NAME/results.json`` exists (each profile takes about
    an hour: run it once with `robustlab reproduce NAME --profile cpu --out $ROBUSTLAB_CPU_RUNS/NAME`, then check
    it as often as needed; a thesis chapter such as matyasko2020-pdpgd is also found in matyasko2020/pdpgd), but
    only if the code and the profile here made it (`robustlab.experiments.stored.stored_run_problems`: the cpu
    profile's settings as they are now, a finished run from a clean tree whose robustlab/ source equals this
    one's); a stored run made by other code or another configuration skips the test, saying why. Without a
    stored run the profile runs into `out`.
    """
    import json
    from pathlib import Path

    from robustlab.experiments import get_experiment

    fmnist = Path("/usr/share/datasets/fashion-mnist")
    if not fmnist.exists():
        pytest.skip("apt-get install -y dataset-fashion-mnist")
    root = os.environ.get("ROBUSTLAB_CPU_RUNS")
    if root:
        # a chapter of the whole thesis run (`reproduce matyasko2020`) lies in matyasko2020/<chapter>
        for folder in (name, name.replace("-", "/", 1)):
            done = Path(root) / folder / "results.json"
            if done.exists():
                from robustlab.experiments.stored import stored_run_problems

                problems = stored_run_problems(done.parent, name, "cpu")
                if problems:
                    pytest.skip(f"the stored run {done.parent} is not this code's cpu profile: {'; '.join(problems)} "
                                f"(run `robustlab reproduce {name} --profile cpu --out {done.parent}` again)")
                return json.loads(done.read_text())
    return get_experiment(name)(out=Path(out), profile="cpu")
