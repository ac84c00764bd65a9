#!/usr/bin/env python3
"""Opens COUNT connections to 127.0.0.1:PORT that each send half a request line and nothing
more (a slowloris), holds them up to HOLD seconds, and prints what the server did with them:

  {"opened": N, "refused": R, "closed": C, "open": O, "max_open": M, "first_close_s": T, "last_close_s": T}

`refused`: answered 503 (a per-address cap); `closed`: closed by the server without an answer
(a header timeout); `open`: still open when HOLD ran out; `max_open`: the most held open and
unanswered at once, checked as each new one opens. It stops early once UNTIL sockets have been
refused or closed (a loaded server may take seconds to accept them all).
Usage: half_open.py PORT COUNT HOLD [UNTIL]
"""
import json, selectors, socket, sys, time

port, count, hold = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
until = int(sys.argv[4]) if len(sys.argv) > 4 else count
selector = selectors.DefaultSelector()
started = time.monotonic()
refused = closed = 0
close_times = []
max_open = 0


def collect(timeout):
    """Reads whatever the server sent or closed; returns nothing, updates the counts."""
    global refused, closed
    for key, _ in selector.select(timeout=timeout):
        try:
            data = key.fileobj.recv(4096)
        except ConnectionResetError:
            data = b""
        if data:
            key.data["answer"] += data
            continue
        selector.unregister(key.fileobj)
        key.fileobj.close()
        close_times.append(time.monotonic() - started)
        if key.data["answer"].startswith(b"HTTP/1.1 503"):
            refused += 1
        else:
            closed += 1


opened = 0
for _ in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /healthz HT")
    s.setblocking(False)
    selector.register(s, selectors.EVENT_READ, {"answer": b""})
    opened += 1
    collect(0.002 if opened % 20 == 0 else 0)
    max_open = max(max_open, sum(1 for key in selector.get_map().values() if not key.data["answer"]))
while selector.get_map() and refused + closed < until and time.monotonic() - started < hold:
    collect(0.2)
collect(0.3)  # one more look: answers racing the last
still_open = len(selector.get_map())
for key in list(selector.get_map().values()):
    key.fileobj.close()
print(json.dumps({"opened": opened, "refused": refused, "closed": closed, "open": still_open, "max_open": max_open,
                  "first_close_s": round(min(close_times), 2) if close_times else None,
                  "last_close_s": round(max(close_times), 2) if close_times else None}))
