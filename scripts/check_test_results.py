"""Read the JUnit reports of `make test` and fail unless every named pass ran and passed.

Prints one line per pass (`sqlite: 180 passed, 3 skipped; browser: 8 passed`); exits 1 when a
report is missing, empty, has failures or errors, or (with `--browser`) ran no browser test
of `tests/e2e/` or skipped one. Used by `.ci/run`.
"""

import argparse
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

BROWSER_TESTS = "tests.e2e."


def summarise(path: Path, *, browser: bool) -> tuple[str, bool]:
    if not path.exists():
        return f"{path.stem}: did NOT run (no {path})", False
    root = ET.parse(path).getroot()  # noqa: S314
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests, failures, errors, skipped = (
        int(suite.get(name, 0)) for name in ("tests", "failures", "errors", "skipped")
    )
    passed = tests - failures - errors - skipped
    line = f"{path.stem}: {passed} passed, {skipped} skipped, {failures} failed, {errors} errors"
    ok = tests > 0 and failures == 0 and errors == 0 and passed > 0
    if browser:
        cases = [
            case
            for case in suite.iter("testcase")
            if case.get("classname", "").startswith(BROWSER_TESTS)
        ]
        browser_passed = sum(1 for case in cases if len(case) == 0 or _only_output(case))
        line += f"; browser: {browser_passed} of {len(cases)} passed"
        ok &= bool(cases) and browser_passed == len(cases)
    return line, ok


def _only_output(case) -> bool:
    return all(child.tag in ("system-out", "system-err", "properties") for child in case)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", help="JUnit XML files written by pytest")
    parser.add_argument(
        "--browser", action="store_true", help="also require the browser tests to have passed"
    )
    args = parser.parse_args(argv)
    ok = True
    for path in args.reports:
        line, passed = summarise(Path(path), browser=args.browser)
        print(line)
        ok &= passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
