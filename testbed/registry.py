"""One registry pattern for every pluggable component (models, datasets, schemes, attacks, filters).

A component is a class with a nested pydantic ``Params`` model. A scenario names it by
``kind`` and gives its parameters beside the kind; :meth:`Registry.parse_spec` validates both
at the edge, so nothing deeper reads raw dicts.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T")


class Params(BaseModel):
    """Base of every component's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Spec(BaseModel):
    """A validated component choice: the registered ``kind`` and its typed ``params``."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    kind: str
    params: Params

    def dump(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.params.model_dump(mode="json")}


class Registry(Generic[T]):
    """A name -> class table with clear errors.

    >>> models = Registry("model"); models.register("mlp")(SomeModel)
    """

    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def add(cls: type[T]) -> type[T]:
            if name in self._entries:
                raise ValueError(f"{self.what} '{name}' is registered twice")
            if not (isinstance(getattr(cls, "Params", None), type) and issubclass(cls.Params, Params)):
                raise TypeError(f"{self.what} '{name}': {cls.__name__}.Params must subclass testbed.registry.Params")
            cls.kind = name
            self._entries[name] = cls
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
            raise ValueError(f"expected a mapping with 'kind' (one of: {', '.join(self.names())}), got {raw!r}")
        fields = dict(raw)
        kind = fields.pop("kind")
        cls = self.get(kind)
        try:
            params = cls.Params.model_validate(fields)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}" for e in err.errors()
            )
            raise ValueError(f"{self.what} '{kind}': {problems}") from None
        return Spec(kind=kind, params=params)

    def create(self, spec: Spec, *args: Any, **kwargs: Any) -> T:
        """Instantiate the class of ``spec`` with its params (plus any context arguments)."""
        return self.get(spec.kind)(spec.params, *args, **kwargs)
