#!/usr/bin/env bash
# N-1 compatibility: the previous release's code must still work on the schema this release's
# migrations produce, because during a rolling / blue-green / Heroku preboot deploy the old web and
# worker processes keep serving after the release phase migrated (docs/deploy.md, expand/contract).
#
#   scripts/n1_compat.sh            (make n1-compat; CI runs it after the suite)
#
# 1. The previous release: N1_REF if set, else the newest tag before HEAD, else HEAD~1.
# 2. Its files are extracted (git archive) into a temporary directory; the repository is untouched.
# 3. A fresh database "<TEST_DATABASE_URL's db>_n1" is migrated with THIS checkout's migrations.
# 4. The OLD checkout's tests/api run against it with TEST_DATABASE_PREMIGRATED=1 (its conftest then
#    neither re-creates the database nor runs its own, older migrations).
# 5. Tests that fail there are run again by the old code on its own schema
#    ("<db>_n1base_master"): only those that pass on their own schema and fail on ours are
#    N-1 breaks (exit 1); those failing on both are reported and ignored (not ours to judge).
# It is skipped (exit 0, with the reason) when there is no previous release, or when that release
# has no tests/api or predates the TEST_DATABASE_PREMIGRATED switch.
#
# Needs TEST_DATABASE_URL and TEST_REDIS_URL (as `make test`); uses only its own databases and
# Redis db N1_REDIS_DB [15] on TEST_REDIS_URL's server. Extra pytest arguments: N1_PYTEST_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}

say() { printf 'n1-compat: %s\n' "$*" >&2; }
skip() {
  say "SKIPPED: $*"
  exit 0
}

: "${TEST_DATABASE_URL:?TEST_DATABASE_URL must name the test Postgres (as for make test)}"
: "${TEST_REDIS_URL:?TEST_REDIS_URL must name the test Redis (as for make test)}"

# ---- 1. which release is the previous one -------------------------------------------------------
ref=${N1_REF:-}
if [ -z "$ref" ]; then
  if ref=$(git describe --tags --abbrev=0 HEAD~1 2>/dev/null); then
    :
  elif git rev-parse -q --verify 'HEAD~1^{commit}' >/dev/null; then
    ref=HEAD~1
  else
    skip "no previous release: no tag and no parent commit (a shallow clone?); set N1_REF"
  fi
fi
old_sha=$(git rev-parse -q --verify "$ref^{commit}") || {
  say "N1_REF=$ref is not a commit"
  exit 2
}
say "previous release: $ref ($(git log -1 --format='%h %s' "$old_sha"))"

# ---- 2. its files, in a temporary directory ----------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/oms-n1.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir "$work/old"
git archive "$old_sha" | tar -x -C "$work/old"

if [ ! -d "$work/old/tests/api" ]; then
  skip "$ref has no tests/api"
fi
if ! grep -q TEST_DATABASE_PREMIGRATED "$work/old/tests/conftest.py" 2>/dev/null; then
  skip "$ref predates the TEST_DATABASE_PREMIGRATED switch in tests/conftest.py (bootstrap)"
fi
if [ "$(cd "$work/old" && "$PY" -c 'import app, os; print(os.path.dirname(app.__file__))')" != "$work/old/app" ]; then
  say "the old checkout's code would not be the one imported"
  exit 2
fi

# ---- 3. a fresh database at THIS release's head --------------------------------------------------
urls=$("$PY" - <<'EOF'
import os
from sqlalchemy import make_url
from tests.conftest import create_database

base = os.environ["TEST_DATABASE_URL"]
name = make_url(base).database or "oms"
redis = make_url(os.environ["TEST_REDIS_URL"].replace("redis://", "postgresql://", 1))
print(create_database(base, f"{name}_n1"))  # dropped and created: ours alone
print(create_database(base, f"{name}_n1base"))  # the old suite creates <this>_master from it
print(f"redis://{redis.host or '127.0.0.1'}:{redis.port or 6379}/{os.environ.get('N1_REDIS_DB', '15')}")
EOF
)
{
  read -r new_schema_url
  read -r old_schema_url
  read -r redis_url
} <<<"$urls"

DATABASE_URL=$new_schema_url REDIS_URL=$redis_url LOG_LEVEL=WARNING \
  "$PY" -m flask --app app db upgrade >/dev/null
