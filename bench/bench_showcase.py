"""The logistic-regression showcase, end to end: `gradscope trace` against plain `python`.

    python bench/bench_showcase.py [--repeats 5]

Both are whole commands, as a user runs them (interpreter start, torch import, training,
and for gradscope writing trace.json, the report and the SVGs), interleaved; the ratio of
each pair is reported as a median. Also counts the files the traced run wrote.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "logistic_regression.py"


def timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        plain_cmd = [sys.executable, str(EXAMPLE), "--out", str(Path(tmp) / "plain.png")]
        traced_cmd = [sys.executable, "-m", "gradscope.cli", "trace", "-o", str(out), str(EXAMPLE),
                      "--out", str(Path(tmp) / "traced.png")]
        timed(plain_cmd, tmp)  # warm the file cache
        ratios, plains, traceds = [], [], []
        for i in range(args.repeats):
            pair = (timed(plain_cmd, tmp), timed(traced_cmd, tmp)) if i % 2 == 0 else \
                tuple(reversed((timed(traced_cmd, tmp), timed(plain_cmd, tmp))))
            plains.append(pair[0])
            traceds.append(pair[1])
            ratios.append(pair[1] / pair[0])
        files = sorted(p.name for p in out.iterdir())
    print(f"logistic regression: plain {statistics.median(plains):.2f} s, traced {statistics.median(traceds):.2f} s, "
          f"traced/plain {statistics.median(ratios):.2f} (median of {args.repeats})")
    print(f"files written by the traced run: {len(files)}: {', '.join(files)}")


if __name__ == "__main__":
    main()
