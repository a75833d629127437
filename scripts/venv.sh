# Sourced by every script that needs Python packages from PyPI (CI steps and
# benchmarks): `ensure_venv DIR CHECK PACKAGE...` makes the virtualenv DIR
# once and installs the PACKAGEs when the Python statement CHECK fails in it,
# so a second run installs nothing. What it does goes to stderr (a script
# may print its own result on stdout).
ensure_venv() {
  local dir=$1 check=$2
  shift 2
  if [ ! -x "$dir/bin/python" ]; then
    echo "-- virtualenv $dir" >&2
    python3 -m venv "$dir" >&2
  fi
  if ! "$dir/bin/python" -c "$check" 2> /dev/null; then
    echo "-- $dir: pip install $*" >&2
    "$dir/bin/python" -m pip --disable-pip-version-check -q install "$@" >&2
  fi
}
