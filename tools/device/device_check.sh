#!/usr/bin/env bash
# The device check for a session that is lent the GPU machine (one H200, 16 cores, no dvc, no network).
# PREPARED, NOT YET RUN on a GPU (no device was lent to the session that wrote it). docs/gpu.md explains it.
#
# Two parts, two calls of the device tool, sized for 15 minutes of device time in all (machine start included,
# 1-2 min) and 10 minutes per command:
#
#   part 1 (a + b), about 4 min:   run(command="bash tools/device/device_check.sh 1", timeout_s=270)
#     a. the runner's preflight (a bare `python3 -c 'import torch'` under `timeout 60`, then the versions), then
#        a smoke step of each backbone on CUDA at the committed sizes (fp32 and bf16), and of the MLP and U-Net
#        denoisers on each backbone's guidance                                                  (<= 60 s)
#     b. the SASRec seed-0 chain exactly as dvc.yaml's commands, in dvc's order, each stage timed
#        (download, preprocess, similarity, train_backbone, train_diffusion, opinions @ ml-1m sasrec 0, and evaluate
#        with the study cut to that run), then
#        its outputs against dvc.lock (data stages: byte-identical expected) and the test metrics against the
#        committed CPU run (a difference is a finding, not a failure)
#   part 2 (c), about 7 min:       run(command="bash tools/device/device_check.sh 2", timeout_s=420)
#     c. the smoke of the four backbones at paper scale, then one paper-scale (backbone, seed): CBiT seed 0 with
#        profiles/paper-scale.yaml, its epoch cap set from that smoke's CBiT row so that training fits the
#        part's budget (the cap used is printed and kept in params.yaml)
#
# Start part 2 only if status says >= 8.5 min of device time are left; if part 1 fails in its first minute
# (preflight), fix and rerun part 1 instead. Call give_back after the last part.
# Files back in $OUT (8 at most), each part: device.log run.log timings.tsv metrics.json params.yaml smoke.json.
# Knobs (env): BUDGET_S (the part's own cap), PY (interpreter), DATASET (ml-1m), DRY=1 (a CPU: toy sizes,
# --device cpu; only ever on a tiny copy of the repo with DATASET=custom: the stages replace their outputs).
set -u -o pipefail
ulimit -c 0
PART=${1:-1}
T0=$(date +%s)
OUT=${OUT:-/tmp/device_check_out}
mkdir -p "$OUT"
LOG="$OUT/device.log"
say() { echo "[device_check +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
say "part $PART start $(date -u +%FT%TZ) in $PWD; shell alive (the first line, before any python)"
[ -f dvc.yaml ] && [ -d src/globaldiff ] || { say "FATAL: run from the repo root"; exit 2; }

PY=${PY:-}
if [ -z "$PY" ]; then
  for c in /opt/torch/.venv/bin/python3 "$(command -v python3 2>/dev/null)"; do
    if [ -n "$c" ] && [ -x "$c" ]; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { say "FATAL: no python3"; exit 2; }
export PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 PYTHONDONTWRITEBYTECODE=1 MPLBACKEND=Agg
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
NCPU=$(nproc 2>/dev/null || echo 16); [ "$NCPU" -gt 16 ] && NCPU=16
DEVICE=cuda; [ "${DRY:-0}" = 1 ] && DEVICE=cpu
say "python $PY, $NCPU cores, device $DEVICE"
left() { echo $(( BUDGET_S - ( $(date +%s) - T0 ) )); }

DATASET=${DATASET:-ml-1m}     # DRY=1 on a tiny copy: DATASET=custom
RUNNER=("$PY" -u tools/device/runner.py --device "$DEVICE" --cores "$NCPU" --heartbeat-s 20 --metrics combined --out "$OUT")

# step 0, both parts: the bare torch import under `timeout 60`, then the versions (the runner's preflight)
"${RUNNER[@]}" --preflight-only
PRC=$?
[ "$PRC" = 0 ] || { say "FATAL: preflight failed (rc $PRC): see the step 1/2 lines above; nothing else runs"; exit 3; }

if [ "$PART" = 1 ]; then
  BUDGET_S=${BUDGET_S:-250}
  COMMITTED=/tmp/committed_${DATASET}_sasrec_seed0.json   # evaluate replaces the tracked file (outs removed first)
  cp "reports/metrics/$DATASET/sasrec/seed0.json" "$COMMITTED" 2>/dev/null || true
  # a. smoke: every backbone and both denoisers on the device at the committed sizes, fp32 and bf16
  SMOKE=(--device "$DEVICE" --steps 10 --hang-after-s 55)
  [ "${DRY:-0}" = 1 ] && SMOKE=(--device cpu --steps 1 --warmup 1 --items 30 --batch 8 --users 16)
  say "a. smoke, committed sizes"
  timeout -s ABRT -k 10 60 "$PY" -u -X faulthandler tools/device/smoke.py "${SMOKE[@]}" --precisions fp32,bf16 \
    --backbones sasrec,bert4rec,cbit,srgnn --json "$OUT/smoke.json" 2>&1 | tee -a "$LOG"
  say "smoke rc ${PIPESTATUS[0]}"
  # b. the SASRec seed-0 chain, dvc.yaml's commands in dvc's order, each stage timed (timings.tsv)
  say "b. SASRec seed-0 chain on $DATASET, budget $(( $(left) - 25 ))s"
  # (evaluate fuses every run of the study: the study is cut to this one run, in the device's copy of params.yaml)
  "${RUNNER[@]}" --no-preflight --set "study.datasets=[$DATASET]" --set 'study.backbones=[sasrec]' \
    --set 'study.seeds=[0]' --write-params --only evaluate --budget-s $(( $(left) - 25 )) \
    --stage-timeout 'download@*=60' --stage-timeout 'preprocess@*=90' --stage-timeout 'similarity@*=90'
  RC=$?
  say "runner rc $RC"
  timeout 30 "$PY" tools/device/dirhash.py --lock dvc.lock "data/processed/$DATASET" "models/$DATASET/similarity.pt" 2>&1 | tee -a "$LOG"
  timeout 30 "$PY" - "$COMMITTED" "reports/metrics/$DATASET/sasrec/seed0.json" <<'PYEOF' 2>&1 | tee -a "$LOG"
import json, os, sys
old, new = sys.argv[1], sys.argv[2]
if not (os.path.isfile(new) and os.path.isfile(old)):
    sys.exit(print("metrics: evaluate did not run, or no committed metrics: nothing to compare"))
a, b = json.load(open(new)), json.load(open(old))
print(f"{'test metric':24s} {'this run':>9s} {'committed CPU':>14s} {'diff':>8s}")
for model in ("backbone", "diffusion", "fusion"):
    for m in ("HR@10", "NDCG@10", "HR@20", "NDCG@20"):
        x, y = a["test"][model][m], b["test"][model][m]
        print(f"{model + ' ' + m:24s} {x:9.4f} {y:14.4f} {x - y:+8.4f}")
PYEOF
  say "part 1 done in $(( $(date +%s) - T0 ))s (files: $(ls "$OUT" | tr '\n' ' '))"
  exit "$RC"
fi

if [ "$PART" = 2 ]; then
  BUDGET_S=${BUDGET_S:-400}
  # c. a smoke of the four backbones at paper scale (fp32), whose CBiT row sets the epoch cap: CBiT's training gets
  #    about 45% of what is left of the part's budget
  PROBE=(--device "$DEVICE" --steps 10 --hang-after-s 70)
  [ "${DRY:-0}" = 1 ] && PROBE=(--device cpu --steps 1 --warmup 1 --items 30 --batch 8 --users 16)
  timeout -s ABRT -k 10 75 "$PY" -u -X faulthandler tools/device/smoke.py "${PROBE[@]}" --profile profiles/paper-scale.yaml \
    --backbones sasrec,bert4rec,cbit,srgnn --precisions fp32 --json "$OUT/smoke.json" 2>&1 | tee -a "$LOG"
  CAP=$(timeout 20 "$PY" - "$(left)" "$OUT/smoke.json" <<'PYEOF'
import json, sys
left = float(sys.argv[1])
try:
    r = json.load(open(sys.argv[2]))["backbones"]["cbit"]["fp32"]
    print(max(1, min(250, int(0.45 * left / (r["epoch_s_ml1m"] + r["validation_pass_s"] + 1.0)))))
except Exception:
    print(5)
PYEOF
)
  EXTRA=()
  [ "${DRY:-0}" = 1 ] && { CAP=1; EXTRA=(--set diffusion.epochs=1 --set diffusion.eval_every=1); }
  say "c. CBiT seed 0 at paper scale on $DATASET: epoch cap $CAP (the profile's 250, cut to fit $(left)s; early stopping may stop sooner)"
  "${RUNNER[@]}" --no-preflight --profile profiles/paper-scale.yaml --set "study.datasets=[$DATASET]" \
    --set 'study.backbones=[cbit]' --set 'study.seeds=[0]' --set 'ablations.run=[]' --set 'longterm.seeds=[]' \
    --set "backbones.cbit.train.epochs=$CAP" "${EXTRA[@]}" --write-params --only evaluate \
    --budget-s $(( $(left) - 15 ))
  RC=$?
  say "runner rc $RC; part 2 done in $(( $(date +%s) - T0 ))s (files: $(ls "$OUT" | tr '\n' ' '))"
  exit "$RC"
fi
say "usage: bash tools/device/device_check.sh 1|2"
exit 2
