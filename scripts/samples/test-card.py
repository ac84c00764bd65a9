"""Writes a 320x240 binary PPM test card: colour gradients under a checkerboard."""
import sys

w, h = 320, 240
pixels = bytearray()
for y in range(h):
    for x in range(w):
        pixels += bytes(((x * 255) // w, (y * 255) // h, 160 if (x // 40 + y // 40) % 2 else 60))
open(sys.argv[1], "wb").write(b"P6\n%d %d\n255\n" % (w, h) + pixels)
