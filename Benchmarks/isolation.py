#!/usr/bin/env python3
"""What decoding in a killable child process costs (#13), in one run: the same uploads to
`mediagate serve` with SVG and PDF decoded in-process (`"decodeWorker": ""`) and in a child per
file (the default), and the time a slow SVG takes each way.

  per file   FILES SVGs, PDFs and 12 MP JPEGs uploaded one after another (multipart, curl);
             the server's CPU time (its own, its decode workers', /proc) per file and the wall
             time per upload. Every answer is checked: size and BlurHash. A decode worker starts
             with the first SVG or PDF its media thread gets: its start-up is in the figures.
  slow SVG   one 350-byte SVG whose filter takes ~10 s to draw 1280 px wide, asked for as a
             1280 px thumbnail under a 3 s time limit: the wall time of the answer.

    Benchmarks/isolation.py            FILES=40
    FILES=10 Benchmarks/isolation.py

Needs: scripts/install-deps.sh --bench, the corpus (Benchmarks/make-corpus.sh, made if missing).
"""
import json, os, shutil, subprocess, sys, tempfile, time

from benchlib import BINARY, ROOT, ensure_release_build, mediagate, register

FILES = int(os.environ.get("FILES", 40))


def stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def server_cpu(pid):
    """CPU seconds of the server, the children it has waited for, and its live children (the
    decode workers, which live as long as the server)."""
    total = sum(int(stat_fields(pid)[i]) for i in (11, 12, 13, 14))
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = stat_fields(entry)
            except OSError:
                continue
            if fields[1] == str(pid):
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def corpus(work):
    """FILES distinct copies of each kind: the samples' drawing and PDF with a comment each,
    and the benchmark corpus's JPEGs. Returns {kind: (paths, expected (width, height))}."""
    os.makedirs(os.path.join(work, "files"))
    drawing = open(os.path.join(ROOT, "samples/media/drawing.svg")).read()
    pdf = open(os.path.join(ROOT, "samples/media/three-pages.pdf"), "rb").read()
    svgs, pdfs = [], []
    for n in range(FILES):
        svgs.append(os.path.join(work, "files", f"drawing-{n}.svg"))
        with open(svgs[-1], "w") as f:
            f.write(drawing + f"<!-- {n} -->\n")
        pdfs.append(os.path.join(work, "files", f"pages-{n}.pdf"))
        with open(pdfs[-1], "wb") as f:
            f.write(pdf + b"%% copy %d\n" % n)
    jpeg_dir = os.path.join(ROOT, "Benchmarks/corpus/jpeg")
    if not os.path.isdir(jpeg_dir) or len(os.listdir(jpeg_dir)) < FILES:
        subprocess.run([os.path.join(ROOT, "Benchmarks/make-corpus.sh")], check=True, env={**os.environ, "JPEGS": str(max(FILES, 50))})
    jpegs = sorted(os.path.join(jpeg_dir, name) for name in os.listdir(jpeg_dir))[:FILES]
    return {"SVG": (svgs, (240, 120)), "PDF": (pdfs, (612, 792)), "JPEG": (jpegs, (4000, 3000))}


def upload(base, token, path):
    result = subprocess.run(["curl", "-s", "-H", f"Authorization: Bearer {token}", "-F", f"file=@{path}", f"{base}/api/upload-file"],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def measure(mode, config, files, work):
    data = os.path.join(work, mode)
    results = {}
    with mediagate(data, config={"userQuotaBytes": 0, "maxMultipartBytes": 64 << 20, **config}) as (server, base):
        token = register(base, "bench")
        for kind, (paths, size) in files.items():
            before, started = server_cpu(server.pid), time.monotonic()
            for path in paths:
                answer = upload(base, token, path)
                attachment = answer.get("attachment") or {}
                if (attachment.get("width"), attachment.get("height")) != size or not attachment.get("blurhash"):
                    sys.exit(f"CHECK FAILED: {mode} {os.path.basename(path)}: {answer}")
            results[kind] = ((server_cpu(server.pid) - before) / len(paths), (time.monotonic() - started) / len(paths))
            print(f"  {mode:<10} {kind:<5} cpu {results[kind][0] * 1000:7.1f} ms/file   wall {results[kind][1] * 1000:7.1f} ms/upload", flush=True)
    return results


def slow_svg(mode, config, work):
    data = os.path.join(work, mode + "-slow")
    with mediagate(data, config={"mediaTimeLimitSeconds": 3, **config}) as (server, base):
        token = register(base, "bench")
        file_id = upload(base, token, os.path.join(ROOT, "samples/hostile/slow-filter.svg"))["file_id"]
        result = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", "--max-time", "120",
                                 "-H", f"Authorization: Bearer {token}", f"{base}/api/files/{file_id}/thumbnail?w=1280&format=png"],
                                capture_output=True, text=True, check=True)
        status, seconds = result.stdout.split()
        if status != "422":
            sys.exit(f"CHECK FAILED: the slow SVG's 1280 px thumbnail answered {status}, not 422 (timed out)")
        print(f"  {mode:<10} slow SVG, 1280 px under a 3 s limit: {float(seconds):6.2f} s", flush=True)
        return float(seconds)


def main():
    ensure_release_build()
    work = tempfile.mkdtemp(prefix="mediagate-isolation-")
    try:
        files = corpus(work)
        print(f"decode isolation, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {FILES} files of each kind")
        inside = measure("in-process", {"decodeWorker": ""}, files, work)
        isolated = measure("isolated", {"decodeWorker": BINARY}, files, work)
        slow_inside = slow_svg("in-process", {"decodeWorker": ""}, work)
        slow_isolated = slow_svg("isolated", {"decodeWorker": BINARY}, work)
        print("\nratios, isolated / in-process (target: JPEG CPU <= 1.10)")
        for kind in files:
            print(f"  {kind:<5} CPU per file {isolated[kind][0] / inside[kind][0]:5.2f}x   wall per upload {isolated[kind][1] / inside[kind][1]:5.2f}x")
        print(f"  slow SVG answered after {slow_isolated:.2f} s instead of {slow_inside:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
