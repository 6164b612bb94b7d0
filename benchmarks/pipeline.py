"""Time from a fault to the agent's level change, through the real alerting pipeline.

Goal (from the issue): the time from the fault to the level change is <= 1.3x the pipeline floor,
scrape interval + evaluation interval + `for` + `group_wait`
(`detection_ratio = median(detection_seconds) / floor_seconds`).

Method: the loop of tests/e2e/test_alerting_loop.py, on loopback.

* A private Redis (tests/harness/redis.py) is the `session-cache` check's target.
* The agent runs as a subprocess (`python -m agent run --config FILE`) on the degradation section
  of docs/examples/degradation.yaml, derived as the e2e test derives it: no `alertmanager:`
  reconciler, `hold_seconds: 3`, `tick_seconds: 0.2`, the `session-cache` redis check at
  `interval_seconds: 1`, `timeout_seconds: 0.5`, no password; API_TOKEN in its environment.
* Alertmanager runs the shipped alerts/alertmanager.yml, transformed as the e2e test does
  (`_test_config`: group_wait 0s, group_interval 1s; PagerDuty -> a capture server in a thread;
  the vigil-agent webhook -> the agent, with its Bearer token from a file).
* Prometheus scrapes the agent every 1 s, evaluates every 1 s, `--rules.alert.resend-delay=1s`,
  on the shipped alerts/*.rules.yml with every `for:` set to 0s in memory except the error-budget
  burn alerts', which keep theirs (as in the e2e test).

Per repeat, a fresh Prometheus (so the burn alerts, pending since the previous outage, never
reach their shipped `for: 2m`, whatever `--repeat` is). Before the kill: Prometheus has
discovered the Alertmanager (`/api/v1/alertmanagers`), has scraped the agent at least twice,
sees the check healthy and no alert for it; the agent's level is `full`. Then t0 is taken and
Redis is SIGKILLed; the agent's `GET /api/v1/degradation` is polled every 50 ms until the level
is `degraded` (detection), and `/health` on the same loop (when the check first reports the
fault); the PagerDuty trigger's arrival is timestamped by the capture server. Then Redis is
restarted on the same port and the run waits for the PagerDuty resolve and the level `full`
again (after the 3 s hold). Medians over `--repeat`.

The floor is exactly the issue's: scrape + evaluation + `for` (of VigilCriticalCheckUnhealthy,
as loaded) + `group_wait` (of the vigil-agent route that matches the alert, in the config
Alertmanager actually loads). `detection_ratio_with_check_interval` adds the check interval to
the floor, for information: the fault must first be seen by the check.

Everything binds 127.0.0.1; every process started here is stopped by PID on the way out and every
temp dir removed. `--json` makes the last stdout line one JSON object. Exit codes: 0 measured
(goal met or not), 1 something failed, 2 a required binary is missing.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from _common import BenchError, say, stop_on_signals  # noqa: E402

from tests.contract.test_alertmanager_config import (  # noqa: E402
    AGENT,
    POLICY,
    RULE_FILES,
    _Capture,
    _test_config,
)
from tests.harness.agent_process import (  # noqa: E402
    AgentProcess,
    start_agent_process,
    stop_agent_process,
)
from tests.harness.alertmanager import BINARY as ALERTMANAGER_BINARY  # noqa: E402
from tests.harness.alertmanager import AlertmanagerServer  # noqa: E402
from tests.harness.binaries import find  # noqa: E402
from tests.harness.httpclient import get, get_json  # noqa: E402
from tests.harness.prometheus import PrometheusServer  # noqa: E402
from tests.harness.redis import RedisServer  # noqa: E402

TOKEN = "bench-Pipeline-Token-5521"  # noqa: S105 (a loopback-only test token)
CHECK = "session-cache"
ALERT = "VigilCriticalCheckUnhealthy"
KEEP_FOR = "VigilCheckErrorBudgetBurn"
SCRAPE_SECONDS = 1.0
EVAL_SECONDS = 1.0
CHECK_INTERVAL = 1.0
CHECK_TIMEOUT = 0.5
HOLD_SECONDS = 3.0
TICK_SECONDS = 0.2
POLL_SECONDS = 0.05
GOAL = 1.3


class TimedRequests(list[dict[str, Any]]):
    """The capture server's request list, stamping each request's arrival (`time.monotonic()`)."""

    def append(self, item: dict[str, Any]) -> None:
        """Record `item` with its arrival time under `at`."""
        super().append({**item, "at": time.monotonic()})


# --- configuration, derived as tests/e2e/test_alerting_loop.py derives it -------------------------


def _duration(text: str | None) -> float:
    """Seconds of a Prometheus/Alertmanager duration such as `0s`, `1m30s`, `500ms`."""
    if not text:
        return 0.0
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|[smhdwy])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise BenchError(f"cannot parse duration {text!r}")
    return sum(int(n) * units[u] for n, u in parts)


def agent_config(redis_url: str, data_dir: Path) -> dict[str, Any]:
    """The example policy's degradation section and redis check, made fast and local."""
    example = yaml.safe_load(POLICY.read_text())
    degradation = dict(example["degradation"])
    degradation.pop("alertmanager")  # no reconciler against the production address
    degradation |= {"hold_seconds": HOLD_SECONDS, "tick_seconds": TICK_SECONDS}
    check = next(c for c in example["checks"] if c["name"] == CHECK)
    check = {k: v for k, v in check.items() if k != "password_env"}
    check |= {
        "url": redis_url,
        "interval_seconds": CHECK_INTERVAL,
        "timeout_seconds": CHECK_TIMEOUT,
    }
    return {
        "telemetry": {},
        "degradation": degradation,
        "agent": {
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "startup_grace_seconds": 0,
            "data_dir": str(data_dir),
            "shutdown_grace_seconds": 3,
        },
        "checks": [check],
    }


