// Vigil's operator console: one page over the agent's own API. No framework, no build step, no
// inline code (the page's Content-Security-Policy allows scripts from this origin only). Every
// value from the API reaches the page as text (textContent), never as markup.
"use strict";

const PAGES = ["health", "degradation", "flags", "limits", "backups", "alerts"];
const REFRESH_MS = { health: 2000, degradation: 3000, flags: 5000, limits: 3000, backups: 3000, alerts: 3000 };
const LEVELS = ["full", "degraded", "minimal", "maintenance"];
const session = { operator: null, csrf: null, loginAvailable: false };
let current = null;
let timer = null;

// --- plumbing ------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function replace(id, ...children) {
  const target = document.getElementById(id);
  target.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

async function api(path, options) {
  const init = { credentials: "same-origin", headers: { Accept: "application/json" } };
  if (options && options.method) {
    init.method = options.method;
    if (session.csrf) init.headers["X-CSRF-Token"] = session.csrf;
    if (options.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    return { ok: false, status: 0, body: { error: "the agent does not answer" } };
  }
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  return { ok: response.ok, status: response.status, body: body || {} };
}

function when(value) {
  if (value === null || value === undefined || value === "") return "—";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
}

function ago(value) {
  if (value === null || value === undefined) return "never";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  if (Number.isNaN(seconds)) return "—";
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 120) return `${seconds.toFixed(1)} s`;
  return `${Math.round(seconds / 60)} min`;
}

function bytes(count) {
  if (count === null || count === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function badge(status) {
  const text = status || "unknown";
  return el("span", { class: `badge status-${text.replace(/[^a-z_]/g, "")}`, text });
}

function notice(text) {
  return el("p", { class: "notice", text });
}

function errorText(result) {
  const body = result.body || {};
  const details = Array.isArray(body.details) && body.details.length ? ` (${body.details.join("; ")})` : "";
  return `${body.error || `the agent answered ${result.status}`}${details}`;
}

function table(caption, headers, rows) {
  return el(
    "div",
    // A region that may scroll sideways on a small screen: focusable, so the keyboard scrolls it.
    { class: "table-wrap", tabindex: 0, role: "region", "aria-label": caption },
    el(
      "table",
      {},
      el("caption", { class: "visually-hidden", text: caption }),
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))),
    ),
  );
}

// --- session -------------------------------------------------------------------------------

async function loadSession() {
  const result = await api("/ui/api/session");
  if (result.ok) {
    session.operator = result.body.operator;
    session.csrf = result.body.csrf;
    session.loginAvailable = Boolean(result.body.login_available);
  }
  showSession();
}

function showSession() {
  const loggedIn = Boolean(session.operator);
  document.getElementById("who-name").textContent = loggedIn ? `Operator: ${session.operator}` : "Read-only";
  document.getElementById("login-open").hidden = loggedIn || !session.loginAvailable;
  document.getElementById("logout").hidden = !loggedIn;
  document.body.classList.toggle("can-change", loggedIn);
  for (const node of document.querySelectorAll(".admin")) node.hidden = !loggedIn;
}

function openLogin() {
  document.getElementById("login-panel").hidden = false;
  document.getElementById("login-operator").focus();
}

function closeLogin() {
  document.getElementById("login-panel").hidden = true;
  document.getElementById("login-token").value = "";
  document.getElementById("login-error").textContent = "";
}

async function login(event) {
  event.preventDefault();
  const operator = document.getElementById("login-operator").value.trim();
  const tokenField = document.getElementById("login-token");
  const result = await api("/ui/api/login", { method: "POST", body: { operator, token: tokenField.value } });
  tokenField.value = "";
  if (!result.ok) {
    document.getElementById("login-error").textContent = errorText(result);
    tokenField.focus();
    return;
  }
  session.operator = result.body.operator;
  session.csrf = result.body.csrf;
  closeLogin();
  showSession();
  refresh();
}

async function logout() {
  await api("/ui/api/logout", { method: "POST" });
  session.operator = null;
  session.csrf = null;
  showSession();
  document.getElementById("login-open").focus();
  refresh();
}

