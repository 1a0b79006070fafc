"""withlock beside filelock and fasteners, in one run, trials interleaved.

Two figures per library:

uncontended  acquire() + release() of a free lock, one lock object reused,
             in microseconds per pair (each trial times --pairs pairs).
handoff      the time from a holder's release to a blocked waiter's
             acquisition, in another process: the holder reads
             time.monotonic_ns() just before release(), the waiter just
             after acquire() returns (CLOCK_MONOTONIC is the same clock in
             every process).

A handoff trial: the holder process takes the lock and says "ready"; the
waiter process checks the lock is busy (one non-blocking try), says
"waiting" and calls the blocking acquire(). For withlock the benchmark then
also waits until the lock lists the waiter among its waiters (by its stamp,
taken once it has its place in the arrival queue, where it blocks in the
kernel). filelock and fasteners never block in the kernel: they poll with
non-blocking tries and sleeps, so there is nothing to wait for. For every library the holder is then told to release after a
random pause of 100-300 ms, so a polling waiter is caught at a random point
of its sleep, as it would be in real use.

Run with the virtualenv that python/scripts/test creates:

    target/python-venv/bin/python python/bench/bench.py
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Tuple

LIBRARIES = ["withlock", "filelock", "fasteners"]


# -- the libraries, behind one interface ------------------------------------


def make_lock(library: str, directory: str, name: str):
    """(acquire, release, try_once) for `library`'s lock `name`."""
    if library == "withlock":
        import withlock

        lock = withlock.lock(name, dir=directory)

        def try_once() -> bool:
            try:
                lock.acquire(timeout=0)
            except withlock.Busy:
                return False
            return True

        return lock.acquire, lock.release, try_once
    path = os.path.join(directory, f"{name}.lock")
    if library == "filelock":
        import filelock

        lock = filelock.FileLock(path)

        def try_once() -> bool:
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                return False
            return True

        return lock.acquire, lock.release, try_once
    if library == "fasteners":
        import fasteners

        lock = fasteners.InterProcessLock(path)
        return lock.acquire, lock.release, lambda: bool(lock.acquire(blocking=False))
    raise SystemExit(f"unknown library {library}")


# -- the two roles of a handoff trial, run as child processes ---------------


def role_hold(library: str, directory: str, name: str) -> None:
    acquire, release, _ = make_lock(library, directory, name)
    acquire()
    print("ready", flush=True)
    sys.stdin.readline()
    released_at = time.monotonic_ns()
    release()
    print(released_at, flush=True)


def role_wait(library: str, directory: str, name: str) -> None:
    acquire, release, try_once = make_lock(library, directory, name)
    if try_once():
        raise SystemExit("the lock was free: the holder is not holding it")
    print("waiting", flush=True)
    acquire()
    acquired_at = time.monotonic_ns()
    print(acquired_at, flush=True)
    release()


# -- measuring ---------------------------------------------------------------


def uncontended(library: str, directory: str, pairs: int) -> float:
    """Microseconds per acquire+release pair of a free lock."""
    acquire, release, _ = make_lock(library, directory, f"free-{library}")
    acquire()
    release()
    start = time.perf_counter_ns()
    for _ in range(pairs):
        acquire()
        release()
    return (time.perf_counter_ns() - start) / pairs / 1000


def listed_waiting(directory: str, name: str, pid: int) -> bool:
    """True when withlock lists process `pid` among the waiters for `name`:
    it has its place in the arrival queue and its stamp, and blocks in the
    kernel (fcntl(F_OFD_SETLKW) on the queue, or flock(2) past it)."""
    import withlock

    return any(w.pid == pid for w in withlock.lock(name, dir=directory).waiters())


def wait_until(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: gave up waiting for {what}")
        time.sleep(0.001)


def spawn(role: str, library: str, directory: str, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, __file__, role, library, directory, name],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def expect(proc: subprocess.Popen, line: str) -> None:
    got = proc.stdout.readline().strip()
    if got != line:
        raise SystemExit(f"benchmark: expected {line!r} from a {proc.args[2]} {proc.args[1]}, got {got!r}")


def handoff(library: str, directory: str, trial: int) -> float:
    """Microseconds from the holder's release to the waiter's acquisition."""
    name = f"h-{library}-{trial}"
    holder = spawn("hold", library, directory, name)
    expect(holder, "ready")
    waiter = spawn("wait", library, directory, name)
    expect(waiter, "waiting")
    if library == "withlock":
        wait_until("the waiter to block in the kernel", lambda: listed_waiting(directory, name, waiter.pid))
    time.sleep(random.uniform(0.1, 0.3))
    holder.stdin.write("go\n")
    holder.stdin.flush()
    released_at = int(holder.stdout.readline())
    acquired_at = int(waiter.stdout.readline())
    for proc in (holder, waiter):
        proc.stdin.close()
        if proc.wait(timeout=10) != 0:
            raise SystemExit(f"benchmark: a {library} {proc.args[2]} failed")
    return (acquired_at - released_at) / 1000


def rotated(trial: int) -> List[str]:
    """The libraries, starting with a different one each trial."""
    k = trial % len(LIBRARIES)
    return LIBRARIES[k:] + LIBRARIES[:k]


def percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="handoff trials and uncontended trials per library")
    parser.add_argument("--pairs", type=int, default=500, help="acquire+release pairs per uncontended trial")
    args = parser.parse_args()

    from importlib.metadata import version

    import filelock

    free: Dict[str, List[float]] = {lib: [] for lib in LIBRARIES}
    hand: Dict[str, List[float]] = {lib: [] for lib in LIBRARIES}
    with tempfile.TemporaryDirectory(prefix="withlock-bench-") as directory:
        for trial in range(args.trials):
            for library in rotated(trial):
                free[library].append(uncontended(library, directory, args.pairs))
        for trial in range(args.trials):
            print(f"handoff trial {trial + 1}/{args.trials}", file=sys.stderr, end="\r")
            for library in rotated(trial):
                hand[library].append(handoff(library, directory, trial))
        print(file=sys.stderr)

    rows: List[Tuple[str, str, Dict[str, List[float]]]] = [
        ("uncontended acquire+release (µs)", "free", free),
        ("handoff: release to waiter's acquire (µs)", "hand", hand),
    ]
    versions = {
        "withlock": version("withlock"),
        "filelock": filelock.__version__,
        "fasteners": version("fasteners"),
    }
    print(f"{args.trials} trials each, interleaved; Python {sys.version.split()[0]}; "
          + ", ".join(f"{lib} {versions[lib]}" for lib in LIBRARIES))
    print()
    header = f"{'figure':<44}{'library':<11}{'median':>11}{'p90':>11}{'× withlock':>12}"
    print(header)
    print("-" * len(header))
    for title, _, data in rows:
        base = statistics.median(data["withlock"])
        for library in LIBRARIES:
            med = statistics.median(data[library])
            print(f"{title:<44}{library:<11}{med:>11.1f}{percentile(data[library], 0.9):>11.1f}{med / base:>12.1f}")
            title = ""


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in ("hold", "wait"):
        role = role_hold if sys.argv[1] == "hold" else role_wait
        role(*sys.argv[2:5])
    else:
        main()
