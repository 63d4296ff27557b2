"""``lesionlab compare-pretraining``: the same frozen-encoder classifier on top of VAE, ImageNet and random encoders.

Every arm is the shared ``experiment`` recipe (data and split, head, optimizer, loss, epochs, evaluation) with only
``model.backbone`` / ``model.pretrained`` / ``model.weights`` changed, trained by the foundation's :func:`train`:
first ``frozen_epochs`` with the encoder frozen (``model.freeze_backbone``), then optionally ``finetune_epochs`` with
the encoder's last stage unfrozen (``train.stages``: head → last-block, see :mod:`lesionlab.training.unfreeze`).
The training-dynamics table of each run (:mod:`lesionlab.reports.dynamics`, slopes per phase) and the learning
curves side by side go into one report.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import yaml

from lesionlab.config import ConfigError, ExperimentConfig, StageConfig, save_config, to_dict
from lesionlab.config.pretraining import ComparePretrainingConfig, EncoderArmConfig
from lesionlab.data.prepare import PreparedData, prepare_data
from lesionlab.data.roots import absolute_data_config
from lesionlab.data.source_check import check_if_merged
from lesionlab.data.splits import LeakageError
from lesionlab.engine.pretrain import ENCODER_FILE
from lesionlab.engine.train import TrainResult, train
from lesionlab.registry import Registry
from lesionlab.runs import RunPaths, discards_unstarted_runs

logger = logging.getLogger(__name__)

#: The model fields an arm may change; everything else is identical across arms (asserted).
ARM_FIELDS = ("backbone", "pretrained", "weights")


@dataclass(frozen=True)
class VAERun:
    """A ``pretrain vae`` run: its encoder architecture, weights file and the images it trained on."""

    root: Path
    encoder: str
    weights: Path

    @classmethod
    def open(cls, path: str | Path) -> VAERun:
        root = Path(path)
        weights, config = root / ENCODER_FILE, root / "config.yaml"
        if not weights.is_file() or not config.is_file():
            raise FileNotFoundError(f"{root} is not a VAE pretraining run (needs {ENCODER_FILE} and config.yaml)")
        encoder = (yaml.safe_load(config.read_text()) or {}).get("vae", {}).get("encoder")
        if not encoder:
            raise ConfigError(f"{config} names no vae.encoder")
        return cls(root, str(encoder), weights)

    def trained_lesions(self) -> set[str]:
        splits = pd.read_csv(self.root / "splits.csv", dtype={"image_id": str, "lesion_id": str})
        return set(splits.loc[splits["split"] == "train", "lesion_id"])


#: arm init → ``(arm, vae_run) -> (backbone, pretrained, weights)``.
ENCODER_INITS: Registry[Callable[[EncoderArmConfig, VAERun | None], tuple[str, str | bool, str | None]]] = Registry(
    "encoder init")


def _backbone(arm: EncoderArmConfig, vae: VAERun | None) -> str:
    if arm.backbone:
        return arm.backbone
    if vae is None:
        raise ConfigError(f"arms[{arm.name}].backbone is null (= the VAE's encoder): set vae_run or a backbone")
    return vae.encoder


@ENCODER_INITS.register("random", help="random initialisation (the VAE's architecture unless backbone is set)")
def _random(arm: EncoderArmConfig, vae: VAERun | None) -> tuple[str, str | bool, str | None]:
    return _backbone(arm, vae), False, None


@ENCODER_INITS.register("imagenet", help="ImageNet weights (offline EfficientNet-Lite0 package, else timm's hub)")
def _imagenet(arm: EncoderArmConfig, vae: VAERun | None) -> tuple[str, str | bool, str | None]:
    return arm.backbone or "efficientnet-lite0", "imagenet", None


@ENCODER_INITS.register("vae", help="the encoder of vae_run (encoder.safetensors)")
def _vae(arm: EncoderArmConfig, vae: VAERun | None) -> tuple[str, str | bool, str | None]:
    if vae is None:
        raise ConfigError(f"arms[{arm.name}] uses init=vae: set vae_run to a 'lesionlab pretrain vae' run directory")
    if arm.backbone and arm.backbone != vae.encoder:
        raise ConfigError(f"arms[{arm.name}].backbone={arm.backbone!r} differs from the VAE's encoder {vae.encoder!r}")
    return vae.encoder, False, str(vae.weights)


@ENCODER_INITS.register("file", help="a local weights file (weights: PATH; backbone required)")
def _file(arm: EncoderArmConfig, vae: VAERun | None) -> tuple[str, str | bool, str | None]:
    if not arm.weights or not arm.backbone:
        raise ConfigError(f"arms[{arm.name}] uses init=file: set both backbone and weights")
    return arm.backbone, False, arm.weights


def arm_experiment(cfg: ComparePretrainingConfig, arm: EncoderArmConfig, vae: VAERun | None,
                   output_dir: Path) -> ExperimentConfig:
    """The shared recipe with this arm's encoder, frozen for ``frozen_epochs`` then (optionally) last stage open."""
    backbone, pretrained, weights = ENCODER_INITS.get(arm.init)(arm, vae)
    exp = cfg.experiment
    staged = cfg.finetune_epochs > 0
    stages = ((StageConfig(cfg.frozen_epochs, exp.train.optimizer.lr, "head"),
               StageConfig(cfg.finetune_epochs, cfg.finetune_lr, "last-block")) if staged else ())
    model = replace(exp.model, backbone=backbone, pretrained=pretrained, weights=weights, freeze_backbone=not staged)
    train_cfg = replace(exp.train, epochs=cfg.frozen_epochs + cfg.finetune_epochs, stages=stages)
    return replace(exp, name=f"{cfg.name}-{arm.name}", output_dir=str(output_dir), model=model, train=train_cfg)


