"""Vigil under minutes of sustained webhook load: memory and latency stay flat (issue 9).

Goals (from the issue, a noisy Alertmanager's load for five minutes):

* `rss_growth_ratio`: the agent's mean VmRSS in the last minute / in the first minute, <= 1.05.
* `p99_growth_ratio`: the webhook's p99 latency in the last minute / in the first minute, <= 1.1.
  Judged only when the other processes on the machine used about as much CPU in both minutes
  (within 0.25 cores, the `others` column); otherwise it is reported as not judged.
* Nothing lost and every answer 2xx: checked, not a ratio; any failure makes the exit code 1.

Method:

* The real agent runs as a subprocess (`python -m agent run`) in a private data directory with
  the configuration of `benchmarks/degradation.py` (`_agent.agent_config`: one disk check, the
  webhook with a Bearer token, rule `alertname="DemoDown"` -> `minimal`, `hold_seconds: 0`, a
  flap guard that never trips), over `--store` (default `sqlite`, set explicitly; `redis`
  starts a private redis-server from tests/harness; the choices are those the agent's config
  model accepts).
* A load generator, its own process (`_degradation_services.py soak`), keeps `--concurrency`
  (8) keep-alive clients posting as fast as the agent answers: the captured Alertmanager 0.25
  payload, one alert each, for `--alerts` (40) fingerprints shared out among the clients; each
  client fires its alerts in a new episode (a later `startsAt`), then resolves them, and again,
  so every request is a stored change (its 2xx waits for the durable commit). After a
  `--warmup-seconds` (10) warm-up it runs `--seconds` (300), recording each answer's latency
  and status by the second it ended in.
* Meanwhile this process reads `/metrics` and `/health` every `--poll-seconds` (0.5) and samples
  every second the agent's `/proc/PID/status` (VmRSS, RssAnon, RssFile, Threads), its CPU time,
  the load generator's, and the machine's busy time (`/proc/stat`). Per `--window-seconds` (60):
  2xx answers per second, p50 / p99 / max latency, mean RSS, the agent's CPU milliseconds per
  answer and cores, and `others`: the cores every other process on the machine used. On a
  shared machine a p99 that grows together with `others` is contention, not the agent; CPU per
  answer is the steadier sign of work that grows with the number of webhooks.
* Checks: every webhook answer is 200 with `changes` exactly `fired` / `resolved`, each with a
  version of its own; every `/metrics` and `/health` answer is 2xx; and nothing is lost: for
  each alert, the agent's state matches its last acknowledged change (an alert last fired is
  active with that `startsAt`; one last resolved is not active, and a `firing` of the episode
  it resolved answers `stale`, so the resolve is remembered) -- once on the running agent, and
  again on an agent restarted over the same store, which must serve the same version.
* Soaked against fresh (`--paired-blocks N`, default 0: off): after the soak, the soaked agent
  and a fresh one (its own data directory, same store) take the same load in alternating blocks
  of `--paired-seconds` (20) after a 2 s warm-up each, ABBA..., so that the machine's other load
  falls on both alike. `aged_p99_ratio` and `aged_cpu_ratio` (soaked / fresh, medians of the
  blocks) say whether the agent got slower with the webhooks it took, where a shared machine
  makes the first and the last minute hard to compare.
* Anchor: the bare aiohttp handler (`_degradation_services.py bare`: `json.loads` of the body,
  200 `{}`) under the same load, for `--anchor-seconds` (default 120, two windows, to keep the
  run near eight minutes; pass `--anchor-seconds 300` for the same length), so one can see
  whether growth is the agent's or aiohttp's. It is the same load generator, so the anchor's
  ratios show what the client and the box contribute as well. `--no-anchor` skips it.

Everything binds 127.0.0.1 on free ports; every process started here is stopped by PID on the
way out, errors included. `--json` makes the last line of the output one JSON object. Exit codes:
0 done (goals met or not), 1 something failed a check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from _agent import STORES, helper_env, start_agent, start_bare
from _common import BenchError, Services, http_get, print_ratios, say, stop_on_signals
from _degradation_services import fixture_body, payload
from _soak_measure import SideRun, measure

REPO = Path(__file__).resolve().parents[1]
GOALS = {"rss_growth_ratio": 1.05, "p99_growth_ratio": 1.1}  # at most
# The p99 goal is judged only when the rest of the machine took about as much CPU in the last
# window as in the first: on a shared 2-core machine a neighbour's burst moves p99 by 2-3x.
STEADY_CORES = 0.25
EPOCH = 1_800_000_000.0  # startsAt of the first episode


# --- the run ------------------------------------------------------------------------------


class Soak:
    """The processes of one run and the measurement of each side."""

    def __init__(self, services: Services, workdir: Path, args: Any) -> None:
        self.services, self.workdir, self.args = services, workdir, args
        self.token = f"bench-{os.getpid()}-{time.time_ns()}"
        self.env = helper_env(self.token)
        self.redis: Any = None

    # --- the agent --------------------------------------------------------------------------

    def run_agent(self) -> tuple[SideRun, dict[str, Any], dict[str, Any] | None]:
        """The agent under the load, the soaked agent against a fresh one (--paired-blocks),
        then the checks that nothing was lost."""
        args = self.args
        redis_url = ""
        if args.store == "redis":
            redis_url = self._start_redis()
        data = self.workdir / "agent-data"
        proc, port = start_agent(
            self.services, self.workdir, self.token, args.store, data, redis_url
        )
        say(args, f"agent pid {proc.pid} port {port}, store {args.store}; {args.seconds} s")
        run = measure(self.services, self.env, "agent", (proc, port), args.seconds, EPOCH, args)
        problems = self.answers_problems(run.tally)
        if run.polls is not None and run.polls.first_bad:
            problems.append(f"reading /metrics or /health: {run.polls.first_bad}")
        problems += self.state_problems(port, self.state(port), run.tally)
        acknowledged = {"versions": dict(run.tally["versions"]), "last_acknowledged": {}}
        acknowledged["last_acknowledged"].update(run.tally["last_acknowledged"])
        paired = None
        if args.paired_blocks:
            paired, blocks = self.paired((proc, port), redis_url)
            for tally in blocks:  # later episodes than the soak's: they are the last ones now
                problems += self.answers_problems(tally)
                acknowledged["last_acknowledged"].update(tally["last_acknowledged"])
                last = tally["versions"]["last"]
                acknowledged["versions"]["last"] = max(acknowledged["versions"]["last"], last)
        # Read after the probes: with the flap window this short, even a `stale` one may store
        # a version (the level's change times leave the window).
        before = self.state(port)
        size = sum(f.stat().st_size for f in data.glob("*") if f.is_file())
        self.services.procs.remove(("agent", proc))
        self.services.stop(proc)
        say(args, "restarting the agent over the same store")
        proc, port = start_agent(
            self.services, self.workdir, self.token, args.store, data, redis_url
        )
        after = self.state(port)
        # One more version is the clock tick's (it prunes the flap guard's history), should one
        # have fallen between the read and the stop.
        if not 0 <= after["version"] - before["version"] <= 1:
            problems.append(f"restarted at version {after['version']}, not {before['version']}")
        restarted = self.state_problems(port, after, acknowledged)
        problems += [f"after restart: {p}" for p in restarted]
        checks = {
            "acknowledged_changes": run.tally["versions"]["count"],
            "final_version": before["version"],
            "restarted_version": after["version"],
            "alerts_checked": len(acknowledged["last_acknowledged"]),
            "data_dir_bytes": size,
            "problems": problems,
        }
        return run, checks, paired

    def paired(
        self, soaked: tuple[subprocess.Popen[bytes], int], redis_url: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The soaked agent against a fresh one (its own store) in alternating blocks, so that
        the machine's other load falls on both alike; medians, and the soaked agent's tallies."""
        args = self.args
        seconds = args.paired_seconds
        fresh = start_agent(
            self.services,
            self.workdir,
            self.token,
            args.store,
            self.workdir / "fresh-data",
            redis_url,
        )
        # Both agents are warm already (the fresh one from its start-up): a short warm-up.
        block_args = argparse.Namespace(
            **{**vars(args), "window_seconds": seconds, "warmup_seconds": 2}
        )
        rows: dict[str, list[dict[str, Any]]] = {"soaked": [], "fresh": []}
        tallies = []
        try:
            for block in range(args.paired_blocks):
                order = [("soaked", soaked), ("fresh", fresh)]
                for name, server in order if block % 2 == 0 else order[::-1]:
                    say(args, f"paired block {block + 1}/{args.paired_blocks}: {name}, {seconds} s")
                    epoch = EPOCH + 10_000_000 * (1 + block)  # later than every earlier episode
                    run = measure(
                        self.services, self.env, "agent", server, seconds, epoch, block_args
                    )
                    rows[name].append(run.windows()[0])
                    if name == "soaked":
                        tallies.append(run.tally)
        finally:
            self.services.procs.remove(("agent", fresh[0]))
            self.services.stop(fresh[0])

        def median(name: str, key: str) -> float:
            return statistics.median(row[key] for row in rows[name])

        summary = {
            "aged_p99_ratio": median("soaked", "p99_ms") / median("fresh", "p99_ms"),
            "aged_cpu_ratio": median("soaked", "cpu_ms_per_answer")
            / median("fresh", "cpu_ms_per_answer"),
            "blocks": args.paired_blocks,
            "block_seconds": seconds,
        }
        for name in rows:
            for key in ("p50_ms", "p99_ms", "per_second", "cpu_ms_per_answer", "rss_mb"):
                summary[f"{name}_{key}"] = median(name, key)
        return summary, tallies

    def _start_redis(self) -> str:
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        from tests.harness.redis import RedisServer

        self.redis = RedisServer()
        self.redis.start()
        return str(self.redis.url())

    def state(self, port: int) -> dict[str, Any]:
        """`GET /api/v1/degradation`."""
        return dict(json.loads(http_get(f"http://127.0.0.1:{port}/api/v1/degradation")))

    @staticmethod
    def answers_problems(tally: dict[str, Any]) -> list[str]:
        """What is wrong with the webhook answers as the load generator saw them."""
        problems = []
        if tally["bad"] or tally["errors"]:
            problems.append(
                f"{tally['bad']} wrong answers, {tally['errors']} failed requests:"
                f" {tally['first_bad']}"
            )
        versions = tally["versions"]
        if versions["distinct"] != versions["count"]:
            problems.append(
                f"{versions['count']} acknowledgements share {versions['distinct']} versions"
            )
        return problems

    def state_problems(self, port: int, state: dict[str, Any], tally: dict[str, Any]) -> list[str]:
        """Where the agent's state differs from each alert's last acknowledged change."""
        problems = []
        last_version = tally["versions"]["last"]
        if last_version is not None and state["version"] < last_version:
            problems.append(f"state at version {state['version']} < acknowledged {last_version}")
        active = {a["fingerprint"]: a["starts_at"] for a in state["active_alerts"]}
        base = fixture_body()
        url = f"http://127.0.0.1:{port}/webhooks/alertmanager"
        for fingerprint, (status, starts_text, _) in tally["last_acknowledged"].items():
            starts = dt.datetime.fromisoformat(starts_text)
            held = active.pop(fingerprint, None)
            if status == "firing" and held != starts.timestamp():
                problems.append(f"{fingerprint}: last fired at {starts_text}, agent holds {held}")
            if status == "resolved" and held is not None:
                problems.append(f"{fingerprint}: last resolved, agent holds it firing")
            # A firing of the acknowledged episode again must change nothing: `stale` proves the
            # resolve is remembered, `duplicate` that the firing is held.
            want = {"stale": 1} if status == "resolved" else {"duplicate": 1}
            answer = self.post(url, payload(base, fingerprint, starts, firing=True))
            if answer.get("changes") != want:
                problems.append(f"{fingerprint}: a repeat of its last episode answered {answer}")
        problems += [f"{fp}: active, never acknowledged firing" for fp in active]
        return problems

    def post(self, url: str, body: bytes) -> dict[str, Any]:
        """POST one webhook body with the token; the JSON answer (with its status)."""
        request = urllib.request.Request(  # noqa: S310 - an http:// loopback URL built here
            url,
            data=body,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=10) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            return {"status": exc.code, "body": exc.read()[:300].decode(errors="replace")}

    # --- the anchor -------------------------------------------------------------------------

    def run_anchor(self) -> SideRun:
        """The bare aiohttp handler under the same load for --anchor-seconds."""
        proc, port = start_bare(self.services)
        say(self.args, f"bare pid {proc.pid} port {port}; {self.args.anchor_seconds} s")
        try:
            seconds = self.args.anchor_seconds
            run = measure(self.services, self.env, "bare", (proc, port), seconds, EPOCH, self.args)
        finally:
            self.services.procs.remove(("bare", proc))
            self.services.stop(proc)
        if run.tally["bad"] or run.tally["errors"]:
            raise BenchError(f"bare: {run.tally['first_bad']}")
        return run

    def stop_redis(self) -> None:
        """Stop the private Redis, if one was started."""
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


