#!/usr/bin/env python3
"""Chat fan-out load test: many sockets in one room, a steady stream of messages, against
mediagate and against the peer a chat backend would otherwise write, in the same run.

For each server (PEERS, default "mediagate,node"): starts it on 127.0.0.1 (mediagate's release
build with a throw-away data directory; the peer is Benchmarks/node-peer/server.js, Express and
`ws` from Debian, state in memory), registers users, opens SOCKETS WebSocket connections to one
room, sends RATE messages per second for SECONDS seconds from one more socket, and reports
delivery latency (p50/p99/max), lost messages, and the server's CPU time per delivery and peak
RSS. Then the ratios: mediagate's CPU per delivery over Node's (target <= 0.8) and both p99s.

The receiving sockets live in one SwiftNIO process (Benchmarks/FanoutReceiver, built here on
first use): a message reaches all 1,000 sockets at once, and a Python client parsing 1,000
frames in a row (~60 µs each with the websockets package) would add its own queueing to the
latency it measures. The same receiver and sender measure both servers. The sender is one
websockets connection in this process. Latency is the receiving loop's time.perf_counter()
(CLOCK_MONOTONIC, shared by all processes) minus the sender's.

    Benchmarks/chat-fanout.py                      # 1000 sockets, 10 msg/s, 30 s, both servers
    SOCKETS=200 SECONDS=10 PEERS=mediagate Benchmarks/chat-fanout.py
    DATABASE=postgres://postgres@127.0.0.1:5432/fanout Benchmarks/chat-fanout.py   # mediagate on PostgreSQL
    NODES=2 DATABASE=postgres://… PEERS=mediagate Benchmarks/chat-fanout.py        # the sockets split over 2 nodes

Needs: pip install websockets; apt nodejs node-express node-ws (scripts/install-deps.sh --bench).
"""
import asyncio, json, os, resource, subprocess, tempfile, time

from benchlib import BINARY, NO_RATE_LIMITS, ROOT, call, cpu_seconds, cpu_split, free_port, peak_rss_mib, percentile
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


PEERS = [name.strip() for name in os.environ.get("PEERS", "mediagate,node").split(",") if name.strip()]
NODES = int(os.environ.get("NODES", 1))
NODE_PEER = os.path.join(ROOT, "Benchmarks/node-peer/server.js")


def start_servers(kind, data):
    """Starts the server(s) under test; returns (processes, ports)."""
    processes, ports = [], []
    for node in range(NODES if kind == "mediagate" else 1):
        port = free_port()
        if kind == "mediagate":
            config = os.path.join(data, f"config-{node}.json")
            with open(config, "w") as f:
                # Every client socket comes from 127.0.0.1 and 50 share a user: no caps on either.
                json.dump({"passwordHashCost": 4, "maxFailedLoginsPerAddress": 1000, "rateLimits": NO_RATE_LIMITS,
                           "maxConnectionsPerAddress": 0, "maxSocketsPerUser": 0,
                           **({"database": os.environ["DATABASE"]} if os.environ.get("DATABASE") else {})}, f)
            command = [BINARY, "serve", "--port", str(port), "--data-dir", data, "--config", config]
            env = {**os.environ, "LOG_LEVEL": "warning"}
        else:
            command = ["node", NODE_PEER, str(port)]
            env = {**os.environ, "NODE_PATH": "/usr/share/nodejs"}
        processes.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env))
        ports.append(port)
    for port in ports:
        for _ in range(300):
            try:
                call(f"http://127.0.0.1:{port}", "GET", "/healthz")
                break
            except OSError:
                time.sleep(0.1)
    return processes, ports