def assert_identical_recipes(experiments: dict[str, ExperimentConfig]) -> None:
    """Every arm must share every setting except the encoder (backbone, pretrained, weights) and the run name."""
    def recipe(exp: ExperimentConfig) -> dict:
        d = to_dict(exp)
        d.pop("name")
        for key in ARM_FIELDS:
            d["model"].pop(key)
        return d

    first_name, first = next(iter(experiments.items()))
    for name, exp in experiments.items():
        if recipe(exp) != recipe(first):
            raise AssertionError(f"arm {name} does not share arm {first_name}'s hyper-parameters")


def check_vae_never_saw_test(vae: VAERun, data: PreparedData) -> int:
    """Raise :class:`LeakageError` if the VAE trained on a lesion of this comparison's test split (``data``, as
    :func:`prepare_data` splits it for every arm); returns the number of test lesions."""
    test = set(data.table.loc[data.table["split"] == "test", "lesion_id"].astype(str))
    overlap = vae.trained_lesions() & test
    if overlap:
        raise LeakageError(
            f"the VAE of {vae.root} trained on {len(overlap)} lesions of this comparison's test split (first: "
            f"{sorted(overlap)[:5]}); pretrain with the same data, split fractions and split seed as the comparison")
    return len(test)


@dataclass(frozen=True)
class CompareResult:
    root: Path
    report: Path
    summary: pd.DataFrame  # one row per arm
    runs: dict[str, TrainResult]


@discards_unstarted_runs
def compare_pretraining(cfg: ComparePretrainingConfig) -> CompareResult:
    """Train every arm, then write ``summary.csv``, ``dynamics.csv``, the curves figure and ``report.html``."""
    from lesionlab.reports.compare_pretraining_report import summarise, write_compare_report

    for arm in cfg.arms:
        ENCODER_INITS.get(arm.init)  # fail early, listing the valid inits
    vae = VAERun.open(cfg.vae_run) if cfg.vae_run else None
    out = RunPaths.create(cfg.output_dir, cfg.name)
    cfg = replace(cfg, experiment=replace(cfg.experiment, data=absolute_data_config(cfg.experiment.data)))
    save_config(cfg, out.config)
    experiments = {arm.name: arm_experiment(cfg, arm, vae, out.root / "runs") for arm in cfg.arms}
    assert_identical_recipes(experiments)
    data = prepare_data(cfg.experiment.data, progress=False)  # the split every arm's train() re-creates
    if vae is not None and any(a.init == "vae" for a in cfg.arms):
        n_test = check_vae_never_saw_test(vae, data)
        logger.info("Checked: the VAE trained on none of the %d test lesions", n_test)
    source_check = check_if_merged(data, seed=cfg.experiment.data.split.seed)
    runs, seconds = {}, {}
    for name, exp in experiments.items():
        logger.info("Arm %s: backbone %s, pretrained %s, weights %s", name, exp.model.backbone, exp.model.pretrained,
                    exp.model.weights)
        t0 = time.perf_counter()
        runs[name] = train(exp)
        seconds[name] = time.perf_counter() - t0
    summary, dynamics = summarise(cfg, runs, seconds)
    summary.to_csv(out.root / "summary.csv")
    dynamics.to_csv(out.root / "dynamics.csv")
    (out.root / "comparison.json").write_text(json.dumps(
        {"runs": {k: str(v.run.root) for k, v in runs.items()}, "seconds": seconds,
         "vae_run": str(vae.root) if vae else None,
         "source_check": source_check.to_dict() if source_check else None}, indent=2))
    report = write_compare_report(out, cfg, experiments, runs, summary, dynamics, source_check)
    return CompareResult(out.root, report, summary, runs)
