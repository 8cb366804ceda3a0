#!/usr/bin/env bash
# Sets up tkds on this machine: system packages, a virtual environment in .venv, and the package in
# editable mode with its dev extras. Idempotent: a second run only checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "setup: $*" >&2; exit 1; }

# --- Python 3.11 or newer (PyAV 18 has no wheels for older ones); tested on 3.11.
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
       && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' 2>/dev/null; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "$PYTHON" ] || fail "Python 3.11 or newer is required (found: $(python3 --version 2>&1 || echo none)); install it or set PYTHON=/path/to/python3"

# --- System packages: FFmpeg (CLI and the shared libraries torchcodec loads) and Chromium.
missing=()
command -v ffmpeg >/dev/null 2>&1 && command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and there is no apt-get; install them with your package manager and re-run"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "missing ${missing[*]}; run this script as root or install them: apt-get install ${missing[*]}"
    SUDO=sudo
  fi
  echo "setup: installing ${missing[*]} with apt-get (a few hundred MB to download; the time depends on the network)"
  $SUDO apt-get update -qq || fail "apt-get update failed; check the network or your apt sources"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]} failed"
fi

# --- Virtual environment, reinstalled only when pyproject.toml or constraints.txt changes.
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $("$PYTHON" --version)"
  "$PYTHON" -m venv "$VENV" || fail "could not create $VENV (is the python3-venv package installed?)"
fi
# TKDS_EXTRAS: the extras to install (`make test` adds ray, so the suite's Ray tests run). The stamp keeps
# the hash of pyproject.toml and constraints.txt, and the extras installed; extras once installed stay.
EXTRAS=${TKDS_EXTRAS:-dev}
[[ "$EXTRAS" =~ ^[a-z,]+$ ]] || fail "TKDS_EXTRAS=$EXTRAS: give extras as names joined by commas, e.g. dev,ray"
stamp="$VENV/.tkds-installed"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
read -r have have_extras 2>/dev/null < "$stamp" || true
EXTRAS=$(echo "$EXTRAS,${have_extras:-}" | tr ',' '\n' | grep -v '^$' | sort -u | paste -sd, -)
if [ "${have:-}" != "$want" ] || [ "${have_extras:-}" != "$EXTRAS" ]; then
  echo "setup: installing tkds[$EXTRAS] and the tested versions of constraints.txt into $VENV"
  echo "setup: the first time takes 3 to 6 minutes on 2 cores and 6.9 GB of disk (torch with its CUDA libraries)"
  started=$SECONDS
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[$EXTRAS]" \
    || fail "pip install failed; see the messages above"
  echo "$want $EXTRAS" > "$stamp"
  echo "setup: installed in $(( (SECONDS - started) / 60 )) min $(( (SECONDS - started) % 60 )) s"
fi
"$VENV/bin/python" -c 'import tkds, torchcodec' || fail "tkds or torchcodec does not import; delete $VENV and re-run"
echo "setup: ready ($VENV/bin/tkds)"
