#!/usr/bin/env python3
"""Serving a stored file when its bytes live in S3 (SeaweedFS on this machine), side by side in
one run with the same file on local disk, and with a presigned URL that a client would fetch
from SeaweedFS directly (what answering with a redirect would give it).

    Benchmarks/s3-serving.py [--mib 256] [--rounds 3] [--ranges 300]

Measures whole-file throughput (curl), the latency of small Range requests (64 KiB at random
offsets, one keep-alive connection), and the gateway's CPU per GiB served. Every full download
is checked against the file's SHA-256, every range against its bytes. The S3 node's cached copy
is deleted first, so it streams from S3 (the case of a node that has not read the file yet).
"""
import argparse, hashlib, http.client, json, os, random, shutil, subprocess, sys, tempfile, time, urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import benchlib  # noqa: E402
from cluster import S3_BUCKET, S3_KEY, S3_SECRET, start_seaweedfs  # noqa: E402


def upload(base, token, path):
    port = int(urllib.parse.urlsplit(base).port)
    location = benchlib.SendfileTusClient(port, token).upload("/api/uploads", path, 64 << 20)
    ready = benchlib.call(base, "GET", location + "?wait=30", token=token)
    assert ready["status"] == "ready", ready
    return ready["file_id"], ready["attachment"]["sha256"]


def curl_whole(url, headers, out):
    arguments = ["curl", "-s", "-o", out, "-w", "%{http_code} %{speed_download}"]
    for header in headers:
        arguments += ["-H", header]
    status, speed = subprocess.run(arguments + [url], capture_output=True, text=True, check=True).stdout.split()
    assert status == "200", status
    return float(speed) / (1 << 20)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def ranges(host, port, path, headers, size, expected, count):
    """Latencies (ms) of `count` 64 KiB ranges at random offsets on one keep-alive connection."""
    connection = http.client.HTTPConnection(host, port)
    rng = random.Random(7)
    times = []
    with open(expected, "rb") as source:
        for _ in range(count):
            start = rng.randrange(0, size - 65536)
            began = time.perf_counter()
            connection.request("GET", path, headers={**headers, "Range": f"bytes={start}-{start + 65535}"})
            response = connection.getresponse()
            body = response.read()
            times.append((time.perf_counter() - began) * 1000)
            assert response.status == 206, response.status
            source.seek(start)
            assert body == source.read(65536), "range bytes differ"
    connection.close()
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ranges", type=int, default=300)
    args = parser.parse_args()
    benchlib.ensure_release_build()
    import boto3  # the presigned URL is botocore's, not ours

    work = tempfile.mkdtemp(prefix="mediagate-s3-bench-")
    processes = []
    try:
        seaweedfs, endpoint = start_seaweedfs(work, 30000 + random.randrange(900) * 10)
        processes.append(seaweedfs)
        source = os.path.join(work, "file.bin")
        with open(source, "wb") as file:
            for _ in range(args.mib):
                file.write(os.urandom(1 << 20))
        size = os.path.getsize(source)
        out = os.path.join(work, "download.bin")
        s3_env = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        blob_store = f"s3://{S3_BUCKET}?endpoint={endpoint}&region=us-east-1&prefix=bench"
        results = {}
        with benchlib.mediagate(os.path.join(work, "disk")) as (disk_process, disk_base), \
             benchlib.mediagate(os.path.join(work, "s3"), "--blob-store", blob_store, env=s3_env) as (s3_process, s3_base):
            for name, base, process in (("gateway, local disk", disk_base, disk_process), ("gateway, streamed from S3", s3_base, s3_process)):
                token = benchlib.register(base, "bench")
                file_id, sha = upload(base, token, source)
                if "S3" in name:
                    shutil.rmtree(os.path.join(work, "s3", "blob-cache"))
                    os.makedirs(os.path.join(work, "s3", "blob-cache"))
                url = f"{base}/api/files/{file_id}"
                cpu_before = benchlib.cpu_seconds(process.pid)
                speeds = []
                for _ in range(args.rounds):
                    speeds.append(curl_whole(url, [f"Authorization: Bearer {token}"], out))
                    assert sha256_of(out) == sha, f"{name}: the download's SHA-256 differs"
                cpu = benchlib.cpu_seconds(process.pid) - cpu_before
                split = urllib.parse.urlsplit(base)
                latencies = ranges(split.hostname, split.port, f"/api/files/{file_id}", {"Authorization": f"Bearer {token}"},
                                   size, source, args.ranges)
                results[name] = {"MiB/s": max(speeds), "cpu_s_per_GiB": cpu / (args.rounds * size / (1 << 30)),
                                 "range_p50_ms": benchlib.percentile(latencies, 0.5), "range_p99_ms": benchlib.percentile(latencies, 0.99)}
                if "S3" in name:
                    assert not os.listdir(os.path.join(work, "s3", "blob-cache")), "serving fetched the blob whole"
                    key = f"bench/blobs/{sha}"

            s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET, region_name="us-east-1")
            presigned = s3.generate_presigned_url("get_object", Params={"Bucket": S3_BUCKET, "Key": key}, ExpiresIn=3600)
            speeds = []
            for _ in range(args.rounds):
                speeds.append(curl_whole(presigned, [], out))
                assert sha256_of(out) == sha, "presigned: the download's SHA-256 differs"
            split = urllib.parse.urlsplit(presigned)
            latencies = ranges(split.hostname, split.port, f"{split.path}?{split.query}", {}, size, source, args.ranges)
            results["presigned URL, SeaweedFS directly"] = {"MiB/s": max(speeds), "cpu_s_per_GiB": float("nan"),
                                                            "range_p50_ms": benchlib.percentile(latencies, 0.5),
                                                            "range_p99_ms": benchlib.percentile(latencies, 0.99)}

        print(f"{args.mib} MiB file, {args.rounds} whole downloads and {args.ranges} 64 KiB ranges each; best MiB/s; CPU of the gateway")
        print(f"{'path':38} {'MiB/s':>8} {'gw CPU s/GiB':>13} {'range p50':>10} {'range p99':>10}")
        for name, r in results.items():
            print(f"{name:38} {r['MiB/s']:8.0f} {r['cpu_s_per_GiB']:13.2f} {r['range_p50_ms']:8.2f}ms {r['range_p99_ms']:8.2f}ms")
        s3r, direct = results["gateway, streamed from S3"], results["presigned URL, SeaweedFS directly"]
        print(f"streamed through the gateway / presigned direct: throughput {s3r['MiB/s'] / direct['MiB/s']:.2f}×, "
              f"range p50 {s3r['range_p50_ms'] / direct['range_p50_ms']:.2f}×")
        print(json.dumps(results))
    finally:
        for process in processes:  # weed, started in our process group
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
