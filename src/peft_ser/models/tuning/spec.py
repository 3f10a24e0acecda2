"""What a PEFT method is: its names, the pydantic model of its options, and the function that
applies it, as each of ``peft``'s tuners pairs a config class with a model class.

This module and the method modules' tops import neither torch nor peft: the names and options
of every method load with pydantic alone (to validate a config, list the methods, answer
``--help``), and a method's function imports what it needs when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import ValidationError

from peft_ser.utils.errors import UserError
from peft_ser.utils.settings import ConfigError, StrictModel

if TYPE_CHECKING:
    from peft_ser.models.backbones import Backbone


class NoOptions(StrictModel):
    """The options of a method that has none (``frozen``, ``full``)."""


Options = TypeVar("Options", bound=StrictModel)


@dataclass(frozen=True)
class MethodSpec(Generic[Options]):
    """A PEFT method.

    ``names``: the name configs store first, then aliases (``frozen``, ``finetune``).
    ``options``: the model of its settings; every field needs a default, since a config that
    names the method without a setting gets it (a field that must be given refuses its default
    in a validator with ``validate_default=True``, as ``peft_config`` does).
    ``apply``: adds the method's trainable parameters to a frozen backbone, or unfreezes what it
    trains, given the validated options; only in the backbone's ``tuned_layers``.
    ``by_layer``: whether it adapts layers, so ``model.tune_layers`` can choose which (not
    ``frozen``, which adapts none).
    """

    names: tuple[str, ...]
    options: type[Options]
    apply: Callable[[Backbone, Options], None]
    by_layer: bool = True

    @property
    def name(self) -> str:
        return self.names[0]

    def check_option(self, key: str, value: Any) -> Any:
        """``value`` of option ``key`` as the options model validates it alone, or a
        `ConfigError` with the model's one-line reason."""
        options = self.options.model_construct()
        try:
            setattr(options, key, value)  # StrictModel validates on assignment
        except ValidationError as error:
            problem = error.errors()[0]
            cause = problem.get("ctx", {}).get("error")
            reason = str(cause) if isinstance(cause, UserError) else problem["msg"]
            raise ConfigError(reason) from None
        return getattr(options, key)

    def describe_options(self) -> str:
        """``its options: a, b`` or ``it has no options``, for messages."""
        keys = list(self.options.model_fields)
        return f"its options: {', '.join(keys)}" if keys else "it has no options"
