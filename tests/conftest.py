import os

import pytest
import torch

# Tests are small; one thread keeps them deterministic and leaves the other core free.
torch.set_num_threads(1)
os.environ.setdefault("ROBUSTLAB_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
