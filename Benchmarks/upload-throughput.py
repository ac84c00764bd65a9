#!/usr/bin/env python3
"""Resumable upload throughput: one 1 GiB file over loopback, in one run, against its peers.

  dd conv=fdatasync        the disk's durable write rate (the ceiling for durable acknowledgements)
  mediagate                tus, 8 MiB and 64 MiB chunks, each chunk fdatasync'ed before its offset
                           is acknowledged (the default), then with --no-durable-uploads
  nginx (WebDAV PUT)       curl -T, one request, no fsync
  tuspyserver              FastAPI + uvicorn with uvloop and httptools, driven by tuspy, no fsync

mediagate is driven by a minimal tus client here that sends chunk bodies with sendfile(2), so
the client costs next to nothing, as curl does for nginx; it is also driven by tuspy, so that
the comparison with tuspyserver can be read with the same client on both sides. Server RSS
growth is the server's peak RSS at the end of an upload minus its RSS before it began. After
each mediagate upload the script waits for the pipeline and checks the stored file's SHA-256.

The disk here is a shared virtual disk whose write rate swings from 200 MiB/s to 2 GiB/s
between runs (page-cache throttling and the host's own limits). So every contender runs ROUNDS
times, in a rotated order, each run starting from a synced, idle disk with the previous run's
files deleted; the table shows each contender's best and median, and the ratios use the best.
Without fsync, a run's bytes usually never reach the disk (deleted before writeback): those
rows compare how fast each server moves bytes from the socket into the page cache.

    Benchmarks/upload-throughput.py
    SIZE_MIB=256 ROUNDS=1 Benchmarks/upload-throughput.py      # a quicker run

Needs: scripts/install-deps.sh --bench (nginx-light, curl, tuspy, tuspyserver, uvicorn[standard]).
The work directory is made under Benchmarks/ (on the repository's disk, not a tmpfs).
"""
import os, shutil, statistics, subprocess, sys, tempfile, textwrap, time

from benchlib import random_source, ROOT, SendfileTusClient, call, ensure_release_build, free_port, memory_mib, mediagate, nginx, register, running

SIZE = int(os.environ.get("SIZE_MIB", 1024)) << 20
CHUNKS = [8 << 20, 64 << 20]
ROUNDS = int(os.environ.get("ROUNDS", 3))


def rate(seconds):
    return SIZE / seconds / (1 << 20)


def tuspy_upload(url, path, chunk, token=None):
    from tusclient import client
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    uploader = client.TusClient(url, headers=headers).uploader(path, chunk_size=chunk, metadata={"filename": "bench.bin"})
    uploader.upload()
    return uploader.url


def timed(function, *arguments):
    started = time.perf_counter()
    result = function(*arguments)
    return time.perf_counter() - started, result


def settle():
    """Flushes earlier runs' writes and lets the disk go idle, so each run starts alike."""
    subprocess.run(["sync"])
    time.sleep(2)


class Contenders:
    """Each method runs one upload of `source` and returns (seconds, server RSS growth MiB or None)."""

    def __init__(self, source, source_sha, work):
        self.source, self.source_sha, self.work = source, source_sha, work

    def fresh(self, name):
        """An empty directory for the next run. Earlier runs' files are deleted first, before
        the sync: what a run wrote without fsync never reaches the disk, so it does not slow
        the next contender down (writeback of 1 GiB took the next run from ~1 GiB/s to ~250)."""
        for entry in os.listdir(self.work):
            shutil.rmtree(os.path.join(self.work, entry), ignore_errors=True)
        path = os.path.join(self.work, name)
        os.makedirs(path)
        settle()
        return path

    def dd(self):
        target = os.path.join(self.fresh("dd"), "dd.bin")
        seconds, _ = timed(subprocess.run, ["dd", f"if={self.source}", f"of={target}", "bs=8M", "conv=fdatasync", "status=none"])
        return seconds, None

    def mediagate(self, durable, chunk, client):
        data = self.fresh("mediagate")
        with mediagate(data, *([] if durable else ["--no-durable-uploads"])) as (server, base):
            token = register(base, "bench")
            port = int(base.rsplit(":", 1)[1])
            before = memory_mib(server.pid, "VmRSS")
            if client == "sendfile":
                seconds, location = timed(SendfileTusClient(port, token).upload, "/api/uploads", self.source, chunk)
            else:
                seconds, location = timed(tuspy_upload, base + "/api/uploads", self.source, chunk, token)
                location = location[len(base):]
            growth = memory_mib(server.pid, "VmHWM") - before
            while True:  # the pipeline hashes and sniffs the file off the request path
                try:
                    result = call(base, "GET", location, token=token)
                    if result.get("status") == "ready":
                        break
                except Exception:
                    pass
                time.sleep(0.1)
            assert result["attachment"]["sha256"] == self.source_sha, "stored bytes differ from the source"
        return seconds, growth

    def nginx_put(self):
        """nginx with WebDAV PUT: the body goes to a temporary file, then is renamed into place."""
        root = self.fresh("nginx")
        os.makedirs(os.path.join(root, "www"))
        server = f"root {root}/www; client_max_body_size 0; location / {{ dav_methods PUT; create_full_put_path on; }}"
        with nginx(root, server, http=f"client_body_temp_path {root}/body;") as base:
            seconds, _ = timed(subprocess.run, ["curl", "-sS", "-f", "-T", self.source, f"{base}/bench.bin", "-o", "/dev/null"])
        assert os.path.getsize(os.path.join(root, "www/bench.bin")) == SIZE
        return seconds, None

    def tuspyserver(self, chunk, client):
        """tuspyserver on uvicorn with uvloop and httptools."""
        app_dir = self.fresh("tuspyserver")
        with open(os.path.join(app_dir, "app.py"), "w") as f:
            f.write(textwrap.dedent(f"""\
                from fastapi import FastAPI
                from tuspyserver import create_tus_router
                app = FastAPI()
                app.include_router(create_tus_router(prefix="files", files_dir={app_dir + '/files'!r}, max_size={SIZE * 2}))
                """))
        port = free_port()
        command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", app_dir, "--host", "127.0.0.1", "--port", str(port),
                   "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"]
        with running(command, port) as server:
            before = memory_mib(server.pid, "VmRSS")
            if client == "tuspy":
                seconds, _ = timed(tuspy_upload, f"http://127.0.0.1:{port}/files/", self.source, chunk)
            else:
                seconds, _ = timed(SendfileTusClient(port).upload, "/files/", self.source, chunk)
            growth = memory_mib(server.pid, "VmHWM") - before
        return seconds, growth


