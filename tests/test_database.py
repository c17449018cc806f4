"""The query helpers the record modules build on."""

from storage.database import decode, encode, now, where


def test_where_joins_the_filters_that_apply():
    assert where() == ("", [])
    assert where(("tune_id = ?", None), None) == ("", [])
    assert where("model_type != 'checkpoint'", ("id < ?", 9), ("tune_id = ?", None)) == (
        "WHERE model_type != 'checkpoint' AND id < ?",
        [9],
    )
    # Falsy values other than None still filter.
    assert where(("public = ?", 0), ("class_name = ?", "")) == ("WHERE public = ? AND class_name = ?", [0, ""])


def test_json_columns_round_trip_and_other_columns_pass_through():
    record = {"args": {"steps": 5}, "warnings": [], "title": "Jane", "params": None}
    encoded = encode(record)
    assert encoded == {"args": '{"steps": 5}', "warnings": "[]", "title": "Jane", "params": None}
    assert decode(dict(encoded)) == record


def test_now_sorts_as_text_in_time_order():
    first, second = now(), now()
    assert first.endswith("Z") and len(first) == len("2026-01-01T00:00:00.000Z")
    assert first <= second