def alertmanager_config(sink: _Capture, secrets: Path, agent_port: int) -> dict[str, Any]:
    """The shipped config (fast timers, PD -> sink), its agent webhook -> the real agent."""
    config: dict[str, Any] = yaml.safe_load(_test_config(sink, secrets))
    (secrets / "webhook-token").write_text(TOKEN + "\n")
    webhook = next(r for r in config["receivers"] if r["name"] == AGENT)["webhook_configs"][0]
    webhook["url"] = f"http://127.0.0.1:{agent_port}/webhooks/alertmanager"
    return config


def agent_route_group_wait(config: dict[str, Any]) -> float:
    """`group_wait` of the vigil-agent route that takes the session-cache alert (as loaded)."""
    root = config["route"]
    for route in root.get("routes", []):
        matchers = " ".join(route.get("matchers", []))
        if route.get("receiver") == AGENT and ALERT in matchers and CHECK in matchers:
            return _duration(route.get("group_wait", root.get("group_wait", "30s")))
    raise BenchError(f"no {AGENT} route for {ALERT} check={CHECK} in the Alertmanager config")


def rules_overlay() -> tuple[dict[str, str], float]:
    """Every shipped rule file with each `for:` at 0s (burn alerts excepted); the alert's `for`."""
    overlay = {}
    alert_for: float | None = None
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "for" in rule and not rule.get("alert", "").startswith(KEEP_FOR):
                    rule["for"] = "0s"
                if rule.get("alert") == ALERT:
                    alert_for = _duration(rule.get("for"))
        overlay[path.name] = yaml.safe_dump(doc, sort_keys=False)
    if alert_for is None:
        raise BenchError(f"{ALERT} is not in {[p.name for p in RULE_FILES]}")
    return overlay, alert_for


def prometheus_config(agent_port: int, am_url: str) -> str:
    """Scrape the agent every second, evaluate every second, alert to the private Alertmanager."""
    return yaml.safe_dump(
        {
            "global": {
                "scrape_interval": f"{SCRAPE_SECONDS:g}s",
                "evaluation_interval": f"{EVAL_SECONDS:g}s",
            },
            "rule_files": [path.name for path in RULE_FILES],
            "alerting": {
                "alertmanagers": [
                    {"static_configs": [{"targets": [am_url.removeprefix("http://")]}]}
                ]
            },
            "scrape_configs": [
                {"job_name": "vigil", "static_configs": [{"targets": [f"127.0.0.1:{agent_port}"]}]}
            ],
        }
    )


# --- probes ---------------------------------------------------------------------------------------


