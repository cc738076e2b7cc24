"""The model cache's keys: a rerun of the same command finds the same model, on any machine, and never a model
trained differently (issue 29.6: seguin2022's students hashed their teacher's absolute path, and a model trained
with another CPU thread count was reused although its weights differ)."""

import torch

from robustlab.config import config_from_dict
from robustlab.experiments import common


def _student(teacher: str) -> dict:
    return {"name": "s", "epochs": 1, "data": {"name": "digits", "n_train": 64}, "model": {"name": "mlp"},
            "objective": {"name": "distill", "teacher": teacher, "loss_type": "kl"}}


def test_a_students_key_names_its_teacher_by_folder_not_by_machine_path():
    a = config_from_dict(_student("/work/alice/runs/cache/teacher-0123456789ab"))
    b = config_from_dict(_student("/home/bob/cache/teacher-0123456789ab"))
    c = config_from_dict(_student("/work/alice/runs/cache/teacher-ba9876543210"))
    assert a.hash() == b.hash() != c.hash()


def test_the_cpu_cache_folder_names_the_thread_count(tmp_path):
    cfg = {"name": "tiny", "epochs": 1, "batch_size": 64, "data": {"name": "digits", "n_train": 128, "n_test": 32},
           "model": {"name": "mlp"}}
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        _, one, _ = common.trained_model(cfg, cache_root=tmp_path)
        _, again, _ = common.trained_model(cfg, cache_root=tmp_path)  # the same command: the same model
        torch.set_num_threads(2)
        _, two, _ = common.trained_model(cfg, cache_root=tmp_path)
    finally:
        torch.set_num_threads(before)
    assert one == again and one.name.endswith("-t1") and two.name.endswith("-t2") and one != two
