"""The stage-level sections of params.yaml as typed, frozen dataclasses, read strictly.

``params.yaml`` is the only place a setting has a value: these classes have no defaults, so a
missing field, an unknown one (a typo) or a value of the wrong type is one line naming
``section.field`` before a stage starts, instead of a silent second default in the code. The
trainers' own sections (``pretrain``, ``pretrain_sketch``, ``train``, ``studio``) are read the same
way by their config classes next to the code that uses them.
"""

from __future__ import annotations

import dataclasses
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
    """One section of params.yaml; subclasses name it in ``NAME`` and bound numbers in
    ``MINIMUM`` (field -> smallest allowed value)."""

    NAME: ClassVar[str] = ""
    MINIMUM: ClassVar[Mapping[str, float]] = {}

    @classmethod
    def from_params(cls: type[S], params: Mapping[str, Any]) -> S:
        raw = params.get(cls.NAME)
        if not isinstance(raw, Mapping):
            raise SketchganError(f"params: section '{cls.NAME}' is missing or not a mapping")
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(names))
        if unknown:
            raise SketchganError(
                f"params: '{cls.NAME}.{unknown[0]}' is not a setting (known: {', '.join(names)})"
            )
        values = {}
        for name in names:
            where = f"{cls.NAME}.{name}"
            if name not in raw:
                raise SketchganError(
                    f"params: '{where}' is missing (params.yaml holds every setting)"
                )
            value, kind = raw[name], hints[name]
            if not _matches(value, kind):
                raise SketchganError(f"params: '{where}' must be {_expected(kind)}, got {value!r}")
            low = cls.MINIMUM.get(name)
            if low is not None and value is not None and value < low:
                raise SketchganError(f"params: '{where}' must be >= {low}, got {value!r}")
            values[name] = float(value) if kind is float else value
        return cls(**values)


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
    MINIMUM: ClassVar[Mapping[str, float]] = {"n_train": 1, "iters": 1, "batch": 1, "width": 1}
    n_train: int
    iters: int
    batch: int
    width: int


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
    MINIMUM: ClassVar[Mapping[str, float]] = {"top_n": 1, "sbir_iters": 1, "sbir_batch": 2}
    top_n: int
    chamfer_reduce: Literal["min", "mean"]
    sbir_iters: int
    sbir_batch: int


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
