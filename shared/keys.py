"""Every Redis key of the fleet, built in one place.

All keys live under one prefix (TOOLOO_REDIS_PREFIX). Per-learner keys carry the hash tag
`{learner:<id>}` so that one learner's keys share a Cluster slot; the fleet-wide keys (round
counter, streams, indexes) are single keys. Nothing outside this module spells a key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "tooloo"

    # ---- per learner -------------------------------------------------------------------------
    def learner_state(self, learner: str) -> str:
        """Hash: `v` (version, bumped by every write) and `s` (the encoded LearnerState)."""
        return f"{self.prefix}:{{learner:{learner}}}:state"

    def learner_history(self, learner: str) -> str:
        """List of the learner's committed rounds, newest first, capped."""
        return f"{self.prefix}:{{learner:{learner}}}:history"

    def learner_meta(self, learner: str) -> str:
        """Hash: `v` and `s`, the learner's meta-learning state (the meta service writes it)."""
        return f"{self.prefix}:{{learner:{learner}}}:meta"

    def learner_meta_log(self, learner: str) -> str:
        """List: the learner's meta activity log, newest first, capped."""
        return f"{self.prefix}:{{learner:{learner}}}:meta:log"

    def learner_meta_lock(self, learner: str) -> str:
        return f"{self.prefix}:{{learner:{learner}}}:meta:lock"

    def learner_keys(self, learner: str) -> list[str]:
        """Every key that belongs to one learner (used to erase a learner)."""
        return [
            self.learner_state(learner),
            self.learner_history(learner),
            self.learner_meta(learner),
            self.learner_meta_log(learner),
            self.learner_meta_lock(learner),
        ]

    # ---- KEYS of the learner scripts (shared/lua/*.lua headers give the order) ----------------
    def create_learner_keys(self, learner: str) -> list[str]:
        return [
            self.learner_state(learner),
            self.learners_index,
            self.learners_seq,
            self.learners_regions,
            self.coach_queue,
        ]

    def commit_rounds_keys(self, learner: str, idempotency_key: str | None = None) -> list[str]:
        keys = [
            self.learner_state(learner),
            self.learner_history(learner),
            self.rounds_seq,
            self.stream_rounds,
            self.coach_settings,
            self.coach_queue,
            self.coach_ready,
            self.stream_meta,
        ]
        if idempotency_key is not None:
            keys.append(self.learner_idempotency(learner, idempotency_key))
        return keys

    def learner_idempotency(self, learner: str, idempotency_key: str) -> str:
        """String (PX 24 h): the commit made under a client's Idempotency-Key for this learner
        (request hash, version, first round id, count, ready flags; commit_rounds.lua). In the
        learner's slot, so the commit script can check and write it with the learner's state.
        Not erased with the learner (it cannot be listed by name): it expires, and the script
        ignores a record newer than the learner's version (a re-created learner)."""
        return f"{self.prefix}:{{learner:{learner}}}:idem:{idempotency_key}"

    def training_idempotency(self, idempotency_key: str) -> str:
        """String (EX 24 h): the request hash of the round/rounds call first sent under this
        Idempotency-Key, set before any commit, so the key sent again with another body (another
        learner, whose slot has no record) is refused before anything is committed."""
        return f"{self.prefix}:training:idem:{idempotency_key}"

    def coach_boost_idempotency(self, idempotency_key: str) -> str:
        """String (EX 24 h): the request hash of the boost first sent under this Idempotency-Key,
        so the same key with another body is refused before any round is run."""
        return f"{self.prefix}:coach:idem:{idempotency_key}"

    def meta_commit_keys(self, learner: str) -> list[str]:
        return [
            self.learner_state(learner),
            self.learner_meta(learner),
            self.learner_meta_log(learner),
            self.stream_meta,
            self.meta_stats,
            self.learner_meta_lock(learner),
        ]

    def cas_state_keys(self, learner: str) -> list[str]:
        return [self.learner_state(learner), self.coach_queue, self.coach_ready]

    def delete_learner_keys(self, learner: str) -> list[str]:
        return [
            *self.learner_keys(learner),
            self.learners_index,
            self.learners_regions,
            self.coach_queue,
            self.coach_ready,
            self.coach_fastlane,
            self.coach_coached,
        ]

    # ---- learners population -----------------------------------------------------------------
    @property
    def learners_index(self) -> str:
        """Sorted set: learner id -> creation sequence number (stable paging order)."""
        return f"{self.prefix}:learners"

    @property
    def learners_seq(self) -> str:
        return f"{self.prefix}:learners:seq"

    @property
    def learners_regions(self) -> str:
        """Hash: region -> number of learners in it."""
        return f"{self.prefix}:learners:regions"

    @property
    def scale(self) -> str:
        """Hash: `target` (population target), `hold` (0/1), `paused` (0/1)."""
        return f"{self.prefix}:scale"

    # ---- training ----------------------------------------------------------------------------
    @property
    def rounds_seq(self) -> str:
        """Fleet-wide round id counter; INCR inside the commit script makes ids unique."""
        return f"{self.prefix}:rounds:seq"

    @property
    def curriculum(self) -> str:
        """Hash: topic key -> JSON topic (name, problems, background, order)."""
        return f"{self.prefix}:curriculum"

    @property
    def curriculum_version(self) -> str:
        return f"{self.prefix}:curriculum:ver"

    # ---- event streams -----------------------------------------------------------------------
    @property
    def stream_rounds(self) -> str:
        return f"{self.prefix}:events:rounds"

    @property
    def stream_meta(self) -> str:
        return f"{self.prefix}:events:meta"

    @property
    def stream_system(self) -> str:
        return f"{self.prefix}:events:system"

    # ---- coach -------------------------------------------------------------------------------
    # Every coach key carries the hash tag `{coach}`: one Cluster slot, so the leader's fenced
    # writes (a MULTI/EXEC watching `coach_fence`, the promote_due script) can check the fencing
    # token in the same atomic step as the keys they write. The names before the tag are kept by
    # `legacy_coach_keys` so that a coach starting on an existing fleet moves them
    # (services/coach/migrate_keys.lua) and no stored setting, queue or counter is lost.
    def _coach(self, name: str) -> str:
        return f"{self.prefix}:{{coach}}:{name}"

    @property
    def coach_settings(self) -> str:
        """Hash, one field per setting. `minAvgMastery` and `maxBelow80` are read by the
        round-commit script to decide readiness, so they stay plain numeric fields."""
        return self._coach("settings")

    @property
    def coach_state(self) -> str:
        """Hash: runtime state that must survive a coach restart (active, lastAction, ...)."""
        return self._coach("state")

    @property
    def coach_stats(self) -> str:
        """Hash of counters (roundsRun, ticks, metaTriggers, ...)."""
        return self._coach("stats")

    @property
    def coach_lease(self) -> str:
        return self._coach("lease")

    @property
    def coach_fence(self) -> str:
        """Counter: the fencing token, incremented each time a replica acquires the lease; the
        leader's writes are refused once it no longer equals the token the writer acquired."""
        return self._coach("fence")

    @property
    def coach_queue(self) -> str:
        """Sorted set of active learners that need coaching, scored by their virtual pass
        (stride scheduling). Maintained by the round-commit script and the coach."""
        return self._coach("queue")

    @property
    def coach_ready(self) -> str:
        """Sorted set of ready learners, scored by their next review time (epoch ms)."""
        return self._coach("ready")

    @property
    def coach_fastlane(self) -> str:
        """Set of learner ids in the fast lane."""
        return self._coach("fastlane")

    @property
    def coach_coached(self) -> str:
        """Sorted set: learner -> last time (ms) the coach ran a round for it."""
        return self._coach("coached")

    def coach_throughput(self, epoch_second: int) -> str:
        """Counter of rounds the coach ran in one second (expires after two minutes)."""
        return self._coach(f"tput:{epoch_second}")

    @property
    def coach_meta_delays(self) -> str:
        """List of recent meta trigger delays in ms, newest first, capped."""
        return self._coach("meta:delays")

    @property
    def coach_meta_delay_by_learner(self) -> str:
        """Hash: learner -> last meta trigger delay in ms."""
        return self._coach("meta:delay")

    def legacy_coach_keys(self) -> list[tuple[str, str]]:
        """(name before the `{coach}` tag, current name) of every lasting coach key; the lease
        and the per-second throughput counters expire within seconds and are not moved."""
        names = {
            "settings": self.coach_settings,
            "state": self.coach_state,
            "stats": self.coach_stats,
            "queue": self.coach_queue,
            "ready": self.coach_ready,
            "fastlane": self.coach_fastlane,
            "coached": self.coach_coached,
            "meta:delays": self.coach_meta_delays,
            "meta:delay": self.coach_meta_delay_by_learner,
        }
        return [(f"{self.prefix}:coach:{old}", new) for old, new in names.items()]

    # ---- meta --------------------------------------------------------------------------------
    @property
    def meta_paused(self) -> str:
        return f"{self.prefix}:meta:paused"

    @property
    def meta_stats(self) -> str:
        return f"{self.prefix}:meta:stats"

    # ---- request statistics (all services) ---------------------------------------------------
    def http_stats(self, epoch_minute: int) -> str:
        """Hash: `<service>:requests`, `<service>:errors` (5xx) for one minute."""
        return f"{self.prefix}:stats:http:{epoch_minute}"

    @property
    def rate_limit_prefix(self) -> str:
        """Prefix of the rate limiter's keys (shared/rate_limit.py): the `limits` library appends
        `:LIMIT/<scope>/<client>/<limit>/<window>/second`, a list of call times per client."""
        return f"{self.prefix}:ratelimit"

    @property
    def gateway_hop_secret(self) -> str:
        """String: the secret the gateway sends with the client it forwards (rate limits)."""
        return f"{self.prefix}:gateway:hop-secret"

    # ---- reports (written by its apply script and consumer, read by its queries) --------------
    def _reports(self, name: str) -> str:
        return f"{self.prefix}:reports:{name}"

    @property
    def reports_totals(self) -> str:
        """Hash of all-time counters: `events`, `events:<stream>`, `rounds`, `meta:<type>`,
        `restarts:<service>`, `last_event_ms`. Kept without a TTL."""
        return self._reports("totals")

    @property
    def reports_cursor(self) -> str:
        """Hash: stream kind (rounds, meta, system) -> last entry id applied (informational)."""
        return self._reports("cursor")

    def reports_minute(self, epoch_minute: int) -> str:
        """Hash of one minute's aggregates (counters, latency histogram buckets `lat:<i>`,
        meta delay buckets `md:<i>`, sampled gauges); expires after the reports retention."""
        return self._reports(f"min:{epoch_minute}")

    def reports_service(self, service: str) -> str:
        """Sorted set of one service's up/down transitions: score ms, member `<ms>-<seq>:<state>`."""
        return self._reports(f"svc:{service}")

    @property
    def reports_service_last(self) -> str:
        """Hash: service -> its last known state, `up:<ms>` or `down:<ms>`. Kept without a TTL."""
        return self._reports("svc:last")

    @property
    def reports_services_seen(self) -> str:
        """Hash: service -> 1, for services seen in system events before any up/down transition."""
        return self._reports("svc:seen")

    # ---- training onboarding (added by the training service) ---------------------------------
    @property
    def onboarding_lease(self) -> str:
        """String: token of the training replica that currently onboards (SET NX PX)."""
        return f"{self.prefix}:training:onboarding:lease"

    @property
    def onboarding_seq(self) -> str:
        """Counter behind onboarded learner ids `l-<seq>`."""
        return f"{self.prefix}:training:onboarding:seq"

    # ---- replicas of a service (shared/replicas.py) ------------------------------------------
    def replicas(self, service: str) -> str:
        """Hash: replica name -> JSON `{replica, pid, host, control_port, started_ms,
        last_seen_ms}`, written by each replica's heartbeat; one key per service, so one slot."""
        return f"{self.prefix}:replicas:{service}"
