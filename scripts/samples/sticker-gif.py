"""Writes a two-frame GIF with a 640x480 logical screen whose first frame covers 50x40 at (30, 20).

libnsgif, which libvips 8.14 reads GIFs with, distrusts a 640x480 screen and sizes the
canvas from the first frame instead; browsers and ffprobe show the whole screen.
"""
import struct
import sys


def lzw(indices, min_code=2):
    """LZW data at a fixed code width, with a clear code before the table would widen it."""
    clear, end, width = 1 << min_code, (1 << min_code) + 1, min_code + 1
    codes, run = [clear], 0
    for index in indices:
        codes.append(index)
        run += 1
        if run == (1 << min_code) - 2:
            codes.append(clear)
            run = 0
    codes.append(end)
    bits, count, out = 0, 0, bytearray()
    for code in codes:
        bits |= code << count
        count += width
        while count >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            count -= 8
    if count:
        out.append(bits)
    blocks = b"".join(bytes([len(out[k:k + 255])]) + out[k:k + 255] for k in range(0, len(out), 255))
    return bytes([min_code]) + blocks + b"\x00"


def frame(x, y, w, h, colour):
    control = b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # 1/10 s, no transparency
    return control + b"\x2c" + struct.pack("<HHHHB", x, y, w, h, 0) + lzw([colour] * (w * h))


palette = bytes([255, 255, 255, 220, 30, 30, 30, 40, 220, 0, 0, 0])
gif = (b"GIF89a" + struct.pack("<HHBBB", 640, 480, 0xF1, 0, 0) + palette
       + b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
       + frame(30, 20, 50, 40, 1) + frame(300, 200, 80, 70, 2) + b"\x3b")
open(sys.argv[1], "wb").write(gif)
