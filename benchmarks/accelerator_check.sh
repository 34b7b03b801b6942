#!/usr/bin/env bash
# Everything worth measuring on a machine with an accelerator, in one run and one JSON file:
#   tests             python -m pytest -q -x (the whole suite, on the accelerator)
#   rectifiers        python -m benchmarks.rectifiers_bench, float32 and bfloat16
#   train_step_f32    python -m benchmarks.train_step_bench, --conv-grad xla,forward, batch 128,
#   train_step_bf16     full width, float32 / bfloat16
#   scaling           python -m benchmarks.scaling over all devices: weak at 32 images per
#                     device and strong at 128 (two single-device batch sizes for
#                     benchmarks/scaling_model.py)
#   synthetic_epoch   python -m benchmarks.synthetic_epoch: one full-width NIN epoch on 50,000
#                     CIFAR-10-shaped synthetic images
#
#   benchmarks/accelerator_check.sh [--out accelerator_check.json] [--tiny]
#
# Each part runs under `timeout` and records its status (passed, failed, timeout, skipped),
# exit code, duration, its own JSON output and the tail of its log; a failed part does not
# stop the next one, and the script exits non-zero at the end if any part did not pass. The
# parts' timeouts add up to less than ACCELERATOR_CHECK_BUDGET_S (default 570 s), which no
# part may overrun, so the check ends within 10 minutes on one H200.
#
# --tiny (or ACCELERATOR_CHECK_TINY=1) shrinks every part so that the whole check runs on a
# CPU in about a minute: width 1/16, 256 synthetic images, 1 repeat, one device, the test file
# tests/test_rectifiers_linen.py, and compiles without XLA's backend optimisations. It checks
# the plumbing, not the numbers.
# PYTHON (default: python) is the interpreter; ACCELERATOR_CHECK_PYTEST_ARGS replaces the
# test part's arguments (default: -q -x).
set -u

out=accelerator_check.json
tiny=${ACCELERATOR_CHECK_TINY:-0}
while (($#)); do
  case $1 in
    --out) out=${2:?--out needs a path}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --tiny) tiny=1; shift ;;
    -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "accelerator_check.sh: unknown argument '$1'; allowed: --out PATH, --tiny" >&2
       exit 2 ;;
  esac
