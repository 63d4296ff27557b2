"""Progressive resizing and selective backprop: the schedule, the selection, and what the model actually sees."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lesionlab.config import (
    AugmentationConfig,
    ConfigError,
    ModelConfig,
    OptimizerConfig,
    ScheduleConfig,
    SpeedupConfig,
    TrainConfig,
)
from lesionlab.data.transforms import to_model_input
from lesionlab.models.classifier import create_model
from lesionlab.training.losses import create_loss
from lesionlab.training.module import LesionModule
from lesionlab.training.speedups import (
    backprop_fraction,
    hardest,
    progressive_size,
    select_for_backprop,
    smallest_size,
)


def test_progressive_size_ramps_to_full_size() -> None:
    cfg = SpeedupConfig(progressive_resize=0.5, resize_until=0.8)
    sizes = [progressive_size(64, cfg, p) for p in (0.0, 0.2, 0.4, 0.6, 0.79, 0.8, 1.0)]
    assert sizes[0] == 32 and sizes[-2:] == [64, 64]
    assert sizes == sorted(sizes) and all(s % 8 == 0 for s in sizes)
    assert progressive_size(64, SpeedupConfig(), 0.0) == 64  # off by default


def test_backprop_window_and_hardest_selection() -> None:
    cfg = SpeedupConfig(selective_backprop=0.25, backprop_until=0.5)
    assert backprop_fraction(cfg, 0.1) == 0.25 and backprop_fraction(cfg, 0.5) == 1.0
    logits = torch.zeros(8, 3)
    logits[torch.arange(8), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])] = torch.linspace(5, -5, 8)  # later = worse
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    assert sorted(hardest(logits, targets, 0.25).tolist()) == [6, 7]
    assert len(hardest(logits[:3], targets[:3], 0.1)) == 2  # at least 2, for BatchNorm


def test_bad_values_are_refused() -> None:
    for bad in ({"progressive_resize": 0.0}, {"selective_backprop": 0.0}, {"resize_until": 0.0}):
        with pytest.raises(ConfigError, match="speedups"):
            SpeedupConfig(**bad)


class Recorder(torch.nn.Module):
    """Wraps a model and records the input size and batch size of every forward with gradients enabled."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.feature_info = model.backbone.feature_info  # the stride floor of progressive resizing
        self.seen: list[tuple[bool, int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.is_grad_enabled() and self.training, x.shape[-1], x.shape[0]))
        return self.model(x)


def fit(speedups: SpeedupConfig, epochs: int = 4, lr: float = 0.01) -> Recorder:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 3, 64, 64), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 3, (48,), generator=g)
    train = DataLoader(TensorDataset(x[:32], y[:32]), batch_size=8, shuffle=True, drop_last=True)
    val = DataLoader(TensorDataset(x[32:], y[32:]), batch_size=16)
    model = Recorder(create_model(ModelConfig(backbone="tiny-resnet", drop_rate=0.0), 3))
    cfg = TrainConfig(epochs=epochs, optimizer=OptimizerConfig(lr=lr), schedule=ScheduleConfig("constant", 0),
                      ema_decay=0, progress=False, speedups=speedups)
    module = LesionModule(model, create_loss("ce"), cfg, 3, (0.5,) * 3, (0.25,) * 3)
    L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
              enable_model_summary=False, num_sanity_val_steps=0, enable_checkpointing=False).fit(module, train, val)
    return model


def test_training_sees_growing_sizes_validation_sees_full_size() -> None:
    seen = fit(SpeedupConfig(progressive_resize=0.5, resize_until=0.75)).seen
    train_sizes = [s for grad, s, _ in seen if grad]
    assert train_sizes[0] == 32 and train_sizes[-1] == 64 and train_sizes == sorted(train_sizes)
    assert len(set(train_sizes)) >= 3  # a ramp, not a switch
    assert {s for grad, s, _ in seen if not grad} == {64}  # validation: always the full size


def test_selective_backprop_backpropagates_the_kept_fraction_only() -> None:
    seen = fit(SpeedupConfig(selective_backprop=0.5, backprop_until=0.5)).seen
    grad_batches = [n for grad, _, n in seen if grad]
    assert grad_batches[:8] == [4] * 8 and grad_batches[8:] == [8] * 8  # first half of 16 steps: 4 of 8 samples
    scored = [n for grad, _, n in seen if not grad and n == 8]
    assert len(scored) == 8  # one no-grad scoring pass per selective step


