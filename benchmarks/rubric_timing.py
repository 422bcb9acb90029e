"""
Title: Do the rubric's timing lines give the right verdict on a busy machine?
Description: Runs `python assignment_wildlife.py --check` (probe, quick training run, rubric)
    several times, each with busy loops beside it (`yes > /dev/null`), and prints, per run,
    the two lines measured with a clock: the optimized pipeline's speed-up over the
    augmentation pipeline (both pipelines alone, medians of interleaved epochs) and the
    optimized trainer's input wait after epoch 1; then their spread, from which the
    thresholds in common/assignment_check/rubric.py are set. --script checks another
    solution instead of the reference (say, one without parallel calls, cache or prefetch).
Run: python benchmarks/rubric_timing.py --runs 10 --busy 2

Measured on 2 CPU cores (AMD EPYC without AVX-512), the stand-in, --check's settings (300
photos, 3 epochs), with --timing-only and two busy loops:

| solution | machine | runs | speed-up min / median / max | input wait, epochs 2-3 | timing lines pass | one run |
| --- | --- | ---: | --- | --- | --- | --- |
| the reference | two busy loops beside it | 10 | 4.2 / 5.6 / 6.8x | 3.7-5.1% | 10 of 10 | 168-190 s |
| TODO 3 without parallel, cache, prefetch | two busy loops beside it | 1 | 2.2x | 15.8% | both fail | 195 s |

(the second: tests/scripts/test_assignment.py's UNOPTIMIZED TODO 3 written into the
reference, run with --script). Thresholds in common/assignment_check/rubric.py.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from common import assignment_check  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--runs", type=int, default=10, help="--check runs (default: 10)")
parser.add_argument("--busy", type=int, default=2, help="busy loops beside each run (default: 2)")
parser.add_argument("--script", type=Path, default=REPO_ROOT / "assignment_wildlife.py",
                    help="the solution to check (default: the reference); it runs from its own folder")
parser.add_argument("--timing-only", action="store_true",
                    help="only what the two timing lines measure: the probe, then the optimized pipeline's "
                         "quick run (about 40%% less time than --check; the other lines are not graded)")
parser.add_argument("--out", type=Path, default=Path("outputs/rubric_timing"), help="where the runs write")
config = parser.parse_args()

rows = []
for number in range(1, config.runs + 1):
    out = (config.out / f"run{number}").resolve()
    busy = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(config.busy)]
    start = time.perf_counter()
    try:
        if config.timing_only:  # the two commands of --check, the second with one pipeline
            quick = [sys.executable, config.script.name, *assignment_check.QUICK_FLAGS, "--data", "standin", "--fresh"]
            for command in ([*quick, "--probe", "--out", str(out / "probe")],
                            [*quick, "--pipelines", "optimized", "--out", str(out)]):
                result = subprocess.run(command, cwd=config.script.parent, capture_output=True, text=True)
        else:
            result = subprocess.run([sys.executable, config.script.name, "--check", "--out", str(out)],
                                    cwd=config.script.parent, capture_output=True, text=True)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    seconds = time.perf_counter() - start
    lines = {line.id: line for line in assignment_check.grade(out)}
    speed, wait = lines.get("todo3.speed"), lines.get("run.input_wait")
    failed = sorted(line_id for line_id, line in lines.items() if line.status == "FAIL"
                    and (not config.timing_only or line_id in ("todo3.speed", "run.input_wait")))
    row = {"run": number, "seconds": round(seconds), "exit": result.returncode,
           "speedup": float(speed.measured.split("x")[0]) if speed and "x:" in speed.measured else None,
           "speed": speed.status if speed else "-",
           "wait_percent": float(wait.measured.split("%")[0]) if wait and "%" in wait.measured else None,
           "wait": wait.status if wait else "-", "failed": failed}
    rows.append(row)
    print(json.dumps(row), flush=True)

print(f"\n{'run':>3} {'s':>5} {'speed-up':>9} {'':4} {'wait %':>7} {'':4} failed lines")
for row in rows:
    speedup = f"{row['speedup']:.1f}x" if row["speedup"] is not None else "-"
    wait = f"{row['wait_percent']:.1f}" if row["wait_percent"] is not None else "-"
    print(f"{row['run']:>3} {row['seconds']:>5} {speedup:>9} {row['speed']:4} {wait:>7} {row['wait']:4} "
          f"{', '.join(row['failed']) or 'none'}")
for key, label in (("speedup", "speed-up"), ("wait_percent", "input wait %")):
    values = [row[key] for row in rows if row[key] is not None]
    if values:
        print(f"{label}: min {min(values):.1f}, median {statistics.median(values):.1f}, max {max(values):.1f}")
print(f"all lines pass in {sum(not row['failed'] for row in rows)} of {len(rows)} runs "
      f"({config.busy} busy loops, {config.script.name})")
