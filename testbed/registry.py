"""One registry pattern for every pluggable component (models, datasets, schemes, attacks, filters).

A component is a class with a nested pydantic ``Params`` model. A scenario names it by
``kind`` and gives its parameters beside the kind; :meth:`Registry.parse_spec` validates both
at the edge, so nothing deeper reads raw dicts.
"""

from __future__ import annotations

import importlib
import math
import reprlib
from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

T = TypeVar("T")


class Params(BaseModel):
    """Base of every component's parameters: unknown keys are errors, and numbers are strict
    (a boolean, a string or a fractional float is not a number of a field; ``inf`` and ``nan``
    are refused) so that a typo in a scenario fails validation instead of training on 1 or NaN."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _list_as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


#: Wraps a tuple type of a parameter: YAML writes tuples as lists, which strict validation refuses.
FromList = BeforeValidator(_list_as_tuple)


#: Bounded reprs for messages: a value echoed back may be a huge or deeply nested YAML structure.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxdict, _SHORT.maxlist, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60


def short_repr(value: Any, limit: int = 100) -> str:
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hint(error: dict[str, Any]) -> str:
    """Why a value that looks right was refused, where YAML or a typo is likely to have misled."""
    value = error.get("input")
    numeric = error["type"] in ("int_type", "float_type", "int_parsing", "float_parsing")
    if isinstance(value, bool) and numeric:
        return ": a boolean, not a number"
    if isinstance(value, str) and numeric and _is_number(value):
        if error["type"].startswith("int"):  # 3.0e+2 would be refused next, as a float
            whole = float(value)
            example = f"{int(whole)}" if whole.is_integer() else "300"
            return f": a string; write whole numbers unquoted, in digits, e.g. {example}"
        return ": a string; write numbers unquoted, with a decimal point and a signed exponent, e.g. 1.0e+6"
    if isinstance(value, float) and not math.isfinite(value) and "finite" not in error["msg"]:
        return "; allowed: finite numbers"
    return ""


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def error_message(error: dict[str, Any]) -> str:
    """What is wrong with the value of one pydantic error, the value and what is allowed."""
    message = error["msg"].removeprefix("Value error, ")
    value = short_repr(error.get("input"))
    if error["type"] == "extra_forbidden":
        return f"unknown key (value {value})"
    if error["type"] == "missing":
        return "required key is missing"
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        message = "should be a mapping of keys"
    if error["type"] == "value_error" and isinstance(error.get("input"), (dict, list)):
        return message  # a component's own message, which names its keys and values
    return f"{message} (got {value}{_hint(error)})"


def error_location(loc: tuple) -> str:
    # Union members and dictionary keys appear in locations as tags such as "literal[...]" or
    # "[key]"; keys hold no brackets.
    return ".".join(str(part) for part in loc if not (isinstance(part, str) and "[" in part))


def validation_problems(err: ValidationError) -> list[tuple[str, str]]:
    """``(key path, message)`` for each error of a validation of a whole document."""
    return [(error_location(e["loc"]) or "<top>", error_message(e)) for e in err.errors()]


def describe_error(error: dict[str, Any]) -> str:
    """One pydantic error of a component's parameters as ``key=value: what is allowed``; a check
    of several keys together (a model validator, with no key of its own) as its message and the
    values it saw."""
    key, message = error_location(error["loc"]), error["msg"].removeprefix("Value error, ")
    if not key:
        return f"{message} (got {short_repr(error.get('input'))})"
    if error["type"] in ("extra_forbidden", "missing"):
        return f"{key}: {error_message(error)}"
    hint = _hint(error)
    return f"{key}={short_repr(error.get('input'))}: {message}" + (f" ({hint.lstrip(':; ')})" if hint else "")


class Spec(BaseModel):
    """A validated component choice: the registered ``kind`` and its typed ``params``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    kind: str
    params: Params

    def dump(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params.model_dump(mode="json")}


class Component:
    """Base of every registered class: its typed parameters (a nested ``Params`` subclass) and
    the ``kind`` it is registered as."""

    Params = Params
    kind: str

    def __init__(self, params: Params):
        self.params = params


class Registry(Generic[T]):
    """A name -> class table with clear errors.

    >>> models = Registry("model"); models.register("mlp")(SomeModel)
    """

    def __init__(self, what: str):
        self.what = what
        self._own: dict[str, type[T]] = {}

    @property
    def _entries(self) -> dict[str, type[T]]:
        load_builtins()
        return self._own

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._own:
                raise ValueError(f"{self.what} '{name}' is registered twice")
            if not (isinstance(getattr(cls, "Params", None), type) and issubclass(cls.Params, Params)):
                raise TypeError(f"{self.what} '{name}': {cls.__name__}.Params must subclass testbed.registry.Params")
            cls.kind = name
            self._own[name] = cls
            return cls

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> type[T]:
        """Return the class registered as ``name``; raise ``ValueError`` listing the valid names."""
        try:
            return self._entries[name]
        except KeyError:
            raise ValueError(f"unknown {self.what} '{name}'; allowed: {', '.join(self.names())}") from None

    def parse_spec(self, raw: Any) -> Spec:
        """Validate ``{"kind": name, **params}`` (or a bare name) into a :class:`Spec`.

        Raises ``ValueError`` naming the unknown kind or the offending parameter, its value and
        what is allowed; pydantic prefixes the scenario key path.
        """
        if isinstance(raw, Spec):
            return raw
        if isinstance(raw, str):
            raw = {"kind": raw}
        if not isinstance(raw, dict) or "kind" not in raw:
            raise ValueError(f"expected a mapping with 'kind' (one of: {', '.join(self.names())}), got {short_repr(raw)}")
        fields = dict(raw)
        kind = fields.pop("kind")
        if not isinstance(kind, str):
            raise ValueError(f"kind={short_repr(kind)}: expected the name of a {self.what}, one of: {', '.join(self.names())}")
        cls = self.get(kind)
        try:
            params = cls.Params.model_validate(fields)
        except ValidationError as err:
            problems = "; ".join(describe_error(e) for e in err.errors())
            raise ValueError(f"{self.what} '{kind}': {problems}") from None
        return Spec(kind=kind, params=params)

    def create(self, spec: Spec, *args: Any, **kwargs: Any) -> T:
        """Instantiate the class of ``spec`` with its params (plus any context arguments)."""
        return self.get(spec.kind)(spec.params, *args, **kwargs)


#: The module whose imports register every built-in component: one explicit list, in the plug-in
#: layer. The core never imports it by name at import time (that would point the dependencies
#: upward); the first lookup in any registry imports it, so the schema can validate kinds
#: whichever module a user imports first. A user's own component registers by being imported.
BUILTINS = "testbed.plugins"
_builtins_loaded = False


def load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True  # first: the plug-ins' own imports may look up a registry
        try:
            importlib.import_module(BUILTINS)
        except BaseException:
            _builtins_loaded = False  # a later lookup retries rather than see half the components
            raise


# The registries the plug-ins fill and the scenario schema reads, so neither imports the other.
DATASETS: Registry[Any] = Registry("dataset")
SPLITS: Registry[Any] = Registry("split")
MODELS: Registry[Any] = Registry("model")
ATTACKS: Registry[Any] = Registry("attack")
FILTERS: Registry[Any] = Registry("filter")
SCHEMES: Registry[Any] = Registry("scheme")
PROTOCOLS: Registry[Any] = Registry("protocol")
