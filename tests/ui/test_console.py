"""The operator console in a real headless Chromium against a real agent (a child process) with
real dependencies: what an operator sees and does, what a request without its credentials gets,
a screenshot of every page at a laptop's and a phone's size (test-artifacts/console/), axe-core's
accessibility check of each, and every control reached with the keyboard."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyrage  # type: ignore[import-untyped]
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.harness.agent_process import AgentProcess, start_agent_process, stop_agent_process
from tests.harness.browser import LAPTOP, PHONE, chromium, screenshot
from tests.harness.httpclient import request
from tests.harness.redis import RedisServer

ADMIN_TOKEN = "console-admin-token-7f3a9c"
WEBHOOK_TOKEN = "webhook-token-x"
REFERENCE = Path(__file__).parents[1] / "fixtures" / "alertmanager"  # captured, AM 0.25
OPERATOR = "alice"
PAGES = ("health", "degradation", "flags", "limits", "backups", "alerts")
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
WAIT_SECONDS = 20.0


@dataclass
class Console:
    """A running agent, the URL of its console, and the Redis one of its checks watches."""

    agent: AgentProcess
    redis: RedisServer

    @property
    def url(self) -> str:
        return self.agent.url

    def api(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        raw = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **headers} if raw is not None else headers
        status, answer = request(method, self.url + path, raw, sent)
        try:
            return status, json.loads(answer)
        except ValueError:
            return status, answer

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.api(method, path, body, Authorization=f"Bearer {ADMIN_TOKEN}")


@pytest.fixture
def console(tmp_path: Path, fresh_redis: Callable[..., RedisServer]) -> Iterator[Console]:
    """An agent with a Redis check, degradation (SQLite), an encrypted files backup job and an
    admin token."""
    redis = fresh_redis()
    source = tmp_path / "site"
    (source / "html").mkdir(parents=True)
    (source / "html" / "index.html").write_text("<h1>shop</h1>\n")
    identity = pyrage.x25519.Identity.generate()
    (tmp_path / "identity.txt").write_text(f"{identity}\n")
    config = {
        "agent": {"listen_port": 0, "data_dir": str(tmp_path / "data"), "startup_grace_seconds": 1},
        "checks": [
            {
                "name": "cache",
                "kind": "redis",
                "url": redis.url(),
                "interval_seconds": 1,
                "timeout_seconds": 0.8,
            },
            {"name": "data-disk", "kind": "disk", "path": str(tmp_path), "interval_seconds": 2},
        ],
        "degradation": {
            "enabled": True,
            "admin_token_env": "VIGIL_TEST_ADMIN_TOKEN",
            "webhook": {"bearer_token_env": "VIGIL_TEST_WEBHOOK_TOKEN"},
            "rules": [{"name": "demo", "matchers": ['alertname="DemoDown"'], "level": "minimal"}],
        },
        "backup": {
            "repository": {"path": str(tmp_path / "repo")},
            "encryption": {
                "recipients": [str(identity.to_public())],
                "identity_file": str(tmp_path / "identity.txt"),
            },
            "jobs": [
                {
                    "name": "site",
                    "kind": "files",
                    "source": str(source),
                    "schedule": {"full": "0 3 * * *"},
                    "drill": {"schedule": "30 4 * * 0", "files": ["html/index.html"]},
                }
            ],
        },
    }
    env = {"VIGIL_TEST_ADMIN_TOKEN": ADMIN_TOKEN, "VIGIL_TEST_WEBHOOK_TOKEN": WEBHOOK_TOKEN}
    agent = start_agent_process(tmp_path / "agent", config, env)
    try:
        yield Console(agent, redis)
    finally:
        stop_agent_process(agent)
        log = agent.log.read_text(errors="replace")
        assert ADMIN_TOKEN not in log, "the admin token reached the agent's log"


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    """Poll `condition` until it is truthy (WAIT_SECONDS at most), saying `what` on failure."""
    return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.1).until(condition, what)


def text_of(driver: WebDriver, css: str) -> str:
    return str(driver.execute_script(f"return document.querySelector({css!r})?.innerText || ''"))


def open_page(driver: WebDriver, console: Console, page: str) -> None:
    """Show `page` and wait until the console has filled it from the API."""
    driver.get(f"{console.url}/ui/#{page}")
    wait_for(
        driver,
        lambda d: d.execute_script(
            "return !document.getElementById('page-' + arguments[0]).hidden"
            " && document.getElementById('main').dataset.loaded === arguments[0]",
            page,
        ),
        f"the {page} page to fill",
    )


def log_in(driver: WebDriver, console: Console, operator: str = OPERATOR) -> None:
    driver.get(f"{console.url}/ui/#health")
    wait_for(driver, lambda d: d.find_element(By.ID, "login-open").is_displayed(), "Log in")
    driver.find_element(By.ID, "login-open").click()
    driver.find_element(By.ID, "login-operator").send_keys(operator)
    driver.find_element(By.ID, "login-token").send_keys(ADMIN_TOKEN + Keys.ENTER)
    wait_for(driver, lambda d: f"Operator: {operator}" in text_of(d, "#who"), "the operator's name")


def axe_violations(driver: WebDriver) -> list[dict[str, Any]]:
    """axe-core's violations on the current page (the vendored, checked copy)."""
    source = AXE.read_bytes()
    assert hashlib.sha256(source).hexdigest() == AXE_SHA256, "tests/ui/vendor/axe.min.js changed"
    driver.execute_script(source.decode())
    found = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations)).catch(e => done({error: String(e)}));"
    )
    assert isinstance(found, list), found
    return found


