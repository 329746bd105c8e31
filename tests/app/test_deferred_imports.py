"""A deferred package (app/deferred_imports.py): its submodules import as usual, its own
`__init__` runs once, on the first read of a name only `__init__` defines."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.app.deferred_imports import DeferredInitFinder, defer_package_inits

NAME = "flowloom_deferred_probe"


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / NAME
    root.mkdir()
    (root / "__init__.py").write_text(
        "import builtins\n"
        "builtins.deferred_probe_runs = getattr(builtins, 'deferred_probe_runs', 0) + 1\n"
        f"from {NAME} import heavy\n"
        "VALUE = heavy.WEIGHT + 1\n")
    (root / "heavy.py").write_text("WEIGHT = 41\n")
    (root / "leaf.py").write_text("ALIAS = 'leaf'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = list(sys.meta_path)
    defer_package_inits(frozenset({NAME}))
    try:
        yield root
    finally:
        sys.meta_path[:] = before
        for name in [m for m in sys.modules if m.split(".")[0] == NAME]:
            del sys.modules[name]
        import builtins

        builtins.__dict__.pop("deferred_probe_runs", None)


def runs() -> int:
    import builtins

    return int(getattr(builtins, "deferred_probe_runs", 0))


def test_a_leaf_imports_without_its_package_init(package: Path) -> None:
    from flowloom_deferred_probe.leaf import ALIAS  # type: ignore[import-not-found]

    assert ALIAS == "leaf"
    assert runs() == 0 and f"{NAME}.heavy" not in sys.modules


def test_reading_the_package_runs_its_init_once(package: Path) -> None:
    import flowloom_deferred_probe.leaf  # type: ignore[import-not-found]  # noqa: F401
    from flowloom_deferred_probe import VALUE  # type: ignore[import-not-found]

    assert VALUE == 42
    assert runs() == 1 and f"{NAME}.heavy" in sys.modules
    module = sys.modules[NAME]
    assert module.VALUE == 42 and runs() == 1
    with pytest.raises(AttributeError):
        module.MISSING  # noqa: B018
    assert runs() == 1


def test_threads_reading_at_once_run_init_once(package: Path) -> None:
    import flowloom_deferred_probe as module  # type: ignore[import-not-found]

    values: list[int] = []
    threads = [threading.Thread(target=lambda: values.append(module.VALUE)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert values == [42] * 8 and runs() == 1


def test_installing_twice_adds_one_finder(package: Path) -> None:
    defer_package_inits(frozenset({NAME}))
    assert sum(isinstance(f, DeferredInitFinder) and f.names == {NAME}
               for f in sys.meta_path) == 1


def test_a_name_that_is_no_package_imports_as_usual(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "flowloom_deferred_single.py").write_text("VALUE = 7\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = list(sys.meta_path)
    defer_package_inits(frozenset({"flowloom_deferred_single"}))
    try:
        import flowloom_deferred_single  # type: ignore[import-not-found]

        assert flowloom_deferred_single.__dict__["VALUE"] == 7  # ran at import, not deferred
    finally:
        sys.meta_path[:] = before
        sys.modules.pop("flowloom_deferred_single", None)