# --- report ---------------------------------------------------------------------------------


def summarize(
    agent: SideRun,
    checks: dict[str, Any],
    paired: dict[str, Any] | None,
    anchor: SideRun | None,
    args: Any,
) -> dict[str, Any]:
    """The JSON summary: ratios first, then the figures behind them."""
    vigil = agent.summary()
    summary: dict[str, Any] = {
        key: vigil[key]
        for key in (
            "rss_growth_ratio",
            "p99_growth_ratio",
            "throughput_ratio",
            "cpu_growth_ratio",
            "rss_first_mb",
            "rss_last_mb",
            "p99_first_ms",
            "p99_last_ms",
            "throughput_first_per_s",
            "throughput_last_per_s",
            "throughput_mean_per_s",
            "requests",
            "answered_2xx",
            "non_2xx",
            "errors",
        )
    }
    summary["polls_non_2xx"] = vigil["polls_non_2xx"]
    summary["problems"] = len(checks["problems"])
    if anchor is not None:
        bare = anchor.summary()
        summary["anchor_rss_growth_ratio"] = bare["rss_growth_ratio"]
        summary["anchor_p99_growth_ratio"] = bare["p99_growth_ratio"]
        summary["anchor_cpu_growth_ratio"] = bare["cpu_growth_ratio"]
        summary["p99_ratio_last"] = vigil["p99_last_ms"] / bare["p99_last_ms"]
    if paired is not None:
        summary["aged_p99_ratio"] = paired["aged_p99_ratio"]
        summary["aged_cpu_ratio"] = paired["aged_cpu_ratio"]
    summary["other_cores_first"] = vigil["other_cores_first"]
    summary["other_cores_last"] = vigil["other_cores_last"]
    steady = abs(vigil["other_cores_last"] - vigil["other_cores_first"]) <= STEADY_CORES
    summary["goals"] = GOALS
    summary["goals_met"] = {
        "rss_growth_ratio": summary["rss_growth_ratio"] <= GOALS["rss_growth_ratio"],
        # None: not judged, the machine's other load changed between the two windows.
        "p99_growth_ratio": summary["p99_growth_ratio"] <= GOALS["p99_growth_ratio"]
        if steady
        else None,
    }
    summary["agent"] = vigil
    summary["checks"] = checks
    summary["paired"] = paired
    summary["anchor"] = anchor.summary() if anchor is not None else None
    summary["settings"] = {
        "store": args.store,
        "seconds": args.seconds,
        "anchor_seconds": args.anchor_seconds if anchor is not None else 0,
        "window_seconds": args.window_seconds,
        "warmup_seconds": args.warmup_seconds,
        "concurrency": args.concurrency,
        "alerts": args.alerts,
        "poll_seconds": args.poll_seconds,
        "paired_blocks": args.paired_blocks,
        "paired_seconds": args.paired_seconds,
    }
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "python": platform.python_version(),
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith(("MALLOC_", "PYTHON"))},
    }
    return summary


