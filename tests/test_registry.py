"""Registries: lookup, helpful unknown-name errors, and the real registries' contents."""

from __future__ import annotations

import pytest

from lesionlab.data.crops import CROPS
from lesionlab.data.datasets import DATASETS
from lesionlab.data.taxonomy import TAXONOMIES
from lesionlab.models.backbones import BACKBONES
from lesionlab.models.heads import HEADS
from lesionlab.registry import Registry, UnknownNameError
from lesionlab.training.losses import CLASS_WEIGHTS, LOSSES
from lesionlab.training.optim import OPTIMIZERS, SCHEDULERS


@pytest.fixture
def widgets() -> Registry[int]:
    reg: Registry[int] = Registry("widget")
    reg.add("resnet18", 18, help="eighteen")
    reg.add("resnet50", 50)

    @reg.register("ConvNeXt", help="mixed case")
    def convnext() -> int:
        """A documented builder."""
        return 1

    return reg


@pytest.mark.parametrize(("name", "value"), [("resnet18", 18), ("RESNET50", 50), ("convnext", None)])
def test_get_is_case_insensitive(widgets: Registry, name: str, value: int | None) -> None:
    got = widgets.get(name)
    assert got == value if value is not None else got() == 1
    assert name in widgets


@pytest.mark.parametrize(("name", "suggestion"), [
    ("resnet19", "resnet18"), ("resnet5", "resnet50"), ("convnxt", "convnext"), ("vit", None),
])
def test_unknown_name_lists_and_suggests(widgets: Registry, name: str, suggestion: str | None) -> None:
    with pytest.raises(UnknownNameError) as info:
        widgets.get(name)
    msg = str(info.value)
    assert msg.startswith(f"Unknown widget {name!r}.")
    assert msg.endswith("Valid widgets: convnext, resnet18, resnet50.")
    if suggestion:
        assert f"Did you mean {suggestion!r}?" in msg
    else:
        assert "Did you mean" not in msg
    assert isinstance(info.value, KeyError)


def test_registry_bookkeeping(widgets: Registry) -> None:
    assert widgets.names() == ["convnext", "resnet18", "resnet50"] == list(widgets)
    assert len(widgets) == 3
    assert widgets.describe("resnet18") == "eighteen"
    assert widgets.describe("convnext") == "mixed case"
    assert widgets.describe("resnet50") == ""
    assert 5 not in widgets
    with pytest.raises(ValueError, match="already registered"):
        widgets.add("ResNet18", 0)


def test_help_defaults_to_docstring() -> None:
    reg: Registry = Registry("thing")

    @reg.register("f")
    def f() -> None:
        """First line.

        More detail.
        """

    assert reg.describe("f") == "First line."


@pytest.mark.parametrize(("registry", "expected"), [
    (BACKBONES, {"resnet10t", "tiny-resnet", "tiny-convnext", "tiny-efficientnet", "efficientnet-b0"}),
    (HEADS, {"linear"}),
    (CROPS, {"full", "center-square", "pad"}),
    (DATASETS, {"ham10000", "isic2019", "csv", "onehot-csv", "folder"}),
    (TAXONOMIES, {"ham7", "isic8", "triage"}),
    (LOSSES, {"ce"}),
    (CLASS_WEIGHTS, {"none", "inverse"}),
    (OPTIMIZERS, {"adamw", "adam", "sgd"}),
    (SCHEDULERS, {"cosine", "onecycle", "constant"}),
])
def test_real_registries(registry: Registry, expected: set[str]) -> None:
    assert expected <= set(registry.names())


@pytest.mark.parametrize(("registry", "typo", "closest"), [
    (BACKBONES, "tiny-resnett", "tiny-resnet"),
    (DATASETS, "ham1000", "ham10000"),
    (SCHEDULERS, "cosin", "cosine"),
    (CROPS, "centre-square", "center-square"),
])
def test_real_registries_suggest(registry: Registry, typo: str, closest: str) -> None:
    with pytest.raises(UnknownNameError, match=f"Did you mean {closest!r}"):
        registry.get(typo)


def test_instances_do_not_borrow_their_type_docstring() -> None:
    """A registered instance without help (e.g. a BackboneSpec with no note) has no help, not its class's signature."""
    assert BACKBONES.describe("resnet18") == ""
    assert BACKBONES.describe("resnet10t").startswith("small ResNet-D")


@pytest.mark.parametrize(("kind", "expected"), [
    ("loss", "losses"), ("reconstruction loss", "reconstruction losses"), ("TTA policy", "TTA policies"),
    ("taxonomy", "taxonomies"), ("offline weights", "offline weights"), ("sampler", "samplers"),
    ("heat-map method", "heat-map methods"), ("unfreeze level", "unfreeze levels"),
])
def test_error_message_plurals(kind: str, expected: str) -> None:
    reg: Registry[int] = Registry(kind)
    reg.add("a", 1)
    with pytest.raises(UnknownNameError, match=f"Valid {expected}: a."):
        reg.get("zzz")


def test_losses_error_is_spelled_right() -> None:
    with pytest.raises(UnknownNameError, match="Valid losses: ") as err:
        LOSSES.get("hinge")
    assert "losss" not in str(err.value)
