"""Check setting values against the field types of the real config classes (``trl.SFTConfig``, ``peft.LoraConfig``).

The recipe checks every ``training`` and ``lora`` value when it is built, before any model, tokenizer or data is
loaded, so ``max_steps: ten`` is one clear ``ConfigError`` naming the field, its type and the value, instead of a
``TypeError`` deep inside the Trainer after the model loaded. The types are read from the classes themselves
(``typing.get_type_hints``), so the check follows the installed TRL and PEFT versions. A string for an enum-typed
field (``lr_scheduler_type``, ``eval_strategy``, ``optim``, ...) must be one of the enum's values.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from phi3_lora_hub.errors import ConfigError, closest


@lru_cache(maxsize=8)
def field_types(config_class: type) -> dict[str, Any]:
    """Every init field of the dataclass ``config_class`` with its resolved type annotation."""
    hints = typing.get_type_hints(config_class)
    return {field.name: hints.get(field.name, Any) for field in dataclasses.fields(config_class) if field.init}


def _members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _enum_values(annotation: Any) -> list[str]:
    """The string values of the enums in ``annotation`` (a string value must be one of them)."""
    return [
        str(item.value)
        for member in _members(annotation)
        if isinstance(member, type) and issubclass(member, enum.Enum)
        for item in member
    ]


def _is_choice(value: Any, choice: Any) -> bool:
    """``value`` is the literal ``choice``; a choice written as a pattern (peft's ``'pissa_niter_[number of
    iters]'``) takes any string with its prefix."""
    if isinstance(choice, str) and "[" in choice and isinstance(value, str):
        return value.startswith(choice.split("[", 1)[0])
    return value == choice and type(value) is type(choice)


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def coerce_numbers(values: Mapping[str, Any], config_class: type) -> dict[str, Any]:
    """``values`` with number-like strings turned into numbers for numeric fields of ``config_class``.

    YAML 1.1 reads ``2e-4`` as a string; an ``int`` field gets an ``int`` when the number is whole.
    """
    annotations = field_types(config_class)
    result = dict(values)
    for key, value in values.items():
        members = _members(annotations.get(key))
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()) and (float in members or int in members):
            number = float(value)
            result[key] = int(number) if float not in members and number.is_integer() else number
    return result


def describe(annotation: Any) -> str:
    """A short readable name of a type annotation (``int``, ``float or null``, ``one of 'a', 'b'``)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        enums = _enum_values(annotation)
        names = {describe(m) for m in typing.get_args(annotation) if not (enums and m is str)}
        # A fixed order (typing may hand back an equal union with its members in another order), null last.
        return " or ".join(sorted(names, key=lambda name: (name == "null", name)))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(value) for value in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(repr(str(item.value)) for item in annotation)
    if origin is not None:
        return getattr(origin, "__name__", str(origin))
    return getattr(annotation, "__name__", str(annotation))


def matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` is acceptable for a field annotated ``annotation`` (booleans are not numbers)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        enums = _enum_values(annotation)
        if enums and isinstance(value, str) and not isinstance(value, enum.Enum):
            return value in enums
        return any(matches(value, member) for member in typing.get_args(annotation))
    if origin is typing.Literal:
        return any(_is_choice(value, choice) for choice in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in {item.value for item in annotation}
    if origin in (list, tuple, set, frozenset) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        args = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        if origin is tuple and len(args) > 1:
            return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
        return not args or all(matches(item, args[0]) for item in value)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        return isinstance(value, Mapping)
    if isinstance(annotation, type):
        # A nested config object (e.g. peft's LoftQConfig, accelerate's ParallelismConfig) may also be given as
        # the mapping of its fields, as YAML would give it.
        return isinstance(value, annotation) or (dataclasses.is_dataclass(annotation) and isinstance(value, Mapping))
    return True  # an annotation this check does not understand: let the library judge the value


def _public_name(config_class: type) -> str:
    """``trl.SFTConfig`` when the top package exports the class, else its full dotted name."""
    import importlib

    package = config_class.__module__.split(".")[0]
    if getattr(importlib.import_module(package), config_class.__name__, None) is config_class:
        return f"{package}.{config_class.__name__}"
    return f"{config_class.__module__}.{config_class.__name__}"


def check_values(section: str, values: Mapping[str, Any], config_class: type) -> None:
    """Raise ``ConfigError`` for the first value in ``values`` that does not fit its ``config_class`` field.

    The message names ``section.key`` (``key`` alone when ``section`` is empty), the expected type, the value, and
    for a misspelt choice the closest valid one. Keys that are not fields of ``config_class`` are left to the
    caller's unknown-key check.
    """
    annotations = field_types(config_class)
    for key, value in values.items():
        annotation = annotations.get(key)
        if annotation is None or matches(value, annotation):
            continue
        choices = _enum_values(annotation) or [
            str(choice) for m in _members(annotation) if typing.get_origin(m) is typing.Literal for choice in m.__args__
        ]
        suggestion = closest(str(value), choices) if isinstance(value, str) and choices else None
        did_you_mean = f" Did you mean {suggestion!r}?" if suggestion else ""
        source = _public_name(config_class)
        name = f"{section}.{key}" if section else key
        raise ConfigError(
            f"{name} must be {describe(annotation)} (see {source}), got {value!r} "
            f"({type(value).__name__}).{did_you_mean}"
        )
