"""API fuzzing with schemathesis over Docs/openapi.yaml, against the release binary (issue #13).

Every operation gets generated requests, valid and not, from a logged-in user, with path ids
that are half the time ones that exist (a room, a message, a file, an upload seeded before the
run) and half the time whatever schemathesis makes up. Each response must not be a 5xx and must
match the document: its status is listed, its content type and headers are the ones declared,
its body fits the schema. Fixed seed and a bounded number of examples, so a run is repeatable
and takes about a minute.

    MEDIAGATE_BIN=.build/release/mediagate python3 -m pytest -q Tests/Fuzz
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import zlib

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("MEDIAGATE_BIN", os.path.join(ROOT, ".build/release/mediagate"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
# Rate limits off: a fuzzer from one address registers and posts far faster than any person,
# and answers that are all 429 would test nothing else. The 429s are documented all the same.
NO_RATE_LIMITS = {name: {"perMinute": 0, "burst": 0}
                  for name in ("registrationsPerAddress", "messagesPerUser", "roomActionsPerUser", "uploadsPerUser")}


def call(base, method, path, body=None, token=None, headers=None, data=None):
    request = urllib.request.Request(base + path, method=method, data=data if data is not None else
                                     (json.dumps(body).encode() if body is not None else None))
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read()
        return response, (json.loads(text) if text else None)


@pytest.fixture(scope="session")
def gateway():
    """`mediagate serve` on a free loopback port with a user, a room, a message, a file and an
    unfinished upload in it; yields the base URL, the user's token and those ids."""
    assert os.access(BINARY, os.X_OK), f"build the gateway first: {BINARY}"
    data = tempfile.mkdtemp(prefix="mediagate-fuzz-")
    config = os.path.join(data, "config.json")
    with open(config, "w") as f:
        json.dump({"passwordHashCost": 4, "rateLimits": NO_RATE_LIMITS, "maxFailedLoginsPerAddress": 100000,
                   "maxFailedLoginsPerUser": 100000, "maxFailedLoginsPerUserAllAddresses": 100000}, f)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(os.path.join(data, "server.log"), "w")
    process = subprocess.Popen([BINARY, "serve", "--port", str(port), "--data-dir", data, "--config", config],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/healthz", timeout=1).read()
                break
            except OSError:
                assert process.poll() is None, "the gateway exited at start-up"
                time.sleep(0.1)
        _, login = call(base, "POST", "/api/auth/register", {"username": "fuzzer", "password": "fuzzing password"})
        token = login["access_token"]
        _, room = call(base, "POST", "/api/rooms", {"name": "fuzzing"}, token)
        _, message = call(base, "POST", "/api/messages", {"room_id": room["id"], "content": "seed"}, token)
        boundary = "fuzzboundary"
        with open(os.path.join(ROOT, "samples/media/progressive.jpg"), "rb") as f:
            photo = f.read()
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"photo.jpg\"\r\n"
                f"Content-Type: image/jpeg\r\n\r\n").encode() + photo + f"\r\n--{boundary}--\r\n".encode()
        _, upload = call(base, "POST", "/api/upload-file", token=token, data=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        response, _ = call(base, "POST", "/api/uploads", token=token, data=b"",
                           headers={"Tus-Resumable": "1.0.0", "Upload-Length": "100"})
        tus_id = response.headers["Location"].rsplit("/", 1)[-1]
        yield {"base": base, "token": token, "process": process, "log": os.path.join(data, "server.log"),
               "ids": {"roomId": room["id"], "messageId": message["id"], "fileId": upload["file_id"], "uploadId": tus_id}}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def api_schema(gateway):
    schema = schemathesis.openapi.from_path(os.path.join(ROOT, "Docs/openapi.yaml"))
    schema.config.update(base_url=gateway["base"])
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")
# tus appends are bytes like any other.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@schema.parametrize()
@seed(13)
@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_operation_answers_as_documented(case, gateway):
    if case.path_parameters:
        # Half the cases aim at things that exist, chosen by a stable hash of the generated ones.
        if zlib.crc32(json.dumps(case.path_parameters, sort_keys=True, default=str).encode()) % 2 == 0:
            for name in case.path_parameters:
                if name in gateway["ids"]:
                    case.path_parameters[name] = gateway["ids"][name]
    headers = dict(case.headers or {})
    # Logout would end the fuzzer's own session: it gets a session of its own each time.
    if case.path == "/api/auth/logout":
        _, login = call(gateway["base"], "POST", "/api/auth/login", {"username": "fuzzer", "password": "fuzzing password"})
        token = login["access_token"]
    else:
        token = gateway["token"]
    headers.setdefault("Authorization", f"Bearer {token}")
    case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)
    assert gateway["process"].poll() is None, "the gateway exited"
