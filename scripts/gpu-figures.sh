#!/usr/bin/env bash
# The proxy-training figures that need a CUDA GPU (docs/results.md, "Proxy training"), in one
# run of a few minutes: loop against model step per workload and precision, the classifier's
# top-1 after 10 epochs, an 8-architecture shard sequential against concurrent, and the
# detector overfit. Each bench writes its JSON and log under OUT; summary.txt has one line each.
#
#   scripts/gpu-figures.sh OUT            # from the repository root, installed or not
#   DATA=cifar10_mini.npz COCO=coco_mini/ scripts/gpu-figures.sh OUT
set -uo pipefail

out=${1:?usage: scripts/gpu-figures.sh OUT}
data=${DATA:-../shared/data/cifar10_mini/cifar10_mini.npz}
coco=${COCO:-../shared/data/coco_mini}
limit=${LIMIT_S:-150}  # seconds per bench, so one slow bench cannot eat the others' time
mkdir -p "$out"

python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA device is visible")' || exit 2
for path in "$data" "$coco"; do
    [[ -e $path ]] || { echo "missing data: $path (set DATA or COCO)" >&2; exit 2; }
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.txt" 2>&1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' >> "$out/gpu.txt"

bench() {
    local name=$1 start=$SECONDS
    shift
    PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} timeout "$limit" python3 -m prednas.cli bench "$@" \
        --json "$out/$name.json" > "$out/$name.log" 2>&1
    echo "$name: exit $?, $((SECONDS - start)) s" | tee -a "$out/summary.txt"
}

bench throughput training-throughput --device cuda --data "$data" --coco "$coco"
bench classifier classifier --device cuda --data "$data" --epochs 10 --seed 0
bench concurrency shard-concurrency --device cuda --data "$data" --concurrency 1,2,4,8 --seed 0
bench detection detection-overfit --device cuda --coco "$coco" --seed 0
