#!/usr/bin/env bash
# Every test, core and ROS, in one pytest run. pytest exits 5 when it collected nothing: that is a failure here.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# Fast DDS over loopback only, and a domain of our own so parallel runs on one host don't see each other's nodes.
export ROS_LOCALHOST_ONLY=1 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 100 ))}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# Tests marked slow take over 5 minutes on 2 cores (the 200-goal soak of the ROS node): `make soak` runs those.
echo "run_tests: leaving out the tests marked slow (-m \"not slow\"); \`make soak\` runs the ROS soak"
python -m pytest promptbox/tests promptbox_ros/test -ra -m "not slow" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run_tests: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