// --- health --------------------------------------------------------------------------------

function historyOf(body, name) {
  const found = (body.checks || []).find((c) => c.name === name);
  return found ? found.runs : [];
}

function sparkline(name, history) {
  const width = 240;
  const height = 36;
  const points = history.slice(-60);
  const drawing = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark", role: "img" });
  const counts = {};
  for (const point of points) counts[point.status] = (counts[point.status] || 0) + 1;
  const latencies = points.map((p) => p.duration_seconds).filter((v) => typeof v === "number");
  const slowest = latencies.length ? Math.max(...latencies) : 0;
  const summary = Object.entries(counts).map(([status, n]) => `${n} ${status}`).join(", ");
  const title = svg("title", {});
  title.textContent = points.length
    ? `${name}: last ${points.length} runs: ${summary}; slowest ${duration(slowest)}`
    : `${name}: no runs yet`;
  drawing.append(title);
  drawing.setAttribute("aria-label", title.textContent);
  if (!points.length) return drawing;
  const step = width / 60;
  points.forEach((point, index) => {
    const x = (60 - points.length + index) * step;
    drawing.append(svg("rect", { x: x.toFixed(1), y: height - 6, width: Math.max(step - 1, 1).toFixed(1), height: 6, class: `tick status-${point.status}` }));
  });
  if (slowest > 0) {
    const line = points
      .map((point, index) => {
        const x = (60 - points.length + index) * step + step / 2;
        const value = typeof point.duration_seconds === "number" ? point.duration_seconds : 0;
        const y = height - 9 - (value / slowest) * (height - 12);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      })
      .join(" ");
    drawing.append(svg("polyline", { points: line, class: "latency" }));
  }
  return drawing;
}

async function loadHealth() {
  const [health, history] = await Promise.all([api("/health"), api("/api/v1/checks/history")]);
  if (!health.ok) {
    replace("health-checks", notice(errorText(health)));
    return;
  }
  const body = health.body;
  replace(
    "health-meta",
    `Agent ${body.version || ""}, started ${when(body.started_at)}; ${body.checks.length} checks.`,
  );
  const cards = body.checks.map((check) =>
    el(
      "article",
      { class: `card status-border-${check.status}`, "aria-labelledby": `check-${check.name}` },
      el("header", {}, el("h3", { id: `check-${check.name}`, text: check.name }), badge(check.status)),
      el(
        "dl",
        { class: "facts" },
        el("dt", { text: "Kind" }), el("dd", { text: `${check.kind}${check.critical ? ", critical" : ""}` }),
        el("dt", { text: "Reason" }), el("dd", { text: check.reason || "—" }),
        el("dt", { text: "Message" }), el("dd", { text: check.message || "—" }),
        el("dt", { text: "Last run" }), el("dd", { text: check.last_run ? `${ago(check.last_run)} (${when(check.last_run)})` : "not yet" }),
        el("dt", { text: "Latency" }), el("dd", { text: duration(check.duration_seconds) }),
      ),
      sparkline(check.name, history.ok ? historyOf(history.body, check.name) : []),
    ),
  );
  replace("health-checks", cards);
}

// --- degradation ---------------------------------------------------------------------------

let levelsFilled = false;

