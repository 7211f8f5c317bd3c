"""core/endpoints.py on its own: input checks, the request of each endpoint, and what a
bulk delete's answer means."""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlsplit

import pytest

from airflow_provider_recordings.core import endpoints
from airflow_provider_recordings.core.config import PERSONS, PERSONS_DELETE, SHARING, build_client_config
from airflow_provider_recordings.core.endpoints import (
    LIST_PARAMS,
    DeleteSummary,
    bulk_delete_unsupported,
    person_path,
    person_route_unavailable,
    reconcile_bulk_delete,
    validate_list_params,
    validate_recording_ids,
    validate_update_fields,
)
from airflow_provider_recordings.core.errors import (
    PostHogApiError,
    PostHogBadRequestError,
    PostHogConfigError,
    PostHogNotFoundError,
    PostHogPermissionError,
    PostHogServerError,
)
from airflow_provider_recordings.core.limits import PERSONS_BULK_DELETE_MAX
from airflow_provider_recordings.core.protocol import RECORDING

CONFIG = build_client_config(
    conn_id="posthog_default", host="https://eu.posthog.com", password="k", extra={"project_id": "42"}
)
ROOT = "https://eu.posthog.com/api/projects/42"

# -- list parameters ---------------------------------------------------------------------


def test_every_documented_list_parameter_is_accepted():
    # The list filters take lists (a bare string is refused: tests/reliability/test_newcomer_errors.py).
    validate_list_params({**dict.fromkeys(LIST_PARAMS, "x"), "distinct_ids": ["x"], "session_ids": ["x"]})
    validate_list_params({})


def test_unknown_list_parameters_are_named_with_what_is_accepted():
    with pytest.raises(PostHogConfigError) as raised:
        validate_list_params({"date_from": "-3d", "sort": "x", "page": 2})
    message = str(raised.value)
    assert "unknown list filter(s) ['page', 'sort']" in message
    assert "accepted: actions, after, console_log_filters," in message
    assert "distinct_ids" in message and "singular" not in message


def test_the_singular_distinct_id_gets_a_hint():
    with pytest.raises(PostHogConfigError, match=r"no singular 'distinct_id'; use 'distinct_ids'"):
        validate_list_params({"distinct_id": "user-1"})


# -- update fields -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"viewed": True},
        {"analyzed": True},
        {"viewed": False, "analyzed": True},
        {"viewed": True, "player_metadata": {"note": "checked"}},
        {"analyzed": True, "player_metadata": ["a", 1]},
        {"person": {"id": 1}},  # the published document's field
        {"person": "person-uuid", "viewed": False},
        {"person": 7, "player_metadata": "x"},
    ],
)
def test_accepted_updates_come_back_as_a_plain_copy(fields):
    checked = validate_update_fields(fields)
    assert checked == fields and checked is not fields and type(checked) is dict


@pytest.mark.parametrize(
    "fields",
    [
        {"viewed": False},
        {"analyzed": False},
        {"viewed": False, "analyzed": False},
        {"player_metadata": {"note": "x"}},
        {"viewed": False, "player_metadata": {}},
    ],
)
def test_a_live_update_must_set_viewed_or_analyzed_to_true(fields):
    with pytest.raises(
        PostHogConfigError, match=r"only applies an update that sets 'viewed' or 'analyzed' to true"
    ):
        validate_update_fields(fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "non-empty dict of fields; allowed: ['analyzed', 'person', 'player_metadata', 'viewed']"),
        ([("viewed", True)], "non-empty dict of fields"),
        ("viewed", "non-empty dict of fields"),
        ({"viewed": True, "pinned": True}, "unknown update field(s) ['pinned']"),
        ({"viewed": "yes"}, "'viewed' must be bool, got 'yes'"),
        ({"viewed": 1}, "'viewed' must be bool, got 1"),
        ({"analyzed": None}, "'analyzed' must be bool, got None"),
        ({"person": [1]}, "'person' must be dict or str or int"),
        ({"viewed": True, "player_metadata": None}, "'player_metadata' must be dict or list or str"),
    ],
)
def test_bad_updates_are_refused_naming_the_problem(fields, message):
    with pytest.raises(PostHogConfigError, match=re.escape(message)):
        validate_update_fields(fields)


