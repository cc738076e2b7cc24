"""A user's own model and data through the CLI: a class in their file, weights in common layouts, .npz data."""

import json

import numpy as np
import pytest
import torch

from robustlab.cli import main
from robustlab.errors import InputError
from robustlab.models.io import CheckpointError
from robustlab.models.user import import_class, load_user_model

NET = '''
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(1, width, 3, padding=1)
        self.fc = nn.Linear(width * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))
'''


@pytest.fixture
def user_files(tmp_path):
    (tmp_path / "nets.py").write_text(NET)
    cls = import_class(f"{tmp_path / 'nets.py'}:Net")
    torch.manual_seed(0)
    net = cls(width=4)
    sd = net.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, tmp_path / "w.pt")
    from safetensors.torch import save_file

    save_file(sd, tmp_path / "w.safetensors")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(12, 1, 8, 8, generator=g)
    with torch.no_grad():
        y = net(x).argmax(1)  # labels the model gets right, so attacks have something to do
    np.savez(tmp_path / "d.npz", x=(x.numpy() * 255).round().astype(np.uint8), y=y.numpy())
    return tmp_path, net


def test_load_user_model_layouts(user_files):
    d, net = user_files
    x = torch.rand(2, 1, 8, 8)
    for w in ("w.pt", "w.safetensors"):
        m = load_user_model(f"{d / 'nets.py'}:Net", d / w, {"width": 4})
        assert not m.training and torch.equal(m(x), net(x))
    with pytest.raises(CheckpointError, match="does not fit Net.*shape differs"):
        load_user_model(f"{d / 'nets.py'}:Net", d / "w.pt", {"width": 5})
    with pytest.raises(InputError, match="not an nn.Module"):
        import_class("os:system")
    with pytest.raises(InputError, match="FILE.py:ClassName"):
        import_class("nets.py")
    with pytest.raises(InputError, match="needs --weights"):
        load_user_model(f"{d / 'nets.py'}:Net")
    with pytest.raises(InputError, match="robustbench"):
        load_user_model("robustbench:Standard")


def test_malicious_pickle_weights_never_run(user_files, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'pwned')!r}, 'w').write('pwned')",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    d, _ = user_files
    with pytest.raises(CheckpointError, match=r"robustlab refuses such files, so load it"):
        load_user_model(f"{d / 'nets.py'}:Net", tmp_path / "evil.pt", {"width": 4})
    assert not (tmp_path / "pwned").exists()


def test_cli_evaluate_and_attack_a_users_model(user_files, capsys):
    d, _ = user_files
    common = ["--model", f"{d / 'nets.py'}:Net", "--weights", str(d / "w.pt"), "--arch-kwargs", '{"width": 4}',
              "--data", str(d / "d.npz"), "--n", "0"]
    assert main(["evaluate", *common, "--eps", "8/255,0.3", "--version", "custom", "--attacks", "pgd",
                 "--no-checks", "--out", str(d / "card.json")]) == 0
    card = json.loads((d / "card.json").read_text())
    assert card["n"] == 12 and card["clean_accuracy"] == 1.0 and card["weights"] == str(d / "w.pt")
    ra = card["robust_accuracy"]
    assert ra[str(8 / 255)] >= ra["0.3"] and ra["0.3"] < 1.0
    capsys.readouterr()
    assert main(["attack", *common, "--attack", "pgd", "--eps", "0.3", "--steps", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n"] == 12 and out["robust_acc"] == pytest.approx(1 - out["success_rate"])
    assert main(["evaluate", *common, "--eps", "0.1"]) == 2  # no --out with --model: a clear error
    assert "--out" in capsys.readouterr().err


def test_user_data_npz_and_image_folder(tmp_path):
    from PIL import Image

    from robustlab.data.user import load_npz, load_path

    for c, v in (("cat", 0), ("dog", 255)):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((5, 4, 3), v, dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    ds = load_path(tmp_path / "imgs")
    assert ds.x.shape == (4, 3, 5, 4) and ds.y.tolist() == [0, 0, 1, 1] and ds.class_names == ("cat", "dog")
    assert float(ds.x[0].max()) == 0.0 and float(ds.x[3].min()) == 1.0
    np.savez(tmp_path / "hwc.npz", x=np.random.rand(3, 6, 6, 3).astype(np.float32), y=np.array([0, 2, 1]))
    ds = load_npz(tmp_path / "hwc.npz")
    assert ds.x.shape == (3, 3, 6, 6) and ds.num_classes == 3
    np.savez(tmp_path / "bad.npz", x=np.full((2, 1, 4, 4), 2.0, dtype=np.float32), y=np.array([0, 1]))
    with pytest.raises(InputError, match=r"normalisation belongs inside the model"):
        load_npz(tmp_path / "bad.npz")  # outside [0, 1]
    np.savez(tmp_path / "nolabels.npz", x=np.zeros((2, 1, 4, 4), dtype=np.float32))
    with pytest.raises(InputError, match="'x' .* and 'y'"):
        load_npz(tmp_path / "nolabels.npz")


def test_cli_robustbench_source_goes_through_robustbench_loader_with_its_flags(user_files, monkeypatch, capsys):
    """RobustBench's loader needs timm and torchvision, which this project does not install; a stand-in
    `robustbench.utils.load_model` that reads RobustBench's local layout <model_dir>/<dataset>/<threat>/<name>.pt
    (its checkpoint format: {"state_dict": {"module.*": ...}}) checks that the CLI hands it the right model,
    dataset, threat model and folder, and evaluates what it returns."""
    import sys
    import types

    d, net = user_files
    cls = type(net)
    rb_dir = d / "models" / "cifar10" / "Linf"
    rb_dir.mkdir(parents=True)
    (rb_dir / "Toy.pt").write_bytes((d / "w.pt").read_bytes())
    calls = []

    def load_model(model_name, dataset, threat_model, model_dir):
        calls.append((model_name, dataset, threat_model, model_dir))
        m = cls(width=4)
        sd = torch.load(f"{model_dir}/{dataset}/{threat_model}/{model_name}.pt", weights_only=True)["state_dict"]
        m.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
        return m

    rb = types.ModuleType("robustbench")
    rb.utils = types.ModuleType("robustbench.utils")
    rb.utils.load_model = load_model
    monkeypatch.setitem(sys.modules, "robustbench", rb)
    monkeypatch.setitem(sys.modules, "robustbench.utils", rb.utils)
    assert main(["evaluate", "--model", "robustbench:Toy", "--dataset", "cifar10", "--threat-model", "Linf",
                 "--model-dir", str(d / "models"), "--data", str(d / "d.npz"), "--n", "0", "--eps", "8/255",
                 "--version", "custom", "--attacks", "pgd", "--no-checks", "--out", str(d / "rb.json")]) == 0
    assert calls == [("Toy", "cifar10", "Linf", str(d / "models"))]
    card = json.loads((d / "rb.json").read_text())
    assert card["clean_accuracy"] == 1.0 and card["n"] == 12  # the returned weights are the user's
