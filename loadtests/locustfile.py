"""Locust scenarios for the TooLoo fleet: the real traffic of its three kinds of users.

- `ControlRoomOperator`: what the Control Room does — polls fleet status, coach status, the gates
  and the reports' metrics; now and then boosts a learner and toggles the fast lane.
- `TrainingClient`: training rounds for random learners of a population it starts itself, and
  now and then the batch endpoint (FastHttpUser: this is the throughput path).
- `Onboarding`: drives the learner population target through `POST /api/v1/system/scale`. With
  the ramp shape (`-f loadtests/locustfile.py,loadtests/shapes.py`) it follows the shape's stage
  (5K → 10K → 25K → 50K); without one it holds `--scale-target`.

Every request goes to one origin, the web gateway (`--host`, default http://127.0.0.1:3000);
`--training-host` sends the training clients straight to a training service instead. Request
names start with the user kind (`operator …`, `training …`, `onboarding …`), so the statistics
show who made which call. When TOOLOO_API_TOKEN is set, every request carries it.

    locust -f loadtests/locustfile.py --headless -u 20 -r 5 -t 2m
    locust -f loadtests/locustfile.py,loadtests/shapes.py --headless   # the rollout ramp

This file imports nothing from the project: Locust loads it by path, under gevent.
"""

from __future__ import annotations

import os
import random
from typing import Any

from locust import FastHttpUser, between, events, task
from locust.contrib.fasthttp import FastResponse

DEFAULT_HOST = "http://127.0.0.1:3000"
_TOKEN = os.environ.get("TOOLOO_API_TOKEN")
HEADERS = {"Authorization": f"Bearer {_TOKEN}"} if _TOKEN else {}


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument(
        "--training-host",
        env_var="TOOLOO_LOAD_TRAINING_HOST",
        default="",
        help="send TrainingClient straight to this training URL instead of the gateway",
    )
    parser.add_argument(
        "--population",
        type=int,
        env_var="TOOLOO_LOAD_POPULATION",
        default=1000,
        help="learner ids load-00000… that training clients draw from",
    )
    parser.add_argument(
        "--learners-per-user",
        type=int,
        env_var="TOOLOO_LOAD_LEARNERS_PER_USER",
        default=20,
        help="learners each training client starts (POST /training/start) and trains",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        env_var="TOOLOO_LOAD_BATCH_SIZE",
        default=10,
        help="learners per batch call (POST /api/v1/training/rounds)",
    )
    parser.add_argument(
        "--scale-target",
        type=int,
        env_var="TOOLOO_LOAD_SCALE_TARGET",
        default=5000,
        help="population target Onboarding holds when no ramp shape runs",
    )
    parser.add_argument(
        "--operators",
        type=int,
        env_var="TOOLOO_LOAD_OPERATORS",
        default=1,
        help="number of ControlRoomOperator users (fixed, not weighted)",
    )
    parser.add_argument(
        "--boost-learner",
        env_var="TOOLOO_LOAD_BOOST_LEARNER",
        default="default",
        help="learner the operators boost (started in their on_start)",
    )


@events.init.add_listener
def _apply_options(environment: Any, **_: Any) -> None:
    opts = environment.parsed_options
    if opts is None:
        return
    ControlRoomOperator.fixed_count = max(0, int(opts.operators))
    if opts.training_host:
        TrainingClient.host = opts.training_host.rstrip("/")


def _option(user: FastHttpUser, name: str, default: Any) -> Any:
    opts = user.environment.parsed_options
    return getattr(opts, name, default) if opts is not None else default


def _expect_ok(resp: FastResponse, *, allow: tuple[int, ...] = ()) -> dict[str, Any] | None:
    """Mark the response failed unless it is a 2xx JSON body with ok=true.

    `allow` lists statuses that are an honest, expected answer for this call (429 for a
    rate-limited operator action): counted as success, since the fleet answered as designed.
    """
    if resp.status_code in allow:
        resp.success()
        return None
    if not 200 <= resp.status_code < 300:
        resp.failure(f"HTTP {resp.status_code}: {(resp.text or '')[:200]}")
        return None
    try:
        body = resp.json()
    except Exception:  # FastResponse raises its own decode errors; any of them is a failure
        resp.failure("response is not JSON")
        return None
    if not isinstance(body, dict) or body.get("ok") is not True:
        resp.failure(f"ok is not true: {str(body)[:200]}")
        return None
    resp.success()
    return body


