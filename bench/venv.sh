# Sourced by the benchmark scripts: the venv with Dask they compare with
# ($DASK_BENCH_VENV, else target/dask-venv), made on first use with the
# packages given (importable names mapped to pip names by the caller).
#   bench_venv "import dask, pytest" "dask[distributed]" pytest
bench_venv() {
  local check=$1
  shift
  venv=${DASK_BENCH_VENV:-target/dask-venv}
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "$check" 2>/dev/null; then
    "$venv/bin/pip" install -q "$@"
  fi
}
