#!/usr/bin/env python3
"""Chat fan-out load test: many sockets in one room, a steady stream of messages.

Starts `mediagate serve` (release build) on 127.0.0.1 with a throw-away data directory,
registers users, opens SOCKETS WebSocket connections to one room from one asyncio loop, sends
RATE messages per second for SECONDS seconds from one more socket, and reports delivery latency
(p50/p99/max), lost messages, and CPU and peak RSS of the server and of this load client.

    Benchmarks/chat-fanout.py                      # 1000 sockets, 10 msg/s, 30 s
    SOCKETS=200 SECONDS=10 Benchmarks/chat-fanout.py

Needs: pip install websockets (scripts/install-deps.sh --bench).
"""
import asyncio, json, os, resource, socket, subprocess, sys, tempfile, time, urllib.request
from websockets.asyncio.client import connect

SOCKETS = int(os.environ.get("SOCKETS", 1000))
RATE = float(os.environ.get("RATE", 10))
SECONDS = float(os.environ.get("SECONDS", 30))
USERS = int(os.environ.get("USERS", 20))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("MEDIAGATE", os.path.join(ROOT, ".build/release/mediagate"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


async def receiver(url, ready, latencies, counts, stop):
    async with connect(url, max_queue=None, ping_interval=None, close_timeout=2) as ws:
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "connected":
                ready.release()
            elif kind == "message":
                body = frame["content"]
                if body.startswith("{"):
                    payload = json.loads(body)
                    latencies.append(time.perf_counter() - payload["t"])
                    counts[payload["seq"]] = counts.get(payload["seq"], 0) + 1
            if stop.is_set():
                return


async def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000+ sockets; inherited by the server
    data = tempfile.mkdtemp(prefix="mediagate-fanout-")
    with open(os.path.join(data, "config.json"), "w") as f:
        json.dump({"passwordHashCost": 4, "maxFailedLoginsPerAddress": 1000}, f)
    port = free_port()
    server = subprocess.Popen([BINARY, "serve", "--port", str(port), "--data-dir", data, "--config", os.path.join(data, "config.json")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "LOG_LEVEL": "warning"})
    base = f"http://127.0.0.1:{port}"
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

        latencies, counts, stop = [], {}, asyncio.Event()
        ready = asyncio.Semaphore(0)
        started = time.perf_counter()
        tasks = [asyncio.create_task(receiver(f"ws://127.0.0.1:{port}/ws/chat/{room}?token={tokens[n % USERS]}", ready, latencies, counts, stop))
                 for n in range(SOCKETS)]
        for _ in range(SOCKETS):
            await asyncio.wait_for(ready.acquire(), timeout=120)
        connect_seconds = time.perf_counter() - started

        server_cpu_before, client_cpu_before = cpu_seconds(server.pid), time.process_time()
        total = int(RATE * SECONDS)
        async with connect(f"ws://127.0.0.1:{port}/ws/chat/{room}?token={tokens[0]}", max_queue=None, ping_interval=None) as sender:
            drain = asyncio.create_task(sender_drain(sender))
            begin = time.perf_counter()
            for seq in range(total):
                await asyncio.sleep(max(0, begin + seq / RATE - time.perf_counter()))
                await sender.send(json.dumps({"type": "message", "client_id": f"load-{seq}",
                                              "content": json.dumps({"seq": seq, "t": time.perf_counter()})}))
            await asyncio.sleep(2)  # stragglers
            drain.cancel()
        elapsed = time.perf_counter() - begin
        server_cpu = cpu_seconds(server.pid) - server_cpu_before
        client_cpu = time.process_time() - client_cpu_before
        server_rss = peak_rss_mib(server.pid)
        stop.set()
        # SIGTERM with every socket still open: the server closes them (1001 going away) and exits.
        shutdown_started = time.perf_counter()
        server.terminate()
        await asyncio.get_running_loop().run_in_executor(None, server.wait, 60)
        shutdown_seconds = time.perf_counter() - shutdown_started
        await asyncio.wait(tasks, timeout=10)

        expected = total * SOCKETS
        delivered = sum(counts.values())
        ms = [1000 * value for value in latencies]
        print(f"mediagate chat fan-out, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
        print(f"  {SOCKETS} sockets in one room ({USERS} users), connected in {connect_seconds:.1f} s")
        print(f"  {total} messages at {RATE:g}/s for {SECONDS:g} s -> {expected} deliveries ({expected / SECONDS:,.0f}/s)")
        print(f"  delivered {delivered}, lost {expected - delivered}")
        print(f"  latency ms: p50 {percentile(ms, 0.50):.1f}  p99 {percentile(ms, 0.99):.1f}  max {max(ms) if ms else float('nan'):.1f}")
        print(f"  server: CPU {100 * server_cpu / elapsed:.0f}% of one core, peak RSS {server_rss:.0f} MiB")
        print(f"  load client: CPU {100 * client_cpu / elapsed:.0f}% of one core (one asyncio loop)")
        print(f"  SIGTERM with {SOCKETS} sockets open: exited with status {server.returncode} in {shutdown_seconds:.1f} s")
        print(f"  target: p99 < 50 ms and 0 lost -> {'met' if percentile(ms, 0.99) < 50 and delivered == expected else 'NOT met'}")
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


async def sender_drain(ws):
    async for _ in ws:
        pass


if __name__ == "__main__":
    asyncio.run(main())
