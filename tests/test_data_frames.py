"""Tables: CSV/JSON round trips, validation errors, numeric summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attnlib.data.frames import (
    DataValidationError,
    load_frame,
    numeric_summary,
    save_frame,
    validate_dataframe,
)

SCHEMA = {"id": "int", "text": "str", "score": "float", "ok": "bool", "when": "datetime"}


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [0, 1, 2, 3],
            "text": ["good", "007", "12", "not bad, really"],  # digits stay text
            "score": [0.5, -1.25, 3.0, 2.125],
            "ok": [True, False, True, True],
            "when": pd.to_datetime(
                ["2024-01-01", "2024-01-02 10:30", "2024-02-01", "2025-01-01"], format="ISO8601"
            ).astype("datetime64[ns]"),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_round_trip(frame, tmp_path, suffix):
    path = save_frame(frame, tmp_path / f"t{suffix}")
    back = load_frame(path, SCHEMA)
    validate_dataframe(back, SCHEMA)
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    assert back["when"].dtype == "datetime64[ns]"
    assert back["text"].tolist() == ["good", "007", "12", "not bad, really"]
    assert str(back["when"].dtype).startswith("datetime64")


def test_format_argument_and_suffix_errors(frame, tmp_path):
    path = save_frame(frame, tmp_path / "t.data", format="json")
    assert load_frame(path, SCHEMA, format="json").shape == frame.shape
    with pytest.raises(ValueError, match=r"path: expected a file name ending in \.csv or \.json"):
        save_frame(frame, tmp_path / "t.txt")
    with pytest.raises(ValueError, match="format: expected 'csv' or 'json', got 'xml'"):
        save_frame(frame, tmp_path / "t.csv", format="xml")


def test_malformed_csv_names_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,text\n0,a\n1,b,extra,fields\n2,c\n")
    with pytest.raises(ValueError, match=r"path: malformed CSV file .*bad\.csv.*line 3"):
        load_frame(path)


def test_malformed_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"id": 0,]')
    with pytest.raises(ValueError, match=r"path: malformed JSON file .*bad\.json"):
        load_frame(path)


def test_valid_frame_passes_and_chains(frame):
    assert validate_dataframe(frame, SCHEMA) is frame


def test_missing_column(frame):
    with pytest.raises(DataValidationError, match=r"missing column\(s\) \['score'\]"):
        validate_dataframe(frame.drop(columns="score"), SCHEMA)


def test_wrong_dtype_names_column_and_rows(frame):
    frame["score"] = frame["score"].astype(object)
    frame.loc[2, "score"] = "high"
    with pytest.raises(DataValidationError) as err:
        validate_dataframe(frame, SCHEMA)
    msg = str(err.value)
    assert "column 'score': expected float values" in msg
    assert "'high'" in msg and "rows [2]" in msg


def test_int_column_with_fractions(frame):
    frame["id"] = [0.0, 1.5, 2.0, 3.0]
    with pytest.raises(DataValidationError, match=r"column 'id': expected int values.*rows \[1\]"):
        validate_dataframe(frame, SCHEMA)


def test_duplicate_id(frame):
    frame.loc[3, "id"] = 1
    with pytest.raises(DataValidationError) as err:
        validate_dataframe(frame, SCHEMA)
    assert "column 'id' (primary key): duplicate value(s) [1] in rows [1, 3]" in str(err.value)


def test_missing_value_in_required_field(frame):
    frame.loc[[0, 2], "text"] = None
    with pytest.raises(DataValidationError) as err:
        validate_dataframe(frame, SCHEMA)
    assert "column 'text': 2 missing value(s) in a required field, rows [0, 2]" in str(err.value)
    # not required: accepted
    validate_dataframe(frame, SCHEMA, required=["id"])


def test_every_problem_is_reported_at_once(frame):
    frame.loc[3, "id"] = 0
    frame.loc[1, "text"] = np.nan
    with pytest.raises(DataValidationError) as err:
        validate_dataframe(frame.drop(columns="ok"), SCHEMA)
    assert len(err.value.problems) == 3


def test_bad_schema_and_arguments(frame):
    with pytest.raises(ValueError, match=r"schema\['x'\]: expected one of"):
        validate_dataframe(frame, {"x": "complex"})
    with pytest.raises(TypeError, match="df: expected a pandas.DataFrame, got dict"):
        validate_dataframe({}, SCHEMA)


def test_numeric_summary(frame):
    table = numeric_summary(frame)
    assert list(table.index) == ["id", "score"]  # booleans and dates excluded
    assert table.loc["score", "mean"] == pytest.approx(np.mean([0.5, -1.25, 3.0, 2.125]))
    assert table.loc["score", "std"] == pytest.approx(np.std([0.5, -1.25, 3.0, 2.125], ddof=1))
    assert table.loc["id", "max"] == 3
    with pytest.raises(ValueError, match="df: expected at least one numeric column"):
        numeric_summary(frame[["text"]])


def test_digit_strings_are_not_numbers(frame):
    frame["score"] = ["0.5", "1", "2", "3"]
    frame["id"] = ["0", "1", "2", "3"]
    with pytest.raises(DataValidationError) as err:
        validate_dataframe(frame, SCHEMA)
    assert "column 'id': expected int values" in str(err.value)
    assert "column 'score': expected float values" in str(err.value)


def test_dates_come_back_in_nanoseconds(frame, tmp_path):
    for suffix in (".csv", ".json"):
        back = load_frame(save_frame(frame, tmp_path / f"t{suffix}"), SCHEMA)
        assert back["when"].dtype == frame["when"].dtype == "datetime64[ns]"


def test_json_round_trip_is_bit_exact(tmp_path):
    from attnlib.data.synthetic import generate_synthetic_data

    df = generate_synthetic_data(500, 100, 10, seed=1)
    schema = {"id": "int", "tokens": "str", "length": "int", "score": "float",
              "category": "str", "timestamp": "datetime"}  # fmt: skip
    for suffix in (".csv", ".json"):
        back = load_frame(save_frame(df, tmp_path / f"d{suffix}"), schema)
        pd.testing.assert_frame_equal(back, df, check_exact=True)
