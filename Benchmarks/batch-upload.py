#!/usr/bin/env python3
"""Batch upload, end to end: 200 files (~1 GiB) from one directory into a chat room, in one run,
against its peers.

  mediagate upload DIR --room N   probe each file (libmagic, libvips, FFmpeg), tus upload in 8 MiB
                                  sha256-checksummed chunks, wait for the server's attachment, post
                                  one message per file; 3 files at a time (its defaults)
  shell script                    the same steps with standard tools, file by file, as an operator
                                  would write it: `file --mime-type`, `ffprobe`, `curl -F` to the
                                  seed's multipart endpoint, `curl` to POST /api/messages
  shell script, 3 at a time       the same script under `xargs -P 3`, for reference
  tuspy                           each file uploaded by tuspy (8 MiB chunks), one after another,
                                  without probing or posting; timed to its last byte, and (a
                                  second row) to when the server had processed every upload, the
                                  point mediagate's run must reach before it can post

The files: 188 of the corpus's 12 MP JPEGs, its 4 first 1080p clips and 8 random 10 MiB
"documents" (Benchmarks/make-corpus.sh makes the corpus), hard-linked into one directory.
Every contender gets a fresh server (release build, defaults: durable uploads, fdatasync per
chunk; the multipart limit raised so the clips fit) and a fresh room; runs are rotated over
ROUNDS rounds, each starting from a synced disk, and the ratios use each contender's best.
After each run the room's history is checked: 200 messages (tuspy: 200 finished uploads).

    Benchmarks/batch-upload.py
    ROUNDS=1 Benchmarks/batch-upload.py
    ONLY="mediagate upload,tuspy, upload only" Benchmarks/batch-upload.py

Needs: scripts/install-deps.sh --bench (ffmpeg, file, curl, tuspy).
"""
import glob, os, resource, shutil, statistics, subprocess, sys, tempfile, time

from benchlib import BINARY, ROOT, call, cpu_seconds, ensure_release_build, mediagate, register

ROUNDS = int(os.environ.get("ROUNDS", 2))
CORPUS = os.path.join(ROOT, "Benchmarks/corpus")
CHUNK = 8 << 20

SHELL_SCRIPT = r"""#!/usr/bin/env bash
# What an operator would write: type, media info, upload, post, for each file.
set -euo pipefail
upload_one() {
  local f=$1 name mime id
  name=$(basename "$f")
  mime=$(file --brief --mime-type "$f")
  case "$mime" in
    image/*|video/*|audio/*)
      ffprobe -v error -show_entries stream=codec_name,width,height:format=duration -of json "$f" > /dev/null ;;
  esac
  id=$(curl -sSf -H "Authorization: Bearer $TOKEN" -F "file=@$f;type=$mime" "$SERVER/api/upload-file" \
       | sed -n 's/.*"file_id":"\([^"]*\)".*/\1/p')
  curl -sSf -o /dev/null -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
       -d "{\"room_id\":$ROOM,\"content\":\"$name\",\"client_id\":\"sh-$name\",\"attachment\":{\"file_id\":\"$id\"}}" \
       "$SERVER/api/messages"
}
export -f upload_one
if [ "${PARALLEL:-1}" -gt 1 ]; then
  find "$1" -maxdepth 1 -type f -print0 | xargs -0 -n 1 -P "$PARALLEL" bash -c 'upload_one "$0"'
else
  for f in "$1"/*; do upload_one "$f"; done
fi
"""


def make_batch(work):
    """Hard links to 200 corpus files (~1 GiB) in one directory; returns it and its size."""
    jpegs = sorted(glob.glob(os.path.join(CORPUS, "jpeg", "*.jpg")))[:188]
    clips = sorted(glob.glob(os.path.join(CORPUS, "mp4", "*.mp4")))[:4]
    if len(jpegs) < 188 or len(clips) < 4:
        sys.exit("run Benchmarks/make-corpus.sh first (200 JPEGs, 4+ videos)")
    documents = os.path.join(CORPUS, "documents")
    os.makedirs(documents, exist_ok=True)
    for i in range(8):
        path = os.path.join(documents, f"document-{i}.bin")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(os.urandom(10 << 20))
    batch = os.path.join(work, "batch")
    os.makedirs(batch)
    for source in jpegs + clips + sorted(glob.glob(os.path.join(documents, "*.bin")))[:8]:
        os.link(source, os.path.join(batch, os.path.basename(source)))
    names = os.listdir(batch)
    return batch, len(names), sum(os.path.getsize(os.path.join(batch, n)) for n in names)


def history_count(base, token, room):
    count, before = 0, None
    while True:
        page = call(base, "GET", f"/api/messages?room_id={room}&limit=100" + (f"&before={before}" if before else ""), token=token)
        if not page:
            return count
        count += len(page)
        before = page[-1]["id"]


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_mediagate(work, batch, base, token, room):
    state = os.path.join(work, "state.json")
    output = subprocess.run([BINARY, "upload", batch, "--server", base, "--token", token, "--room", str(room),
                             "--json", "--state", state, *os.environ.get("MEDIAGATE_ARGS", "").split()], capture_output=True, text=True)
    if output.returncode != 0:
        raise RuntimeError(f"mediagate upload failed: {output.stderr}{output.stdout[-2000:]}")