async function loadDegradation() {
  const [state, audit] = await Promise.all([
    api("/api/v1/degradation"),
    api("/api/v1/audit?kind=level_changed&limit=20"),
  ]);
  if (state.status === 404) {
    replace("degradation-state", notice("Degradation is not enabled in this agent's configuration (degradation.enabled)."));
    document.getElementById("pin-form").hidden = true;
    replace("degradation-timeline");
    return;
  }
  if (!state.ok) {
    replace("degradation-state", notice(errorText(state)));
    return;
  }
  const s = state.body;
  const pin = s.pin;
  replace(
    "degradation-state",
    el("p", { class: "level" }, "Level ", badge(s.level), s.since ? ` since ${when(s.since)}` : " since the agent started"),
    el(
      "dl",
      { class: "facts" },
      el("dt", { text: "Pin" }),
      el("dd", { text: pin ? `${pin.level} by ${pin.actor}: ${pin.reason}; ${pin.expires_at ? `ends ${when(pin.expires_at)}` : "until unpinned"}` : "none" }),
      el("dt", { text: "Flags switched off" }),
      el("dd", { text: (s.flags_off || []).join(", ") || "none" }),
    ),
    el("h3", { text: "Why" }),
    (s.reasons || []).length
      ? table("Alerts and rules that demand a level", ["Alert", "Rule", "Level"], s.reasons.map((r) => [r.alertname || "—", r.rule || "—", badge(r.level)]))
      : el("p", { class: "muted", text: "No alert demands a lower level." }),
  );
  if (!levelsFilled) {
    const select = document.getElementById("pin-level");
    select.replaceChildren(...LEVELS.map((level) => el("option", { value: level, text: level })));
    levelsFilled = true;
  }
  document.getElementById("pin-form").hidden = !session.operator;
  document.getElementById("unpin").disabled = !pin;
  const entries = audit.ok ? audit.body.entries || [] : [];
  replace(
    "degradation-timeline",
    entries.length
      ? entries.map((entry) =>
          el(
            "li",
            {},
            el("time", { datetime: entry.time, text: when(entry.time) }),
            " ",
            badge(entry.from),
            " → ",
            badge(entry.to),
            ` ${entry.cause || ""} by ${entry.actor ? `${entry.actor.kind}:${entry.actor.id}` : "—"}${entry.note ? ` (${entry.note})` : ""}`,
          ),
        )
      : [el("li", { class: "muted", text: "No transitions recorded yet." })],
  );
}

async function pinLevel(event) {
  event.preventDefault();
  const minutes = Number(document.getElementById("pin-ttl").value);
  const result = await api("/api/v1/degradation/pin", {
    method: "POST",
    body: {
      level: document.getElementById("pin-level").value,
      reason: document.getElementById("pin-reason").value,
      ttl_seconds: minutes * 60,
    },
  });
  document.getElementById("pin-error").textContent = result.ok ? "" : errorText(result);
  if (result.ok) loadDegradation();
}

async function unpinLevel() {
  const result = await api("/api/v1/degradation/unpin", {
    method: "POST",
    body: { reason: document.getElementById("pin-reason").value },
  });
  document.getElementById("pin-error").textContent = result.ok ? "" : errorText(result);
  if (result.ok) loadDegradation();
}

// --- flags ---------------------------------------------------------------------------------

let flagDefinitions = [];

async function loadFlags() {
  const result = await api("/api/v1/flags");
  if (result.status === 404) {
    replace("flags-list", notice("Feature flags need degradation.enabled in this agent's configuration."));
    return;
  }
  if (!result.ok) {
    replace("flags-list", notice(errorText(result)));
    return;
  }
  flagDefinitions = result.body.flags || [];
  for (const id of ["evaluate-flag", "flag-key"]) {
    const select = document.getElementById(id);
    const chosen = select.value;
    select.replaceChildren(...flagDefinitions.map((f) => el("option", { value: f.key, text: f.key })));
    if (chosen) select.value = chosen;
  }
  const editing = document.getElementById("flag-form");
  editing.hidden = !session.operator || !flagDefinitions.length;
  if (!editing.contains(document.activeElement)) fillFlagForm();
  replace(
    "flags-list",
    flagDefinitions.length
      ? table(
          "Feature flags",
          ["Flag", "State", "Rollout", "Depends on", "Off at level", ""],
          flagDefinitions.map((flag) => [
            el("span", {}, el("strong", { text: flag.key }), flag.description ? el("span", { class: "muted block", text: flag.description }) : null),
            badge(flag.enabled ? "on" : "off"),
            rolloutText(flag),
            (flag.depends_on || []).map((d) => (typeof d === "string" ? d : d.flag || JSON.stringify(d))).join(", ") || "—",
            flag.disabled_at_level || "—",
            session.operator
              ? el("button", { type: "button", class: "secondary", "data-flag": flag.key, onclick: () => toggleFlag(flag), text: flag.enabled ? `Turn ${flag.key} off` : `Turn ${flag.key} on` })
              : "",
          ]),
        )
      : notice("No flags are defined."),
  );
}

