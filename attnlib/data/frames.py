"""Tables on disk and their validation: save and load as CSV or JSON, check
columns, types, keys and missing values, summarise numeric columns.

A *schema* is a plain ``dict`` from column name to the kind of values it must
hold: ``"int"``, ``"float"``, ``"str"``, ``"bool"`` or ``"datetime"``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

__all__ = [
    "DataValidationError",
    "KINDS",
    "save_frame",
    "load_frame",
    "validate_dataframe",
    "numeric_summary",
]

#: The kinds of values a schema can ask for.
KINDS = ("int", "float", "str", "bool", "datetime")
_FORMATS = {".csv": "csv", ".json": "json"}
_MAX_ROWS_SHOWN = 10


class DataValidationError(ValueError):
    """A table does not match its schema. ``problems`` lists every problem found,
    one message each, naming the column and the offending rows."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            f"{len(problems)} problem(s) in the table:\n" + "\n".join(f"- {p}" for p in problems)
        )


def _format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in _FORMATS.values():
            raise ValueError(f"format: expected 'csv' or 'json', got {format!r}")
        return format
    try:
        return _FORMATS[path.suffix.lower()]
    except KeyError:
        raise ValueError(
            f"path: expected a file name ending in .csv or .json (or pass format=), got {path}"
        ) from None


def save_frame(df: pd.DataFrame, path: str | Path, *, format: str | None = None) -> Path:
    """Write ``df`` as CSV (no index) or JSON (a list of records, ISO dates).

    The format follows the file name's suffix unless ``format`` is given.
    Returns the path written.
    """
    path = Path(path)
    if _format(path, format) == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_json(path, orient="records", date_format="iso", indent=1)
    return path


def load_frame(
    path: str | Path, schema: Mapping[str, str] | None = None, *, format: str | None = None
) -> pd.DataFrame:
    """Read a table written by :func:`save_frame` (or any CSV / JSON records file).

    With a ``schema``, its string columns are read as strings (so ``"007"`` or
    ``"12"`` stay text) and its datetime columns are parsed; check the result
    with :func:`validate_dataframe`.

    Raises
    ------
    ValueError
        When the file is not well-formed CSV or JSON: the message names the
        file and, for CSV, the line.
    """
    path = Path(path)
    kind = _format(path, format)
    schema = dict(schema or {})
    strings = {c: str for c, k in schema.items() if k == "str"}
    dates = [c for c, k in schema.items() if k == "datetime"]
    try:
        if kind == "csv":
            df = pd.read_csv(path, dtype=strings, keep_default_na=True)
        else:
            df = pd.read_json(path, orient="records", dtype=strings or True, precise_float=True)
    except (pd.errors.ParserError, ValueError) as err:
        raise ValueError(f"path: malformed {kind.upper()} file {path}: {err}") from None
    for col in dates:
        if col in df:
            parsed = pd.to_datetime(df[col], errors="coerce", format="ISO8601")
            if not getattr(parsed.dt, "tz", None):
                parsed = parsed.astype("datetime64[ns]")  # pandas 3 may read microseconds
            # leave unparseable values for validate_dataframe to report
            if parsed.notna().sum() == df[col].notna().sum():
                df[col] = parsed
    return df


def _rows(index: Sequence) -> str:
    shown = ", ".join(str(i) for i in list(index)[:_MAX_ROWS_SHOWN])
    more = len(index) - _MAX_ROWS_SHOWN
    return f"[{shown}{f', ... ({more} more)' if more > 0 else ''}]"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_)


def _bad_values(col: pd.Series, kind: str) -> pd.Index:
    """Index of the non-missing values of ``col`` that are not of ``kind``."""
    values = col.dropna()
    if kind in ("int", "float"):
        if kind == "int" and ptypes.is_integer_dtype(col) and not ptypes.is_bool_dtype(col):
            return pd.Index([])
        if kind == "float" and ptypes.is_numeric_dtype(col) and not ptypes.is_bool_dtype(col):
            return pd.Index([])
        # numbers only: a digit string ("7") is text, not a number
        bad = ~values.map(_is_number).astype(bool)
        if kind == "int":
            bad |= values.map(lambda v: _is_number(v) and float(v) != round(float(v))).astype(bool)
    elif kind == "str":
        bad = ~values.map(lambda v: isinstance(v, str))
    elif kind == "bool":
        if ptypes.is_bool_dtype(col):
            return pd.Index([])
        bad = ~values.map(lambda v: isinstance(v, bool) or v in (0, 1))
    else:  # datetime
        if ptypes.is_datetime64_any_dtype(col):
            return pd.Index([])
        bad = pd.to_datetime(values, errors="coerce").isna()
    return values.index[bad.to_numpy(dtype=bool)]


def validate_dataframe(
    df: pd.DataFrame,
    schema: Mapping[str, str],
    *,
    key: str | None = "id",
    required: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Check that ``df`` has the expected columns, value kinds, a unique primary
    key and no missing values in required fields.

    Every problem is collected before raising, so one run shows them all.

    Parameters
    ----------
    df : pandas.DataFrame
    schema : dict
        Column name to kind, one of :data:`KINDS`.
    key : str, optional
        The primary-key column: no duplicates, no missing values.
    required : sequence of str, optional
        Columns that may not have missing values (default: every column of
        the schema).

    Returns
    -------
    pandas.DataFrame
        ``df`` itself, so that calls chain.

    Raises
    ------
    DataValidationError
        Naming each offending column and the rows (index labels) at fault.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df: expected a pandas.DataFrame, got {type(df).__name__}")
    for col, kind in schema.items():
        if kind not in KINDS:
            raise ValueError(f"schema[{col!r}]: expected one of {KINDS}, got {kind!r}")
    required = list(schema) if required is None else list(required)
    problems = []
    missing_cols = [c for c in schema if c not in df.columns]
    if key is not None and key not in schema and key not in df.columns:
        missing_cols.append(key)
    if missing_cols:
        problems.append(f"missing column(s) {missing_cols}; the table has {list(df.columns)}")
    for col, kind in schema.items():
        if col not in df.columns:
            continue
        bad = _bad_values(df[col], kind)
        if len(bad):
            examples = ", ".join(repr(v) for v in df.loc[bad[:3], col])
            problems.append(
                f"column {col!r}: expected {kind} values, got dtype {df[col].dtype} "
                f"with {len(bad)} bad value(s) ({examples}) in rows {_rows(bad)}"
            )
    for col in dict.fromkeys(required + ([key] if key else [])):
        if col in df.columns:
            nulls = df.index[df[col].isna().to_numpy()]
            if len(nulls):
                problems.append(
                    f"column {col!r}: {len(nulls)} missing value(s) in a required field, "
                    f"rows {_rows(nulls)}"
                )
    if key is not None and key in df.columns:
        dup = df[key].duplicated(keep=False) & df[key].notna()
        if dup.any():
            values = sorted(set(df.loc[dup, key].tolist()), key=str)
            problems.append(
                f"column {key!r} (primary key): duplicate value(s) {values[:_MAX_ROWS_SHOWN]} "
                f"in rows {_rows(df.index[dup.to_numpy()])}"
            )
    if problems:
        raise DataValidationError(problems)
    return df


def numeric_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Count, mean, standard deviation, min, quartiles and max of every numeric
    column (booleans excluded), one row per column."""
    numeric = df.select_dtypes("number").select_dtypes(exclude="bool")
    if numeric.shape[1] == 0:
        raise ValueError(f"df: expected at least one numeric column, got {list(df.dtypes)}")
    return numeric.describe().T
