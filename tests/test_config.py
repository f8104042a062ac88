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

ROOT = Path(__file__).resolve().parents[1]
PARAM_FILES = [ROOT / "params.yaml", *sorted((ROOT / "configs").glob("paper_*.yaml"))]


@pytest.mark.parametrize("path", PARAM_FILES, ids=lambda p: p.name)
def test_every_section_loads_from_the_shipped_parameter_files(path: Path) -> None:
    params = yaml.safe_load(path.read_text())
    for section in SECTIONS:
        loaded = section.from_params(params)
        assert set(vars(loaded)) == set(params[section.NAME]), section.NAME


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
