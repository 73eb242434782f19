"""Every Redis key of the fleet, built in one place.

All keys live under one prefix (TOOLOO_REDIS_PREFIX). The keyspace is cut into a fixed number of
shards S (TOOLOO_SHARDS, recorded in Redis when the fleet first initialises it; see
shared/shards.py). A learner belongs to shard `shard_of(id)`, and every key that one of its atomic
steps touches carries that shard's hash tag `{s:<n>}`: the learner's own keys and the shard's round
counter, event streams, coach queue / ready set / fast lane / coached set / lease / fence, learner
index, region counts, meta and reports counters. So every Lua script and MULTI touches one shard
(one Cluster slot), and the same layout runs on one Redis and on a Redis Cluster. Fleet-wide
figures are sums over the shards; the few fleet-wide keys (settings, the system stream, per-minute
request stats) are never written per round. Nothing outside this module spells a key.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

DEFAULT_SHARDS = 16
# Upper bound of TOOLOO_SHARDS: round ids are `shard * ROUND_ID_STRIDE + n` and must stay below
# 2**53 (exact in JSON numbers, JavaScript included): (1024 + 1) * 10**12 < 2**53.
MAX_SHARDS = 1024
# Round ids: shard s gives out `s * ROUND_ID_STRIDE + n`, n = 1, 2, ... from the shard's own
# counter (`rounds_seq(s)`), so ids are unique fleet-wide without a fleet-wide counter, increasing
# for each learner (one learner = one shard), and consecutive within one commit.
ROUND_ID_STRIDE = 10**12


def shard_of(learner: str, shards: int) -> int:
    """The learner's shard: CRC-32 of its id (stable across processes, hosts and Python
    versions, unlike `hash`) modulo the shard count."""
    return zlib.crc32(learner.encode()) % shards


def round_id_base(shard: int) -> int:
    return shard * ROUND_ID_STRIDE


def shard_of_round(round_id: int) -> int:
    return round_id // ROUND_ID_STRIDE


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "tooloo"
    shards: int = DEFAULT_SHARDS

    # ---- shards ------------------------------------------------------------------------------
    def shard_of(self, learner: str) -> int:
        return shard_of(learner, self.shards)

    def all_shards(self) -> range:
        return range(self.shards)

    def _shard(self, shard: int, name: str) -> str:
        """A key in shard `shard`'s Cluster slot (hash tag `{s:<shard>}`)."""
        return f"{self.prefix}:{{s:{shard}}}:{name}"

    def _learner(self, learner: str, name: str) -> str:
        return self._shard(self.shard_of(learner), f"learner:{learner}:{name}")

    @property
    def fleet_shards(self) -> str:
        """String: the shard count S this fleet's Redis was initialised with (SET NX by the
        first service to start; every later start compares its TOOLOO_SHARDS with it)."""
        return f"{self.prefix}:fleet:shards"

    @property
    def fleet_layout(self) -> str:
        """Hash: `version` of the key layout, and the progress of a running layout migration
        (`migrating`, `done:<step>`), so that a migration is resumable and runs once."""
        return f"{self.prefix}:fleet:layout"

    # ---- per learner (all in the learner's shard) ---------------------------------------------
    def learner_state(self, learner: str) -> str:
        """Hash: `v` (version, bumped by every write) and `s` (the encoded LearnerState)."""
        return self._learner(learner, "state")

    def learner_history(self, learner: str) -> str:
        """String: the learner's committed rounds, newest first, capped, in the compact encoding
        of shared/history.py (extended by the commit script)."""
        return self._learner(learner, "hist")

    def learner_history_list(self, learner: str) -> str:
        """List: the rounds as one JSON string each, as fleets wrote them before the compact
        history (read after it; `tooloo-migrate` folds it into the string)."""
        return self._learner(learner, "history")

    def learner_meta(self, learner: str) -> str:
        """Hash: `v` and `s`, the learner's meta-learning state (the meta service writes it)."""
        return self._learner(learner, "meta")

    def learner_meta_log(self, learner: str) -> str:
        """List: the learner's meta activity log, newest first, capped."""
        return self._learner(learner, "meta:log")

    def learner_meta_lock(self, learner: str) -> str:
        return self._learner(learner, "meta:lock")

    def learner_idempotency(self, learner: str, idempotency_key: str) -> str:
        """String (PX 24 h): the commit made under a client's Idempotency-Key for this learner
        (request hash, version, first round id, count, ready flags; commit_rounds.lua). In the
        learner's slot, so the commit script can check and write it with the learner's state.
        Not erased with the learner (it cannot be listed by name): it expires, and the script
        ignores a record newer than the learner's version (a re-created learner)."""
        return self._learner(learner, f"idem:{idempotency_key}")

    def learner_keys(self, learner: str) -> list[str]:
        """Every key that belongs to one learner (used to erase a learner)."""
        return [
            self.learner_state(learner),
            self.learner_history(learner),
            self.learner_history_list(learner),
            self.learner_meta(learner),
            self.learner_meta_log(learner),
            self.learner_meta_lock(learner),
        ]

    # ---- per shard ---------------------------------------------------------------------------
    def rounds_seq(self, shard: int) -> str:
        """Counter: rounds committed in this shard; INCRBY inside the commit script gives the
        round ids `round_id_base(shard) + n` (see ROUND_ID_STRIDE). The sum over the shards is
        the fleet's rounds total."""
        return self._shard(shard, "rounds:seq")

    def stream_rounds(self, shard: int) -> str:
        """Stream: every round committed in this shard."""
        return self._shard(shard, "events:rounds")

    def stream_meta(self, shard: int) -> str:
        """Stream: readiness (meta triggers) and meta completions of this shard's learners."""
        return self._shard(shard, "events:meta")

    def learners_index(self, shard: int) -> str:
        """Sorted set: learner id -> creation order score, this shard's learners (paging)."""
        return self._shard(shard, "learners")

    def learners_seq(self, shard: int) -> str:
        """Counter behind this shard's creation order scores."""
        return self._shard(shard, "learners:seq")

    def learners_inactive(self, shard: int) -> str:
        """Sorted set: learner id -> creation order score (as in `learners_index`), this shard's
        learners deactivated by a throttle (kept with all their data, not coached). The learner's
        state hash carries `inactive` (its coach placement to restore) while it is a member; both
        change together in training's activation script."""
        return self._shard(shard, "learners:inactive")

    def learners_regions(self, shard: int) -> str:
        """Hash: region -> number of this shard's learners in it."""
        return self._shard(shard, "learners:regions")

    def coach_queue(self, shard: int) -> str:
        """Sorted set of this shard's active learners that need coaching, scored by their
        virtual pass (stride scheduling). Maintained by the round-commit script and the coach."""
        return self._shard(shard, "coach:queue")

    def coach_ready(self, shard: int) -> str:
        """Sorted set of this shard's ready learners, scored by their next review time (ms)."""
        return self._shard(shard, "coach:ready")

    def coach_fastlane(self, shard: int) -> str:
        """Set of this shard's learner ids pinned into the fast lane by an operator."""
        return self._shard(shard, "coach:fastlane")

    def coach_fastlane_out(self, shard: int) -> str:
        """Set of this shard's learner ids pinned out of the fast lane (never automatic members)."""
        return self._shard(shard, "coach:fastlane:out")

    def coach_fastlane_auto(self, shard: int) -> str:
        """Sorted set: learner -> when (ms) it entered the fast lane automatically, close to
        readiness; a member for the fast lane's window after that, then cooling down for as long
        (not re-admitted), then pruned (the coach's record_shard script)."""
        return self._shard(shard, "coach:fastlane:auto")

    def coach_coached(self, shard: int) -> str:
        """Sorted set: learner -> last time (ms) the coach ran a round for it."""
        return self._shard(shard, "coach:coached")

    def coach_lease(self, shard: int) -> str:
        """String (PX): the token of the coach replica that coaches this shard."""
        return self._shard(shard, "coach:lease")

    def coach_fence(self, shard: int) -> str:
        """Counter: this shard's fencing token, incremented at each acquisition of its lease;
        a write for the shard (the commit of a coach's round included) is refused once it no
        longer equals the token its writer acquired."""
        return self._shard(shard, "coach:fence")

    def meta_stats(self, shard: int) -> str:
        """Hash of meta counters (completed, phasesRun, delay sums) of this shard."""
        return self._shard(shard, "meta:stats")

    def reports_totals(self, shard: int) -> str:
        """Hash of all-time counters of this shard's streams (`events`, `rounds`, `meta:<type>`,
        `last_event_ms`), written by reports' apply script with the XACK. Kept without a TTL."""
        return self._shard(shard, "reports:totals")

    def reports_cursor(self, shard: int) -> str:
        """Hash: stream kind (rounds, meta) -> last entry id applied (informational)."""
        return self._shard(shard, "reports:cursor")

    def reports_minute(self, shard: int, epoch_minute: int) -> str:
        """Hash of one minute's aggregates of this shard (counters, latency histogram buckets
        `lat:<i>`, meta delay buckets `md:<i>`); expires after the reports retention."""
        return self._shard(shard, f"reports:min:{epoch_minute}")

    def reports_lease(self, shard: int) -> str:
        """String (PX): the token of the reports replica that consumes this shard's streams."""
        return self._shard(shard, "reports:lease")

    def reports_fence(self, shard: int) -> str:
        """Counter: fencing token of `reports_lease(shard)`."""
        return self._shard(shard, "reports:fence")

    # ---- KEYS of the learner scripts (their .lua headers give the order) ----------------------
    # Every list below is in one shard: the learner's.
    def create_learner_keys(self, learner: str) -> list[str]:
        s = self.shard_of(learner)
        return [
            self.learner_state(learner),
            self.learners_index(s),
            self.learners_seq(s),
            self.learners_regions(s),
            self.coach_queue(s),
        ]

    def commit_rounds_keys(self, learner: str, idempotency_key: str | None = None) -> list[str]:
        s = self.shard_of(learner)
        keys = [
            self.learner_state(learner),
            self.learner_history(learner),
            self.rounds_seq(s),
            self.stream_rounds(s),
            self.coach_fence(s),
            self.coach_queue(s),
            self.coach_ready(s),
            self.stream_meta(s),
        ]
        if idempotency_key is not None:
            keys.append(self.learner_idempotency(learner, idempotency_key))
        return keys

    def meta_commit_keys(self, learner: str) -> list[str]:
        s = self.shard_of(learner)
        return [
            self.learner_state(learner),
            self.learner_meta(learner),
            self.learner_meta_log(learner),
            self.stream_meta(s),
            self.meta_stats(s),
            self.learner_meta_lock(learner),
        ]

    def cas_state_keys(self, learner: str) -> list[str]:
        s = self.shard_of(learner)
        return [self.learner_state(learner), self.coach_queue(s), self.coach_ready(s)]

    def delete_learner_keys(self, learner: str) -> list[str]:
        s = self.shard_of(learner)
        return [
            *self.learner_keys(learner),
            self.learners_index(s),
            self.learners_regions(s),
            self.coach_queue(s),
            self.coach_ready(s),
            self.coach_fastlane(s),
            self.coach_coached(s),
            self.coach_fastlane_out(s),
            self.coach_fastlane_auto(s),
            self.learners_inactive(s),
        ]

    def activation_keys(self, shard: int, learners: list[str]) -> list[str]:
        """KEYS of training's activation script: the shard's index, inactive set, coach queue and
        ready set, then each learner's state (every learner of `learners` is in `shard`)."""
        return [
            self.learners_index(shard),
            self.learners_inactive(shard),
            self.coach_queue(shard),
            self.coach_ready(shard),
            *(self.learner_state(x) for x in learners),
        ]

    # ---- idempotency of whole requests (one key per client key: spread over the slots) -------
    def training_idempotency(self, idempotency_key: str) -> str:
        """String (EX 24 h): the request hash of the round/rounds call first sent under this
        Idempotency-Key, set before any commit, so the key sent again with another body (another
        learner, whose slot has no record) is refused before anything is committed."""
        return f"{self.prefix}:training:idem:{idempotency_key}"

    def coach_boost_idempotency(self, idempotency_key: str) -> str:
        """String (EX 24 h): the request hash of the boost first sent under this Idempotency-Key,
        so the same key with another body is refused before any round is run."""
        return f"{self.prefix}:coach:idem:{idempotency_key}"

    # ---- fleet-wide settings and state (written by operators and ticks, never per round) ------
    @property
    def scale(self) -> str:
        """Hash: `target` (population target), `hold` (0/1), `paused` (0/1). In the `{system}`
        slot: a change and its event on the system stream are one MULTI."""
        return f"{self.prefix}:{{system}}:scale"

    @property
    def controller_snapshots(self) -> str:
        """List, newest first, capped: JSON snapshots of the controller settings (coach settings
        and running state, scale target/hold/paused, ramp switch) that a revert puts back
        (services/web/snapshots.py). In the `{system}` slot with `scale` and `ramp`, so a revert
        writes them and its event in one MULTI."""
        return f"{self.prefix}:{{system}}:snapshots"

    @property
    def ramp(self) -> str:
        """Hash: the ramp controller's switch and progress (`enabled`, `stage`, `since_ms`,
        `green_since_ms`, `next_check_ms`, `last_action` JSON; services/web/ramp_runner.py)."""
        return f"{self.prefix}:{{system}}:ramp"

    @property
    def ramp_lease(self) -> str:
        """String (SET NX PX): the token of the web replica that runs the ramp controller."""
        return f"{self.prefix}:{{system}}:ramp:lease"

    @property
    def scale_untagged(self) -> str:
        """`scale` as named before it shared the system stream's hash tag (renamed at web's
        start, services/web/system.py)."""
        return f"{self.prefix}:scale"

    # The curriculum and its version share the hash tag `{curriculum}`: every topic write bumps
    # the version in the same MULTI or script, which a Redis Cluster runs only on one slot.
    @property
    def curriculum(self) -> str:
        """Hash: topic key -> JSON topic (name, problems, background, order)."""
        return f"{self.prefix}:{{curriculum}}"

    @property
    def curriculum_version(self) -> str:
        return f"{self.prefix}:{{curriculum}}:ver"

    @property
    def curriculum_untagged(self) -> tuple[str, str]:
        """The curriculum hash and version as named before they shared a hash tag (a single
        Redis only: training could not start on a cluster then); training renames them at start."""
        return f"{self.prefix}:curriculum", f"{self.prefix}:curriculum:ver"

    @property
    def stream_system(self) -> str:
        """Stream: starts, restarts, settings changes (fleet-wide, a few entries a minute). Its
        reports aggregates carry the same `{system}` tag, so their apply script is one slot."""
        return f"{self.prefix}:{{system}}:events"

    # Coach keys that are fleet-wide carry the hash tag `{coach}`, so that a MULTI over several
    # of them is one slot.
    def _coach(self, name: str) -> str:
        return f"{self.prefix}:{{coach}}:{name}"

    @property
    def coach_pins_lock(self) -> str:
        """String: the token of the fast-lane pin change in progress (SET NX PX). The pins live
        in every shard's slot, so their bound cannot be checked and written in one script; pin
        changes take this lock instead, one at a time across the coach replicas."""
        return self._coach("fastlane:pins:lock")

    @property
    def coach_settings(self) -> str:
        """Hash, one field per setting. Training reads `minAvgMastery` and `maxBelow80` (cached
        briefly) and passes them to the commit script, which cannot read another slot."""
        return self._coach("settings")

    @property
    def coach_state(self) -> str:
        """Hash: runtime state that must survive a coach restart (active, lastAction, ...)."""
        return self._coach("state")

    @property
    def coach_stats(self) -> str:
        """Hash of counters (roundsRun, ticks, metaTriggers, ...), HINCRBY once per tick."""
        return self._coach("stats")

    @property
    def coach_members(self) -> str:
        """Sorted set: live coach replica token -> expiry (ms) of its heartbeat; each replica
        claims about shards / members of the shard leases."""
        return self._coach("members")

    def coach_throughput(self, epoch_second: int) -> str:
        """Counter of rounds the coach ran in one second (expires after two minutes); one
        INCRBY per tick per replica, not per round."""
        return self._coach(f"tput:{epoch_second}")

    @property
    def coach_meta_delays(self) -> str:
        """List of recent meta trigger delays in ms, newest first, capped."""
        return self._coach("meta:delays")

    @property
    def coach_boosts(self) -> str:
        """List of the boost endpoints' recent completed boosts, newest first, capped: JSON
        `{at_ms, rounds, ms}` (the Phase 3 gate judges their duration)."""
        return self._coach("boosts")

    @property
    def coach_meta_delay_by_learner(self) -> str:
        """Hash: learner -> last meta trigger delay in ms."""
        return self._coach("meta:delay")

    @property
    def meta_paused(self) -> str:
        return f"{self.prefix}:meta:paused"

    # ---- reports of the system stream (one slot with it) --------------------------------------
    def _system(self, name: str) -> str:
        return f"{self.prefix}:{{system}}:{name}"

    @property
    def reports_system_totals(self) -> str:
        """Hash of all-time counters of the system stream (`events`, `restarts:<service>`)."""
        return self._system("reports:totals")

    @property
    def reports_system_cursor(self) -> str:
        return self._system("reports:cursor")

    def reports_system_minute(self, epoch_minute: int) -> str:
        return self._system(f"reports:min:{epoch_minute}")

    def reports_service(self, service: str) -> str:
        """Sorted set of one service's up/down transitions: score ms, member `<ms>-<seq>:<state>`."""
        return self._system(f"reports:svc:{service}")

    @property
    def reports_service_last(self) -> str:
        """Hash: service -> its last known state, `up:<ms>` or `down:<ms>`. Kept without a TTL."""
        return self._system("reports:svc:last")

    @property
    def reports_services_seen(self) -> str:
        """Hash: service -> 1, for services seen in system events before any up/down transition."""
        return self._system("reports:svc:seen")

    # ---- request statistics (all services) ---------------------------------------------------
    def http_stats(self, epoch_minute: int) -> str:
        """Hash: `<service>:requests`, `<service>:errors` (5xx) for one minute; each replica
        flushes its own counts once a second, not per request."""
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

    # ---- training onboarding -----------------------------------------------------------------
    @property
    def onboarding_lease(self) -> str:
        """String: token of the training replica that currently onboards (SET NX PX)."""
        return f"{self.prefix}:training:onboarding:lease"

    @property
    def onboarding_seq(self) -> str:
        """Counter behind onboarded learner ids `l-<seq>` (INCRBY once per onboarding batch)."""
        return f"{self.prefix}:training:onboarding:seq"

    # ---- replicas of a service (shared/replicas.py) ------------------------------------------
    def replicas(self, service: str) -> str:
        """Hash: replica name -> JSON `{replica, pid, host, control_port, started_ms,
        last_seen_ms, api_url}`, written by each replica's heartbeat; one key per service, so one slot."""
        return f"{self.prefix}:replicas:{service}"

    # ---- counters that must never go back (backup/restore keeps the larger value) -------------
    def monotonic_counters(self) -> list[str]:
        return [
            *(self.rounds_seq(s) for s in self.all_shards()),
            *(self.learners_seq(s) for s in self.all_shards()),
            *(self.coach_fence(s) for s in self.all_shards()),
            *(self.reports_fence(s) for s in self.all_shards()),
            self.onboarding_seq,
            self.curriculum_version,
        ]

    # ---- shards-coach: the reports replicas' members set (shared/shard_leases.py) ------------
    @property
    def reports_members(self) -> str:
        """Sorted set: live reports replica token -> expiry (ms) of its heartbeat; each replica
        claims about shards / members of the reports shard leases."""
        return f"{self.prefix}:{{system}}:reports:members"

    # ---- alert webhooks (services/reports/alert_sender.py) --------------------------------------
    # One `{alerts}` tag: the sender's state and its delivery log live in one slot.
    @property
    def reports_alert_state(self) -> str:
        """Hash `level`, `sent_ms`, `reason`: the alert level last delivered (or first seen)."""
        return f"{self.prefix}:{{alerts}}:state"

    @property
    def reports_alert_deliveries(self) -> str:
        """List, newest first, capped: every webhook delivery attempt (time, webhook's
        scheme://host, level, reason, attempt, HTTP status or error, duration)."""
        return f"{self.prefix}:{{alerts}}:deliveries"

    # ---- the rollout's decision record (services/web/gate_store.py) ---------------------------
    # One `{gates}` hash tag: the record script changes a gate's state and appends to the history
    # in one step, so every key it touches is in one slot (a Redis Cluster runs it unchanged).
    def _gates(self, name: str) -> str:
        return f"{self.prefix}:{{gates}}:{name}"

    @property
    def gates_state(self) -> str:
        """Hash: gate id -> JSON of its recorded state (verdict, since, sealed, version)."""
        return self._gates("state")

    @property
    def gates_history(self) -> str:
        """List, newest first, capped: verdict changes, seals, regressions, re-openings,
        sign-offs and full pauses/resumes, each with its time, actor and metrics."""
        return self._gates("history")

    @property
    def gates_signoffs(self) -> str:
        """Hash: `<gate id>/<criterion id>` -> JSON {value, actor, note, at}: what a person
        stated for a criterion the fleet cannot measure."""
        return self._gates("signoffs")


