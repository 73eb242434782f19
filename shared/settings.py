"""Fleet settings, read once from environment variables.

Every service reads the same `FleetSettings`, so ports and URLs of the other services are known
to all of them without a registry. Service-specific tunables live in each service's own settings
model, which subclasses this one.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_PORTS: dict[str, tuple[str, int]] = {
    "web": ("WEB_PORT", 3000),
    "training": ("TRAINING_PORT", 3001),
    "meta": ("META_PORT", 3002),
    "coach": ("COACH_PORT", 3004),
    "reports": ("REPORTS_PORT", 3008),
    "orchestrator": ("ORCHESTRATOR_PORT", 3123),
}


def default_redis_url() -> str:
    return f"redis://127.0.0.1:{os.environ.get('TOOLOO_REDIS_PORT') or 6390}/0"


class FleetSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    # Without REDIS_URL, the embedded Redis of the Procfile is meant; it listens on
    # TOOLOO_REDIS_PORT (default 6390), so the default URL follows that variable too.
    redis_url: str = Field(default_factory=default_redis_url, validation_alias="REDIS_URL")
    redis_prefix: str = Field(
        "tooloo", validation_alias="TOOLOO_REDIS_PREFIX", pattern=r"^[A-Za-z0-9_.-]{1,32}$"
    )
    host: str = Field("127.0.0.1", validation_alias="TOOLOO_HOST")
    api_token: SecretStr | None = Field(None, validation_alias="TOOLOO_API_TOKEN")
    log_level: str = Field("info", validation_alias="TOOLOO_LOG_LEVEL")
    # Upper bound for any service-to-service call; callers may pass a shorter one.
    http_timeout_s: float = Field(5.0, gt=0, le=120, validation_alias="TOOLOO_HTTP_TIMEOUT")
    var_dir: str = Field("./var", validation_alias="TOOLOO_VAR_DIR")

    web_port: int = Field(3000, ge=1, le=65535, validation_alias="WEB_PORT")
    training_port: int = Field(3001, ge=1, le=65535, validation_alias="TRAINING_PORT")
    meta_port: int = Field(3002, ge=1, le=65535, validation_alias="META_PORT")
    coach_port: int = Field(3004, ge=1, le=65535, validation_alias="COACH_PORT")
    reports_port: int = Field(3008, ge=1, le=65535, validation_alias="REPORTS_PORT")
    orchestrator_port: int = Field(
        3123, ge=1, le=65535, validation_alias=AliasChoices("ORCHESTRATOR_PORT", "ORCH_CTRL_PORT")
    )

    # Base URLs of the other services; default to loopback on the documented port. Set them
    # when services run on other hosts (docker-compose sets e.g. TRAINING_URL=http://training:3001).
    web_url: str | None = Field(None, validation_alias="WEB_URL")
    training_url: str | None = Field(None, validation_alias="TRAINING_URL")
    meta_url: str | None = Field(None, validation_alias="META_URL")
    coach_url: str | None = Field(None, validation_alias="COACH_URL")
    reports_url: str | None = Field(None, validation_alias="REPORTS_URL")
    orchestrator_url: str | None = Field(None, validation_alias="ORCHESTRATOR_URL")

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def url_of(self, service: str) -> str:
        """Base URL (no trailing slash) at which `service` answers."""
        explicit = getattr(self, f"{service}_url", None)
        if explicit:
            return explicit.rstrip("/")
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"http://{host}:{self.port_of(service)}"

    def token(self) -> str | None:
        return self.api_token.get_secret_value() if self.api_token else None


@lru_cache(maxsize=1)
def get_settings() -> FleetSettings:
    return FleetSettings()
