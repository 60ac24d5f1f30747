"""Lint every Alembic migration for locking hazards: render its SQL offline and run squawk on it.

    python -m app.devtools.lint_migrations [--directory migrations] [--output DIR]

Each revision is rendered on its own (``alembic upgrade <down>:<rev> --sql``, offline: no database
is touched) and checked by squawk (PyPI ``squawk-cli``) with the repository's ``.squawk.toml``. A
migration may switch off a rule for itself only, next to a comment saying why::

    # Contract step of the expand/contract of orders.legacy_note: no release reads it any more.
    squawk_exclude = ["ban-drop-column"]

Exit status: 0 clean, 1 findings, 2 the linter could not run.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SQUAWK_CONFIG = ROOT / ".squawk.toml"
# Offline rendering needs a URL for the dialect only; nothing connects to it.
_OFFLINE_SETTINGS = {
    "APP_ENV": "development",
    "DATABASE_URL": "postgresql://offline@127.0.0.1:9/offline",
    "REDIS_URL": "redis://127.0.0.1:9/0",
    "LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class Revision:
    revision: str
    down_revision: str | None
    path: Path
    squawk_exclude: tuple[str, ...]

    @property
    def range(self) -> str:
        return f"{self.down_revision}:{self.revision}" if self.down_revision else self.revision


@dataclass(frozen=True)
class Finding:
    revision: str
    rule: str
    message: str
    line: int

    def __str__(self) -> str:
        return f"{self.revision}:{self.line}: {self.rule}: {self.message}"


def squawk_binary() -> str:
    """The squawk next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "squawk"
    found = str(beside) if beside.exists() else shutil.which("squawk")
    if not found:
        raise SystemExit("squawk is not installed: make install (it ships in squawk-cli)")
    return found


def render(directory: Path) -> Iterator[tuple[Revision, str]]:
    """Every revision, oldest first, with the SQL its upgrade emits."""
    from alembic import command
    from alembic.script import ScriptDirectory

    from app import create_app

    app = create_app(_OFFLINE_SETTINGS)
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config(str(directory))
        scripts = ScriptDirectory.from_config(config)
        for script in reversed(list(scripts.walk_revisions("base", "heads"))):
            down = script.down_revision
            # A merge revision is rendered from its first parent; the other branch is linted on its own.
            parent = down[0] if isinstance(down, (tuple, list)) else down
            revision = Revision(
                revision=script.revision,
                down_revision=parent,
                path=Path(script.path),
                squawk_exclude=tuple(getattr(script.module, "squawk_exclude", ())),
            )
            buffer = io.StringIO()
            config.output_buffer = buffer
            command.upgrade(config, revision.range, sql=True)
            yield revision, buffer.getvalue()


def excluded_rules(config_path: Path = SQUAWK_CONFIG) -> set[str]:
    with config_path.open("rb") as handle:
        return set(tomllib.load(handle).get("excluded_rules", []))


def squawk(sql_file: Path, exclude: set[str], config_path: Path = SQUAWK_CONFIG) -> list[dict[str, Any]]:
    """squawk's findings for one file (``--exclude`` replaces the config's list, so pass the union)."""
    args = [squawk_binary(), "--config", str(config_path), "--reporter", "json"]
    if exclude:
        args += ["--exclude", ",".join(sorted(exclude))]
    result = subprocess.run([*args, str(sql_file)], capture_output=True, text=True, check=False)
    if result.returncode not in (0, 1):
        raise RuntimeError(f"squawk failed ({result.returncode}): {result.stderr or result.stdout}")
    findings: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return findings


def lint(directory: Path, output: Path) -> list[Finding]:
    output.mkdir(parents=True, exist_ok=True)
    base_exclusions = excluded_rules()
    findings: list[Finding] = []
    for revision, sql in render(directory):
        sql_file = output / f"{revision.revision}.sql"
        sql_file.write_text(sql)
        for item in squawk(sql_file, base_exclusions | set(revision.squawk_exclude)):
            findings.append(
                Finding(revision.revision, item["rule_name"], item["message"], int(item["line"]) + 1)
            )
        print(f"{revision.revision} ({revision.path.name}): rendered to {sql_file}", file=sys.stderr)
    return findings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--directory", type=Path, default=ROOT / "migrations", help="Alembic directory")
    parser.add_argument("--output", type=Path, help="keep the rendered SQL here (default: a temp dir)")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="oms-migrations-sql-") as scratch:
            findings = lint(args.directory, args.output or Path(scratch))
    except RuntimeError as exc:
        print(f"lint-migrations: {exc}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    if findings:
        print(
            f"{len(findings)} locking hazard(s): see https://squawkhq.com/docs/rules and docs/deploy.md",
            file=sys.stderr,
        )
        return 1
    print("migrations: no locking hazards found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
