"""asyncio's loop, uvloop and evloop side by side, interleaved, on the same
shapes of work.

    python python/benches/loops.py [--rounds 5] [--scale 1.0] [--only evloop,uvloop]

Each round runs every shape on every loop in turn (a fresh loop per run),
so that the machine's drift affects all alike. Reported per shape and loop:
the median wall time of the rounds with the spread (min-max), the median
CPU time of the process (all threads), the throughput, and evloop's
throughput relative to uvloop's and asyncio's. The "floor" column is the
Python code the shape itself runs, timed without any loop (the callbacks'
bodies, the coroutines' steps, the calls that schedule them): a cost no
loop can remove.
"""

import argparse
import asyncio
import concurrent.futures
import gc
import random
import statistics
import sys
import threading
import time

import evloop

try:
    import uvloop
except ImportError:  # the bench still compares asyncio and evloop
    uvloop = None


# ----- the shapes -------------------------------------------------------------
# Each takes a loop and the number of operations, runs to completion, and
# returns the number of operations it checked were done.


def call_soon_batched(loop, n):
    """A callback schedules n callbacks, which run in the next iteration."""
    count = [0]

    def cb():
        count[0] += 1

    def schedule():
        call_soon = loop.call_soon
        for _ in range(n):
            call_soon(cb)
        call_soon(loop.stop)

    loop.call_soon(schedule)
    loop.run_forever()
    return count[0]


def call_soon_chained(loop, n):
    left = [n]

    def cb():
        left[0] -= 1
        if left[0]:
            call_soon(cb)
        else:
            loop.stop()

    call_soon = loop.call_soon
    call_soon(cb)
    loop.run_forever()
    return n - left[0]


def call_later_half_cancelled(loop, n):
    rng = random.Random(7)
    fired = [0]
    pending = [n - n // 2]

    def cb():
        fired[0] += 1
        pending[0] -= 1
        if not pending[0]:
            loop.stop()

    handles = [loop.call_later(rng.random() * 0.01, cb) for _ in range(n)]
    for h in handles[::2]:
        h.cancel()
    loop.run_forever()
    return fired[0] * 2


def task_chain(loop, n):
    done = loop.create_future()

    async def step(left):
        if left:
            loop.create_task(step(left - 1))
        else:
            done.set_result(n)

    loop.create_task(step(n - 1))
    return loop.run_until_complete(done)


def call_soon_threadsafe(loop, n):
    count = [0]

    def cb():
        count[0] += 1

    def producer():
        post = loop.call_soon_threadsafe
        for _ in range(n):
            post(cb)
        post(loop.stop)

    t = threading.Thread(target=producer)
    loop.call_soon(t.start)
    loop.run_forever()
    t.join()
    return count[0]


def run_in_executor(loop, n):
    def job():
        return 1

    async def main():
        total = 0
        batch = 1000
        for start in range(0, n, batch):
            futs = [loop.run_in_executor(None, job) for _ in range(min(batch, n - start))]
            total += sum(await asyncio.gather(*futs))
        return total

    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())


