"""Turn the bench's results into docs/bench/results.json, results.md and PNG charts.

python -m bench.report [docs/bench/results.json]   # re-render the Markdown and charts
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# The targets of issue 7, each a ratio of figures measured in the same bench run.
TARGETS = {
    "checkout_vs_limit": ("POST /orders vs the pgbench limit, 8 clients (throughput)", ">=", 0.30),
    "checkout_p99_over_p50": ("POST /orders p99 / p50, 8 clients", "<=", 5.0),
    "product_vs_floor": ("GET /products/{id} vs bare Flask + psycopg (throughput)", ">=", 0.50),
    "order_vs_floor": ("GET /orders/{id} vs bare Flask + psycopg (throughput)", ">=", 0.50),
    # Issue 20 (release 2's performance pass) lowered this one from issue 7's 50 % and added the
    # worker-vs-web pace and the checkout's CPU.
    "payments_vs_noop": ("payments drained vs bare Celery no-op tasks (per second)", ">=", 0.25),
    "worker_vs_web": ("payments drained by one worker / orders accepted by one web process", ">=", 1.0),
    "checkout_cpu_ms": ("web CPU per POST /orders, 8 clients (ms)", "<=", 7.0),
    # Issue 16.
    "webhooks_vs_floor": (
        "webhook deliveries vs bare Celery tasks making the same POST (per second)",
        ">=",
        0.50,
    ),
    "lines_50_vs_1": ("POST /orders p50 latency, 50 lines / 1 line", "<=", 2.0),
    "reconcile_linearity": ("reconciliation time per product, largest / middle table", "<=", 1.5),
    "reconcile_memory": ("reconciliation peak RSS, largest / smallest table", "<=", 1.5),
}


def _get(results: dict[str, Any], *path: str) -> Any:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(float(a) / float(b), 3)


def ratios(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, float | None] = {
        "checkout_vs_limit": _ratio(
            _get(results, "checkout", "8", "per_second"), _get(results, "limit", "8", "per_second")
        ),
        "checkout_p99_over_p50": _ratio(
            _get(results, "checkout", "8", "p99_ms"), _get(results, "checkout", "8", "p50_ms")
        ),
        "product_vs_floor": _ratio(
            _get(results, "reads", "product", "stack", "per_second"),
            _get(results, "reads", "product", "floor", "per_second"),
        ),
        "order_vs_floor": _ratio(
            _get(results, "reads", "order", "stack", "per_second"),
            _get(results, "reads", "order", "floor", "per_second"),
        ),
        "payments_vs_noop": _ratio(
            _get(results, "payments", "payments", "per_second"),
            _get(results, "payments", "noop", "per_second"),
        ),
        "worker_vs_web": _ratio(
            _get(results, "payments", "payments", "per_second"),
            _get(results, "payments", "web_one", "per_second"),
        ),
        "checkout_cpu_ms": cpu_ms_per_request(_get(results, "checkout", "8")),
        "webhooks_vs_floor": _ratio(
            _get(results, "webhooks", "webhooks", "per_second"),
            _get(results, "webhooks", "floor", "per_second"),
        ),
        "lines_50_vs_1": _ratio(
            _get(results, "lines", "50", "p50_ms"), _get(results, "lines", "1", "p50_ms")
        ),
        "reconcile_linearity": None,
        "reconcile_memory": None,
    }
    recon = results.get("reconcile") or {}
    if len(recon) >= 2:
        sizes = sorted(recon, key=int)
        largest, middle, smallest = sizes[-1], sizes[-2], sizes[0]
        out["reconcile_linearity"] = _ratio(
            recon[largest]["run_seconds"] / int(largest), recon[middle]["run_seconds"] / int(middle)
        )
        out["reconcile_memory"] = _ratio(recon[largest]["peak_rss_mb"], recon[smallest]["peak_rss_mb"])
    judged = {}
    for name, value in out.items():
        label, op, target = TARGETS[name]
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        judged[name] = {"label": label, "value": value, "target": f"{op} {target}", "met": met}
    return judged


def cpu_ms_per_request(entry: dict[str, Any] | None) -> float | None:
    """The web tier's CPU per request (ms), the median over the runs of process CPU / throughput."""
    values = sorted(
        r["statuses"]["_cpu"]["process_cores"] * 1000 / r["per_second"]
        for r in (entry or {}).get("runs", [])
        if isinstance(r.get("statuses", {}).get("_cpu"), dict) and r.get("per_second")
    )
    return round(values[len(values) // 2], 2) if values else None


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f} %"


def headline(results: dict[str, Any]) -> str:
    """The table the README quotes: one line per target."""
    lines = ["| measure | figure | target | met |", "|---|---|---|---|"]
    for name, r in ratios(results).items():
        value = r["value"]
        shown = _pct(value) if r["target"].startswith(">=") or name == "checkout_vs_limit" else _fmt(value, 2)
        if name in (
            "checkout_p99_over_p50",
            "lines_50_vs_1",
            "reconcile_linearity",
            "reconcile_memory",
            "worker_vs_web",
        ):
            shown = "—" if value is None else f"{value:.2f}×"
        if name == "checkout_cpu_ms":
            shown = "—" if value is None else f"{value:.1f} ms"
        target = r["target"]
        if name == "worker_vs_web":
            target = f"≥ {float(target.split()[1]):g}×"
        elif name == "checkout_cpu_ms":
            target = f"≤ {float(target.split()[1]):g} ms"
        elif target.startswith(">="):
            target = f"≥ {float(target.split()[1]) * 100:.0f} %"
        else:
            target = f"≤ {float(target.split()[1]):g}×"
        met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
        lines.append(f"| {r['label']} | {shown} | {target} | {met} |")
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    plan = results.get("plan", {})
    sql = results.get("sql", {})
    pg_settings = m.get("postgres_settings") or {}
    out = [
        "# Benchmarks",
        "",
        f"Measured {m.get('date', '?')} by `make bench` (commit `{m.get('git_commit', '?')}`"
        f"{', quick mode' if plan.get('quick') else ''}). Every figure is the median of {plan.get('runs')} "
        f"run(s) of {_fmt(plan.get('duration_s'), 0)} s; ratios compare figures of the same bench run. "
        "Load generator, application and database share this one machine (loopback only).",
        "",
        "## Machine",
        "",
        f"- {m.get('nproc')} CPUs ({m.get('cpu', '?')}), {m.get('memory_gib')} GiB RAM, {m.get('os', '?')}",
        f"- Python {m.get('python')}, PostgreSQL {m.get('postgres')}, Redis {m.get('redis')}, "
        f"{m.get('wrk')}, {m.get('pgbench')}",
        "- PostgreSQL settings: " + ", ".join(f"{k}={v}" for k, v in sorted(pg_settings.items())),
        f"- gunicorn: WEB_CONCURRENCY={plan.get('web_concurrency')} × {plan.get('gunicorn')}; "
        f"celery worker concurrency {plan.get('worker_concurrency')}",
        f"- load average at start / end: {m.get('load_average_start')} / {m.get('load_average_end')}; "
        f"the whole bench took {_fmt(results.get('elapsed_s'), 0)} s",
        "",
        "## Headline",
        "",
        headline(results),
        "",
    ]
    if sql:
        c = sql.get("checkout", {})
        out += [
            "## What one request costs in SQL",
            "",
            f"- `POST /orders` (1 line): {c.get('statements')} statements in {c.get('transactions')} "
            f"transactions ({c.get('executed_per_transaction')}) — the token check (autocommit, no "
            "transaction), the idempotency claim, the checkout (the outbox row is marked published in "
            "it; the Celery publish after the commit costs no SQL). 10 lines: "
            f"{_get(sql, 'checkout_10_lines', 'statements')} statements sent "
            f"({_get(sql, 'checkout_10_lines', 'executed')} executed; several rows of one table go "
            "in one statement), "
            f"50 lines: {_get(sql, 'checkout_50_lines', 'statements')} "
            f"({_get(sql, 'checkout_50_lines', 'executed')}).",
            f"- `GET /products/{{id}}`: {_get(sql, 'get_product', 'statements')} statements; "
            f"`GET /orders/{{id}}`: {_get(sql, 'get_order', 'statements')}.",
            "",
        ]
    if results.get("limit") or results.get("checkout"):
        out += [
            "## Checkout: POST /orders vs the database's own limit",
            "",
            "The limit is pgbench running the SQL that one `POST /orders` issued (captured from the app, "
            "same transactions and statements, each transaction a different user's cart; prepared "
            "statements as psycopg uses them). POST /orders runs through gunicorn with auth, validation, "
            "an Idempotency-Key per request and the outbox (the Celery publish included); the worker is "
            "not running meanwhile (its own dynos in production), so queued tasks wait in Redis.",
            "",
            _row(
                "clients",
                "limit tx/s",
                "limit p50 / p99 ms",
                "POST /orders orders/s",
                "p50 / p99 ms",
                "ratio",
                "errors",
                "web CPU (cores)",
            ),
            "|---|---|---|---|---|---|---|---|",
        ]
        for clients in plan.get("clients", []):
            lim = _get(results, "limit", str(clients)) or {}
            chk = _get(results, "checkout", str(clients)) or {}
            cpu = _median_cpu(chk)
            ratio = _pct(_ratio(chk.get("per_second"), lim.get("per_second")))
            out.append(
                _row(
                    clients,
                    _fmt(lim.get("per_second")),
                    _lat(lim),
                    _fmt(chk.get("per_second")),
                    _lat(chk),
                    ratio,
                    _fmt(chk.get("errors")),
                    cpu,
                )
            )
        out += ["", "![checkout](checkout.png)", ""]
    if results.get("reads"):
        out += [
            "## Reads: the stack vs the framework floor",
            "",
            f"{plan.get('read_clients')} connections. The floor is bare Flask + psycopg running the same SQL "
            "(bench/floor_app.py) under the same gunicorn settings, without auth, schemas, ORM or logging.",
            "",
            "| endpoint | stack req/s | p50 / p99 ms | floor req/s | p50 / p99 ms | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for what, label in (("product", "GET /products/{id}"), ("order", "GET /orders/{id}")):
            s = _get(results, "reads", what, "stack") or {}
            f = _get(results, "reads", what, "floor") or {}
            ratio = _pct(_ratio(s.get("per_second"), f.get("per_second")))
            out.append(
                _row(
                    f"`{label}`",
                    _fmt(s.get("per_second")),
                    _lat(s),
                    _fmt(f.get("per_second")),
                    _lat(f),
                    ratio,
                )
            )
        out += ["", "![reads](reads.png)", ""]
    out += _shipments_section(results)
    pay = results.get("payments")
    if pay:
        out += [
            "## Payments: drained by one worker vs bare Celery, and vs one web process",
            "",
            f"A burst of {pay.get('burst')} orders is placed through ONE web process (gunicorn, "
            "WEB_CONCURRENCY=1, 8 connections) with no worker running: orders accepted per second. Then one "
            f"worker (the Procfile line: {_get(pay, 'worker', 'pool') or 'prefork'} pool, concurrency "
            f"{_get(pay, 'worker', 'concurrency') or 2}) starts and the clock runs from its `ready` until no "
            "payment is PENDING. Each order is one task in that window: the OrderPlaced dispatch charges "
            "the payment (create and confirm the PaymentIntent in the payment sandbox), then records the "
            "e-mail and marks the event processed in one transaction; the PaymentCompleted dispatches and "
            "the e-mail deliveries (`oms.notifications`) mostly run after the clock stops. The floor is "
            "the same number of no-op tasks on the same broker, worker settings, pool and concurrency.",
            "",
            "| | per second | seconds | tasks/s | vs no-op | CPU (cores) |",
            "|---|---|---|---|---|---|",
            _row(
                "checkouts accepted by one web process",
                _fmt(_get(pay, "web_one", "per_second")),
                _fmt(_get(pay, "web_one", "seconds"), 1),
                "",
                "",
                _fmt(_get(pay, "web_one", "process_cores")),
            ),
            _row(
                "payments drained by one worker",
                _fmt(_get(pay, "payments", "per_second")),
                _fmt(_get(pay, "payments", "seconds"), 1),
                _fmt(_get(pay, "payments", "tasks_per_second")),
                _pct(_ratio(_get(pay, "payments", "per_second"), _get(pay, "noop", "per_second"))),
                _fmt(_get(pay, "payments", "process_cores")),
            ),
            _row(
                "bare Celery no-op tasks",
                _fmt(_get(pay, "noop", "per_second")),
                _fmt(_get(pay, "noop", "seconds"), 1),
                _fmt(_get(pay, "noop", "per_second")),
                "100 %",
                "",
            ),
            "",
            f"Payments drained per second by one worker / checkouts accepted per second by one web process "
            f"(median of the per-run ratios): **{_fmt(_get(pay, 'payments', 'vs_web'), 2)}×**.",
            "",
            "![payments](payments.png)",
            "",
        ]
    hooks = results.get("webhooks")
    if hooks:
        out += [
            "## Webhook deliveries: one `webhooks` worker vs bare Celery POSTs",
            "",
            f"{hooks.get('deliveries')} deliveries are due with no webhook worker running; then the "
            "Procfile's `webhooks` line (concurrency 2) starts and the clock runs from its `ready` until "
            "every delivery is SUCCEEDED, posting to a local receiver that answers 204 at once. Each "
            "delivery claims its row under a lease (one statement, then a recount of the endpoint's "
            "leases), checks the URL (SSRF), signs it and records the outcome (one statement). "
            "The floor is the same number of bare Celery tasks, each "
            "making the same HTTP POST (bench/webhook_floor.py), on the same broker and worker settings.",
            "",
            "| | per second | seconds | vs floor |",
            "|---|---|---|---|",
            _row(
                "webhook deliveries",
                _fmt(_get(hooks, "webhooks", "per_second")),
                _fmt(_get(hooks, "webhooks", "seconds"), 1),
                _pct(_ratio(_get(hooks, "webhooks", "per_second"), _get(hooks, "floor", "per_second"))),
            ),
            _row(
                "bare Celery POST tasks",
                _fmt(_get(hooks, "floor", "per_second")),
                _fmt(_get(hooks, "floor", "seconds"), 1),
                "100 %",
            ),
            "",
        ]
    out += _fanout_section(results.get("fanout"))
    out += _stripe_webhook_section(results.get("stripe_webhook"))
    if results.get("lines") or results.get("reconcile"):
        out += ["## Scaling", ""]
    if results.get("lines"):
        out += [
            "`POST /orders` by cart size, one connection (the cost of one request, no queueing):",
            "",
            "| lines | orders/s | p50 ms | p99 ms | statements sent (executed) |",
            "|---|---|---|---|---|",
        ]
        for lines in ("1", "10", "50"):
            r = _get(results, "lines", lines) or {}
            facts = _get(sql, "checkout") if lines == "1" else _get(sql, f"checkout_{lines}_lines")
            stmts = f"{facts.get('statements')} ({facts.get('executed')})" if facts else "—"
            out.append(
                _row(
                    lines,
                    _fmt(r.get("per_second")),
                    _fmt(r.get("p50_ms"), 2),
                    _fmt(r.get("p99_ms"), 2),
                    stmts,
                )
            )
        out.append("")
    if results.get("reconcile"):
        out += [
            "`flask --app app reconcile-stock` (1 product in 256 drifted from its ledger before each run):",
            "",
            "| products | wall s (whole command) | s in the run | µs per product | peak RSS MB | corrected |",
            "|---|---|---|---|---|---|",
        ]
        for size, r in sorted(results["reconcile"].items(), key=lambda kv: int(kv[0])):
            corrected = r["runs"][0].get("corrected") if r.get("runs") else None
            per_product = _fmt(r["run_seconds"] / int(size) * 1e6, 2)
            out.append(
                _row(
                    f"{int(size):,}",
                    _fmt(r["seconds"], 2),
                    _fmt(r["run_seconds"], 2),
                    per_product,
                    _fmt(r["peak_rss_mb"], 0),
                    _fmt(corrected),
                )
            )
        out.append("")
    if results.get("lines") or results.get("reconcile"):
        out += ["![scaling](scaling.png)", ""]
    profs = results.get("profiles") or {}
    if profs:
        out += [
            "## Where the time goes (py-spy)",
            "",
            "py-spy samples of the threads holding the GIL — the Python CPU — of the web tier (8 "
            "connections) or the worker: the package of the running frame, and the share of samples "
            "inside each of our functions. The collapsed stacks are left in "
            "`instance/bench/profile_*.txt` (speedscope and flamegraph.pl read them).",
            "",
        ]
        for name, prof in profs.items():
            packages = ", ".join(f"{pkg} {share} %" for pkg, share in prof.get("by_package", [])[:8])
            functions = ", ".join(
                f"`{fn.split('.', 2)[-1]}` {share} %" for fn, share in prof.get("our_functions", [])[:8]
            )
            out += [f"- **{name}** ({prof.get('samples')} samples): {packages}.", f"  Ours: {functions}.", ""]
    notes = results.get("notes")
    if notes:
        out += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    out += [
        "## How to reproduce",
        "",
        "`make bench` (about 15 minutes; `make bench BENCH_ARGS=--quick` for a smoke run; "
        "`BENCH_ARGS='--only reads --runs 5'` and the like for one phase). Raw figures, every run and "
        "the CPU used by the web tier are in results.json.",
        "",
    ]
    return "\n".join(out)


def _fanout_section(fan: dict[str, Any] | None) -> list[str]:
    if not fan:
        return []
    return [
        "## Webhook fan-out: outbox events to deliveries",
        "",
        f"{fan.get('events')} `ProductLowStock` outbox events, {fan.get('endpoints')} enabled endpoints "
        "subscribed to every type, dispatched one after another in one process by the product's own "
        "path (`dispatch.handle_message` running `webhooks.fan_out`: the message, one delivery per "
        "endpoint, their tasks published, the event marked processed). The floor writes the same rows "
        "from the same process with bare psycopg (one transaction: the outbox payload read, one "
        "`INSERT … RETURNING` for the message and every delivery, the event marked processed) and "
        "publishes as many bare Celery tasks.",
        "",
        "| | events/s | deliveries/s | vs floor |",
        "|---|---|---|---|",
        _row(
            "fan-out",
            _fmt(_get(fan, "fanout", "events_per_second")),
            _fmt(_get(fan, "fanout", "deliveries_per_second"), 0),
            _pct(_ratio(_get(fan, "fanout", "events_per_second"), _get(fan, "floor", "events_per_second"))),
        ),
        _row(
            "bare psycopg + Celery publishes",
            _fmt(_get(fan, "floor", "events_per_second")),
            _fmt(_get(fan, "floor", "deliveries_per_second"), 0),
            "100 %",
        ),
        "",
    ]


def _stripe_webhook_section(hook: dict[str, Any] | None) -> list[str]:
    if not hook:
        return []
    stack, floor = hook.get("stack") or {}, hook.get("floor") or {}
    return [
        "## Inbound gateway webhooks: `POST /webhooks/stripe`",
        "",
        "Signed `payment_intent.succeeded` events (signed with Stripe's own helper, each event id "
        "distinct, for payments that do not exist: the event id is recorded once and the payment "
        "looked up), wrk at the reads' connection count, vs bare Flask verifying only the signature "
        "with `stripe.Webhook.construct_event` (bench/stripe_floor.py) under the same gunicorn settings.",
        "",
        "| | req/s | p50 / p99 ms | CPU (cores) | vs floor |",
        "|---|---|---|---|---|",
        _row(
            "POST /webhooks/stripe",
            _fmt(stack.get("per_second")),
            _lat(stack),
            _median_cpu(stack),
            _pct(_ratio(stack.get("per_second"), floor.get("per_second"))),
        ),
        _row(
            "bare Flask signature check",
            _fmt(floor.get("per_second")),
            _lat(floor),
            _median_cpu(floor),
            "100 %",
        ),
        "",
    ]


def _shipments_section(results: dict[str, Any]) -> list[str]:
    ship = results.get("shipments")
    if not ship:
        return []
    facts = _get(results, "sql", "shipment") or {}
    limit, stack = ship.get("limit") or {}, ship.get("stack") or {}
    return [
        "## Shipments: POST /orders/{id}/shipments vs the database's own limit",
        "",
        f"An admin ships every unit of a paid order (no `items`: one line of 2 units), each request a "
        f"different order out of {_fmt(ship.get('pool'))} seeded in SQL (unshipped again between "
        "measurements), with an Idempotency-Key; the order becomes SHIPPED (history row, audit entry, "
        "`OrderShipped` in the outbox, published to the broker after the commit; no worker runs). "
        "The limit is pgbench replaying the SQL that one such request issued (captured from the app: "
        f"{facts.get('statements')} statements in {facts.get('transactions')} transactions, "
        f"{facts.get('executed_per_transaction')} per transaction — the token check, the idempotency "
        "claim, the shipment), each transaction another order, at the same client count.",
        "",
        "| clients | limit tx/s | limit p50 / p99 ms | POST shipments req/s | p50 / p99 ms | ratio | errors "
        "| web CPU (cores) |",
        "|---|---|---|---|---|---|---|---|",
        _row(
            stack.get("clients"),
            _fmt(limit.get("per_second")),
            _lat(limit),
            _fmt(stack.get("per_second")),
            _lat(stack),
            _pct(_ratio(stack.get("per_second"), limit.get("per_second"))),
            _fmt(stack.get("errors")),
            _median_cpu(stack),
        ),
        "",
    ]


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _lat(entry: dict[str, Any]) -> str:
    return f"{_fmt(entry.get('p50_ms'), 2)} / {_fmt(entry.get('p99_ms'), 2)}"


def _median_cpu(entry: dict[str, Any]) -> str:
    values = [
        r["statuses"]["_cpu"]
        for r in entry.get("runs", [])
        if isinstance(r.get("statuses", {}).get("_cpu"), dict)
    ]
    if not values:
        return "—"
    values.sort(key=lambda v: v["process_cores"])
    mid = values[len(values) // 2]
    return f"{mid['process_cores']:.2f} of {mid['machine_cores']:.2f} busy"


def charts(results: dict[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written: list[Path] = []
    plan = results.get("plan", {})
    clients = [str(c) for c in plan.get("clients", [])]

    if results.get("limit") or results.get("checkout"):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        x = range(len(clients))
        lim = [(_get(results, "limit", c, "per_second") or 0) for c in clients]
        chk = [(_get(results, "checkout", c, "per_second") or 0) for c in clients]
        ax1.bar([i - 0.2 for i in x], lim, 0.4, label="pgbench limit (same SQL)", color="#8da0cb")
        ax1.bar([i + 0.2 for i in x], chk, 0.4, label="POST /orders (stack)", color="#fc8d62")
        ax1.set_xticks(list(x), clients)
        ax1.set_xlabel("clients")
        ax1.set_ylabel("orders per second")
        ax1.set_title("Throughput")
        ax1.legend()
        for name, color in (("limit", "#8da0cb"), ("checkout", "#fc8d62")):
            p50 = [(_get(results, name, c, "p50_ms") or 0) for c in clients]
            p99 = [(_get(results, name, c, "p99_ms") or 0) for c in clients]
            ax2.plot(clients, p50, "o-", color=color, label=f"{name} p50")
            ax2.plot(clients, p99, "s--", color=color, label=f"{name} p99")
        ax2.set_xlabel("clients")
        ax2.set_ylabel("ms")
        ax2.set_yscale("log")
        ax2.set_title("Latency")
        ax2.legend(fontsize=8)
        fig.suptitle("Checkout vs the database's own limit")
        fig.tight_layout()
        written.append(_save(fig, out_dir / "checkout.png"))

    if results.get("reads"):
        fig, ax = plt.subplots(figsize=(6, 4))
        labels = ["GET /products/{id}", "GET /orders/{id}"]
        stack = [_get(results, "reads", w, "stack", "per_second") or 0 for w in ("product", "order")]
        floor = [_get(results, "reads", w, "floor", "per_second") or 0 for w in ("product", "order")]
        ax.bar([-0.2, 0.8], floor, 0.4, label="bare Flask + psycopg", color="#8da0cb")
        ax.bar([0.2, 1.2], stack, 0.4, label="the stack", color="#fc8d62")
        ax.set_xticks([0, 1], labels)
        ax.set_ylabel("requests per second")
        ax.set_title(f"Reads vs the framework floor ({plan.get('read_clients')} connections)")
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, out_dir / "reads.png"))

    if results.get("payments"):
        fig, ax = plt.subplots(figsize=(6, 4))
        values = [
            _get(results, "payments", "noop", "per_second") or 0,
            _get(results, "payments", "payments", "tasks_per_second") or 0,
            _get(results, "payments", "payments", "per_second") or 0,
        ]
        ax.bar(["no-op tasks", "our tasks", "payments"], values, color=["#8da0cb", "#66c2a5", "#fc8d62"])
        ax.set_ylabel("per second")
        ax.set_title("One worker, concurrency 2")
        fig.tight_layout()
        written.append(_save(fig, out_dir / "payments.png"))

    if results.get("lines") or results.get("reconcile"):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        if results.get("lines"):
            lines = ["1", "10", "50"]
            ax1.plot(lines, [_get(results, "lines", n, "p50_ms") or 0 for n in lines], "o-", label="p50")
            ax1.plot(lines, [_get(results, "lines", n, "p99_ms") or 0 for n in lines], "s--", label="p99")
            ax1.set_xlabel("lines in the cart")
            ax1.set_ylabel("ms")
            ax1.set_title("POST /orders latency, 1 connection")
            ax1.legend()
        recon = results.get("reconcile") or {}
        if recon:
            sizes = sorted(recon, key=int)
            xs = [int(s) for s in sizes]
            ax2.plot(xs, [recon[s]["run_seconds"] for s in sizes], "o-", color="#fc8d62", label="seconds")
            ax2.set_xscale("log")
            ax2.set_yscale("log")
            ax2.set_xlabel("products")
            ax2.set_ylabel("seconds (reconciliation run)")
            twin = ax2.twinx()
            twin.plot(
                xs, [recon[s]["peak_rss_mb"] for s in sizes], "s--", color="#8da0cb", label="peak RSS MB"
            )
            twin.set_ylabel("peak RSS (MB)")
            twin.set_ylim(0, max(recon[s]["peak_rss_mb"] for s in sizes) * 1.4 or 1)
            ax2.set_title("reconcile-stock")
            ax2.legend(loc="upper left")
            twin.legend(loc="lower right")
        fig.tight_layout()
        written.append(_save(fig, out_dir / "scaling.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def write(results: dict[str, Any], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    results["ratios"] = ratios(results)
    paths = [out_dir / "results.json", out_dir / "results.md"]
    paths[0].write_text(json.dumps(results, indent=2, default=str) + "\n")
    try:
        paths += charts(results, out_dir)
    except ImportError:
        print("matplotlib is missing (make install): no charts", file=sys.stderr)
    paths[1].write_text(markdown(results))
    return paths


if __name__ == "__main__":
    source = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/bench/results.json")
    data = json.loads(source.read_text())
    for p in write(data, source.parent):
        print(p)
