#!/usr/bin/env bash
# Prepares, in .gpu-carry/ (ignored via .git/info/exclude), what benchmarks/gpu.py needs on the GPU machine
# beyond its own image (Python 3.12, torch 2.11, torchvision 0.26, torchaudio 2.11, scikit-learn, scipy):
#   whl/      Python 3.12 wheels: torchcodec 0.11.1 (the release paired with torch 2.11), orjson, polars
#   ffmpeg/   FFmpeg 5.1's shared libraries, built here from Debian's source package with only the
#             decoders, demuxers and filters the loader uses: Debian's own binary packages pull in 212
#             libraries (246 MB), four times what a call may carry; this build needs glibc alone
#   shards/   small SynthTok shards (synth -> import -> shard), which gpu.py repeats to fill 15 workers
# then prints the carried size (at most 64 MiB travel per call) and the device `run` command to use.
#
#     bash scripts/gpu-carry.sh [--videos 128]
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CARRY=.gpu-carry
PY=.venv/bin/python
VIDEOS=128
[[ ${1:-} == --videos ]] && VIDEOS=$2
FFMPEG_VERSION=7:5.1.9-0+deb12u1  # Debian bookworm-security; the epoch is part of it
WHEELS=(torchcodec==0.11.1 orjson==3.13.0 polars==1.20.0)
LIMIT=$((64 * 1024 * 1024))

grep -qx '/.gpu-carry/' .git/info/exclude 2>/dev/null || echo '/.gpu-carry/' >>.git/info/exclude
mkdir -p "$CARRY"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

