#!/usr/bin/env bash
# Train every built-in model after the VAE, as the shipped weights were made:
# shapes-ldm, shapes-ddpm, shapes-classifier and shapes-flow at once, then
# shapes-controlnet on the new shapes-ldm; then the lecture's other systems
# (issue 13): shapes-clip and shapes-palette at once, then shapes-prior and
# shapes-unclip on the new shapes-clip (they read its embeddings); then the
# cascade (shapes-t5, shapes-sr, the two bases) and shapes-refiner; then issue
# 14's (shapes-gemma, shapes-dcae and shapes-video at once, then shapes-sana on
# the first two). Each stops
# at its step count or its time budget, whichever comes first, and writes its
# model file. (The shipped clip/palette/prior/unclip files, the cascade's and the
# refiner were trained on the CPU instead; their exact commands are in
# docs/models.md.)
#
#   scripts/train_builtin.sh OUT_DIR [DEVICE] [MINUTES_PHASE1] [MINUTES_PHASE2] [STEPS]
#
# The shapes-vae is copied from resources/models (train it with
# `diffusion-workbench train shapes-vae`). Logs go to OUT_DIR/train.log.
set -u
out=${1:?usage: train_builtin.sh OUT_DIR [DEVICE] [MINUTES1] [MINUTES2] [STEPS]}
device=${2:-auto}; first=${3:-3.5}; second=${4:-3.5}; steps=${5:-100000}
batch=${BATCH:-256}; pool=${POOL:-60000}; workers=${WORKERS:-4}; threads=${THREADS:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
dw=(python3 -m app.cli.main)
mkdir -p "$out"
cp "$here/resources/models/shapes-vae.safetensors" "$out/"
cd "$here"
train() {  # MODEL MINUTES [extra args]
  local model=$1 minutes=$2; shift 2
  "${dw[@]}" train "$model" --device "$device" --steps "$steps" --batch "$batch" \
    --pool "$pool" --workers "$workers" --threads "$threads" --max-minutes "$minutes" \
    --models-dir "$out" --out "$out/$model.safetensors" "$@" >"$out/$model.log" 2>&1
  echo "$model exit $?" >>"$out/train.log"
}
both=$(python3 -c "print($first + $second)")
train shapes-ldm "$first" &
train shapes-ddpm "$both" &
train shapes-flow "$both" &
train shapes-classifier "$first" --batch "$((batch / 2))" &
wait %1
if [ ! -f "$out/shapes-ldm.safetensors" ]; then  # fall back to the shipped model
  cp resources/models/shapes-ldm.safetensors "$out/"
fi
train shapes-controlnet "$second"
wait
train shapes-clip "$first" &
train shapes-palette "$both" --batch "$((batch / 4))" &
wait %1
if [ -f "$out/shapes-clip.safetensors" ]; then
  train shapes-prior "$second" &
  train shapes-unclip "$second" --batch "$((batch / 4))" &
fi
wait
# the cascade and the refiner (issue 13): shapes-t5, shapes-sr and shapes-refiner
# at once, then the two cascade bases on the frozen T5 and on shapes-clip's text
train shapes-t5 "$first" &
train shapes-sr "$both" --batch "$((batch / 4))" &
train shapes-refiner "$first" &
wait %1
[ -f "$out/shapes-clip.safetensors" ] || cp resources/models/shapes-clip.safetensors "$out/"
if [ -f "$out/shapes-t5.safetensors" ]; then
  train shapes-cascade-base "$second" &
fi
train shapes-cascade-base-clip "$second" &
wait
# issue 14: Sana's language model and autoencoder beside the video model, then
# Sana's DiT on the first two
train shapes-gemma "$first" &
train shapes-dcae "$both" --batch "$((batch / 4))" &
train shapes-video "$both" --batch "$((batch / 8))" --pool "$((pool / 8))" &
wait %1 %2
if [ -f "$out/shapes-gemma.safetensors" ] && [ -f "$out/shapes-dcae.safetensors" ]; then
  train shapes-sana "$both"
fi
wait
tail -n 3 "$out"/shapes-*.log >>"$out/train.log"
