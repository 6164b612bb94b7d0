"""`vigil flags import` as a user runs it, against a real in-process agent: the dry run, the
all-or-nothing import of Unleash client-features documents, `--replace`, and the audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agent.degradation.flags.unleash import vigil_context
from tests.integration.test_cli_degradation import vigil
from tests.integration.test_degradation_api import ADMIN, DISK, TOKEN, degradation

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[1] / "fixtures" / "unleash-spec"
SIMPLE = str(SPEC / "01-simple-examples.json")  # 3 features, all translate
USER_ID = str(SPEC / "03-gradual-rollout-user-id-strategy.json")  # 4 features, all translate
FLEXIBLE = SPEC / "10-flexible-rollout-strategy.json"  # 5 features, all translate
DEPENDENT = str(SPEC / "17-dependent-features.json")  # 25 features, parents and children
SEGMENTS = str(SPEC / "15-global-constraints.json")  # 5 features naming 4 of 5 segments
CUSTOM = {"name": "Custom.Strategy", "enabled": True, "strategies": [{"name": "myStrategy"}]}


@pytest.fixture
def refusing(tmp_path: Path) -> str:
    """Spec file 10's document with one more feature, which is refused (a custom strategy)."""
    document = json.loads(FLEXIBLE.read_text(encoding="utf-8"))["state"]
    document["features"].append(CUSTOM)
    path = tmp_path / "refusing.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


@pytest.fixture(autouse=True)
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook and admin tokens in the environment, as `degradation()` names them."""
    monkeypatch.setenv("VIGIL_TEST_HOOK", TOKEN)
    monkeypatch.setenv("VIGIL_TEST_ADMIN", ADMIN)


async def flags_of(agent: Any) -> dict[str, dict[str, Any]]:
    """Every flag definition of the agent, by key."""
    status, body = await agent.send("GET", "/api/v1/flags")
    assert status == 200, body
    return {d["key"]: d for d in body["flags"]}


def spec(path: str) -> dict[str, Any]:
    """A spec test file: its client-features document (`state`) and its cases (`tests`)."""
    return dict(json.loads(Path(path).read_text(encoding="utf-8")))


async def answers_spec_cases(agent: Any, path: str) -> int:
    """How many `tests` cases of spec file `path` the agent's evaluate endpoint was asked;
    every answer must be the spec's."""
    cases = spec(path)["tests"]
    answers = []
    for case in cases:
        key = case["toggleName"].lower()
        body = {"context": vigil_context(case["context"])}
        status, answer = await agent.send("POST", f"/api/v1/flags/{key}/evaluate", body)
        assert status == 200, answer
        answers.append((case["description"], answer["value"]))
    assert answers == [(case["description"], case["expectedResult"]) for case in cases]
    return len(answers)


async def test_dry_run_prints_each_feature_and_changes_nothing(start_agent, refusing: str) -> None:
    """`--dry-run` prints each feature's flag or refusal and the totals, exits 2 when one is
    refused (0 when none is), and the agent's flags are the same afterwards."""
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send("PUT", "/api/v1/flags/feature.a", {"enabled": False}, token=ADMIN)
    before = await flags_of(agent)

    refused = await vigil(agent.base_url, "flags", "import", "--dry-run", refusing)
    clean = await vigil(agent.base_url, "flags", "import", "--dry-run", "--json", SIMPLE)

    assert await flags_of(agent) == before
    assert refused.returncode == 2, refused.stderr
    assert refused.stdout.splitlines() == [
        "Custom.Strategy: refused: strategy 'myStrategy' has no Vigil equivalent",
        "Feature.flexibleRollout.100 -> feature.flexiblerollout.100: enabled,"
        " on by any of: [100 % by default in 'Feature.flexibleRollout.100']",
        "Feature.flexibleRollout.10 -> feature.flexiblerollout.10: enabled,"
        " on by any of: [10 % by default in 'Feature.flexibleRollout.10']",
        "Feature.flexibleRollout.0 -> feature.flexiblerollout.0: enabled,"
        " on by any of: [0 % by default]",
        "Feature.flexibleRollout.userId.55 -> feature.flexiblerollout.userid.55: enabled,"
        " on by any of: [55 % by userId in 'Feature.flexibleRollout.userId.55']",
        "Feature.flexibleRollout.sessionId.42 -> feature.flexiblerollout.sessionid.42: enabled,"
        " on by any of: [42 % by sessionId in 'Feature.flexibleRollout.sessionId.42']",
        "6 feature(s): 5 translate, 1 refused",
    ]
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert (report["dry_run"], report["translated"], report["refused"]) == (True, 3, 0)
    assert [(f["feature"], f["flag"]["key"], f["flag"]["enabled"]) for f in report["features"]] == [
        ("Feature.A", "feature.a", True),
        ("Feature.B", "feature.b", False),
        ("Feature.C", "feature.c", True),
    ]