# -- recording ids -----------------------------------------------------------------------


def test_ids_keep_their_order_without_repeats():
    assert validate_recording_ids(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
    assert validate_recording_ids(("x", "y")) == ["x", "y"]
    assert validate_recording_ids(i for i in ["g1", "g2", "g1"]) == ["g1", "g2"]
    assert validate_recording_ids([]) == []


@pytest.mark.parametrize("ids", ["0190-abc", b"0190-abc"])
def test_a_bare_string_is_not_a_list_of_ids(ids):
    with pytest.raises(PostHogConfigError, match="must be a list of ids, not a single string"):
        validate_recording_ids(ids)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("a/b", "contains '/' or white space"),
        ("../other", "contains '/' or white space"),
        ("a b", "contains '/' or white space"),
        ("tab\tid", "contains '/' or white space"),
        (" padded", "contains '/' or white space"),
        ("", "must be a non-empty string"),
        ("   ", "must be a non-empty string"),
        (None, "must be a non-empty string, got None"),
        (123, "must be a non-empty string, got 123"),
        ({"id": "x"}, "must be a non-empty string"),
    ],
)
def test_unusable_ids_are_refused_wherever_they_are_in_the_list(bad, message):
    with pytest.raises(PostHogConfigError, match=message):
        validate_recording_ids(["fine-1", bad, "fine-2"])


@pytest.mark.parametrize("bad", [".", ".."])
def test_dot_segments_are_refused_as_ids(bad):
    """``..`` would leave the recordings collection: every HTTP client here resolves
    ``session_recordings/../`` to the project itself (``DELETE /api/projects/42/``)."""
    with pytest.raises(PostHogConfigError, match="recording id"):
        validate_recording_ids([bad])
    with pytest.raises(PostHogConfigError):
        endpoints.delete(bad)


# -- requests ----------------------------------------------------------------------------


def test_recording_requests():
    cases = [
        (endpoints.retrieve("rec-1"), ("GET", "rec-1/", None), RECORDING),
        (endpoints.delete("rec-1"), ("DELETE", "rec-1/", None), RECORDING),
        (endpoints.update("rec-1", {"viewed": True}), ("PATCH", "rec-1/", {"viewed": True}), RECORDING),
        # The sharing endpoints use PostHog's default throttles (480/min, 4,800/h).
        (endpoints.get_sharing("rec-1"), ("GET", "rec-1/sharing/", None), SHARING),
        (endpoints.set_sharing("rec-1", False), ("PATCH", "rec-1/sharing/", {"enabled": False}), SHARING),
        (
            endpoints.bulk_delete(["a", "b"]),
            ("POST", "bulk_delete/", {"session_recording_ids": ["a", "b"]}),
            RECORDING,
        ),
    ]
    for request, (method, path, body), kind in cases:
        assert (request.method, request.path, request.json_body) == (method, path, body)
        assert (request.kind, request.resource, request.params, request.url) == (
            kind,
            "session_recordings",
            (),
            None,
        )
        assert request.target(CONFIG) == f"{ROOT}/session_recordings/{path}"


def test_ids_are_quoted_into_one_path_segment():
    request = endpoints.get_sharing("id?x=1#frag%2F")
    assert request.path == "id%3Fx%3D1%23frag%252F/sharing/"
    assert (
        urlsplit(request.target(CONFIG)).path
        == "/api/projects/42/session_recordings/id%3Fx%3D1%23frag%252F/sharing/"
    )


def test_bulk_delete_sends_a_copy_of_the_ids():
    ids = ["a", "b"]
    request = endpoints.bulk_delete(ids)
    ids.append("c")
    assert request.json_body == {"session_recording_ids": ["a", "b"]}


