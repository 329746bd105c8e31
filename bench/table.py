"""The table every benchmark prints: measure, result, target."""

from __future__ import annotations


def print_table(rows: list[tuple[str, str, str]]) -> None:
    width = max(len(row[0]) for row in rows)
    result = max(10, *(len(row[1]) for row in rows))
    print(f"{'measure':<{width}}  {'result':>{result}}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>{result}}  {target}")