@dataclass(frozen=True, slots=True)
class LegacyKeys:
    """The unsharded layout of fleets initialised before shards (layout version 1): read only by
    the layout migration (shared/migrate_layout.py), which moves it into the sharded one."""

    prefix: str = "tooloo"

    def learner_state(self, learner: str) -> str:
        return f"{self.prefix}:{{learner:{learner}}}:state"

    def learner_history(self, learner: str) -> str:
        return f"{self.prefix}:{{learner:{learner}}}:history"

    def learner_meta(self, learner: str) -> str:
        return f"{self.prefix}:{{learner:{learner}}}:meta"

    def learner_meta_log(self, learner: str) -> str:
        return f"{self.prefix}:{{learner:{learner}}}:meta:log"

    @property
    def learners_index(self) -> str:
        return f"{self.prefix}:learners"

    @property
    def learners_regions(self) -> str:
        return f"{self.prefix}:learners:regions"

    @property
    def rounds_seq(self) -> str:
        return f"{self.prefix}:rounds:seq"

    @property
    def stream_rounds(self) -> str:
        return f"{self.prefix}:events:rounds"

    @property
    def stream_meta(self) -> str:
        return f"{self.prefix}:events:meta"

    @property
    def stream_system(self) -> str:
        return f"{self.prefix}:events:system"

    def coach(self, name: str) -> str:
        """`queue`, `ready`, `fastlane`, `coached`, `lease`, `fence` (per-shard now), and the
        fleet-wide ones whose names did not change (`settings`, `state`, `stats`, ...)."""
        return f"{self.prefix}:{{coach}}:{name}"

    def coach_untagged(self, name: str) -> str:
        """The coach keys of fleets older still, before the `{coach}` tag."""
        return f"{self.prefix}:coach:{name}"

    @property
    def meta_stats(self) -> str:
        return f"{self.prefix}:meta:stats"

    def reports(self, name: str) -> str:
        return f"{self.prefix}:reports:{name}"

    # ---- shards-data: what the layout migration also reads --------------------------------------
    @property
    def learners_seq(self) -> str:
        return f"{self.prefix}:learners:seq"

    def learner_meta_lock(self, learner: str) -> str:
        return f"{self.prefix}:{{learner:{learner}}}:meta:lock"

    @property
    def learner_pattern(self) -> str:
        """SCAN pattern of every per-learner key; `learner_key_parts` splits a match."""
        return f"{self.prefix}:{{learner:*"

    def learner_key_parts(self, key: str) -> tuple[str, str] | None:
        """(learner id, the part after its tag: `state`, `idem:<key>`, ...) of a per-learner key,
        None for another key."""
        head = f"{self.prefix}:{{learner:"
        if not key.startswith(head) or "}:" not in key:
            return None
        learner, rest = key[len(head) :].split("}:", 1)
        return learner, rest

    @property
    def reports_pattern(self) -> str:
        """SCAN pattern of reports' keys (`totals`, `cursor`, `min:<minute>`, `svc:<...>`)."""
        return f"{self.prefix}:reports:*"

    def legacy_markers(self) -> list[str]:
        """Keys whose presence means a fleet-wide (unsharded) layout is still in this Redis: none
        of them exists in the sharded layout."""
        return [
            self.learners_index,
            self.learners_seq,
            self.learners_regions,
            self.rounds_seq,
            self.stream_rounds,
            self.stream_meta,
            self.stream_system,
            self.meta_stats,
            self.reports("totals"),
            *(self.coach(n) for n in ("queue", "ready", "fastlane", "coached", "lease", "fence")),
            *(self.coach_untagged(n) for n in COACH_NAMES),
        ]


# Every lasting coach key of the unsharded layouts; the first four are per shard now.
COACH_PER_SHARD = ("queue", "ready", "fastlane", "coached")
COACH_NAMES = (*COACH_PER_SHARD, "settings", "state", "stats", "meta:delays", "meta:delay")