def test_requests_check_their_input_before_they_exist():
    with pytest.raises(PostHogConfigError, match="'viewed' or 'analyzed' to true"):
        endpoints.update("rec-1", {"viewed": False})
    with pytest.raises(PostHogConfigError, match="enabled must be true or false, got 'false'"):
        endpoints.set_sharing("rec-1", "false")  # type: ignore[arg-type]
    with pytest.raises(PostHogConfigError, match="contains '/'"):
        endpoints.retrieve("a/b")


def test_person_requests():
    find = endpoints.find_persons("user 1&x=2")
    assert (find.method, find.path, find.kind, find.resource) == ("GET", "", PERSONS, "persons")
    target = urlsplit(find.target(CONFIG))
    assert target.path == "/api/projects/42/persons/"
    assert parse_qsl(target.query) == [("distinct_id", "user 1&x=2")]

    retrieve = endpoints.retrieve_person(" 0190-uuid ")
    assert (retrieve.method, retrieve.path, retrieve.kind) == ("GET", "0190-uuid/", PERSONS)
    assert retrieve.target(CONFIG) == f"{ROOT}/persons/0190-uuid/"

    delete = endpoints.delete_person_recordings("17")
    assert (delete.method, delete.kind, delete.resource, delete.json_body) == (
        "POST",
        PERSONS_DELETE,
        "persons",
        None,
    )
    assert delete.target(CONFIG) == f"{ROOT}/persons/17/delete_recordings/"


def test_persons_bulk_delete_keeps_the_persons_and_their_events():
    request = endpoints.bulk_delete_person_recordings(["u1", "u2"])
    assert (request.method, request.kind, request.resource) == ("POST", PERSONS_DELETE, "persons")
    assert request.target(CONFIG) == f"{ROOT}/persons/bulk_delete/"
    assert request.json_body == {
        "ids": ["u1", "u2"],
        "delete_recordings": True,
        "keep_person": True,
        "delete_events": False,
    }


@pytest.mark.parametrize("count", [1, PERSONS_BULK_DELETE_MAX])
def test_persons_bulk_delete_takes_one_to_a_thousand(count):
    ids = [f"u{i}" for i in range(count)]
    assert endpoints.bulk_delete_person_recordings(ids).json_body["ids"] == ids


@pytest.mark.parametrize("count", [0, PERSONS_BULK_DELETE_MAX + 1])
def test_persons_bulk_delete_refuses_outside_its_bounds(count):
    with pytest.raises(PostHogConfigError, match=f"takes 1 to 1000 persons, got {count}"):
        endpoints.bulk_delete_person_recordings([f"u{i}" for i in range(count)])


def test_person_path():
    assert person_path("abc") == "abc/"
    assert person_path(" abc ", "delete_recordings/") == "abc/delete_recordings/"
    assert person_path("a b?c") == "a%20b%3Fc/"


@pytest.mark.parametrize("bad", ["", "  ", "a/b", None, 17, ".", ".."])
def test_person_path_refuses_what_is_not_one_person(bad):
    with pytest.raises(PostHogConfigError, match="addressed by its id or UUID"):
        person_path(bad)


# -- what failures mean ------------------------------------------------------------------


def api_error(cls: type[PostHogApiError], status: int, detail: str | None = None) -> PostHogApiError:
    return cls(f"-> {status}", method="POST", path="/x", status=status, detail=detail)


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (api_error(PostHogPermissionError, 403, "API key missing required scope 'person:write'"), True),
        (api_error(PostHogApiError, 405, 'Method "POST" not allowed.'), True),
        (api_error(PostHogNotFoundError, 404, "Not found."), True),
        (api_error(PostHogNotFoundError, 404, None), True),
        (api_error(PostHogNotFoundError, 404, "Person not found."), False),
        (api_error(PostHogNotFoundError, 404, "PERSON NOT FOUND"), False),
        (api_error(PostHogBadRequestError, 400, "bad uuid"), False),
        (api_error(PostHogServerError, 500), False),
    ],
)
def test_person_route_unavailable(error, unavailable):
    assert person_route_unavailable(error) is unavailable


