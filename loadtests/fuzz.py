"""Fuzz every service's API from its own OpenAPI document (schemathesis generates the requests,
hypothesis drives them), against a running fleet, and check what a rejection must be:

- no 5xx, ever;
- every 4xx is the JSON envelope `{"ok": false, "error": {"code", "message", ...}}`;
- a rejected request (any 4xx) changes nothing: a snapshot of the fleet's state (the `default`
  learner's state hash, meta document and history length, the learners count and regions, coach
  settings, active flag and fast lane, scale, the round counter, the curriculum version, meta's
  pause flag) is taken right before and right after each request and must be equal.

For the last check to mean something the fleet is kept quiet: the coach loop is stopped,
onboarding is paused and the readiness thresholds are unreachable (so no meta trigger runs in the
background), and operations whose valid calls would undo that are guarded (see GUARDS). Half of
the generated `learner` fields and parameters are set to `default`, so rejected requests aimed at
the one learner whose state is compared are common.

The long documented run (10,000 requests per service, a private fleet on free ports):

    python -m loadtests.fuzz                    # --requests 10000 --seed 0 --services all

It prints, per service, requests sent, 2xx, 4xx, 5xx, envelope failures and state changes, and
exits 1 when any 5xx, envelope failure or state change was seen. The test suite runs the same
code with a few hundred requests per service (tests/integration/test_fuzz.py).

Reproducible: every hypothesis run has a fixed seed (`--seed`, then seed+1 for each further pass
over the operations), no example database, no shrinking.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis as sync_redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from services.training.thresholds import MAX_AGE_S as THRESHOLDS_MAX_AGE_S
from shared.fleet import NAMES
from shared.fleet_totals import read_totals_sync
from shared.keys import DEFAULT_SHARDS, Keys

SNAPSHOT_FIELDS = (
    "learner_state",
    "learner_meta",
    "history_length",
    "learners",
    "regions",
    "coach_settings",
    "coach_active",
    "fast_lane",
    "scale",
    "rounds_seq",
    "curriculum_version",
    "meta_paused",
)
SERVICES = NAMES
LEARNER = "default"
# Thresholds no learner reaches (average mastery 100 with nothing below target): no learner
# becomes ready, so no meta trigger changes a learner's state in the background.
QUIET_THRESHOLDS = {"minAvgMastery": 100, "maxBelow80": 0}

# Not fuzzed: server-sent events never end, so a generated request would only time out.
EXCLUDED = {("web", "GET", "/api/v1/system/events")}

# Operations whose *valid* calls change the fleet globally in a way that would disturb the run.
# After such a call answered 2xx, its guard puts the fleet back to quiet, before the next request:
# - coach start (and the orchestrator's pre-arm, which starts the coach): the loop would run
#   rounds in the background; the guard stops it again (coach stop itself is harmless here);
# - coach settings / pre-arm: readiness thresholds could become reachable; the guard restores them;
# - meta pause: every meta call would answer 409 for the rest of the run; the guard resumes;
# - web resume-onboarding (and the full resume): training would onboard up to the fuzzed scale
#   target (up to ten million learners); the guard pauses onboarding again.
# The orchestrator's service stop/start/restart are fuzzed as they are: the fleet's orchestrator
# runs in observe mode, where they answer 409 `not_managed` and touch no process.
GUARDS: dict[tuple[str, str, str], tuple[str, ...]] = {
    ("coach", "POST", "/api/v1/auto-coach/start"): ("coach_stop",),
    ("coach", "POST", "/api/v1/auto-coach/settings"): ("thresholds",),
    ("orchestrator", "POST", "/api/v1/system/prearm"): ("coach_stop", "thresholds"),
    ("meta", "POST", "/api/v4/meta-learning/pause"): ("meta_resume",),
    ("web", "POST", "/api/v1/system/resume-onboarding"): ("onboarding_pause",),
    # The full pause pauses meta (resumed again); the full resume starts the coach and onboarding.
    ("web", "POST", "/api/v1/system/pause"): ("meta_resume",),
    ("web", "POST", "/api/v1/system/resume"): ("coach_stop", "onboarding_pause"),
    # Background priority starts the coach, as coach start does.
    ("web", "POST", "/api/v1/system/priority/background"): ("coach_stop",),
}


GUARDED_VALID_CALLS = 3  # valid calls per pass of an operation in GUARDS

# Path values go into the URL as they are (percent-encoded or not); query values are encoded.
HOSTILE_PATH_VALUES = ("%C2%B2", "%EF%BC%91", "%FF", "%00", "-1", "1e3", "a" * 300, "%2e%2e")
HOSTILE_QUERY_VALUES = ("²", "１", "", "-0", "1e309", "nan", "\x00", "a" * 300)
HOSTILE_BODIES: tuple[tuple[bytes, dict[str, str] | None], ...] = (
    (b"[]", None),
    (b"null", None),
    (b'"default"', None),
    (b"{", None),
    (b"\xff\xfe", None),
    (b'{"learner": "default", "rounds": 1e999}', None),
    (b'{"learner": "default", "unknown": 1}', None),
    (b"[" * 10_000, None),
    (b"{}", {"Content-Encoding": "gzip"}),
    (b"{}", {"Content-Type": "text/plain"}),
)


@dataclass
class ServiceResult:
    service: str
    operations: int = 0
    requests: int = 0
    ok_2xx: int = 0
    rejected_4xx: int = 0
    errors_5xx: int = 0
    envelope_failures: int = 0
    state_changes: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.errors_5xx or self.envelope_failures or self.state_changes)


def envelope_problem(status: int, body: Any) -> str | None:
    """Why a 4xx body is not the error envelope, or None when it is."""
    if not isinstance(body, dict):
        return f"{status}: body is not a JSON object"
    error = body.get("error")
    if body.get("ok") is not False or not isinstance(error, dict):
        return f"{status}: no ok=false/error object"
    if not isinstance(error.get("code"), str) or not isinstance(error.get("message"), str):
        return f"{status}: error without string code/message"
    return None


class Fuzzer:
    """Fuzzes the services at `urls` (name → base URL) sharing the Redis at `redis_url`."""

    def __init__(
        self,
        urls: dict[str, str],
        redis_url: str,
        prefix: str,
        *,
        token: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.urls = urls
        self.keys = Keys(prefix, int(os.environ.get("TOOLOO_SHARDS", DEFAULT_SHARDS)))
        self.redis = sync_redis.Redis.from_url(redis_url, decode_responses=True)
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s
        self.http = requests.Session()
        self._n = 0  # requests sent, also picks which learner fields become `default`

    def close(self) -> None:
        self.http.close()
        self.redis.close()

    # ---- the fleet's state -------------------------------------------------------------------
    def snapshot(self) -> tuple[Any, ...]:
        k = self.keys
        # Keys of many shards and fleet-wide ones: not one atomic read (that would be a MULTI
        # across slots, which a Cluster refuses); the fuzzed fleet is quiet (no coach rounds, no
        # meta triggers), so nothing moves between the reads.
        totals = read_totals_sync(self.redis, k)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.learner_state(LEARNER))
            pipe.hgetall(k.learner_meta(LEARNER))
            pipe.llen(k.learner_history(LEARNER))
            pipe.hgetall(k.coach_settings)
            pipe.hget(k.coach_state, "active")
            for shard in k.all_shards():
                pipe.smembers(k.coach_fastlane(shard))
                pipe.smembers(k.coach_fastlane_out(shard))
            pipe.hgetall(k.scale)
            pipe.get(k.curriculum_version)
            pipe.get(k.meta_paused)
            values = pipe.execute()
        state, meta, history, settings, active = values[:5]
        pins = values[5 : 5 + 2 * k.shards]  # per shard: pinned in, pinned out
        fast_lane = sorted(
            (f"out:{x}" if i % 2 else x) for i, members in enumerate(pins) for x in members
        )
        scale, curriculum_version, meta_paused = values[5 + 2 * k.shards :]
        return (
            state,
            meta,
            history,
            totals.learners,
            totals.regions,
            settings,
            active,
            fast_lane,
            scale,
            totals.rounds,
            curriculum_version,
            meta_paused,
        )

    def call(self, service: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        resp = self.http.request(
            method,
            self.urls[service] + path,
            json=body,
            headers=self.headers,
            timeout=self.timeout_s,
        )
        try:
            return resp.status_code, resp.json()
        except ValueError:
            return resp.status_code, resp.text

    def _must(self, service: str, method: str, path: str, body: Any = None) -> None:
        status, answer = self.call(service, method, path, body)
        if status != 200:
            raise RuntimeError(f"{service} {method} {path} answered {status}: {answer}")

    def quiet(self, *what: str) -> None:
        """Put the fleet into (or back to) the quiet state the state check relies on."""
        everything = not what
        if everything or "coach_stop" in what:
            self._must("coach", "POST", "/api/v1/auto-coach/stop", {})
        if everything or "thresholds" in what:
            stored = self.redis.hmget(self.keys.coach_settings, list(QUIET_THRESHOLDS))
            self._must("coach", "POST", "/api/v1/auto-coach/settings", QUIET_THRESHOLDS)
            if stored != [str(v) for v in QUIET_THRESHOLDS.values()]:
                # Training decides readiness with the thresholds it read at most
                # THRESHOLDS_MAX_AGE_S ago (services/training/thresholds.py): wait until every
                # replica has the quiet ones.
                time.sleep(THRESHOLDS_MAX_AGE_S + 0.5)
        if everything or "meta_resume" in what:
            self._must("meta", "POST", "/api/v4/meta-learning/resume", {})
        if everything or "onboarding_pause" in what:
            self._must("web", "POST", "/api/v1/system/pause-onboarding", {})
        if everything or "coach_stop" in what or "onboarding_pause" in what:
            # A coach or onboarding tick under way finishes after the stop/pause (and the loop
            # may have read `active` just before it): wait until it has landed.
            self.settle()

    def wait_armed(self, timeout_s: float = 30.0) -> None:
        """The orchestrator's pre-arm starts the coach: let it finish before quieting the fleet."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # bounded poll
            status, body = self.call("orchestrator", "GET", "/api/v1/system/status")
            if status == 200 and isinstance(body, dict) and body.get("phase") == "armed":
                return
            time.sleep(0.1)
        raise RuntimeError(f"the fleet did not arm within {timeout_s}s")

    def settle(self, quiet_s: float = 0.3, timeout_s: float = 10.0) -> None:
        """Wait (bounded) until the state has not changed for `quiet_s`."""
        deadline = time.monotonic() + timeout_s
        last, since = self.snapshot(), time.monotonic()
        while time.monotonic() < deadline:  # bounded poll
            time.sleep(0.05)
            now = self.snapshot()
            if now != last:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
        raise RuntimeError(f"the fleet's state kept changing for {timeout_s}s")

    def prepare(self) -> None:
        """A started `default` learner (and a second one) and a quiet fleet."""
        if "orchestrator" in self.urls:
            self.wait_armed()
        self.quiet()
        for learner in (LEARNER, "fuzz-2"):
            self._must("training", "POST", "/api/v1/training/start", {"learner": learner})
        self._must("training", "POST", "/api/v1/training/round", {"learner": LEARNER})

    # ---- one service -------------------------------------------------------------------------
    def schema(self, service: str) -> Any:
        """The service's published document, loaded and validated by schemathesis."""
        schema = schemathesis.openapi.from_url(self.urls[service] + "/openapi.json")
        schema.validate()
        return schema

    def _aim_at_default(self, case: Any) -> None:
        # Every other learner field/parameter addresses `default`: its state is the one compared.
        if self._n % 2:
            return
        if isinstance(case.body, dict) and "learner" in case.body:
            case.body["learner"] = LEARNER
        if isinstance(case.query, dict) and "learner" in case.query:
            case.query["learner"] = LEARNER

    def _send(self, service: str, case: Any, result: ServiceResult) -> None:
        self._aim_at_default(case)
        where = f"{case.method} {case.formatted_path} query={case.query!r} body={_short(case.body)}"
        before = self.snapshot()
        try:
            response = case.call(
                base_url=self.urls[service],
                session=self.http,
                headers=self.headers,
                timeout=self.timeout_s,
            )
        except requests.RequestException as exc:
            self._no_answer(where, exc, result)
            return
        self._check(service, (case.method, case.path), where, response, before, result)

    def _send_raw(
        self,
        service: str,
        op_key: tuple[str, str],
        path: str,
        *,
        query: dict[str, str] | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        result: ServiceResult,
    ) -> None:
        where = f"{op_key[0]} {path} query={query!r} body={_short(data)} headers={headers!r}"
        all_headers = {**self.headers, **(headers or {})}
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        before = self.snapshot()
        # A kept-alive connection the server closed while idle can be picked for the next request
        # at the same moment (RemoteDisconnected, nothing sent back): HTTP clients retry an
        # idempotent request once on a new connection (RFC 9110 §9.2.2), and so does this one. A
        # server that really drops requests fails the second try too; POSTs are never re-sent.
        attempts = 2 if op_key[0] in ("GET", "HEAD", "DELETE", "OPTIONS") else 1
        for attempt in range(1, attempts + 1):  # bounded: at most one retry
            try:
                response = self.http.request(
                    op_key[0],
                    self.urls[service] + path,
                    params=query,
                    data=data,
                    headers=all_headers,
                    timeout=self.timeout_s,
                )
                break
            except requests.ConnectionError as exc:
                if attempt == attempts or "RemoteDisconnected" not in repr(exc):
                    self._no_answer(where, exc, result)
                    return
            except requests.RequestException as exc:
                self._no_answer(where, exc, result)
                return
        self._check(service, op_key, where, response, before, result)

    def _no_answer(self, where: str, exc: Exception, result: ServiceResult) -> None:
        self._n += 1
        result.requests += 1
        result.errors_5xx += 1  # no answer at all counts with the server errors
        result.failures.append(f"no answer to {where}: {exc!r}"[:400])

    def _check(
        self,
        service: str,
        op_key: tuple[str, str],
        where: str,
        response: requests.Response,
        before: tuple[Any, ...],
        result: ServiceResult,
    ) -> None:
        after = self.snapshot()
        self._n += 1
        status = response.status_code
        result.requests += 1
        result.by_status[status] = result.by_status.get(status, 0) + 1
        if status >= 500:
            result.errors_5xx += 1
            result.failures.append(f"{status} {where}: {response.text[:300]}")
        elif status >= 400:
            result.rejected_4xx += 1
            try:
                body = response.json()
            except ValueError:
                body = None
            problem = envelope_problem(status, body)
            if problem:
                result.envelope_failures += 1
                result.failures.append(f"envelope {problem} {where}: {response.text[:200]}")
            if before != after:
                result.state_changes += 1
                diff = [
                    name
                    for name, a, b in zip(SNAPSHOT_FIELDS, before, after, strict=True)
                    if a != b
                ]
                result.failures.append(f"state changed (fields {diff}) by {status} {where}")
        else:
            result.ok_2xx += 1
            # By method and path, whoever was fuzzed: the gateway's document lists every
            # service's operations, and a pause through it needs the same guard.
            guard = next((g for (_, *key), g in GUARDS.items() if tuple(key) == op_key), None)
            if guard:
                self.quiet(*guard)

    def hostile(self, service: str, op: Any, result: ServiceResult) -> None:
        """Inputs a JSON-schema generator rarely makes: Unicode digits and undecodable bytes in
        path and query parameters, bodies that are not objects, not JSON or not readable."""
        method = op.method.upper()
        key = (method, op.path)
        names = [p.name for p in op.path_parameters]
        # A learner id that does not exist: a DELETE must not erase the compared learner.
        base = {name: "fuzz-none" for name in names}
        paths = [op.path.format(**base)]
        for name in names:
            for value in HOSTILE_PATH_VALUES:
                paths.append(op.path.format(**{**base, name: value}))
        for path in paths[1:]:
            self._send_raw(service, key, path, result=result)
        for param in op.query:
            for value in HOSTILE_QUERY_VALUES:
                self._send_raw(service, key, paths[0], query={param.name: value}, result=result)
        if method in ("POST", "DELETE"):
            for data, headers in HOSTILE_BODIES:
                self._send_raw(service, key, paths[0], data=data, headers=headers, result=result)

    def run_service(self, service: str, requests_wanted: int, first_seed: int = 0) -> ServiceResult:
        """About `requests_wanted` generated requests, spread evenly over the operations, half
        valid (positive) and half invalid (negative) where schemathesis can make both."""
        schema = self.schema(service)
        operations = [
            op.ok()
            for op in schema.get_all_operations()
            if (service, op.ok().method.upper(), op.ok().path) not in EXCLUDED
        ]
        result = ServiceResult(service, operations=len(operations))
        per_operation = max(1, math.ceil(requests_wanted / max(1, len(operations))))
        # Passes with new seeds until the budget is spent: small operations (an empty body) run
        # out of distinct examples long before big ones.
        for pass_no in range(50):
            if result.requests >= requests_wanted:
                break
            sent_before = result.requests
            for op in operations:
                remaining = requests_wanted - result.requests
                if remaining <= 0:
                    break
                self._run_operation(
                    service, op, min(per_operation, remaining), first_seed + pass_no, result
                )
            if result.requests == sent_before:
                break
        for op in operations:
            self.hostile(service, op, result)
        return result

    def _run_operation(
        self, service: str, op: Any, examples: int, seed_value: int, result: ServiceResult
    ) -> None:
        try:
            negative = op.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        except Exception:  # nothing to make invalid (no parameters, no body)
            negative = None
        positive_n = examples if negative is None else max(1, examples // 2)
        if (service, op.method.upper(), op.path) in GUARDS:
            # Each valid call of a guarded operation costs a guard (and a settle): a few suffice.
            positive_n = min(positive_n, GUARDED_VALID_CALLS)
        runs = [(op.as_strategy(generation_mode=GenerationMode.POSITIVE), positive_n)]
        if negative is not None:
            runs.append((negative, max(1, examples - examples // 2)))
        for strategy, n in runs:
            self._run_strategy(service, op, strategy, n, seed_value, result)

    def _run_strategy(
        self, service: str, op: Any, strategy: Any, n: int, seed_value: int, result: ServiceResult
    ) -> None:
        @seed(seed_value)
        @settings(
            max_examples=n,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
            derandomize=False,
        )
        @given(case=strategy)
        def fuzz(case: Any) -> None:
            self._send(service, case, result)

        try:
            fuzz()
        except Unsatisfiable:  # nothing invalid to make (no parameters, no body): not a failure
            pass
        except Exception as exc:  # generation itself failed: report it, do not hide it
            result.failures.append(f"generation {op.method.upper()} {op.path}: {exc!r}"[:300])


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def run(
    urls: dict[str, str],
    redis_url: str,
    prefix: str,
    *,
    services: tuple[str, ...] = SERVICES,
    requests_per_service: int = 10_000,
    first_seed: int = 0,
    token: str | None = None,
    progress: Callable[[ServiceResult], None] | None = None,
) -> list[ServiceResult]:
    fuzzer = Fuzzer(urls, redis_url, prefix, token=token)
    try:
        fuzzer.prepare()
        results = []
        for service in services:
            outcome = fuzzer.run_service(service, requests_per_service, first_seed)
            results.append(outcome)
            if progress:
                progress(outcome)
        return results
    finally:
        fuzzer.close()


def print_table(results: list[ServiceResult], elapsed_s: float | None = None) -> None:
    header = f"{'service':<13}{'ops':>5}{'requests':>10}{'2xx':>8}{'4xx':>8}{'5xx':>6}"
    print(header + f"{'envelope':>10}{'state':>7}  statuses")
    for r in results:
        statuses = " ".join(f"{s}:{n}" for s, n in sorted(r.by_status.items()))
        print(
            f"{r.service:<13}{r.operations:>5}{r.requests:>10}{r.ok_2xx:>8}{r.rejected_4xx:>8}"
            f"{r.errors_5xx:>6}{r.envelope_failures:>10}{r.state_changes:>7}  {statuses}"
        )
    if elapsed_s is not None:
        print(f"total {sum(r.requests for r in results)} requests in {elapsed_s:.1f} s")
    for r in results:
        for failure in r.failures[:20]:
            print(f"  {r.service}: {failure}")


def main(argv: list[str] | None = None) -> int:
    from loadtests.fleetctl import ALL_SERVICES, BenchFleet

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000, help="per service")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--services", default=",".join(SERVICES))
    args = parser.parse_args(argv)
    services = tuple(s.strip() for s in args.services.split(",") if s.strip())
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        parser.error(f"unknown services: {unknown}")
    with BenchFleet(prefix="fuzz") as fleet:
        fleet.start(*ALL_SERVICES)
        fleet.prearm()
        fleet.start("orchestrator", env={"ORCHESTRATOR_MANAGE": "false"})
        urls = {name: fleet.url(name) for name in SERVICES}
        started = time.monotonic()
        results = run(
            urls,
            fleet.redis_url,
            fleet.prefix,
            services=services,
            requests_per_service=args.requests,
            first_seed=args.seed,
            progress=lambda r: print(f"{r.service}: {r.requests} requests", flush=True),
        )
        elapsed = time.monotonic() - started
        dead = [name for name, proc in fleet.procs.items() if not proc.alive]
    print_table(results, elapsed)
    if dead:
        print(f"services that exited during the run: {dead}")
    return 0 if all(r.clean for r in results) and not dead else 1


if __name__ == "__main__":
    sys.exit(main())