def run(kind):
    """One server's run; returns its measurements."""
    data = tempfile.mkdtemp(prefix=f"mediagate-fanout-{kind}-")
    servers, ports = start_servers(kind, data)
    base = f"http://127.0.0.1:{ports[0]}"
    receivers = []
    try:
        tokens = [call(base, "POST", "/api/auth/register", {"username": f"user{n}", "password": "load test password"})["access_token"]
                  for n in range(USERS)]
        room = call(base, "POST", "/api/rooms", {"name": "fan-out"}, tokens[0])["id"]
        for token in tokens[1:]:
            call(base, "POST", f"/api/rooms/{room}/join", None, token)

        # The sockets split evenly over the nodes, a receiver process per node.
        started = time.perf_counter()
        connected = 0
        for node, port in enumerate(ports):
            paths = [f"/ws/chat/{room}?token={tokens[n % USERS]}" for n in range(SOCKETS) if n % len(ports) == node]
            receiver = subprocess.Popen([RECEIVER, str(port), str(RECEIVER_THREADS)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            receivers.append(receiver)
            receiver.stdin.write("\n".join(paths) + "\n\n")
            receiver.stdin.flush()
        for receiver in receivers:
            connected += int(receiver.stdout.readline().split()[1])
        connect_seconds = time.perf_counter() - started

        total = int(RATE * SECONDS)
        server_cpu_before = [cpu_split(server.pid) for server in servers]
        receiver_cpu_before = sum(cpu_seconds(receiver.pid) for receiver in receivers)
        parent_cpu_before = time.process_time()
        elapsed = asyncio.run(send_messages(ports[0], room, tokens[0], total))
        # User and kernel time apart: on loopback the kernel's share (TCP on both ends of
        # every write) is most of a delivery, and it is the same work for any server.
        server_user = sum(cpu_split(server.pid)[0] - before[0] for server, before in zip(servers, server_cpu_before))
        server_kernel = sum(cpu_split(server.pid)[1] - before[1] for server, before in zip(servers, server_cpu_before))
        server_cpu = server_user + server_kernel
        receiver_cpu = sum(cpu_seconds(receiver.pid) for receiver in receivers) - receiver_cpu_before
        parent_cpu = time.process_time() - parent_cpu_before
        server_rss = max(peak_rss_mib(server.pid) for server in servers)
        latencies, counts = [], {}
        for receiver in receivers:
            receiver.stdin.write("stop\n")
            receiver.stdin.flush()
            for line in receiver.stdout:
                if line.strip() == "done":
                    break
                seq, latency = line.split()
                latencies.append((int(seq), float(latency)))
                counts[int(seq)] = counts.get(int(seq), 0) + 1

        # SIGTERM with every socket still open: the server closes them and exits.
        shutdown_started = time.perf_counter()
        for server in servers:
            server.terminate()
        for server in servers:
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
        return {"kind": kind, "connected": connected, "connect_seconds": connect_seconds, "total": total, "expected": expected,
                "delivered": delivered, "lost": expected - delivered, "ms": ms, "first_ms": first_ms, "elapsed": elapsed,
                "server_cpu": server_cpu, "server_user": server_user, "server_kernel": server_kernel, "receiver_cpu": receiver_cpu, "parent_cpu": parent_cpu, "server_rss": server_rss,
                "shutdown_seconds": shutdown_seconds, "exit_statuses": [server.returncode for server in servers]}
    finally:
        for process in receivers + servers:
            if process.poll() is None:
                process.kill()
                process.wait()


def describe(result):
    kind, ms, first_ms = result["kind"], result["ms"], result["first_ms"]
    if kind == "mediagate":
        engine = "PostgreSQL" if os.environ.get("DATABASE") else "SQLite"
        name = f"mediagate ({NODES} node{'s' if NODES > 1 else ''}, {engine})"
    else:
        name = "Node peer (Express + ws, in memory)"
    per_delivery = 1e6 * result["server_cpu"] / max(1, result["delivered"])
    print(f"  {name}")
    print(f"    {result['connected']} sockets connected in {result['connect_seconds']:.1f} s; delivered {result['delivered']}, lost {result['lost']}")
    print(f"    latency ms: p50 {percentile(ms, 0.50):.1f}  p90 {percentile(ms, 0.90):.1f}  p99 {percentile(ms, 0.99):.1f}  "
          f"max {max(ms) if ms else float('nan'):.1f}; first recipient p50 {percentile(first_ms, 0.50):.1f}  p99 {percentile(first_ms, 0.99):.1f}")
    user, kernel = (1e6 * result[key] / max(1, result["delivered"]) for key in ("server_user", "server_kernel"))
    print(f"    server: CPU {100 * result['server_cpu'] / result['elapsed']:.0f}% of one core ({per_delivery:.2f} µs per delivery: "
          f"{user:.2f} user + {kernel:.2f} kernel), "
          f"peak RSS {result['server_rss']:.0f} MiB; SIGTERM with the sockets open: exit {result['exit_statuses']} in {result['shutdown_seconds']:.1f} s")
    print(f"    load client: receiver CPU {100 * result['receiver_cpu'] / result['elapsed']:.0f}% of one core, "
          f"sender {100 * result['parent_cpu'] / result['elapsed']:.0f}%")
    return per_delivery


def main():
    if not os.path.exists(RECEIVER):
        subprocess.run(["swift", "build", "-c", "release", "--package-path", RECEIVER_PACKAGE], check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1000+ sockets; inherited by the servers
    results = {kind: run(kind) for kind in PEERS}
    total = next(iter(results.values()))["total"]
    print(f"chat fan-out, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores: {SOCKETS} sockets in one room ({USERS} users; "
          f"receiving client: SwiftNIO, {RECEIVER_THREADS} threads)")
    print(f"  {total} messages at {RATE:g}/s for {SECONDS:g} s -> {total * SOCKETS} deliveries ({total * SOCKETS / SECONDS:,.0f}/s)")
    per_delivery = {kind: describe(result) for kind, result in results.items()}
    ok = all(result["lost"] == 0 for result in results.values())
    if "mediagate" in results and "node" in results:
        ratio = per_delivery["mediagate"] / per_delivery["node"]
        p99 = {kind: percentile(results[kind]["ms"], 0.99) for kind in ("mediagate", "node")}
        print(f"  mediagate / Node, server CPU per delivery: {ratio:.2f} (target <= 0.8 -> {'met' if ratio <= 0.8 else 'NOT met'})")
        print(f"  p99: mediagate {p99['mediagate']:.1f} ms, Node {p99['node']:.1f} ms "
              f"(target: below Node's -> {'met' if p99['mediagate'] < p99['node'] else 'NOT met'}); "
              f"lost: {'none' if ok else 'SOME'}")
    elif "mediagate" in results:
        p99 = percentile(results["mediagate"]["ms"], 0.99)
        print(f"  target: p99 < 50 ms and 0 lost -> {'met' if p99 < 50 and ok else 'NOT met'}")
    if not ok:
        raise SystemExit("messages were lost")


if __name__ == "__main__":
    main()
