"""Knowledge distillation's training pieces (Hinton et al. 2015): the frozen teacher, the soft-target loss and the
Lightning module whose loss mixes them with the hard labels: ``α · T² · KL(softmax(t / T) ‖ softmax(s / T)) +
(1 − α) · hard(s, y)``. The ``lesionlab distill`` job is :mod:`lesionlab.engine.distill`."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lesionlab.config import TrainConfig
from lesionlab.data.transforms import to_model_input
from lesionlab.training.module import LesionModule


class FrozenTeacher(nn.Module):
    """The teacher in eval mode for good (Lightning's ``train()`` calls cannot switch it), without gradients."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.mean, self.std = tuple(mean), tuple(std)

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images → the teacher's output (logits or ensemble log-probabilities)."""
        return self.model(to_model_input(images, self.mean, self.std)).float()


def distillation_loss(student_logits: torch.Tensor, teacher_output: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T² · KL(softmax(t / T) ‖ softmax(s / T))``, averaged over the batch (zero when student == teacher)."""
    t = float(temperature)
    target = F.softmax(teacher_output / t, dim=-1)
    return F.kl_div(F.log_softmax(student_logits.float() / t, dim=-1), target, reduction="batchmean") * t * t


class DistillModule(LesionModule):
    """:class:`LesionModule` whose training loss mixes soft teacher targets with the hard labels."""

    def __init__(self, student: nn.Module, hard_loss: nn.Module, cfg: TrainConfig, num_classes: int,
                 mean: tuple[float, ...], std: tuple[float, ...], teacher: FrozenTeacher, *, temperature: float,
                 alpha: float) -> None:
        super().__init__(student, hard_loss, cfg, num_classes, mean, std)
        self._teacher = (teacher,)  # not a registered sub-module: never optimised, never in the student's checkpoint
        self.temperature, self.alpha = temperature, alpha

    @property
    def teacher(self) -> FrozenTeacher:
        return self._teacher[0]

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.teacher.to(self.device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, targets = batch
        images = self.augment_batch(images)  # train.augmentation.mode=batch
        logits = self(images)
        soft = distillation_loss(logits, self.teacher(images), self.temperature)
        hard = self.loss_fn(logits, targets)
        loss = self.alpha * soft + (1 - self.alpha) * hard
        n = len(targets)
        self.train_bal_acc.update(logits.detach(), targets)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        self.log("train_soft_loss", soft, on_step=False, on_epoch=True, batch_size=n)
        self.log("train_hard_loss", hard, on_step=False, on_epoch=True, batch_size=n)
        self.log("train_bal_acc", self.train_bal_acc, on_step=False, on_epoch=True, batch_size=n)
        return loss
