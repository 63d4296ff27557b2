"""Built-in released models: trained by a committed config, shipped inside the package with their model card."""

from lesionlab.released.registry import (
    DEFAULT_MODEL,
    RELEASED,
    ReleasedModel,
    is_released_ref,
    released_dir,
    resolve_model_ref,
)

__all__ = ["DEFAULT_MODEL", "RELEASED", "ReleasedModel", "is_released_ref", "released_dir", "resolve_model_ref"]
