"""params.yaml is the only place a setting has a value: sections load strictly, and every field
carries a comment."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from sketchgan.config import SECTIONS, EvaluateSection, SampleSection, VisualiseSection
from sketchgan.errors import SketchganError
from sketchgan.studio.core import StudioSettings
from sketchgan.training.finetune import FinetuneConfig
from sketchgan.training.pretrain import GeneratorPretrainConfig, SketchNetConfig

# the trainers' sections: the same strict reader, declared next to the code that uses them
TRAINER_SECTIONS = (FinetuneConfig, GeneratorPretrainConfig, SketchNetConfig, StudioSettings)

ROOT = Path(__file__).resolve().parents[1]
PARAM_FILES = [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("paper_*.yaml"))]


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_section_loads_from_the_shipped_parameter_files(path: Path) -> None:
    params = yaml.safe_load(path.read_text())
    for section in SECTIONS + TRAINER_SECTIONS:
        loaded = section.from_params(params)
        extra = {"size"} if section is GeneratorPretrainConfig else set()  # from prepare.size
        expected = set(params[section.NAME]) | set(section.RUN_SETTINGS) | extra
        assert set(vars(loaded)) == expected, section.NAME
    assert GeneratorPretrainConfig.from_params(params).size == params["prepare"]["size"]
    assert FinetuneConfig.from_params(params).seed == params["seed"]


def test_a_trainer_config_built_in_code_is_checked_like_one_read_from_params() -> None:
    cfg = FinetuneConfig.from_params(_params())
    with pytest.raises(SketchganError, match=re.escape("'train.batch' must be <= 4 or a multiple")):
        cfg.replace(batch=6)
    with pytest.raises(SketchganError, match=re.escape("'train.lr' must be > 0")):
        cfg.replace(lr=0.0)
    with pytest.raises(SketchganError, match=re.escape("'train.mixing' must be <= 1")):
        cfg.replace(mixing=1.5)
    with pytest.raises(SketchganError, match=re.escape("'train.r1' must be finite")):
        cfg.replace(r1=float("inf"))
    with pytest.raises(SketchganError, match=re.escape("'train.tune' must be 'mapping'")):
        cfg.replace(tune="encoder")
    with pytest.raises(SketchganError, match=re.escape("'seed' is missing")):
        FinetuneConfig.from_params({k: v for k, v in _params().items() if k != "seed"})
    assert FinetuneConfig.from_params(_params(), r1=10).r1 == 10.0  # YAML's 10 for 10.0
    assert isinstance(FinetuneConfig.from_params(_params(), r1=10).r1, float)


def _params() -> dict:
    return copy.deepcopy(yaml.safe_load((ROOT / "params.yaml").read_text()))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p["evaluate"].pop("kid_subset_size"), "'evaluate.kid_subset_size' is missing"),
        (lambda p: p["evaluate"].update(kid_subset=5), "'evaluate.kid_subset' is not a setting"),
        (lambda p: p["evaluate"].update(k=2.5), "'evaluate.k' must be int"),
        (lambda p: p["evaluate"].update(k=True), "'evaluate.k' must be int"),
        (lambda p: p["evaluate"].update(k=0), "'evaluate.k' must be >= 1"),
        (lambda p: p["evaluate"].update(features="vgg"), "'evaluate.features' must be 'auto'"),
        (lambda p: p.pop("evaluate"), "section 'evaluate' is missing"),
    ],
)
def test_bad_values_name_their_field(mutate, message) -> None:
    params = _params()
    mutate(params)
    with pytest.raises(SketchganError, match=re.escape(message)):
        EvaluateSection.from_params(params)


def test_numbers_are_converted_and_nulls_allowed_where_declared() -> None:
    params = _params()
    params["sample"]["truncation"] = 1  # an int where a float is expected
    assert SampleSection.from_params(params).truncation == 1.0
    assert isinstance(SampleSection.from_params(params).truncation, float)
    params["visualise"]["ganspace_samples"] = None
    with pytest.raises(SketchganError, match="'visualise.ganspace_samples' must be int"):
        VisualiseSection.from_params(params)


def test_every_setting_in_params_yaml_has_a_comment() -> None:
    """A leaf without an inline comment is a setting a reader has to guess."""
    missing = []
    for number, line in enumerate((ROOT / "params.yaml").read_text().splitlines(), 1):
        match = re.match(r"^\s*([a-z_0-9]+):\s*(.*)$", line)
        if not match or line.lstrip().startswith("#"):
            continue
        value = match.group(2)
        if not value or value.startswith("#"):  # a section header (comment optional)
            continue
        if "#" not in value:
            missing.append(f"{number}: {line.strip()}")
    assert not missing, "params.yaml settings without a comment:\n" + "\n".join(missing)
