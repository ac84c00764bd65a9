#!/usr/bin/env python3
"""Chat fan-out load test: many sockets in one room, a steady stream of messages.

Starts `mediagate serve` (release build) on 127.0.0.1 with a throw-away data directory,
registers users, opens SOCKETS WebSocket connections to one room, sends RATE messages per second
for SECONDS seconds from one more socket, and reports delivery latency (p50/p99/max), lost
messages, and the CPU and peak RSS of the server and of the load client.

The receiving sockets live in one SwiftNIO process (Benchmarks/FanoutReceiver, built here on
first use): a message reaches all 1,000 sockets at once, and a Python client parsing 1,000
frames in a row (~60 µs each with the websockets package) would add its own queueing to the
latency it measures. The sender is one websockets connection in this process. Latency is the receiving
loop's time.perf_counter() (CLOCK_MONOTONIC, shared by all processes) minus the sender's.

    Benchmarks/chat-fanout.py                      # 1000 sockets, 10 msg/s, 30 s
    SOCKETS=200 SECONDS=10 Benchmarks/chat-fanout.py
    DATABASE=postgres://postgres@127.0.0.1:5432/fanout Benchmarks/chat-fanout.py   # on PostgreSQL: LISTEN/NOTIFY

Needs: pip install websockets (scripts/install-deps.sh --bench).
"""
import asyncio, json, os, resource, subprocess, tempfile, time

from benchlib import BINARY, NO_RATE_LIMITS, ROOT, call, cpu_seconds, free_port, peak_rss_mib, percentile
from websockets.asyncio.client import connect

SOCKETS = int(os.environ.get("SOCKETS", 1000))
RATE = float(os.environ.get("RATE", 10))
SECONDS = float(os.environ.get("SECONDS", 30))
USERS = int(os.environ.get("USERS", 20))
RECEIVER_THREADS = int(os.environ.get("RECEIVER_THREADS", 2))
RECEIVER_PACKAGE = os.path.join(ROOT, "Benchmarks/FanoutReceiver")
RECEIVER = os.path.join(RECEIVER_PACKAGE, ".build/release/fanout-receiver")


async def send_messages(port, room, token, total):
    async with connect(f"ws://127.0.0.1:{port}/ws/chat/{room}?token={token}", max_queue=None, ping_interval=None) as sender:
        async def drain():
            async for _ in sender:
                pass
        draining = asyncio.create_task(drain())
        begin = time.perf_counter()
        for seq in range(total):
            await asyncio.sleep(max(0, begin + seq / RATE - time.perf_counter()))
            await sender.send(json.dumps({"type": "message", "client_id": f"load-{seq}",
                                          "content": json.dumps({"seq": seq, "t": time.perf_counter()})}))
        await asyncio.sleep(2)  # stragglers
        draining.cancel()
        return time.perf_counter() - begin


