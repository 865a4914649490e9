#!/usr/bin/env bash
# The main job: locate the coffee cup in the sample photo that ships with promptbox.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image="$root/promptbox/src/promptbox/data/coffee.png"
out="$root/out/demo.png"
flags=()
if [ "${PROMPTBOX_RANDOM_WEIGHTS:-0}" = "1" ]; then
  # Random models predict low mask quality; zero thresholds let masks flow through every stage of the check.
  flags+=(--random-weights --min-score 0 --amg pred_iou_thresh=0 --amg stability_score_thresh=0)
  echo "demo: PROMPTBOX_RANDOM_WEIGHTS=1: random-init models where checkpoints are missing; the box is meaningless" >&2
fi
set +e
promptbox locate "$image" "take the coffee cup" --mode "${PROMPTBOX_MODE:-fast}" --out "$out" "${flags[@]}"
rc=$?
set -e
case $rc in
  0|3) echo "demo: annotated image written to $out" ;;
  *)
    echo "demo: to check the plumbing without checkpoints: PROMPTBOX_RANDOM_WEIGHTS=1 make demo" >&2
    exit "$rc" ;;
esac
