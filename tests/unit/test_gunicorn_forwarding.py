"""gunicorn believes forwarding headers only when TRUSTED_PROXY_COUNT says a proxy is there (§5.10)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict:
    monkeypatch.setenv("SECRET_KEY", "g" * 40)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_without_a_proxy_no_peer_is_trusted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TRUSTED_PROXY_COUNT", raising=False)
    assert gunicorn_settings(monkeypatch)["forwarded_allow_ips"] == ""


def test_behind_a_proxy_its_headers_are_read_and_proxyfix_takes_the_hops(monkeypatch: pytest.MonkeyPatch):
    assert gunicorn_settings(monkeypatch, TRUSTED_PROXY_COUNT="1")["forwarded_allow_ips"] == "*"