done
case $out in /*) ;; *) out=$PWD/$out ;; esac
cd "$(dirname "$0")/.." || exit 2
python=${PYTHON:-python}
budget=${ACCELERATOR_CHECK_BUDGET_S:-570}
work=$(mktemp -d "${TMPDIR:-/tmp}/accelerator-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
: > "$work/parts.tsv"

# run_part NAME TIMEOUT_S RESULT_JSON COMMAND...: runs COMMAND under timeout within the budget.
run_part() {
  local name=$1 limit=$2 result=$3
  shift 3
  local left=$((budget - ($(date +%s) - start)))
  ((limit > left)) && limit=$left
  local status rc=-1 t0 t1
  t0=$(date +%s.%N)
  if ((limit < 5)); then
    status=skipped
    echo "not run: the check's budget of ${budget} s was spent" > "$work/$name.log"
  else
    echo "== $name (timeout ${limit} s): $*" >&2
    timeout --kill-after=5 "$limit" "$@" > "$work/$name.log" 2>&1
    rc=$?
    case $rc in
      0) status=passed ;;
      124|137) status=timeout ;;
      *) status=failed ;;
    esac
  fi
  t1=$(date +%s.%N)
  echo "   $name: $status" >&2
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$t0" "$t1" "$limit" \
    "$result" >> "$work/parts.tsv"
  printf '%s\n' "$*" > "$work/$name.cmd"
}

if ((tiny)); then
  # Compiles dominate at this size: skip XLA's backend optimisations, as the tests do.
  fast="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
  export XLA_FLAGS="${XLA_FLAGS:-} $fast"
  pytest_args=(-q -x tests/test_rectifiers_linen.py)
  rect_args=(--shape 2,4,4,8 --repeats 1 --warmup 0 --only "rrelu fast")
  step_args=(--width 0.0625 --batch-sizes 4 --repeats 1 --warmup 0 --rectifiers relu)
  scaling_args=(--devices=1 --mode=both --width=0.0625 --batch-per-device=4
                --global-batch=4 --repeats=1 --warmup=1 --profile-steps=1)
  epoch_args=(--images 256 --batch 32 --width 0.0625)
  limits=(120 60 60 60 90 60)
else
  # shellcheck disable=SC2206  # word splitting is the point: a list of pytest arguments.
  pytest_args=(${ACCELERATOR_CHECK_PYTEST_ARGS:--q -x})
  rect_args=(--repeats 5 --warmup 1)
  step_args=(--batch-sizes 128 --width 1 --repeats 5 --warmup 2
             --rectifiers "relu;rrelu;rrelu(impl=exact)")
  scaling_args=(--mode=both --batch-per-device=32 --global-batch=128 --repeats=5 --warmup=2)
  epoch_args=()
  limits=(200 60 75 75 75 60)
fi

timeout 60 $python - > "$work/environment.json" 2>> "$work/environment.log" <<'EOF'
import json, os, platform, shutil, subprocess
import jax
env = {"jax": jax.__version__, "backend": jax.default_backend(),
       "devices": [str(d) for d in jax.devices()], "device_kind": jax.devices()[0].device_kind,
       "cpu_count": os.cpu_count(), "python": platform.python_version()}
if shutil.which("nvidia-smi"):
  env["nvidia_smi"] = subprocess.run(
      ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
      capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
print(json.dumps(env))
EOF

run_part tests "${limits[0]}" "" $python -m pytest "${pytest_args[@]}"
run_part rectifiers "${limits[1]}" "$work/rectifiers.json" \
  $python -m benchmarks.rectifiers_bench --dtypes float32,bfloat16 "${rect_args[@]}" \
  --json "$work/rectifiers.json"
run_part train_step_f32 "${limits[2]}" "$work/train_step_f32.json" \
  $python -m benchmarks.train_step_bench --step train --conv-grad xla,forward --dtype float32 \
  "${step_args[@]}" --json "$work/train_step_f32.json"
run_part train_step_bf16 "${limits[3]}" "$work/train_step_bf16.json" \
  $python -m benchmarks.train_step_bench --step train --conv-grad xla,forward --dtype bfloat16 \
  "${step_args[@]}" --json "$work/train_step_bf16.json"
run_part scaling "${limits[4]}" "$work/scaling.json" \
  $python -m benchmarks.scaling "${scaling_args[@]}" --json="$work/scaling.json" \
  --plot="$work/scaling.png"
run_part synthetic_epoch "${limits[5]}" "$work/synthetic_epoch.json" \
  $python -m benchmarks.synthetic_epoch "${epoch_args[@]}" --json "$work/synthetic_epoch.json"

WORK=$work OUT=$out TINY=$tiny BUDGET=$budget START=$start $python - <<'EOF'
import datetime, json, os, time
work = os.environ["WORK"]

def read(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None

def tail(path, chars=3000):
  try:
    with open(path, errors="replace") as f:
      return f.read()[-chars:]
  except OSError:
    return ""

parts = []
with open(os.path.join(work, "parts.tsv")) as f:
  for line in f:
    name, status, rc, t0, t1, limit, result = line.rstrip("\n").split("\t")
    log = tail(os.path.join(work, f"{name}.log"))
    part = {"name": name, "status": status, "exit_code": int(rc),
            "duration_s": round(float(t1) - float(t0), 2), "timeout_s": int(limit),
            "command": tail(os.path.join(work, f"{name}.cmd")).strip(),
            "result": read(result) if result else None, "log_tail": log}
    if name == "tests":  # pytest's last line: "N passed, M failed in S s".
      part["summary"] = next((l for l in reversed(log.splitlines()) if l.strip()), "")
    parts.append(part)
start = int(os.environ["START"])
report = {
    "check": "accelerator_check", "tiny": os.environ["TINY"] == "1",
    "started": datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat(),
    "duration_s": round(time.time() - start, 1), "budget_s": int(os.environ["BUDGET"]),
    "environment": read(os.path.join(work, "environment.json"))
                   or {"error": tail(os.path.join(work, "environment.log"))},
    "parts": parts, "failed": [p["name"] for p in parts if p["status"] != "passed"]}
with open(os.environ["OUT"], "w") as f:
  json.dump(report, f, indent=1)
print(f"accelerator_check: {len(parts) - len(report['failed'])}/{len(parts)} parts passed "
      f"in {report['duration_s']} s" + (f"; not passed: {', '.join(report['failed'])}"
                                        if report["failed"] else "") + f"; {os.environ['OUT']}")
EOF
failed=$(awk -F'\t' '$2 != "passed"' "$work/parts.tsv" | wc -l)
((failed == 0))