async def test_import_creates_flags_that_answer_as_unleash(start_agent) -> None:
    """An imported spec document's flags answer every spec case as Unleash expects, through the
    agent's evaluate endpoint."""
    agent = await start_agent(DISK, degradation=degradation())

    done = await vigil(agent.base_url, "flags", "import", USER_ID, "--actor", "alice")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "4 feature(s) imported: 4 created, 0 replaced"
    assert (
        "Feature.B3 -> feature.b3: enabled, on by any of: [50 % by userId in 'AB12A']"
        in done.stdout
    )
    assert sorted(await flags_of(agent)) == ["feature.a3", "feature.b3", "feature.c3", "feature.d3"]
    assert await answers_spec_cases(agent, USER_ID) == 6


async def test_a_refused_feature_imports_nothing(start_agent, refusing: str) -> None:
    """One refused feature: the refusals are printed, exit 2, and no flag is written."""
    agent = await start_agent(DISK, degradation=degradation())

    done = await vigil(agent.base_url, "flags", "import", refusing)

    assert done.returncode == 2
    assert "Custom.Strategy: refused: strategy 'myStrategy' has no Vigil" in done.stdout
    assert "vigil: 1 feature(s) refused; nothing imported" in done.stderr
    assert await flags_of(agent) == {}


async def test_existing_flags_are_replaced_only_with_replace(start_agent) -> None:
    """A document naming a flag that exists is refused before anything is written (exit 2,
    naming it) unless `--replace`, which replaces it and creates the rest."""
    agent = await start_agent(DISK, degradation=degradation())
    await agent.send(
        "PUT", "/api/v1/flags/feature.a", {"enabled": False, "description": "mine"}, token=ADMIN
    )
    document = spec(SIMPLE)["state"]

    refused = await vigil(agent.base_url, "flags", "import", SIMPLE)
    kept = await flags_of(agent)
    replaced = await vigil(agent.base_url, "flags", "import", SIMPLE, "--replace")

    assert refused.returncode == 2
    assert refused.stderr == (
        "vigil: these exist already: flags feature.a; --replace replaces them. Nothing imported\n"
    )
    assert list(kept) == ["feature.a"]
    assert (kept["feature.a"]["enabled"], kept["feature.a"]["description"]) == (False, "mine")
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.splitlines() == [
        "Feature.A -> feature.a: enabled, on by any of: [100 % by default in 'Feature.A']"
        " (replaced)",
        "Feature.B -> feature.b: disabled, on by any of: [100 % by default in 'Feature.B']"
        " (created)",
        "Feature.C -> feature.c: enabled, rollout 100 % by default (created)",
        "3 feature(s) imported: 2 created, 1 replaced",
    ]
    after = await flags_of(agent)
    assert (after["feature.a"]["enabled"], after["feature.a"]["description"]) == (
        True,
        document["features"][0]["description"],
    )


async def test_audit_entries_name_the_actor(start_agent) -> None:
    """Every imported flag has a `flag_set` audit entry naming `--actor` as a user."""
    agent = await start_agent(DISK, degradation=degradation())

    done = await vigil(agent.base_url, "flags", "import", SIMPLE, "--actor", "carol")
    status, audit = await agent.send("GET", "/api/v1/audit?kind=flag_set")

    assert done.returncode == 0, done.stderr
    assert status == 200, audit
    assert sorted((e["flags"], e["actor"]["kind"], e["actor"]["id"]) for e in audit["entries"]) == [
        (["feature.a"], "user", "carol"),
        (["feature.b"], "user", "carol"),
        (["feature.c"], "user", "carol"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON: Expecting value: line 1 column 1 (char 0)"),
        ('{"flags": []}', "not a client-features document: features must be a list, is missing"),
        ('{"features": [{"enabled": true}]}', "features[0] has no name (a non-empty string)"),
    ],
)
async def test_a_malformed_file_exits_3_and_writes_nothing(
    start_agent, tmp_path: Path, content: str, message: str
) -> None:
    """Not JSON, not a features document, a feature without a name: exit 3 naming the file and
    the reason, no traceback, no flag written."""
    agent = await start_agent(DISK, degradation=degradation())
    path = tmp_path / "features.json"
    path.write_text(content, encoding="utf-8")

    done = await vigil(agent.base_url, "flags", "import", str(path))

    assert done.returncode == 3
    assert done.stderr == f"vigil: {path}: {message}\n"
    assert await flags_of(agent) == {}


