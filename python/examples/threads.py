"""A loop per thread, with work posted between them: each of four threads
runs its own evloop loop; a counter is passed around the ring of loops
with call_soon_threadsafe, each hop running on the next loop's thread,
and the last hop stops every loop."""

import asyncio
import threading

import evloop

N_THREADS = 4
HOPS = 1000


def main():
    loops = []
    ready = threading.Barrier(N_THREADS + 1, timeout=30)
    counts = [0] * N_THREADS
    wrong_thread = []

    def serve(index):
        loop = evloop.new_event_loop()
        asyncio.set_event_loop(loop)
        loops.append((index, loop))
        ready.wait()
        try:
            loop.run_forever()
        finally:
            loop.close()

    threads = [threading.Thread(target=serve, args=(i,), name=f"loop-{i}") for i in range(N_THREADS)]
    for t in threads:
        t.start()
    ready.wait()
    by_index = dict(loops)

    def hop(index, left):
        counts[index] += 1
        if threading.current_thread().name != f"loop-{index}":
            wrong_thread.append(index)
        if left == 0:
            for loop in by_index.values():
                loop.call_soon_threadsafe(loop.stop)
            return
        nxt = (index + 1) % N_THREADS
        by_index[nxt].call_soon_threadsafe(hop, nxt, left - 1)

    by_index[0].call_soon_threadsafe(hop, 0, HOPS)
    for t in threads:
        t.join(30)
        assert not t.is_alive(), f"{t.name} did not stop"
    print(f"{HOPS + 1} hops over {N_THREADS} loops, per loop: {counts}")
    assert sum(counts) == HOPS + 1, counts
    assert not wrong_thread, wrong_thread


if __name__ == "__main__":
    main()
