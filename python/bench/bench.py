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

The asyncio figures set withlock.async_lock beside filelock.AsyncFileLock
(the two libraries with an asyncio lock), in the same run:

async uncontended  await acquire() + await release() of a free lock, in
                   one event loop, microseconds per pair;
async handoff      as handoff, the waiter a task awaiting acquire() in an
                   event loop (withlock: in a helper thread blocked in the
                   kernel; AsyncFileLock: non-blocking tries in the loop's
                   executor and asyncio.sleep between them);
per waiting task   what --tasks tasks waiting at once in one process cost,
                   per task: threads, file descriptors and resident memory
                   (VmRSS) beside the same process before they waited.

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
ASYNC_LIBRARIES = ["withlock", "filelock"]


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


def make_async_lock(library: str, directory: str, name: str):
    """(acquire, release, try_once) for `library`'s asyncio lock `name`:
    acquire and release are coroutine functions, try_once a plain one."""
    if library == "withlock":
        import withlock

        alock = withlock.async_lock(name, dir=directory)
        sync_acquire, sync_release, try_once = make_lock(library, directory, name)

        def try_free() -> bool:
            free = try_once()
            if free:
                sync_release()
            return free

        return alock.acquire, alock.release, try_free
    if library == "filelock":
        import filelock

        path = os.path.join(directory, f"{name}.lock")
        flock = filelock.AsyncFileLock(path)

        def try_free() -> bool:
            probe = filelock.FileLock(path)
            try:
                probe.acquire(timeout=0)
            except filelock.Timeout:
                return False
            probe.release()
            return True

        async def acquire() -> None:
            await flock.acquire()

        return acquire, flock.release, try_free
    raise SystemExit(f"unknown asyncio library {library}")


# -- the roles of a handoff trial, run as child processes --------------------


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


def role_await(library: str, directory: str, name: str) -> None:
    import asyncio

    acquire, release, try_free = make_async_lock(library, directory, name)
    if try_free():
        raise SystemExit("the lock was free: the holder is not holding it")

    async def main() -> None:
        print("waiting", flush=True)
        await acquire()
        acquired_at = time.monotonic_ns()
        print(acquired_at, flush=True)
        await release()

    asyncio.run(main())


def proc_status() -> Tuple[int, int, int]:
    """(threads, open descriptors, resident kB) of this process."""
    fields = dict(
        line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
    )
    return (
        int(fields["Threads"]),
        len(os.listdir("/proc/self/fd")),
        int(fields["VmRSS"].split()[0]),
    )


def role_crowd(library: str, directory: str, name: str, tasks: str) -> None:
    """Starts `tasks` tasks waiting for `name` (held by the parent's holder
    process) and prints the cost per waiting task: threads, descriptors
    and kB of resident memory."""
    import asyncio

    count = int(tasks)

    async def main() -> None:
        # One lock of each kind taken and released first, so that what the
        # library loads or starts once is not counted per task.
        warm_acquire, warm_release, _ = make_async_lock(library, directory, "warm-" + name)
        await warm_acquire()
        await warm_release()
        before = proc_status()
        waiting = []
        for _ in range(count):
            acquire, _, _ = make_async_lock(library, directory, name)
            waiting.append(asyncio.ensure_future(acquire()))
        if library == "withlock":
            import withlock

            lock = withlock.lock(name, dir=directory)
            end = time.monotonic() + 30
            while len(stamps(lock.path)) < count:
                if time.monotonic() > end:
                    raise SystemExit("benchmark: the waiting tasks never all queued")
                await asyncio.sleep(0.01)
        else:
            # Polling waiters: let each make a few tries.
            await asyncio.sleep(0.5)
        after = proc_status()
        print(" ".join(f"{(a - b) / count:.3f}" for a, b in zip(after, before)), flush=True)
        for task in waiting:
            task.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)

    asyncio.run(main())


def stamps(path: str) -> List[str]:
    """This process's waiting stamps on `path` (exclusive waiters' write
    record locks at offsets of microseconds since the epoch)."""
    ino = f":{os.stat(path).st_ino}"
    pid = str(os.getpid())
    found = []
    for line in open("/proc/locks").read().splitlines():
        f = line.split()
        if len(f) > 7 and f[1] == "POSIX" and f[3] == "WRITE" and f[4] == pid and f[5].endswith(ino):
            if int(f[6]) >= 10**15:
                found.append(f[6])
    return found


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


