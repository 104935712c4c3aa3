#!/usr/bin/env python3
"""Benchmark of the offline policy gate on the shipped prod stack (not a test; prints figures).

Measured in the same run, so the machine's noise hits both sides alike:
  baseline  `backupctl preview --no-policies`   (Python start, program on the mock engine, output)
  gated     `backupctl preview`                 (the same, plus the pack subprocess and the protocol)
  gate      the gate alone, in process: start the pack, Configure, Analyze x N, AnalyzeStack, stop
Prints the median of each over --runs, and gated/baseline. Target: gate under 3 s on 2 cores.

    .venv/bin/python bench/bench_policy_gate.py [--runs 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BACKUPCTL = [str(ROOT / "scripts" / "backupctl"), "preview"]


def timed_cli(*extra: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([*BACKUPCTL, *extra], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"backupctl preview {' '.join(extra)} exited {done.returncode}: "
                 f"{done.stderr.decode().strip().splitlines()[-1:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (default 5)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    from components.config import read_stack_file, stack_file
    from scripts.offline.engine import run_stack_program
    from scripts.offline.policy_gate import run_policy_gate

    raw = read_stack_file(stack_file("prod"))
    resources = run_stack_program(raw)

    baseline, gated, gate = [], [], []
    for i in range(args.runs):  # interleaved, so drift in machine load affects all three alike
        baseline.append(timed_cli("--no-policies"))
        gated.append(timed_cli())
        start = time.perf_counter()
        result = run_policy_gate(resources, raw)
        gate.append(time.perf_counter() - start)
        if result.violations:
            sys.exit(f"the shipped stack has {len(result.violations)} violation(s); fix them before timing")
        print(f"run {i + 1}/{args.runs}: baseline {baseline[-1]:.2f}s  gated {gated[-1]:.2f}s  "
              f"gate {gate[-1]:.2f}s", file=sys.stderr)

    b, g, p = statistics.median(baseline), statistics.median(gated), statistics.median(gate)
    print(f"prod stack: {len(resources)} resources, {args.runs} runs, medians")
    print(f"  preview --no-policies : {b:.2f} s  (baseline)")
    print(f"  preview (with gate)   : {g:.2f} s  ({g / b:.2f}x baseline, +{g - b:.2f} s)")
    print(f"  gate alone            : {p:.2f} s  (target < 3 s: {'met' if p < 3 else 'MISSED'})")
    return 0 if p < 3 else 1


if __name__ == "__main__":
    sys.exit(main())
