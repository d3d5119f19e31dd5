"""Settings: defaults, the flat aliases operators use, validation at start-up, secrets hidden."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import Settings


def test_embedded_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("YUQING_MODE", raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.mode == "embedded"
    assert s.bus_kind == "sqlite"  # the durable embedded bus
    assert s.post_store_kind == "sqlite"
    assert s.resolved_database_url == f"sqlite:///{(tmp_path / 'yuqing.sqlite').resolve()}"


def test_scale_mode_switches_every_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_MODE", "scale")
    s = Settings()
    assert (s.bus_kind, s.post_store_kind) == ("kafka", "elasticsearch")


def test_per_part_override_mixes_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_MODE", "scale")
    monkeypatch.setenv("YUQING_POST_STORE_BACKEND", "sqlite")
    s = Settings()
    assert (s.bus_kind, s.post_store_kind) == ("kafka", "sqlite")


def test_flat_aliases_and_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_KAFKA_BOOTSTRAP", "10.0.0.1:19092")
    monkeypatch.setenv("YUQING_ES_URL", "http://es.local:9200")
    monkeypatch.setenv("YUQING_KAFKA__PARTITIONS", "12")
    s = Settings()
    assert s.kafka.bootstrap == "10.0.0.1:19092"
    assert s.kafka.partitions == 12
    assert s.es.url == "http://es.local:9200"


def test_nested_variable_wins_over_flat_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_KAFKA_BOOTSTRAP", "flat:1")
    monkeypatch.setenv("YUQING_KAFKA__BOOTSTRAP", "nested:2")
    assert Settings().kafka.bootstrap == "nested:2"


def test_robot_enabled_without_key_refuses_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_WECOM__ENABLED", "true")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "YUQING_WECOM__OFFICE_KEY" in str(info.value)


def test_webhook_enabled_without_secret_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_WEBHOOK__ENABLED", "true")
    monkeypatch.setenv("YUQING_WEBHOOK__URL", "http://127.0.0.1:9/hook")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "YUQING_WEBHOOK__SECRET" in str(info.value)


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_WECOM__ENABLED", "true")
    monkeypatch.setenv("YUQING_WECOM__OFFICE_KEY", "planted-key-0123456789")
    monkeypatch.setenv("YUQING_SMTP__PASSWORD", "planted-password-xyz")
    s = Settings()
    dumped = repr(s) + str(s.model_dump()) + s.model_dump_json()
    assert "planted-key-0123456789" not in dumped
    assert "planted-password-xyz" not in dumped
    assert s.wecom.office_key is not None
    assert s.wecom.office_key.get_secret_value() == "planted-key-0123456789"


def test_bad_values_fail_with_the_field_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUQING_API__PORT", "99999")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert "port" in str(info.value)
