"""The docs against the code: docs/config.md names every config key the code accepts.

The key lists come from the code (SearchSpec's fields, the predictor/gradient keys, the
cost and resources dataclasses, each registered evaluator's options and the data and recipe
dataclasses), so a key added there without a line in the reference fails here.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path

import pytest

from prednas.evaluators.registry import evaluator_entry, evaluator_names
from prednas.pipeline.config import GRADIENT_KEYS, PREDICTOR_KEYS, CostTarget, Resources, SearchSpec

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DOC = ROOT / "docs" / "config.md"
README_LIMIT = 250


def _sections(text: str) -> dict[str, str]:
    """Markdown sections by heading (any level), each with its text up to the next heading."""
    parts = re.split(r"^#+ (.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _named(text: str) -> set[str]:
    """Every `code` span in the text."""
    return set(re.findall(r"`([^`\n]+)`", text))


def search_keys() -> list[str]:
    """Every key a search config accepts outside the evaluator configs, dotted."""
    keys = [f.name for f in fields(SearchSpec)]
    keys += [f"predictor.{k}" for k in PREDICTOR_KEYS] + [f"gradient.{k}" for k in GRADIENT_KEYS]
    keys += [f"cost.{f.name}" for f in fields(CostTarget)] + [f"resources.{f.name}" for f in fields(Resources)]
    return keys


def evaluator_keys(name: str) -> list[str]:
    """The options a registered evaluator accepts (as ``evaluator_options`` computes them)."""
    entry = evaluator_entry(name)
    parameters = inspect.signature(entry.factory()).parameters
    return [p for p, spec in parameters.items() if spec.kind in (spec.KEYWORD_ONLY, spec.POSITIONAL_OR_KEYWORD)
            and (not entry.options or p in entry.options)]


def nested_keys() -> dict[str, list[str]]:
    """Data and recipe keys by the section of docs/config.md that lists them."""
    from prednas.train.classification import ClassificationRecipe
    from prednas.train.coco import CocoSpec
    from prednas.train.data import DataSpec
    from prednas.train.detection import DetectionRecipe

    return {"Classification data": [f.name for f in fields(DataSpec)],
            "Detection data": [f.name for f in fields(CocoSpec)] + ["root"],
            "Classification recipe": [f.name for f in fields(ClassificationRecipe)],
            "Detection recipe": [f.name for f in fields(DetectionRecipe)]}


def test_config_doc_names_every_search_key():
    named = _named(CONFIG_DOC.read_text())
    missing = [key for key in search_keys() if key not in named]
    assert not missing, f"docs/config.md does not name: {', '.join(missing)}"


@pytest.mark.parametrize("name", evaluator_names())
def test_config_doc_names_every_evaluator_option(name):
    sections = _sections(CONFIG_DOC.read_text())
    assert name in sections, f"docs/config.md has no section for evaluator {name!r}"
    # detection shares classification's table and names its options in the prose
    named = _named(sections[name]) | (_named(sections["classification"]) if name == "detection" else set())
    missing = [key for key in evaluator_keys(name) if key not in named]
    assert not missing, f"docs/config.md, evaluator {name}, does not name: {', '.join(missing)}"


@pytest.mark.parametrize("section", sorted(nested_keys()))
def test_config_doc_names_every_data_and_recipe_key(section):
    sections = _sections(CONFIG_DOC.read_text())
    named = _named(sections[section])
    missing = [key for key in nested_keys()[section] if key not in named]
    assert not missing, f"docs/config.md, {section}, does not name: {', '.join(missing)}"


def test_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_LIMIT
    for page in ("docs/results.md", "docs/config.md", "docs/cluster.md", "docs/design.md"):
        assert page in readme and (ROOT / page).is_file()


def test_doc_links_resolve():
    """Relative links between the README and docs/ point at files that exist."""
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
