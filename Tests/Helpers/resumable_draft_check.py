"""Checks the gateway's IETF resumable uploads on the wire, one interop version at a time, with
raw sockets (Python's http.client takes a 104 for the final response).

    resumable_draft_check.py PORT TOKEN OTHER_TOKEN SAMPLE DATABASE [--proxy-port P]

For each of interop versions 3, 5, 6, 7 and 8: creation in one request (104, then the final
answer), creation in parts with offset retrieval, appends and completion, cancellation, and
every refusal: wrong offset, completed upload, missing or wrong headers, inconsistent lengths,
sizes over the limit, another user's upload, versions not served. With --proxy-port (a
fault_proxy.py that cuts every connection at --cut-at bytes), the seed app's multipart upload of
SAMPLE is sent with the interop 3 and 6 headers through the proxy, cut at 40 %, resumed, and its
final answer compared with the plain request's; DATABASE (the server's SQLite) proves one stored
file each. Prints every exchange (a wire trace) and ends with "ok"; exits 1 on the first failure.
"""
import argparse
import hashlib
import json
import os
import socket
import sqlite3
import struct
import sys
import time

MISMATCH = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
COMPLETED = "https://iana.org/assignments/http-problem-types#completed-upload"
INCONSISTENT = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"


class Failure(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise Failure(what)


class Response:
    def __init__(self, status, reason, headers, body):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body

    def header(self, name):
        return self.headers.get(name.lower())

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        lines = [f"HTTP/1.1 {self.status} {self.reason}"] + [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body:
            lines.append("")
            # A stored file's bytes are summarised: raw, a NUL in them cut the test runner's log.
            try:
                lines.append(self.body[:300].decode("utf-8"))
            except UnicodeDecodeError:
                lines.append(f"[{len(self.body)} bytes, not text]")
        return "\n".join(lines)


def read_head(stream):
    line = stream.readline()
    if not line:
        raise ConnectionError("connection closed before a response")
    parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    status = int(parts[1])
    headers = {}
    while True:
        line = stream.readline().decode("latin-1").rstrip("\r\n")
        if not line:
            break
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, parts[2] if len(parts) > 2 else "", headers


class Exchange:
    """One request on its own connection: its interim responses and its final one."""

    def __init__(self, port, method, path, headers, body=b"", cut_after=None, note=""):
        self.interim, self.final = [], None
        request = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        for name, value in headers.items():
            request += f"{name}: {value}\r\n"
        if body or method in ("POST", "PATCH", "PUT"):
            request += f"Content-Length: {len(body)}\r\n"
        request += "Connection: close\r\n\r\n"
        print(f"\n>>> {note}\n{request.rstrip()}" + (f"\n[{len(body)} bytes]" if body else ""))
        connection = socket.create_connection(("127.0.0.1", port), timeout=120)
        stream = connection.makefile("rb")
        try:
            try:
                connection.sendall(request.encode("latin-1"))
                connection.sendall(body if cut_after is None else body[:cut_after])
            except OSError as error:
                print(f"(sending stopped: {error})")
            while True:
                try:
                    status, reason, fields = read_head(stream)
                except (ConnectionError, OSError) as error:
                    print(f"<<< (no final response: {error})")
                    return
                if 100 <= status < 200:
                    response = Response(status, reason, fields, b"")
                    print(f"<<<\n{response!r}")
                    self.interim.append(response)
                    continue
                length = int(fields.get("content-length", "0"))
                content = b"" if method == "HEAD" or status in (204, 304) else stream.read(length)
                self.final = Response(status, reason, fields, content)
                print(f"<<<\n{self.final!r}")
                return
        finally:
            stream.close()
            connection.close()


def abort(connection):
    """Closes with a reset, as a dropped network does to the server's reads."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    connection.close()


class Draft:
    def __init__(self, version, port, token):
        self.version, self.port, self.token = version, port, token

    def headers(self, complete=None, offset=None, extra=None, version=None):
        fields = {"Authorization": f"Bearer {self.token}", "Upload-Draft-Interop-Version": str(version or self.version)}
        if complete is not None:
            if self.version == 3:
                fields["Upload-Incomplete"] = "?0" if complete else "?1"
            else:
                fields["Upload-Complete"] = "?1" if complete else "?0"
        if offset is not None:
            fields["Upload-Offset"] = str(offset)
        fields.update(extra or {})
        return fields

    def append_headers(self, complete, offset):
        extra = {"Content-Type": "application/partial-upload"} if self.version >= 6 else {}
        return self.headers(complete, offset, extra)

    def completeness(self, response):
        """What a response says of completeness, in this version's header."""
        if self.version == 3:
            value = response.header("Upload-Incomplete")
            return None if value is None else value == "?0"
        value = response.header("Upload-Complete")
        return None if value is None else value == "?1"

    def send(self, method, path, headers, body=b"", note="", cut_after=None):
        exchange = Exchange(self.port, method, path, headers, body, cut_after, f"interop {self.version}: {note}")
        return exchange

    def check_announced(self, exchange):
        expect(len(exchange.interim) == 1, f"one 104 expected, got {[r.status for r in exchange.interim]}")
        announced = exchange.interim[0]
        expect(announced.status == 104, f"interim status {announced.status}")
        expect(announced.header("Upload-Draft-Interop-Version") == str(self.version), "the 104 echoes the interop version")
        location = announced.header("Location")
        expect(location and location.startswith("/api/uploads/"), f"the 104 names the upload resource: {location}")
        if self.version >= 6:
            limits = dict(pair.strip().split("=") for pair in announced.header("Upload-Limit").split(","))
            expect("max-size" in limits, "the 104 carries Upload-Limit max-size")
        else:
            expect(announced.header("Upload-Limit") is None, "no Upload-Limit before interop 6")
        return location

    def check_limits(self, response):
        if self.version < 6:
            expect(response.header("Upload-Limit") is None, "no Upload-Limit before interop 6")
            return
        limits = dict(pair.strip().split("=") for pair in response.header("Upload-Limit").split(","))
        lifetime = "expires" if self.version == 6 else "max-age"
        expect("max-size" in limits and lifetime in limits, f"Upload-Limit has max-size and {lifetime}: {limits}")


def stored_file(port, token, location, data):
    """Waits for the pipeline to store the upload; checks the file's bytes."""
    # A busy machine may take longer than one wait: 202 means still processing, so ask again.
    for _ in range(4):
        exchange = Exchange(port, "GET", f"{location}?wait=30", {"Authorization": f"Bearer {token}"}, note="what the upload became")
        if exchange.final.status != 202:
            break
    expect(exchange.final.status == 200, f"the upload was stored: {exchange.final.status}")
    file_id = exchange.final.json()["file_id"]
    stored = Exchange(port, "GET", f"/api/files/{file_id}", {"Authorization": f"Bearer {token}"}, note="the stored file")
    expect(hashlib.sha256(stored.final.body).hexdigest() == hashlib.sha256(data).hexdigest(), "stored bytes are the uploaded ones")


def check_version(version, port, token, other_token):
    draft = Draft(version, port, token)
    data = os.urandom(300_000)
    name = {"Content-Disposition": 'inline; filename="report.bin"', "Content-Type": "application/octet-stream"}

    # Creation with the whole representation: 104 first, then the endpoint's answer.
    whole = draft.send("POST", "/api/uploads", draft.headers(True, extra=name), data, "creation, complete in one request")
    location = draft.check_announced(whole)
    expect(whole.final.status == 201, f"created: {whole.final.status}")
    expect(draft.completeness(whole.final) is True, "the final answer says complete")
    expect(whole.final.header("Location") == location, "the final answer's Location is the 104's")
    expect(whole.final.json()["status"] == "processing", "the body says processing")
    stored_file(port, token, location, data)

    # Appending to a completed upload is refused, and changes nothing.
    more = draft.send("PATCH", location, draft.append_headers(True, len(data)), b"x" * 10, "append to a completed upload")
    expect(more.final.status == 400, f"completed upload refused: {more.final.status}")
    if version >= 6:
        expect(more.final.header("Content-Type") == "application/problem+json", "a problem document")
        expect(more.final.json()["type"] == COMPLETED, "problem type completed-upload")

    # Creation in parts: the first 40 %, then appends.
    first, second = 120_000, 90_000
    extra = dict(name)
    if version >= 7:
        extra["Upload-Length"] = str(len(data))
    part = draft.send("POST", "/api/uploads", draft.headers(False, extra=extra), data[:first], "creation with the first part")
    location = draft.check_announced(part)
    expect(part.final.status == 201, f"created: {part.final.status}")
    expect(part.final.header("Location") == location, "the final Location is the 104's")
    expect(part.final.header("Upload-Offset") == str(first), f"offset after creation: {part.final.header('Upload-Offset')}")
    expect(draft.completeness(part.final) is False, "creation in parts is not complete")
    draft.check_limits(part.final)

    head = draft.send("HEAD", location, draft.headers(), note="offset retrieval")
    expect(head.final.status == 204, f"offset retrieval: {head.final.status}")
    expect(head.final.header("Upload-Offset") == str(first), "offset retrieval says the offset")
    expect(draft.completeness(head.final) is False, "offset retrieval says incomplete")
    expect(head.final.header("Cache-Control") == "no-store", "offset retrieval is not cached")
    if version >= 7:
        expect(head.final.header("Upload-Length") == str(len(data)), "offset retrieval says the length")
    draft.check_limits(head.final)

    # Refusals on the way; none of them moves the offset.
    wrong = draft.send("PATCH", location, draft.append_headers(False, first + 5), data[first:first + 10], "append at the wrong offset")
    expect(wrong.final.status == 409, f"wrong offset: {wrong.final.status}")
    expect(wrong.final.header("Upload-Offset") == str(first), "409 names the right offset")
    if version >= 6:
        problem = wrong.final.json()
        expect(problem["type"] == MISMATCH, "problem type mismatching-upload-offset")
        expect(problem["expected-offset"] == first and problem["provided-offset"] == first + 5, f"offsets in the problem: {problem}")
    no_offset = draft.send("PATCH", location, draft.append_headers(False, None), b"abc", "append without Upload-Offset")
    expect(no_offset.final.status == 400, f"no offset: {no_offset.final.status}")
    if version >= 6:
        plain = draft.send("PATCH", location, draft.headers(False, first, {"Content-Type": "application/octet-stream"}), b"abc",
                           "append that is not application/partial-upload")
        expect(plain.final.status == 415, f"wrong media type: {plain.final.status}")
    if version >= 5:
        unsaid = dict(draft.append_headers(False, first))
        del unsaid["Upload-Complete"]
        silent = draft.send("PATCH", location, unsaid, b"abc", "append without Upload-Complete")
        expect(silent.final.status == 400, f"no Upload-Complete: {silent.final.status}")
    if version <= 6:
        stateful = draft.send("HEAD", location, draft.headers(offset=first), note="offset retrieval carrying an offset")
        expect(stateful.final.status == 400, f"HEAD with Upload-Offset: {stateful.final.status}")
    foreign = Draft(version, port, other_token).send("HEAD", location, Draft(version, port, other_token).headers(),
                                                     note="another user's upload")
    expect(foreign.final.status == 404, f"another user's upload: {foreign.final.status}")
    unknown = draft.send("HEAD", location, draft.headers(version=99), note="an interop version not served")
    expect(unknown.final.status == 400, f"unknown version: {unknown.final.status}")
    if version >= 7:
        clash = draft.send("PATCH", location, draft.headers(True, first, {"Content-Type": "application/partial-upload",
                                                                              "Upload-Length": str(len(data) + 1)}),
                           data[first:], "completion whose length contradicts the upload's")
        expect(clash.final.status == 400 and clash.final.json()["type"] == INCONSISTENT, f"inconsistent length: {clash.final.status}")

    middle = draft.send("PATCH", location, draft.append_headers(False, first), data[first:first + second], "append, not the end")
    expect(middle.final.status == (204 if version >= 7 else 201), f"append status: {middle.final.status}")
    expect(middle.final.header("Upload-Offset") == str(first + second), "append answers the new offset")
    expect(draft.completeness(middle.final) is False, "append says incomplete")

    last = draft.send("PATCH", location, draft.append_headers(True, first + second), data[first + second:], "the last append")
    expect(last.final.status == 201, f"completed by append: {last.final.status}")
    expect(draft.completeness(last.final) is True, "the last append's answer says complete")
    stored_file(port, token, location, data)

    # Cancellation.
    doomed = draft.send("POST", "/api/uploads", draft.headers(False, extra=name), data[:1000], "creation to cancel")
    doomed_location = draft.check_announced(doomed)
    if version <= 6:
        refused = draft.send("DELETE", doomed_location, draft.headers(complete=False), note="cancellation carrying completeness")
        expect(refused.final.status == 400, f"DELETE with completeness: {refused.final.status}")
    gone = draft.send("DELETE", doomed_location, draft.headers(), note="cancellation")
    expect(gone.final.status == 204, f"cancelled: {gone.final.status}")
    after = draft.send("HEAD", doomed_location, draft.headers(), note="offset of a cancelled upload")
    expect(after.final.status == 404, f"cancelled upload is gone: {after.final.status}")

    # Refused before any resource exists: no 104.
    big = draft.send("POST", "/api/uploads", draft.headers(False, extra={"Upload-Length": str(1 << 40)}), b"", "creation over max-size")
    if version >= 6:
        expect(big.final.status == 413 and not big.interim, f"over max-size: {big.final.status}, {len(big.interim)} interim")
    anonymous = Exchange(port, "POST", "/api/uploads", {"Upload-Draft-Interop-Version": str(version), "Upload-Complete": "?1"}, b"abc",
                         note=f"interop {version}: creation without a token")
    expect(anonymous.final.status == 401 and not anonymous.interim, "no token: 401 and no 104")
    mixed = draft.send("POST", "/api/uploads", draft.headers(True, extra={"Upload-Length": "5"}), b"abc", "creation with two lengths")
    expect(mixed.final.status == 400 and not mixed.interim, f"inconsistent lengths at creation: {mixed.final.status}")
    offset_at_creation = draft.send("POST", "/api/uploads", draft.headers(True, offset=0), b"abc", "creation carrying Upload-Offset")
    expect(offset_at_creation.final.status == 400 and not offset_at_creation.interim, "creation with an offset refused")

    # Chunked creation completed by an empty append.
    started = draft.send("POST", "/api/uploads", draft.headers(False, extra=name), data[:5000], "creation of an upload of unsaid length")
    started_location = draft.check_announced(started)
    ended = draft.send("PATCH", started_location, draft.append_headers(True, 5000), b"", "empty append that completes it")
    expect(ended.final.status == 201 and draft.completeness(ended.final) is True, f"completed by an empty append: {ended.final.status}")
    stored_file(port, token, started_location, data[:5000])


def multipart_body(sample):
    """The seed app's request: field `file`, a generated name, the part's type."""
    boundary = "Boundary-" + os.urandom(8).hex().upper()
    with open(sample, "rb") as handle:
        content = handle.read()
    name = f"video_{int(time.time())}_{os.urandom(4).hex()}.mp4"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def comparable(answer):
    """The seed's answer without what differs between two uploads of one file (names, URLs, ids)."""
    attachment = {k: v for k, v in answer["attachment"].items() if k not in ("url", "thumbnailUrl", "name", "id")}
    return {"keys": sorted(answer), "file_size": answer["file_size"], "mime_type": answer["mime_type"],
            "message": answer["message"], "attachment": attachment}


def file_count(database):
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT COUNT(*) FROM files").fetchone()[0]


def check_multipart(version, port, proxy_port, cut, token, sample, database, seed_request, plain):
    draft = Draft(version, port, token)
    content_type, body = seed_request
    before = file_count(database)
    headers = draft.headers(True, extra={"Content-Type": content_type})
    print(f"\n>>> interop {version}: the seed's multipart upload through the proxy, cut after {cut} bytes of {len(body)}")
    interrupted = Exchange(proxy_port, "POST", "/api/upload-file", headers, body, note=f"interop {version}: seed upload, cut by the proxy")
    location = draft.check_announced(interrupted)
    expect(interrupted.final is None, "the proxy cut the request before any final answer")
    # The server keeps what arrived once it sees the connection gone. Watch with tus's HEAD,
    # which (unlike the draft's) does not stop a request still writing the upload.
    stored = -1
    for _ in range(150):
        watch = Exchange(port, "HEAD", location, {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0"},
                         note="tus HEAD: has the server stored the bytes before the cut?")
        offset = int(watch.final.header("Upload-Offset") or 0)
        if offset > 0 and offset == stored:
            break
        stored = offset
        time.sleep(0.2)
    head = draft.send("HEAD", location, draft.headers(), note="where to resume")
    expect(head.final.status == 204, f"offset retrieval after the cut: {head.final.status}")
    offset = int(head.final.header("Upload-Offset"))
    expect(0 < offset <= cut, f"the bytes before the cut were kept: {offset} of {cut}")
    resumed = draft.send("PATCH", location, draft.append_headers(True, offset), body[offset:], "the rest of the seed upload")
    expect(resumed.final.status == 200, f"the seed's answer: {resumed.final.status} {resumed.final.body[:200]}")
    expect(draft.completeness(resumed.final) is True, "the answer says complete")
    answer = resumed.final.json()
    expect(comparable(answer) == comparable(plain), f"same answer as the plain upload:\n{comparable(answer)}\n{comparable(plain)}")
    fetched = Exchange(port, "GET", answer["file_url"], {}, note="the file, by the URL the seed app loads")
    with open(sample, "rb") as handle:
        expect(fetched.final.body == handle.read(), "the stored file is the sample")
    expect(file_count(database) == before + 1, f"one stored file: {file_count(database) - before}")
    gone = draft.send("HEAD", location, draft.headers(), note="the resource after the answer")
    expect(gone.final.status == 404, f"the resource is released once answered: {gone.final.status}")
    return offset, len(body)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("token")
    parser.add_argument("other_token")
    parser.add_argument("sample")
    parser.add_argument("database")
    parser.add_argument("--proxy-port", type=int)
    parser.add_argument("--cut-at", type=int, default=0, help="where the proxy cuts, in bytes sent upstream")
    options = parser.parse_args()
    try:
        for version in (3, 5, 6, 7, 8):
            check_version(version, options.port, options.token, options.other_token)
            print(f"\n=== interop {version}: ok")
        if options.proxy_port:
            # One request body for all: the answers must then be equal but for ids and URLs.
            seed_request = content_type, body = multipart_body(options.sample)
            plain = Exchange(options.port, "POST", "/api/upload-file",
                             {"Authorization": f"Bearer {options.token}", "Content-Type": content_type}, body, note="the plain seed upload")
            expect(plain.final.status == 200 and not plain.interim, "the plain request is untouched: 200, no 104")
            unknown = Exchange(options.port, "POST", "/api/upload-file",
                               {"Authorization": f"Bearer {options.token}", "Content-Type": content_type,
                                "Upload-Draft-Interop-Version": "99", "Upload-Complete": "?1"}, body, note="a version not served")
            expect(unknown.final.status == 200 and not unknown.interim, "an unknown version is a plain request: 200, no 104")
            for version in (3, 6):
                offset, total = check_multipart(version, options.port, options.proxy_port, options.cut_at, options.token, options.sample,
                                                options.database, seed_request, plain.final.json())
                print(f"\n=== seed upload, interop {version}: cut at {offset} of {total} bytes, resumed, same answer, one file")
    except Failure as failure:
        print(f"\nFAILED: {failure}")
        sys.exit(1)
    print("\nok")


if __name__ == "__main__":
    sys.stdout.reconfigure(line_buffering=True)  # a trace that ends where the run did
    main()
