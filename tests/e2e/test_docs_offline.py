"""/docs renders in a real browser with no network but the app's own address.

Headless Chromium (Debian's ``chromium``; installed here when missing, skipped with the reason when
it cannot be) loads /docs from the web process with every other host unresolvable
(``--host-resolver-rules``), runs Swagger UI's JavaScript, and the rendered DOM must list the API's
operations. With Swagger UI's assets on a CDN the page stays blank and this fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Stack

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Offline: nothing resolves but the app's loopback address.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--virtual-time-budget=20000",
]


def chromium() -> str:
    """Debian's chromium, installed (apt-get) when missing; skip with the reason when it cannot be."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and this user cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", "install", "-y", "-qq", "chromium"],
    ):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        except subprocess.TimeoutExpired:
            pytest.skip(f"`{' '.join(command)}` did not finish in 15 minutes")
        if done.returncode != 0:
            pytest.skip(f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}")
    found = shutil.which("chromium")
    if not found:
        pytest.skip("apt-get installed chromium but no `chromium` is on PATH")
    return found


def render(browser: str, url: str, profile: Path) -> str:
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_swagger_ui_renders_the_operations_with_no_network_but_the_app(stack: Stack, tmp_path: Path):
    browser = chromium()
    stack.start("web")
    stack.wait_web()
    dom = render(browser, stack.url("/docs"), tmp_path / "profile")
    assert 'id="swagger-ui-container"' in dom
    assert "Failed to load API definition" not in dom
    # Swagger UI rendered the document: its title, the tags and one block per operation.
    assert "Order Management API" in dom
    for path in ("/orders", "/orders/{orderId}", "/cart/{userId}/add", "/auth/token", "/products"):
        assert f'data-path="{path}"' in dom, f"{path} not rendered"
    assert dom.count('class="opblock opblock-') >= 20
    # Every asset came from the app itself.
    assert "/docs/assets/swagger-ui-bundle.js" in dom and "cdn." not in dom