def run_shell(work, batch, base, token, room, parallel=1):
    script = os.path.join(work, "upload.sh")
    with open(script, "w") as f:
        f.write(SHELL_SCRIPT)
    env = {**os.environ, "SERVER": base, "TOKEN": token, "ROOM": str(room), "PARALLEL": str(parallel)}
    subprocess.run(["bash", script, batch], check=True, env=env, stdout=subprocess.DEVNULL)


def run_tuspy(work, batch, base, token, room):
    """Uploads only; then, untimed by the caller's clock, records when the server had finished
    processing every upload (what mediagate's own run has to wait for before it can post)."""
    from tusclient import client
    tus = client.TusClient(base + "/api/uploads", headers={"Authorization": f"Bearer {token}"})
    urls = []
    for name in sorted(os.listdir(batch)):
        uploader = tus.uploader(os.path.join(batch, name), chunk_size=CHUNK, metadata={"filename": name})
        uploader.upload()
        urls.append(uploader.url)
    uploaded = time.perf_counter()
    for url in urls:
        while call(base, "GET", url[len(base):], token=token).get("status") != "ready":
            time.sleep(0.01)
    return {"drained": time.perf_counter() - uploaded}


CONTENDERS = {
    "mediagate upload": (run_mediagate, True),
    "shell script": (run_shell, True),
    "shell script, 3 at a time": (lambda *a: run_shell(*a, parallel=3), True),
    "tuspy, upload only": (run_tuspy, False),
}


def main():
    ensure_release_build()
    base_work = tempfile.mkdtemp(prefix="work-batch-", dir=os.path.join(ROOT, "Benchmarks"))
    try:
        batch, files, size = make_batch(base_work)
        print(f"{files} files, {size / (1 << 20):.0f} MiB; {ROUNDS} rounds, rotated; best (median) seconds\n")
        names = [n for n in CONTENDERS if n in os.environ.get("ONLY", n)]  # ONLY="mediagate upload,tuspy, upload only"
        times = {name: [] for name in names}
        cpu = {name: [] for name in names}
        server_cpu = {name: [] for name in names}
        drained = []
        for round_number in range(ROUNDS):
            order = names[round_number % len(names):] + names[:round_number % len(names)]
            for name in order:
                run, posts = CONTENDERS[name]
                data = os.path.join(base_work, "server")
                shutil.rmtree(data, ignore_errors=True)
                subprocess.run(["sync"])
                time.sleep(2)
                with mediagate(data, config={"maxMultipartBytes": 256 << 20}) as (server, base):
                    token = register(base, "bench")
                    room = call(base, "POST", "/api/rooms", {"name": "batch"}, token=token)["id"]
                    cpu_before, server_before = children_cpu(), cpu_seconds(server.pid)
                    started = time.perf_counter()
                    extra = run(base_work, batch, base, token, room) or {}
                    elapsed = time.perf_counter() - started - extra.get("drained", 0)
                    if "drained" in extra:
                        drained.append(elapsed + extra["drained"])
                    cpu[name].append(children_cpu() - cpu_before)
                    server_cpu[name].append(cpu_seconds(server.pid) - server_before)
                    if posts:
                        posted = history_count(base, token, room)
                        if posted != files:
                            raise RuntimeError(f"{name}: {posted} messages for {files} files")
                times[name].append(elapsed)
                print(f"  round {round_number + 1}: {name:<28} {elapsed:6.2f} s  {size / elapsed / (1 << 20):6.0f} MiB/s", flush=True)
        print()
        best = {name: min(values) for name, values in times.items()}
        print(f"{'contender':<28} {'best s':>7} {'median s':>9} {'files/s':>8} {'MiB/s':>6} {'client CPU s':>13} {'server CPU s':>13}")
        for name in names:
            client_cpu = f"{min(cpu[name]):13.1f}" if name != "tuspy, upload only" else f"{'(in-process)':>13}"
            print(f"{name:<28} {best[name]:7.2f} {statistics.median(times[name]):9.2f} {files / best[name]:8.1f} "
                  f"{size / best[name] / (1 << 20):6.0f} {client_cpu} {min(server_cpu[name]):13.1f}")
        if drained:
            print(f"{'tuspy, until all processed':<28} {min(drained):7.2f} {statistics.median(drained):9.2f} "
                  f"{files / min(drained):8.1f} {size / min(drained) / (1 << 20):6.0f}")
            best["tuspy, until all processed"] = min(drained)
        print()
        ours = best.get("mediagate upload")
        for name, note in [("shell script", "target >= 2"), ("shell script, 3 at a time", "reference"),
                           ("tuspy, upload only", "target >= 1: no slower"),
                           ("tuspy, until all processed", "the same end state as ours, minus probing and posting")]:
            if ours and name in best:
                print(f"{name} / mediagate: {best[name] / ours:5.2f}x  ({note})")
    finally:
        shutil.rmtree(base_work, ignore_errors=True)


if __name__ == "__main__":
    main()