def async_uncontended(library: str, directory: str, pairs: int) -> float:
    """Microseconds per await acquire() + await release() of a free lock."""
    import asyncio

    acquire, release, _ = make_async_lock(library, directory, f"afree-{library}")

    async def main() -> float:
        await acquire()
        await release()
        start = time.perf_counter_ns()
        for _ in range(pairs):
            await acquire()
            await release()
        return (time.perf_counter_ns() - start) / pairs / 1000

    return asyncio.run(main())


def crowd(library: str, directory: str, tasks: int) -> List[float]:
    """Per waiting task: threads, descriptors, kB resident."""
    name = f"crowd-{library}"
    holder = spawn("hold", library, directory, name)
    expect(holder, "ready")
    out = subprocess.run(
        [sys.executable, __file__, "crowd", library, directory, name, str(tasks)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    holder.stdin.write("go\n")
    holder.stdin.flush()
    holder.stdin.close()
    holder.wait(timeout=10)
    if out.returncode != 0:
        raise SystemExit(f"benchmark: the {library} crowd failed: {out.stderr}")
    return [float(x) for x in out.stdout.split()]


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


def handoff(library: str, directory: str, trial: int, waiting_role: str = "wait") -> float:
    """Microseconds from the holder's release to the waiter's acquisition."""
    name = f"h-{waiting_role}-{library}-{trial}"
    holder = spawn("hold", library, directory, name)
    expect(holder, "ready")
    waiter = spawn(waiting_role, library, directory, name)
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


def rotated(trial: int, libraries: List[str] = LIBRARIES) -> List[str]:
    """The libraries, starting with a different one each trial."""
    k = trial % len(libraries)
    return libraries[k:] + libraries[:k]


def percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=30, help="handoff trials and uncontended trials per library")
    parser.add_argument("--pairs", type=int, default=500, help="acquire+release pairs per uncontended trial")
    parser.add_argument("--tasks", type=int, default=100, help="waiting tasks for the per-task cost")
    args = parser.parse_args()

    from importlib.metadata import version

    import filelock

    free: Dict[str, List[float]] = {lib: [] for lib in LIBRARIES}
    hand: Dict[str, List[float]] = {lib: [] for lib in LIBRARIES}
    afree: Dict[str, List[float]] = {lib: [] for lib in ASYNC_LIBRARIES}
    ahand: Dict[str, List[float]] = {lib: [] for lib in ASYNC_LIBRARIES}
    with tempfile.TemporaryDirectory(prefix="withlock-bench-") as directory:
        for trial in range(args.trials):
            for library in rotated(trial):
                free[library].append(uncontended(library, directory, args.pairs))
        for trial in range(args.trials):
            print(f"handoff trial {trial + 1}/{args.trials}", file=sys.stderr, end="\r")
            for library in rotated(trial):
                hand[library].append(handoff(library, directory, trial))
        print(file=sys.stderr)
        for trial in range(args.trials):
            for library in rotated(trial, ASYNC_LIBRARIES):
                afree[library].append(async_uncontended(library, directory, args.pairs))
        for trial in range(args.trials):
            print(f"async handoff trial {trial + 1}/{args.trials}", file=sys.stderr, end="\r")
            for library in rotated(trial, ASYNC_LIBRARIES):
                ahand[library].append(handoff(library, directory, trial, "await"))
        print(file=sys.stderr)
        costs = {library: crowd(library, directory, args.tasks) for library in ASYNC_LIBRARIES}

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
    print()
    print("asyncio: withlock.async_lock beside filelock.AsyncFileLock")
    print(header)
    print("-" * len(header))
    arows = [
        ("async uncontended pair (µs)", afree),
        ("async handoff: release to task (µs)", ahand),
    ]
    for title, data in arows:
        base = statistics.median(data["withlock"])
        for library in ASYNC_LIBRARIES:
            med = statistics.median(data[library])
            print(f"{title:<44}{library:<11}{med:>11.1f}{percentile(data[library], 0.9):>11.1f}{med / base:>12.1f}")
            title = ""
    print()
    print(f"per waiting task, {args.tasks} tasks waiting at once in one process:")
    print(f"{'library':<11}{'threads':>10}{'fds':>10}{'RSS kB':>10}")
    for library in ASYNC_LIBRARIES:
        threads, fds, rss = costs[library]
        print(f"{library:<11}{threads:>10.2f}{fds:>10.2f}{rss:>10.1f}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] in ("hold", "wait", "await"):
        role = {"hold": role_hold, "wait": role_wait, "await": role_await}[sys.argv[1]]
        role(*sys.argv[2:5])
    elif len(sys.argv) == 6 and sys.argv[1] == "crowd":
        role_crowd(*sys.argv[2:6])
    else:
        main()
