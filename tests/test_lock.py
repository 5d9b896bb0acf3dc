"""requirements/constraints.txt, the lock CI and the README's commands install from, fits
pyproject.toml: every requirement pinned to one exact version inside its declared range."""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "constraints.txt"


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, equals, version = line.partition("==")
        assert equals and re.fullmatch(r"[A-Za-z0-9._-]+", name), f"not an exact pin: {line!r}"
        pins[canonicalize_name(name)] = version.strip()
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(text) for text in [*project["dependencies"], *extras["test"]]]


def test_every_declared_requirement_is_pinned_inside_its_range() -> None:
    pins = _pins()
    for requirement in _declared():
        name = canonicalize_name(requirement.name)
        if name == "torch":  # pinned by scripts/_venv.sh (DIFFRIS_TORCH), so it can be swapped
            assert name not in pins
            continue
        assert name in pins, f"{name} is not in {LOCK.name}; refresh it with scripts/lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} in {LOCK.name} is outside pyproject's {requirement}; "
            "refresh it with scripts/lock"
        )


def test_the_default_torch_fits_pyproject() -> None:
    default = re.search(r"DIFFRIS_TORCH:-([^}]+)}", (ROOT / "scripts" / "_venv.sh").read_text())
    assert default is not None
    pinned = Requirement(default.group(1))
    (declared,) = [r for r in _declared() if r.name == "torch"]
    (exact,) = [s.version for s in pinned.specifier if s.operator == "=="]
    assert declared.specifier.contains(exact)
