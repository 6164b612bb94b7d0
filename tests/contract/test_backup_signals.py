"""The backup signals live: an agent with a files job, a physical PostgreSQL job archiving
through wal-push and a job whose source is gone serves every backup family of the catalogue with
exactly its labels, and Prometheus scraping it has data for every query of the backup dashboard."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.backup.errors import BackupError, Reason
from agent.telemetry.catalogue import CATALOGUE
from tests.contract.test_dashboards import LIVE, _has_value, _load, _queries, _substitute, _wait
from tests.harness.prometheus import PrometheusServer
from tests.harness.wait import poll_until
from tests.integration.backup.archiving import PASSWORD_ENV, archiving_cluster
from tests.integration.backup.test_pitr import _switch_and_wait

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "dashboards" / "vigil-backup.json"


def _family_name(name: str, kind: str) -> str:
    # The parser names a counter family without its `_total`.
    return name.removesuffix("_total") if kind == "counter" else name


async def test_backup_families_and_dashboard_queries(
    start_agent: Any,
    prometheus_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Every backup family is served with the catalogue's labels, every dashboard query has data."""
    source = tmp_path / "tree"
    (source / "etc").mkdir(parents=True)
    (source / "etc" / "hostname").write_text("vigil\n")
    with archiving_cluster() as archiving:
        server = archiving.server
        monkeypatch.setenv(PASSWORD_ENV, server.superuser_password)
        backup = archiving.doc["backup"]
        backup["jobs"] += [
            {
                "name": "tree",
                "kind": "files",
                "source": str(source),
                "drill": {"files": ["etc/hostname"]},
            },
            {"name": "gone", "kind": "files", "source": str(tmp_path / "missing")},
        ]
        agent = await start_agent(
            [{"name": "disk", "kind": "disk", "path": str(tmp_path), "interval_seconds": 1}],
            backup=backup,
        )
        scheduler = agent.agent.backups
        assert scheduler is not None
        await scheduler.run("backup", "main")
        await asyncio.to_thread(_switch_and_wait, server)
        await scheduler.run("backup", "tree")
        await scheduler.run("verify", "tree")
        await scheduler.run("drill", "tree")
        await scheduler.run("prune", "tree", dry_run=False)
        with pytest.raises(BackupError) as caught:
            await scheduler.run("backup", "gone")
        assert caught.value.reason is Reason.SOURCE

        _, text = await agent.get("/metrics")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        expected = {
            _family_name(s.prometheus_name, s.prometheus_type): s
            for s in CATALOGUE
            if s.scope == "backup"
        }
        served = {name for name in families if name.startswith("vigil_backup_")}
        assert served == set(expected)
        for name in served:
            labels = {frozenset(sample.labels) for sample in families[name].samples}
            assert labels == {frozenset(expected[name].attributes)}, name

        prometheus: PrometheusServer = await asyncio.to_thread(
            prometheus_factory,
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: vigil\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{agent.agent.port}']}}]\n",
        )
        await _wait(prometheus, 'vigil_backup_job_info{job="vigil"}', 20)
        # The WAL rate needs archiving between two scrapes: one more segment after the first.
        await asyncio.to_thread(server.execute, "INSERT INTO orders VALUES (1)")
        await asyncio.sleep(0)
        await asyncio.to_thread(_switch_and_wait, server)
        await scheduler.refresh()
        pending = {where: _substitute(expr, LIVE) for where, expr in _queries(_load(DASHBOARD))}

        async def all_have_data() -> bool:
            await scheduler.refresh()
            for where, expr in list(pending.items()):
                if _has_value(await asyncio.to_thread(prometheus.query, expr)):
                    del pending[where]
            return not pending

        await poll_until(
            all_have_data,
            30,
            interval=0.5,
            what=lambda: (
                "queries without data:\n" + "\n".join(f"{k}: {v}" for k, v in pending.items())
            ),
        )