class Pipeline:
    """The running services, and the probes the measurement polls."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.redis = RedisServer()
        self.sink = _Capture()
        self.sink.requests = TimedRequests()
        self.agent: AgentProcess | None = None
        self.agent_url = ""
        self.am: AlertmanagerServer | None = None
        self.am_config: dict[str, Any] = {}
        self.prom: PrometheusServer | None = None
        self.overlay: dict[str, str] = {}
        self.alert_for = 0.0

    def start(self) -> None:
        """Redis, the PD sink, the agent, Alertmanager (Prometheus starts per repeat)."""
        say(self.args, "starting redis, the PagerDuty sink, the agent, alertmanager")
        self.redis.start()
        self.sink.start()
        config = agent_config(self.redis.url(), self.workdir / "agent" / "data")
        self.agent = start_agent_process(self.workdir / "agent", config, {"API_TOKEN": TOKEN})
        self.agent_url = self.agent.url.rstrip("/")
        port = int(self.agent_url.rsplit(":", 1)[1])
        secrets = self.workdir / "secrets"
        secrets.mkdir()
        self.am_config = alertmanager_config(self.sink, secrets, port)
        self.am = AlertmanagerServer(yaml.safe_dump(self.am_config, sort_keys=False))
        self.am.start()
        self.overlay, self.alert_for = rules_overlay()

    def start_prometheus(self) -> None:
        """A fresh Prometheus on the agent and the Alertmanager."""
        assert self.am is not None
        assert self.agent is not None
        port = int(self.agent_url.rsplit(":", 1)[1])
        self.prom = PrometheusServer(
            prometheus_config(port, self.am.url),
            self.overlay,
            ["--rules.alert.resend-delay=1s"],
        )
        self.prom.start()

    def stop_prometheus(self) -> None:
        """Stop the current Prometheus (by PID) and remove its directory."""
        if self.prom is not None:
            self.prom.stop()
            self.prom = None

    def stop(self) -> list[str]:
        """Stop everything started here, newest first; what was stopped."""
        stopped = []
        if self.prom is not None:
            stopped.append(f"prometheus {self._pid(self.prom)}")
            self.stop_prometheus()
        if self.am is not None:
            stopped.append(f"alertmanager {self._pid(self.am)}")
            self.am.stop()
            self.am = None
        if self.agent is not None:
            stopped.append(f"agent {self.agent.proc.pid}")
            stop_agent_process(self.agent)
            self.agent = None
        self.sink.stop()
        if self.redis.pid is not None:
            stopped.append(f"redis-server {self.redis.pid}")
        self.redis.cleanup()
        return stopped

    @staticmethod
    def _pid(server: Any) -> int | None:
        proc = getattr(server, "_proc", None)
        return None if proc is None else proc.pid

    def level(self) -> str:
        """The agent's degradation level (`GET /api/v1/degradation`)."""
        return str(get_json(f"{self.agent_url}/api/v1/degradation", timeout=2.0)["level"])

    def check_status(self) -> str:
        """The session-cache check's status in the agent's `/health` (200 or 503 alike)."""
        _, body = get(f"{self.agent_url}/health", timeout=2.0)
        doc = json.loads(body)
        return str(next(c["status"] for c in doc["checks"] if c["name"] == CHECK))

    def pd_events(self, action: str, after: float) -> list[dict[str, Any]]:
        """PD events `action` for the session-cache alert that arrived after `after`."""
        return [
            r
            for r in list(self.sink.requests)
            if r["path"] == "/pd"
            and r["at"] > after
            and r["body"].get("event_action") == action
            and r["body"].get("payload", {}).get("class") == ALERT
            and r["body"].get("payload", {}).get("component") == CHECK
        ]

    def steady(self) -> str | None:
        """None when the pipeline is in steady state before a kill; else what is missing."""
        assert self.prom is not None
        assert self.am is not None
        managers = get_json(f"{self.prom.url}/api/v1/alertmanagers")["data"]["activeAlertmanagers"]
        if not any(m["url"].startswith(self.am.url) for m in managers):
            return "prometheus has not discovered alertmanager"
        scrapes = self.prom.query('count_over_time(up{job="vigil"}[5m])')
        if not scrapes or float(scrapes[0]["value"][1]) < 2:
            return "prometheus has not scraped the agent twice"
        healthy = self.prom.query(f'vigil_check_status{{check="{CHECK}", state="healthy"}} == 1')
        if not healthy:
            return "prometheus does not see the check healthy"
        alerts = [a for a in self.prom.alerts() if a["labels"].get("check") == CHECK]
        if alerts:
            return (
                f"prometheus has alerts for the check: {[a['labels']['alertname'] for a in alerts]}"
            )
        if self.check_status() != "healthy":
            return "the agent's check is not healthy"
        if self.level() != "full":
            return "the agent's level is not full"
        return None


