#!/usr/bin/env bash
# benchmarks/device_check.sh -- the one prepared accelerator check of issue 13 (item 7), for a FRESH lent machine:
# JAX 0.11 + CUDA, no TensorFlow, no package registry, one run of at most 8 minutes.
#
#   1. setup   installs the carried wheels (.whl/, made HERE by `bash benchmarks/device_wheels.sh`) into a
#              scratch site folder, records the environment (env.json) and the card's peak FLOP/s
#   2. data    simulates GPRA data with data_prep and builds it in the crmnet and legnet layouts
#   3. train   CRMnet, then LegNet, paper configurations, `python -m seq2exp.train` under KERAS_BACKEND=jax
#              (the JAX engine: real run folder, checkpoints, exact validation), mixed_bfloat16 + XLA,
#              a few hundred steps; the loss must fall
#   4. sweep   `python -m benchmarks.step_time` under JAX (the engine's own step): batches 1024 -> 16384
#              (the out-of-memory boundary recorded), mixed_bfloat16 then float32, XLA on, MFU
#   5. summary $OUT/summary.md (+ train.json); printed last
# Every stage has its own time budget, never past the overall deadline; the sweep rewrites its tables after
# every configuration and the summary is written on any exit, so a cut-short run still returns what it has.
#
# Run it (device tool): command "bash benchmarks/device_check.sh", carry [".whl"], timeout_s 540.
# Files under $OUT (7, flat): device_check.log, env.json, summary.md, train.json, step_time.{csv,json,md}.
# Rehearsal on a CPU (no accelerator, tiny sizes; DEVICE_PYTHON = an interpreter WITHOUT keras/tensorflow,
# e.g. a python3.12 venv with only the image's packages):
#   DEVICE_CHECK_SCALE=tiny DEVICE_PYTHON=/work/venv-dev312/bin/python JAX_PLATFORMS=cpu OUT=/tmp/dc \
#       bash benchmarks/device_check.sh
# Knobs: DEVICE_CHECK_SCALE (full|tiny), DEVICE_CHECK_DEADLINE_S (whole run; 460 full, 1500 tiny),
#        DEVICE_CHECK_WORK (scratch; default /tmp/device_check), DEVICE_PYTHON (default python3),
#        DEVICE_CHECK_STAGES (default data,train,sweep; setup always runs), and for a second run that finishes
#        a sweep the first one's budget cut short: DEVICE_CHECK_SWEEP_MODELS (crmnet,legnet),
#        DEVICE_CHECK_SWEEP_BATCHES (1024,...,16384), DEVICE_CHECK_SWEEP_PRECISIONS (mixed_bfloat16,float32), e.g.
#        DEVICE_CHECK_STAGES=sweep DEVICE_CHECK_SWEEP_MODELS=legnet bash benchmarks/device_check.sh
#
# Peak dense FLOP/s per device, for MFU (NVIDIA H100 Tensor Core GPU datasheet, and the H200 datasheet; the
# datasheets print tensor-core rates WITH 2:4 sparsity, dense = half):
#   H100 SXM / H200: BF16 tensor 989.4 TFLOP/s, TF32 tensor 494.7, FP32 (no tensor cores) 66.9
#   H100 NVL:        BF16 tensor 835.5,          TF32 tensor 417.5, FP32 60.0
#   H100 PCIe:       BF16 tensor 756.5,          TF32 tensor 378.0, FP32 51.2
# float32 rows are given MFU against the FP32 rate as the issue asks; JAX computes float32 matmuls and
# convolutions on GPUs with TF32 tensor cores by default (docs.jax.dev, "Matmul precision"), so the summary
# also states the float32 MFU against TF32 (which can be the honest one: > 100 % against FP32 means TF32).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
T0=$(date +%s)
SCALE=${DEVICE_CHECK_SCALE:-full}
PY=${DEVICE_PYTHON:-python3}
OUT=${OUT:-$REPO/bench_out/device_check}
WORK=${DEVICE_CHECK_WORK:-/tmp/device_check}
case "$SCALE" in
    full) DEADLINE_S=${DEVICE_CHECK_DEADLINE_S:-460}
          SIM_N=400000; PRESET=(); BATCH=1024; EPOCHS=3; STEPS=100; TRAIN_PREC=mixed_bfloat16
          SWEEP_PRESET=paper; SWEEP_BATCHES=1024,2048,4096,8192,16384; SWEEP_STEPS=8; SWEEP_LIMIT=3
          B_SETUP=45; B_DATA=60; B_CRMNET=130; B_LEGNET=100 ;;
    tiny) DEADLINE_S=${DEVICE_CHECK_DEADLINE_S:-1500}
          # a rehearsal checks paths, not speed: XLA's CPU optimisations off (compiles ~2x faster)
          export XLA_FLAGS=${XLA_FLAGS:---xla_backend_optimization_level=0}
          SIM_N=4000; PRESET=(--preset tiny); BATCH=64; EPOCHS=2; STEPS=12; TRAIN_PREC=mixed_bfloat16
          SWEEP_PRESET=tiny; SWEEP_BATCHES=32,64; SWEEP_STEPS=3; SWEEP_LIMIT=2
          B_SETUP=120; B_DATA=120; B_CRMNET=420; B_LEGNET=420 ;;
    *) echo "DEVICE_CHECK_SCALE must be full or tiny, got '$SCALE'" >&2; exit 2 ;;
