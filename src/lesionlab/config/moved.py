"""Keys that moved when ``train`` was grouped: the one table of old flat key → new nested key.

User configs and ``key=value`` overrides that use an old key fail with a message naming the new one
(:func:`moved_message`); run directories saved before the change are migrated silently when they are read back
(:func:`migrate_saved_config`).
"""

from __future__ import annotations

import copy
from typing import Any

#: ``train.<old>`` → ``train.<new>`` (both relative to the ``train`` section).
MOVED_TRAIN_KEYS: dict[str, str] = {
    "optimizer": "optimizer.name",
    "lr": "optimizer.lr",
    "weight_decay": "optimizer.weight_decay",
    "layer_decay": "optimizer.layer_decay",
    "scheduler": "schedule.name",
    "warmup_epochs": "schedule.warmup_epochs",
    "plateau_factor": "schedule.plateau_factor",
    "plateau_patience": "schedule.plateau_patience",
    "loss": "loss.name",
    "label_smoothing": "loss.label_smoothing",
    "class_weights": "loss.class_weights",
    "effective_beta": "loss.effective_beta",
    "focal_gamma": "loss.focal_gamma",
    "focal_alpha": "loss.focal_alpha",
    "sampler": "sampling.sampler",
    "undersample_cap": "sampling.undersample_cap",
    "oversample": "sampling.oversample",
    "smote_space": "sampling.smote_space",
    "smote_k": "sampling.smote_k",
    "augment": "augmentation.preset",
    "augment_params": "augmentation.params",
    "augment_on": "augmentation.mode",
    "mix": "augmentation.mix",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "num_nodes": "trainer.num_nodes",
    "strategy": "trainer.strategy",
    "precision": "trainer.precision",
    "num_workers": "trainer.num_workers",
    "logger": "trainer.logger",
    "save_last": "trainer.save_last",
}

#: Old keys whose value was a section (its sub-keys moved with it).
_SECTIONS = {"mix"}


def is_moved(key: str, value: Any) -> bool:
    """Whether ``train.<key>: value`` is an old flat key (``optimizer: adam`` is; ``optimizer: {name: adam}`` not)."""
    new = MOVED_TRAIN_KEYS.get(key)
    return new is not None and not (new.startswith(f"{key}.") and isinstance(value, dict))


def moved_message(where: str, key: str, value: Any) -> str:
    """``train.lr was moved: use train.optimizer.lr`` (``where`` is the section's dotted path, e.g. ``train``)."""
    old, new = f"{where}.{key}", f"{where}.{MOVED_TRAIN_KEYS[key]}"
    if key in _SECTIONS and isinstance(value, dict) and value:
        sub = next(iter(value))
        old, new = f"{old}.{sub}", f"{new}.{sub}"
    return f"{old} was moved: use {new}"


def _migrate_train(train: dict[str, Any]) -> None:
    moved = {k: train.pop(k) for k in [k for k in train if is_moved(k, train[k])]}  # first out, then back in place
    for key, value in moved.items():
        *parents, leaf = MOVED_TRAIN_KEYS[key].split(".")
        node = train
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(node.get(leaf), dict) and isinstance(value, dict):
            value = {**value, **node[leaf]}
        node.setdefault(leaf, value)


def migrate_saved_config(data: dict[str, Any]) -> dict[str, Any]:
    """A saved run config with its old flat ``train`` keys moved to their groups (a copy; new keys win)."""
    data = copy.deepcopy(data)
    for owner in (data, data.get("experiment")):
        if isinstance(owner, dict) and isinstance(owner.get("train"), dict):
            _migrate_train(owner["train"])
    return data