def test_batch_mode_loader_yields_raw_cache_pixels_and_the_module_augments(prepared) -> None:
    from lesionlab.config import load_config
    from lesionlab.data.batch_augment import BatchAugment
    from lesionlab.engine.train import make_loaders

    cfg = load_config(None, ["data.image_size=8", "train.batch_size=16", "train.augmentation.preset=standard",
                             "train.augmentation.mode=batch"])
    train_loader, _ = make_loaders(prepared, cfg)
    assert train_loader.dataset.transform is None  # augmentation left the loader...
    images, _ = next(iter(train_loader))
    cached = {prepared.images[r].tobytes() for r in train_loader.dataset.indices}
    assert all(img.permute(1, 2, 0).numpy().tobytes() in cached for img in images)  # ...the pixels are the cache's
    module = LesionModule(create_model(ModelConfig(backbone="tiny-resnet"), 7), create_loss("ce"), cfg.train, 7,
                          (0.5,) * 3, (0.25,) * 3)
    assert isinstance(module.batch_augment, BatchAugment)  # ...and moved into the training step
    assert LesionModule(create_model(ModelConfig(backbone="tiny-resnet"), 7), create_loss("ce"), TrainConfig(), 7,
                        (0.5,) * 3, (0.25,) * 3).batch_augment is None


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # a step called without a Trainer
def test_training_step_feeds_the_model_the_batch_augmented_images() -> None:
    from lesionlab.data.transforms import to_model_input

    cfg = TrainConfig(augmentation=AugmentationConfig("none", {"hflip": 1.0}, mode="batch"), ema_decay=0)
    model = Recorder(create_model(ModelConfig(backbone="tiny-resnet", drop_rate=0.0), 3))
    inputs = []
    model.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach().clone()))
    module = LesionModule(model, create_loss("ce"), cfg, 3, (0.5,) * 3, (0.25,) * 3)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    module.training_step((images, torch.tensor([0, 1, 2, 0])), 0)
    torch.testing.assert_close(inputs[0], to_model_input(images.flip(-1), (0.5,) * 3, (0.25,) * 3))


def test_selection_keeps_metadata_aligned() -> None:
    torch.manual_seed(0)
    model = create_model(ModelConfig(backbone="tiny-resnet"), 3).train()
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8) % 3
    meta = torch.arange(8, dtype=torch.float32).view(8, 1)  # row i carries i
    kept_x, kept_y, (kept_meta,), logits = select_for_backprop(lambda v, m: model(v), x, y, [meta], 0.5)
    idx = kept_meta.view(-1).long()
    assert len(idx) == 4 and torch.equal(kept_x, x[idx]) and torch.equal(kept_y, y[idx])
    assert logits.shape == (8, 3)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # a step called without a Trainer
def test_batchnorm_statistics_follow_the_whole_batch_not_the_hard_subset() -> None:
    """A selective step moves the running statistics exactly as one plain pass over the whole batch would."""
    torch.manual_seed(0)
    cfg = TrainConfig(ema_decay=0, speedups=SpeedupConfig(selective_backprop=0.25, backprop_until=1.0))
    module = LesionModule(create_model(ModelConfig(backbone="tiny-resnet"), 3), create_loss("ce"), cfg, 3,
                          (0.5,) * 3, (0.25,) * 3).train()
    plain = create_model(ModelConfig(backbone="tiny-resnet"), 3).train()
    plain.load_state_dict(module.model.state_dict())
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8)
    targets = torch.arange(16) % 3
    module.training_step((images, targets), 0).backward()  # gradients flow through the kept subset
    with torch.no_grad():
        plain(to_model_input(images, (0.5,) * 3, (0.25,) * 3))
    stats = [k for k in plain.state_dict() if "running" in k]
    assert stats and all(torch.allclose(module.model.state_dict()[k], plain.state_dict()[k]) for k in stats)
    with torch.no_grad():  # the check can fail: a pass over the hard subset moves them elsewhere
        plain(to_model_input(images[:4], (0.5,) * 3, (0.25,) * 3))
    assert not all(torch.allclose(module.model.state_dict()[k], plain.state_dict()[k]) for k in stats)


def test_speedups_refuse_what_would_ignore_them() -> None:
    from lesionlab.config import StageConfig
    from lesionlab.config.pretraining import DistillConfig, PretrainConfig

    on = SpeedupConfig(progressive_resize=0.5)
    with pytest.raises(ConfigError, match=r"train\.stages"):
        TrainConfig(stages=(StageConfig(),), speedups=on)
    with pytest.raises(ConfigError, match="speedups"):
        DistillConfig(teacher="runs/x", train=TrainConfig(speedups=on))
    with pytest.raises(ConfigError, match=r"augmentation\.mode"):
        PretrainConfig(train=TrainConfig(augmentation=AugmentationConfig(mode="batch")))
    with pytest.raises(ConfigError, match="backprop_until"):
        SpeedupConfig(selective_backprop=0.5, backprop_until=0.0)


def test_progressive_resizing_never_goes_below_the_backbone_stride() -> None:
    import timm

    assert smallest_size(timm.create_model("resnet10t", pretrained=False)) == 32
    assert smallest_size(torch.nn.Linear(2, 2)) == 32  # no timm feature_info: the common default
    cfg = SpeedupConfig(progressive_resize=0.25)
    assert progressive_size(64, cfg, 0.0, minimum=32) == 32 and progressive_size(64, cfg, 0.0) == 16
    assert progressive_size(24, cfg, 0.0, minimum=32) == 24  # never above the full size


def test_a_diverging_run_stops_with_a_clear_error() -> None:
    from lesionlab.errors import USER_ERRORS
    from lesionlab.training.module import TrainingDivergedError

    assert issubclass(TrainingDivergedError, USER_ERRORS)  # the CLI prints it as one line and exits 2
    with pytest.raises(TrainingDivergedError, match="training diverged"):
        fit(SpeedupConfig(), epochs=2, lr=float("inf"))
