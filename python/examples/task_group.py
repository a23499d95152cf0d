"""A task group under evloop.run: three workers fetch "pages" concurrently
(simulated with sleeps), a fourth times the whole thing out if it hangs."""

import asyncio
import time

import evloop


async def fetch(name, delay):
    await asyncio.sleep(delay)
    return f"{name}: {len(name) * 100} bytes"


async def main():
    started = time.monotonic()
    async with asyncio.timeout(5):
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(fetch(name, 0.05 * i)) for i, name in enumerate(["index", "about", "contact"], 1)]
    for task in tasks:
        print(task.result())
    elapsed = time.monotonic() - started
    # Concurrent: the slowest (0.15 s) sets the pace, not the sum (0.3 s).
    print(f"done in {elapsed:.2f} s on {type(asyncio.get_running_loop()).__name__}")
    return [t.result() for t in tasks]


if __name__ == "__main__":
    results = evloop.run(main())
    assert results == ["index: 500 bytes", "about: 500 bytes", "contact: 700 bytes"], results
