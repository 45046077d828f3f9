#!/usr/bin/env python3
"""Print the pinned requirements of pyproject.toml's extras, one a line (standard library only).

  requirements.py server         what `pip install '.[server]'` installs, without the project

The image installs these before it copies the code, so that the dependency
layer is rebuilt only when pyproject.toml changes, and the code is installed
once: at /app, not a second copy in site-packages. An extra that names the
project itself (`lubdub[client]`) is expanded in place.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SELF_REFERENCE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\[(?P<extras>[^\]]+)\]$")


def requirements(project: dict, extras: list[str]) -> list[str]:
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()
    pending = list(extras)
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"requirements.py: no extra {extra!r} in pyproject.toml")
        seen.add(extra)
        for line in optional[extra]:
            match = SELF_REFERENCE.match(line.replace(" ", ""))
            if match and match["name"] == name:
                pending.extend(part.strip() for part in match["extras"].split(","))
            elif line not in found:
                found.append(line)
    return found


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    for line in requirements(project, argv):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