wheels() {
    rm -rf "$CARRY/whl"
    # One platform tag per glibc: pip matches manylinux_2_N exactly.
    local platforms=()
    for n in 17 24 27 28; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux2014_x86_64 "${platforms[@]}" -d "$CARRY/whl" "${WHEELS[@]}"
    # What they need beyond themselves must already be on the GPU machine (KINDS.md's package list).
    "$PY" -m pip install -q --dry-run --ignore-installed --no-index --find-links "$CARRY/whl" \
        --python-version 3.12 --implementation cp --only-binary=:all: --platform manylinux2014_x86_64 \
        "${platforms[@]}" --target "$WORK/site" "${WHEELS[@]}" --no-deps
    for wheel in "$CARRY"/whl/*.whl; do
        unzip -p "$wheel" '*.dist-info/METADATA' | grep '^Requires-Dist' | grep -v 'extra ==' || true
    done
}

ffmpeg_libs() {
    [[ -f $CARRY/ffmpeg/BUILT-${FFMPEG_VERSION#*:} ]] && return
    local src=$WORK/src apt_options
    mkdir -p "$src/lists/partial"
    printf 'deb-src http://deb.debian.org/debian%s main\n' ' bookworm' '-security bookworm-security' \
        >"$src/sources.list"
    apt_options=(-o "Dir::Etc::SourceList=$src/sources.list" -o Dir::Etc::SourceParts=/nonexistent
        -o "Dir::State::Lists=$src/lists")
    (cd "$src" && apt-get "${apt_options[@]}" update -qq && apt-get "${apt_options[@]}" source \
        --download-only "ffmpeg=$FFMPEG_VERSION" && apt-get download nasm) >/dev/null
    dpkg -x "$src"/nasm_*.deb "$src/nasm"
    tar -xJf "$src"/ffmpeg_*.orig.tar.xz -C "$src"
    rm -rf "$CARRY/ffmpeg"
    (
        cd "$src"/ffmpeg-5.1*/
        PATH=$src/nasm/usr/bin:$PATH ./configure --prefix="$WORK/ffmpeg" --enable-shared --disable-static \
            --disable-programs --disable-doc --disable-debug --disable-autodetect --disable-everything \
            --enable-avdevice --enable-avfilter --enable-swscale --enable-swresample \
            --enable-protocol=file,pipe \
            --enable-demuxer=mov,matroska,webm_dash_manifest,flac,ogg,wav,mp3,aac,h264,hevc \
            --enable-parser=h264,hevc,vp8,vp9,aac,flac,opus,vorbis,mpegaudio \
            --enable-decoder=h264,hevc,vp8,vp9,mpeg4,aac,mp3,opus,vorbis,flac,pcm_s16le,pcm_f32le \
            --enable-bsf=h264_mp4toannexb,hevc_mp4toannexb,vp9_superframe_split \
            --enable-filter=buffer,buffersink,abuffer,abuffersink,format,aformat,scale,aresample,crop,pad \
            --enable-filter=hflip,vflip,transpose,rotate,fps,setpts,null,anull,copy,split >/dev/null
        PATH=$src/nasm/usr/bin:$PATH make -j"$(nproc)" >/dev/null
        make install >/dev/null
    )
    mkdir -p "$CARRY/ffmpeg"
    local lib soname
    for lib in "$WORK"/ffmpeg/lib/*.so; do  # one file per library, named as the loader asks: no links
        soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
        cp -L "$lib" "$CARRY/ffmpeg/$soname"
    done
    strip --strip-unneeded "$CARRY"/ffmpeg/*.so.*
    # The libraries must need nothing the GPU image might lack.
    if readelf -d "$CARRY"/ffmpeg/*.so.* | grep NEEDED | grep -v -E 'lib(av|sw|postproc)|libc\.so|libm\.so'; then
        echo "FFmpeg build links a library beyond glibc" >&2
        exit 1
    fi
    touch "$CARRY/ffmpeg/BUILT-${FFMPEG_VERSION#*:}"
}

shards() {
    rm -rf "$CARRY/shards"
    # A file, not stdin: the synth workers are spawned and re-import their parent's main module.
    cat >"$WORK/shards.py" <<'EOF'
import sys
from pathlib import Path

from tkds.collector.importer import import_captures
from tkds.dataset.build import ShardParams, build_shards
from tkds.synth import generate

if __name__ == "__main__":
    work, out, videos = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    corpus = work / "corpus"
    generate(corpus, videos, seed=19, seconds=(2.5, 3.0), progress=False)
    import_captures(work / "tk.duckdb", sorted((corpus / "items").glob("*.json")), corpus / "media", False)
    labels = str(corpus / "corpus.json")
    # random: SynthTok has few authors, and an author split left val empty
    params = ShardParams(
        size=128, samples_per_shard=16, labels=labels, split_by="random", ratios=(0.7, 0.15, 0.15)
    )
    build_shards(work / "tk.duckdb", out, params, progress=False)
EOF
    PYTHONPATH=$REPO "$PY" "$WORK/shards.py" "$WORK" "$CARRY/shards" "$VIDEOS"
}

check() {
    # Every FFmpeg symbol torchcodec's FFmpeg-5 libraries import must be exported by this build.
    unzip -q -o "$CARRY"/whl/torchcodec-*.whl 'torchcodec/libtorchcodec_*5.so' -d "$WORK/torchcodec"
    nm -D --defined-only "$CARRY"/ffmpeg/*.so.* | awk 'NF == 3 {sub("@@", "@", $3); print $3}' |
        sort -u >"$WORK/defined"
    nm -D --undefined-only "$WORK"/torchcodec/torchcodec/*.so | awk '{print $2}' | grep -E '@LIB(AV|SW)' |
        sort -u >"$WORK/needed"
    if [[ -n $(comm -23 "$WORK/needed" "$WORK/defined") ]]; then
        echo "torchcodec needs FFmpeg symbols this build lacks: $(comm -23 "$WORK/needed" "$WORK/defined")" >&2
        exit 1
    fi
    echo "torchcodec: all $(wc -l <"$WORK/needed") FFmpeg symbols it imports are in the build"
    # The run command's install, under a Python 3.12 where there is one (pyenv's, on our machines).
    local python312="" candidate
    for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
        if "$candidate" -c '' 2>/dev/null; then
            python312=$candidate
            break
        fi
    done
    if [[ -n $python312 ]]; then
        "$python312" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" \
            "$CARRY"/whl/*.whl
        PYTHONPATH=$WORK/site "$python312" -c 'import sys, polars, orjson
print("Python", sys.version.split()[0], "imports polars", polars.__version__, "and orjson", orjson.__version__)'
    else
        echo "no Python 3.12 here: checked the wheels resolve for 3.12 (pip --dry-run) only"
    fi
}

wheels
ffmpeg_libs
shards
check

carried=$(du -sb "$CARRY" | cut -f1)
tree=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total=$((carried + tree))
printf 'carried %s: %.1f MiB; with the working tree: %.1f MiB of %d MiB\n' "$CARRY" \
    "$(echo "$carried / 1048576" | bc -l)" "$(echo "$total / 1048576" | bc -l)" $((LIMIT / 1048576))
for part in whl ffmpeg shards; do printf '  %-7s %s\n' "$part" "$(du -sh "$CARRY/$part" | cut -f1)"; done
if ((total > LIMIT)); then
    echo "over the limit: carry fewer videos (--videos)" >&2
    exit 1
fi
cat <<EOF

device run, carry [".gpu-carry"], timeout_s 540:
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu-carry/whl/*.whl || exit; export PYTHONPATH=/tmp/site:\$PWD LD_LIBRARY_PATH=\$PWD/.gpu-carry/ffmpeg PYTHONUNBUFFERED=1; set -o pipefail; python3 benchmarks/gpu.py \$OUT --shards .gpu-carry/shards --budget-s 480 2>&1 | tee \$OUT/log.txt
EOF