@pytest.mark.parametrize(
    ("error", "unsupported"),
    [
        (api_error(PostHogNotFoundError, 404, "Not found."), True),
        (api_error(PostHogApiError, 405), True),
        (
            api_error(PostHogPermissionError, 403, "This action does not support Personal API Key access"),
            True,
        ),
        (api_error(PostHogPermissionError, 403, "API key missing required scope"), False),
        (api_error(PostHogPermissionError, 403, None), False),
        (api_error(PostHogBadRequestError, 400, "too many ids"), False),
        (api_error(PostHogServerError, 503), False),
    ],
)
def test_bulk_delete_unsupported(error, unsupported):
    assert bulk_delete_unsupported(error) is unsupported


# -- bulk delete answers -----------------------------------------------------------------


def test_a_bulk_delete_that_deleted_everything():
    summary = reconcile_bulk_delete(
        ["a", "b", "c"], {"deleted_count": 3, "total_requested": 3, "failed_ids": []}
    )
    assert (summary.requested, summary.gone, summary.deleted, summary.already_gone, summary.failed) == (
        3,
        ["a", "b", "c"],
        3,
        0,
        {},
    )
    assert [summary.outcome(i)[0] for i in "abc"] == ["deleted"] * 3


def test_a_shortfall_in_deleted_count_is_already_gone():
    summary = reconcile_bulk_delete(["a", "b", "c"], {"deleted_count": 1, "total_requested": 3})
    assert (summary.gone, summary.deleted, summary.already_gone) == (["a", "b", "c"], 1, 2)
    # The answer does not say which ids were missing: the part counts as deleted.
    assert summary.outcome("b") == ("deleted", None)


def test_a_part_that_was_all_gone_already():
    summary = reconcile_bulk_delete(["a", "b"], {"deleted_count": 0, "total_requested": 2, "failed_ids": []})
    assert (summary.deleted, summary.already_gone) == (0, 2)
    assert summary.outcome("a") == ("already_gone", None)


def test_failed_ids_are_failures_and_not_gone():
    summary = reconcile_bulk_delete(
        ["a", "b", "c"], {"deleted_count": 2, "failed_ids": ["b", "not-asked-for", 7]}
    )
    assert summary.gone == ["a", "c"]
    assert summary.failed == {"b": "PostHog listed it in failed_ids"}
    assert (summary.deleted, summary.already_gone) == (2, 0)
    assert summary.outcome("b") == ("failed", "PostHog listed it in failed_ids")
    assert summary.outcome("a") == ("deleted", None)


@pytest.mark.parametrize(
    ("data", "deleted"),
    [
        (None, 3),  # a 204 or an empty body: every id is gone
        ({}, 3),
        ("not an object", 3),
        ({"deleted_count": "3"}, 3),  # not a number: counted as all deleted
        ({"deleted_count": 10}, 3),  # never more than were asked for
        ({"deleted_count": -4}, 0),
    ],
)
def test_odd_answers_are_read_within_bounds(data, deleted):
    summary = reconcile_bulk_delete(["a", "b", "c"], data)
    assert summary.gone == ["a", "b", "c"]
    assert (summary.deleted, summary.already_gone) == (deleted, 3 - deleted)


def test_summaries_add_up():
    total = DeleteSummary()
    total.add(reconcile_bulk_delete(["a", "b"], {"deleted_count": 1}))
    total.add(reconcile_bulk_delete(["c", "d"], {"deleted_count": 1, "failed_ids": ["d"]}))
    assert (total.requested, total.gone, total.deleted, total.already_gone) == (4, ["a", "b", "c"], 2, 1)
    assert total.as_dict() == {
        "requested": 4,
        "deleted": 2,
        "already_gone": 1,
        "failed": 1,
        "failed_ids": ["d"],
    }
    assert json.dumps(total.as_dict())


def test_as_dict_names_at_most_a_hundred_failures_in_order():
    summary = DeleteSummary(failed={f"id-{i:03d}": "x" for i in range(150, 0, -1)})
    listed = summary.as_dict()
    assert listed["failed"] == 150
    assert listed["failed_ids"] == [f"id-{i:03d}" for i in range(1, 101)]
