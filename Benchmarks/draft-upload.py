#!/usr/bin/env python3
"""The IETF resumable-upload draft beside tus: one 1 GiB file over loopback into one durable
mediagate server (release build), in one run.

  tus, sendfile client       create, then 8 MiB PATCHes sent with sendfile(2) on one connection
                             (each fdatasync'ed before its offset is acknowledged)
  draft, curl -T             one POST with Upload-Complete: ?1 and interop 8: the whole file in
                             one request, as URLSession sends it (the server commits every 16 MiB)
  mediagate upload --protocol tus / ietf
                             our libcurl client, end to end: the upload, the server's processing
                             (hashing 1 GiB), the message posted

Each contender runs ROUNDS times in a rotated order; every run checks that the stored file's
SHA-256 is the source's. The table shows best and median; the ratios use the best.

    Benchmarks/draft-upload.py
    SIZE_MIB=256 ROUNDS=1 Benchmarks/draft-upload.py      # a quicker run

Needs: curl, and the release build (made if missing).
"""
import json, os, shutil, statistics, subprocess, sys, tempfile, time

from benchlib import random_source, ROOT, BINARY, SendfileTusClient, call, ensure_release_build, mediagate, register

SIZE = int(os.environ.get("SIZE_MIB", 1024)) << 20
ROUNDS = int(os.environ.get("ROUNDS", 3))


def stored_sha(base, token, location):
    """Waits for the pipeline; returns the stored file's SHA-256."""
    while True:
        result = call(base, "GET", location + "?wait=30", token=token)
        if result.get("status") == "ready":
            return result["attachment"]["sha256"]


class Run:
    def __init__(self, source, source_sha, work):
        self.source, self.source_sha, self.work = source, source_sha, work

    def fresh(self):
        for entry in os.listdir(self.work):
            shutil.rmtree(os.path.join(self.work, entry), ignore_errors=True)
        subprocess.run(["sync"])
        time.sleep(2)
        return os.path.join(self.work, "data")

    def tus_sendfile(self):
        with mediagate(self.fresh()) as (_, base):
            token = register(base, "bench")
            started = time.perf_counter()
            location = SendfileTusClient(int(base.rsplit(":", 1)[1]), token).upload("/api/uploads", self.source, 8 << 20)
            seconds = time.perf_counter() - started
            assert stored_sha(base, token, location) == self.source_sha, "stored bytes differ"
        return seconds

    def draft_curl(self):
        with mediagate(self.fresh()) as (_, base):
            token = register(base, "bench")
            started = time.perf_counter()
            answer = subprocess.run(["curl", "-sS", "-f", "-X", "POST", "-T", self.source, "-H", f"Authorization: Bearer {token}",
                                     "-H", "Upload-Draft-Interop-Version: 8", "-H", "Upload-Complete: ?1",
                                     "-H", "Content-Disposition: inline; filename=\"bench.bin\"", "-H", "Expect:",
                                     f"{base}/api/uploads"], capture_output=True, check=True)
            seconds = time.perf_counter() - started
            location = json.loads(answer.stdout)["upload_id"]
            assert stored_sha(base, token, f"/api/uploads/{location}") == self.source_sha, "stored bytes differ"
        return seconds

    def client(self, protocol):
        with mediagate(self.fresh()) as (_, base):
            token = register(base, "bench")
            room = call(base, "POST", "/api/rooms", {"name": "bench"}, token=token)["id"]
            home = os.path.join(self.work, "home")
            started = time.perf_counter()
            result = subprocess.run([BINARY, "upload", self.source, "--server", base, "--token", token, "--room", str(room),
                                     "--protocol", protocol, "--checksum", "none", "--json", "--state", os.path.join(home, "state.jsonl")],
                                    capture_output=True, text=True, env={**os.environ, "HOME": home, "XDG_STATE_HOME": home})
            seconds = time.perf_counter() - started
            assert result.returncode == 0, result.stdout[-500:] + result.stderr[-500:]
            assert self.source_sha in result.stdout, "the posted attachment's SHA-256 is not the source's"
        return seconds


def main():
    ensure_release_build()
    source, source_sha = random_source(SIZE)
    work = tempfile.mkdtemp(prefix=".draft-bench-", dir=os.path.join(ROOT, "Benchmarks"))
    run = Run(source, source_sha, work)
    contenders = {
        "tus, sendfile client, 8 MiB PATCHes": run.tus_sendfile,
        "draft interop 8, curl -T, one POST": run.draft_curl,
        "mediagate upload --protocol tus": lambda: run.client("tus"),
        "mediagate upload --protocol ietf": lambda: run.client("ietf"),
    }
    names = list(contenders)
    rates = {name: [] for name in names}
    try:
        print(f"IETF draft vs tus, {SIZE >> 20} MiB over loopback, durable server, {ROUNDS} rounds, "
              f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores")
        for round in range(ROUNDS):
            for name in names[round % len(names):] + names[:round % len(names)]:
                seconds = contenders[name]()
                rates[name].append(SIZE / seconds / (1 << 20))
                print(f"  round {round + 1}: {name:<40} {rates[name][-1]:7.1f} MiB/s", flush=True)
        print(f"\n  {'':<40} {'best':>8} {'median':>8}  MiB/s")
        for name in names:
            print(f"  {name:<40} {max(rates[name]):8.1f} {statistics.median(rates[name]):8.1f}")
        best = {name: max(values) for name, values in rates.items()}
        print("\nratios of best rates [target >= 0.9]")
        print(f"  draft (curl, one request) / tus (sendfile, 8 MiB): {best[names[1]] / best[names[0]]:.2f}")
        print(f"  mediagate upload, ietf / tus (end to end):         {best[names[3]] / best[names[2]]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
