"""The stage-level sections of params.yaml as typed, frozen dataclasses, read strictly.

``params.yaml`` is the only place a setting has a value: these classes have no defaults, so a
missing field, an unknown one (a typo) or a value of the wrong type is one line naming
``section.field`` before a stage starts, instead of a silent second default in the code. The
trainers' sections (``pretrain``, ``pretrain_sketch``, ``train``, ``studio``) are subclasses of
the same ``Section``, declared next to the code that uses them.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

from sketchgan.errors import SketchganError

S = TypeVar("S", bound="Section")


def _type_name(kind: Any) -> str:
    if kind is type(None):
        return "null"
    if typing.get_origin(kind) is Literal:
        return " | ".join(repr(v) for v in typing.get_args(kind))
    return getattr(kind, "__name__", str(kind))


def _matches(value: Any, kind: Any) -> bool:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, k) for k in typing.get_args(kind))
    if origin is Literal:
        return value in typing.get_args(kind)
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _expected(kind: Any) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(k) for k in typing.get_args(kind))
    return _type_name(kind)


@dataclasses.dataclass(frozen=True)
class Section:
    """One section of params.yaml; a subclass names it in ``NAME``.

    Bounds are declared, not coded: ``MINIMUM`` (field -> smallest allowed value), ``ABOVE``
    (field -> exclusive lower bound), ``MAXIMUM``; cross-field rules go in ``check``.
    ``RUN_SETTINGS`` are fields a trainer takes from the top level of params.yaml (``seed``,
    ``device``), so one value drives every stage; ``RESUME_FREE`` are a trainer's fields that
    may change between a run and its resumption (its length, logging, device). Values are
    checked however the object is built (from params or by a caller), and every error is one
    line naming ``section.field``.
    """

    NAME: ClassVar[str] = ""
    MINIMUM: ClassVar[Mapping[str, float]] = {}
    ABOVE: ClassVar[Mapping[str, float]] = {}
    MAXIMUM: ClassVar[Mapping[str, float]] = {}
    RUN_SETTINGS: ClassVar[tuple[str, ...]] = ()
    RESUME_FREE: ClassVar[tuple[str, ...]] = ()  # may change when a run resumes (trainers)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        names = []
        for field in dataclasses.fields(self):
            names.append(field.name)
            self._check_value(field.name, getattr(self, field.name), hints[field.name])
        if "device" in names:  # every trainer's: what ``runtime.pick_device`` understands
            _check_device(self, "device")
        self.check()

    def _check_value(self, name: str, value: Any, kind: Any) -> None:
        if not _matches(value, kind):
            raise self.fail(name, f"must be {_expected(kind)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(name, f"must be finite, got {value!r}")
        if value is None or isinstance(value, bool | str):
            return
        low, above, high = self.MINIMUM.get(name), self.ABOVE.get(name), self.MAXIMUM.get(name)
        if low is not None and value < low:
            raise self.fail(name, f"must be >= {low}, got {value!r}")
        if above is not None and value <= above:
            raise self.fail(name, f"must be > {above}, got {value!r}")
        if high is not None and value > high:
            raise self.fail(name, f"must be <= {high}, got {value!r}")

    def check(self) -> None:
        """Rules that involve more than one field or more than a type and a bound."""

    @classmethod
    def fail(cls, name: str, message: str) -> SketchganError:
        return SketchganError(f"params: '{cls.NAME}.{name}' {message}")

    @classmethod
    def from_dict(cls: type[S], raw: Mapping[str, Any], **overrides: Any) -> S:
        """Build from a section's mapping (+ ``overrides``); a missing or unknown field (a
        typo) is an error: params.yaml holds every setting."""
        if not isinstance(raw, Mapping):
            raise SketchganError(f"params: section '{cls.NAME}' is missing or not a mapping")
        raw = {**raw, **overrides}
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names), key=str)
        if unknown:
            raise cls.fail(str(unknown[0]), f"is not a setting (known: {', '.join(names)})")
        missing = [name for name in names if name not in raw]
        if missing:
            raise cls.fail(missing[0], "is missing (params.yaml holds every setting)")
        values = {name: _as_declared(raw[name], hints[name]) for name in names}
        return cls(**values)

    @classmethod
    def from_params(cls: type[S], params: Mapping[str, Any], **overrides: Any) -> S:
        """The section ``NAME`` of a params.yaml dict, with its ``RUN_SETTINGS`` from the top
        level; ``overrides`` replace fields (a caller's deliberate change, e.g. a test's)."""
        raw = params.get(cls.NAME)
        if not isinstance(raw, Mapping):
            raise SketchganError(f"params: section '{cls.NAME}' is missing or not a mapping")
        for name in cls.RUN_SETTINGS:
            if name not in params:
                raise SketchganError(f"params: '{name}' is missing (params.yaml holds it)")
        run = {name: params[name] for name in cls.RUN_SETTINGS}
        return cls.from_dict({**raw, **run}, **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share with the run it continues."""
        return {k: v for k, v in self.to_dict().items() if k not in self.RESUME_FREE}

    def replace(self: S, **changes: Any) -> S:
        """A copy with some fields changed, checked like a new one."""
        return dataclasses.replace(self, **changes)


