#!/usr/bin/env bash
# The benchmarks' shared corpus, made once and kept in Benchmarks/corpus (git ignores it):
# JPEGS 4000x3000 photo-like JPEGs, VIDEOS 1080p H.264 clips, FADES (3) 1080p clips that fade
# in from black, one 20000x20000 JPEG.
#
#   Benchmarks/make-corpus.sh                 200 JPEGs, 10 videos
#   JPEGS=50 VIDEOS=4 Benchmarks/make-corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JPEGS=${JPEGS:-200}
VIDEOS=${VIDEOS:-10}
corpus=Benchmarks/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

mkdir -p "$corpus/jpeg" "$corpus/mp4"
if [ "$(ls "$corpus/jpeg" | wc -l)" -lt "$JPEGS" ]; then
  echo "making $JPEGS 4000x3000 JPEGs..."
  # Blurred colour noise: photo-like texture that JPEG cannot squeeze to nothing (~3 MB each).
  for band in r g b; do vips gaussnoise "$work/$band.v" 4600 3600 --mean 128 --sigma 50; done
  vips bandjoin "$work/r.v $work/g.v $work/b.v" "$work/noise.v"
  vips gaussblur "$work/noise.v" "$work/blur.v" 1.2
  vips cast "$work/blur.v" "$work/base.v" uchar
  for i in $(seq -w 1 "$JPEGS"); do
    n=$((10#$i))
    vips crop "$work/base.v" "$corpus/jpeg/photo-$i.jpg[Q=85]" $(( (n * 37) % 600 )) $(( (n * 53) % 600 )) 4000 3000
  done
  rm -f "$work"/*.v
fi
if [ "$(ls "$corpus/mp4" | wc -l)" -lt "$VIDEOS" ]; then
  echo "making $VIDEOS 1080p 10 s H.264 videos..."
  for i in $(seq -w 1 "$VIDEOS"); do
    ffmpeg -nostdin -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=10" \
      -f lavfi -i "sine=frequency=$((200 + 10#$i * 20)):duration=10" \
      -vf "hue=h=$((10#$i * 30)),noise=alls=12:allf=t" -c:v libx264 -preset ultrafast -crf 23 \
      -c:a aac -b:a 64k -movflags +faststart "$corpus/mp4/clip-$i.mp4"
  done
fi
mkdir -p "$corpus/fade"
if [ "$(ls "$corpus/fade" | wc -l)" -lt "${FADES:-3}" ]; then
  echo "making ${FADES:-3} 1080p 10 s videos that fade in from black, one keyframe each..."
  for i in $(seq -w 1 "${FADES:-3}"); do
    ffmpeg -nostdin -v error -y -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=10" \
      -vf "hue=h=$((10#$i * 40)),fade=in:st=0:d=4" -c:v libx264 -preset ultrafast -crf 23 \
      -g 300 -keyint_min 300 -sc_threshold 0 -movflags +faststart "$corpus/fade/fade-$i.mp4"
  done
fi
if [ ! -f "$corpus/huge-20000.jpg" ]; then
  echo "making a 20000x20000 JPEG..."
  vips gaussnoise "$work/n.v" 4000 4000 --mean 128 --sigma 40
  vips cast "$work/n.v" "$work/n8.v" uchar
  vips zoom "$work/n8.v" "$corpus/huge-20000.jpg[Q=80]" 5 5
  rm -f "$work"/*.v
fi
