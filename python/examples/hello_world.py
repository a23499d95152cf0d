"""Hello World with call_soon and call_later on an evloop loop (asyncio's
"Hello World with call_soon()" example, plus a timer)."""

import evloop


def hello_world(loop, said):
    print("Hello World")
    said.append("hello")
    loop.call_later(0.05, goodbye, loop, said)


def goodbye(loop, said):
    print("Goodbye after 50 ms")
    said.append("goodbye")
    loop.stop()


def main():
    loop = evloop.new_event_loop()
    said = []
    try:
        loop.call_soon(hello_world, loop, said)
        loop.run_forever()
    finally:
        loop.close()
    assert said == ["hello", "goodbye"], said


if __name__ == "__main__":
    main()
