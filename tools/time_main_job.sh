#!/usr/bin/env bash
# The warm main job, before and after a change, on clean clones in turn (A B A B):
#   tools/time_main_job.sh BEFORE_COMMIT [AFTER_COMMIT]    (run from a checkout, in the venv to use)
# Each side: `pytest benchmarks --model distilbert`, wall time of the whole command, after one
# short warm-up run that builds the side's embedded model into $ENERGYBENCH_CACHE.
set -u
before=${1:?usage: tools/time_main_job.sh BEFORE_COMMIT [AFTER_COMMIT]}
after=${2:-HEAD}
repo=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
export HF_HUB_OFFLINE=1 ENERGYBENCH_CACHE=${ENERGYBENCH_CACHE:-$HOME/.cache/energybench}
for side in before after; do
  git clone -q "$repo" "$work/$side"
  git -C "$work/$side" checkout -q "$([ $side = before ] && echo "$before" || git -C "$repo" rev-parse "$after")"
  (cd "$work/$side" && PYTHONPATH="$work/$side" pytest benchmarks --model distilbert --metric size \
      --precision fp32 -q -p no:cacheprovider > "$work/warm-$side.log" 2>&1)
done
for side in ${ORDER:-after before after before}; do
  start=$(date +%s.%N)
  (cd "$work/$side" && PYTHONPATH="$work/$side" pytest benchmarks --model distilbert -q -p no:cacheprovider \
      --durations=15 > "$work/main-$side-$(date +%H%M%S).log" 2>&1)
  rc=$?
  end=$(date +%s.%N)
  echo "$side rc=$rc wall=$(python -c "print(round($end - $start, 1))") s load=$(cut -d' ' -f1 /proc/loadavg)"
done
echo "runs and logs in $work (tools/record_keys.py compares a run of each side)"
