"""Built-in released models: trained by a committed config, shipped inside the package with their model card."""

from lesionlab.builtin.registry import (
    DEFAULT_MODEL,
    BUILTIN_MODELS,
    BuiltinModel,
    is_builtin_ref,
    builtin_dir,
    resolve_model_ref,
)

__all__ = ["DEFAULT_MODEL", "BUILTIN_MODELS", "BuiltinModel", "is_builtin_ref", "builtin_dir", "resolve_model_ref"]