def wait(probe: Callable[[], Any], what: str, within: float, interval: float = 0.2) -> Any:
    """Poll `probe` until it answers something true; that answer. BenchError after `within`."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise BenchError(f"{what} did not happen within {within:g} s (last: {last!r})")


# --- the measurement ------------------------------------------------------------------------------


def run_once(pipe: Pipeline, index: int) -> dict[str, float]:
    """One fault: kill Redis, time check / PD trigger / level change; recover."""
    args = pipe.args
    say(args, f"repeat {index + 1}/{args.repeat}: fresh prometheus, waiting for steady state")
    pipe.start_prometheus()
    try:
        missing: list[str | None] = [None]

        def ready() -> bool:
            missing[0] = pipe.steady()
            return missing[0] is None

        try:
            wait(ready, "steady state", args.settle_timeout)
        except BenchError as exc:
            raise BenchError(f"{exc}: {missing[0]}") from exc
        time.sleep(args.settle)  # a few more scrapes and evaluations on the healthy check

        t0 = time.monotonic()
        pipe.redis.kill()
        killed_at = time.monotonic()
        check_seen: float | None = None
        detected: float | None = None
        deadline = t0 + args.detect_timeout
        while detected is None and time.monotonic() < deadline:
            now = time.monotonic()
            if pipe.level() == "degraded":
                detected = time.monotonic()
                break
            if check_seen is None and pipe.check_status() != "healthy":
                check_seen = time.monotonic()
            time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - now)))
        if detected is None:
            raise BenchError(f"level not degraded within {args.detect_timeout:g} s of the kill")
        triggers = wait(
            lambda: pipe.pd_events("trigger", t0), "PagerDuty trigger", args.detect_timeout, 0.05
        )
        paged = float(triggers[0]["at"])
        result = {
            "detection_seconds": detected - t0,
            "pagerduty_seconds": paged - t0,
            "check_seconds": (check_seen if check_seen is not None else detected) - t0,
            "kill_call_seconds": killed_at - t0,
        }
        say(
            args,
            f"  kill -> check unhealthy {result['check_seconds']:.2f}s, "
            f"PD trigger {result['pagerduty_seconds']:.2f}s, "
            f"degraded {result['detection_seconds']:.2f}s",
        )

        restarted = time.monotonic()
        pipe.redis.start()
        resolves = wait(
            lambda: pipe.pd_events("resolve", restarted), "PagerDuty resolve", args.recover_timeout
        )
        wait(lambda: pipe.level() == "full", "level back to full", args.recover_timeout)
        recovered = time.monotonic()
        result["resolve_seconds"] = float(resolves[0]["at"]) - restarted
        result["recovery_seconds"] = recovered - restarted
        if result["recovery_seconds"] < HOLD_SECONDS:
            raise BenchError(f"level full after {result['recovery_seconds']:.2f}s, under the hold")
        say(
            args,
            f"  restart -> PD resolve {result['resolve_seconds']:.2f}s, "
            f"full {result['recovery_seconds']:.2f}s",
        )
        return result
    finally:
        pipe.stop_prometheus()


def version(binary: str) -> str:
    """The first line of `binary --version`."""
    path = find(binary)
    if path is None:
        return "missing"
    done = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return (done.stdout or done.stderr).strip().splitlines()[0]


def summarize(
    runs: list[dict[str, float]], pipe: Pipeline, group_wait: float, args: argparse.Namespace
) -> dict[str, Any]:
    """Medians, the floor and the ratios, per-repeat values, settings and versions."""
    floor = SCRAPE_SECONDS + EVAL_SECONDS + pipe.alert_for + group_wait
    med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return {
        "benchmark": "pipeline",
        "detection_seconds": round(med["detection_seconds"], 3),
        "detection_ratio": round(med["detection_seconds"] / floor, 3),
        "floor_seconds": floor,
        "goal_ratio": GOAL,
        "goal_met": med["detection_seconds"] / floor <= GOAL,
        "detection_ratio_with_check_interval": round(
            med["detection_seconds"] / (floor + CHECK_INTERVAL), 3
        ),
        "floor_with_check_interval_seconds": floor + CHECK_INTERVAL,
        "pagerduty_seconds": round(med["pagerduty_seconds"], 3),
        "pagerduty_ratio": round(med["pagerduty_seconds"] / floor, 3),
        "check_seconds": round(med["check_seconds"], 3),
        "resolve_seconds": round(med["resolve_seconds"], 3),
        "recovery_seconds": round(med["recovery_seconds"], 3),
        "repeats": [{k: round(v, 3) for k, v in r.items()} for r in runs],
        "settings": {
            "repeat": args.repeat,
            "scrape_interval_seconds": SCRAPE_SECONDS,
            "evaluation_interval_seconds": EVAL_SECONDS,
            "alert": ALERT,
            "alert_for_seconds": pipe.alert_for,
            "agent_route_group_wait_seconds": group_wait,
            "resend_delay_seconds": 1.0,
            "check_interval_seconds": CHECK_INTERVAL,
            "check_timeout_seconds": CHECK_TIMEOUT,
            "hold_seconds": HOLD_SECONDS,
            "tick_seconds": TICK_SECONDS,
            "poll_seconds": POLL_SECONDS,
            "settle_seconds": args.settle,
        },
        "versions": {
            "prometheus": version("prometheus"),
            "alertmanager": version(ALERTMANAGER_BINARY),
            "redis": version("redis-server"),
            "python": sys.version.split()[0],
        },
    }


def print_report(summary: dict[str, Any]) -> None:
    """A readable table of the repeats and the medians."""
    cols = [
        ("check_seconds", "check"),
        ("pagerduty_seconds", "PD trigger"),
        ("detection_seconds", "degraded"),
        ("resolve_seconds", "PD resolve"),
        ("recovery_seconds", "full"),
    ]
    print("fault -> (s)     " + "".join(f"{title:>12}" for _, title in cols))
    for i, run in enumerate(summary["repeats"], 1):
        print(f"repeat {i:<10}" + "".join(f"{run[key]:>12.3f}" for key, _ in cols))
    print("median           " + "".join(f"{summary[key]:>12.3f}" for key, _ in cols))
    print("(check/PD trigger/degraded from the kill; PD resolve/full from the restart)")
    s = summary["settings"]
    print(
        f"floor = scrape {s['scrape_interval_seconds']:g}s + evaluation "
        f"{s['evaluation_interval_seconds']:g}s + for {s['alert_for_seconds']:g}s + group_wait "
        f"{s['agent_route_group_wait_seconds']:g}s = {summary['floor_seconds']:g}s"
    )
    verdict = "met" if summary["goal_met"] else "NOT met"
    print(
        f"detection_ratio = {summary['detection_seconds']:.3f} / {summary['floor_seconds']:g}"
        f" = {summary['detection_ratio']:.3f}  (goal <= {summary['goal_ratio']}: {verdict})"
    )
    print(
        f"detection_ratio_with_check_interval = {summary['detection_seconds']:.3f} / "
        f"{summary['floor_with_check_interval_seconds']:g} = "
        f"{summary['detection_ratio_with_check_interval']:.3f}  (info)"
    )
    print(f"pagerduty_ratio = {summary['pagerduty_ratio']:.3f}  (info)")
    print(f"versions: {summary['versions']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="faults; medians reported (3)")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="extra steady seconds before each kill (3)"
    )
    parser.add_argument(
        "--settle-timeout", type=float, default=60.0, help="cap on reaching steady state (60)"
    )
    parser.add_argument(
        "--detect-timeout", type=float, default=40.0, help="cap on kill -> degraded/PD (40)"
    )
    parser.add_argument(
        "--recover-timeout", type=float, default=40.0, help="cap on restart -> resolve/full (40)"
    )
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the faults and print the report; the exit code says whether it measured."""
    args = parse_args(argv)
    missing = [b for b in ("redis-server", "prometheus", ALERTMANAGER_BINARY) if not find(b)]
    if missing:
        print(f"error: required binaries not found on PATH: {', '.join(missing)}", file=sys.stderr)
        return 2
    stop_on_signals()
    workdir = Path(tempfile.mkdtemp(prefix="vigil-bench-pipeline-"))
    pipe = Pipeline(args, workdir)
    runs: list[dict[str, float]] = []
    try:
        pipe.start()
        group_wait = agent_route_group_wait(pipe.am_config)
        for i in range(args.repeat):
            runs.append(run_once(pipe, i))
    except (BenchError, AssertionError, RuntimeError, OSError, ValueError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        if pipe.agent is not None:
            print(pipe.agent.log.read_text(errors="replace")[-1500:], file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        say(args, f"stopped {pipe.stop()}")
        shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(runs, pipe, group_wait, args)
    print_report(summary)
    if args.json:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
