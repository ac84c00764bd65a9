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

# --- Measuring -------------------------------------------------------------------------------
# measure RUNS NAME COMMAND...: runs the command RUNS times under GNU time and keeps the run
# with the least wall time (wall s, CPU s, peak RSS KB). The machine is shared and noisy; every
# contender in a close comparison gets the same number of runs.
declare -A wall cpu rss
measure() {
  local runs=$1 name=$2; shift 2
  local best_w="" best_c="" best_m=""
  for _ in $(seq "$runs"); do
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$@" > /dev/null 2> "$work/stderr" || {
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
fresh() { rm -rf "$work/$1"; mkdir -p "$work/$1"; echo "$work/$1"; }

export JPEG_FILES="${jpegs[*]}" MP4_FILES="${mp4s[*]}"
echo
echo "mediagate pipeline benchmark, $(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "vips $(vips --version | cut -d- -f2), $(ffmpeg -version | head -1 | cut -d' ' -f1-3), Pillow $(python3 -c 'import PIL; print(PIL.__version__)')"
echo
echo "${#jpegs[@]} JPEGs, 4000x3000: type + size + 320 px thumbnail"
out=$(fresh mg); measure 3 "mediagate probe --thumbnails" "$mediagate" probe --json --thumbnails "$out" --size 320x320 "${jpegs[@]}"
out=$(fresh loop); measure 1 "per-file vipsthumbnail + file" bash -c '
  for f in $JPEG_FILES; do file --brief --mime-type "$f"; vipsthumbnail "$f" --size 320x320 -o "'"$out"'/%s.jpg"; done'
out=$(fresh one); measure 3 "one vipsthumbnail over all files" vipsthumbnail "${jpegs[@]}" --size 320x320 -o "$out/%s.jpg"
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

echo
echo "${#mp4s[@]} videos, 1080p 10 s H.264: probe + 320 px poster"
out=$(fresh mgv); measure 3 "mediagate probe --thumbnails (mp4)" "$mediagate" probe --json --thumbnails "$out" --size 320x320 "${mp4s[@]}"
out=$(fresh ff); measure 3 "per-file ffprobe + ffmpeg -frames:v 1" bash -c '
  for f in $MP4_FILES; do ffprobe -v error -show_format -show_streams "$f";
    ffmpeg -nostdin -v error -y -i "$f" -frames:v 1 -vf scale=320:-2 "'"$out"'/$(basename "$f").jpg"; done'

echo
echo "one 20000x20000 JPEG: 320 px thumbnail, peak memory"
out=$(fresh huge); measure 3 "mediagate probe --thumbnails (huge)" "$mediagate" probe --json --max-megapixels 500 --thumbnails "$out" --size 320x320 "$corpus/huge-20000.jpg"
out=$(fresh hugev); measure 3 "vipsthumbnail (huge)" vipsthumbnail "$corpus/huge-20000.jpg" --size 320x320 -o "$out/%s.jpg"

echo
echo "ratios (target in brackets; > 1 means mediagate is faster or smaller)"
printf "  JPEG wall vs per-file vipsthumbnail+file   %6sx  [>= 3]\n"    "$(ratio "${wall[per-file vipsthumbnail + file]}" "${wall[mediagate probe --thumbnails]}")"
printf "  JPEG wall vs one vipsthumbnail call        %6sx  [>= 1.5]\n"  "$(ratio "${wall[one vipsthumbnail over all files]}" "${wall[mediagate probe --thumbnails]}")"
printf "  JPEG wall vs Pillow                        %6sx  [>= 3.5]\n"  "$(ratio "${wall[Pillow script]}" "${wall[mediagate probe --thumbnails]}")"
printf "  JPEG CPU, mediagate / one vipsthumbnail    %6sx  [<= 1.25]\n" "$(ratio "${cpu[mediagate probe --thumbnails]}" "${cpu[one vipsthumbnail over all files]}")"
printf "  MP4 wall vs per-file ffprobe+ffmpeg        %6sx  [>= 2]\n"    "$(ratio "${wall[per-file ffprobe + ffmpeg -frames:v 1]}" "${wall[mediagate probe --thumbnails (mp4)]}")"
printf "  huge JPEG peak RSS, mediagate / vipsthumbnail %3sx  [<= 2]\n" "$(ratio "${rss[mediagate probe --thumbnails (huge)]}" "${rss[vipsthumbnail (huge)]}")"