function rolloutText(flag) {
  const strategies = flag.strategies || [];
  // The segments a flag (or a strategy) names: shared targeting rules, by name.
  const within = (named) => ((named || []).length ? ` in ${named.join(", ")}` : "");
  if (!strategies.length) return `${flag.rollout_percent}%${within(flag.segments)}`;
  // A flag with strategies is on when any is: each has its own rollout.
  const each = strategies.map((s) => `${s.rollout_percent}%${(s.targeting || []).length ? " when …" : ""}${within(s.segments)}`);
  return each.join(" or ") + within(flag.segments);
}

function fillFlagForm() {
  const flag = flagDefinitions.find((f) => f.key === document.getElementById("flag-key").value);
  if (!flag) return;
  document.getElementById("flag-enabled").checked = Boolean(flag.enabled);
  document.getElementById("flag-rollout").value = String(flag.rollout_percent);
  document.getElementById("flag-level").value = flag.disabled_at_level || "";
}

async function saveFlag(event) {
  event.preventDefault();
  const flag = flagDefinitions.find((f) => f.key === document.getElementById("flag-key").value);
  if (!flag) return;
  const definition = {
    ...flag,
    enabled: document.getElementById("flag-enabled").checked,
    rollout_percent: Number(document.getElementById("flag-rollout").value),
    disabled_at_level: document.getElementById("flag-level").value || null,
  };
  const result = await api(`/api/v1/flags/${encodeURIComponent(flag.key)}`, { method: "PUT", body: definition });
  document.getElementById("flag-error").textContent = result.ok ? "" : errorText(result);
  if (result.ok) {
    document.activeElement.blur();
    await loadFlags();
  }
}

async function toggleFlag(flag) {
  const definition = { ...flag, enabled: !flag.enabled };
  const result = await api(`/api/v1/flags/${encodeURIComponent(flag.key)}`, { method: "PUT", body: definition });
  if (!result.ok) replace("flags-list", notice(errorText(result)));
  await loadFlags();
}

