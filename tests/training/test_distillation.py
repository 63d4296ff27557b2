"""Knowledge distillation: the soft-target loss, a frozen teacher, and a real teacher → student run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from lesionlab.cli import main
from lesionlab.config import ConfigError
from lesionlab.config.pretraining import DistillConfig
from lesionlab.training.distillation import FrozenTeacher, distillation_loss


def test_distillation_loss() -> None:
    torch.manual_seed(0)
    t = torch.randn(8, 3)
    assert distillation_loss(t.clone(), t, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    s = torch.randn(8, 3, requires_grad=True)
    loss = distillation_loss(s, t, 4.0)
    assert loss.item() > 0
    loss.backward()
    assert torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    # T² keeps the gradient scale comparable across temperatures: KL at T=1 times 1
    manual = torch.nn.functional.kl_div(s.detach().log_softmax(-1), t.softmax(-1), reduction="batchmean")
    assert distillation_loss(s.detach(), t, 1.0).item() == pytest.approx(manual.item(), rel=1e-5)


def test_teacher_stays_frozen_in_eval_mode() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(2, 3, 8, 8))
    teacher = FrozenTeacher(net, (0.5,) * 3, (0.5,) * 3)
    teacher.train()
    assert not teacher.training and not teacher.model[1].training
    assert not any(p.requires_grad for p in teacher.parameters())
    stats = teacher.model[1].running_mean.clone()
    teacher(torch.randint(0, 255, (4, 3, 8, 8), dtype=torch.uint8))
    assert torch.equal(stats, teacher.model[1].running_mean)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="teacher"):
        DistillConfig()
    with pytest.raises(ConfigError, match="alpha"):
        DistillConfig(teacher="x", alpha=1.5)
    with pytest.raises(ConfigError, match="temperature"):
        DistillConfig(teacher="x", temperature=0)


@pytest.mark.slow
def test_distill_a_real_teacher(small_ham_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                tiny_run) -> None:
    torch.set_num_threads(1)
    teacher = tiny_run("task=triage", "data.dataset=csv", f"data.csv={small_ham_csv}", "data.image_size=32",
                       f"data.cache_dir={tmp_path}/cache", "train.epochs=2", name="teacher", out=tmp_path / "teachers")
    out = tmp_path / "students"
    assert main(["-q", "distill", "--output-dir", str(out), str(teacher), "student.backbone=tiny-efficientnet",
                 "train.epochs=2", "train.batch_size=16", "train.progress=false", "latency_runs=3",
                 "train.monitor=val_loss"]) == 0
    (student,) = list(out.iterdir())
    history = pd.read_csv(student / "history.csv")
    saved = torch.load(student / "model.pt", map_location="cpu", weights_only=False)["extra"]
    assert saved["best_epoch"] == int(history.loc[history["val_loss"].idxmin(), "epoch"])  # lowest loss, not highest
    for name in ("model.pt", "splits.csv", "history.csv", "metrics.json", "predictions.csv", "distillation.csv",
                 "report.html", "student_report.html", "teacher_on_test/metrics.json"):
        assert (student / name).is_file(), name
    # the student trained on the teacher's own split and both were scored on its test images only
    t_splits, s_splits = pd.read_csv(teacher / "splits.csv"), pd.read_csv(student / "splits.csv")
    assert t_splits.set_index("image_id")["split"].to_dict() == s_splits.set_index("image_id")["split"].to_dict()
    test_ids = set(t_splits.loc[t_splits["split"] == "test", "image_id"])
    assert set(pd.read_csv(student / "predictions.csv")["image_id"]) == test_ids
    assert set(pd.read_csv(student / "teacher_on_test" / "predictions.csv")["image_id"]) == test_ids
    summary = pd.read_csv(student / "distillation.csv", index_col=0)
    t_params, s_params = summary.loc["teacher", "parameters"], summary.loc["student", "parameters"]
    assert t_params > s_params and summary.iloc[2]["parameters"] == pytest.approx(t_params / s_params)
    assert "test sensitivity P1" in summary.columns
    html = (student / "report.html").read_text()
    assert "Student vs teacher" in html and "student_report.html" in html
    capsys.readouterr()
    assert main(["-q", "predict", str(student), str(next(small_ham_csv.parent.glob("*.jpg"))), "--format",
                 "json"]) == 0
    assert '"triage_priority"' in capsys.readouterr().out


def _saved_model(path: Path, classes: tuple[str, ...]) -> Path:
    from lesionlab.config import ModelConfig
    from lesionlab.models.checkpoint import Preprocessing, save_model
    from lesionlab.models.classifier import create_model

    cfg = ModelConfig(backbone="tiny-resnet", pretrained=False)
    torch.manual_seed(1)
    save_model(path, create_model(cfg, len(classes)), cfg,
               Preprocessing(32, "center-square", (0.1, 0.2, 0.3), (0.4, 0.5, 0.6), classes, "ham7"))
    return path


def test_student_starts_from_a_model_file(tmp_path: Path) -> None:
    from lesionlab.config import ExperimentConfig, ModelConfig
    from lesionlab.data.table import DatasetError
    from lesionlab.engine.distill import initial_student, student_experiment
    from lesionlab.models.checkpoint import load_model

    classes = ("a", "b", "c")
    path = _saved_model(tmp_path / "model.pt", classes)
    cfg = DistillConfig(teacher="t", init_from=str(path), student=ModelConfig(backbone="tiny-efficientnet"))
    exp = student_experiment(cfg, ExperimentConfig(), canonical="ham-200x150")
    assert exp.model.backbone == "tiny-resnet"  # the architecture is the file's, not ``student``'s
    assert exp.data.canonical == "ham-200x150"  # the student sees images as the teacher does
    student, mean, std = initial_student(cfg, exp, classes)
    assert student.training and (mean, std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    saved, _ = load_model(path)
    for (k, a), b in zip(student.state_dict().items(), saved.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(DatasetError, match="same classes"):
        initial_student(cfg, exp, ("a", "b", "z"))
    fresh = student_experiment(DistillConfig(teacher="t"), ExperimentConfig())
    assert fresh.model.backbone == "tiny-resnet" and fresh.data.canonical is None
