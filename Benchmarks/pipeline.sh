#!/usr/bin/env bash
# Media pipeline benchmark: mediagate against the tools people use instead, in one run, on
# one machine. Prints wall time, CPU time and peak RSS of each, and the ratios the targets in
# Docs/BENCHMARKS.md are stated in.
#
#   Benchmarks/pipeline.sh            200 JPEGs, 10 videos, one 20000x20000 image
#   JPEGS=50 VIDEOS=4 Benchmarks/pipeline.sh   a quicker, smaller run
#
# Needs: scripts/install-deps.sh --bench, and a release build (made here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
JPEGS=${JPEGS:-200}
VIDEOS=${VIDEOS:-10}
corpus=Benchmarks/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

[ -x .build/release/mediagate ] || swift build -c release
mediagate=$PWD/.build/release/mediagate

JPEGS=$JPEGS VIDEOS=$VIDEOS Benchmarks/make-corpus.sh
jpegs=("$corpus"/jpeg/*.jpg); jpegs=("${jpegs[@]:0:$JPEGS}")
mp4s=("$corpus"/mp4/*.mp4); mp4s=("${mp4s[@]:0:$VIDEOS}")
cat "${jpegs[@]}" "${mp4s[@]}" "$corpus/huge-20000.jpg" > /dev/null # warm the page cache for everyone

fades=("$corpus"/fade/*.mp4)
cat "${fades[@]}" > /dev/null

# --- Measuring -------------------------------------------------------------------------------
# measure RUNS NAME COMMAND...: runs the command RUNS times under GNU time and keeps the run
# with the least wall time (wall s, CPU s, peak RSS KB). The machine is shared and noisy; every
# contender in a close comparison gets the same number of runs.
declare -A wall cpu rss
measure() {
  local runs=$1 name=$2; shift 2
  local best_w="" best_c="" best_m=""
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" > "$work/stdout" 2> "$work/stderr" || {
      echo "$name failed:"; cat "$work/stderr"; exit 1; }
    read -r w u s m < <(tail -1 "$work/time")
    if [ -z "$best_w" ] || [ "$(echo "$w < $best_w" | bc)" = 1 ]; then
      best_w=$w; best_c=$(echo "$u + $s" | bc); best_m=$m
    fi
  done
  wall[$name]=$best_w; cpu[$name]=$best_c; rss[$name]=$best_m
  printf "  %-38s wall %7.2f s   cpu %7.2f s   peak RSS %5d MiB   (best of %d)\n" "$name" "$best_w" "$best_c" $((best_m / 1024)) "$runs"
}
ratio() { echo "scale=2; $1 / $2" | bc; }

# --- Checking --------------------------------------------------------------------------------
# A figure is printed only for a run that did the work: every contender's output is counted and
# measured after its last run, and the script stops at the first that falls short.
fail() { echo "CHECK FAILED: $*" >&2; exit 1; }
# check_pictures DIR COUNT SIDE: COUNT decodable pictures in DIR, each exactly SIDE px on its
# longer side (a SIDE px box was asked for), per vipsheader.
check_pictures() {
  local dir=$1 count=$2 side=$3
  local found; found=$(find "$dir" -type f | wc -l)
  [ "$found" -eq "$count" ] || fail "$dir holds $found pictures, expected $count"
  find "$dir" -type f -print0 | xargs -0 vipsheader | awk -v side="$side" '
    { split($2, d, "x"); w = d[1] + 0; h = d[2] + 0; long = w > h ? w : h
      if (long != side) { print "  " $0; bad++ } }
    END { exit bad > 0 }' || fail "pictures in $dir are not $side px on their longer side"
}
# check_probe COUNT [PYTHON-CONDITION]: the last mediagate run printed COUNT JSON lines, each
# without an error, with a thumbnail and its own file's name; the condition holds for each
# attachment `a`.
check_probe() {
  python3 - "$work/stdout" "$1" "${2:-True}" <<'PY'
import json, os, sys
lines = [json.loads(line) for line in open(sys.argv[1])]
want, condition = int(sys.argv[2]), sys.argv[3]
if len(lines) != want:
    sys.exit(f"CHECK FAILED: {len(lines)} JSON lines for {want} files")
for line in lines:
    a = line["attachment"]
    if line["error"] or not line["thumbnail"] or a["filename"] != os.path.basename(line["path"]):
        sys.exit(f"CHECK FAILED: {line}")
    if not eval(condition, {}, {"a": a}):
        sys.exit(f"CHECK FAILED: {condition} is false for {a}")
PY
}
fresh() { rm -rf "$work/$1"; mkdir -p "$work/$1"; echo "$work/$1"; }

export JPEG_FILES="${jpegs[*]}" MP4_FILES="${mp4s[*]}"
echo
echo "mediagate pipeline benchmark, $(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "vips $(vips --version | cut -d- -f2), $(ffmpeg -version | head -1 | cut -d' ' -f1-3), Pillow $(python3 -c 'import PIL; print(PIL.__version__)')"
echo
echo "${#jpegs[@]} JPEGs, 4000x3000: type + size + 320 px thumbnail"
out=$(fresh mg); measure 3 "mediagate probe --thumbnails" "$mediagate" probe --json --thumbnails "$out" --size 320x320 "${jpegs[@]}"
check_probe "${#jpegs[@]}" 'a["type"] == "image" and (a["width"], a["height"]) == (4000, 3000) and len(a["sha256"]) == 64'
check_pictures "$out" "${#jpegs[@]}" 320
out=$(fresh loop); measure 1 "per-file vipsthumbnail + file" bash -c '
  for f in $JPEG_FILES; do file --brief --mime-type "$f"; vipsthumbnail "$f" --size 320x320 -o "'"$out"'/%s.jpg"; done'
[ "$(grep -c '^image/jpeg$' "$work/stdout")" -eq "${#jpegs[@]}" ] || fail "file did not type every JPEG"
check_pictures "$out" "${#jpegs[@]}" 320
out=$(fresh one); measure 3 "one vipsthumbnail over all files" vipsthumbnail "${jpegs[@]}" --size 320x320 -o "$out/%s.jpg"
check_pictures "$out" "${#jpegs[@]}" 320
out=$(fresh pil); measure 1 "Pillow script" python3 - "$out" "${jpegs[@]}" <<'PY'
import os, sys
from PIL import Image, ImageOps
out = sys.argv[1]
for path in sys.argv[2:]:
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        image.thumbnail((320, 320))
        image.save(os.path.join(out, os.path.basename(path)), "JPEG", quality=80)
PY
check_pictures "$out" "${#jpegs[@]}" 320

echo
echo "${#mp4s[@]} videos, 1080p 10 s H.264: probe + 320 px poster"
out=$(fresh mgv); measure 3 "mediagate probe --thumbnails (mp4)" "$mediagate" probe --json --thumbnails "$out" --size 320x320 "${mp4s[@]}"
check_probe "${#mp4s[@]}" 'a["type"] == "video" and (a["width"], a["height"]) == (1920, 1080) and abs(a["duration"] - 10) < 0.1'
check_pictures "$out" "${#mp4s[@]}" 320
out=$(fresh ff); measure 3 "per-file ffprobe + ffmpeg -frames:v 1" bash -c '
  for f in $MP4_FILES; do ffprobe -v error -show_format -show_streams "$f";
    ffmpeg -nostdin -v error -y -i "$f" -frames:v 1 -vf scale=320:-2 "'"$out"'/$(basename "$f").jpg"; done'
[ "$(grep -c '^codec_type=video$' "$work/stdout")" -eq "${#mp4s[@]}" ] || fail "ffprobe did not describe every video"
check_pictures "$out" "${#mp4s[@]}" 320

echo
echo "${#fades[@]} videos, 1080p 10 s, fading in from black over 4 s, one keyframe: poster decoded forward to the moment"
# The peer decodes forward to 50 % of the way in (-ss before -i seeks to the keyframe, then
# decodes up to the moment), the furthest of the moments mediagate judges (10, 25, 50 %).
out=$(fresh mgf); measure 3 "mediagate probe --thumbnails (fade-in)" "$mediagate" probe --json --thumbnails "$out" --size 320x320 "${fades[@]}"
check_probe "${#fades[@]}" 'a["type"] == "video" and abs(a["duration"] - 10) < 0.1'
check_pictures "$out" "${#fades[@]}" 320
for poster in "$out"/*; do
  mean=$(vips avg "$poster")
  [ "$(echo "$mean > 40" | bc)" = 1 ] || fail "$poster is nearly black (mean $mean)"
done
export FADE_FILES="${fades[*]}"
out=$(fresh fff); measure 3 "per-file ffmpeg -ss 5 -frames:v 1" bash -c '
  for f in $FADE_FILES; do ffmpeg -nostdin -v error -y -ss 5 -i "$f" -frames:v 1 -vf scale=320:-2 "'"$out"'/$(basename "$f").jpg"; done'
check_pictures "$out" "${#fades[@]}" 320

echo
echo "one 20000x20000 JPEG: 320 px thumbnail, peak memory"
out=$(fresh huge); measure 3 "mediagate probe --thumbnails (huge)" "$mediagate" probe --json --max-megapixels 500 --thumbnails "$out" --size 320x320 "$corpus/huge-20000.jpg"
check_probe 1 '(a["width"], a["height"]) == (20000, 20000)'
check_pictures "$out" 1 320
out=$(fresh hugev); measure 3 "vipsthumbnail (huge)" vipsthumbnail "$corpus/huge-20000.jpg" --size 320x320 -o "$out/%s.jpg"
check_pictures "$out" 1 320

echo
echo "ratios (target in brackets; > 1 means mediagate is faster or smaller)"
printf "  JPEG wall vs per-file vipsthumbnail+file   %6sx  [>= 3]\n"    "$(ratio "${wall[per-file vipsthumbnail + file]}" "${wall[mediagate probe --thumbnails]}")"
printf "  JPEG wall vs one vipsthumbnail call        %6sx  [>= 1.5]\n"  "$(ratio "${wall[one vipsthumbnail over all files]}" "${wall[mediagate probe --thumbnails]}")"
printf "  JPEG wall vs Pillow                        %6sx  [>= 3.5]\n"  "$(ratio "${wall[Pillow script]}" "${wall[mediagate probe --thumbnails]}")"
printf "  JPEG CPU, mediagate / one vipsthumbnail    %6sx  [<= 1.25]\n" "$(ratio "${cpu[mediagate probe --thumbnails]}" "${cpu[one vipsthumbnail over all files]}")"
printf "  MP4 wall vs per-file ffprobe+ffmpeg        %6sx  [>= 2]\n"    "$(ratio "${wall[per-file ffprobe + ffmpeg -frames:v 1]}" "${wall[mediagate probe --thumbnails (mp4)]}")"
printf "  fade-in MP4 wall vs ffmpeg -ss 5           %6sx  [none: what decoding forward costs]\n" "$(ratio "${wall[per-file ffmpeg -ss 5 -frames:v 1]}" "${wall[mediagate probe --thumbnails (fade-in)]}")"
printf "  huge JPEG peak RSS, mediagate / vipsthumbnail %3sx  [<= 2]\n" "$(ratio "${rss[mediagate probe --thumbnails (huge)]}" "${rss[vipsthumbnail (huge)]}")"