def main():
    ensure_release_build()
    source, source_sha = random_source(SIZE)
    work = tempfile.mkdtemp(prefix=".upload-bench-", dir=os.path.join(ROOT, "Benchmarks"))
    run = Contenders(source, source_sha, work)
    small, large = CHUNKS
    contenders = {
        "dd conv=fdatasync": run.dd,
        f"mediagate durable, {small >> 20} MiB chunks": lambda: run.mediagate(True, small, "sendfile"),
        f"mediagate durable, {large >> 20} MiB chunks": lambda: run.mediagate(True, large, "sendfile"),
        f"mediagate no fsync, {small >> 20} MiB chunks": lambda: run.mediagate(False, small, "sendfile"),
        f"mediagate no fsync, {large >> 20} MiB chunks": lambda: run.mediagate(False, large, "sendfile"),
        f"mediagate no fsync, {small >> 20} MiB, tuspy": lambda: run.mediagate(False, small, "tuspy"),
        "nginx WebDAV PUT, curl -T": run.nginx_put,
        f"tuspyserver, {small >> 20} MiB chunks, tuspy": lambda: run.tuspyserver(small, "tuspy"),
        f"tuspyserver, {large >> 20} MiB chunks, tuspy": lambda: run.tuspyserver(large, "tuspy"),
        f"tuspyserver, {small >> 20} MiB, sendfile": lambda: run.tuspyserver(small, "sendfile"),
    }
    names = list(contenders)
    rates = {name: [] for name in names}
    growths = {name: [] for name in names}
    try:
        print(f"upload throughput, {SIZE >> 20} MiB over loopback, {ROUNDS} rounds, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
        for round in range(ROUNDS):
            order = names[round * 3 % len(names):] + names[:round * 3 % len(names)]
            for name in order:
                seconds, growth = contenders[name]()
                rates[name].append(rate(seconds))
                if growth is not None:
                    growths[name].append(growth)
                print(f"  round {round + 1}: {name:<40} {rate(seconds):7.1f} MiB/s", flush=True)
        print(f"\n  {'':<40} {'best':>8} {'median':>8}  MiB/s   server RSS growth (worst)")
        for name in names:
            grown = f"+{max(growths[name]):.1f} MiB" if growths[name] else ""
            print(f"  {name:<40} {max(rates[name]):8.1f} {statistics.median(rates[name]):8.1f}          {grown}")

        best = {name: max(values) for name, values in rates.items()}
        print("\nratios of best rates (targets in brackets)")
        for chunk in CHUNKS:
            mib = chunk >> 20
            durable, relaxed = best[f"mediagate durable, {mib} MiB chunks"], best[f"mediagate no fsync, {mib} MiB chunks"]
            tuspyserver = best[f"tuspyserver, {mib} MiB chunks, tuspy"]
            print(f"  {mib:>2} MiB chunks: durable / dd {durable / best['dd conv=fdatasync']:.2f} [>= 0.8]"
                  f"   no fsync / nginx {relaxed / best['nginx WebDAV PUT, curl -T']:.2f} [>= 0.8]"
                  f"   no fsync / tuspyserver {relaxed / tuspyserver:.2f} [>= 1.5]")
        mib = small >> 20
        print(f"  the same client on both sides, {mib} MiB chunks, no fsync: tuspy {best[f'mediagate no fsync, {mib} MiB, tuspy'] / best[f'tuspyserver, {mib} MiB chunks, tuspy']:.2f},"
              f" sendfile client {best[f'mediagate no fsync, {mib} MiB chunks'] / best[f'tuspyserver, {mib} MiB, sendfile']:.2f}")
        worst = max(g for name in names if name.startswith("mediagate") for g in growths[name])
        print(f"  mediagate server RSS growth, worst run: {worst:.1f} MiB [< 32]")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
