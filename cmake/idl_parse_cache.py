"""Build-time only: one parse of each .idl file per build instead of one per rosidl generator.

Every rosidl generator of an interface build (type description, C, the C typesupports, Python)
parses every .idl file again with Lark's Earley parser: ~0.15 s per file, about half of each
generator's run, and the generators run one after the other. scripts/setup.sh sets
EVSE_CAN_ROS_IDL_CACHE (a folder) for its colcon builds, and a one-line .pth file that it puts in
the venv calls install() at the start of every Python process while that variable is set;
install() acts only in a process started as a rosidl generator. It wraps
``rosidl_parser.parser.parse_idl_string``: the parsed content is pickled under the sha256 of the
IDL text salted with the parser's own sources, and the next generator loads it instead of
parsing again.
A generator gets the same content as from a parse (test/test_build_helpers.py compares them),
so the code it writes is the same: a whole build with and without the cache wrote the same 481
files byte for byte (2026-12-01). Nothing of this runs outside those builds.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import tempfile
from collections.abc import Callable
from typing import Any

ENV = "EVSE_CAN_ROS_IDL_CACHE"


def cached(parse: Callable[..., Any], folder: str, salt: str) -> Callable[..., Any]:
    """``parse`` (rosidl_parser.parser.parse_idl_string) with a pickle cache in ``folder``."""

    def parse_idl_string(idl_string: str, png_file: str | None = None) -> Any:
        if png_file:
            return parse(idl_string, png_file=png_file)
        key = hashlib.sha256((salt + "\0" + idl_string).encode()).hexdigest()
        path = os.path.join(folder, key + ".pickle")
        try:
            with open(path, "rb") as f:
                return pickle.load(f)
        except (OSError, EOFError, pickle.UnpicklingError):
            pass
        content = parse(idl_string)
        os.makedirs(folder, exist_ok=True)
        # two generators run at once: write aside, then rename over (atomic)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(content, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        return content

    parse_idl_string.evse_can_ros_cached = True  # type: ignore[attr-defined]
    return parse_idl_string


def install() -> None:
    """Wrap the parser when this process is a rosidl generator and the cache folder is set."""
    folder = os.environ.get(ENV)
    if not folder or not os.path.basename(sys.argv[0] if sys.argv else "").startswith("rosidl_"):
        return
    from rosidl_parser import parser

    if getattr(parser.parse_idl_string, "evse_can_ros_cached", False):
        return
    # the salt: the parser's own sources and grammar (another rosidl_parser, another cache key)
    sources = hashlib.sha256(f"python {sys.version_info[:2]}".encode())
    here = os.path.dirname(parser.__file__)
    for name in ("parser.py", "definition.py", "grammar.lark"):
        with open(os.path.join(here, name), "rb") as f:
            sources.update(f.read())
    parser.parse_idl_string = cached(parser.parse_idl_string, folder, sources.hexdigest())