def _check_device(section: Section, name: str) -> None:
    """auto | cpu | cuda | cuda:N (what ``runtime.pick_device`` understands)."""
    value = getattr(section, name)
    if not (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")):
        raise section.fail(name, f"must be auto, cpu or cuda[:N], got {value!r}")


def _as_declared(value: Any, kind: Any) -> Any:
    """YAML writes 10 for 10.0: an int where a float is declared becomes that float."""
    floats = kind is float or (
        typing.get_origin(kind) in (typing.Union, types.UnionType)
        and float in typing.get_args(kind)
        and int not in typing.get_args(kind)
    )
    if floats and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@dataclasses.dataclass(frozen=True)
class CheckpointsSection(Section):
    NAME: ClassVar[str] = "checkpoints"
    source: Literal["registry", "train"]
    cache_dir: str
    generator: str | None
    photosketch: str | None
    evaluator: str | None
    discriminator: str | None


@dataclasses.dataclass(frozen=True)
class EvaluatorSection(Section):
    NAME: ClassVar[str] = "evaluator"
    MINIMUM: ClassVar[Mapping[str, float]] = {
        "n_train": 1,
        "iters": 1,
        "batch": 2,
        "width": 1,
        "n_val": 1,
    }
    ABOVE: ClassVar[Mapping[str, float]] = {"lr": 0}
    n_train: int
    iters: int
    batch: int
    width: int
    lr: float
    n_val: int


@dataclasses.dataclass(frozen=True)
class PhotosketchSection(Section):
    NAME: ClassVar[str] = "photosketch"
    MINIMUM: ClassVar[Mapping[str, float]] = {"pool_size": 1, "batch": 2}
    pool_size: int
    batch: int
    mode: Literal["eval", "train"]
    user_photos: str | None


@dataclasses.dataclass(frozen=True)
class SampleSection(Section):
    NAME: ClassVar[str] = "sample"
    MINIMUM: ClassVar[Mapping[str, float]] = {"n": 1, "batch": 1, "truncation": 0}
    n: int
    batch: int
    truncation: float


@dataclasses.dataclass(frozen=True)
class VisualiseSection(Section):
    NAME: ClassVar[str] = "visualise"
    MINIMUM: ClassVar[Mapping[str, float]] = {
        "truncation": 0,
        "grid_n": 1,
        "interp_steps": 2,
        "ganspace_samples": 2,
    }
    truncation: float
    grid_n: int
    interp_steps: int
    ganspace_samples: int


@dataclasses.dataclass(frozen=True)
class BaselinesSection(Section):
    NAME: ClassVar[str] = "baselines"
    MINIMUM: ClassVar[Mapping[str, float]] = {
        "top_n": 1,
        "sbir_iters": 1,
        "sbir_batch": 2,
        "sbir_margin": 0,
        "sbir_width": 1,
        "sbir_dim": 1,
    }
    ABOVE: ClassVar[Mapping[str, float]] = {"sbir_lr": 0}
    top_n: int
    chamfer_reduce: Literal["min", "mean"]
    sbir_iters: int
    sbir_batch: int
    sbir_lr: float
    sbir_margin: float
    sbir_width: int
    sbir_dim: int


@dataclasses.dataclass(frozen=True)
class EvaluateSection(Section):
    NAME: ClassVar[str] = "evaluate"
    MINIMUM: ClassVar[Mapping[str, float]] = {"k": 1, "kid_subset_size": 2, "match_tol": 0}
    features: Literal["auto", "inception", "evaluator"]
    k: int
    kid_subset_size: int
    match_tol: float


SECTIONS: tuple[type[Section], ...] = (
    CheckpointsSection,
    EvaluatorSection,
    PhotosketchSection,
    SampleSection,
    VisualiseSection,
    BaselinesSection,
    EvaluateSection,
)
