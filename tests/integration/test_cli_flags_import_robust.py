"""`vigil flags import` never crashes on what a file holds: any JSON value, or anything shaped
almost like a client-features document, ends in a documented exit code without a traceback,
and only a clean import writes (exactly its flags)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agent.cli import main
from agent.degradation.flags.unleash import DocumentError, read_document, translate_features
from tests.integration.test_admin_robust import json_values
from tests.integration.test_cli_flags_import import flags_of
from tests.integration.test_degradation_api import ADMIN, DISK, TOKEN, degradation
from tests.strategies import mostly, text

pytestmark = pytest.mark.integration

parameters = st.dictionaries(
    st.sampled_from(["rollout", "percentage", "stickiness", "groupId"]),
    mostly(st.sampled_from(["0", "30", "100", "userId", "default", "g"]), json_values),
    max_size=3,
)
strategies = st.fixed_dictionaries(
    {
        "name": mostly(
            st.sampled_from(
                ["default", "flexibleRollout", "gradualRolloutUserId", "gradualRolloutRandom"]
            ),
            json_values,
        )
    },
    optional={
        "parameters": mostly(parameters, json_values),
        "constraints": json_values,
        "segments": mostly(st.lists(st.integers(1, 3), max_size=2), json_values),
    },
)
tiers = st.fixed_dictionaries(
    {"contextName": st.just("tier"), "operator": st.sampled_from(["IN", "NOT_IN", "REGEX"])},
    optional={"values": st.lists(st.sampled_from(["beta", "gold"])), "value": st.just("b.*")},
)
segments = st.lists(
    st.fixed_dictionaries(
        {"id": mostly(st.integers(1, 3), json_values)},
        optional={
            "name": mostly(st.sampled_from(["Beta", "beta", "a b", "x/y"]), json_values),
            "constraints": mostly(st.lists(tiers, max_size=2), json_values),
        },
    ),
    max_size=3,
)
features = st.fixed_dictionaries(
    {"name": mostly(st.sampled_from(["A", "b", "Fuzz.C"]), json_values | text)},
    optional={
        "enabled": mostly(st.booleans(), json_values),
        "description": text,
        "strategies": mostly(st.lists(strategies, max_size=2), json_values),
        "variants": json_values,
    },
)
documents = st.fixed_dictionaries(
    {"features": mostly(st.lists(features, max_size=3), json_values)},
    optional={"version": json_values, "segments": mostly(segments, json_values)},
)
files = st.one_of(
    json_values.map(json.dumps),
    documents.map(json.dumps),
    documents.map(lambda document: json.dumps({"state": document})),
    st.binary(max_size=40).map(lambda raw: raw.decode("latin-1")),
)


@pytest.fixture
async def agent(start_agent: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """One in-process agent for every example of a test: a fresh one each would take a second."""
    monkeypatch.setenv("VIGIL_TEST_HOOK", TOKEN)
    monkeypatch.setenv("VIGIL_TEST_ADMIN", ADMIN)
    return await start_agent(DISK, degradation=degradation())


def expected(raw: bytes) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The flags (by key) and segments (by name) a clean import of `raw` writes; None when it
    is refused."""
    try:
        translation = translate_features(read_document(raw))
    except DocumentError:
        return None
    if translation.refused:
        return None
    flags = {d.key: d.model_dump(mode="json") for d in translation.definitions.values()}
    named = {n: s.model_dump(mode="json") for n, s in translation.segments.items()}
    return flags, named


async def segments_of(agent: Any) -> dict[str, Any]:
    """Every segment of the agent, by name."""
    status, body = await agent.send("GET", "/api/v1/segments")
    assert status == 200, body
    return {s["name"]: s for s in body["segments"]}


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(content=files, replace=st.booleans())
async def test_any_file_ends_in_a_documented_exit_and_writes_only_a_clean_import(
    agent: Any, tmp_path: Path, content: str, replace: bool
) -> None:
    """Exit 0, 2 or 3 with no traceback; anything but 0 leaves the flags as they were, and 0
    writes exactly the document's translation."""
    path = tmp_path / "features.json"
    path.write_text(content, encoding="utf-8", errors="surrogatepass")
    before, segments_before = await flags_of(agent), await segments_of(agent)

    args = ["flags", "import", str(path), "--actor", "fuzz", *(["--replace"] if replace else [])]
    env = {"VIGIL_URL": agent.base_url, "VIGIL_ADMIN_TOKEN": ADMIN}

    # In-process, off the agent's event loop: a fresh interpreter per example would take a second.
    # An exception escaping the command (a traceback) is `done.exception`, not a SystemExit.
    done = await asyncio.to_thread(CliRunner().invoke, main, args, env=env)

    after, segments_after = await flags_of(agent), await segments_of(agent)
    event(f"exit {done.exit_code}")
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        raise done.exception
    assert done.exit_code in (0, 2, 3), done.output
    if done.exit_code != 0:
        assert (after, segments_after) == (before, segments_before)
        return
    written = expected(path.read_bytes())
    assert written is not None
    assert after == {**before, **written[0]}
    assert segments_after == {**segments_before, **written[1]}