def sleep0_ping_pong(loop, n):
    count = [0]

    async def player():
        for _ in range(n // 2):
            count[0] += 1
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(player(), player())

    loop.run_until_complete(main())
    return count[0]


SHAPES = [
    ("call_soon batched", call_soon_batched, 1_000_000),
    ("call_soon chained", call_soon_chained, 1_000_000),
    ("call_later, half cancelled", call_later_half_cancelled, 200_000),
    ("task chain", task_chain, 200_000),
    ("call_soon_threadsafe (other thread)", call_soon_threadsafe, 1_000_000),
    ("run_in_executor", run_in_executor, 100_000),
    ("sleep(0) ping-pong", sleep0_ping_pong, 200_000),
]


# ----- the floor: the shapes' own Python work, without a loop -----------------


def floor(name, n):
    """Seconds the shape's Python code takes with no loop: the callbacks'
    bodies and the calls that would schedule them (a call to a no-op
    builtin stands for the scheduling call), or the coroutines' steps."""
    count = [0]

    def cb():
        count[0] += 1

    schedule = id  # a builtin call, as cheap as a call can be
    t0 = time.perf_counter()
    if name in ("call_soon batched", "call_soon_threadsafe (other thread)"):
        for _ in range(n):
            schedule(cb)
        for _ in range(n):
            cb()
    elif name == "call_soon chained":
        left = [n]

        def chained():
            left[0] -= 1
            if left[0]:
                schedule(chained)

        for _ in range(n):
            chained()
    elif name == "call_later, half cancelled":
        rng = random.Random(7)
        for _ in range(n):
            schedule(rng.random() * 0.01)
        for _ in range(n // 2):
            cb()
    elif name == "task chain":

        async def step(left):
            if left:
                schedule(left)

        for i in range(n):
            coro = step(i)
            try:
                coro.send(None)
            except StopIteration:
                pass
    elif name == "run_in_executor":

        def job():
            return 1

        for _ in range(n):
            schedule(job)
            job()
    elif name == "sleep(0) ping-pong":

        async def player():
            for _ in range(n // 2):
                count[0] += 1
                await asyncio.sleep(0)

        for coro in (player(), player()):
            try:
                while True:
                    coro.send(None)
            except StopIteration:
                pass
    return time.perf_counter() - t0


# ----- running and reporting --------------------------------------------------


def factories(only):
    made = [("asyncio", asyncio.new_event_loop)]
    if uvloop is not None:
        made.append(("uvloop", uvloop.new_event_loop))
    made.append(("evloop", evloop.new_event_loop))
    if only:
        made = [(name, f) for name, f in made if name in only]
    return made


def measure(factory, shape, n):
    loop = factory()
    asyncio.set_event_loop(loop)
    try:
        gc.collect()
        gc.disable()
        c0, t0 = time.process_time(), time.perf_counter()
        done = shape(loop, n)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        gc.enable()
        asyncio.set_event_loop(None)
        loop.close()
    if done != n:
        raise AssertionError(f"{shape.__name__}: {done} of {n} done")
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every shape's operation count")
    parser.add_argument("--only", default="", help="comma-separated loop names")
    parser.add_argument("--shapes", default="", help="comma-separated substrings of shape names")
    args = parser.parse_args()
    loops = factories([x for x in args.only.split(",") if x])
    shapes = [(name, fn, max(2, int(n * args.scale))) for name, fn, n in SHAPES]
    if args.shapes:
        shapes = [s for s in shapes if any(part in s[0] for part in args.shapes.split(","))]
    results = {}  # (shape, loop) -> [(wall, cpu)]
    floors = {}
    for r in range(args.rounds):
        for name, fn, n in shapes:
            floors.setdefault(name, []).append(floor(name, n))
            # Rotated each round, so no loop always runs first or last.
            k = r % len(loops)
            for lname, factory in loops[k:] + loops[:k]:
                results.setdefault((name, lname), []).append(measure(factory, fn, n))
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)

    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds, median wall (min-max), median CPU;"
          f" uvloop {getattr(uvloop, '__version__', 'absent')}")
    print()
    head = ["shape", "ops"] + [f"{l} wall" for l, _ in loops] + [f"{l} CPU" for l, _ in loops]
    if any(l == "evloop" for l, _ in loops):
        if any(l == "uvloop" for l, _ in loops):
            head.append("evloop vs uvloop")
        head.append("evloop vs asyncio")
    head.append("floor (share of evloop)")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, _, n in shapes:
        row = [name, f"{n:,}"]
        med = {}
        for lname, _ in loops:
            walls = [w for w, _ in results[(name, lname)]]
            med[lname] = statistics.median(walls)
            row.append(f"{med[lname]:.3f} s ({min(walls):.3f}-{max(walls):.3f})")
        for lname, _ in loops:
            row.append(f"{statistics.median(c for _, c in results[(name, lname)]):.3f} s")
        if "evloop" in med:
            if "uvloop" in med:
                row.append(f"{med['uvloop'] / med['evloop']:.2f}x")
            if "asyncio" in med:
                row.append(f"{med['asyncio'] / med['evloop']:.2f}x")
        fl = statistics.median(floors[name])
        share = f" ({fl / med['evloop']:.0%})" if "evloop" in med else ""
        row.append(f"{fl:.3f} s{share}")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
