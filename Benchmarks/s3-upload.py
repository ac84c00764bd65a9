#!/usr/bin/env python3
"""A 1 GiB tus upload into S3 (SeaweedFS on this machine), side by side in one run with the same
upload to local disk and with boto3's multipart upload of the file to the same SeaweedFS.

    Benchmarks/s3-upload.py [--mib 1024]

mediagate gets the file with one tus client (PATCHes of 64 MiB sent with sendfile, one at a
time, as tus clients do), parts of 8 MiB (`uploadPartBytes`); boto3 uses its defaults
(`upload_file`: 8 MiB parts, 10 threads). Throughput is the file's size over the time to the
last acknowledged byte (mediagate: the last PATCH's 204, processing excluded; boto3: the
completed upload). The server's resident memory is sampled during the S3 upload; the stored
objects are checked (mediagate: the processed file's SHA-256; boto3: the object's size).
"""
import argparse, hashlib, os, random, shutil, sys, tempfile, threading, time, urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import benchlib  # noqa: E402
from cluster import S3_BUCKET, S3_KEY, S3_SECRET, random_file, start_seaweedfs  # noqa: E402


def tus_upload(base, token, path, process=None):
    """Seconds to the last 204, peak RSS growth (MiB) while it ran, and the stored SHA-256."""
    samples, done = [], threading.Event()

    def sample():
        while not done.is_set():
            samples.append(benchlib.memory_mib(process.pid, "VmRSS"))
            time.sleep(0.05)

    before = benchlib.memory_mib(process.pid, "VmRSS")
    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.time()
    location = benchlib.SendfileTusClient(urllib.parse.urlsplit(base).port, token).upload("/api/uploads", path, 64 << 20)
    seconds = time.time() - started
    done.set()
    sampler.join()
    ready = benchlib.call(base, "GET", location + "?wait=30", token=token)
    while ready.get("status") != "ready":
        ready = benchlib.call(base, "GET", location + "?wait=30", token=token)
    return seconds, max(samples) - before, ready["attachment"]["sha256"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    args = parser.parse_args()
    benchlib.ensure_release_build()
    import boto3

    work = tempfile.mkdtemp(prefix="mediagate-s3-upload-")
    seaweedfs = None
    try:
        seaweedfs, endpoint = start_seaweedfs(work, 30000 + random.randrange(900) * 10)
        path, sha256 = random_file(work, "file.bin", args.mib)
        size = args.mib << 20
        env = {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
        config = {"maxUploadBytes": size + 1, "userQuotaBytes": 0}
        results = {}
        with benchlib.mediagate(os.path.join(work, "disk"), config=config) as (process, base):
            seconds, rss, stored = tus_upload(base, benchlib.register(base, "bench"), path, process)
            assert stored == sha256, "disk: the stored file's SHA-256 differs"
            results["mediagate tus, local disk"] = (seconds, rss)
        blob_store = f"s3://{S3_BUCKET}?endpoint={endpoint}&region=us-east-1&prefix=bench"
        with benchlib.mediagate(os.path.join(work, "s3"), "--blob-store", blob_store, config=config, env=env) as (process, base):
            seconds, rss, stored = tus_upload(base, benchlib.register(base, "bench"), path, process)
            assert stored == sha256, "S3: the stored file's SHA-256 differs"
            results["mediagate tus, S3 parts"] = (seconds, rss)
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEY, aws_secret_access_key=S3_SECRET, region_name="us-east-1")
        started = time.time()
        s3.upload_file(path, S3_BUCKET, "boto3/file.bin")
        results["boto3 upload_file (multipart, 10 threads)"] = (time.time() - started, float("nan"))
        assert s3.head_object(Bucket=S3_BUCKET, Key="boto3/file.bin")["ContentLength"] == size

        print(f"{args.mib} MiB, one run; MiB/s to the last acknowledged byte")
        for name, (seconds, rss) in results.items():
            print(f"  {name:44} {args.mib / seconds:7.0f} MiB/s   server RSS growth {rss:6.0f} MiB")
        ours, boto = results["mediagate tus, S3 parts"][0], results["boto3 upload_file (multipart, 10 threads)"][0]
        print(f"mediagate to S3 / boto3 multipart: {boto / ours:.2f}×; S3 / local disk: {results['mediagate tus, local disk'][0] / ours:.2f}×")
    finally:
        if seaweedfs:
            seaweedfs.terminate()
            seaweedfs.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
