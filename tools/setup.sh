#!/usr/bin/env bash
# One-command set-up of the development environment: .venv with pinned packages, the ROS user tools, then the
# colcon workspace (vision_msgs, composition_interfaces, promptbox_interfaces, promptbox_ros) into install/. Idempotent: each step keeps a stamp
# of its inputs and is skipped when they have not changed.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
build="$root/build"
prefix="$root/install"
python_bin="${PYTHON:-python3}"
mkdir -p "$build"

say() { printf '[setup] %s\n' "$*"; }

# True when the stamp file holds the same digest as the inputs.
fresh() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
digest() { cat "$@" | sha256sum | cut -d' ' -f1; }

# pip, without its warnings about this machine's absent local index folders; pip's own status decides.
pip_quiet() {
  local log="$build/pip.log"
  if "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" > "$log" 2>&1; then
    return 0
  fi
  grep -v "is ignored: it is neither a file nor a directory" "$log" >&2
  return 1
}

# 1. Python environment.
if [ ! -x "$venv/bin/python" ]; then
  say "creating $venv"
  "$python_bin" -m venv "$venv"
fi
req_digest=$(digest "$root/requirements.lock" "$root/promptbox/pyproject.toml")
if ! fresh "$build/.pip-stamp" "$req_digest"; then
  say "installing pinned packages from requirements.lock (about 2 minutes from a warm pip cache)"
  # pip's find-links warnings about missing local index folders are noise here; real errors still fail the step.
  pip_quiet -r "$root/requirements.lock" || { echo "[setup] pip could not install requirements.lock" >&2; exit 1; }
  pip_quiet --no-deps -e "$root/promptbox" || { echo "[setup] pip could not install ./promptbox" >&2; exit 1; }
  "$venv/bin/python" -W ignore -c "import torch, torchvision, transformers, mobile_sam, rclpy, promptbox" \
    || { echo "[setup] the installed packages do not import" >&2; exit 1; }
  echo "$req_digest" > "$build/.pip-stamp"
else
  say "python packages up to date"
fi

# 2. The ROS wheels' exported CMake files name the paths of the machine that built them; point them here.
py_include=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
np_include=$("$venv/bin/python" -c "import numpy; print(numpy.get_include())")
fix_digest=$(printf '%s\n%s\n%s\n' "$py_include" "$np_include" "$req_digest" | sha256sum | cut -d' ' -f1)
if ! fresh "$build/.cmake-fix-stamp" "$fix_digest"; then
  say "rewriting build-machine paths in the ROS wheels' CMake files"
  { grep -rlE '/opt/python/cp311-cp311' "$venv/share" --include='*.cmake' || true; } \
    | xargs -r sed -i -E \
        -e "s#/opt/python/cp311-cp311/include/python3\.11#${py_include}#g" \
        -e "s#/opt/python/cp311-cp311/lib/python3\.11/site-packages/numpy/_core/include#${np_include}#g"
  if grep -rqE '/opt/python/cp311-cp311/(include|lib/python3\.11/site-packages/numpy)' "$venv/share" --include='*.cmake'; then
    echo "[setup] some CMake files still name /opt/python paths:" >&2
    grep -rlE '/opt/python/cp311-cp311/(include|lib/python3\.11/site-packages/numpy)' "$venv/share" --include='*.cmake' >&2
    exit 1
  fi
  echo "$fix_digest" > "$build/.cmake-fix-stamp"
fi

