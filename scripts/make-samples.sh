#!/usr/bin/env bash
# Regenerates samples/: small media fixtures, one per supported format, plus hostile files.
#
# Needs Debian's ffmpeg, libvips-tools and libimage-exiftool-perl (scripts/install-deps.sh).
# The committed files are what tests use; rerun this only to change them.
#
#   scripts/make-samples.sh              everything
#   scripts/make-samples.sh real-world   only samples/real-world (encoders are not bit-exact
#                                        across versions: leave the other fixtures alone)
set -euo pipefail
cd "$(dirname "$0")/.."
out=samples
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }

media_and_hostile() {
rm -rf "$out/media" "$out/hostile"
mkdir -p "$out/media" "$out/hostile"
m="$out/media"; h="$out/hostile"

# --- Images -------------------------------------------------------------------------------
# A 300x400 (portrait) picture: red top half, blue bottom half, a gradient for texture.
python3 - "$tmp" <<'PY'
import sys, struct, zlib
# Portrait test card as a binary PPM: red top, blue bottom, grey gradient stripe on the left.
w, h = 300, 400
rows = []
for y in range(h):
    row = bytearray()
    for x in range(w):
        if x < 30:
            v = (y * 255) // h; row += bytes((v, v, v))
        elif y < h // 2:
            row += bytes((220, 30 + (x % 50), 30))
        else:
            row += bytes((30, 40 + (x % 50), 220))
    rows.append(bytes(row))
open(sys.argv[1] + "/portrait.ppm", "wb").write(b"P6\n%d %d\n255\n" % (w, h) + b"".join(rows))
PY
vips copy "$tmp/portrait.ppm" "$tmp/portrait.v"
# Stored rotated a quarter turn counter-clockwise; orientation 6 turns it back upright.
vips rot "$tmp/portrait.v" "$tmp/stored.v" d270
vips jpegsave "$tmp/stored.v" "$m/photo-exif-orientation-6.jpg" --Q 85
exiftool -q -overwrite_original -Orientation=6 -n \
  -GPSLatitude=48.8583 -GPSLatitudeRef=N -GPSLongitude=2.2945 -GPSLongitudeRef=E \
  -Make=Apple -Model="iPhone 15" "$m/photo-exif-orientation-6.jpg"

vips jpegsave "$tmp/portrait.v" "$m/progressive.jpg" --Q 80 --interlace
vips icc_transform "$tmp/portrait.v" "$tmp/cmyk.v" cmyk
# Stripped: without its 900 KB embedded profile a loader must fall back to a stock CMYK one.
vips jpegsave "$tmp/cmyk.v" "$m/cmyk.jpg" --Q 80 --strip

# PNG with alpha (a transparent border) and a 16-bit greyscale PNG.
vips extract_band "$tmp/portrait.v" "$tmp/r.v" 0
vips bandjoin "$tmp/portrait.v $tmp/r.v" "$tmp/rgba.v"
vips pngsave "$tmp/rgba.v" "$m/alpha.png"
vips colourspace "$tmp/portrait.v" "$tmp/grey16.v" grey16
vips pngsave "$tmp/grey16.v" "$m/grey-16bit.png"

ff -f lavfi -i testsrc=size=160x120:rate=5 -t 1 "$m/animated.gif"
vips copy "$m/animated.gif[n=-1]" "$m/animated.webp"
vips webpsave "$tmp/portrait.v" "$m/still.webp" --Q 75
vips heifsave "$tmp/portrait.v" "$m/iphone.heic" --Q 50 --compression hevc
vips heifsave "$tmp/portrait.v" "$m/photo.avif" --Q 50 --compression av1
vips tiffsave "$tmp/portrait.v" "$m/scan.tiff" --compression deflate
vips magicksave "$tmp/portrait.v" "$m/legacy.bmp" --format bmp
cat > "$m/drawing.svg" <<'SVG'
<svg xmlns="http://www.w3.org/2000/svg" width="240" height="120" viewBox="0 0 240 120">
  <rect width="240" height="120" fill="#2a6"/>
  <circle cx="60" cy="60" r="40" fill="#fc3"/>
  <text x="120" y="70" font-size="24" fill="#fff">mediagate</text>
</svg>
SVG

# --- Documents ----------------------------------------------------------------------------
python3 - "$m" <<'PY'
import sys, zipfile
out = sys.argv[1]

def pdf(path, pages):
    """A minimal, valid PDF with one text line per page and a correct xref table."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for n in range(pages):
        text = f"BT /F1 24 Tf 72 720 Td (mediagate page {n + 1}) Tj ET".encode()
        objects.append(f"<< /Length {len(text)} >>\nstream\n{text.decode()}\nendstream")
        content = len(objects)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R /Resources << /Font << /F1 3 0 R >> >> >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {pages} >>"
    body, offsets = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(body))
        body += f"{i} 0 obj\n{obj}\nendobj\n".encode()
    xref = len(body)
    body += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    body += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    body += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    open(path, "wb").write(body)

pdf(f"{out}/three-pages.pdf", 3)

def ooxml(path, kind):
    """A minimal Office Open XML package, as Word or Excel would lay it out."""
    main = {"word": ("word/document.xml", "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
                     '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>mediagate</w:t></w:r></w:p></w:body></w:document>'),
            "xl": ("xl/workbook.xml", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                   '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheets/></workbook>')}[kind]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        # Written in the order LibreOffice uses (not [Content_Types].xml first), which is what
        # makes libmagic 5.44 answer application/octet-stream or application/zip for real files.
        z.writestr("_rels/.rels", '<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="r1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="%s"/></Relationships>' % main[0])
        z.writestr(main[0], main[2])
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/%s" ContentType="%s"/></Types>' % (main[0], main[1]))

ooxml(f"{out}/report.docx", "word")
ooxml(f"{out}/budget.xlsx", "xl")
with zipfile.ZipFile(f"{out}/notes.odt", "w") as z:
    z.writestr(zipfile.ZipInfo("mimetype"), "application/vnd.oasis.opendocument.text")
    z.writestr("content.xml", '<?xml version="1.0"?><office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"/>')
open(f"{out}/readme.txt", "w").write("Plain text is a document too.\n")
PY

# --- Video --------------------------------------------------------------------------------
src=(-f lavfi -i testsrc2=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=48000)
ff "${src[@]}" -t 2 -c:v libx264 -preset veryfast -crf 32 -pix_fmt yuv420p -c:a aac -b:a 48k -movflags +faststart "$m/clip-h264.mp4"
ff -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx265 -preset ultrafast -crf 34 -tag:v hvc1 -x265-params log-level=none "$m/clip-hevc.mov"
ff "${src[@]}" -t 2 -c:v libvpx-vp9 -b:v 150k -deadline realtime -cpu-used 8 -c:a libopus -b:a 32k "$m/clip-vp9.webm"
ff "${src[@]}" -t 2 -c:v libx264 -preset veryfast -crf 32 -c:a flac "$m/clip.mkv"
ff "${src[@]}" -t 2 -c:v mpeg4 -q:v 10 -c:a libmp3lame -b:a 48k "$m/clip.avi"
# A phone-style clip: stored landscape with a 90° display rotation, shown as portrait.
# (FFmpeg 5.1 writes the rotate tag as a display matrix only when stream-copying.)
ff -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx264 -preset veryfast -crf 32 "$tmp/landscape.mp4"
ff -i "$tmp/landscape.mp4" -c copy -metadata:s:v:0 rotate=90 "$m/phone-rotated-90.mp4"
# Opens on one second of black: the poster must come from the picture after it.
ff -f lavfi -i color=black:size=320x240:rate=25:duration=1 -f lavfi -i testsrc2=size=320x240:rate=25:duration=3 \
   -filter_complex "[0][1]concat=n=2:v=1" -c:v libx264 -preset veryfast -crf 32 -g 25 "$m/opens-black.mp4"

# --- Audio --------------------------------------------------------------------------------
tone=(-f lavfi -i sine=frequency=330:sample_rate=44100:duration=2)
vips jpegsave "$tmp/portrait.v" "$tmp/cover.jpg" --Q 70
ff "${tone[@]}" -i "$tmp/cover.jpg" -map 0 -map 1 -c:a libmp3lame -b:a 64k -c:v copy -id3v2_version 3 \
   -metadata:s:v title="Album cover" -metadata:s:v comment="Cover (front)" "$m/song-with-cover.mp3"
ff "${tone[@]}" -c:a aac -b:a 48k "$m/voice-note.m4a"
# Audio only, in the container libmagic calls video/mp4: the streams decide the category.
ff "${tone[@]}" -c:a aac -b:a 48k "$m/audio-only.mp4"
ff "${tone[@]}" -c:a libopus -b:a 32k "$m/voice.opus"
ff "${tone[@]}" -c:a libvorbis -q:a 1 "$m/tune.ogg"
ff "${tone[@]}" -c:a flac "$m/tone.flac"
ff -f lavfi -i sine=frequency=330:sample_rate=8000:duration=2 -c:a pcm_s16le "$m/tone.wav"

# --- Hostile ------------------------------------------------------------------------------
head -c 3000 "$m/progressive.jpg" > "$h/truncated.jpg"
ff -f lavfi -i testsrc2=size=320x240:rate=25 -t 2 -c:v libx264 -preset veryfast -crf 32 "$tmp/no-faststart.mp4"
head -c 20000 "$tmp/no-faststart.mp4" > "$h/truncated.mp4"
: > "$h/empty.bin"
python3 - "$h" <<'PY'
import sys, struct, zlib
out = sys.argv[1]
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
# A valid PNG header that claims 50000x50000 RGB pixels (7.5 GB decoded) over a few bytes of data.
ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
idat = zlib.compress(b"\x00" * 1024)
open(f"{out}/huge-claim.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
open(f"{out}/html-as-image.jpg", "w").write("<!DOCTYPE html>\n<html><body><script>alert(document.cookie)</script></body></html>\n")
# 350 bytes whose filter takes ~10 s to draw 1280 px wide: librsvg ignores libvips' kill flag.
open(f"{out}/slow-filter.svg", "w").write("""<svg xmlns="http://www.w3.org/2000/svg" width="7000" height="7000" viewBox="0 0 7000 7000">
  <filter id="f" x="0" y="0" width="100%" height="100%">
    <feTurbulence type="fractalNoise" baseFrequency="0.01" numOctaves="100" seed="3"/>
    <feGaussianBlur stdDeviation="200"/>
  </filter>
  <rect width="7000" height="7000" filter="url(#f)"/>
</svg>
""")
open(f"{out}/script.svg", "w").write('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><script>alert(1)</script><rect width="64" height="64" fill="red"/></svg>\n')
# An HLS playlist dressed up as a video: FFmpeg's hls demuxer would fetch both URLs.
open(f"{out}/playlist.mp4", "w").write("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://127.0.0.1:47391/segment.ts\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
# CSV that libvips would happily read as a 3x2 image if it were ever allowed to.
open(f"{out}/numbers.png", "w").write("1,2,3\n4,5,6\n")
PY
}

# --- Real world ---------------------------------------------------------------------------
# Classes of file people send every day that tripped the pipeline up (issue #12), one small
# file each.
real_world() {
local r="$out/real-world"
rm -rf "$r"; mkdir -p "$r"
# Fades in from black over 2.5 s with a single keyframe: every seek lands inside the fade.
ff -f lavfi -i testsrc2=size=240x180:rate=25:duration=4 -vf "fade=in:st=0:d=2.5" \
   -c:v libx264 -preset veryfast -crf 34 -g 250 -keyint_min 250 -sc_threshold 0 "$r/fade-in.mp4"
# What a browser's MediaRecorder writes: WebM streamed to a pipe, so no Duration and no Cues.
ff -f lavfi -i testsrc2=size=160x120:rate=25:duration=3 -f lavfi -i sine=frequency=440:sample_rate=48000:duration=3 \
   -c:v libvpx -b:v 120k -deadline realtime -cpu-used 8 -c:a libopus -b:a 24k -f webm pipe:1 > "$r/recorder.webm"
# Phone voice recordings: AAC in 3GPP and 3GPP2 containers.
local voice=(-f lavfi -i sine=frequency=330:sample_rate=8000:duration=3 -c:a aac -b:a 16k)
ff "${voice[@]}" -f 3gp "$r/voice-memo.3gp"
ff "${voice[@]}" -f 3g2 "$r/voice-memo.3g2"
ff -f lavfi -i sine=frequency=330:sample_rate=8000:duration=1 -c:a pcm_s16be "$r/tone.aiff"
ff -f lavfi -i sine=frequency=330:sample_rate=22050:duration=2 -c:a wmav2 -b:a 32k "$r/tone.wma"
# A baseline JPEG cut off after 60 % of its bytes, as an interrupted transfer leaves it.
python3 "scripts/samples/test-card.py" "$tmp/card.ppm"
vips jpegsave "$tmp/card.ppm" "$tmp/whole.jpg" --Q 85
head -c $(( $(stat -c %s "$tmp/whole.jpg") * 6 / 10 )) "$tmp/whole.jpg" > "$r/cut-short.jpg"
# A sticker-style GIF: a 640x480 logical screen (a size libnsgif distrusts) whose first frame
# covers only 50x40 of it.
python3 "scripts/samples/sticker-gif.py" "$r/sticker.gif"
# An MP4 whose headers are whole but whose picture data is zeros: no frame decodes.
ff -f lavfi -i testsrc2=size=160x120:rate=25:duration=1 -c:v libx264 -preset veryfast -crf 34 \
   -movflags +faststart "$tmp/whole.mp4"
python3 "scripts/samples/zero-mdat.py" "$tmp/whole.mp4" "$r/no-pictures.mp4"
}

case "${1:-all}" in
  all) media_and_hostile; real_world ;;
  real-world) real_world ;;
  *) echo "usage: $0 [real-world]" >&2; exit 2 ;;
esac
du -sh "$out"
