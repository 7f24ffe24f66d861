"""The Datafold simulator, driven over real HTTP, as every other test and the demo rely on it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from notifier.demo import records
from notifier.demo.server import serve
from notifier.demo.simulator import Simulator, demo_simulator

KEY = "test-key"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

#: The vendored spec, whose schemas the simulator's answers are held to (not a copy of them).
SPEC_PATH = Path(__file__).resolve().parent.parent / "contract" / "datafold-monitors-openapi.yml"
SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
SCHEMAS: dict[str, Any] = SPEC["components"]["schemas"]
SPEC_URI = "urn:datafold-monitors-openapi"
#: RFC 3339 `date-time`, as JSON Schema means it (jsonschema checks it only with an extra package).
DATE_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", re.IGNORECASE)
FORMATS = FormatChecker(formats=())


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # a real date: no 13th month
    return DATE_TIME.fullmatch(value) is not None


def _closed(schema: Any) -> Any:
    """The schema with every object closed: an answer may carry no field the spec leaves out."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    closed = {key: _closed(value) for key, value in schema.items()}
    if "properties" in schema and "additionalProperties" not in schema:
        closed["additionalProperties"] = False
    return closed


def _registry(spec: dict[str, Any]) -> Registry[Any]:
    resource = Resource.from_contents(spec, default_specification=DRAFT202012)
    return Registry().with_resource(SPEC_URI, resource)


OPEN, CLOSED = _registry(SPEC), _registry(_closed(SPEC))


