"""GET /api/processes/?id_prefix=...: what `orch` and the Python client resolve ids with. A
prefix of hex digits (dashes where the id has them, or none), at least 4, read as a range of
the uuid column; anything else a 400 naming id_prefix."""

from __future__ import annotations

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.client.support import finished_process

PROCESSES = "/api/processes/"


@pytest.fixture
def alice(make_client, pipelines):
    """(client id, API client) of a client with three processes: two whose ids start with
    abcd, one with abce."""
    application, api = make_client("alice")
    ids = ["abcd0000-1111-4000-8000-000000000001", "abcdffff-2222-4000-8000-000000000002",
           "abce0000-3333-4000-8000-000000000003"]
    for pid in ids:
        finished_process(pid, application.client_id)
    return api, ids


def found(api, prefix: str) -> list[str]:
    answer = api.get(PROCESSES, {"id_prefix": prefix, "page_size": 10})
    assert answer.status_code == 200, answer.content
    return sorted(p["id"] for p in answer.json()["results"])


def test_a_prefix_finds_the_ids_that_start_with_it(alice):
    api, (first, second, third) = alice
    assert found(api, "abcd") == [first, second]
    assert found(api, "ABCD") == [first, second]
    assert found(api, "abcdffff-2") == [second]  # with its dash
    assert found(api, "abcdffff2222") == [second]  # without
    assert found(api, "abce") == [third]
    assert found(api, "abcf") == []
    assert found(api, first) == [first]  # a whole id is a prefix too


def test_other_teams_processes_are_not_found_by_prefix(alice, make_client):
    api, _ = alice
    other, _ = make_client("bob")
    stranger = finished_process("abcd5555-0000-4000-8000-000000000000", other.client_id)
    assert str(stranger.pk) not in found(api, "abcd")


@pytest.mark.parametrize("prefix", [
    "abc", "xyz1", "abcd-ef", "-abcd", "abcd0000-1111-4000-8000-0000000000012", "a" * 33,
    "abcd 1", "abcd\u00e9",
])
def test_anything_but_hex_digits_of_an_id_is_a_400_naming_id_prefix(alice, prefix):
    api, _ = alice
    answer = api.get(PROCESSES, {"id_prefix": prefix})
    assert answer.status_code == 400
    assert "id_prefix" in answer.json()["fields"]


def test_the_prefix_is_a_range_of_the_uuid_column_not_a_cast(alice):
    api, _ = alice
    with CaptureQueriesContext(connection) as queries:
        found(api, "abcd")
    listed = [q["sql"] for q in queries.captured_queries
              if '"processes_process"."id" >=' in q["sql"]]
    assert listed, [q["sql"] for q in queries.captured_queries]
    assert all("::text" not in sql and "CAST(" not in sql.upper() for sql in listed)
    assert uuid.UUID("abcd0000-0000-0000-0000-000000000000").hex in listed[0].replace("-", "")
