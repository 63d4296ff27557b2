"""Typed configs: override parsing, validation messages that name the key, and the YAML round trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lesionlab.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    SplitConfig,
    TrainConfig,
    load_config,
    load_run_config,
    load_typed_config,
    parse_override,
    save_config,
    to_dict,
)


def get(cfg: ExperimentConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


@pytest.mark.parametrize(("text", "keys", "value"), [
    ("train.epochs=5", ["train", "epochs"], 5),
    ("train.optimizer.lr=0.5", ["train", "optimizer", "lr"], 0.5),
    ("data.skip_bad=true", ["data", "skip_bad"], True),
    ("data.skip_bad=False", ["data", "skip_bad"], False),
    ("data.max_samples=null", ["data", "max_samples"], None),
    ("data.max_samples=", ["data", "max_samples"], None),
    ("eval.topk=1,5", ["eval", "topk"], [1, 5]),
    ("eval.topk=[2, 3]", ["eval", "topk"], [2, 3]),
    ("data.crop=pad", ["data", "crop"], "pad"),
    ("data.options.taxonomy=ham7", ["data", "options", "taxonomy"], "ham7"),
    ("name='a,b'", ["name"], "a,b"),  # quoted: the comma is not a list separator
    (" train.seed = 3", ["train", "seed"], 3),
    ("data.csv=/x/y=z.csv", ["data", "csv"], "/x/y=z.csv"),  # only the first '=' separates
])
def test_parse_override(text: str, keys: list[str], value: Any) -> None:
    assert parse_override(text) == (keys, value)


# (overrides, dotted key, expected value, expected type)
RESOLVED = [
    (["train.epochs=5"], "train.epochs", 5, int),
    (["train.optimizer.lr=0.5"], "train.optimizer.lr", 0.5, float),
    (["train.optimizer.lr=2"], "train.optimizer.lr", 2.0, float),  # an int where a float is expected is widened
    (["train.optimizer.lr=1e-3"], "train.optimizer.lr", 1e-3, float),  # YAML 1.1 reads this as a string
    (["train.optimizer.lr=3.0e-4"], "train.optimizer.lr", 3e-4, float),
    (["data.skip_bad=true"], "data.skip_bad", True, bool),
    (["data.max_samples=null"], "data.max_samples", None, type(None)),
    (["data.max_samples=200"], "data.max_samples", 200, int),
    (["eval.topk=1,5"], "eval.topk", (1, 5), tuple),
    (["eval.topk=[1, 5]"], "eval.topk", (1, 5), tuple),
    (["eval.topk=4"], "eval.topk", (4,), tuple),
    (["data.split.val=0.2", "data.split.test=0.1"], "data.split.val", 0.2, float),
    (["data.split.seed=4"], "data.split.seed", 4, int),
    (["model.weights=/tmp/w.pt"], "model.weights", "/tmp/w.pt", str),
    (["data.options.isic_ground_truth=gt.csv"], "data.options", {"isic_ground_truth": "gt.csv"}, dict),
    (["train.epochs=5", "train.epochs=7"], "train.epochs", 7, int),  # the last override wins
]


@pytest.mark.parametrize(("overrides", "key", "value", "kind"), RESOLVED)
def test_overrides_resolve_to_typed_values(overrides: list[str], key: str, value: Any, kind: type) -> None:
    got = get(load_config(overrides=overrides), key)
    assert got == value
    assert type(got) is kind


@pytest.mark.parametrize(("overrides", "match"), [
    (["train.epochs=0"], "train.epochs must be at least 1"),
    (["train.epochs=abc"], "train.epochs must be an integer"),
    (["train.epochs=2.5"], "train.epochs must be an integer"),
    (["train.epochs=true"], "train.epochs must be an integer"),
    (["train.epochs=null"], "train.epochs may not be null"),
    (["train.batch_size=0"], "train.batch_size"),
    (["train.optimizer.lr=0"], "train.optimizer.lr must be positive"),
    (["train.optimizer.lr=fast"], "train.optimizer.lr must be a number"),
    (["train.optimizer.lr=nan"], "train.optimizer.lr must be positive"),
    (["train.loss.label_smoothing=1"], "train.loss.label_smoothing"),
    (["train.monitor=foo"], "train.monitor"),
    (["data.image_size=2"], "data.image_size must be between 8 and 1024, got 2"),
    (["data.image_size=4096"], "data.image_size"),
    (["data.skip_bad=maybe"], "data.skip_bad must be true or false"),
    (["data.max_samples=0"], "data.max_samples"),
    (["data.split.val=0.9", "data.split.test=0.2"], r"split\.val \+ split\.test"),
    (["data.split.val=1.5"], "split.val"),
    (["data.split.test=-0.1"], "split.test"),
    (["data.split.folds=1"], "split.folds"),
    (["model.drop_rate=1.5"], "model.drop_rate"),
    (["model.pretrained=yes please"], "model.pretrained must be true or false"),
    (["data=5"], "data must be a mapping"),
    (["data.options=3"], "data.options must be a mapping"),
    (["train.epochs"], "key=value"),
    (["=5"], "empty key"),
])
def test_bad_values_name_the_key(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(overrides=overrides)


@pytest.mark.parametrize(("override", "section", "unknown", "some_valid"), [
    ("train.foo=1", "train", "foo", ["epochs", "optimizer", "monitor"]),
    ("train.optimizer.foo=1", "train.optimizer", "foo", ["name", "lr", "weight_decay"]),
    ("epochs=3", "ExperimentConfig", "epochs", ["data", "model", "train"]),
    ("data.split.bar=1", "data.split", "bar", ["val", "test", "seed", "folds"]),
    ("model.backbon=resnet18", "model", "backbon", ["backbone", "head"]),
])
def test_unknown_keys_list_valid_ones(override: str, section: str, unknown: str, some_valid: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    msg = str(info.value)
    assert f"['{unknown}']" in msg and f"in {section};" in msg
    assert all(f"'{v}'" in msg for v in some_valid)


@pytest.mark.parametrize(("cls", "kwargs"), [
    (TrainConfig, {"epochs": 0}), (DataConfig, {"image_size": 7}), (SplitConfig, {"val": 0.5, "test": 0.5}),
])
def test_dataclasses_validate_on_construction(cls: type, kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        cls(**kwargs)


ROUND_TRIP_OVERRIDES = [
    [],
    ["name=exp1", "train.optimizer.lr=1e-3", "eval.topk=1,5", "data.options.isic_ground_truth=/gt.csv",
     "data.max_samples=50",
     "data.split.val=0.2", "model.weights=/w.pt", "train.max_time_minutes=1.5", "data.taxonomy=triage"],
]


@pytest.mark.parametrize("overrides", ROUND_TRIP_OVERRIDES)
def test_yaml_round_trip(tmp_path: Path, overrides: list[str]) -> None:
    cfg = load_config(overrides=overrides)
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert yaml.safe_load(path.read_text()) == to_dict(cfg)  # plain YAML, no Python tags
    again = load_config(path)
    assert again == cfg
    assert isinstance(again.eval.topk, tuple)


def test_yaml_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("name: from-file\ntrain:\n  epochs: 4\n  optimizer: {lr: 1e-3}\ndata:\n  image_size: 32\n")
    cfg = load_config(path, overrides=["train.epochs=6"])
    assert (cfg.name, cfg.train.epochs, cfg.train.optimizer.lr, cfg.data.image_size) == ("from-file", 6, 1e-3, 32)
    assert cfg.model == ExperimentConfig().model  # untouched sections keep their defaults


@pytest.mark.parametrize(("content", "match"), [
    ("- a\n- b\n", "YAML mapping"),
    ("train:\n  epochs: -1\n", "train.epochs"),
    ("trian:\n  epochs: 3\n", r"\['trian'\]"),
])
def test_bad_yaml_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_empty_yaml_is_defaults(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path) == ExperimentConfig()


def test_comma_separated_string_field() -> None:
    assert load_config(overrides=["train.trainer.devices=0,1"]).train.trainer.devices == "0,1"


# ---- keys that do not exist get the normal error: unknown key, the closest valid one, the valid ones

@pytest.mark.parametrize(("overrides", "message"), [
    (["train.epoch=3"], r"^Unknown config key\(s\) \['epoch'\] in train; did you mean train\.epochs\? valid: "),
    (["train.scheduler=cosine"], r"^Unknown config key\(s\) \['scheduler'\] in train; did you mean train\.schedule\? "),
    (["train.lr=1e-3"], r"^Unknown config key\(s\) \['lr'\] in train; valid: \[.*'optimizer'"),
    (["train.optimizer=sgd"], r"^train\.optimizer must be a mapping$"),
])
def test_unknown_train_key_says_what_is_valid(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_unknown_key_in_a_nested_config_names_its_place(tmp_path: Path) -> None:
    path = tmp_path / "nested.yaml"
    path.write_text("experiment:\n  train:\n    epoch: 3\n")
    from lesionlab.config.pretraining import ComparePretrainingConfig

    with pytest.raises(ConfigError, match=r"in experiment\.train; did you mean experiment\.train\.epochs\?"):
        load_typed_config(ComparePretrainingConfig, path)


def test_saved_run_config_loads_with_overrides(tmp_path: Path) -> None:
    cfg = load_config(overrides=["train.epochs=2", "train.optimizer.lr=0.05"])
    path = tmp_path / "config.yaml"
    save_config(cfg, path)
    assert load_run_config(path) == cfg
    assert load_run_config(path, overrides=["train.epochs=3"]).train.epochs == 3
