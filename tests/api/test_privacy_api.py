"""What unprivileged roles see of citizens' data through the API: masked links, pseudonyms, no search oracle."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.support import bearer, embedded, make_token, post_record

ID_NUMBER = "110101199003077777"
PHONE = "13812345678"
TOKENS: dict[str, str] = {}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from core.auth import passwords

    passwords.configure(time_cost=1, memory_cost_kib=8192, parallelism=1)
    tmp = tmp_path_factory.mktemp("privacy")
    with embedded(tmp, analyze={"sentiment_model": "tfidf", "ner": "off"}) as (container, pipeline):
        TOKENS["analyst"] = make_token(container, "analyst-p", "analyst")
        TOKENS["leader"] = make_token(container, "leader-p", "leader")
        app = create_app(container, pipeline=pipeline)
        with TestClient(app, headers=bearer(TOKENS["analyst"])) as c:
            records = [
                post_record("pii-1", f"我叫王建国，身份证{ID_NUMBER}，电话{PHONE}，A3区小区停水三天了",
                            source="hotline", author="张伟1988",
                            url=f"https://hotline.example.org/order?phone={PHONE}&id={ID_NUMBER}"),
                post_record("plain-1", "A3区小区停水三天了，什么时候来水", author="zhangwei88"),
            ]
            r = c.post("/api/v1/ingest", content=json.dumps(records, ensure_ascii=False).encode())
            assert r.status_code == 202 and r.json()["accepted"] == 2, r.text
            assert pipeline.wait_idle(timeout_s=120)
            container.post_store.refresh()
            yield c
    passwords.configure()


def _posts(c: TestClient, role: str, **params: str) -> list[dict]:
    r = c.get("/api/v1/posts", params=params, headers=bearer(TOKENS[role]))
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_links_are_masked_for_unprivileged_roles(client: TestClient) -> None:
    [post] = [p for p in _posts(client, "leader") if p["external_id"] == "pii-1"]
    assert PHONE not in post["url"] and ID_NUMBER not in post["url"]
    assert "phone=138****5678" in post["url"]
    [raw] = [p for p in _posts(client, "analyst") if p["external_id"] == "pii-1"]
    assert PHONE in raw["url"]  # analysts and admins see the original link


def test_authors_are_pseudonyms_for_everyone(client: TestClient) -> None:
    for role in ("leader", "analyst"):
        authors = {p["external_id"]: p["author"] for p in _posts(client, role)}
        assert all(re.fullmatch("网友[0-9A-F]{6}", a) for a in authors.values()), authors
        assert "张" not in authors["pii-1"] and "zhang" not in authors["plain-1"]


@pytest.mark.parametrize("q", [ID_NUMBER, PHONE, "王建国", "建国"])
def test_search_is_no_oracle_for_personal_data(client: TestClient, q: str) -> None:
    assert [p["external_id"] for p in _posts(client, "analyst", q=q)] == ["pii-1"]  # the raw text matches
    r = client.get("/api/v1/posts", params={"q": q}, headers=bearer(TOKENS["leader"]))
    assert r.json()["total"] == 0 and r.json()["items"] == []


def test_unprivileged_search_still_finds_what_it_can_see(client: TestClient) -> None:
    assert sorted(p["external_id"] for p in _posts(client, "leader", q="停水")) == ["pii-1", "plain-1"]