async function evaluateFlag(event) {
  event.preventDefault();
  const key = document.getElementById("evaluate-flag").value;
  const context = {};
  for (const line of document.getElementById("evaluate-context").value.split("\n")) {
    const at = line.indexOf("=");
    if (at > 0) context[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  const result = await api(`/api/v1/flags/${encodeURIComponent(key)}/evaluate`, { method: "POST", body: { context } });
  document.getElementById("evaluate-result").textContent = result.ok
    ? `${result.body.flag}: ${result.body.value ? "on" : "off"} (variant ${result.body.variant}, reason ${result.body.reason}, level ${result.body.level})`
    : errorText(result);
}

// --- limits and queues ---------------------------------------------------------------------

function meter(label, value, max) {
  const share = max > 0 ? Math.min(value / max, 1) : 0;
  return el(
    "span",
    { class: "meter-wrap" },
    el("meter", { min: 0, max: 1, value: share.toFixed(3), "aria-label": label, low: 0.7, high: 0.9, optimum: 0 }),
    ` ${Math.round(share * 100)}%`,
  );
}

async function loadLimits() {
  const [limits, queues] = await Promise.all([api("/api/v1/limits"), api("/api/v1/queues")]);
  const limiters = limits.ok ? limits.body.limiters || [] : null;
  replace(
    "limits-list",
    limiters === null
      ? notice(errorText(limits))
      : limiters.length
        ? table(
            "Rate limiters",
            ["Limiter", "Limit", "Utilization", "Allowed", "Rejected"],
            limiters.map((l) => [
              el("strong", { text: l.name }),
              (l.limits || []).map((x) => `${x.limit} per ${x.period_seconds} s (${x.strategy})`).join("; ") || "—",
              l.utilization === null || l.utilization === undefined ? "—" : meter(`${l.name} utilization`, l.utilization, 1),
              String((l.decisions && l.decisions.allowed) || 0),
              String(l.rejections || 0),
            ]),
          )
        : notice("No rate limiter is configured (agent.api_rate_limit)."),
  );
  const list = queues.ok ? queues.body.queues || [] : null;
  replace(
    "queues-list",
    list === null
      ? notice(errorText(queues))
      : list.length
        ? table(
            "Queues",
            ["Queue", "Depth", "Running", "Backpressure", "Refused"],
            list.map((q) => [
              el("strong", { text: q.name }),
              el("span", {}, meter(`${q.name} depth`, q.depth || 0, q.capacity || 1), ` ${q.depth}/${q.capacity}`),
              String(q.running !== undefined ? q.running : "—"),
              badge(q.backpressure && q.backpressure.refusing ? "refusing" : q.backpressure && q.backpressure.active ? "backpressure" : "ok"),
              String((q.counts && q.counts.refused) || 0),
            ]),
          )
        : notice("No queue runs in this agent."),
  );
}

// --- backups -------------------------------------------------------------------------------

async function startBackup(job, operation) {
  const result = await api(`/api/v1/backups/jobs/${encodeURIComponent(job)}/${operation}`, { method: "POST", body: {} });
  const said = document.getElementById("backups-error");
  said.className = result.ok ? "said" : "error";
  said.textContent = result.ok ? `${operation} of ${job} started` : errorText(result);
  loadBackups();
}

async function loadBackups() {
  const [jobs, recent] = await Promise.all([api("/api/v1/backups/jobs"), api("/api/v1/backups?limit=10")]);
  if (jobs.status === 404) {
    replace("backups-jobs", notice("No backup job is configured (backup.jobs)."));
    replace("backups-list");
    return;
  }
  if (!jobs.ok) {
    replace("backups-jobs", notice(errorText(jobs)));
    return;
  }
  const list = jobs.body.jobs || [];
  replace(
    "backups-jobs",
    list.map((job) => {
      const last = job.last_backup || {};
      const verify = job.last_verification || {};
      const drill = job.last_drill || {};
      const nextRuns = Object.values(job.schedules || {})
        .map((s) => (s && s.next ? s.next : null))
        .filter(Boolean)
        .sort();
      return el(
        "article",
        { class: "card", "aria-labelledby": `job-${job.name}` },
        el("header", {}, el("h3", { id: `job-${job.name}`, text: job.name }), job.running ? badge("running") : null),
        el(
          "dl",
          { class: "facts" },
          el("dt", { text: "Kind" }), el("dd", { text: `${job.kind}${job.mode ? ` (${job.mode})` : ""}` }),
          el("dt", { text: "Last backup" }), el("dd", { text: last.id ? `${ago(last.ended)}: ${last.type}, ${bytes(last.stored_bytes)} in ${duration(last.duration_seconds)}` : "none yet" }),
          el("dt", { text: "Running" }), el("dd", { text: job.running ? `${job.running.operation}${job.running.phase ? ` (${job.running.phase})` : ""}, ${bytes(job.running.done_bytes)} so far` : "nothing" }),
          el("dt", { text: "Last verification" }), el("dd", {}, verify.at ? [badge(verify.ok ? "passed" : "failed"), ` ${ago(verify.at)}${verify.reason ? ` (${verify.reason})` : ""}`] : "none yet"),
          el("dt", { text: "Last drill" }), el("dd", {}, drill.at ? [badge(drill.ok ? "passed" : "failed"), ` ${ago(drill.at)}, RTO ${duration(drill.rto_seconds)}, RPO ${duration(drill.rpo_seconds)}`] : "none yet"),
          el("dt", { text: "Next scheduled" }), el("dd", { text: nextRuns.length ? when(nextRuns[0]) : "not scheduled" }),
        ),
        el(
          "div",
          { class: "actions admin", hidden: !session.operator },
          el("button", { type: "button", onclick: () => startBackup(job.name, "backup"), text: `Back up ${job.name} now` }),
          el("button", { type: "button", class: "secondary", onclick: () => startBackup(job.name, "verify"), text: `Verify ${job.name}` }),
          el("button", { type: "button", class: "secondary", onclick: () => startBackup(job.name, "drill"), text: `Drill ${job.name}` }),
        ),
      );
    }),
  );
  const backups = recent.ok ? recent.body.backups || [] : [];
  replace(
    "backups-list",
    backups.length
      ? table(
          "Recent backups",
          ["Backup", "Job", "Type", "Ended", "Duration", "Stored", "Verified"],
          backups.map((b) => [
            b.id,
            b.job,
            b.type,
            when(b.ended),
            duration(b.duration_seconds),
            bytes(b.stored_bytes),
            b.verified_at ? badge(b.verified_ok ? "passed" : "failed") : "not yet",
          ]),
        )
      : notice("No backups yet."),
  );
}

// --- alerts --------------------------------------------------------------------------------

async function loadAlerts() {
  const state = await api("/api/v1/degradation");
  if (state.status === 404) {
    replace("alerts-list", notice("The agent learns of alerts through degradation.enabled (its Alertmanager webhook)."));
    return;
  }
  if (!state.ok) {
    replace("alerts-list", notice(errorText(state)));
    return;
  }
  const alerts = state.body.active_alerts || [];
  replace(
    "alerts-list",
    alerts.length
      ? table(
          "Active alerts",
          ["Alert", "Severity", "Since", "Labels", "Runbook"],
          alerts.map((alert) => {
            const labels = alert.labels || {};
            const runbook = alert.runbook_url;
            return [
              el("strong", { text: labels.alertname || alert.fingerprint }),
              labels.severity || "—",
              when(alert.starts_at),
              Object.entries(labels)
                .filter(([key]) => key !== "alertname" && key !== "severity")
                .map(([key, value]) => `${key}=${value}`)
                .join(", ") || "—",
              runbook && /^https?:\/\//.test(runbook)
                ? el("a", { href: runbook, rel: "noopener noreferrer", text: `Runbook for ${labels.alertname || "this alert"}` })
                : "—",
            ];
          }),
        )
      : notice("No alert is active."),
  );
}

// --- the page ------------------------------------------------------------------------------

const LOADERS = { health: loadHealth, degradation: loadDegradation, flags: loadFlags, limits: loadLimits, backups: loadBackups, alerts: loadAlerts };

async function loadOverall() {
  const result = await api("/health");
  const node = document.getElementById("overall");
  node.replaceChildren(...(result.ok ? ["Overall ", badge(result.body.status)] : [errorText(result)]));
}

async function refresh() {
  if (!current) return;
  const page = current;
  await Promise.all([LOADERS[page](), loadOverall()]);
  // What tests (and anything else watching) wait for: this page has been filled from the API.
  document.getElementById("main").dataset.loaded = page;
  document.getElementById("updated").textContent = `Updated ${new Date().toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC")}`;
}

function show() {
  const wanted = location.hash.slice(1);
  const page = PAGES.includes(wanted) ? wanted : "health";
  current = page;
  delete document.getElementById("main").dataset.loaded;
  for (const name of PAGES) document.getElementById(`page-${name}`).hidden = name !== page;
  for (const link of document.querySelectorAll(".tabs a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearInterval(timer);
  refresh();
  timer = setInterval(refresh, REFRESH_MS[page]);
}

document.addEventListener("DOMContentLoaded", async () => {
  document.getElementById("login-open").addEventListener("click", openLogin);
  document.getElementById("login-cancel").addEventListener("click", closeLogin);
  document.getElementById("login-form").addEventListener("submit", login);
  document.getElementById("logout").addEventListener("click", logout);
  document.getElementById("pin-form").addEventListener("submit", pinLevel);
  document.getElementById("unpin").addEventListener("click", unpinLevel);
  document.getElementById("evaluate-form").addEventListener("submit", evaluateFlag);
  document.getElementById("flag-form").addEventListener("submit", saveFlag);
  document.getElementById("flag-key").addEventListener("change", fillFlagForm);
  window.addEventListener("hashchange", show);
  await loadSession();
  show();
});