def main():
    if not os.path.exists(RECEIVER):
        subprocess.run(["swift", "build", "-c", "release", "--package-path", RECEIVER_PACKAGE], check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000+ sockets; inherited by the server
    data = tempfile.mkdtemp(prefix="mediagate-fanout-")
    with open(os.path.join(data, "config.json"), "w") as f:
        # Every client socket comes from 127.0.0.1 and 50 share a user: no caps on either.
        json.dump({"passwordHashCost": 4, "maxFailedLoginsPerAddress": 1000, "rateLimits": NO_RATE_LIMITS,
                   "maxConnectionsPerAddress": 0, "maxSocketsPerUser": 0,
                   **({"database": os.environ["DATABASE"]} if os.environ.get("DATABASE") else {})}, f)
    port = free_port()
    server = subprocess.Popen([BINARY, "serve", "--port", str(port), "--data-dir", data, "--config", os.path.join(data, "config.json")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "LOG_LEVEL": "warning"})
    base = f"http://127.0.0.1:{port}"
    processes = []
    try:
        for _ in range(100):
            try:
                call(base, "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        tokens = [call(base, "POST", "/api/auth/register", {"username": f"user{n}", "password": "load test password"})["access_token"]
                  for n in range(USERS)]
        room = call(base, "POST", "/api/rooms", {"name": "fan-out"}, tokens[0])["id"]
        for token in tokens[1:]:
            call(base, "POST", f"/api/rooms/{room}/join", None, token)

        paths = [f"/ws/chat/{room}?token={tokens[n % USERS]}" for n in range(SOCKETS)]
        started = time.perf_counter()
        receiver = subprocess.Popen([RECEIVER, str(port), str(RECEIVER_THREADS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        processes.append(receiver)
        receiver.stdin.write("\n".join(paths) + "\n\n")
        receiver.stdin.flush()
        connected = int(receiver.stdout.readline().split()[1])
        connect_seconds = time.perf_counter() - started

        total = int(RATE * SECONDS)
        server_cpu_before, receiver_cpu_before, parent_cpu_before = cpu_seconds(server.pid), cpu_seconds(receiver.pid), time.process_time()
        elapsed = asyncio.run(send_messages(port, room, tokens[0], total))
        server_cpu = cpu_seconds(server.pid) - server_cpu_before
        receiver_cpu = cpu_seconds(receiver.pid) - receiver_cpu_before
        parent_cpu = time.process_time() - parent_cpu_before
        server_rss = peak_rss_mib(server.pid)
        receiver.stdin.write("stop\n")
        receiver.stdin.flush()
        latencies, counts = [], {}
        for line in receiver.stdout:
            if line.strip() == "done":
                break
            seq, latency = line.split()
            latencies.append((int(seq), float(latency)))
            counts[int(seq)] = counts.get(int(seq), 0) + 1

        # SIGTERM with every socket still open: the server closes them and exits.
        shutdown_started = time.perf_counter()
        server.terminate()
        server.wait(timeout=60)
        shutdown_seconds = time.perf_counter() - shutdown_started

        expected = total * SOCKETS
        delivered = sum(counts.values())
        ms = [1000 * value for _, value in latencies]
        # The first socket to get each message: the server's own path (store, then fan-out
        # start), apart from how long fanning out to everyone takes.
        first = {}
        for seq, value in latencies:
            first[seq] = min(first.get(seq, value), value)
        first_ms = [1000 * value for value in first.values()]
        p99 = percentile(ms, 0.99)
        print(f"mediagate chat fan-out, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
        print(f"  {connected} sockets in one room ({USERS} users; receiving client: SwiftNIO, {RECEIVER_THREADS} threads), connected in {connect_seconds:.1f} s")
        print(f"  {total} messages at {RATE:g}/s for {SECONDS:g} s -> {expected} deliveries ({expected / SECONDS:,.0f}/s)")
        print(f"  delivered {delivered}, lost {expected - delivered}")
        print(f"  latency ms: p50 {percentile(ms, 0.50):.1f}  p90 {percentile(ms, 0.90):.1f}  p99 {p99:.1f}  max {max(ms) if ms else float('nan'):.1f}")
        print(f"  first recipient of each message, ms: p50 {percentile(first_ms, 0.50):.1f}  p99 {percentile(first_ms, 0.99):.1f}  max {max(first_ms):.1f}")
        print(f"  server: CPU {100 * server_cpu / elapsed:.0f}% of one core ({1e6 * server_cpu / max(1, delivered):.1f} µs per delivery), "
              f"peak RSS {server_rss:.0f} MiB; database: {'PostgreSQL' if os.environ.get('DATABASE') else 'SQLite'}")
        print(f"  load client: receiver CPU {100 * receiver_cpu / elapsed:.0f}% of one core, sender {100 * parent_cpu / elapsed:.0f}%")
        print(f"  SIGTERM with {connected} sockets open: exited with status {server.returncode} in {shutdown_seconds:.1f} s")
        print(f"  target: p99 < 50 ms and 0 lost -> {'met' if p99 < 50 and delivered == expected else 'NOT met'}")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if server.poll() is None:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
