"""A TCP proxy that breaks connections on purpose, for the upload client's tests.

    fault_proxy.py LISTEN_PORT TARGET_PORT STATS_FILE [--seed N] [--cut P] [--stall P]
                   [--stall-seconds S] [--rate BYTES_PER_SECOND] [--stall-at BYTES] [--cut-at BYTES]

Each accepted connection, in order, draws its fate from a seeded random generator: with
probability --cut it is cut (both sides closed abruptly) after a random 64 KiB-3 MiB sent
upstream; with probability --stall it goes silent after that much for --stall-seconds, then is
closed; otherwise it is left alone. The first connection is always cut, the second always
stalls (when those probabilities are above zero), so every run has both. --rate slows the
upstream direction. --stall-at stalls, once, whichever connection carries the proxy's total
upstream past BYTES (a sure mid-transfer pause, whatever the timing). --cut-at cuts every
connection after exactly BYTES upstream (one that carries less is left alone), and not before the
server has answered something (an interim response) on it. STATS_FILE gets {"connections", "cuts", "stalls", "upstream_bytes"} as JSON,
rewritten as they change. Prints "ready" once listening. Stops on SIGTERM.
"""
import argparse
import asyncio
import json
import os
import random
import signal

stats = {"connections": 0, "cuts": 0, "stalls": 0, "upstream_bytes": 0}


def save(path):
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(stats, handle)
    os.replace(temporary, path)


async def pipe(reader, writer, limit=None, on_bytes=None, rate=None, stop=None):
    """Copies until EOF, or until `limit` bytes have gone or `stop()` says so; returns True when
    it stopped for either."""
    sent = 0
    while True:
        if stop and stop():
            return True
        size = 65536 if limit is None else min(65536, limit - sent)
        if size <= 0:
            return True
        data = await reader.read(size)
        if not data:
            writer.close()
            return False
        writer.write(data)
        await writer.drain()
        sent += len(data)
        if on_bytes:
            on_bytes(len(data))
        if rate:
            await asyncio.sleep(len(data) / rate)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("listen", type=int)
    parser.add_argument("target", type=int)
    parser.add_argument("stats")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cut", type=float, default=0.0)
    parser.add_argument("--stall", type=float, default=0.0)
    parser.add_argument("--stall-seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--stall-at", type=int, default=0)
    parser.add_argument("--cut-at", type=int, default=0)
    options = parser.parse_args()
    fates = random.Random(options.seed)
    stall_at = {"pending": options.stall_at > 0}

    def reached_stall_point():
        if stall_at["pending"] and stats["upstream_bytes"] >= options.stall_at:
            stall_at["pending"] = False
            return True
        return False

    def count(n):
        stats["upstream_bytes"] += n

    async def handle(client_reader, client_writer):
        stats["connections"] += 1
        number = stats["connections"]
        draw = fates.random()
        after = fates.randint(64 << 10, 3 << 20)
        if number == 1 and options.cut > 0:
            fate = "cut"
        elif number == 2 and options.stall > 0:
            fate = "stall"
        elif draw < options.cut:
            fate = "cut"
        elif draw < options.cut + options.stall:
            fate = "stall"
        else:
            fate = "none"
        if options.cut_at:
            fate, after = "cut", options.cut_at
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", options.target)
        except OSError:
            client_writer.close()
            return
        answered = asyncio.Event()
        downstream = asyncio.ensure_future(pipe(server_reader, client_writer, on_bytes=lambda n: answered.set()))
        try:
            limit = None if fate == "none" else after
            stop = reached_stall_point if fate == "none" else None
            hit = await pipe(client_reader, server_writer, limit, count, options.rate or None, stop)
            if hit and options.cut_at:
                # The cut lands after the server's first answer (a 104) has reached the client,
                # however slow the server is to send it: a cut before it tests nothing.
                try:
                    await asyncio.wait_for(answered.wait(), 60)
                except asyncio.TimeoutError:
                    pass
            if hit and fate == "none":
                fate = "stall"
            if hit and fate == "stall":
                stats["stalls"] += 1
                save(options.stats)
                await asyncio.sleep(options.stall_seconds)
            elif hit:
                stats["cuts"] += 1
        except (ConnectionError, OSError):
            pass
        finally:
            downstream.cancel()
            for writer in (client_writer, server_writer):
                try:
                    writer.transport.abort()
                except Exception:
                    pass
            save(options.stats)

    server = await asyncio.start_server(handle, "127.0.0.1", options.listen)
    save(options.stats)

    def stop(*_):
        save(options.stats)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    # Started from a thread of the Swift test runner, which blocks SIGTERM: the mask is inherited.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