def answer_validator(template: str, status: int, *, closed: bool = True) -> Draft202012Validator:
    """The spec's schema for a GET of `template` answered with `status` (which it must document).

    Closed for successful answers: the simulator invents no field. Open for 422s, which carry
    FastAPI's `input` and `ctx` besides the documented `loc`, `msg` and `type`.
    """
    responses = SPEC["paths"][template]["get"]["responses"]
    assert str(status) in responses, f"the spec documents no {status} for GET {template}"
    escaped = template.replace("~", "~0").replace("/", "~1")
    pointer = f"/paths/{escaped}/get/responses/{status}/content/application~1json/schema"
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#{pointer}"},
        registry=CLOSED if closed else OPEN,
        format_checker=FORMATS,
    )


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Api:
    """A thin client over a served simulator: the status and the decoded body of each GET."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str, key: str | None = KEY, **params: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Key {key}"} if key is not None else {}
        query = {name: str(value) for name, value in params.items()}
        async with self.session.get(self.base + path, headers=headers, params=query) as resp:
            return resp.status, await resp.json()

    async def runs(self, monitor_id: int, **params: Any) -> list[dict[str, Any]]:
        status, body = await self.get(f"/api/v1/monitors/{monitor_id}/runs", **params)
        assert status == 200, body
        runs: list[dict[str, Any]] = body["runs"]
        return runs

    async def all_runs(self, monitor_id: int) -> dict[int, dict[str, Any]]:
        return {run["run_id"]: run for run in await self.runs(monitor_id, page_size=1000)}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    sim = Simulator(KEY, clock=clock, seed=7)
    sim.add_monitor(1, name="orders diff", monitor_type="diff", tags=["prod", "orders"])
    sim.add_monitor(2, name="revenue", monitor_type="metric", tags=["prod"], owner="a@example.com")
    return sim


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[Api]:
    async with serve(sim) as base, aiohttp.ClientSession() as session:
        yield Api(session, base)


ENDPOINT_PATHS = [
    "/api/v1/monitors",
    "/api/v1/monitors/1",
    "/api/v1/monitors/1/runs",
    "/api/v1/monitors/1/runs/1",
]


@pytest.mark.parametrize("path", ENDPOINT_PATHS)
@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["missing", "wrong"])
async def test_every_endpoint_refuses_a_missing_or_wrong_key(
    api: Api, sim: Simulator, path: str, key: str | None
) -> None:
    sim.add_run(1, run_id=1)
    assert await api.get(path, key=key) == (401, {"detail": "Invalid API key"})
    assert sim.requests[-1].authorized is False
    status, _ = await api.get(path)
    assert status == 200
    assert sim.requests[-1].authorized is True


async def test_key_must_use_the_key_scheme(api: Api) -> None:
    async with api.session.get(
        api.base + "/api/v1/monitors", headers={"Authorization": f"Bearer {KEY}"}
    ) as resp:
        assert resp.status == 401


async def test_requests_are_recorded_with_their_query(api: Api, sim: Simulator) -> None:
    await api.get("/api/v1/monitors/1/runs", page=2, start_time="2024-05-01T00:00:00Z")
    recorded = sim.requests[-1]
    assert (recorded.method, recorded.path) == ("GET", "/api/v1/monitors/1/runs")
    assert recorded.query == {"page": "2", "start_time": "2024-05-01T00:00:00Z"}


@pytest.mark.parametrize(
    ("path", "detail"),
    [
        ("/api/v1/monitors/99", "Monitor not found"),
        ("/api/v1/monitors/99/runs", "Monitor not found"),
        ("/api/v1/monitors/99/runs/1", "Monitor not found"),
        ("/api/v1/monitors/1/runs/12345", "Run not found"),
        ("/api/v1/monitors/2/runs/1", "Run not found"),  # run 1 belongs to monitor 1
        ("/api/v1/nothing-here", "Not Found"),
    ],
)
async def test_unknown_things_are_404(api: Api, sim: Simulator, path: str, detail: str) -> None:
    sim.add_run(1, run_id=1)
    assert await api.get(path) == (404, {"detail": detail})


@pytest.mark.parametrize(
    ("path", "params", "loc", "error_type"),
    [
        ("/api/v1/monitors/1/runs", {"page": "two"}, ["query", "page"], "int_parsing"),
        ("/api/v1/monitors/1/runs", {"page": "0"}, ["query", "page"], "greater_than_equal"),
        ("/api/v1/monitors/1/runs", {"page_size": "1.5"}, ["query", "page_size"], "int_parsing"),
        (
            "/api/v1/monitors/1/runs",
            {"page_size": "0"},
            ["query", "page_size"],
            "greater_than_equal",
        ),
        ("/api/v1/monitors/1/runs", {"start_time": "yesterday"}, ["query", "start_time"], None),
        (
            "/api/v1/monitors/1/runs",
            {"end_time": "2024-13-01T00:00:00Z"},
            ["query", "end_time"],
            None,
        ),
        ("/api/v1/monitors/abc/runs", {}, ["path", "id"], "int_parsing"),
        ("/api/v1/monitors/abc", {}, ["path", "id"], "int_parsing"),
        ("/api/v1/monitors/1/runs/x", {}, ["path", "run_id"], "int_parsing"),
        ("/api/v1/monitors", {"page": "-1"}, ["query", "page"], "greater_than_equal"),
        ("/api/v1/monitors", {"page_size": "many"}, ["query", "page_size"], "int_parsing"),
    ],
)
async def test_bad_parameters_are_422_in_fastapi_shape(
    api: Api, path: str, params: dict[str, str], loc: list[str], error_type: str | None
) -> None:
    status, body = await api.get(path, **params)
    assert status == 422
    [error] = body["detail"]
    assert error["loc"] == loc
    assert isinstance(error["msg"], str) and error["msg"]
    assert error["type"] == (error_type or error["type"])


async def test_validation_comes_before_the_404(api: Api) -> None:
    status, body = await api.get("/api/v1/monitors/99/runs", page="x", page_size="y")
    assert status == 422
    assert [error["loc"][1] for error in body["detail"]] == ["page", "page_size"]


def test_the_spec_is_openapi_3_1() -> None:
    """3.1 schemas are JSON Schema 2020-12 (`type: 'null'`, no 3.0 `nullable`): validated as is."""
    assert SPEC["openapi"].startswith("3.1.")
    assert "nullable" not in json.dumps(SPEC)


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (records.RUN_STATES, SCHEMAS["MonitorRunState"]["enum"]),
        (
            records.MONITOR_TYPES,
            SCHEMAS["ApiPublicGetMonitorOut"]["properties"]["monitor_type"]["anyOf"][0]["enum"],
        ),
        (records.SORTABLE_FIELDS, SCHEMAS["SortableFields"]["enum"]),
        (
            records.SORT_ORDERS,
            next(
                p["schema"]["enum"]
                for p in SPEC["paths"]["/api/v1/monitors"]["get"]["parameters"]
                if p["name"] == "sort_order"
            ),
        ),
    ],
)
def test_the_simulators_enums_are_the_specs(ours: tuple[str, ...], theirs: list[str]) -> None:
    assert sorted(ours) == sorted(theirs)


@pytest.mark.parametrize(
    ("template", "good", "bad"),
    [
        (
            "/api/v1/monitors/{id}/runs",
            {"count": 0, "page": 1, "page_size": 10, "total_pages": 0, "runs": []},
            {"count": 0, "page": 1, "page_size": 10, "total_pages": 0, "runs": [], "next": None},
        ),
        (
            "/api/v1/monitors/{id}/runs/{run_id}",
            {"run_id": 1, "monitor_id": 1, "state": "ok", "warnings": []},
            {"run_id": 1, "monitor_id": 1, "state": None, "warnings": []},
        ),
        (
            "/api/v1/monitors/{id}/runs/{run_id}",
            {
                "run_id": 1,
                "monitor_id": 1,
                "state": "ok",
                "warnings": [],
                "started_at": "2024-05-01T12:00:00Z",
            },
            {
                "run_id": 1,
                "monitor_id": 1,
                "state": "ok",
                "warnings": [],
                "started_at": "2024-13-01T12:00:00Z",
            },
        ),
        (
            "/api/v1/monitors/{id}/runs/{run_id}",
            {"run_id": 1, "monitor_id": 1, "state": "queued", "warnings": []},
            {"run_id": 1, "monitor_id": 1, "state": "paused", "warnings": []},
        ),
    ],
)
def test_the_validator_refuses_what_the_spec_refuses(
    template: str, good: dict[str, Any], bad: dict[str, Any]
) -> None:
    """The check below has teeth: an extra field, a null state, a bad date, an unknown state."""
    validator = answer_validator(template, 200)
    validator.validate(good)
    assert not validator.is_valid(bad)


async def test_answers_follow_the_published_schemas(
    api: Api, sim: Simulator, clock: FakeClock
) -> None:
    """Every kind of answer the simulator gives, held to the response schema the spec documents
    for that operation and status, loaded from the vendored YAML with its `$ref`s resolved."""
    sim.add_monitor(3, name=None, monitor_type="schema", tags=[], every=10, duration=4)
    sim.add_monitor(4, name="a test", monitor_type="test", owner="o@example.com")
    runs = [
        sim.add_run(1, state=state, started_at=T0 + timedelta(minutes=i), diff_id=i, error="x")
        for i, state in enumerate(records.RUN_STATES)
    ]
    runs.append(sim.add_run(1, state="created", started_at=None))
    sim.add_run(2, state=None)
    clock.tick(35)  # monitor 3's scheduled runs: finished, checking, created
    scheduled = [f"/api/v1/monitors/3/runs/{run_id}" for run_id in (await api.all_runs(3))]
    answers: list[tuple[str, str, dict[str, Any], int]] = [
        ("/api/v1/monitors", "/api/v1/monitors", {}, 200),
        ("/api/v1/monitors", "/api/v1/monitors", {"tags": "prod", "page_size": 1, "page": 2}, 200),
        ("/api/v1/monitors", "/api/v1/monitors", {"page": 9}, 200),
        *(
            ("/api/v1/monitors", "/api/v1/monitors", {"order_by": field, "sort_order": order}, 200)
            for field in records.SORTABLE_FIELDS
            for order in records.SORT_ORDERS
        ),
        *(
            ("/api/v1/monitors/{id}", f"/api/v1/monitors/{monitor_id}", {}, 200)
            for monitor_id in (1, 2, 3, 4)
        ),
        *(
            ("/api/v1/monitors/{id}/runs", f"/api/v1/monitors/{monitor_id}/runs", {}, 200)
            for monitor_id in (1, 2, 3, 4)
        ),
        (
            "/api/v1/monitors/{id}/runs",
            "/api/v1/monitors/1/runs",
            {"page": 2, "page_size": 3, "start_time": "2024-05-01T12:02:00Z"},
            200,
        ),
        *(
            ("/api/v1/monitors/{id}/runs/{run_id}", f"/api/v1/monitors/1/runs/{run_id}", {}, 200)
            for run_id in runs
        ),
        *(("/api/v1/monitors/{id}/runs/{run_id}", path, {}, 200) for path in scheduled),
        ("/api/v1/monitors", "/api/v1/monitors", {"page": "x", "order_by": "owner"}, 422),
        ("/api/v1/monitors", "/api/v1/monitors", {"sort_order": "up"}, 422),
        ("/api/v1/monitors/{id}", "/api/v1/monitors/abc", {}, 422),
        ("/api/v1/monitors/{id}/runs", "/api/v1/monitors/1/runs", {"page_size": "0"}, 422),
        ("/api/v1/monitors/{id}/runs", "/api/v1/monitors/1/runs", {"end_time": "soon"}, 422),
        ("/api/v1/monitors/{id}/runs/{run_id}", "/api/v1/monitors/1/runs/x", {}, 422),
    ]
    for template, path, params, expected in answers:
        status, body = await api.get(path, **params)
        assert status == expected, (path, params, body)
        answer_validator(template, status, closed=status == 200).validate(body)


async def test_a_run_without_a_state_is_listed_but_its_detail_fails_as_fastapi_would(
    api: Api, sim: Simulator
) -> None:
    """The listing allows a null state; the single run's schema does not. FastAPI refuses to send
    an answer its response model rejects: the simulator answers the same 500."""
    run_id = sim.add_run(1, state=None)
    [listed] = await api.runs(1)
    assert listed["state"] is None
    async with api.session.get(
        f"{api.base}/api/v1/monitors/1/runs/{run_id}", headers={"Authorization": f"Key {KEY}"}
    ) as resp:
        assert (resp.status, await resp.text()) == (500, "Internal Server Error")


@pytest.mark.parametrize(
    ("call", "kwargs"),
    [
        ("add_run", {"state": "paused"}),
        ("add_run", {"state": "ALERT"}),
        ("add_monitor", {"monitor_type": "freshness"}),
        ("add_monitor", {"monitor_type": "diff", "every": 1, "outcomes": ["ok", "broken"]}),
    ],
)
def test_the_simulator_refuses_what_the_spec_cannot_say(call: str, kwargs: dict[str, Any]) -> None:
    sim = Simulator(KEY)
    sim.add_monitor(1)
    with pytest.raises(ValueError, match="spec"):
        if call == "add_run":
            sim.add_run(1, **kwargs)
        else:
            sim.add_monitor(2, **kwargs)
    run_id = sim.add_run(1, state="ok")
    with pytest.raises(ValueError, match="spec"):
        sim.set_run_state(1, run_id, "paused")


@pytest.mark.parametrize(
    ("count", "page_size", "total_pages"), [(23, 5, 5), (20, 5, 4), (3, 10, 1), (0, 10, 0)]
)
async def test_pages_cover_every_run_exactly_once(
    api: Api, sim: Simulator, count: int, page_size: int, total_pages: int
) -> None:
    expected = {sim.add_run(1, started_at=T0 + timedelta(minutes=i)) for i in range(count)}
    seen: list[int] = []
    for page in range(1, total_pages + 2):  # one page past the end
        status, body = await api.get("/api/v1/monitors/1/runs", page=page, page_size=page_size)
        assert status == 200
        assert (body["count"], body["page"], body["page_size"]) == (count, page, page_size)
        assert body["total_pages"] == total_pages
        assert len(body["runs"]) <= page_size
        seen += [run["run_id"] for run in body["runs"]]
    assert body["runs"] == []
    assert sorted(seen) == sorted(expected)


async def test_page_size_defaults_to_10_and_is_capped(api: Api, sim: Simulator) -> None:
    for _ in range(12):
        sim.add_run(1)
    _, body = await api.get("/api/v1/monitors/1/runs")
    assert (body["page_size"], len(body["runs"]), body["total_pages"]) == (10, 10, 2)
    _, body = await api.get("/api/v1/monitors/1/runs", page_size=5000)
    assert (body["page_size"], len(body["runs"]), body["total_pages"]) == (1000, 12, 1)


async def test_listing_is_not_in_time_order_but_is_stable(api: Api, sim: Simulator) -> None:
    for i in range(20):
        sim.add_run(1, started_at=T0 + timedelta(minutes=i))
    first = [run["run_id"] for run in await api.runs(1, page_size=100)]
    assert first not in (sorted(first), sorted(first, reverse=True))
    assert [run["run_id"] for run in await api.runs(1, page_size=100)] == first


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, {"a", "b", "c", "unstarted"}),
        ({"start_time": "2024-05-01T12:10:00Z"}, {"b", "c", "unstarted"}),  # >= is inclusive
        ({"end_time": "2024-05-01T12:10:00Z"}, {"a", "b"}),  # <= is inclusive
        ({"start_time": "2024-05-01T12:00:01Z", "end_time": "2024-05-01T12:19:59Z"}, {"b"}),
        ({"start_time": "2024-05-01T14:10:00+02:00"}, {"b", "c", "unstarted"}),  # an offset
        ({"start_time": "2024-05-01T12:10:00"}, {"b", "c", "unstarted"}),  # no offset: UTC
        ({"start_time": "2024-05-01T13:00:00Z"}, {"unstarted"}),  # created at 13:00
        ({"end_time": "2024-05-01T11:59:59Z"}, set()),
    ],
)
async def test_time_filters_compare_start_or_creation_time(
    api: Api, sim: Simulator, clock: FakeClock, params: dict[str, str], expected: set[str]
) -> None:
    ids = {
        name: sim.add_run(1, state="ok", started_at=T0 + timedelta(minutes=minutes))
        for name, minutes in {"a": 0, "b": 10, "c": 20}.items()
    }
    clock.tick(3600)
    ids["unstarted"] = sim.add_run(1, state="created", started_at=None)
    names = {run_id: name for name, run_id in ids.items()}
    runs = await api.runs(1, page_size=100, **params)
    assert {names[run["run_id"]] for run in runs} == expected


async def test_started_at_is_iso_8601_with_z(api: Api, sim: Simulator) -> None:
    sim.add_run(1, started_at=datetime(2024, 5, 1, 16, 30, tzinfo=timezone(timedelta(hours=2))))
    sim.add_run(1, started_at=None)
    stamps = {run["started_at"] for run in await api.runs(1)}
    assert stamps == {"2024-05-01T14:30:00Z", None}


async def test_scheduled_runs_appear_and_progress_with_the_clock(
    api: Api, sim: Simulator, clock: FakeClock
) -> None:
    sim.add_monitor(3, every=10, duration=4, outcomes=["alert", "error"])
    # (seconds after add_monitor, states of the runs by start time)
    timeline = [
        (9.9, []),
        (10, ["created"]),
        (11.9, ["created"]),
        (12, ["checking"]),
        (14, ["alert"]),
        (20, ["alert", "created"]),
        (24, ["alert", "error"]),
        (30, ["alert", "error", "created"]),
        (34, ["alert", "error", "alert"]),
    ]
    elapsed = 0.0
    for at, states in timeline:
        clock.tick(at - elapsed)
        elapsed = at
        runs = sorted((await api.all_runs(3)).values(), key=lambda run: run["started_at"])
        assert [run["state"] for run in runs] == states, f"at {at} s"
    assert [run["started_at"] for run in runs] == [
        "2024-05-01T12:00:10Z",
        "2024-05-01T12:00:20Z",
        "2024-05-01T12:00:30Z",
    ]


async def test_advance_generates_without_a_request(sim: Simulator, clock: FakeClock) -> None:
    sim.add_monitor(3, every=5, duration=0, outcomes=["ok"])
    clock.tick(25)
    sim.advance()
    run_id = sim.add_run(3)
    assert run_id == 6  # five scheduled runs took the IDs before it


@pytest.mark.parametrize(("monitor_type", "has_diff"), [("diff", True), ("metric", False)])
async def test_only_diff_monitors_give_runs_a_diff_id(
    api: Api, sim: Simulator, clock: FakeClock, monitor_type: str, has_diff: bool
) -> None:
    sim.add_monitor(3, monitor_type=monitor_type, every=1, duration=0)
    clock.tick(3)
    runs = (await api.all_runs(3)).values()
    assert len(runs) == 3
    assert all((run["diff_id"] is not None) == has_diff for run in runs)


async def test_default_outcomes_are_mostly_ok_and_repeat_with_the_seed() -> None:
    async def outcomes(seed: int) -> list[str]:
        clock = FakeClock()
        sim = Simulator(KEY, clock=clock, seed=seed)
        sim.add_monitor(1, every=1, duration=0)
        clock.tick(200)
        async with serve(sim) as base, aiohttp.ClientSession() as session:
            runs = await Api(session, base).all_runs(1)
        return [runs[run_id]["state"] for run_id in sorted(runs)]

    first = await outcomes(3)
    assert len(first) == 200
    assert await outcomes(3) == first
    assert await outcomes(4) != first
    assert first.count("ok") > len(first) / 2
    assert {"alert", "error"} <= set(first)


async def test_single_run_gives_the_error_message(
    api: Api, sim: Simulator, clock: FakeClock
) -> None:
    sim.add_monitor(3, every=10, duration=2, outcomes=["ok", "error"])
    clock.tick(22)
    ok_run, error_run = sorted(await api.all_runs(3))
    status, body = await api.get(f"/api/v1/monitors/3/runs/{error_run}")
    assert status == 200
    assert body["state"] == "error"
    assert "failed" in body["error"] or "timed out" in body["error"]
    assert body["warnings"] == []
    _, body = await api.get(f"/api/v1/monitors/3/runs/{ok_run}")
    assert (body["state"], body["error"]) == ("ok", None)


async def test_run_state_can_be_set_by_hand(api: Api, sim: Simulator, clock: FakeClock) -> None:
    run_id = sim.add_run(1, state="created", diff_id=9)
    sim.set_run_state(1, run_id, "error", error="Query failed: boom")
    _, body = await api.get(f"/api/v1/monitors/1/runs/{run_id}")
    assert (body["state"], body["error"], body["diff_id"]) == ("error", "Query failed: boom", 9)
    sim.add_monitor(3, every=10, duration=10, outcomes=["alert"])
    clock.tick(10)
    sim.advance()
    [scheduled] = (await api.all_runs(3)).keys()
    sim.set_run_state(3, scheduled, "cancelled")
    clock.tick(9)  # past its planned finish: the hand-set state stays
    assert (await api.all_runs(3))[scheduled]["state"] == "cancelled"


async def test_fault_answers_status_and_retry_after_then_recovers(api: Api, sim: Simulator) -> None:
    sim.inject_fault(status=429, retry_after="7", times=2)
    for _ in range(2):
        async with api.session.get(
            api.base + "/api/v1/monitors/1/runs", headers={"Authorization": f"Key {KEY}"}
        ) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == "7"
            assert await resp.json() == {"detail": "Too Many Requests"}
    status, _ = await api.get("/api/v1/monitors/1/runs")
    assert status == 200


@pytest.mark.parametrize(
    ("fault", "path", "hit"),
    [
        ({"monitor_id": 1}, "/api/v1/monitors/1/runs", True),
        ({"monitor_id": 1}, "/api/v1/monitors/2/runs", False),
        ({}, "/api/v1/monitors/2/runs", True),
        ({"endpoint": "monitor"}, "/api/v1/monitors/2", True),
        ({"endpoint": "monitor"}, "/api/v1/monitors/2/runs", False),
        ({"endpoint": "run", "monitor_id": 1}, "/api/v1/monitors/1/runs/1", True),
        ({"endpoint": "monitors"}, "/api/v1/monitors", True),
        ({"endpoint": "monitors"}, "/api/v1/monitors/1", False),
    ],
)
async def test_fault_matches_its_endpoint_and_monitor(
    api: Api, sim: Simulator, fault: dict[str, Any], path: str, hit: bool
) -> None:
    sim.add_run(1, run_id=1)
    sim.inject_fault(status=503, **fault)
    status, _ = await api.get(path)
    assert status == (503 if hit else 200)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("not json", "application/json"),
        (json.dumps({"runs": "nope", "count": "many"}), "application/json"),
        ("<html>Bad gateway</html>", "text/html"),
    ],
)
async def test_fault_can_answer_200_with_garbage(
    api: Api, sim: Simulator, body: str, content_type: str
) -> None:
    sim.inject_fault(status=200, body=body, content_type=content_type)
    async with api.session.get(
        api.base + "/api/v1/monitors/1/runs", headers={"Authorization": f"Key {KEY}"}
    ) as resp:
        assert resp.status == 200
        assert resp.content_type == content_type
        assert await resp.text() == body


async def test_fault_delay_makes_a_client_time_out(api: Api, sim: Simulator) -> None:
    sim.inject_fault(delay=0.5)
    timeout = aiohttp.ClientTimeout(total=0.1)
    with pytest.raises(asyncio.TimeoutError):
        await api.session.get(api.base + "/api/v1/monitors/1/runs", timeout=timeout)
    status, _ = await api.get("/api/v1/monitors/1/runs")
    assert status == 200


async def test_fault_delay_with_200_and_no_body_answers_normally_late(
    api: Api, sim: Simulator
) -> None:
    sim.inject_fault(status=200, delay=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, body = await api.get("/api/v1/monitors/1/runs")
    assert loop.time() - started >= 0.2
    assert (status, body["count"]) == (200, 0)


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (None, [1, 2]),
        ("", [1, 2]),
        ("prod", [1, 2]),
        ("prod,orders", [1]),  # a monitor must have all of them
        ("orders, prod", [1]),
        ("orders,finance", []),
        ("nope", []),
    ],
)
async def test_monitors_listing_filters_by_all_tags(
    api: Api, tags: str | None, expected: list[int]
) -> None:
    params = {} if tags is None else {"tags": tags}
    status, body = await api.get("/api/v1/monitors", **params)
    assert status == 200
    assert [monitor["id"] for monitor in body["monitors"]] == expected
    assert (body["count"], body["page"], body["page_size"]) == (len(expected), 1, 20)


@pytest.fixture
def four_monitors(sim: Simulator) -> Simulator:
    """Monitors 1-4 whose names, owners, last runs and last alerts sort differently, with nulls.

    1 "orders diff", no owner, last run 12:20, last alert 12:05
    2 "revenue", a@, no runs
    3 no name, c@, last run and last alert 12:30
    4 "alpha", b@, last run 12:01, no alert
    """
    sim.add_run(1, state="alert", started_at=T0 + timedelta(minutes=5))
    sim.add_run(1, state="ok", started_at=T0 + timedelta(minutes=20))
    sim.add_monitor(3, name=None, owner="c@example.com")
    sim.add_run(3, state="alert", started_at=T0 + timedelta(minutes=30))
    sim.add_monitor(4, name="alpha", owner="b@example.com")
    sim.add_run(4, state="ok", started_at=T0 + timedelta(minutes=1))
    return sim


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"order_by": "id", "sort_order": "asc"}, [1, 2, 3, 4]),
        ({"order_by": "id", "sort_order": "desc"}, [4, 3, 2, 1]),
        ({"order_by": "id"}, [4, 3, 2, 1]),  # sort_order defaults to desc
        ({"order_by": "name", "sort_order": "asc"}, [4, 1, 2, 3]),  # no name: last going up
        ({"order_by": "name", "sort_order": "desc"}, [3, 2, 1, 4]),  # ... and first going down
        ({"order_by": "last_run", "sort_order": "asc"}, [4, 1, 3, 2]),
        ({"order_by": "last_run", "sort_order": "desc"}, [2, 3, 1, 4]),
        ({"order_by": "last_triggered", "sort_order": "asc"}, [1, 3, 2, 4]),  # ties by ID
        ({"order_by": "last_triggered", "sort_order": "desc"}, [4, 2, 3, 1]),
        ({"order_by": "created_by", "sort_order": "asc"}, [2, 4, 3, 1]),
        ({"order_by": "created_by", "sort_order": "desc"}, [1, 3, 4, 2]),
        ({}, [1, 2, 3, 4]),  # no order_by: by ID, the simulator's stable choice
        ({"sort_order": "desc"}, [1, 2, 3, 4]),
    ],
)
async def test_monitors_listing_honours_order_by_and_sort_order(
    api: Api, four_monitors: Simulator, params: dict[str, str], expected: list[int]
) -> None:
    status, body = await api.get("/api/v1/monitors", **params)
    assert status == 200
    assert [monitor["id"] for monitor in body["monitors"]] == expected
    pages = []
    for page in (1, 2):
        _, part = await api.get("/api/v1/monitors", page=page, page_size=3, **params)
        pages += [monitor["id"] for monitor in part["monitors"]]
    assert pages == expected  # pages follow the same order


async def test_monitors_listing_order_goes_with_the_tags_filter(
    api: Api, four_monitors: Simulator
) -> None:
    four_monitors.set_tags(4, ["prod"])
    _, body = await api.get("/api/v1/monitors", tags="prod", order_by="name", sort_order="asc")
    assert [monitor["id"] for monitor in body["monitors"]] == [4, 1, 2]


@pytest.mark.parametrize(
    ("params", "loc", "error_type", "msg"),
    [
        (
            {"order_by": "owner"},
            ["query", "order_by"],
            "enum",
            "Input should be 'id', 'name', 'last_triggered', 'last_run' or 'created_by'",
        ),
        (
            {"sort_order": "DESC"},
            ["query", "sort_order"],
            "literal_error",
            "Input should be 'asc' or 'desc'",
        ),
    ],
)
async def test_monitors_listing_refuses_an_order_the_spec_does_not_list(
    api: Api, params: dict[str, str], loc: list[str], error_type: str, msg: str
) -> None:
    status, body = await api.get("/api/v1/monitors", **params)
    assert status == 422
    [error] = body["detail"]
    assert (error["loc"], error["type"], error["msg"]) == (loc, error_type, msg)
    answer_validator("/api/v1/monitors", 422, closed=False).validate(body)


async def test_monitors_listing_pages(api: Api, sim: Simulator) -> None:
    for monitor_id in range(3, 8):
        sim.add_monitor(monitor_id)
    _, body = await api.get("/api/v1/monitors", page=2, page_size=3)
    assert ([m["id"] for m in body["monitors"]], body["total_pages"]) == ([4, 5, 6], 3)


async def test_monitor_shows_its_latest_run_and_last_alert(api: Api, sim: Simulator) -> None:
    sim.add_run(1, state="alert", started_at=T0 + timedelta(minutes=5))
    sim.add_run(1, state="ok", started_at=T0 + timedelta(minutes=20))
    sim.add_run(1, state="error", started_at=T0 + timedelta(minutes=10))
    _, listing = await api.get("/api/v1/monitors")
    _, full = await api.get("/api/v1/monitors/1")
    for monitor in (listing["monitors"][0], full):
        assert monitor["last_run"] == "2024-05-01T12:20:00Z"
        assert monitor["state"] == "ok"
        assert monitor["last_alert"] == "2024-05-01T12:05:00Z"
    assert listing["monitors"][1]["last_run"] is None
    assert listing["monitors"][1]["state"] is None
    assert (full["name"], full["monitor_type"], full["tags"]) == (
        "orders diff",
        "diff",
        ["prod", "orders"],
    )


async def test_demo_alerts_within_30_s_and_errors_within_50_s() -> None:
    clock = FakeClock()
    sim = demo_simulator(KEY, clock=clock)
    assert sim.monitor_ids == [101, 102, 103]
    first_seen: dict[str, float] = {}
    async with serve(sim) as base, aiohttp.ClientSession() as session:
        api = Api(session, base)
        for second in range(61):
            for monitor_id in sim.monitor_ids:
                for run in await api.runs(monitor_id, page_size=100):
                    first_seen.setdefault(run["state"], second)
                    if run["state"] == "error":
                        _, detail = await api.get(
                            f"/api/v1/monitors/{monitor_id}/runs/{run['run_id']}"
                        )
                        assert detail["error"]
            clock.tick(1)
    assert 20 <= first_seen["alert"] <= 30
    assert 40 <= first_seen["error"] <= 50
    assert first_seen["ok"] < first_seen["alert"]


async def test_serve_yields_a_base_url_and_frees_the_port() -> None:
    sim = Simulator(KEY)
    async with serve(sim) as base:
        assert base.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(base + "/api/v1/monitors")


@pytest.mark.parametrize(
    "kwargs",
    [{"endpoint": "nope"}, {"endpoint": "monitors", "monitor_id": 1}, {"times": 0}],
)
def test_inject_fault_rejects_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Simulator().inject_fault(**kwargs)
