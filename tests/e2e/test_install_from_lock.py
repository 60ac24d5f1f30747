"""A fresh checkout builds from uv.lock alone, as Heroku's Python buildpack does it, and runs.

The checkout (the repository's files, nothing of the working venv) gets an empty virtualenv, filled
by ``uv sync --locked --no-default-groups`` from uv.lock and .python-version (the buildpack's
command; no dev extra). Then the Procfile's lines run from that venv: ``release`` migrates a fresh
database, ``web``, ``worker`` and ``beat`` start, and an order placed over HTTP is charged.

uv's cache (filled by ``make install``) makes the install take seconds, not minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.conftest import ROOT, PrivateRedis, Stack, wait_for
from tests.e2e.harness import ShopClient


def checkout_copy(target: Path) -> Path:
    """The files a `git clone` of this tree has (tracked and new, not ignored ones)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_a_fresh_checkout_installs_from_the_lock_and_runs_the_procfile(
    tmp_path: Path, e2e_database_url: str, private_redis: PrivateRedis
):
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    assert uv, "uv ships with the dev extra"
    app_dir = checkout_copy(tmp_path / "app")
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_", "PYTHONPATH"))}
    env.update(UV_PROJECT_ENVIRONMENT=str(venv), UV_PYTHON_DOWNLOADS="never")
    started = time.monotonic()
    installed = subprocess.run(
        # Bytecode compiled at install, as pip and Heroku's build do (processes start faster).
        [uv, "sync", "--locked", "--no-default-groups", "--compile-bytecode"],
        cwd=app_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    took = time.monotonic() - started
    assert installed.returncode == 0, installed.stderr
    print(f"uv sync --locked into an empty venv: {took:.1f}s")
    # Runtime dependencies only: no dev tool slipped in.
    assert (venv / "bin" / "gunicorn").exists() and (venv / "bin" / "celery").exists()
    assert not (venv / "bin" / "pytest").exists() and not (venv / "bin" / "honcho").exists()

    stack = Stack(tmp_path / "run", e2e_database_url, private_redis)
    stack.workdir.mkdir()
    stack.root = app_dir
    stack.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    stack.env.pop("VIRTUAL_ENV", None)
    try:
        stack.release()
        stack.start_stack()
        # The processes are the lock's venv's, not the test's.
        for name in ("web", "worker"):
            cmdline = Path(f"/proc/{stack.processes[name].pid}/cmdline").read_bytes().decode()
            assert str(venv) in cmdline, cmdline
        shop = ShopClient(stack)
        _, admin = shop.sign_up("admin")
        product = shop.create_product(admin, stock=3)
        user_id, token = shop.sign_up()
        cart_id = shop.fill_cart(user_id, token, product)
        placed = shop.checkout(user_id, token, cart_id)
        assert placed.status_code == 201, placed.text
        order_id = placed.json()["orderId"]
        wait_for(lambda: shop.payment_status(order_id, token) == "COMPLETED", 90, 0.5, "payment COMPLETED")
    finally:
        stack.stop_all()
