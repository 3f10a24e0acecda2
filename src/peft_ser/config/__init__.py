"""Typed configuration: every option has a type, a default and a clear error when it is wrong.

`schema` holds the pydantic models (`RunConfig` and its sections) and the bounds they enforce;
`files` reads YAML files and command-line overrides into them, with one-line errors naming the
file, the key and the problem.
"""

from peft_ser.config.files import (
    CLI_ALIASES,
    TOO_DEEP,
    document_problem,
    format_validation_error,
    load_run_config,
    read_config_file,
    set_dotted,
)
from peft_ser.config.schema import (
    MAX_DEPTH,
    MAX_LR,
    MAX_SIZE,
    MAX_VALUES,
    MIN_CLIP_SECONDS,
    AugmentConfig,
    ConfigError,
    DataConfig,
    FoldSelector,
    ModelConfig,
    OptimConfig,
    RunConfig,
    StrictModel,
)

__all__ = [
    "CLI_ALIASES",
    "MAX_DEPTH",
    "MAX_LR",
    "MAX_SIZE",
    "MAX_VALUES",
    "MIN_CLIP_SECONDS",
    "TOO_DEEP",
    "AugmentConfig",
    "ConfigError",
    "DataConfig",
    "FoldSelector",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "StrictModel",
    "document_problem",
    "format_validation_error",
    "load_run_config",
    "read_config_file",
    "set_dotted",
]
