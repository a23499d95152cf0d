"""run_in_executor: CPU-bound and blocking work off the loop's thread while
a ticker keeps running on the loop."""

import asyncio
import concurrent.futures
import hashlib
import time

import evloop


def hash_many(seed, rounds):
    digest = seed
    for _ in range(rounds):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def blocking_io(seconds):
    time.sleep(seconds)
    return f"slept {seconds} s"


async def main():
    loop = asyncio.get_running_loop()
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    tick_task = asyncio.create_task(ticker())
    # The default executor (a ThreadPoolExecutor) and one of our own.
    slept = await loop.run_in_executor(None, blocking_io, 0.2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        digests = await asyncio.gather(*(loop.run_in_executor(pool, hash_many, bytes([i]), 20_000) for i in range(4)))
    tick_task.cancel()
    print(slept)
    print("digests:", ", ".join(digests))
    print(f"the loop ticked {ticks} times meanwhile")
    # The loop kept running while the pool worked.
    assert ticks >= 1, ticks
    return digests


if __name__ == "__main__":
    digests = evloop.run(main())
    assert digests == [hash_many(bytes([i]), 20_000) for i in range(4)]
