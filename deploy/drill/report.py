"""The drill's outputs: the JSON report, a latency-over-time chart with the phases marked, and the
per-phase table written into docs/deploy.md between markers (always the figures of the last run)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

DEPLOY_MD = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def write_outputs(result: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    png = out.with_suffix(".png")
    chart(result, png)
    marker = "drill-bad-migration" if result["badMigration"] else "drill"
    update_markdown(DEPLOY_MD, marker, table(result, png.name))


def table(result: dict[str, Any], png_name: str) -> str:
    params = result["parameters"]
    lines = [
        f"Run at {result['generatedAt']} on {result['machine']['cpus']} CPUs (shared with other "
        f"test suites): blue `{result['blue']['rev'][:10]}`, green `{result['green']['rev'][:10]}`, "
        f"{params['ratePerSecond']:g} req/s fixed rate, {params['users']} shoppers, "
        f"{params['historyRows']:,} ledger rows of history, p99 limit {params['p99LimitMs']:g} ms. "
        f"**{'PASSED' if result['passed'] else 'FAILED'}** "
        f"({result['totals']['requests']} requests, {result['totals']['errors']} errors).",
        "",
        "| phase | s | requests | errors | 409 (expected) | toggled-off 503 | p50 ms | p99 ms | green share "
        "| HAProxy per server: requests / 5xx / went down | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in result["phases"]:
        seen = "; ".join(
            f"{name} {s['requests']}/{s['5xx']}/{s['went_down']}"
            for name, s in sorted(p["haproxy"].items())
            if s["requests"] or s["went_down"] or s["5xx"]
        )
        share = "—" if p["greenShare"] is None else f"{p['greenShare'] * 100:.0f} %"
        p99 = f"{p['p99_ms']:g}" if p["p99WithinLimit"] else f"**{p['p99_ms']:g}**"
        errors = f"{p['errors']}" if not p["errors"] else f"**{p['errors']}**"
        lines.append(
            f"| {p['name']} | {p['end_s'] - p['start_s']:.0f} | {p['requests']} | {errors} | "
            f"{p['expected409']} | {p['checkoutToggledOff503']} | {p['p50_ms']:g} | {p99} | {share} "
            f"| {seen} | {p.get('loadAverage1m', '')} |"
        )
    checks = result["checks"]
    refused = checks.get("replaysRefusedByTheToggleThenAnsweredTheirOrder", [])
    answered_later = f"{sum(1 for r in refused if r['sameOrder'])} of {len(refused)}"
    migration = result.get("migration") or {}
    payments_claim = (
        "none charged twice (not waited for: the drill stopped after the release phase)"
        if result["badMigration"]
        else "all COMPLETED and charged exactly once in the sandbox"
    )
    lines += [
        "",
        f"Release migration: exit {migration.get('exitStatus')} in {migration.get('seconds')} s while blue "
        f"served. Orders answered 201: {checks['ordersAnswered201']}, in the database: "
        f"{checks['ordersInDatabase']} (each exactly once: "
        f"{'yes' if checks['everyOrderAnswered201ExistsExactlyOnce'] else '**no**'}); idempotent replays "
        f"checked: {checks['idempotentReplaysChecked']}, "
        f"mismatches: {len(checks['idempotentReplayMismatches'])} (refused by the toggle, then answered "
        f"their order: {answered_later}); "
        f"payments: {checks['payments']}, {payments_claim}: "
        f"{'yes' if checks['everyPaymentCompletedAndChargedOnce'] else '**no**'}; stock equals ledger: "
        f"{'yes' if checks['stockEqualsLedger'] else '**no**'}; toggle refusals only outside the rollout: "
        f"{'yes' if checks['toggle']['consistent'] else '**no**'}.",
    ]
    lint = result.get("migrationLint")
    if lint:
        findings = [ln for ln in lint["output"].splitlines() if re.match(r"^\w+:\d+: [a-z-]+: ", ln)]
        lines += [
            "",
            f"`make lint-migrations` (squawk) on the same migration: exit {lint['exitStatus']}:",
            "",
        ]
        lines += [f"    {ln}" for ln in findings[:6]]
    lines += ["", f"![latency over time, phases marked]({png_name})"]
    return "\n".join(lines)


def update_markdown(path: Path, marker: str, body: str) -> None:
    if not path.exists():
        return
    text = path.read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return
    path.write_text(pattern.sub(lambda _: f"{start}\n{body}\n{end}", text))


def chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["timeline"]
    if not rows:
        return
    t = [r["t"] for r in rows]
    fig, (lat, rate) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    lat.plot(t, [max(r["p99_ms"], 0.1) for r in rows], label="p99 (per second)", color="tab:red", lw=1)
    lat.plot(t, [max(r["p50_ms"], 0.1) for r in rows], label="p50 (per second)", color="tab:blue", lw=1)
    lat.axhline(result["parameters"]["p99LimitMs"], color="black", ls="--", lw=0.8, label="p99 limit")
    lat.set_yscale("log")
    lat.set_ylabel("latency (ms, log)")
    rate.bar(t, [r["requests"] for r in rows], width=1.0, color="tab:gray", label="requests/s")
    rate.bar(t, [r["errors"] for r in rows], width=1.0, color="tab:red", label="errors/s")
    rate.set_ylabel("per second")
    rate.set_xlabel("seconds since the load started")
    colors = ["#e8f0fe", "#fef7e0"]
    for i, p in enumerate(result["phases"]):
        for ax in (lat, rate):
            ax.axvspan(p["start_s"], p["end_s"], color=colors[i % 2], zorder=0)
        lat.text(
            (p["start_s"] + p["end_s"]) / 2,
            0.98,
            p["name"],
            transform=lat.get_xaxis_transform(),
            rotation=90,
            va="top",
            ha="center",
            fontsize=7,
        )
    verdict = "passed" if result["passed"] else "FAILED"
    title = "bad migration" if result["badMigration"] else "blue-green, canary, rollback, rolling restarts"
    lat.set_title(
        f"Deploy drill ({title}): {result['totals']['requests']} requests, "
        f"{result['totals']['errors']} errors, {verdict}"
    )
    lat.legend(loc="lower right", fontsize=8)
    rate.legend(loc="lower right", fontsize=8)
    for ax in (lat, rate):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
