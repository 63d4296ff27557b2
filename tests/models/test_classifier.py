"""Classifier factory, checkpoint round trip, offline pretrained weights and local backbone weights."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest
import torch
from torch import nn

from lesionlab.config import ModelConfig
from lesionlab.models.backbones import (
    PretrainedWeightsUnavailable,
    create_backbone,
    load_backbone_weights,
    resolve_backbone,
)
from lesionlab.models.checkpoint import Preprocessing, load_model, save_model
from lesionlab.models.classifier import LesionClassifier, create_model, default_normalisation
from lesionlab.registry import UnknownNameError

# (backbone, classes, input size)
BACKBONE_CASES = [
    ("tiny-resnet", 7, 32),
    ("tiny-convnext", 8, 32),
    ("tiny-efficientnet", 3, 32),
    ("resnet10t", 7, 32),
    ("tiny-convnext", 2, 48),
]


def _unzero_norms(model: nn.Module) -> None:
    """timm zero-initialises the last norm of each residual block, which blocks the gradient to the rest of the block
    at step 0 by design; give those weights a value so the test can see whether gradient *can* reach everything."""
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, nn.BatchNorm2d | nn.GroupNorm | nn.LayerNorm) and weight is not None and not weight.any():
            nn.init.ones_(weight)


@pytest.mark.parametrize(("backbone", "num_classes", "size"), BACKBONE_CASES)
def test_forward_backward_reaches_every_parameter(backbone: str, num_classes: int, size: int) -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone=backbone, drop_rate=0.0), num_classes)
    assert isinstance(model, LesionClassifier)
    assert isinstance(model.head, nn.Sequential)
    _unzero_norms(model)
    model.train()
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()
    assert model.features(x).shape == (2, model.num_features)
    nn.functional.cross_entropy(logits, torch.tensor([0, num_classes - 1])).backward()
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert params
    no_grad = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.abs().sum()]
    assert no_grad == []


@pytest.mark.parametrize(("alias", "timm_name"), [
    ("tiny-resnet", "test_resnet"), ("efficientnet-b0", "efficientnet_b0"), ("resnet18", "resnet18"),
    ("vit_tiny_patch16_224", "vit_tiny_patch16_224"),  # any timm name works as is
])
def test_resolve_backbone(alias: str, timm_name: str) -> None:
    assert resolve_backbone(alias) == timm_name


def test_unknown_backbone_suggests() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'tiny-resnet'.*timm model name"):
        resolve_backbone("tiny-resnett")


@pytest.mark.parametrize("drop_path_rate", [0.0, 0.1])
def test_backbone_is_headless(drop_path_rate: float) -> None:
    backbone = create_backbone("tiny-convnext", drop_path_rate=drop_path_rate)
    out = backbone(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, backbone.num_features)


@pytest.mark.parametrize(("backbone", "thresholds"), [("tiny-resnet", {}), ("tiny-efficientnet", {"mel": 0.3})])
def test_save_load_round_trip(tmp_path: Path, backbone: str, thresholds: dict[str, float]) -> None:
    torch.manual_seed(1)
    cfg = ModelConfig(backbone=backbone, drop_rate=0.3)
    model = create_model(cfg, 3)
    with torch.no_grad():  # make the BN running statistics non-default so they are part of the round trip
        model.train()
        model(torch.randn(4, 3, 32, 32))
    model.eval()
    mean, std = default_normalisation(model, pretrained=False)
    prep = Preprocessing(image_size=32, crop="pad", mean=mean, std=std, class_names=("mel", "nv", "bcc"),
                         taxonomy="ham7", temperature=1.7, thresholds=thresholds)
    path = tmp_path / "model.pt"
    save_model(path, model, cfg, prep, extra={"epoch": 3})
    loaded, loaded_prep = load_model(path)
    assert loaded_prep == prep
    assert not loaded.training
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    blob = torch.load(path, weights_only=False)
    assert blob["extra"] == {"epoch": 3}
    assert blob["model"]["pretrained"] is False and blob["model"]["weights"] is None  # never re-downloads


def test_load_model_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a LesionLab model file"):
        load_model(other)


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No network and an empty Hugging Face cache (huggingface_hub reads its settings at import, hence setattr)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


@pytest.mark.parametrize("backbone", ["resnet18", "efficientnet-b0"])
def test_pretrained_offline_raises_helpfully(offline_hub: None, backbone: str) -> None:
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        create_model(ModelConfig(backbone=backbone, pretrained=True), 7)
    msg = str(info.value)
    assert repr(resolve_backbone(backbone)) in msg
    assert "model.weights" in msg and "model.pretrained=false" in msg


def test_not_pretrained_needs_no_network(offline_hub: None) -> None:
    model = create_model(ModelConfig(backbone="resnet10t", pretrained=False), 2).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)


def _differs(a: nn.Module, b: nn.Module) -> bool:
    return any(not torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "safetensors"])
def test_load_backbone_weights(tmp_path: Path, wrap: str) -> None:
    torch.manual_seed(0)
    source = create_backbone("tiny-resnet")
    torch.manual_seed(1)
    target = create_backbone("tiny-resnet")
    assert _differs(source, target)
    state = source.state_dict()
    if wrap == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        path = tmp_path / "w.pt"
        torch.save({"state_dict": state} if wrap == "state_dict" else state, path)
    report = load_backbone_weights(target, path)
    assert report["loaded"] == sorted(state)
    assert report["missing"] == report["unexpected"] == report["shape_mismatch"] == []
    assert not _differs(source, target)


def test_load_backbone_weights_partial(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_backbone("tiny-resnet")
    target = create_backbone("tiny-resnet")  # different random init
    before = {k: v.clone() for k, v in target.state_dict().items()}
    state = dict(source.state_dict())
    reshaped = next(k for k in state if k.endswith("weight"))
    state[reshaped] = torch.zeros(3)  # wrong shape
    state["fc_extra.weight"] = torch.zeros(2, 2)  # not in the backbone
    removed = next(k for k in reversed(list(state)) if k.endswith("running_var"))
    del state[removed]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    report = load_backbone_weights(target, path)
    assert report["shape_mismatch"] == [reshaped]
    assert report["unexpected"] == ["fc_extra.weight"]
    assert set(report["missing"]) == {reshaped, removed}
    assert set(report["loaded"]) == set(before) - {reshaped, removed}
    after = target.state_dict()
    for key in report["loaded"]:
        assert torch.equal(after[key], state[key])
    for key in (reshaped, removed):  # what could not be loaded keeps its own value
        assert torch.equal(after[key], before[key])


def test_model_config_weights_are_loaded(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_backbone("tiny-convnext")
    path = tmp_path / "backbone.pth"
    torch.save(source.state_dict(), path)
    model = create_model(ModelConfig(backbone="tiny-convnext", weights=str(path)), 4)
    assert not _differs(source, model.backbone)


@pytest.mark.parametrize(("content", "error", "match"), [
    (None, FileNotFoundError, "not found"),
    ({"something.else": torch.zeros(1)}, ValueError, "No tensor"),
])
def test_load_backbone_weights_errors(tmp_path: Path, content: dict | None, error: type, match: str) -> None:
    path = tmp_path / "w.pt"
    if content is not None:
        torch.save(content, path)
    with pytest.raises(error, match=match):
        load_backbone_weights(create_backbone("tiny-resnet"), path)
