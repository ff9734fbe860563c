#!/usr/bin/env bash
# Stage what a borrowed GPU machine needs and cannot fetch: the wheels it lacks (deepinv and
# natsort; it has torch, torchvision, scikit-image, click, ...) and the data (../shared does not
# travel). Both land in folders git ignores locally (.git/info/exclude), named in `carry`.
#   bench/device/prepare.sh gray      # BSDS500 train+test and BSD68 (about 37 MB)
#   bench/device/prepare.sh fmnist    # Fashion-MNIST idx files (about 30 MB)
# The 64 MiB a call may carry does not hold both: one job per call. Commands: docs/training.md
# ("A budgeted GPU run") and docs/classify.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
job="${1:?usage: bench/device/prepare.sh gray|fmnist}"
data="${PNP_STABLE_DATA:-../shared/data}"
exclude=.git/info/exclude
mkdir -p "$(dirname "$exclude")"
for path in /.whl/ /.data/; do
    grep -qxF "$path" "$exclude" 2>/dev/null || echo "$path" >> "$exclude"
done
rm -rf .whl .data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl deepinv==0.5.0 natsort==8.4.0
case "$job" in
    gray)
        mkdir -p .data/denoising/bsds500/images
        cp -r "$data/denoising/bsds500/images/train" "$data/denoising/bsds500/images/test" .data/denoising/bsds500/images/
        cp -r "$data/denoising/bsd68" .data/denoising/ ;;
    fmnist)
        mkdir -p .data/classification
        cp -r "$data/classification/fashion_mnist" .data/classification/ ;;
    *) echo "error: unknown job $job (gray or fmnist)" >&2; exit 2 ;;
esac
du -sh .whl .data
