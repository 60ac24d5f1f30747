"""The drill's infrastructure: Debian's HAProxy and PgBouncer, installed when missing, configured in
a work directory, started in the foreground as child processes, and HAProxy's runtime API."""

from __future__ import annotations

import csv
import io
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

HAPROXY_BACKEND = "app"


def ensure_debian_package(binary: str, package: str) -> str:
    """The binary's path; ``apt-get install -y package`` first when it is missing (as root)."""
    for candidate in (shutil.which(binary), f"/usr/sbin/{binary}", f"/usr/bin/{binary}"):
        if candidate and Path(candidate).exists():
            return candidate
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SystemExit(f"the drill needs {binary}: apt-get install {package} (as root)")
    print(f"drill: {binary} is missing: apt-get install -y {package}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", package]
    if subprocess.run(install, env=env, check=False, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=False, stdout=subprocess.DEVNULL)
        subprocess.run(install, env=env, check=True, stdout=subprocess.DEVNULL)
    # Debian starts the packaged services; the drill runs its own instances on its own ports.
    for service in ("haproxy", "pgbouncer"):
        subprocess.run(["service", service, "stop"], check=False, capture_output=True)
    for candidate in (shutil.which(binary), f"/usr/sbin/{binary}", f"/usr/bin/{binary}"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit(f"{package} installed but {binary} not found")


# ---- PgBouncer ----------------------------------------------------------------------------------


def pgbouncer_config(workdir: Path, port: int, direct_url: str, pool_size: int) -> tuple[Path, str]:
    """A transaction-mode PgBouncer in front of ``direct_url``'s database; returns (ini, its URL)."""
    url = make_url(direct_url)
    database = url.database or "postgres"
    user = url.username or "postgres"
    target = f"host={url.host or '127.0.0.1'} port={url.port or 5432} dbname={database} user={user}"
    if url.password:
        target += f" password={url.password}"
    (workdir / "userlist.txt").write_text(f'"{user}" "{url.password or ""}"\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        "\n".join(
            [
                "[databases]",
                f"{database} = {target}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {workdir / 'userlist.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 400",
                # The app sends its timeouts as startup `options`; PgBouncer cannot pass them on, so
                # they are set on the database instead (docs/scaling.md) and the parameter ignored.
                "ignore_startup_parameters = extra_float_digits,options",
                "server_reset_query =",
                f"admin_users = {user}",
                "log_connections = 0",
                "log_disconnections = 0",
                "",
            ]
        )
    )
    pooled = url.set(port=port).render_as_string(hide_password=False)
    return ini, pooled


def pgbouncer_command(binary: str, ini: Path) -> str:
    # PgBouncer refuses to run as root: -u drops to an unprivileged user.
    run_as = "-u nobody " if os.geteuid() == 0 else ""
    return f"{binary} {run_as}{ini}"


# ---- HAProxy ------------------------------------------------------------------------------------


def haproxy_config(workdir: Path, port: int, servers: dict[str, int], weights: dict[str, int]) -> Path:
    """HTTP load balancing over ``servers`` (name → port), health-checked on /readyz."""
    socket_path = workdir / "haproxy.sock"
    lines = [
        "global",
        f"  stats socket {socket_path} mode 600 level admin",
        "  maxconn 2000",
        "defaults",
        "  mode http",
        "  timeout connect 2s",
        "  timeout client 60s",
        "  timeout server 30s",
        "  timeout http-keep-alive 60s",
        # A busy machine (other test suites) can delay a /readyz answer past a second.
        "  timeout check 3s",
        # A request is retried only when the connection to a server could not be made (nothing was
        # sent, so even a POST is safe to send elsewhere), and then on another server.
        "  retries 3",
        "  option redispatch 1",
        "  retry-on conn-failure",
        "frontend web",
        f"  bind 127.0.0.1:{port}",
        "  option forwardfor",
        f"  default_backend {HAPROXY_BACKEND}",
        f"backend {HAPROXY_BACKEND}",
        "  balance roundrobin",
        # One request per server connection: no race between gunicorn closing an idle keep-alive
        # connection (keepalive = 5 s) and HAProxy reusing it for the next request.
        "  option http-server-close",
        "  option httpchk GET /readyz",
        "  http-check expect status 200",
        "  http-response set-header X-Drill-Server %s",
        "  default-server inter 1s fastinter 500ms downinter 1s fall 3 rise 2",
    ]
    for name, server_port in servers.items():
        weight = weights.get(name, 0)
        state = "" if weight else " disabled"
        lines.append(f"  server {name} 127.0.0.1:{server_port} check weight {max(weight, 1)}{state}")
    path = workdir / "haproxy.cfg"
    path.write_text("\n".join(lines) + "\n")
    return path


class HAProxyRuntime:
    """HAProxy's runtime API on its stats socket: weights, states, and what it saw per server."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def set_weight(self, server: str, weight: int) -> None:
        """Weight 0 takes a server out of rotation without touching its connections."""
        self.command(f"set server {HAPROXY_BACKEND}/{server} weight {weight}")
        if weight > 0:
            self.command(f"set server {HAPROXY_BACKEND}/{server} state ready")

    def set_state(self, server: str, state: str) -> None:
        """``ready``, ``drain`` (no new requests, in-flight ones finish) or ``maint``."""
        out = self.command(f"set server {HAPROXY_BACKEND}/{server} state {state}")
        if out.strip():
            raise RuntimeError(f"haproxy: {out.strip()}")

    def stats(self) -> dict[str, dict[str, Any]]:
        """``show stat`` of the backend's servers: status, requests, responses by class, check results."""
        raw = self.command("show stat")
        text = raw.lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        out: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.get("pxname") != HAPROXY_BACKEND or row.get("svname") in ("BACKEND", "FRONTEND"):
                continue
            out[row["svname"]] = {
                "status": row["status"],
                "weight": _int(row.get("weight")),
                "current": _int(row.get("scur")),
                "requests": _int(row.get("stot")),
                "2xx": _int(row.get("hrsp_2xx")),
                "4xx": _int(row.get("hrsp_4xx")),
                "5xx": _int(row.get("hrsp_5xx")),
                "connection_errors": _int(row.get("econ")),
                "response_errors": _int(row.get("eresp")),
                "retries": _int(row.get("wretr")),
                "redispatches": _int(row.get("wredis")),
                "checks_failed": _int(row.get("chkfail")),
                "went_down": _int(row.get("chkdown")),
                "downtime_s": _int(row.get("downtime")),
                "last_check": row.get("check_status", ""),
            }
        return out


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


COUNTERS = (
    "requests",
    "2xx",
    "4xx",
    "5xx",
    "connection_errors",
    "response_errors",
    "retries",
    "redispatches",
    "checks_failed",
    "went_down",
)


def stats_delta(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What HAProxy saw per server between two ``stats()`` snapshots (counters as differences)."""
    out: dict[str, Any] = {}
    for name, now in after.items():
        then = before.get(name, {})
        entry = {key: now[key] - then.get(key, 0) for key in COUNTERS}
        entry["status"] = now["status"]
        entry["weight"] = now["weight"]
        out[name] = entry
    return out