say "migrated a fresh database to this release's head ($(DATABASE_URL=$new_schema_url REDIS_URL=$redis_url \
  LOG_LEVEL=WARNING "$PY" -m flask --app app db current 2>/dev/null | tail -1))"

# ---- 4. the old suite on the new schema ---------------------------------------------------------
run_old_suite() { # run_old_suite JUNIT_XML DATABASE_URL PREMIGRATED [pytest args...]
  local xml=$1 db=$2 premigrated=$3
  shift 3
  (cd "$work/old" && env -u PYTEST_ADDOPTS TEST_DATABASE_URL="$db" TEST_REDIS_URL="$redis_url" \
    TEST_DATABASE_PREMIGRATED="$premigrated" \
    "$PY" -m pytest -p no:xdist -p no:cacheprovider -q --junitxml="$xml" ${N1_PYTEST_ARGS:-} "$@")
}

nodes() { # nodes JUNIT_XML OUTCOME...: node ids of the tests with one of the outcomes
  # (failure, error, skipped, passed)
  "$PY" - "$work/old" "$@" <<'EOF'
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

root, outcomes = Path(sys.argv[1]), set(sys.argv[3:])
for case in ET.parse(sys.argv[2]).iter("testcase"):
    found = {tag for tag in ("failure", "error", "skipped") if case.find(tag) is not None} or {"passed"}
    if not found & outcomes:
        continue
    parts = case.get("classname", "").split(".")
    for cut in range(len(parts), 0, -1):  # tests.api.test_x[.TestClass] -> tests/api/test_x.py
        if (root / Path(*parts[:cut])).with_suffix(".py").exists():
            print("/".join(parts[:cut]) + ".py::" + "::".join([*parts[cut:], case.get("name", "")]))
            break
EOF
}

set +e
run_old_suite "$work/new-schema.xml" "$new_schema_url" 1 tests/api
status=$?
set -e
if [ "$status" -eq 0 ]; then
  say "PASSED: $ref's API tests pass on this release's schema"
  exit 0
fi

if [ "$status" -eq 5 ]; then
  skip "$ref's tests/api collected no tests"
fi
failed=$(nodes "$work/new-schema.xml" failure error)
if [ -z "$failed" ]; then
  # Not a test that failed but the run (e.g. a collection error): does it run on its own schema?
  say "the old suite did not run on this release's schema (exit $status); trying it on $ref's own"
  set +e
  run_old_suite "$work/old-schema.xml" "$old_schema_url" 0 tests/api
  own=$?
  set -e
  if [ "$own" -eq 0 ]; then
    say "FAILED: $ref's suite runs on its own schema but not on this release's"
    exit 1
  fi
  skip "INCONCLUSIVE: $ref's suite does not run on its own schema either (exit $own)"
fi

# ---- 5. which of those failures are ours? --------------------------------------------------------
say "$(wc -l <<<"$failed") test(s) failed on the new schema; running them on $ref's own schema"
# One test that passed on the new schema runs too, as a canary: if it fails on the old schema, the
# baseline itself is broken and proves nothing.
canary=$(nodes "$work/new-schema.xml" passed | sed -n 1p)
mapfile -t rerun <<<"$failed"
set +e
run_old_suite "$work/old-schema.xml" "$old_schema_url" 0 "${rerun[@]}" ${canary:+"$canary"}
set -e
if [ -z "$(nodes "$work/old-schema.xml" passed)" ] ||
  { [ -n "$canary" ] && nodes "$work/old-schema.xml" failure error skipped | grep -qxF "$canary"; }; then
  say "FAILED: no baseline: $ref's tests do not pass on its own schema here either (see above)"
  exit 1
fi
broken=$(comm -23 <(sort <<<"$failed") <(nodes "$work/old-schema.xml" failure error skipped | sort))
if [ -n "$broken" ]; then
  say "FAILED: $ref's code breaks on this release's schema (it passes on its own):"
  sed 's/^/  /' <<<"$broken" >&2
  say "make the migration backward compatible (expand now, contract in a later release: docs/deploy.md)"
  exit 1
fi
say "PASSED: the old suite's failures fail on $ref's own schema too (not caused by this release):"
sed 's/^/  /' <<<"$failed" >&2
