"""CPU time of PGD-20 (keep="best", no random start) against its floor (20 forward+backward passes of the same
model) on a plain NCHW CNN with random weights, 128 MNIST-sized random inputs, one thread: the cost of counting
passes in the model wrapper (result.CountedModel). Prints one JSON line (minimum and median of 5 runs); run it
with each tree first on PYTHONPATH to compare (benchmarks/results/pass_counting_overhead.json)."""

import json
import time

import torch
from torch import nn

import robustlab
from robustlab import attacks

torch.set_num_threads(1)
torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                    nn.Linear(32 * 12 * 12, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
x = torch.rand(128, 1, 28, 28)
y = torch.randint(0, 10, (128,))
STEPS = 20
for q in net.parameters():
    q.requires_grad_(False)


def floor() -> None:
    for _ in range(STEPS):
        xa = x.clone().requires_grad_(True)
        torch.autograd.grad(nn.functional.cross_entropy(net(xa), y), xa)


def pgd() -> None:
    attacks.pgd(net, x, y, eps=0.1, steps=STEPS, keep="best", random_start=False, step_size=0.01)


out: dict = {"tree": robustlab.__file__}
for name, f in (("floor", floor), ("pgd", pgd)):
    f()
    ts = []
    for _ in range(5):
        t0 = time.process_time()
        f()
        ts.append(time.process_time() - t0)
    out[name] = round(min(ts), 3)
    out[name + "_median"] = round(sorted(ts)[2], 3)
print(json.dumps(out))
