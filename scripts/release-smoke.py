#!/usr/bin/env python3
"""Smoke check of the release binary, which is what users run (CI runs it after the tests).

1. `mediagate probe --json --thumbnails DIR` over every file in samples/ (media, hostile,
   real-world): one line per file, in input order, each line's attachment named after its own
   path, and a thumbnail file for every file that has a picture (a BlurHash). The release build once printed one line for 32 files,
   carrying another file's attachment, and exited 0.
2. `mediagate serve` from the release binary on 127.0.0.1 answers a sign-up and a multipart
   upload with curl, and serves the bytes back by the upload's capability name (without the
   photo's GPS, which it strips).

Usage: scripts/release-smoke.py [path/to/release/mediagate]
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".build/release/mediagate")
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message)


def probe_samples(work):
    files = []
    for folder in ("media", "hostile", "real-world"):
        directory = os.path.join(ROOT, "samples", folder)
        files += sorted(os.path.join(directory, name) for name in os.listdir(directory) if not name.startswith("."))
    thumbs = os.path.join(work, "thumbs")
    result = subprocess.run([BINARY, "probe", "--json", "--thumbnails", thumbs] + files,
                            capture_output=True, text=True, timeout=600)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    check(len(lines) == len(files), f"probe printed {len(lines)} lines for {len(files)} files")
    check(result.returncode == 1, f"probe exit status {result.returncode}; the hostile samples must make it 1")
    pictures = 0
    for path, line in zip(files, lines):
        check(line.get("path") == path, f"line for {path} names {line.get('path')}")
        attachment = line.get("attachment") or {}
        check(attachment.get("filename") == os.path.basename(path),
              f"{path}: attachment of {attachment.get('filename')} ({attachment.get('mimeType')})")
        if attachment.get("blurhash"):
            pictures += 1
            thumbnail = line.get("thumbnail")
            check(thumbnail is not None and os.path.getsize(thumbnail) > 0, f"{path}: no thumbnail written")
    written = len(os.listdir(thumbs)) if os.path.isdir(thumbs) else 0
    check(written == pictures, f"{written} thumbnails written for {pictures} files with a picture")
    print(f"probe: {len(lines)} lines for {len(files)} files, {written} thumbnails for {pictures} pictures")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curl(*arguments):
    result = subprocess.run(["curl", "-s", "--max-time", "30", "-w", "\n%{http_code}"] + list(arguments),
                            capture_output=True, timeout=60)
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status or 0), body


def serve_and_upload(work):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([BINARY, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
                               os.path.join(work, "data")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                if curl(f"{base}/healthz")[0] == 200:
                    break
            except subprocess.TimeoutExpired:
                pass
            time.sleep(0.1)
        status, body = curl("-H", "Content-Type: application/json", "-d",
                            '{"username":"smoke","password":"a long password"}', f"{base}/api/auth/signup")
        check(status == 200, f"signup answered {status}: {body[:200]!r}")
        token = json.loads(body)["access_token"]
        photo = os.path.join(ROOT, "samples/media/photo-exif-orientation-6.jpg")
        status, body = curl("-H", f"Authorization: Bearer {token}", "-F", f"file=@{photo};type=image/jpeg",
                            f"{base}/api/upload-file")
        check(status == 200, f"upload answered {status}: {body[:200]!r}")
        upload = json.loads(body)
        check(upload.get("mime_type") == "image/jpeg", f"upload sniffed {upload.get('mime_type')}")
        attachment = upload.get("attachment", {})
        check((attachment.get("width"), attachment.get("height")) == (300, 400),
              f"upload measured {attachment.get('width')}x{attachment.get('height')}, not 300x400 as displayed")
        status, served = curl(f"{base}/api/files/{upload['filename']}")
        # The sample carries GPS, which the server strips in place: the same length, the hash of
        # what is served, and ExifTool finds no location in it.
        with open(photo, "rb") as original:
            check(status == 200 and len(served) == len(original.read()), f"the capability name served {status}, {len(served)} bytes")
        check(hashlib.sha256(served).hexdigest() == attachment.get("sha256"), "the served bytes are not the ones the attachment names")
        served_path = os.path.join(work, "served.jpg")
        with open(served_path, "wb") as f:
            f.write(served)
        gps = subprocess.run(["exiftool", "-s3", "-gps:all", served_path], capture_output=True, text=True).stdout.strip()
        check(gps == "", f"the served photo still says where it was taken: {gps!r}")
        print(f"serve: sign-up, upload and download (without the photo's GPS) answered by the release binary on port {port}")
        resumable_draft(port, token, work)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(timeout=30)
            check(code == 0, f"the server exited {code} on SIGTERM")
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
            check(False, "the server did not stop within 30 s of SIGTERM")


def resumable_draft(port, token, work):
    """The IETF resumable-upload draft on the wire, every interop version, and the seed upload
    cut at 40 % by a proxy and resumed (Tests/Helpers/resumable_draft_check.py)."""
    status, body = curl("-H", "Content-Type: application/json", "-d",
                        '{"username":"smoke2","password":"a long password"}', f"http://127.0.0.1:{port}/api/auth/signup")
    check(status == 200, f"second signup answered {status}")
    other = json.loads(body)["access_token"]
    sample = os.path.join(ROOT, "samples/media/clip-h264.mp4")
    cut = os.path.getsize(sample) * 2 // 5
    proxy_port = free_port()
    helpers = os.path.join(ROOT, "Tests/Helpers")
    proxy = subprocess.Popen([sys.executable, os.path.join(helpers, "fault_proxy.py"), str(proxy_port), str(port),
                              os.path.join(work, "proxy.json"), "--cut-at", str(cut), "--rate", "200000"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        proxy.stdout.readline()  # "ready"
        result = subprocess.run([sys.executable, os.path.join(helpers, "resumable_draft_check.py"), str(port), token, other, sample,
                                 os.path.join(work, "data", "chat.sqlite"), "--proxy-port", str(proxy_port), "--cut-at", str(cut)],
                                capture_output=True, text=True, timeout=300)
        check(result.returncode == 0, "the IETF draft checks failed:\n" + result.stdout[-3000:] + result.stderr[-1000:])
        if result.returncode == 0:
            print("serve: the IETF resumable-upload draft, interop 3, 5, 6, 7 and 8, and the seed upload cut and resumed")
    finally:
        proxy.terminate()
        proxy.wait()


def main():
    check(os.access(BINARY, os.X_OK), f"no executable at {BINARY}")
    if failures:
        return 1
    work = tempfile.mkdtemp(prefix="mediagate-smoke-")
    try:
        probe_samples(work)
        serve_and_upload(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("release smoke check: " + ("ok" if not failures else f"{len(failures)} problem(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
