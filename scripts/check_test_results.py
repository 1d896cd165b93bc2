"""Read the JUnit reports of `make test` and fail unless every named pass ran and passed.

Prints one line per pass (`sqlite: 180 passed, 3 skipped`); exits 1 when a report is missing,
empty, or has failures or errors. Used by `.ci/run`.
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def summarise(path: Path) -> tuple[str, bool]:
    if not path.exists():
        return f"{path.stem}: did NOT run (no {path})", False
    suite = ET.parse(path).getroot()  # noqa: S314
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    tests, failures, errors, skipped = (
        int(suite.get(name, 0)) for name in ("tests", "failures", "errors", "skipped")
    )
    passed = tests - failures - errors - skipped
    line = f"{path.stem}: {passed} passed, {skipped} skipped, {failures} failed, {errors} errors"
    return line, tests > 0 and failures == 0 and errors == 0 and passed > 0


def main(paths: list[str]) -> int:
    ok = True
    for path in paths:
        line, passed = summarise(Path(path))
        print(line)
        ok &= passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