esac
STAGES_ON=,${DEVICE_CHECK_STAGES:-data,train,sweep},
SWEEP_MODELS=${DEVICE_CHECK_SWEEP_MODELS:-crmnet,legnet}
SWEEP_BATCHES=${DEVICE_CHECK_SWEEP_BATCHES:-$SWEEP_BATCHES}
SWEEP_PRECISIONS=${DEVICE_CHECK_SWEEP_PRECISIONS:-mixed_bfloat16,float32}
DEADLINE=$((T0 + DEADLINE_S))
RESERVE=15   # seconds kept for the summary
SITE=$WORK/site
rm -rf "$WORK"; mkdir -p "$WORK" "$OUT"
exec > >(tee -a "$OUT/device_check.log") 2>&1
echo "device_check: scale $SCALE, deadline ${DEADLINE_S}s, repo $REPO, out $OUT, work $WORK, python $PY ($(date -u +%FT%TZ))"

export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPATH="$SITE:$REPO"
STAGES=$WORK/stages.tsv
printf 'stage\tstatus\tseconds\tbudget_s\n' > "$STAGES"

stage() {  # stage NAME BUDGET_S 'shell command': run under `timeout`, never past the deadline; record the result
    local name=$1 budget=$2 cmd=$3 left t rc status
    if [ "$name" != setup ] && [[ $STAGES_ON != *",${name%%_*},"* ]]; then
        echo "=== [$name] skipped (DEVICE_CHECK_STAGES)"
        printf '%s\tskipped\t0\t0\n' "$name" >> "$STAGES"
        return 0
    fi
    left=$((DEADLINE - $(date +%s) - RESERVE))
    ((budget > left)) && budget=$left
    if ((budget < 5)); then
        echo "=== [$name] not run: the deadline is too near"
        printf '%s\tnot_run\t0\t%s\n' "$name" "$budget" >> "$STAGES"
        return 1
    fi
    echo "=== [$name] budget ${budget}s ($(( $(date +%s) - T0 ))s into the run): $cmd"
    t=$(date +%s)
    timeout --signal=TERM --kill-after=10 "$budget" bash -c "$cmd"
    rc=$?
    case $rc in 0) status=ok ;; 124|137) status=timeout ;; *) status="exit_$rc" ;; esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$(( $(date +%s) - t ))" "$budget" >> "$STAGES"
    echo "=== [$name] $status after $(( $(date +%s) - t ))s"
    return $rc
}

