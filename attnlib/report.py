"""Key figures: the numbers a tutorial's claims rest on, printed and recorded.

A tutorial calls :func:`key_figure` for each number its prose points at
("the test accuracy printed above"). The number is printed, so the reader
sees it in the page, and, when ``$ATTNLIB_KEY_FIGURES`` names a file, it is
appended there as one JSON line. The robustness matrix
(``nox -s gallery-matrix``) sets that variable for every run and publishes
the spread of each key figure over seeds and thread counts on the page
"How the claims are checked".
"""

from __future__ import annotations

import json
import math
import numbers
import os

__all__ = ["KEY_FIGURES_ENV", "key_figure"]

KEY_FIGURES_ENV = "ATTNLIB_KEY_FIGURES"
"""The environment variable naming the file that key figures are appended to."""


def key_figure(name: str, value: float, *, fmt: str = "{:.3f}", show: bool = True) -> float:
    """Print a key figure and record it for the robustness matrix.

    Parameters
    ----------
    name : str
        What the number is, as the matrix's table shows it
        ("test accuracy, local-m"). Unique within a tutorial.
    value : float
        A real number (a Python number, NumPy scalar or one-element tensor).
    fmt : str
        How to print it.
    show : bool
        Print ``name: value`` (default); pass False when the tutorial prints
        the number itself, in a table or a sentence.

    Returns
    -------
    float
        ``value`` as a Python float, so that the call can stand in an
        expression: ``acc = key_figure("accuracy", acc)``.

    Raises
    ------
    TypeError
        If ``name`` is not a non-empty string or ``value`` is not a real number.
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    given = value
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()  # NumPy scalars and one-element tensors
        except (ValueError, RuntimeError):  # more than one element
            pass
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"value of key figure {name!r} must be a real number, got {given!r}")
    value = float(value)
    if show:
        print(f"{name}: {fmt.format(value)}")
    path = os.environ.get(KEY_FIGURES_ENV)
    if path:
        record = {"name": name, "value": value if math.isfinite(value) else str(value)}
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")
    return value