class ControlRoomOperator(FastHttpUser):
    """Polls what the Control Room shows; boosts and toggles the fast lane now and then."""

    host = DEFAULT_HOST
    fixed_count = 1
    wait_time = between(0.5, 2.0)
    default_headers = HEADERS

    def on_start(self) -> None:
        self.boost_learner = _option(self, "boost_learner", "default")
        # Starting training never resets progress, so this is safe on a live fleet.
        with self.client.post(
            "/api/v1/training/start",
            json={"learner": self.boost_learner},
            name="operator POST /api/v1/training/start",
            catch_response=True,
        ) as resp:
            _expect_ok(resp)

    def _get(self, path: str) -> None:
        with self.client.get(path, name=f"operator GET {path}", catch_response=True) as resp:
            _expect_ok(resp)

    @task(5)
    def system_status(self) -> None:
        self._get("/api/v1/system/status")

    @task(5)
    def coach_status(self) -> None:
        self._get("/api/v1/auto-coach/status")

    @task(2)
    def gates(self) -> None:
        self._get("/api/v1/system/gates")

    @task(3)
    def metrics(self) -> None:
        self._get("/api/v1/reports/metrics")

    @task(1)
    def boost(self) -> None:
        with self.client.post(
            "/api/v1/auto-coach/boost",
            json={"rounds": 5, "batchSize": 3, "learner": self.boost_learner},
            name="operator POST /api/v1/auto-coach/boost",
            catch_response=True,
        ) as resp:
            body = _expect_ok(resp, allow=(429,))
            if body is not None and len(body.get("results") or []) != body.get("boosted"):
                resp.failure(f"boost returned {body.get('boosted')} but results differ")

    @task(1)
    def toggle_fast_lane(self) -> None:
        # Off and straight back on with pre-arm's fast lane (weight 2, 600 ms), so a long run keeps it.
        for enable in (False, True):
            with self.client.post(
                "/api/v1/auto-coach/fast-lane",
                json={"enable": enable, "weight": 2, "intervalMs": 600},
                name="operator POST /api/v1/auto-coach/fast-lane",
                catch_response=True,
            ) as resp:
                _expect_ok(resp)


class TrainingClient(FastHttpUser):
    """Rounds for random learners among the ones it started; the batch endpoint now and then."""

    host = DEFAULT_HOST
    weight = 10
    wait_time = between(0.0, 0.01)
    default_headers = HEADERS

    def on_start(self) -> None:
        population = max(1, int(_option(self, "population", 1000)))
        per_user = max(1, min(population, int(_option(self, "learners_per_user", 20))))
        ids = random.sample(range(population), per_user)
        self.learners = [f"load-{i:05d}" for i in ids]
        self.batch_size = max(1, min(len(self.learners), int(_option(self, "batch_size", 10))))
        for learner in self.learners:
            # Creates the learner if missing and marks it active; never resets progress.
            with self.client.post(
                "/api/v1/training/start",
                json={"learner": learner},
                name="training POST /api/v1/training/start",
                catch_response=True,
            ) as resp:
                _expect_ok(resp)

    @task(20)
    def round(self) -> None:
        learner = random.choice(self.learners)
        with self.client.post(
            "/api/v1/training/round",
            json={"learner": learner},
            name="training POST /api/v1/training/round",
            catch_response=True,
        ) as resp:
            body = _expect_ok(resp)
            if body is not None and not isinstance(body.get("result", {}).get("round"), int):
                resp.failure("round result carries no round id")

    @task(1)
    def batch(self) -> None:
        learners = random.sample(self.learners, self.batch_size)
        with self.client.post(
            "/api/v1/training/rounds",
            json={"learners": learners, "rounds_per_learner": 1},
            name="training POST /api/v1/training/rounds",
            catch_response=True,
        ) as resp:
            body = _expect_ok(resp)
            if body is not None and body.get("errors"):
                resp.failure(f"batch errors: {str(body['errors'])[:200]}")


class Onboarding(FastHttpUser):
    """Sets the population target (the ramp shape's current stage, or --scale-target) and
    watches onboarding; pauses and resumes it now and then, as an operator would."""

    host = DEFAULT_HOST
    fixed_count = 1
    wait_time = between(1.0, 2.0)
    default_headers = HEADERS

    def on_start(self) -> None:
        self.sent_target: int | None = None
        self.scale()

    def _target(self) -> int:
        shape = self.environment.shape_class
        stage_target = getattr(shape, "current_learners", None)
        if callable(stage_target):
            value = stage_target()
            if value is not None:
                return int(value)
        return int(_option(self, "scale_target", 5000))

    @task(5)
    def scale(self) -> None:
        target = self._target()
        if target == self.sent_target:
            with self.client.get(
                "/api/v1/system/scale",
                name="onboarding GET /api/v1/system/scale",
                catch_response=True,
            ) as resp:
                _expect_ok(resp)
            return
        with self.client.post(
            "/api/v1/system/scale",
            json={"learners": target, "hold": False},
            name="onboarding POST /api/v1/system/scale",
            catch_response=True,
        ) as resp:
            if _expect_ok(resp, allow=(429,)) is not None:
                self.sent_target = target

    @task(2)
    def learners(self) -> None:
        with self.client.get(
            "/api/v1/learners?limit=10",
            name="onboarding GET /api/v1/learners",
            catch_response=True,
        ) as resp:
            _expect_ok(resp)

    @task(1)
    def pause_and_resume(self) -> None:
        for action in ("pause-onboarding", "resume-onboarding"):
            with self.client.post(
                f"/api/v1/system/{action}",
                json={},
                name=f"onboarding POST /api/v1/system/{action}",
                catch_response=True,
            ) as resp:
                _expect_ok(resp)