def print_report(summary: dict[str, Any]) -> None:
    """The readable report."""
    s = summary["settings"]
    print(
        f"\nSoak: {s['concurrency']} clients, {s['alerts']} alerts firing and resolving (a new"
        f" episode each time), /metrics and /health every {s['poll_seconds']:g} s;"
        f" store {s['store']}, {s['warmup_seconds']:g} s warm-up"
    )
    head = f"{'side':<7}{'window s':>10}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
    head += f"{'RSS MB':>8}{'anon MB':>9}{'thr':>5}{'CPU ms/req':>12}{'cores':>7}{'others':>8}"
    head += f"{'/metrics ms':>13}"
    print(head + "\n" + "-" * len(head))
    for side in ("agent", "anchor"):
        figures = summary[side]
        if figures is None:
            continue
        for row in figures["windows"]:
            first = row["from_second"]
            line = f"{'vigil' if side == 'agent' else 'bare':<7}"
            span = f"{first}-{first + s['window_seconds']}"
            line += f"{span:>10}{row['per_second']:>8.0f}"
            line += f"{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}{row['max_ms']:>8.1f}"
            line += f"{row['rss_mb']:>8.1f}{row['anon_mb']:>9.1f}{row['threads']:>5}"
            line += f"{row['cpu_ms_per_answer']:>12.3f}{row['server_cores']:>7.2f}"
            line += f"{row['other_cores']:>8.2f}"
            line += f"{row['metrics_ms']:>13.1f}" if "metrics_ms" in row else ""
            print(line)
    c, a = summary["checks"], summary["agent"]
    print(
        f"\nvigil: {a['requests']} webhooks, {a['answered_2xx']} answered 2xx, {a['non_2xx']}"
        f" non-2xx, {a['errors']} failed; /metrics and /health: {a['polls']};"
        f" {c['acknowledged_changes']} changes acknowledged, state at version"
        f" {c['final_version']}, {c['restarted_version']} after a restart;"
        f" data dir {c['data_dir_bytes'] / 2**20:.0f} MB"
    )
    for problem in c["problems"][:20]:
        print(f"  PROBLEM: {problem}")
    p = summary["paired"]
    if p is not None:
        print(
            f"\nsoaked agent against a fresh one, {p['blocks']} blocks of {p['block_seconds']} s"
            " each, alternating (medians)"
        )
        for name in ("soaked", "fresh"):
            print(
                f"  {name:<7} {p[f'{name}_per_second']:>6.0f} req/s  p50 {p[f'{name}_p50_ms']:.2f}"
                f" ms  p99 {p[f'{name}_p99_ms']:.2f} ms  CPU {p[f'{name}_cpu_ms_per_answer']:.3f}"
                f" ms/req  RSS {p[f'{name}_rss_mb']:.1f} MB"
            )
    print("\nratios (goal)")
    rows = [
        ("rss_growth_ratio", f"<= {GOALS['rss_growth_ratio']}, last / first window"),
        ("p99_growth_ratio", f"<= {GOALS['p99_growth_ratio']}, last / first window"),
        ("throughput_ratio", "info, last / first window"),
        ("cpu_growth_ratio", "info, agent CPU per answer, last / first window"),
        ("anchor_rss_growth_ratio", "info, the bare aiohttp handler"),
        ("anchor_p99_growth_ratio", "info, the bare aiohttp handler"),
        ("anchor_cpu_growth_ratio", "info, the bare aiohttp handler"),
        ("p99_ratio_last", "info, vigil / bare p99 in their last windows"),
        ("aged_p99_ratio", "info, the soaked agent / a fresh one, in alternating blocks"),
        ("aged_cpu_ratio", "info, CPU per answer, the soaked agent / a fresh one"),
    ]
    print_ratios(summary, rows, 26, "8.3f")
    if summary["goals_met"]["p99_growth_ratio"] is None:
        print(
            "  p99_growth_ratio not judged: other processes used"
            f" {summary['other_cores_first']:.2f} cores in the first window and"
            f" {summary['other_cores_last']:.2f} in the last"
            f" (more than {STEADY_CORES} apart)"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="measured load on vigil (300)")
    parser.add_argument("--window-seconds", type=int, default=60, help="report window (60)")
    parser.add_argument("--warmup-seconds", type=float, default=10, help="unmeasured first (10)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients (8)")
    parser.add_argument("--alerts", type=int, default=40, help="alert fingerprints (40)")
    parser.add_argument("--poll-seconds", type=float, default=0.5, help="/metrics, /health (0.5)")
    parser.add_argument("--store", choices=STORES, default="sqlite", help="state store (sqlite)")
    parser.add_argument(
        "--anchor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the bare aiohttp handler under the same load (on)",
    )
    parser.add_argument("--anchor-seconds", type=int, default=120, help="the anchor's load (120)")
    parser.add_argument(
        "--paired-blocks",
        type=int,
        default=0,
        help="after the soak, blocks on the soaked agent and on a fresh one, alternating (0)",
    )
    parser.add_argument("--paired-seconds", type=int, default=20, help="per paired block (20)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.alerts < args.concurrency:
        parser.error("--concurrency must be at least 1 and --alerts at least --concurrency")
    if args.window_seconds < 2:
        parser.error("--window-seconds must be at least 2")
    for name in ("seconds", "anchor_seconds"):
        if getattr(args, name) < 2 * args.window_seconds:
            parser.error(f"--{name.replace('_', '-')} must be at least two windows")
    if args.paired_blocks < 0 or args.paired_seconds < 2:
        parser.error("--paired-blocks must not be negative and --paired-seconds at least 2")
    if args.poll_seconds <= 0 or args.warmup_seconds < 0:
        parser.error("--poll-seconds must be positive and --warmup-seconds not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the soak on the agent (and the anchor) and print the report."""
    args = parse_args(argv)
    stop_on_signals()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-soak-") as tmp:
        workdir = Path(tmp)
        services = Services(workdir)
        soak = Soak(services, workdir, args)
        try:
            agent, checks, paired = soak.run_agent()
            services.stop_all()
            anchor = soak.run_anchor() if args.anchor else None
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        finally:
            say(args, f"stopped pids {services.stop_all()}")
            soak.stop_redis()
    summary = summarize(agent, checks, paired, anchor, args)
    print_report(summary)
    if args.json:
        print(json.dumps(summary), flush=True)
    failed = (
        summary["non_2xx"] or summary["errors"] or summary["polls_non_2xx"] or summary["problems"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
