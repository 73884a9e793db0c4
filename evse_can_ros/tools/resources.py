"""Files the package ships outside Python: parameter files, launch files.

Installed to ``share/evse_can_ros/{config,launch}``; found through the ament index when the
package is installed, else in the source checkout (tests, development).
"""

from __future__ import annotations

from pathlib import Path

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def share_dir() -> Path | None:
    """Return the installed share directory, or None (no ament index / not installed)."""
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory("evse_can_ros"))
    except PackageNotFoundError:
        return None


def config_file(name: str) -> Path:
    """Path of ``config/<name>`` (FileNotFoundError with both places tried if missing)."""
    tried = []
    for root in (share_dir(), SOURCE_ROOT):
        if root is not None:
            candidate = root / "config" / name
            if candidate.is_file():
                return candidate
            tried.append(str(candidate))
    raise FileNotFoundError(f"config/{name} not found (tried {', '.join(tried)})")
