"""The two load generators and what they report: ``wrk`` (HTTP, Lua scripts in bench/lua) and
``pgbench`` (the database alone, a custom script). Both are closed-loop: N clients, each sending
its next request when the previous one is answered."""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent / "lua"


@dataclass
class Measurement:
    """One timed run: throughput, latency percentiles (ms) and what went wrong."""

    clients: int
    duration_s: float
    completed: int
    per_second: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    errors: int = 0  # transport errors and unexpected statuses
    statuses: dict[str, int] = field(default_factory=dict)
    reused: int = 0  # checkout only: requests that met an already used cart (pool too small)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_wrk() -> str:
    """The wrk binary; installed from Debian's package when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk is missing: apt-get install -y wrk", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=False, stdout=subprocess.DEVNULL)
        if subprocess.run(["sh", "-c", "command -v wrk"], stdout=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False, stdout=subprocess.DEVNULL)
            subprocess.run(
                ["apt-get", "install", "-y", "wrk"], env=env, check=False, stdout=subprocess.DEVNULL
            )
        found = shutil.which("wrk")
        if found:
            return found
    raise SystemExit("the HTTP benchmarks need wrk: install it (Debian/Ubuntu: sudo apt-get install wrk)")


def ensure_pgbench() -> str:
    for candidate in (shutil.which("pgbench"), "/usr/bin/pgbench"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("the database limit needs pgbench (Debian/Ubuntu: apt-get install postgresql-client)")


def run_wrk(
    base_url: str,
    script: str,
    args: list[str],
    *,
    clients: int,
    duration_s: float,
    ok_statuses: tuple[str, ...] = ("200", "201"),
    expected_statuses: tuple[str, ...] = (),
    timeout_s: float = 10,
) -> Measurement:
    """Run ``wrk`` with one of the Lua scripts; parse the BENCH_JSON line its done() prints."""
    threads = max(1, min(2, clients))
    command = [
        ensure_wrk(),
        "-t",
        str(threads),
        "-c",
        str(clients),
        "-d",
        f"{duration_s:.0f}s",
        "--timeout",
        f"{timeout_s:.0f}s",
        "-s",
        str(LUA_DIR / script),
        base_url,
        "--",
        args[0],
        str(threads),
        *args[1:],
    ]
    out = subprocess.run(
        command,
        env={**os.environ, "BENCH_LUA_DIR": str(LUA_DIR)},
        capture_output=True,
        text=True,
        timeout=duration_s + timeout_s + 60,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
    data = json.loads(line[len("BENCH_JSON ") :])
    statuses = {str(k): int(v) for k, v in data["statuses"].items()}
    good = sum(v for k, v in statuses.items() if k in ok_statuses)
    unexpected = sum(v for k, v in statuses.items() if k not in ok_statuses and k not in expected_statuses)
    transport = sum(int(v) for k, v in data["errors"].items() if k != "status")
    seconds = data["duration_us"] / 1e6
    lat = data["latency_us"]
    return Measurement(
        clients=clients,
        duration_s=round(seconds, 2),
        completed=good,
        per_second=round(good / seconds, 1),
        p50_ms=round(lat["p50"] / 1000, 2),
        p99_ms=round(lat["p99"] / 1000, 2),
        mean_ms=round(lat["mean"] / 1000, 2),
        errors=unexpected + transport,
        statuses=statuses,
        reused=int(data.get("reused", 0)),
    )


def run_wrk_until(
    base_url: str, script: str, args: list[str], *, clients: int, done: Callable[[], bool], timeout_s: float
) -> None:
    """Run wrk until ``done()`` holds (polled every 0.2 s; bounded by ``timeout_s``), then stop it
    with SIGINT as a user would (wrk otherwise runs for its whole duration)."""
    threads = max(1, min(2, clients))
    command = [
        ensure_wrk(),
        "-t",
        str(threads),
        "-c",
        str(clients),
        "-d",
        f"{timeout_s:.0f}s",
        "-s",
        str(LUA_DIR / script),
        base_url,
        "--",
        args[0],
        str(threads),
        *args[1:],
    ]
    proc = subprocess.Popen(
        command,
        env={**os.environ, "BENCH_LUA_DIR": str(LUA_DIR)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and time.monotonic() < deadline and not done():
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def run_pgbench(
    database_url: str,
    script: Path,
    *,
    clients: int,
    duration_s: float,
    variables: dict[str, int],
) -> Measurement:
    """Run a pgbench custom script in prepared mode (as psycopg prepares repeated statements);
    latency percentiles come from the per-transaction log."""
    with tempfile.TemporaryDirectory(prefix="oms-pgbench-") as tmp:
        prefix = Path(tmp) / "tx"
        command = [
            ensure_pgbench(),
            "--no-vacuum",
            "--protocol=prepared",
            "--client",
            str(clients),
            "--jobs",
            str(max(1, min(2, clients))),
            "--time",
            f"{duration_s:.0f}",
            "--file",
            str(script),
            "--log",
            f"--log-prefix={prefix}",
        ]
        for name, value in {**variables, "nc": clients}.items():
            command += ["--define", f"{name}={value}"]
        command.append(database_url)
        out = subprocess.run(command, capture_output=True, text=True, timeout=duration_s + 120)
        if out.returncode != 0 or "aborted" in out.stderr:
            raise RuntimeError(f"pgbench failed (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
        latencies: list[int] = []
        failed = 0
        for log in Path(tmp).glob("tx*"):
            for row in log.read_text().splitlines():
                fields = row.split()
                if len(fields) >= 3:
                    if fields[2] in ("failed", "skipped"):
                        failed += 1
                    else:
                        latencies.append(int(fields[2]))
    tps_line = next(ln for ln in out.stdout.splitlines() if ln.startswith("tps = "))
    tps = float(tps_line.split()[2])
    latencies.sort()
    return Measurement(
        clients=clients,
        duration_s=duration_s,
        completed=len(latencies),
        per_second=round(tps, 1),
        p50_ms=round(percentile(latencies, 50) / 1000, 2),
        p99_ms=round(percentile(latencies, 99) / 1000, 2),
        mean_ms=round(statistics.fmean(latencies) / 1000, 2) if latencies else 0.0,
        errors=failed,
    )


def percentile(sorted_values: list[int] | list[float], pct: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return float(sorted_values[index])


def median_of(runs: list[Measurement]) -> dict[str, Any]:
    """The median of every figure over the runs (each figure on its own), plus the runs."""

    def med(name: str) -> float:
        return round(statistics.median(getattr(r, name) for r in runs), 2)

    return {
        "clients": runs[0].clients,
        "per_second": med("per_second"),
        "p50_ms": med("p50_ms"),
        "p99_ms": med("p99_ms"),
        "mean_ms": med("mean_ms"),
        "errors": sum(r.errors for r in runs),
        "completed": sum(r.completed for r in runs),
        "reused": sum(r.reused for r in runs),
        "runs": [r.as_dict() for r in runs],
    }
