"""Fixtures for the pretraining tests: overrides selecting the small real-image dataset (``small_ham_csv`` in
tests/conftest.py) and one VAE run per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def small_data_overrides(small_ham_csv: Path, tmp_path: Path) -> list[str]:
    """``key=value`` overrides selecting the small CSV dataset at 32 px (cache in ``tmp_path``)."""
    return ["data.dataset=csv", f"data.csv={small_ham_csv}", "data.image_size=32", f"data.cache_dir={tmp_path}/cache"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one intra-op thread is as fast and avoids oversubscribing a busy CI machine."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="session")
def vae_run(small_ham_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch tiny-ConvNeXt VAE run on the small dataset (triage labels, so its split matches a triage
    comparison on the same data and seed)."""
    import torch

    from lesionlab.cli import main

    out = tmp_path_factory.mktemp("vae_runs")
    cache = tmp_path_factory.mktemp("vae_cache")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = main(["-q", "pretrain", "vae", "--output-dir", str(out), "--config", str(CONFIGS / "vae-pretrain.yaml"),
                     "name=t",
                     "data.dataset=csv", f"data.csv={small_ham_csv}", "data.image_size=32", f"data.cache_dir={cache}",
                     "data.taxonomy=triage", "vae.encoder=tiny-convnext", "vae.latent_dim=8", "vae.warmup_epochs=1",
                     "vae.grid_images=4", "train.epochs=2", "train.batch_size=16", "train.progress=false"])
    finally:
        torch.set_num_threads(old)
    assert code == 0
    (run,) = list(out.iterdir())
    return run
