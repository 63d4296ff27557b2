"""Grad-CAM maps, target layers, the CAM-in-lesion score and mask cropping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lesionlab.data.crops import get_crop
from lesionlab.data.transforms import to_model_input
from lesionlab.evaluation.explain import (
    balanced_sample,
    cam_in_lesion,
    cam_maps,
    explain_images,
    gradcam_map,
    load_masks,
    target_layers,
)
from lesionlab.models.checkpoint import load_model


def test_cam_in_lesion_is_one_inside_and_zero_outside() -> None:
    mask = np.zeros((2, 8, 8), dtype=bool)
    mask[:, 2:6, 2:6] = True
    inside = np.where(mask, np.random.default_rng(0).random((2, 8, 8)), 0.0)
    outside = np.where(~mask, 1.0, 0.0)
    np.testing.assert_allclose(cam_in_lesion(inside, mask), [1.0, 1.0])
    np.testing.assert_allclose(cam_in_lesion(outside, mask), [0.0, 0.0])
    half = np.zeros((8, 8))
    half[3, 3] = half[0, 0] = 1.0
    assert cam_in_lesion(half, mask[0]) == pytest.approx(0.5)
    assert np.isnan(cam_in_lesion(np.zeros((8, 8)), mask[0]))
    with pytest.raises(ValueError, match="non-negative"):
        cam_in_lesion(-half, mask[0])
    with pytest.raises(ValueError, match="shape"):
        cam_in_lesion(half, mask[0, :4])


@pytest.mark.parametrize("crop", ["center-square", "full", "pad"])
def test_masks_are_cropped_like_the_images(tmp_path: Path, crop: str) -> None:
    frame = np.zeros((150, 200), dtype=np.uint8)
    frame[30:90, 20:70] = 255  # off-centre lesion, partly outside the centre square
    Image.fromarray(frame).save(tmp_path / "ISIC_1_segmentation.png")
    masks, found = load_masks(["ISIC_1", "ISIC_2"], tmp_path, crop, 32)
    assert found.tolist() == [True, False] and not masks[1].any()
    image = np.asarray(get_crop(crop)(Image.fromarray(frame).convert("RGB"), 32))[..., 0] > 128
    assert (masks[0] == image).mean() > 0.99 and masks[0].any()


def test_gradcam_maps_of_a_tiny_model(run_factory, random_images) -> None:
    model, prep = load_model(run_factory() / "model.pt")
    x = to_model_input(torch.from_numpy(random_images).permute(0, 3, 1, 2), prep.mean, prep.std)
    for method in ("gradcam", "gradcam++"):
        cams = cam_maps(model, x, [0, 1, 2] * 4, method)
        assert cams.shape == (12, 16, 16) and np.isfinite(cams).all()
        assert cams.min() >= 0 and cams.max() <= 1 + 1e-6
    with torch.inference_mode():  # the predictor may call it from inference code
        single = gradcam_map(model, x[:1], 3)
    np.testing.assert_allclose(single, cam_maps(model, x[:1], [3])[0], atol=1e-6)
    (layer,) = target_layers(model, 16)
    feature_sizes = {d["module"]: 16 // d["reduction"] for d in model.backbone.feature_info}
    chosen = next(name for name, m in model.backbone.named_modules() if m is layer)
    assert feature_sizes[chosen] >= 4 and all(s < 4 for n, s in feature_sizes.items()
                                              if list(feature_sizes).index(n) > list(feature_sizes).index(chosen))


def test_ensembles_get_one_cam_layer_per_member(run_factory, random_images) -> None:
    from lesionlab.serving.model_loading import Ensemble

    a, _ = load_model(run_factory("a", seed=0) / "model.pt")
    b, prep = load_model(run_factory("b", seed=1) / "model.pt")
    ens = Ensemble([a, b], [1.0, 1.0])
    assert len(target_layers(ens, 16)) == 2
    x = to_model_input(torch.from_numpy(random_images[:2]).permute(0, 3, 1, 2), prep.mean, prep.std)
    assert cam_maps(ens, x, [0, 1]).shape == (2, 16, 16)


def test_explain_images_scores_against_masks(run_factory, random_images) -> None:
    model, prep = load_model(run_factory() / "model.pt")
    probs = np.full((12, 7), 1 / 7)
    probs[:, 2] += 0.1
    masks = np.zeros((12, 16, 16), dtype=bool)
    masks[:6] = True  # full-frame masks: every heat-map lies inside
    ex = explain_images(model, random_images, prep.mean, prep.std, [f"i{k}" for k in range(12)],
                        np.array([2] * 6 + [0] * 6), probs, prep.class_names, masks=masks)
    assert ex.frame["correct"].tolist() == [True] * 6 + [False] * 6
    scored = ex.frame["cam_in_lesion"]
    assert scored[:6].sub(1).abs().max() < 1e-9 or scored[:6].isna().any()  # NaN only for an all-zero map
    assert scored[6:].isna().all()  # no mask: no score


def test_balanced_sample_deals_round_robin() -> None:
    y = np.array([0] * 50 + [1] * 3 + [2] * 10)
    pick = balanced_sample(y, 9)
    assert np.bincount(y[pick], minlength=3).tolist() == [3, 3, 3]
    assert len(balanced_sample(y, 100)) == len(y)


def test_explain_images_writes_overlays_large_enough_to_read(run_factory, tmp_path: Path) -> None:
    import pandas as pd

    from lesionlab.engine.explain import DISPLAY_PX, explain_files

    run = run_factory(size=16, splits=pd.DataFrame({"image_id": ["x"], "lesion_id": ["X"], "split": ["train"]}))
    path = tmp_path / "lesion.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(path)
    out = explain_files(run, [path], out_dir=tmp_path / "out")
    with Image.open(out / "lesion_gradcam.png") as png:
        assert png.size == (2 * DISPLAY_PX, DISPLAY_PX)  # was 2 x 16 px: the model's input size
        left = np.asarray(png)[:, :DISPLAY_PX]
    assert left.std() > 0  # the image itself, cropped at display size
