#!/usr/bin/env python3
"""Type check src/ with mypy against a committed per-file baseline that can only shrink.

    python .ci/mypy_check.py            # fail if any file has more mypy errors than .ci/mypy-baseline.json allows
    python .ci/mypy_check.py --update   # after fixing errors (or moving a file): write the lower counts back

mypy's settings live in pyproject.toml ([tool.mypy]). The baseline counts errors per file, not per line, so edits
elsewhere in a file do not break the check. A file with fewer errors than its baseline passes and the check says to
lower the baseline. Files that are not in the baseline may have as many errors together as the baseline's files that
no longer exist (a moved or renamed file keeps its allowance until --update). --update refuses to raise any file's
count or the total.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE = ROOT / ".ci" / "mypy-baseline.json"
ERROR = re.compile(r"^(?P<path>[^:\s][^:]*\.pyi?):\d+(?::\d+)?: error: ")


def run_mypy() -> tuple[Counter[str], str]:
    """mypy's error count per file, and its output."""
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-error-summary", "--no-pretty"], cwd=ROOT,
                         capture_output=True, text=True)
    counts: Counter[str] = Counter()
    for line in out.stdout.splitlines():
        if m := ERROR.match(line):
            counts[Path(m["path"]).as_posix()] += 1
    if out.returncode not in (0, 1) or (out.returncode == 1) != bool(counts):
        sys.exit(f"mypy failed to run (exit {out.returncode}):\n{out.stdout}{out.stderr}")
    return counts, out.stdout


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true", help="write the (lower) current counts to the baseline")
    args = parser.parse_args(argv)
    baseline: dict[str, int] = json.loads(BASELINE.read_text()) if BASELINE.is_file() else {}
    counts, output = run_mypy()
    total, allowed = sum(counts.values()), sum(baseline.values())
    grew = {f: n for f, n in counts.items() if f in baseline and n > baseline[f]}
    new = {f: n for f, n in counts.items() if f not in baseline}
    gone = {f: n for f, n in baseline.items() if not (ROOT / f).exists()}  # moved or deleted: their allowance
    better = {f: n for f, n in baseline.items() if counts.get(f, 0) < n}  # passes on to new files

    if args.update:
        if BASELINE.is_file() and (grew or total > allowed):
            print(output, end="")
            print(f"refusing to raise the baseline: {total} errors against {allowed} allowed; files that grew: "
                  + (", ".join(f"{f} {baseline[f]} -> {n}" for f, n in sorted(grew.items())) or "none"))
            return 1
        BASELINE.write_text(json.dumps(dict(sorted(counts.items())), indent=1) + "\n")
        print(f"mypy baseline: {allowed} -> {total} errors in {len(counts)} files ({BASELINE.relative_to(ROOT)})")
        return 0

    if grew or sum(new.values()) > sum(gone.values()):
        worse = {**grew, **new} if sum(new.values()) > sum(gone.values()) else grew
        print("\n".join(line for line in output.splitlines()
                        if (m := ERROR.match(line)) and Path(m["path"]).as_posix() in worse))
        print("\nmypy: more errors than the baseline (.ci/mypy-baseline.json) allows:")
        for f, n in sorted(grew.items()):
            print(f"  {f}: {n} (baseline {baseline[f]})")
        if sum(new.values()) > sum(gone.values()):
            print(f"  files not in the baseline: {sum(new.values())} errors in {', '.join(sorted(new))}; the "
                  f"baseline's files that no longer exist allow {sum(gone.values())}")
        print("Fix them (the errors of those files are listed above). After splitting a file, run "
              "`python .ci/mypy_check.py --update`: it accepts the new layout when no file grew and the total "
              f"({total}) is no higher than the baseline's ({allowed}).")
        return 1
    print(f"mypy: {total} errors in {len(counts)} files, none above the baseline ({allowed})"
          + (f"; {sum(new.values())} in moved files, within the allowance of the {len(gone)} gone" if new else ""))
    if better or gone:
        print(f"  {len(better)} files are below their baseline: lower it with `python .ci/mypy_check.py --update` "
              "and commit .ci/mypy-baseline.json")
    return 0

if __name__ == "__main__":
    sys.exit(main())