# 3. The ROS user tools (ros2 launch/action/topic/param, launch_ros) and the real vision_msgs: from
#    ../shared/ros-tools when it is there; else from an installed ROS (a user's machine); else the ROS tests skip.
tools="$(cd "$root/.." && pwd)/shared/ros-tools"
ros_skip=""
workspace=("$root/promptbox_interfaces" "$root/promptbox_ros")
if [ -d "$tools/wheels" ] && [ -d "$tools/src/vision_msgs" ]; then
  tools_digest=$(digest "$tools/wheels/SHA256SUMS" "$root/tools/ros_tools.lock" "$build/.pip-stamp")
  if ! fresh "$build/.ros-tools-stamp" "$tools_digest"; then
    say "installing the ROS user tools from $tools (pinned in tools/ros_tools.lock)"
    # --no-deps: the wheels name ament_index_python (PyPI: ros-ament-index-python), and PyPI's unrelated `launch`.
    pip_quiet --no-deps "$tools"/wheels/*.whl || { echo "[setup] pip could not install $tools/wheels" >&2; exit 1; }
    pip_quiet -r "$root/tools/ros_tools.lock" || { echo "[setup] pip could not install tools/ros_tools.lock" >&2; exit 1; }
    echo "$tools_digest" > "$build/.ros-tools-stamp"
  else
    say "ROS user tools up to date"
  fi
  workspace+=("$tools/src/vision_msgs" "$tools/src/composition_interfaces")
  colcon_bin="$venv/bin/colcon"
elif [ -n "${ROS_DISTRO:-}" ] && command -v ros2 > /dev/null && command -v colcon > /dev/null; then
  say "using the installed ROS $ROS_DISTRO for vision_msgs and the ros2 tools"
  colcon_bin=$(command -v colcon)
else
  ros_skip="no ../shared/ros-tools beside the repository and no installed ROS with ros2 and colcon (source its setup.bash first)"
  say "skipping the ROS workspace: $ros_skip"
fi

# 4. The colcon workspace, into install/ (symlinked Python, so editing promptbox_ros needs no rebuild).
if [ -z "$ros_skip" ]; then
  # Inputs: the sources, the interpreter's include dirs and the ROS wheels' versions (not the other pins).
  ws_digest=$(cat <(printf '%s\n' "$py_include" "$np_include" "${workspace[@]}") \
    <("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | grep -i '^ros-') \
    <(find "${workspace[@]}" -type f -not -name '*.pyc' -not -path '*/__pycache__/*' -not -path '*/test/*' -not -path '*/promptbox_ros/promptbox_ros/*' -print0 \
      | sort -z | xargs -0 cat) | sha256sum | cut -d' ' -f1)
  if fresh "$build/.colcon-stamp" "$ws_digest" && [ -f "$prefix/setup.bash" ]; then
    say "colcon workspace up to date"
  else
    say "colcon build: ${workspace[*]##*/} (about a minute the first time)"
    [ -f "$prefix/setup.bash" ] || rm -rf "$prefix" "$build/vision_msgs" "$build/promptbox_interfaces"  # the old CMake builds
    (
      export AMENT_PREFIX_PATH="$venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" CMAKE_PREFIX_PATH="$venv"
      export PATH="$venv/bin:$PATH"
      cd "$root"
      "$colcon_bin" --log-base "$build/colcon-log" build --symlink-install --base-paths "${workspace[@]}" \
        --build-base "$build/colcon" --install-base "$prefix" --event-handlers console_cohesion- status- \
        --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$venv/bin/python" -DCMAKE_BUILD_TYPE=Release
    ) > "$build/colcon.log" 2>&1 \
      || { echo "[setup] colcon build failed; the log follows" >&2; tail -n 60 "$build/colcon.log" >&2; exit 1; }
    echo "$ws_digest" > "$build/.colcon-stamp"
  fi
fi

# 5. One file that puts the environment together for tests, the demo and a shell.
{
  echo "# Generated by tools/setup.sh: source it to use promptbox, its ROS workspace and the ros2 tools here."
  echo "export PROMPTBOX_ROOT=\"$root\""
  echo "export PATH=\"$venv/bin:\$PATH\""
  echo "export AMENT_PREFIX_PATH=\"$venv\${AMENT_PREFIX_PATH:+:\$AMENT_PREFIX_PATH}\""
  if [ -n "$ros_skip" ]; then
    echo "export PROMPTBOX_ROS_SKIP=\"$ros_skip\""
  else
    echo "unset PROMPTBOX_ROS_SKIP"
    # colcon's setup.bash reads unset variables: not safe under set -u.
    echo "case \$- in *u*) set +u; . \"$prefix/setup.bash\"; set -u ;; *) . \"$prefix/setup.bash\" ;; esac"
  fi
  echo "export PYTHONPATH=\"$root/promptbox_ros\${PYTHONPATH:+:\$PYTHONPATH}\""
} > "$build/env.sh"

if [ -z "$ros_skip" ]; then
  ( . "$build/env.sh" && python -c "from promptbox_interfaces.action import Locate; from vision_msgs.msg import Detection3D" \
      && ros2 pkg prefix promptbox_ros > /dev/null ) \
    || { echo "[setup] the built workspace does not import; see $build/colcon.log" >&2; exit 1; }
fi
say "ready: source build/env.sh, or use make test / make demo"
