#!/usr/bin/env python3
"""Cached thumbnails from a two-node cluster behind nginx (round robin, no sticky sessions),
side by side in one run with one node behind the same nginx and one node asked directly.
The nodes share PostgreSQL and an S3 bucket (SeaweedFS); the picture is uploaded through one
node, and each node makes its thumbnail from S3 the first time it is asked.

    Benchmarks/cluster-thumbnails.py            SECONDS=5 RUNS=2 Benchmarks/cluster-thumbnails.py

wrk asks for the signed 320 px thumbnail URL a message's attachment carries, 32 connections,
each configuration RUNS times (3), the best kept; a run with any failed or non-2xx request
prints no figure, and one answer per configuration is checked (a JPEG, 320 px on its longer
side). On this machine the nodes, nginx and wrk share 2 cores: the figure says what a second
node costs or gains when nothing else is added, not how a cluster of machines scales.
"""
import contextlib, io, os, random, shutil, sys, tempfile, urllib.request

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import benchlib  # noqa: E402
from cluster import S3_BUCKET, S3_KEY, S3_SECRET, start_postgres, start_seaweedfs, stop_postgres  # noqa: E402
from thumbnails import RUNS, best_of, wrk  # noqa: E402


def check(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        picture = Image.open(io.BytesIO(response.read()))
        assert picture.format == "JPEG" and max(picture.size) == 320, (picture.format, picture.size)


def main():
    benchlib.ensure_release_build()
    work = tempfile.mkdtemp(prefix="mediagate-cluster-bench-")
    os.chmod(work, 0o755)
    cluster = os.path.join(work, "postgres")
    os.makedirs(cluster)
    seaweedfs = None
    try:
        database = start_postgres(cluster, benchlib.free_port())
        seaweedfs, endpoint = start_seaweedfs(work, 30000 + random.randrange(900) * 10)
        env = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        shared = ["--database", database, "--blob-store", f"s3://{S3_BUCKET}?endpoint={endpoint}&region=us-east-1"]
        config = {"trustedProxies": ["127.0.0.1"]}
        with contextlib.ExitStack() as stack:
            nodes = [stack.enter_context(benchlib.mediagate(os.path.join(work, f"node{n}"), *shared, config=config, env=env))
                     for n in (1, 2)]
            (_, first), (_, second) = nodes
            token = benchlib.register(first, "bench")
            picture = os.path.join(benchlib.ROOT, "samples", "media", "progressive.jpg")
            location = benchlib.SendfileTusClient(int(first.rsplit(":", 1)[1]), token).upload("/api/uploads", picture, 64 << 20)
            file_id = benchlib.call(first, "GET", location + "?wait=30", token=token)["file_id"]
            room = benchlib.call(first, "POST", "/api/rooms", {"name": "bench"}, token)["id"]
            message = benchlib.call(first, "POST", "/api/messages", {"room_id": room, "client_id": "bench",
                                                                    "attachment": {"file_id": file_id}}, token)
            signed = message["attachment"]["thumbnailUrl"]
            signed = signed[signed.index("/api/"):]
            for base in (first, second):
                check(base + signed)  # node 2 makes it from S3 here
            proxy = "proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host $host;"
            upstreams = f"""
                upstream both {{ server {first[7:]}; server {second[7:]}; keepalive 64; }}
                upstream one {{ server {first[7:]}; keepalive 64; }}"""
            for name in ("nginx-1", "nginx-2"):
                os.makedirs(os.path.join(work, name))
            two_nodes = stack.enter_context(benchlib.nginx(os.path.join(work, "nginx-2"), f"location / {{ proxy_pass http://both; {proxy} }}",
                                                           http=upstreams))
            one_node = stack.enter_context(benchlib.nginx(os.path.join(work, "nginx-1"), f"location / {{ proxy_pass http://one; {proxy} }}",
                                                          http=upstreams))
            for base in (two_nodes, one_node):
                check(base + signed)
            print(f"cached signed 320 px thumbnail, wrk 32 connections, best of {RUNS}; 2 cores for everything")
            results = {
                "1 node, direct": best_of(RUNS, "1 node, direct", lambda: wrk(first, [signed], work, 32)),
                "1 node behind nginx": best_of(RUNS, "1 node behind nginx", lambda: wrk(one_node, [signed], work, 32)),
                "2 nodes behind nginx": best_of(RUNS, "2 nodes behind nginx", lambda: wrk(two_nodes, [signed], work, 32)),
            }
            one, two = results["1 node behind nginx"]["rps"], results["2 nodes behind nginx"]["rps"]
            print(f"2 nodes / 1 node, both behind nginx: {two / one:.2f}×; nginx's cost: "
                  f"{results['1 node, direct']['rps'] / one:.2f}× fewer requests/s than direct")
    finally:
        if seaweedfs:
            seaweedfs.terminate()
            seaweedfs.wait(timeout=30)
        stop_postgres(cluster)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
