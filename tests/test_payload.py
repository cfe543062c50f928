"""A JSON payload field expanded into attributes: every key checked, nothing dropped silently."""

from __future__ import annotations

import textwrap

import pytest
from test_mapping import ACCOUNT

from airflow_provider_contactsync.core.errors import ConfigurationError, MappingError
from airflow_provider_contactsync.core.mapping import ContactMapper
from airflow_provider_contactsync.core.spec import parse_definition


def mapper(payload: str, *, mapping: str = "email: EMAIL", empty_attributes: bool = False) -> ContactMapper:
    text = textwrap.dedent(
        f"""\
        integration: crm
        source: {{name: customers, type: file, path: /data, fields: [email, first_name, traits]}}
        destination: {{list_ids: [2], empty_attributes: {str(empty_attributes).lower()}}}
        payload: {payload}
        mapping: {{{mapping}}}
        """
    )
    return ContactMapper(parse_definition(text), ACCOUNT)


def test_every_key_becomes_the_upper_cased_attribute_checked_by_its_type() -> None:
    contact, problems = mapper("{field: traits}").map_row(
        {"email": "a@x.io", "traits": {"firstname": "Ada", "dob": "1990-09-25", "score": "12.5", "vip": "yes"}}
    )
    assert problems == []
    assert contact == {"EMAIL": "a@x.io", "FIRSTNAME": "Ada", "DOB": "1990-09-25", "SCORE": 12.5, "VIP": True}


def test_json_text_and_lists_for_multiple_choice() -> None:
    contact, problems = mapper("{field: traits}").map_row(
        {"email": "a@x.io", "traits": '{"interests": ["running", "Cycling"], "gender": "women"}'}
    )
    assert problems == []
    assert (contact["INTERESTS"], contact["GENDER"]) == (["Running", "Cycling"], 2)


def test_a_bad_value_or_an_unknown_key_rejects_the_row_naming_the_key() -> None:
    _, problems = mapper("{field: traits}").map_row(
        {"email": "a@x.io", "traits": {"dob": "someday", "shoe_size": 42, "opens": 3}}
    )
    reasons = {p.field: p.reason for p in problems}
    assert reasons["traits.dob"].startswith("not a date")
    assert (
        reasons["traits.shoe_size"]
        == "payload key 'shoe_size': attribute SHOE_SIZE does not exist in the Brevo account"
    )
    assert "Brevo computes it" in reasons["traits.opens"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('{"firstname": ', "payload is not valid JSON"),
        ("[1, 2]", "payload is a list, not a JSON object"),
        (42, "payload is a int, not a JSON object"),
    ],
)
def test_a_payload_that_is_not_an_object_rejects_the_row(value: object, reason: str) -> None:
    _, problems = mapper("{field: traits}").map_row({"email": "a@x.io", "traits": value})
    assert [p.field for p in problems] == ["traits"] and problems[0].reason.startswith(reason)


def test_null_payloads_and_null_values() -> None:
    assert mapper("{field: traits}").map_row({"email": "a@x.io", "traits": None}) == ({"EMAIL": "a@x.io"}, [])
    assert mapper("{field: traits}").map_row({"email": "a@x.io", "traits": "null"}) == ({"EMAIL": "a@x.io"}, [])
    kept = mapper("{field: traits}").map_row({"email": "a@x.io", "traits": {"firstname": None}})
    erased = mapper("{field: traits}", empty_attributes=True).map_row(
        {"email": "a@x.io", "traits": {"firstname": None}}
    )
    assert kept == ({"EMAIL": "a@x.io"}, [])
    assert erased == ({"EMAIL": "a@x.io", "FIRSTNAME": ""}, [])


def test_mapping_wins_over_a_payload_key_and_identifiers_never_come_from_the_payload() -> None:
    contact, problems = mapper("{field: traits}", mapping="email: EMAIL, first_name: FIRSTNAME").map_row(
        {"email": "a@x.io", "first_name": "Mapped", "traits": {"firstname": "Payload", "sms": "+33612345678"}}
    )
    assert contact["FIRSTNAME"] == "Mapped"
    assert [p.field for p in problems] == ["traits.sms"] and "identifier" in problems[0].reason


def test_an_allow_list_expands_only_its_attributes_and_is_checked_against_the_account() -> None:
    contact, problems = mapper("{field: traits, attributes: [SCORE]}").map_row(
        {"email": "a@x.io", "traits": {"score": 3, "shoe_size": 42}}
    )
    assert (contact, problems) == ({"EMAIL": "a@x.io", "SCORE": 3.0}, [])
    with pytest.raises(MappingError, match="attribute SHOE_SIZE does not exist") as info:
        mapper("{field: traits, attributes: [SCORE, SHOE_SIZE]}")
    assert info.value.key_path == "payload.attributes"


def test_a_payload_field_that_is_not_read_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="payload.field: 'extras' is neither a source field"):
        mapper("{field: extras}")
    with pytest.raises(ConfigurationError, match="EMAIL is an identifier"):
        mapper("{field: traits, attributes: [EMAIL]}")


# -- hostile payloads: each rejects its row with a reason, never a crash (issue 11) --------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('{"firstname": ' + "[" * 10_000 + "]" * 10_000 + "}", "payload: JSON nested deeper than 64 levels"),
        ('{"a": ' * 65 + "1" + "}" * 65, "payload: JSON nested deeper than 64 levels"),
        ('{"score": ' + "9" * 5000 + "}", "payload is not valid JSON: a number of more than 4,300 digits"),
        ('{"firstname": "\\ud800"}', "payload: a lone surrogate escape in firstname"),
        (b'{"firstname": "\xff"}', "payload is not valid JSON: bytes that do not decode"),
        ("{\x00}", "payload is not valid JSON: Expecting property name"),
    ],
)
def test_hostile_payload_text_rejects_the_row_with_its_reason(value: object, reason: str) -> None:
    _, problems = mapper("{field: traits}").map_row({"email": "a@x.io", "traits": value})
    assert [p.field for p in problems] == ["traits"] and problems[0].reason.startswith(reason)
    assert len(str(problems[0].value)) <= 210  # a huge payload is not copied into the error report


def test_huge_numbers_in_a_payload_are_checked_like_any_value() -> None:
    contact, problems = mapper("{field: traits}").map_row(
        {"email": "a@x.io", "traits": '{"score": 1e999, "firstname": 1180591620717411303424}'}
    )
    assert [(p.field, p.reason) for p in problems] == [("traits.score", "not a finite number")]
    contact, problems = mapper("{field: traits}").map_row({"email": "a@x.io", "traits": {"score": 10**400}})
    assert [p.reason for p in problems] == ["not a finite number (too large for a float)"]


def test_a_payload_of_many_unknown_keys_names_twenty_and_stops() -> None:
    traits = {f"k{i}": i for i in range(100_000)}
    _, problems = mapper("{field: traits}").map_row({"email": "a@x.io", "traits": traits})
    assert len(problems) == 21
    assert problems[-1].reason == "and more payload keys not checked (the first 20 are shown)"


def test_the_json_depth_limit_is_raised_by_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    deep = '{"firstname": "Ada", "x": ' + "[" * 80 + "]" * 80 + "}"
    _, problems = mapper("{field: traits}").map_row({"email": "a@x.io", "traits": deep})
    assert "deeper than 64 levels" in problems[0].reason
    monkeypatch.setenv("CONTACTSYNC_MAX_JSON_DEPTH", "100")
    _, problems = mapper("{field: traits}").map_row({"email": "a@x.io", "traits": deep})
    assert [p.field for p in problems] == ["traits.x"]  # parsed: now only the unknown attribute X rejects it
