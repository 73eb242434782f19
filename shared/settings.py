"""Fleet settings, read once from environment variables.

Every service reads the same `FleetSettings`, so ports and URLs of the other services are known
to all of them without a registry: one `<name>_port` and one `<name>_url` setting per service of
`shared.fleet.SERVICES`. Service-specific tunables live in each service's own settings model,
which subclasses this one.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, create_model
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.fleet import SERVICES
from shared.keys import DEFAULT_SHARDS, MAX_SHARDS


def default_redis_url() -> str:
    """The embedded Redis (shared/embedded_redis.py): its port, its fleet user and the password
    it keeps in the var directory (generated here if this process is the first to need it)."""
    from shared.embedded_redis import DEFAULT_PORT, fleet_password, fleet_url, var_dir

    port = int(os.environ.get("TOOLOO_REDIS_PORT") or DEFAULT_PORT)
    return fleet_url(port, fleet_password(var_dir()))


def _address_fields() -> dict[str, Any]:
    """`<name>_port` (default: the documented port) and `<name>_url` for every service. A URL
    is set when the service runs on another host (docker-compose sets e.g.
    TRAINING_URL=http://training:3001); without one, loopback on the port is meant."""
    fields: dict[str, Any] = {}
    for svc in SERVICES:
        port_env = AliasChoices(svc.port_env, *svc.port_env_aliases)
        fields[f"{svc.name}_port"] = (
            int,
            Field(svc.default_port, ge=1, le=65535, validation_alias=port_env),
        )
        fields[f"{svc.name}_url"] = (str | None, Field(None, validation_alias=svc.url_env))
    return fields


ServiceAddresses = create_model("ServiceAddresses", __base__=BaseSettings, **_address_fields())


class FleetSettings(ServiceAddresses):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Without REDIS_URL, the embedded Redis of the Procfile is meant; it listens on
    # TOOLOO_REDIS_PORT (default 6390), so the default URL follows that variable too.
    redis_url: str = Field(default_factory=default_redis_url, validation_alias="REDIS_URL")
    redis_prefix: str = Field(
        "tooloo", validation_alias="TOOLOO_REDIS_PREFIX", pattern=r"^[A-Za-z0-9_.-]{1,32}$"
    )
    # The number of shards of the keyspace (shared/keys.py), fixed when the fleet's Redis is
    # first initialised. It bounds how many Redis Cluster masters and coach / reports replicas
    # can share the work: each shard is one slot and is owned by one replica at a time.
    shards: int = Field(DEFAULT_SHARDS, ge=1, le=MAX_SHARDS, validation_alias="TOOLOO_SHARDS")
    host: str = Field("127.0.0.1", validation_alias="TOOLOO_HOST")
    api_token: SecretStr | None = Field(None, validation_alias="TOOLOO_API_TOKEN")
    log_level: str = Field("info", validation_alias="TOOLOO_LOG_LEVEL")
    # Upper bound for any service-to-service call; callers may pass a shorter one.
    http_timeout_s: float = Field(5.0, gt=0, le=120, validation_alias="TOOLOO_HTTP_TIMEOUT")
    var_dir: str = Field("./var", validation_alias="TOOLOO_VAR_DIR")
    # How long a starting service waits for Redis before it gives up (and its supervisor, the
    # orchestrator or compose, restarts it).
    redis_wait_s: float = Field(120.0, ge=0, le=3600, validation_alias="TOOLOO_REDIS_WAIT")
    # ---- the edge: which browsers, host names and proxies the fleet believes (docs/SECURITY.md)
    # Extra origins (exact `scheme://host[:port]`, comma-separated) allowed to call any service
    # from a browser, besides the fleet's own (every service's loopback and `*_URL` origin).
    cors_origins: str = Field("", validation_alias="TOOLOO_CORS_ORIGINS")
    # Extra names the `Host` header may carry (comma-separated, no port; `*` turns the check
    # off), besides loopback, the `*_URL` hosts and a non-wildcard bind host: DNS rebinding.
    allowed_hosts: str = Field("", validation_alias="TOOLOO_ALLOWED_HOSTS")
    # Peers (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed, e.g. a reverse
    # proxy in front of the gateway. Default none: a client cannot choose its rate-limit bucket.
    trusted_proxies: str = Field("", validation_alias="TOOLOO_TRUSTED_PROXIES")
    # Per-scope rate limits in place of the built-in ones, e.g.
    # `training-new-topic=100/60,coach-boost=120/10` (calls per seconds; docs/SECURITY.md).
    rate_limits: str = Field(
        "",
        validation_alias="TOOLOO_RATE_LIMITS",
        pattern=r"^\s*([a-z0-9-]+=[1-9]\d{0,8}/[1-9]\d{0,6}\s*(,\s*|$))*$",
    )
    # Concurrent server-sent event streams the gateway serves (one per open Control Room).
    sse_max_streams: int = Field(32, ge=1, le=10_000, validation_alias="TOOLOO_SSE_MAX_STREAMS")
    # Streams (shared/stream_trim.py): trimmed by consumer progress every interval (by reports);
    # acknowledged entries are kept for `stream_retention_s`; a stream without any consumer group
    # is capped at `stream_cap` entries instead; a group
    # whose lag (undelivered + pending entries) exceeds `stream_lag_alert` raises an alert.
    stream_trim_interval_s: float = Field(
        10.0, gt=0, le=3600, validation_alias="TOOLOO_STREAM_TRIM_INTERVAL"
    )
    stream_cap: int = Field(1_000_000, ge=1, le=1_000_000_000, validation_alias="TOOLOO_STREAM_CAP")
    # Acknowledged entries younger than this stay (the streams are the recent event log too).
    stream_retention_s: float = Field(
        60.0, ge=0, le=86_400, validation_alias="TOOLOO_STREAM_RETENTION"
    )
    stream_lag_alert: int = Field(
        100_000, ge=1, le=1_000_000_000, validation_alias="TOOLOO_STREAM_LAG_ALERT"
    )
    # The embedded Redis (docs/OPERATIONS.md, "Redis"): appendfsync `everysec` (a power loss may
    # drop the last second of acknowledged writes) or `always` (none; costs commit throughput);
    # maxmemory as a share of RAM ("50%") or a size ("4gb", 0 = none), with noeviction; the
    # share of maxmemory at which the orchestrator and /metrics raise the memory alert.
    fsync: Literal["everysec", "always"] = Field("everysec", validation_alias="TOOLOO_FSYNC")
    redis_maxmemory: str = Field(
        "50%",
        validation_alias="TOOLOO_REDIS_MAXMEMORY",
        pattern=r"^\s*(\d+(\.\d+)?%|\d+(\.\d+)?(?i:kb|mb|gb|b)?)\s*$",
    )
    redis_memory_alert_pct: float = Field(
        80.0, gt=0, le=100, validation_alias="TOOLOO_REDIS_MEMORY_ALERT_PCT"
    )
    # The fleet's deployment regions (comma-separated, 1–64 names): onboarding labels learners
    # with them (unless TRAINING_ONBOARDING_REGIONS says otherwise) and the gates count those
    # that have learners.
    fleet_regions: str = Field(
        "us-east,us-west,eu-west,eu-central,ap-south,ap-east",
        validation_alias="TOOLOO_REGIONS",
        pattern=r"^\s*[A-Za-z0-9_.-]{1,64}(\s*,\s*[A-Za-z0-9_.-]{1,64}){0,63}\s*$",
    )

    # How often (s) the web service evaluates the gates and records what changed (verdicts,
    # seals, regressions): evaluations further apart than 5 minutes restart a gate's period.
    gates_record_interval_s: float = Field(
        30.0, ge=0.2, le=120, validation_alias="TOOLOO_GATES_RECORD_INTERVAL"
    )

    # The ramp controller (services/web/ramp.py; off until POST /api/v1/system/ramp enables
    # it): population stages, the hold time of each (one value for all, or one per stage), and
    # how often (s) the web replica holding its lease checks the gates.
    ramp_stages: str = Field(
        "5000,10000,25000,50000,100000,250000,500000,1000000,2000000",
        validation_alias="TOOLOO_RAMP_STAGES",
        pattern=r"^\s*\d{1,8}(\s*,\s*\d{1,8}){0,63}\s*$",
    )
    ramp_hold_s: str = Field(
        "3600",
        validation_alias="TOOLOO_RAMP_HOLD_S",
        pattern=r"^\s*\d{1,7}(\s*,\s*\d{1,7}){0,63}\s*$",
    )
    ramp_check_s: float = Field(10.0, ge=0.2, le=600, validation_alias="TOOLOO_RAMP_CHECK_S")

    def region_list(self) -> list[str]:
        return list(dict.fromkeys(r.strip() for r in self.fleet_regions.split(",") if r.strip()))

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def url_of(self, service: str) -> str:
        """Base URL (no trailing slash) at which `service` answers."""
        explicit: str | None = getattr(self, f"{service}_url", None)
        if explicit:
            return explicit.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{self.port_of(service)}"

    def token(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None


@lru_cache(maxsize=1)
def get_settings() -> FleetSettings:
    return FleetSettings()
