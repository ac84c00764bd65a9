"""The web client in a real browser: Debian's Chromium driven by Playwright (PyPI playwright
1.64.1, the release built for Chromium 156), against a real `mediagate serve` on 127.0.0.1.

Every page fails its test on a Content-Security-Policy violation, a script error, or a request
to any host but the gateway. Screenshots of the main views go to Docs/screenshots/.

    python3 -m pytest -q Tests/Browser           (MEDIAGATE_BIN picks the binary; debug by default)
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BINARY = os.environ.get("MEDIAGATE_BIN", os.path.join(ROOT, ".build/debug/mediagate"))
SAMPLES = os.path.join(ROOT, "samples/media")
SCREENSHOTS = os.path.join(ROOT, "Docs/screenshots")
PASSWORD = "a long password"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    """`mediagate serve` on a port of its own; `restart()` kills it with SIGKILL and starts it again."""

    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="mediagate-browser-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        # Quick password hashes, and no rate limits: each test registers and posts in a burst.
        limits = {name: {"perMinute": 0, "burst": 0} for name in ("registrationsPerAddress", "messagesPerUser", "roomActionsPerUser", "uploadsPerUser")}
        config = {"passwordHashCost": 4, "rateLimits": limits}
        with open(os.path.join(self.data, "config.json"), "w") as handle:
            json.dump(config, handle)
        self.start()

    def start(self):
        self.process = subprocess.Popen([BINARY, "serve", "--port", str(self.port), "--data-dir", self.data,
                                         "--config", os.path.join(self.data, "config.json")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the gateway did not start")

    def restart(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.start()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.data, ignore_errors=True)

    def api(self, method, path, body=None, token=None):
        request = urllib.request.Request(self.base + path, method=method, data=json.dumps(body).encode() if body is not None else None)
        request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
            return json.loads(text) if text else None

    def token(self, name):
        return self.api("POST", "/api/auth/login", {"username": name, "password": PASSWORD})["access_token"]

    def metric(self, name, labels):
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0


@pytest.fixture
def gateway():
    server = Gateway()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        yield chromium
        chromium.close()


class Watched:
    """A page whose CSP violations, script errors and foreign requests fail the test."""

    def __init__(self, context, gateway):
        self.context = context
        self.page = context.new_page()
        self.problems = []
        origin = f"127.0.0.1:{gateway.port}"
        self.page.on("console", lambda message: self.problems.append(f"console {message.type}: {message.text}")
                     if "Content Security Policy" in message.text or message.type == "error" and "Failed to load resource" not in message.text else None)
        self.page.on("pageerror", lambda error: self.problems.append(f"script error: {error}"))
        self.page.on("request", lambda request: None if re.match(rf"^(https?|wss?)://{re.escape(origin)}/", request.url)
                     or request.url.startswith(("blob:", "data:")) else self.problems.append(f"request to another host: {request.url}"))
        self.page.on("websocket", lambda socket: None if origin in socket.url else self.problems.append(f"socket to {socket.url}"))

    def check(self):
        assert not self.problems, "\n".join(self.problems)


def open_page(browser, gateway, pages, **options):
    context = browser.new_context(**options)
    watched = Watched(context, gateway)
    pages.append(watched)
    return watched.page


@pytest.fixture
def pages():
    opened = []
    yield opened
    for watched in opened:
        watched.check()
    for context in {id(w.context): w.context for w in opened}.values():
        context.close()


def register(page, gateway, name):
    page.goto(gateway.base + "/")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#me")).to_have_text(name)


def create_room(page, name):
    page.get_by_label("New room name").fill(name)
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#room-name")).to_have_text(name)


def join_room(page, name):
    page.locator(".room-button", has_text=name).click()
    expect(page.locator("#room-name")).to_have_text(name)
    expect(page.locator("#connection")).to_have_text("")


def send(page, text):
    page.get_by_label("Message").fill(text)
    page.get_by_label("Message").press("Enter")


def shot(page, name):
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, name))


def test_embedded_client_is_the_repository_one():
    """The binary serves WebClient/ as it is in the repository (scripts/embed-web.py)."""
    assert subprocess.run(["python3", os.path.join(ROOT, "scripts/embed-web.py"), "--check"]).returncode == 0


def test_page_headers(gateway):
    with urllib.request.urlopen(gateway.base + "/") as response:
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "unsafe" not in policy and "default-src 'none'" in policy
        etag = response.headers["ETag"]
        assert response.headers["Cache-Control"] == "no-cache"
    request = urllib.request.Request(gateway.base + "/", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as unchanged:
        urllib.request.urlopen(request)
    assert unchanged.value.code == 304
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(gateway.base + "/app/../Package.swift")
    assert missing.value.code == 404


def test_two_people_chat(browser, gateway, pages):
    alice = open_page(browser, gateway, pages)
    bob = open_page(browser, gateway, pages)
    register(alice, gateway, "alice")
    create_room(alice, "general")
    register(bob, gateway, "bob")
    join_room(bob, "general")

    send(alice, "hello bob")
    expect(bob.locator(".message .text", has_text="hello bob")).to_have_count(1)
    # Typing shows on the other side, and stops with the message.
    bob.get_by_label("Message").press_sequentially("hi al", delay=30)
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    bob.get_by_label("Message").press_sequentially("ice", delay=30)
    bob.get_by_label("Message").press("Enter")
    expect(alice.locator(".message .text", has_text="hi alice")).to_have_count(1)
    expect(alice.locator("#typing")).to_have_text("")
    # Bob has the room open: alice's message is read.
    expect(alice.locator(".message.mine .status").first).to_have_text("read")
    # Exactly once each, on both sides.
    for page in (alice, bob):
        expect(page.locator(".message .text", has_text="hello bob")).to_have_count(1)
        expect(page.locator(".message .text", has_text="hi alice")).to_have_count(1)
    shot(alice, "chat.png")


def test_folder_of_samples_appears_for_the_other(browser, gateway, pages):
    alice = open_page(browser, gateway, pages, viewport={"width": 1100, "height": 900})
    bob = open_page(browser, gateway, pages, viewport={"width": 1100, "height": 900})
    register(alice, gateway, "alice")
    create_room(alice, "media")
    register(bob, gateway, "bob")
    join_room(bob, "media")
    files = ["photo-exif-orientation-6.jpg", "alpha.png", "animated.gif", "clip-h264.mp4", "voice-note.m4a", "three-pages.pdf", "readme.txt"]
    alice.locator("#file-input").set_input_files([os.path.join(SAMPLES, name) for name in files])
    expect(bob.locator(".message")).to_have_count(len(files), timeout=60_000)
    # Pictures as thumbnails that loaded, with a srcset from the thumbnail ladder.
    pictures = bob.locator(".media.image img")
    expect(pictures).to_have_count(3)
    for index in range(3):
        expect(pictures.nth(index)).to_have_attribute("srcset", re.compile(r"w=320 320w, .*w=640 640w, .*w=1280 1280w"))
    bob.wait_for_function("() => [...document.querySelectorAll('.media.image img')].every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
    assert bob.locator(".media canvas.placeholder").count() >= 3, "the BlurHash placeholders are painted"
    # A video with its poster, playable; audio; documents as download cards.
    video = bob.locator(".media.video video")
    expect(video).to_have_count(1)
    expect(bob.locator("audio")).to_have_count(1)
    expect(bob.locator(".file-card")).to_have_count(2)
    expect(bob.locator(".file-card", has_text="three-pages.pdf")).to_contain_text("application/pdf")
    duration = bob.evaluate("""() => new Promise((resolve, reject) => {
        const v = document.querySelector('.media.video video');
        v.preload = 'metadata'; v.addEventListener('loadedmetadata', () => resolve(v.duration)); v.addEventListener('error', () => reject('no video'));
        v.load(); })""")
    assert 1.5 < duration < 3, duration
    # A picture opens full size.
    bob.get_by_role("button", name="Open photo-exif-orientation-6.jpg full size").click()
    expect(bob.locator("#viewer")).to_be_visible()
    bob.wait_for_function("() => document.getElementById('viewer-image').naturalWidth > 0")
    shot(bob, "viewer.png")
    bob.keyboard.press("Escape")
    bob.locator("#messages").evaluate("list => list.scrollTop = 0")
    shot(bob, "attachments.png")


def test_reload_resumes_a_large_upload(browser, gateway, pages, tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(50 * 1000 * 1000))
    alice = open_page(browser, gateway, pages)
    register(alice, gateway, "alice")
    create_room(alice, "big")
    # A slower network (about 8 MB/s up), so that the reload lands mid-upload.
    cdp = alice.context.new_cdp_session(alice)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 5, "downloadThroughput": 50_000_000, "uploadThroughput": 8_000_000})
    alice.locator("#file-input").set_input_files(str(source))
    alice.wait_for_function("() => { const p = document.querySelector('.upload progress'); return p && p.value > p.max * 0.3; }", timeout=30_000)
    sent_before = alice.evaluate("() => document.querySelector('.upload progress').value")
    before = gateway.metric("mediagate_upload_bytes_total", {"protocol": "tus"})
    alice.reload()
    expect(alice.locator(".resume-hint", has_text="big.bin")).to_have_count(1)
    cdp = alice.context.new_cdp_session(alice)
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    alice.locator("#file-input").set_input_files(str(source))
    expect(alice.locator(".file-card", has_text="big.bin")).to_have_count(1, timeout=60_000)
    stored = gateway.metric("mediagate_upload_bytes_total", {"protocol": "tus"})
    assert 0.1 * 50e6 < before < 50e6, f"the reload should land mid-upload ({before} bytes stored)"
    assert stored == 50e6, f"{stored} bytes stored for a 50 MB file"
    # What went over the wire: what the page sent before the reload, then the rest from the
    # server's offset (the bytes it had stored then).
    sent = sent_before + (50e6 - before)
    assert sent < 1.2 * 50e6, f"{sent} bytes sent for a 50 MB file"
    print(f"50 MB upload: {sent_before / 1e6:.1f} MB sent and {before / 1e6:.1f} MB stored before the reload, "
          f"{sent / 1e6:.1f} MB sent in all ({sent / 50e6:.3f}x)")


def test_reconnect_after_the_server_dies_misses_nothing(browser, gateway, pages):
    alice = open_page(browser, gateway, pages)
    register(alice, gateway, "alice")
    create_room(alice, "outage")
    gateway.api("POST", "/api/auth/register", {"username": "bob", "password": PASSWORD})
    bob = gateway.token("bob")
    room = int(re.search(r"room=(\d+)", alice.url).group(1))
    gateway.api("POST", f"/api/rooms/{room}/join", {}, token=bob)
    gateway.api("POST", "/api/messages", {"room_id": room, "content": "before the outage"}, token=bob)
    expect(alice.locator(".message .text", has_text="before the outage")).to_have_count(1)

    gateway.restart()  # SIGKILL: every socket dies with the process
    expect(alice.locator("#connection")).to_contain_text("reconnecting")
    send(alice, "written while offline")
    bob = gateway.token("bob")
    for index in range(3):
        gateway.api("POST", "/api/messages", {"room_id": room, "content": f"missed {index}"}, token=bob)
    expect(alice.locator("#connection")).to_have_text("", timeout=30_000)
    gateway.api("POST", "/api/messages", {"room_id": room, "content": "after the outage"}, token=bob)
    for text in ["before the outage", "written while offline", "missed 0", "missed 1", "missed 2", "after the outage"]:
        expect(alice.locator(".message .text", has_text=text)).to_have_count(1)
    history = gateway.api("GET", f"/api/messages?room_id={room}&limit=100", token=bob)
    assert [m["content"] for m in history].count("written while offline") == 1, "the offline message was stored once"
    ids = [int(node) for node in alice.locator(".message").evaluate_all("nodes => nodes.map(n => n.dataset.id)")]
    assert ids == sorted(ids), f"messages in order: {ids}"


@pytest.mark.release  # a timing: `make smoke` runs it on the release binary, which is what users run
def test_cold_load_paints_the_first_message_fast(browser, gateway, pages):
    """A page load with nothing cached (HTTP cache off), logged in by the stored refresh token,
    to the first message of a 50-message room painted: < 300 ms (median of 4 loads)."""
    first = open_page(browser, gateway, pages)
    register(first, gateway, "alice")
    create_room(first, "fifty")
    token = gateway.token("alice")
    room = int(re.search(r"room=(\d+)", first.url).group(1))
    for index in range(50):
        gateway.api("POST", "/api/messages", {"room_id": room, "content": f"message {index}"}, token=token)
    # `first` stays open: a browser already running, as when someone opens the chat in a new tab.
    timings = []
    for _ in range(4):
        watched = Watched(first.context, gateway)
        pages.append(watched)
        page = watched.page
        cdp = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        page.goto(f"{gateway.base}/#room={room}")
        expect(page.locator(".message")).to_have_count(50)
        timings.append(page.evaluate("() => performance.getEntriesByName('mediagate:first-message')[0].startTime"))
        page.close()
    print(f"first message painted after {', '.join(f'{t:.0f}' for t in timings)} ms ")
    assert statistics.median(timings) < 300, timings


def test_phone_width_dark_mode_and_keyboard(browser, gateway, pages):
    page = open_page(browser, gateway, pages, viewport={"width": 390, "height": 780}, color_scheme="dark", is_mobile=True, has_touch=True)
    register(page, gateway, "carol")
    create_room(page, "phone")
    send(page, "from a phone, in the dark")
    expect(page.locator(".message .text", has_text="from a phone")).to_have_count(1)
    background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 20, 24)", background
    shot(page, "phone-dark.png")
    # Keyboard only: back to the rooms, into the room again, a message sent.
    page.get_by_role("link", name="Back to rooms").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".room-button", has_text="phone")).to_be_visible()
    page.locator(".room-button", has_text="phone").focus()
    page.keyboard.press("Enter")
    page.get_by_label("Message").focus()
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    expect(page.locator(".message .text", has_text="typed, not clicked")).to_have_count(1)


def test_login_page(browser, gateway, pages):
    page = open_page(browser, gateway, pages, viewport={"width": 900, "height": 600})
    page.goto(gateway.base + "/")
    expect(page.get_by_label("User name")).to_be_focused()
    page.get_by_label("User name").fill("nobody")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).not_to_be_empty()
    shot(page, "login.png")
