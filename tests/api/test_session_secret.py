"""The session secret: the public placeholder is refused, an unset one is generated into the data dir (0600)."""

from __future__ import annotations

import stat

import pytest
from pydantic import SecretStr

from api.app import create_app
from api.security import SECRET_FILE, InsecureSessionSecret, resolve_session_secret
from core.settings import ApiSettings, Settings
from tests.support import embedded


@pytest.mark.parametrize("placeholder", ["change-me-in-production", "CHANGE-ME", " ", ""])
def test_the_public_placeholders_are_refused(tmp_path, placeholder: str) -> None:
    settings = Settings(data_dir=tmp_path, api=ApiSettings(session_secret=SecretStr(placeholder)))
    with pytest.raises(InsecureSessionSecret, match="YUQING_API__SESSION_SECRET"):
        resolve_session_secret(settings)


def test_the_app_refuses_to_start_with_the_placeholder(tmp_path) -> None:
    placeholder = {"session_secret": "change-me-in-production"}
    with embedded(tmp_path, start=False, api=placeholder) as (container, pipeline), \
            pytest.raises(InsecureSessionSecret):
        create_app(container, pipeline=pipeline)


def test_an_unset_secret_is_generated_once_into_the_data_dir_0600(tmp_path) -> None:
    first = resolve_session_secret(Settings(data_dir=tmp_path / "d"))
    path = tmp_path / "d" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) >= 32 and first != "change-me-in-production"
    assert resolve_session_secret(Settings(data_dir=tmp_path / "d")) == first
    assert resolve_session_secret(Settings(data_dir=tmp_path / "other")) != first


def test_a_configured_secret_is_used_as_given(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, api=ApiSettings(session_secret=SecretStr("a-real-long-random-secret")))
    assert resolve_session_secret(settings) == "a-real-long-random-secret"
    assert not (tmp_path / SECRET_FILE).exists()
