#!/usr/bin/env python3
"""Thumbnail service throughput with wrk on loopback, in one run, against thumbor and nginx.

  uncached   distinct 12 MP JPEGs (4000x3000) -> 320 px JPEG, every request a different image:
             mediagate's GET /api/files/{id}/thumbnail (thumbnail caches emptied first) vs thumbor
             (PIL engine, file loader, one process per core). mediagate makes small thumbnails
             from the picture its upload processing decoded (0.2 MP); "cold" deletes those as
             well, so that mediagate decodes the 12 MP original like thumbor does.
  cached     one thumbnail asked for again and again: mediagate with the signed URL its
             attachments carry (and with a Bearer token), thumbor from its result storage, and
             nginx serving a static 50 KB file (the floor any dynamic server is measured against)

Each wrk run reports requests/s and p50/p99 latency. Uncached runs use a path list longer than
any server gets through in the run, and the script checks that no image was asked for twice.
No figure is printed for a run with a failed or non-2xx request, and one answer per contender
and kind of run is fetched and checked: a JPEG, 320 px on its longer side (Pillow).
Every contender runs RUNS times (3) and keeps its best: uncached contenders in interleaved
rounds over disjoint slices of the images, cached ones back to back.

    Benchmarks/thumbnails.py
    SECONDS=5 VARIANTS=2 Benchmarks/thumbnails.py      # quicker

Needs: scripts/install-deps.sh --bench (wrk, nginx-light, thumbor, libvips-tools for the corpus).
"""
import contextlib, hashlib, io, os, re, shutil, subprocess, sys, tempfile, textwrap, time, urllib.request

from PIL import Image

from benchlib import ROOT, SendfileTusClient, call, ensure_release_build, free_port, mediagate, nginx, register, running

SECONDS = int(os.environ.get("SECONDS", 10))
# Each corpus JPEG is uploaded VARIANTS times with different trailing bytes: distinct content
# (so distinct cache keys for both servers), the same decoding work.
VARIANTS = int(os.environ.get("VARIANTS", 4))
RUNS = int(os.environ.get("RUNS", 3))
# Uncached runs are short: each round has len(images) / (2 * RUNS) distinct images to ask for.
UNCACHED_SECONDS = int(os.environ.get("UNCACHED_SECONDS", 1))
COLD_SECONDS = int(os.environ.get("COLD_SECONDS", 2))
CORES = os.cpu_count()
CORPUS = os.path.join(ROOT, "Benchmarks/corpus")

