"""Process-wide settings: environment variables prefixed `TOKENMILL_`, then CLI flags.

Each field reads `TOKENMILL_<FIELD>`; the CLI derives its options from the same fields
so that a flag and its variable can never disagree on meaning or default.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from server.config import ConfigError

ENV_PREFIX = "TOKENMILL_"


def _default_home() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tokenmill"


class Settings(BaseModel):
    """Where tokenmill keeps its data and how the gateway listens."""

    model_config = ConfigDict(extra="forbid")

    home: Path = Field(
        default_factory=_default_home,
        description="data directory: prepared models, engine logs, the ledger",
    )
    config: Path = Field(Path("models.yaml"), description="the models.yaml to serve")
    host: str = Field("127.0.0.1", description="address the gateway listens on")
    port: int = Field(8000, ge=0, le=65535, description="port the gateway listens on")
    log_level: str = Field("info", description="diagnostics level: debug, info, …")
    metering: bool = Field(
        True,
        description="price and record requests in the ledger; 'false' leaves only "
        "the request log, to measure what metering costs",
    )
    ledger_url: str | None = Field(
        None,
        description="ledger database URL (default: SQLite in the home directory; "
        "postgresql://… works too)",
    )

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from `TOKENMILL_*` variables, then `overrides` (not None)."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            env_value = os.environ.get(ENV_PREFIX + name.upper())
            if env_value:
                values[name] = env_value
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = str(error["loc"][0])
            raise ConfigError(
                f"setting {field} (TOKENMILL_{field.upper()} or --{field}) is "
                f"{error.get('input')!r}: {error['msg']}"
            ) from None

    @property
    def ledger(self) -> str:
        """The ledger's database URL."""
        from server.ledger_schema import default_url

        return self.ledger_url or default_url(self.home)

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"
