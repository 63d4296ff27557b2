"""Built-in models (packaged by `lesionlab release`): trained by a committed config, shipped inside the package
with their model card."""

from lesionlab.builtin.registry import (
    BUILTIN_MODELS,
    DEFAULT_MODEL,
    BuiltinModel,
    builtin_dir,
    is_builtin_ref,
    resolve_model_ref,
)

__all__ = ["BUILTIN_MODELS", "DEFAULT_MODEL", "BuiltinModel", "builtin_dir", "is_builtin_ref", "resolve_model_ref"]
