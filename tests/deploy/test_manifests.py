"""The deploy files cannot be started here (no container engine); keep them consistent with the code instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from core.cli import app as cli_app
from core.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FLAT_ALIASES = {"YUQING_KAFKA_BOOTSTRAP", "YUQING_ES_URL"}


def _setting_exists(var: str) -> bool:
    """Whether YUQING_A__B names a field path in Settings."""
    if var in FLAT_ALIASES:
        return True
    parts = var.removeprefix("YUQING_").lower().split("__")
    model: type[BaseModel] = Settings
    for i, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        annotation = field.annotation
        if i < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                return False
            model = annotation
    return True


def _env_vars(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and key.startswith("YUQING_"):
                found.add(key)
            found |= _env_vars(value)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].startswith("YUQING_"):
                found.add(item["name"])
            found |= _env_vars(item)
    return found


def _commands(node: Any) -> list[list[str]]:
    out: list[list[str]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "command" and isinstance(value, list) and value and value[0] == "yuqing":
                out.append([str(v) for v in value])
            else:
                out.extend(_commands(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(_commands(item))
    return out


def _load_all() -> list[Any]:
    docs: list[Any] = []
    for path in [DEPLOY / "compose.yaml", *sorted((DEPLOY / "k8s").glob("*.yaml"))]:
        docs.extend(d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d)
    return docs


def test_the_checker_itself_tells_real_from_made_up_settings() -> None:
    assert _setting_exists("YUQING_KAFKA__BOOTSTRAP")
    assert _setting_exists("YUQING_MODE")
    assert not _setting_exists("YUQING_KAFKA__BOOTSTRAPS")
    assert not _setting_exists("YUQING_MODE__X")


def test_every_setting_the_deploy_files_pass_exists() -> None:
    variables = set().union(*(_env_vars(d) for d in _load_all()))
    assert len(variables) >= 10
    unknown = sorted(v for v in variables if not _setting_exists(v))
    assert unknown == [], f"deploy files set variables Settings does not know: {unknown}"


def test_deploy_values_validate_as_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = next(d for d in _load_all() if d.get("kind") == "ConfigMap")
    secret = next(d for d in _load_all() if d.get("kind") == "Secret")
    for key, value in {**config["data"], **secret["stringData"]}.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert s.mode == "scale" and s.bus_kind == "kafka" and s.post_store_kind == "elasticsearch"
    assert s.smtp.security == "starttls"


def test_every_command_is_a_real_cli_command() -> None:
    import typer.main

    click_app = typer.main.get_command(cli_app)
    names = set(click_app.commands)  # type: ignore[attr-defined]
    commands = [c for d in _load_all() for c in _commands(d)]
    assert commands
    for command in commands:
        assert command[1] in names, f"{command} is not a yuqing command"
        if command[1] == "worker":
            assert command[2] in {"analyze", "alerts", "scheduler", "sender"}


def test_workloads_have_limits_and_replicas() -> None:
    deployments = [d for d in _load_all() if d.get("kind") == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} >= {"yuqing-api", "yuqing-analyze", "yuqing-alerts"}
    for d in deployments:
        assert d["spec"]["replicas"] >= 1
        for container in d["spec"]["template"]["spec"]["containers"]:
            assert container["resources"]["limits"]["memory"]


def test_containers_get_longer_to_stop_than_the_drain_takes() -> None:
    drain_s = Settings().shutdown_drain_s
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert int(compose["x-yuqing"]["stop_grace_period"].rstrip("s")) > drain_s
    for doc in yaml.safe_load_all((DEPLOY / "k8s" / "workloads.yaml").read_text()):
        if doc and doc.get("kind") == "Deployment":
            assert doc["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain_s, doc["metadata"]["name"]
