"""Typed experiment configuration: dataclasses filled from YAML, overridden by ``key=value`` pairs.

Config flows one way: CLI → :class:`ExperimentConfig` → builders. The resolved config is written next to
every run's outputs so the run can be reproduced.
"""

from lesionlab.config.base import ConfigError, _check
from lesionlab.config.experiment import (
    GLOBAL_POOLS,
    TASKS,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    SplitConfig,
)
from lesionlab.config.io import (
    from_dict,
    load_config,
    load_run_config,
    load_typed_config,
    parse_override,
    read_run_config,
    save_config,
    to_dict,
)
from lesionlab.config.train import (
    MONITORS,
    AugmentationConfig,
    LossConfig,
    MixConfig,
    OptimizerConfig,
    SamplingConfig,
    ScheduleConfig,
    SpeedupConfig,
    StageConfig,
    TrainConfig,
    TrainerConfig,
)

__all__ = [
    "GLOBAL_POOLS", "MONITORS", "TASKS", "AugmentationConfig", "ConfigError", "DataConfig",
    "EvalConfig", "ExperimentConfig", "LossConfig", "MixConfig", "ModelConfig", "OptimizerConfig",
    "SamplingConfig", "ScheduleConfig", "SpeedupConfig", "SplitConfig", "StageConfig", "TrainConfig",
    "TrainerConfig", "_check", "from_dict", "load_config", "load_run_config", "load_typed_config",
    "parse_override", "read_run_config", "save_config", "to_dict",
]