@pytest.mark.parametrize(("size_name", "size"), [("laptop", LAPTOP), ("phone", PHONE)])
def test_every_page_renders_passes_axe_and_is_saved(
    console: Console, size_name: str, size: tuple[int, int]
) -> None:
    # Something on every page: a flag, a firing alert, a backup.
    flag = {"enabled": True, "rollout_percent": 25, "disabled_at_level": "minimal"}
    assert console.admin("PUT", "/api/v1/flags/new-checkout", flag)[0] == 200
    firing = json.loads((REFERENCE / "webhook_firing.json").read_text())["body"]
    hook = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    assert console.api("POST", "/webhooks/alertmanager", firing, **hook)[0] == 200
    assert console.admin("POST", "/api/v1/backups/jobs/site/backup", {})[0] == 202
    with chromium(size) as driver:
        open_page(driver, console, "health")
        screenshot(driver, f"health-read-only-{size_name}")
        log_in(driver, console)
        for page in PAGES:
            open_page(driver, console, page)
            screenshot(driver, f"{page}-{size_name}")
            serious = [
                {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
                for v in axe_violations(driver)
                if v.get("impact") in ("serious", "critical")
            ]
            assert serious == [], f"{page} at {size_name}: {serious}"


def test_every_control_is_reached_with_the_keyboard(console: Console) -> None:
    with chromium(LAPTOP) as driver:
        log_in(driver, console)
        for page in ("degradation", "flags", "backups"):
            open_page(driver, console, page)
            controls = driver.execute_script(
                "return [...document.querySelectorAll('a[href], button, input, select, textarea')]"
                ".filter(e => !e.disabled && e.offsetParent !== null)"
                ".map(e => e.id || e.textContent.trim() || e.name)"
            )
            driver.find_element(By.TAG_NAME, "body").click()
            reached: set[str] = set()
            for _ in range(len(controls) + 10):
                driver.switch_to.active_element.send_keys(Keys.TAB)
                reached.add(
                    driver.execute_script(
                        "const e = document.activeElement;"
                        "return e.id || e.textContent.trim() || e.name"
                    )
                )
            assert set(controls) <= reached, f"{page}: never focused {set(controls) - reached}"


def test_a_check_turns_unhealthy_on_the_page_when_its_redis_stops(console: Console) -> None:
    with chromium(LAPTOP) as driver:
        open_page(driver, console, "health")
        card = "article[aria-labelledby='check-cache']"
        wait_for(driver, lambda d: "healthy" in text_of(d, f"{card} .badge"), "cache healthy")
        console.redis.stop()
        wait_for(driver, lambda d: text_of(d, f"{card} .badge") == "unhealthy", "cache unhealthy")
        assert text_of(driver, f"{card} dd:nth-of-type(2)") != "—"  # the reason is shown
        assert "unhealthy" in text_of(driver, "#overall")


def test_an_operator_logs_in_and_pins_the_level_which_the_api_shows(console: Console) -> None:
    with chromium(LAPTOP) as driver:
        log_in(driver, console)
        open_page(driver, console, "degradation")
        driver.find_element(By.CSS_SELECTOR, "#pin-level option[value='maintenance']").click()
        driver.find_element(By.ID, "pin-reason").send_keys("database failover")
        driver.find_element(By.CSS_SELECTOR, "#pin-form button[type='submit']").click()
        wait_for(driver, lambda d: "maintenance" in text_of(d, "#degradation-state .level"), "pin")
        status, state = console.api("GET", "/api/v1/degradation")
        assert status == 200
        assert state["level"] == "maintenance"
        assert state["pin"]["actor"] == OPERATOR
        assert state["pin"]["reason"] == "database failover"
        _, audit = console.api("GET", f"/api/v1/audit?actor={OPERATOR}&kind=pin_set")
        assert [e["actor"] for e in audit["entries"]] == [{"kind": "user", "id": OPERATOR}]
        wait_for(driver, lambda d: "pin" in text_of(d, "#degradation-timeline"), "the timeline")
        driver.find_element(By.ID, "unpin").click()
        wait_for(driver, lambda d: "full" in text_of(d, "#degradation-state .level"), "unpinned")
        assert console.api("GET", "/api/v1/degradation")[1]["pin"] is None


def test_an_operator_toggles_a_flag_and_its_evaluation_changes(console: Console) -> None:
    status, _ = console.admin("PUT", "/api/v1/flags/new-checkout", {"enabled": False})
    assert status == 200
    with chromium(LAPTOP) as driver:
        log_in(driver, console)
        open_page(driver, console, "flags")
        evaluate = (By.CSS_SELECTOR, "#evaluate-form button[type='submit']")
        driver.find_element(*evaluate).click()
        wait_for(driver, lambda d: "new-checkout: off" in text_of(d, "#evaluate-result"), "off")
        driver.find_element(By.CSS_SELECTOR, "button[data-flag='new-checkout']").click()
        wait_for(
            driver,
            lambda d: "Turn new-checkout off" in text_of(d, "button[data-flag='new-checkout']"),
            "the flag on",
        )
        driver.find_element(*evaluate).click()
        wait_for(driver, lambda d: "new-checkout: on" in text_of(d, "#evaluate-result"), "on")
        # The edit form: a rollout of 0 % leaves everybody out.
        rollout = driver.find_element(By.ID, "flag-rollout")
        rollout.clear()
        rollout.send_keys("0")
        driver.find_element(By.CSS_SELECTOR, "#flag-level option[value='minimal']").click()
        driver.find_element(By.CSS_SELECTOR, "#flag-form button[type='submit']").click()
        wait_for(
            driver,
            lambda d: console.api("GET", "/api/v1/flags/new-checkout")[1]["rollout_percent"] == 0,
            "the rollout saved",
        )
        driver.find_element(*evaluate).click()
        wait_for(driver, lambda d: "new-checkout: off" in text_of(d, "#evaluate-result"), "off")
    flag = console.api("GET", "/api/v1/flags/new-checkout")[1]
    assert flag["enabled"] is True
    assert flag["disabled_at_level"] == "minimal"
    _, audit = console.api("GET", f"/api/v1/audit?actor={OPERATOR}")
    assert any(e["action"].startswith("flag") for e in audit["entries"]), audit


def test_a_flag_toggled_in_the_console_keeps_its_segments(console: Console) -> None:
    """The flags page says which segments a flag names, and turning the flag on from it keeps
    them (the console writes the whole definition back)."""
    rule = {"attribute": "tier", "operator": "in", "values": ["beta"]}
    assert console.admin("PUT", "/api/v1/segments/beta", {"targeting": [rule]})[0] == 200
    body = {"enabled": False, "segments": ["beta"]}
    assert console.admin("PUT", "/api/v1/flags/beta-search", body)[0] == 200
    with chromium(LAPTOP) as driver:
        log_in(driver, console)
        open_page(driver, console, "flags")
        wait_for(driver, lambda d: "100% in beta" in text_of(d, "#flags-list"), "the segment")
        driver.find_element(By.CSS_SELECTOR, "button[data-flag='beta-search']").click()
        wait_for(
            driver,
            lambda d: console.api("GET", "/api/v1/flags/beta-search")[1]["enabled"] is True,
            "the flag on",
        )
    assert console.api("GET", "/api/v1/flags/beta-search")[1]["segments"] == ["beta"]


def test_an_operator_starts_a_backup_and_a_drill_and_sees_them_listed(console: Console) -> None:
    with chromium(LAPTOP) as driver:
        open_page(driver, console, "backups")
        assert not driver.find_elements(By.XPATH, "//button[text()='Back up site now']") or not (
            driver.find_element(By.XPATH, "//button[text()='Back up site now']").is_displayed()
        )  # read-only: no controls
        log_in(driver, console)
        open_page(driver, console, "backups")
        driver.find_element(By.XPATH, "//button[text()='Back up site now']").click()
        wait_for(driver, lambda d: "site" in text_of(d, "#backups-list tbody"), "the backup listed")
        driver.find_element(By.XPATH, "//button[text()='Drill site']").click()
        wait_for(driver, lambda d: "RTO" in text_of(d, "#backups-jobs"), "the drill's RTO")
        screenshot(driver, "backups-after-drill-laptop")
    _, listed = console.api("GET", "/api/v1/backups?job=site")
    assert [b["type"] for b in listed["backups"]] == ["full"]
    _, runs = console.api("GET", "/api/v1/backups/runs?job=site")
    started = {r["operation"]: r for r in runs["runs"]}
    assert started["backup"]["ok"] is True
    assert started["backup"]["actor"] == OPERATOR
    assert started["drill"]["actor"] == OPERATOR
    _, audit = console.api("GET", f"/api/v1/audit?actor={OPERATOR}&kind=backup_started")
    assert sorted(e["operation"] for e in audit["entries"]) == ["backup", "drill"]


def test_active_alerts_show_with_their_runbook_and_the_level_says_why(console: Console) -> None:
    firing = json.loads((REFERENCE / "webhook_firing.json").read_text())["body"]
    status, _ = console.api(
        "POST", "/webhooks/alertmanager", firing, Authorization=f"Bearer {WEBHOOK_TOKEN}"
    )
    assert status == 200
    with chromium(PHONE) as driver:
        open_page(driver, console, "alerts")
        link = driver.find_element(By.LINK_TEXT, "Runbook for DemoDown")
        assert link.get_attribute("href") == "https://example.invalid/runbooks/DemoDown"
        assert "severity" not in text_of(driver, "#alerts-list td:nth-of-type(4)")
        screenshot(driver, "alerts-firing-phone")
        open_page(driver, console, "degradation")
        assert "minimal" in text_of(driver, "#degradation-state .level")
        assert "DemoDown" in text_of(driver, "#degradation-state table")
        assert "demo" in text_of(driver, "#degradation-state table")


def test_without_degradation_backups_or_a_token_the_console_reads_and_says_what_is_off(
    tmp_path: Path,
) -> None:
    config = {
        "agent": {"listen_port": 0, "data_dir": str(tmp_path / "data")},
        "checks": [{"name": "data-disk", "kind": "disk", "path": str(tmp_path)}],
    }
    agent = start_agent_process(tmp_path / "agent", config, {})
    try:
        console = Console(agent, RedisServer())
        with chromium(PHONE) as driver:
            open_page(driver, console, "health")
            assert not driver.find_element(By.ID, "login-open").is_displayed()
            assert "Read-only" in text_of(driver, "#who")
            said = {
                "degradation": "Degradation is not enabled",
                "flags": "need degradation.enabled",
                "backups": "No backup job is configured",
                "alerts": "degradation.enabled",
            }
            for page, text in said.items():
                open_page(driver, console, page)
                assert text in text_of(driver, f"#page-{page}"), page
                screenshot(driver, f"{page}-default-config-phone")
        login = console.api("POST", "/ui/api/login", {"operator": OPERATOR, "token": "x"})
        assert login[0] == 403
    finally:
        stop_agent_process(agent)


def _session(console: Console) -> tuple[str, str]:
    """A console session opened over HTTP: its cookie header and CSRF token."""
    body = json.dumps({"operator": OPERATOR, "token": ADMIN_TOKEN}).encode()
    import urllib.request

    req = urllib.request.Request(  # noqa: S310 - the agent under test, on loopback
        console.url + "/ui/api/login", body, {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as answer:  # noqa: S310
        cookie = answer.headers["Set-Cookie"].split(";")[0]
        return cookie, json.loads(answer.read())["csrf"]


def test_changes_without_the_token_or_the_csrf_token_are_refused(console: Console) -> None:
    pin = {"level": "maintenance", "reason": "forged", "ttl_seconds": 60}
    cookie, csrf = _session(console)
    origin = console.url
    refused = [
        console.api("POST", "/api/v1/degradation/pin", pin),
        console.api("POST", "/api/v1/degradation/pin", pin, Cookie=cookie),
        console.api("POST", "/api/v1/degradation/pin", pin, Cookie=cookie, **{"X-CSRF-Token": "x"}),
        console.api(
            "POST",
            "/api/v1/degradation/pin",
            pin,
            Cookie=cookie,
            Origin="http://evil.example",
            **{"X-CSRF-Token": csrf},
        ),
        console.api("POST", "/api/v1/degradation/pin", pin, **{"X-CSRF-Token": csrf}),
    ]
    assert [status for status, _ in refused] == [401] * 5
    assert console.api("GET", "/api/v1/degradation")[1]["pin"] is None
    status, _ = console.api(
        "POST", "/api/v1/degradation/pin", pin, Cookie=cookie, Origin=origin,
        **{"X-CSRF-Token": csrf},
    )  # fmt: skip
    assert status == 200
    assert console.api("GET", "/api/v1/degradation")[1]["pin"]["actor"] == OPERATOR
    wrong = console.api("POST", "/ui/api/login", {"operator": OPERATOR, "token": "guess"})
    assert wrong[0] == 401
    assert "guess" not in json.dumps(wrong[1])
    cross = console.api(
        "POST", "/ui/api/login", {"operator": OPERATOR, "token": ADMIN_TOKEN},
        Origin="http://evil.example",
    )  # fmt: skip
    assert cross[0] == 403


def test_the_console_carries_a_strict_content_security_policy(console: Console) -> None:
    for path in ("/ui/", "/ui/static/console.js", "/ui/api/session"):
        req_status, _ = request("GET", console.url + path)
        assert req_status == 200
    import urllib.request

    with urllib.request.urlopen(console.url + "/ui/", timeout=5) as answer:  # noqa: S310
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert answer.headers["X-Frame-Options"] == "DENY"
        page = answer.read().decode()
    assert "<script>" not in page
    assert "style=" not in page
    assert "http" not in page.split("<body>")[1]
