#!/usr/bin/env bash
# Fetch, HERE (where pip reaches a package registry), the wheels that benchmarks/device_check.sh installs on the
# accelerator machine, which has no registry. Writes them into .whl/ in the repository root (git-ignored; the
# device tool carries it with `carry: [".whl"]`, counted in the 64 MiB that travel: these are ~3.5 MB).
#
# What the machine lacks (/work/.library/device/KINDS.md, package list read 2026-11-17: JAX 0.11.2 + CUDA 13,
# numpy, scipy, pandas, matplotlib, pyyaml, h5py, ml-dtypes, rich, absl-py, packaging, typing-extensions,
# tensorboard; NO tensorflow, NO keras) and the JAX path of this package imports:
#   keras                     (its requirements absl-py, h5py, ml-dtypes, numpy, packaging, rich are there;
#   namex, optree              namex and optree are not)
#   mmh3, isal, google-crc32c  (data_prep: hash folds, gzip/zlib shards, TFRecord CRC-32C)
#   tensorboardX              (the engine's TensorBoard writer; its protobuf is there)
# logomaker (saliency logos of evaluation reports) is left out: the device check writes no report.
# Versions are pinned to the ones the CPU rehearsal ran with (`DEVICE_CHECK_SCALE=tiny`, see device_check.sh).
#
# Usage: bash benchmarks/device_wheels.sh        (PYTHON=python3.x to choose the pip that downloads)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEST=.whl
PKGS=(keras==3.15.1 namex==0.1.0 optree==0.20.0 mmh3==5.3.1 isal==1.9.1 google-crc32c==1.9.0 tensorboardX==2.6.5)

mkdir -p "$DEST"
# one version of each package: a second one would stop the whole install on the device
for spec in "${PKGS[@]}"; do
    name=${spec%%==*}
    stem=${name//-/_}
    for old in "$DEST"/"$stem"-*.whl; do
        [ -e "$old" ] || continue
        case "$old" in "$DEST/$stem-${spec##*==}-"*) ;; *) echo "removing other version: $old"; rm -f "$old" ;; esac
    done
done
# CPython 3.12 on x86-64 (the device's python3, /opt/torch/.venv/bin/python3); pip matches manylinux tags exactly
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 \
    --platform manylinux1_x86_64 -d "$DEST" "${PKGS[@]}"
# every requirement of the carried wheels is carried or already on the machine
"$PY" - "$DEST" <<'EOF'
import re, sys, zipfile, glob, os
present = {"absl-py", "h5py", "ml-dtypes", "numpy", "packaging", "rich", "typing-extensions", "jax", "scipy",
           "pandas", "matplotlib", "pyyaml", "protobuf"}  # on the device image (KINDS.md)
wheels = sorted(glob.glob(os.path.join(sys.argv[1], "*.whl")))
carried = {re.split(r"-\d", os.path.basename(w), maxsplit=1)[0].lower().replace("_", "-") for w in wheels}
missing = []
for w in wheels:
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:") and "extra ==" not in line:
                req = re.split(r"[ ;<>=!~\[(]", line.split(":", 1)[1].strip())[0].lower().replace("_", "-")
                if req not in present | carried:
                    missing.append(f"{os.path.basename(w)} needs {req}")
print(f"{len(wheels)} wheels, {sum(os.path.getsize(w) for w in wheels) / 1e6:.1f} MB in {sys.argv[1]}")
if missing:
    sys.exit("not on the device and not carried: " + "; ".join(missing))
EOF
