"""What the benchmark scripts share: starting and stopping `mediagate serve` and its peers on
127.0.0.1, JSON calls, and reading a process's CPU time and memory from /proc."""
import contextlib, hashlib, json, os, signal, socket, subprocess, textwrap, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("MEDIAGATE", os.path.join(ROOT, ".build/release/mediagate"))


def ensure_release_build():
    if not os.path.exists(BINARY):
        subprocess.run(["swift", "build", "-c", "release", "--product", "mediagate", "--package-path", ROOT], check=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request) as response:
        text = response.read()
        return json.loads(text) if text else None


def wait_until_up(port, path="/", timeout=30):
    """Waits until something answers HTTP on the port (any status)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing answered on port {port}")


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def cpu_split(pid):
    """(user, kernel) CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / os.sysconf("SC_CLK_TCK"), int(fields[12]) / os.sysconf("SC_CLK_TCK")


def memory_mib(pid, field):
    """`VmRSS` (now) or `VmHWM` (peak so far) of a process, MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib(pid):
    return memory_mib(pid, "VmHWM")


@contextlib.contextmanager
def running(command, port, env=None, health="/", cwd=None):
    """Runs a server for the duration of a `with` block; stops it (SIGTERM, then SIGKILL) after."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd,
                               env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        wait_until_up(port, health)
        yield process
    finally:
        stop(process)


def stop(process):
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# The benchmarks measure the server's speed, not its rate limits: one client address registers
# hundreds of users and sends thousands of messages a second.
NO_RATE_LIMITS = {name: {"perMinute": 0, "burst": 0}
                  for name in ("registrationsPerAddress", "messagesPerUser", "roomActionsPerUser", "uploadsPerUser")}


@contextlib.contextmanager
def mediagate(data, *arguments, config=None, env=None):
    """`mediagate serve` (release build) on a free port with its data in `data`; yields (process, base URL)."""
    os.makedirs(data, exist_ok=True)
    settings = {"passwordHashCost": 4, "maxFailedLoginsPerAddress": 1000, "rateLimits": NO_RATE_LIMITS,
                "maxConnectionsPerAddress": 0, **(config or {})}
    with open(os.path.join(data, "config.json"), "w") as f:
        json.dump(settings, f)
    port = free_port()
    command = [BINARY, "serve", "--port", str(port), "--data-dir", data, "--config", os.path.join(data, "config.json"), *arguments]
    with running(command, port, env={"LOG_LEVEL": "warning", **(env or {})}, health="/healthz") as process:
        yield process, f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def nginx(root, server, http=""):
    """nginx with one worker per core, no access log, its files under `root`, serving the
    `server` block's directives on a free port; yields the base URL."""
    port = free_port()
    with open(os.path.join(root, "nginx.conf"), "w") as f:
        f.write(textwrap.dedent(f"""\
            {'user root;' if os.geteuid() == 0 else ''}
            worker_processes {os.cpu_count()};
            daemon off;
            pid {root}/nginx.pid;
            error_log {root}/error.log;
            events {{}}
            http {{
                access_log off;
                {http}
                server {{ listen 127.0.0.1:{port}; {server} }}
            }}
            """))
    with running(["nginx", "-p", root, "-c", os.path.join(root, "nginx.conf")], port):
        yield f"http://127.0.0.1:{port}"


def register(base, name, password="benchmark password"):
    return call(base, "POST", "/api/auth/register", {"username": name, "password": password})["access_token"]


class SendfileTusClient:
    """Just enough tus to time a server: create, then PATCH chunks whose bodies go out with
    sendfile(2) on one keep-alive connection."""

    def __init__(self, port, token=None):
        self.socket = socket.create_connection(("127.0.0.1", port))
        self.reader = self.socket.makefile("rb")
        self.token = token

    def request(self, method, path, headers, body_from=None):
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Tus-Resumable: 1.0.0"]
        if self.token:
            lines.append(f"Authorization: Bearer {self.token}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.socket.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        if body_from:
            descriptor, offset, count = body_from
            while count > 0:
                sent = os.sendfile(self.socket.fileno(), descriptor, offset, count)
                offset, count = offset + sent, count - sent
        status = int(self.reader.readline().split()[1])
        response = {}
        while (line := self.reader.readline().strip()):
            name, value = line.decode().split(":", 1)
            response[name.strip().lower()] = value.strip()
        length = int(response.get("content-length", 0))
        if length:
            self.reader.read(length)
        return status, response

    def upload(self, endpoint, path, chunk):
        size = os.path.getsize(path)
        status, headers = self.request("POST", endpoint, {"Upload-Length": size, "Content-Length": 0,
                                                          "Upload-Metadata": "filename YmVuY2guYmlu"})
        assert status == 201, f"create answered {status}"
        location = headers["location"]
        location = location[location.index("/", location.index("//") + 2):] if "//" in location else location
        descriptor = os.open(path, os.O_RDONLY)
        try:
            offset = 0
            while offset < size:
                count = min(chunk, size - offset)
                status, headers = self.request("PATCH", location, {"Content-Type": "application/offset+octet-stream",
                                                                   "Upload-Offset": offset, "Content-Length": count},
                                               body_from=(descriptor, offset, count))
                assert status == 204, f"PATCH at {offset} answered {status}"
                offset += count
                assert int(headers["upload-offset"]) == offset
        finally:
            os.close(descriptor)
        self.socket.close()
        return location


def percentile(values, fraction):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def random_source(size):
    """Benchmarks/corpus/upload-<MiB>m.bin, `size` random bytes (made once), and its SHA-256;
    reading it for the hash also warms the page cache for every contender."""
    corpus = os.path.join(ROOT, "Benchmarks/corpus")
    os.makedirs(corpus, exist_ok=True)
    source = os.path.join(corpus, f"upload-{size >> 20}m.bin")
    if not os.path.exists(source) or os.path.getsize(source) != size:
        print(f"making {size >> 20} MiB of random bytes...")
        subprocess.run(f"head -c {size} /dev/urandom > '{source}'", shell=True, check=True)
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        while (block := f.read(8 << 20)):
            digest.update(block)
    return source, digest.hexdigest()