WRK_SCRIPT = """
-- Walks a list of paths: thread k of n asks for paths k, k+n, k+2n, ... so no two requests
-- in the run ask for the same one until the list runs out.
local threads = 0
function setup(thread) thread:set("first", threads); threads = threads + 1 end
function init(args)
    paths = {}
    for line in io.lines(args[1]) do paths[#paths + 1] = line end
    stride = tonumber(args[2]); n = first - stride
end
function request()
    n = n + stride
    return wrk.format("GET", paths[(n % #paths) + 1])
end
function done(summary, latency, requests)
    io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(99), summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def wrk(base, paths, work, connections, headers=(), seconds=SECONDS):
    """Runs wrk over `paths`; returns dict(rps, p50_ms, p99_ms, requests, bad)."""
    list_file = os.path.join(work, "paths.txt")
    with open(list_file, "w") as f:
        f.write("\n".join(paths) + "\n")
    script = os.path.join(work, "paths.lua")
    with open(script, "w") as f:
        f.write(WRK_SCRIPT)
    threads = min(CORES, connections)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", script]
    for header in headers:
        command += ["-H", header]
    output = subprocess.run(command + [base, "--", list_file, str(threads)], capture_output=True, text=True, check=True).stdout
    requests, duration_us, p50, p99, bad_status, errors = map(int, re.search(r"RESULT (.*)", output).group(1).split())
    return {"rps": requests / (duration_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000, "requests": requests,
            "bad": bad_status + errors}


def make_corpus(work):
    jpegs = sorted(os.path.join(CORPUS, "jpeg", name) for name in os.listdir(os.path.join(CORPUS, "jpeg")))
    variants = os.path.join(work, "distinct")
    os.makedirs(variants)
    paths = []
    for variant in range(VARIANTS):
        for source in jpegs:
            target = os.path.join(variants, f"v{variant}-{os.path.basename(source)}")
            shutil.copyfile(source, target)
            with open(target, "ab") as f:  # after the JPEG's end marker: decoders never read it
                f.write(f"variant {variant}".encode())
            paths.append(target)
    # The same order for both servers: image 1 of every variant, then image 2, ...
    return sorted(paths, key=lambda path: os.path.basename(path).split("-", 1)[1] + os.path.basename(path))


def check_thumbnail(url, headers=()):
    """Fails the run unless `url` answers a JPEG 320 px on its longer side."""
    request = urllib.request.Request(url, headers=dict(header.split(": ", 1) for header in headers))
    with urllib.request.urlopen(request) as response:
        body = response.read()
    with Image.open(io.BytesIO(body)) as image:
        if image.format != "JPEG" or max(image.size) != 320:
            sys.exit(f"CHECK FAILED: {url} answered a {image.format} of {image.size}, not a 320 px JPEG")


def show(name, result, distinct=None):
    if result["bad"]:
        sys.exit(f"CHECK FAILED: {name}: {result['bad']} requests failed or answered non-2xx")
    note = ""
    if distinct is not None:
        note = f"  ({result['requests']} requests, {distinct} distinct images{'' if result['requests'] <= distinct else ' -- LIST RAN OUT: shorten the run or raise VARIANTS'})"
    bad = f"  {result['bad']} errors/non-2xx" if result["bad"] else ""
    print(f"  {name:<46} {result['rps']:9.1f} req/s   p50 {result['p50_ms']:7.1f} ms   p99 {result['p99_ms']:7.1f} ms{note}{bad}", flush=True)
    return result


def best_of(runs, name, measure):
    """Rates swing ±20 % between runs on this shared machine: every contender gets the same
    number of runs and keeps its best."""
    results = [measure() for _ in range(runs)]
    return show(f"{name} (best of {runs})", max(results, key=lambda result: result["rps"]))


@contextlib.contextmanager
def mediagate_with(images, work):
    """A mediagate server holding `images`, its thumbnail cache emptied. Yields (base, token,
    file ids, signed thumbnail URL of the first, data directory)."""
    data = os.path.join(work, "mediagate")
    with mediagate(data, config={"userQuotaBytes": 0}) as (server, base):
        token = register(base, "bench")
        print(f"  (uploading {len(images)} images to mediagate...)", flush=True)
        client = SendfileTusClient(int(base.rsplit(":", 1)[1]), token)
        locations = [client.upload("/api/uploads", path, 64 << 20) for path in images]
        file_ids = []
        for location in locations:
            while (result := call(base, "GET", location, token=token)).get("status") != "ready":
                time.sleep(0.05)
            file_ids.append(result["file_id"])
        room = call(base, "POST", "/api/rooms", {"name": "bench"}, token)["id"]
        message = call(base, "POST", "/api/messages", {"room_id": room, "content": "", "client_id": "bench",
                                                       "attachment": {"file_id": file_ids[0]}}, token)
        signed = message["attachment"]["thumbnailUrl"]
        signed = signed[signed.index("/api/"):]
    # Upload completion made every 320 px JPEG already, on disk and in memory: empty the disk
    # cache, and restart to empty the memory one.
    for entry in os.listdir(os.path.join(data, "thumbs")):
        os.unlink(os.path.join(data, "thumbs", entry))
    with mediagate(data, config={"userQuotaBytes": 0}) as (server, base):
        yield base, token, file_ids, signed, data


@contextlib.contextmanager
def thumbor(images, work):
    """thumbor (PIL engine) with one process per core, reading `images`' directory, with file
    result storage so that a repeated URL is served from it; yields its base URL."""
    conf = os.path.join(work, "thumbor.conf")
    with open(conf, "w") as f:
        f.write(textwrap.dedent(f"""\
            LOADER = 'thumbor.loaders.file_loader'
            FILE_LOADER_ROOT_PATH = {os.path.dirname(images[0])!r}
            STORAGE = 'thumbor.storages.no_storage'
            RESULT_STORAGE = 'thumbor.result_storages.file_storage'
            RESULT_STORAGE_FILE_STORAGE_ROOT_PATH = {os.path.join(work, 'thumbor-results')!r}
            RESULT_STORAGE_STORES_UNSAFE = True
            QUALITY = 80
            """))
    port = free_port()
    command = ["thumbor", "--port", str(port), "--ip", "127.0.0.1", "--conf", conf, "--processes", str(CORES), "--log-level", "error"]
    with running(command, port, health="/healthcheck"):
        yield f"http://127.0.0.1:{port}"


def run_nginx(work):
    root = os.path.join(work, "nginx")
    os.makedirs(os.path.join(root, "www"))
    with open(os.path.join(root, "www", "static.jpg"), "wb") as f:
        f.write(os.urandom(50 * 1024))
    with nginx(root, f"root {root}/www;", http="sendfile on; tcp_nopush on;") as base:
        return best_of(RUNS, "nginx static 50 KB file", lambda: wrk(base, ["/static.jpg"], work, 32))


def main():
    ensure_release_build()
    if not os.path.isdir(os.path.join(CORPUS, "jpeg")) or len(os.listdir(os.path.join(CORPUS, "jpeg"))) < 50:
        subprocess.run([os.path.join(ROOT, "Benchmarks/make-corpus.sh")], check=True)
    work = tempfile.mkdtemp(prefix=".thumbnail-bench-", dir=os.path.join(ROOT, "Benchmarks"))
    try:
        images = make_corpus(work)
        print(f"thumbnails with wrk, {time.strftime('%Y-%m-%d')}, {CORES} cores; uncached: {2 * CORES} connections, "
              f"{RUNS} rounds over disjoint images; cached: 32 connections, {SECONDS} s, best of {RUNS}")
        with mediagate_with(images, work) as (base, token, file_ids, signed, data), thumbor(images, work) as thumbor_base:
            # Rounds over disjoint slices of the images, the contenders interleaved, so that a
            # slow spell of the shared machine hits all of them. "cold": the decoded pictures
            # of its slice are deleted first, so mediagate decodes the 12 MP originals, as
            # thumbor does; "uncached": made from the picture decoded at upload.
            per_round = len(images) // (2 * RUNS)
            auth = [f"Authorization: Bearer {token}"]
            rounds = {"mediagate uncached": [], "mediagate cold": [], "thumbor uncached": []}
            for r in range(RUNS):
                warm, cold = slice(2 * r * per_round, (2 * r + 1) * per_round), slice((2 * r + 1) * per_round, (2 * r + 2) * per_round)
                for path in images[cold]:
                    with open(path, "rb") as f:
                        sha = hashlib.sha256(f.read()).hexdigest()
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(data, "decoded", sha + ".jpg"))
                subprocess.run(["sync"])
                mediagate_paths = lambda part: [f"/api/files/{file_id}/thumbnail?w=320&format=jpeg" for file_id in file_ids[part]]
                thumbor_paths = [f"/unsafe/fit-in/320x320/{os.path.basename(path)}" for path in images[cold]]
                rounds["mediagate uncached"].append(wrk(base, mediagate_paths(warm), work, 2 * CORES, auth, seconds=UNCACHED_SECONDS))
                rounds["mediagate cold"].append(wrk(base, mediagate_paths(cold), work, 2 * CORES, auth, seconds=COLD_SECONDS))
                rounds["thumbor uncached"].append(wrk(thumbor_base, thumbor_paths, work, 2 * CORES, seconds=COLD_SECONDS))
                for name, results in rounds.items():
                    show(f"round {r + 1}: {name}", results[-1], per_round)
            # A run that asked for more images than its slice holds was partly cached: not counted.
            valid = {name: [result for result in results if result["requests"] <= per_round] for name, results in rounds.items()}
            best = {name: show(f"{name} (best of {len(results)} valid)", max(results, key=lambda result: result["rps"]))
                    for name, results in valid.items()}

            # What each kind of run was answered, fetched once more and checked.
            check_thumbnail(base + f"/api/files/{file_ids[0]}/thumbnail?w=320&format=jpeg", auth)
            check_thumbnail(base + f"/api/files/{file_ids[per_round + 1]}/thumbnail?w=320&format=jpeg", auth)
            check_thumbnail(thumbor_base + f"/unsafe/fit-in/320x320/{os.path.basename(images[per_round + 1])}")
            check_thumbnail(base + signed)
            with urllib.request.urlopen(base + signed) as response:
                print(f"  (the cached thumbnail: {len(response.read())} bytes of JPEG, checked)")
            cached_signed = best_of(RUNS, "mediagate cached, signed URL", lambda: wrk(base, [signed], work, 32))
            cached_bearer = best_of(RUNS, "mediagate cached, Bearer token",
                                    lambda: wrk(base, [f"/api/files/{file_ids[0]}/thumbnail"], work, 32, auth))
            thumbor_first = f"/unsafe/fit-in/320x320/{os.path.basename(images[0])}"
            subprocess.run(["curl", "-sf", "-o", "/dev/null", thumbor_base + thumbor_first], check=True)  # into its result storage
            thumbor_cached = best_of(RUNS, "thumbor cached (result storage)", lambda: wrk(thumbor_base, [thumbor_first], work, 32))
        static = run_nginx(work)

        print("\nratios of best rates (targets in brackets)")
        print(f"  uncached: mediagate / thumbor {best['mediagate uncached']['rps'] / best['thumbor uncached']['rps']:.2f} [>= 1.5]"
              f"   cold, both decoding the 12 MP originals: {best['mediagate cold']['rps'] / best['thumbor uncached']['rps']:.2f}")
        for name, result in (("signed URL", cached_signed), ("Bearer token", cached_bearer)):
            print(f"  cached, {name}: mediagate / nginx static {result['rps'] / static['rps']:.2f} [>= 0.5]"
                  f"   mediagate / thumbor cached {result['rps'] / thumbor_cached['rps']:.1f} [>= 10]")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