summarize() {  # always, last: summary.md + train.json from whatever exists
    trap - EXIT
    cp "$WORK"/step_time/step_time.{csv,json,md} "$OUT"/ 2>/dev/null
    "$PY" - "$WORK" "$OUT" "$SCALE" "$T0" <<'EOF' || echo "summary failed (the files above are still there)"
import csv, json, os, sys, time
work, out, scale, t0 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
def load(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None
env = load(os.path.join(out, "env.json")) or {}
lines = [f"# device check ({scale} scale)", "",
         f"{env.get('accelerator', '?')} x{env.get('accelerator_count', '?')}; jax {env.get('jax', '?')}, keras "
         f"{env.get('keras', '?')}, python {env.get('python', '?')}; tensorflow importable: "
         f"{env.get('tensorflow_importable', '?')}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
         f"wall {time.time() - t0:.0f} s", "", "## stages", "", "| stage | status | seconds | budget s |", "|---|---|---:|---:|"]
with open(os.path.join(work, "stages.tsv")) as fh:
    for r in list(csv.DictReader(fh, delimiter="\t")):
        lines.append(f"| {r['stage']} | {r['status']} | {r['seconds']} | {r['budget_s']} |")
train = {}
lines += ["", "## training (python -m seq2exp.train, JAX engine)", "",
          "| model | epochs x steps | global batch | precision | loss per epoch | loss falls | seq/s per epoch | val r (last) | run folder |",
          "|---|---|---:|---|---|---|---|---:|---|"]
for model in ("crmnet", "legnet"):
    run = os.path.join(work, "runs", model)
    hist, metrics = load(os.path.join(run, "history.json")), load(os.path.join(run, "metrics.json"))
    files = sorted(os.listdir(run)) if os.path.isdir(run) else []
    rows = hist if isinstance(hist, list) else []
    losses = [r.get("loss") for r in rows]
    falls = len(losses) >= 2 and all(isinstance(x, (int, float)) for x in losses) and losses[-1] < losses[0]
    train[model] = {"run_dir_files": files, "history": rows, "metrics": metrics, "loss_falls": falls}
    if not rows:
        lines.append(f"| {model} | | | | no history | no | | | {', '.join(files)} |")
        continue
    m = metrics or {}
    lines.append(f"| {model} | {len(rows)} x {m.get('steps_per_epoch', '?')} | "
                 f"{m.get('global_batch_size', '?')} | {m.get('precision', '?')} | "
                 + " > ".join(f"{x:.4g}" for x in losses) + f" | {'yes' if falls else 'NO'} | "
                 + " / ".join(f"{r.get('seq_per_s', 0):,.0f}" for r in rows)
                 + f" | {rows[-1].get('val_pearson', float('nan')):.3f} | {', '.join(files)} |")
with open(os.path.join(out, "train.json"), "w") as fh:
    json.dump(train, fh, indent=1, default=str)
lines += ["", "First epoch's seq/s includes the XLA compilation; the last epoch's is the steady rate.", ""]
st = load(os.path.join(out, "step_time.json"))
if st:
    lines += ["## step_time sweep (benchmarks.step_time, JAX engine step, synthetic input on the device, XLA on)", "",
              "| model | precision | batch | status | median s/step | seq/s | TFLOP/s | MFU | MFU vs TF32 | memory GB |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    tf32 = env.get("peak_tflops", {}).get("tf32")
    for r in st.get("results", []):
        ok = r.get("status") == "ok"
        mfu = r.get("utilisation")
        mfu32 = (r["tflops_achieved"] / tf32 if ok and tf32 and r.get("precision") == "float32" else None)
        fmt = lambda v, f: (f.format(v) if isinstance(v, (int, float)) else "")
        lines.append(f"| {r['model']} | {r['precision']} | {r['batch_per_replica']} | "
                     f"{r['status'] if ok else r['status'] + ': ' + str(r.get('oom_reason') or r.get('error') or r.get('reason') or '')[:60]} | "
                     f"{fmt(r.get('median_s'), '{:.4g}') if ok else ''} | {fmt(r.get('seq_per_s'), '{:,.0f}') if ok else ''} | "
                     f"{fmt(r.get('tflops_achieved'), '{:.3g}') if ok else ''} | {fmt(mfu, '{:.1%}') if ok else ''} | "
                     f"{fmt(mfu32, '{:.1%}')} | {fmt(r.get('memory_gb'), '{:.1f}') if ok else ''} |")
    best = {}
    for r in st.get("results", []):
        if r.get("status") == "ok":
            best[r["model"]] = max(best.get(r["model"], 0), r["seq_per_s"])
    peaks = env.get("peak_tflops", {})
    lines += ["", f"Peaks used (dense, per device): {peaks or 'none known for this device: MFU left blank'}; "
              "source: NVIDIA H100 / H200 datasheets (see the header of benchmarks/device_check.sh).", "",
              "## against the issue's targets", "", "| model | target seq/s (training) | best sweep seq/s | last training epoch seq/s |",
              "|---|---:|---:|---:|"]
    for model, target in (("crmnet", 76000), ("legnet", 50000)):
        rows = train.get(model, {}).get("history") or [{}]
        lines.append(f"| {model} | {target:,} | {best.get(model, 0):,.0f} | {rows[-1].get('seq_per_s', 0):,.0f} |")
else:
    lines += ["## step_time sweep", "", "no results (see device_check.log)"]
text = "\n".join(lines) + "\n"
with open(os.path.join(out, "summary.md"), "w") as fh:
    fh.write(text)
print(text)
EOF
    echo "device_check: done in $(( $(date +%s) - T0 ))s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
}
trap summarize EXIT

# ------------------------------------------------------------------------------------------------ 1. setup
setup() {
    if ! ls "$REPO"/.whl/*.whl >/dev/null 2>&1; then
        echo "no wheels in $REPO/.whl: run 'bash benchmarks/device_wheels.sh' where pip works and carry .whl" >&2
        return 1
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$REPO"/.whl/*.whl || return 1
    "$PY" - "$OUT/env.json" <<'EOF'
import importlib.util, json, os, platform, subprocess, sys
import jax, keras
devices = jax.devices()
accel = [d for d in devices if d.platform != "cpu"]
kind = accel[0].device_kind if accel else "CPU"
# dense peaks per device (see the script's header for the source); None: unknown card, no MFU
if "H100" in kind and "NVL" in kind:
    peaks = {"mixed_bfloat16": 835.5, "mixed_float16": 835.5, "tf32": 417.5, "float32": 60.0}
elif "H200" in kind or ("H100" in kind and "PCIe" not in kind):
    peaks = {"mixed_bfloat16": 989.4, "mixed_float16": 989.4, "tf32": 494.7, "float32": 66.9}
elif "H100" in kind:
    peaks = {"mixed_bfloat16": 756.5, "mixed_float16": 756.5, "tf32": 378.0, "float32": 51.2}
else:
    peaks = {}
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm",
                          "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
except (OSError, subprocess.SubprocessError):
    smi = None
env = {"python": platform.python_version(), "python_executable": sys.executable, "jax": jax.__version__,
       "keras": keras.__version__, "keras_file": keras.__file__, "keras_backend": keras.backend.backend(),
       "jax_backend": jax.default_backend(), "devices": [f"{d.platform}:{d.id} {d.device_kind}" for d in devices],
       "accelerator": kind, "accelerator_count": len(accel), "nvidia_smi": smi, "peak_tflops": peaks,
       "tensorflow_importable": importlib.util.find_spec("tensorflow") is not None,
       "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
       "cpu_count": os.cpu_count(),
       "env": {k: v for k, v in os.environ.items() if k.startswith(("JAX", "XLA", "KERAS", "CUDA", "DEVICE_CHECK"))}}
with open(sys.argv[1], "w") as fh:
    json.dump(env, fh, indent=1)
print(json.dumps(env, indent=1))
if env["tensorflow_importable"]:
    print("note: tensorflow is importable with this interpreter; the JAX path must not import it", file=sys.stderr)
EOF
}
export -f setup
export REPO SITE OUT PY
stage setup "$B_SETUP" setup || { echo "setup failed: nothing else can run"; exit 1; }
PEAKS=$("$PY" -c "import json,sys; p=json.load(open(sys.argv[1]))['peak_tflops']; \
print(','.join(f'{k}={p[k]}' for k in ('float32','mixed_bfloat16') if k in p))" "$OUT/env.json")

# ------------------------------------------------------------------------------------------------ 2. data
DATA=$WORK/data
stage data "$B_DATA" "set -e; mkdir -p $DATA
    $PY -m data_prep.simulate --n $SIM_N --seed 0 --out $DATA/sim.tsv
    for layout in crmnet legnet; do
        $PY -m data_prep.build $DATA/sim.tsv --out $DATA/\$layout --layout \$layout --workers 8 --quiet
    done"

# ------------------------------------------------------------------------------------------------ 3. train
for model in crmnet legnet; do
    budget=$B_CRMNET; [ "$model" = legnet ] && budget=$B_LEGNET
    stage "train_$model" "$budget" "$PY -m seq2exp.train --model $model ${PRESET[*]} --data $DATA/$model \
        --batch-size $BATCH --epochs $EPOCHS --steps-per-epoch $STEPS --precision $TRAIN_PREC --jit \
        --run-dir $WORK/runs/$model"
done

# ------------------------------------------------------------------------------------------------ 4. sweep
left=$((DEADLINE - $(date +%s) - RESERVE))
stage sweep "$left" "$PY -m benchmarks.step_time --models $SWEEP_MODELS --preset $SWEEP_PRESET \
    --batch-sizes $SWEEP_BATCHES --precisions $SWEEP_PRECISIONS --jit --synthetic-input \
    --warmup 2 --steps $SWEEP_STEPS --time-limit $SWEEP_LIMIT ${PEAKS:+--peak-tflops $PEAKS} \
    --budget-s $((left > 40 ? left - 25 : 15)) --out-dir $WORK/step_time --name step_time --no-plot"
exit 0
