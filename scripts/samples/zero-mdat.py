"""Copies an MP4 with its `mdat` payload zeroed: whole headers, no decodable picture."""
import struct
import sys

data = bytearray(open(sys.argv[1], "rb").read())
at = 0
while at + 8 <= len(data):
    size, kind = struct.unpack(">I4s", data[at:at + 8])
    if kind == b"mdat":
        data[at + 8:at + size] = bytes(size - 8)
        break
    if size < 8:
        sys.exit("not an MP4 this can walk")
    at += size
open(sys.argv[2], "wb").write(data)
