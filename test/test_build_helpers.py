"""The build helpers of scripts/setup.sh: the rosidl parse cache and the source links."""

from __future__ import annotations

import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CACHE = runpy.run_path(str(REPO / "cmake" / "idl_parse_cache.py"))
LINK_SCRIPT = REPO / "cmake" / "link_sources.cmake"


def _idl_files() -> list[Path]:
    from ament_index_python.packages import get_package_share_directory

    share = Path(get_package_share_directory("evse_can_ros"))
    files = sorted(share.glob("*/*.idl"))
    assert files, f"no .idl files in {share} (not built?)"
    return files


def _shape(value: Any) -> Any:
    """``value`` as plain nested tuples: class, attributes and items, all the way down."""
    if type(value) is object:  # an unset slot
        return ("unset",)
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return (type(value).__name__, value)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_shape(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, tuple(sorted(repr(_shape(v)) for v in value)))
    if isinstance(value, dict):
        return ("dict", tuple((_shape(k), _shape(v)) for k, v in value.items()))
    slots = [getattr(c, "__slots__", ()) for c in type(value).__mro__]
    names = {n for s in slots for n in ((s,) if isinstance(s, str) else s)}
    names |= set(getattr(value, "__dict__", {})) - {"__dict__", "__weakref__"}
    unset = object()
    return (
        type(value).__qualname__,
        tuple((n, _shape(getattr(value, n, unset))) for n in sorted(names - {"__dict__"})),
    )


def test_cached_parse_is_the_parse_and_parses_once(tmp_path: Path) -> None:
    from rosidl_parser import parser

    calls: list[str] = []

    def counting(idl: str, png_file: str | None = None) -> Any:
        calls.append(idl)
        return parser.parse_idl_string(idl, png_file=png_file)

    files = [f for f in _idl_files() if f.stem in ("CanFrame", "PowerModulesStatus", "Charge")]
    assert len(files) == 3
    first = CACHE["cached"](counting, str(tmp_path), "salt")
    second = CACHE["cached"](counting, str(tmp_path), "salt")  # another generator, same build
    for f in files:
        text = f.read_text(encoding="utf-8")
        fresh = _shape(parser.parse_idl_string(text))
        # the content a generator gets is the parse itself: same classes, attributes and values
        assert _shape(first(text)) == fresh
        assert _shape(second(text)) == fresh  # (loaded from the pickle)
    assert len(calls) == 3, "the second generator parsed again"
    assert len({repr(_shape(first(f.read_text(encoding="utf-8")))) for f in files}) == 3
    # another parser version (salt) parses again instead of reading the old pickles
    CACHE["cached"](counting, str(tmp_path), "other")(files[0].read_text(encoding="utf-8"))
    assert len(calls) == 4
    assert not list(tmp_path.glob("*.tmp"))


def test_the_cache_acts_only_in_a_rosidl_generator_with_the_folder_set(tmp_path: Path) -> None:
    code = (
        f"import runpy, sys; sys.argv[0] = {{argv0!r}}; "
        f"runpy.run_path({str(REPO / 'cmake' / 'idl_parse_cache.py')!r})['install'](); "
        "import rosidl_parser.parser as p; "
        "print(getattr(p.parse_idl_string, 'evse_can_ros_cached', False))"
    )

    def wrapped(argv0: str, folder: str | None) -> str:
        env = {k: v for k, v in os.environ.items() if k != CACHE["ENV"]}
        if folder:
            env[CACHE["ENV"]] = folder
        out = subprocess.run(
            [sys.executable, "-c", code.format(argv0=argv0)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout.strip()

    generator = "/venv/lib/rosidl_generator_c/rosidl_generator_c"
    assert wrapped(generator, str(tmp_path)) == "True"
    assert wrapped(generator, None) == "False"
    assert wrapped("/usr/bin/pytest", str(tmp_path)) == "False"


def _link(src: Path, dest: Path, except_: str = "") -> str:
    """Run cmake/link_sources.cmake; return what it printed ("Linking: ..." per new link)."""
    return subprocess.run(
        ["cmake", f"-D_evse_link_src={src}", f"-D_evse_link_dest={dest}",
         f"-D_evse_link_except={except_}", "-P", str(LINK_SCRIPT)],
        check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_source_links_replace_older_installs_and_never_write_through(tmp_path: Path) -> None:
    src, dest = tmp_path / "src", tmp_path / "install"
    (src / "core").mkdir(parents=True)
    (src / "core" / "a.py").write_text("A = 1\n")
    (src / "__init__.py").write_text("# ours\n")
    (src / "text.py").write_text("T = 1\n")
    (src / "__pycache__").mkdir()
    # an older --symlink-install layout: a real folder of per-file links, and a copied file
    (dest / "core").mkdir(parents=True)
    (dest / "core" / "a.py").symlink_to(src / "core" / "a.py")
    (dest / "text.py").write_text("stale copy\n")
    (dest / "__init__.py").write_text("# generated\n")

    _link(src, dest, except_="__init__.py")
    assert (dest / "core").is_symlink() and os.readlink(dest / "core") == str(src / "core")
    assert (dest / "text.py").is_symlink() and (dest / "text.py").read_text() == "T = 1\n"
    assert not (dest / "__init__.py").is_symlink(), "an excepted name was linked"
    assert not (dest / "__pycache__").exists()
    # the sources were not touched by the replacement of the older entries
    assert (src / "core" / "a.py").read_text() == "A = 1\n"
    assert (src / "__init__.py").read_text() == "# ours\n"

    # a new file in a linked folder is there at once; a re-run leaves the links as they are
    (src / "core" / "b.py").write_text("B = 1\n")
    assert (dest / "core" / "b.py").read_text() == "B = 1\n"
    assert "Linking" not in _link(src, dest, except_="__init__.py")
    # a link to somewhere else is re-pointed (the link is removed, never its target)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.py").write_text("K = 1\n")
    (dest / "core").unlink()
    (dest / "core").symlink_to(other)
    _link(src, dest, except_="__init__.py")
    assert os.readlink(dest / "core") == str(src / "core")
    assert (other / "keep.py").read_text() == "K = 1\n"

    # a destination folder that is itself a link (to the sources) becomes a real folder of links
    share = tmp_path / "share"
    share.symlink_to(src / "core")
    _link(src / "core", share)
    assert not share.is_symlink() and sorted(p.name for p in share.iterdir()) == ["a.py", "b.py"]
    assert sorted(p.name for p in (src / "core").iterdir()) == ["a.py", "b.py"]
