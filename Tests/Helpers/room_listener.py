"""Prints every frame of a room's WebSocket, one JSON per line, for the upload client's tests.

    room_listener.py PORT ROOM_ID TOKEN

Prints "ready" after the server's first (`connected`) frame; stops on SIGTERM or when the
socket closes.
"""
import os
import signal
import sys

from websockets.sync.client import connect

port, room, token = sys.argv[1], sys.argv[2], sys.argv[3]
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # at once: output is flushed line by line
# Started from a thread of the Swift test runner, which blocks SIGTERM: the mask is inherited.
signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
with connect(f"ws://127.0.0.1:{port}/ws/chat/{room}?token={token}") as socket:
    print(socket.recv(), flush=True)
    print("ready", flush=True)
    for frame in socket:
        print(frame, flush=True)
