"""app.json (Heroku's app manifest) agrees with the Procfile, the lock and the settings."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from app.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def procfile_processes() -> set[str]:
    return {
        m.group(1)
        for m in re.finditer(r"^([a-z]+):", (ROOT / "Procfile").read_text(), re.M)
        if m.group(1) != "release"
    }


def test_app_json_declares_the_add_ons_the_formation_and_generated_secrets():
    manifest = json.loads((ROOT / "app.json").read_text())
    plans = {addon["plan"].split(":")[0] for addon in manifest["addons"]}
    assert plans == {"heroku-postgresql", "heroku-redis"}
    assert set(manifest["formation"]) == procfile_processes() == {"web", "worker", "webhooks", "beat"}
    assert manifest["formation"]["beat"]["quantity"] == 1
    env = manifest["env"]
    assert env["SECRET_KEY"]["generator"] == "secret"
    assert env["METRICS_TOKEN"]["generator"] == "secret"
    assert env["APP_ENV"]["value"] == "production"
    known = set(Settings.__dataclass_fields__) | {"METRICS_TOKEN"}  # METRICS_TOKEN: issue 21
    assert set(env) <= known, set(env) - known


def test_python_version_file_matches_the_project_and_the_lock_covers_every_dependency():
    version = (ROOT / ".python-version").read_text().strip()
    assert version == "3.11"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11,<3.12"
    assert project["project"]["license"] == "MIT"  # SPDX string (PEP 639)
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {package["name"] for package in lock["package"]}

    def name(requirement: str) -> str:
        return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")

    wanted = {name(r) for r in project["project"]["dependencies"]}
    wanted |= {name(r) for r in project["project"]["optional-dependencies"]["dev"]}
    assert wanted <= locked, wanted - locked
    # Heroku picks its package manager by file: exactly one of them.
    assert not (ROOT / "requirements.txt").exists() and not (ROOT / "poetry.lock").exists()
