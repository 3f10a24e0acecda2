"""The run configuration: every option has a type, a default and a clear error when it is wrong.

`schema` gathers the sections (`RunConfig`: the model's `ModelConfig`, the data's `DataConfig`
and `AugmentConfig`, the optimiser's `OptimConfig`); `files` reads YAML files and command-line
overrides into them, with one-line errors naming the file, the key and the problem. The bounds
and the error wording are shared with every layer's own settings (`peft_ser.utils.settings`).
"""

from peft_ser.config.files import (
    CLI_ALIASES,
    load_run_config,
    read_config_file,
    set_dotted,
    with_defaults,
)
from peft_ser.config.schema import (
    MAX_LR,
    MIN_CLIP_SECONDS,
    AugmentConfig,
    DataConfig,
    FoldSelector,
    ModelConfig,
    OptimConfig,
    RunConfig,
)
from peft_ser.utils.settings import (
    MAX_DEPTH,
    MAX_SIZE,
    MAX_VALUES,
    TOO_DEEP,
    ConfigError,
    StrictModel,
    document_problem,
    format_validation_error,
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
    "with_defaults",
]