async def test_a_missing_file_exits_3(tmp_path: Path) -> None:
    """A file that cannot be read exits 3 with the reason, before any request."""
    path = tmp_path / "absent.json"

    done = await vigil("http://127.0.0.1:1", "flags", "import", str(path))

    assert done.returncode == 3
    assert done.stderr == f"vigil: {path}: No such file or directory\n"


async def test_dependent_features_import_parents_first_and_answer_as_unleash(start_agent) -> None:
    """Spec file 17 (dependencies, parent variants, cycles, missing parents) imports in one go,
    parents before children, and every case answers through the agent as the spec expects."""
    agent = await start_agent(DISK, degradation=degradation())

    done = await vigil(agent.base_url, "flags", "import", DEPENDENT, "--actor", "alice")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "25 feature(s) imported: 25 created, 0 replaced"
    assert (
        "child.with.cycle -> child.with.cycle: disabled, on by any of: [100 % by default in"
        " 'parent', variants parent.variant:1] (imported off, as Unleash answers: its parent"
        " 'parent.with.cycle' has parents itself) (created)"
    ) in done.stdout
    answers = []
    cases = spec(DEPENDENT)["tests"]
    for case in cases:
        body = {"context": vigil_context(case["context"])}
        key = case["toggleName"].lower()
        status, answer = await agent.send("POST", f"/api/v1/flags/{key}/evaluate", body)
        assert status in (200, 404), answer
        answers.append((case["description"], status == 200 and answer["value"]))
    assert answers == [(case["description"], case["expectedResult"]) for case in cases]


SHARED = {
    "version": 2,
    "segments": [
        {
            "id": 7,
            "name": "Beta testers",
            "constraints": [{"contextName": "tier", "operator": "IN", "values": ["beta"]}],
        },
        {"id": 8, "name": "unused", "constraints": []},
    ],
    "features": [
        {
            "name": name,
            "enabled": True,
            "strategies": [{"name": "default", "segments": [7]}],
        }
        for name in ("Search", "Cart")
    ],
}


async def test_a_segment_imports_once_and_stays_shared(start_agent, tmp_path: Path) -> None:
    """The segment two features name is written once, before them, under its Unleash name;
    the flags name it, so a later change to it reaches both. A second import clashes with it
    unless --replace."""
    agent = await start_agent(DISK, degradation=degradation())
    path = tmp_path / "shared.json"
    path.write_text(json.dumps(SHARED), encoding="utf-8")

    done = await vigil(agent.base_url, "flags", "import", str(path), "--actor", "dave")

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "segment beta-testers: tier in beta (created)",
        "Search -> search: enabled, on by any of: [100 % by default in 'Search', in segments"
        " beta-testers] (created)",
        "Cart -> cart: enabled, on by any of: [100 % by default in 'Cart', in segments"
        " beta-testers] (created)",
        "2 feature(s) imported: 2 created, 0 replaced; 1 segment(s): 1 created, 0 replaced",
    ]
    _, listed = await agent.send("GET", "/api/v1/segments")
    assert listed["used_by"] == {"beta-testers": ["search", "cart"]}
    assert listed["segments"][0]["description"] == "Unleash segment 7 (Beta testers)"
    gold = {"targeting": [{"attribute": "tier", "operator": "in", "values": ["gold"]}]}
    await agent.send("PUT", "/api/v1/segments/beta-testers", gold, token=ADMIN)
    for key in ("search", "cart"):
        _, answer = await agent.send(
            "POST", f"/api/v1/flags/{key}/evaluate", {"context": {"tier": "gold"}}
        )
        assert answer["value"] is True

    again = await vigil(agent.base_url, "flags", "import", str(path))
    assert again.returncode == 2
    assert again.stderr == (
        "vigil: these exist already: flags cart, search; segments beta-testers;"
        " --replace replaces them. Nothing imported\n"
    )
    replaced = await vigil(agent.base_url, "flags", "import", str(path), "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert replaced.stdout.splitlines()[0] == "segment beta-testers: tier in beta (replaced)"
    _, audit = await agent.send("GET", "/api/v1/audit?kind=segment_set&actor=dave")
    assert [e["segments"] for e in audit["entries"]] == [["beta-testers"]]


async def test_spec_segments_import_and_answer_as_unleash(start_agent) -> None:
    """Spec file 15 (segments, one missing) imports its segments and flags, and every case
    answers through the agent as the spec expects."""
    agent = await start_agent(DISK, degradation=degradation())

    done = await vigil(agent.base_url, "flags", "import", SEGMENTS, "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [s["segment"]["name"] for s in report["segments"]] == [
        "segment-1",
        "segment-2",
        "segment-4",
        "segment-5",
    ]
    assert {s["action"] for s in report["segments"]} == {"created"}
    assert await answers_spec_cases(agent, SEGMENTS) == len(spec(SEGMENTS)["tests"])
