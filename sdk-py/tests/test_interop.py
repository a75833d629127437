"""A Python worker's named functions, called by name from the Rust client
(the ``dask-rs`` CLI), the C SDK (libdask, compiled with gcc) and the JS SDK
(Node), like any worker's functions."""

import json
import os
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, binary, require_tool

C_PROGRAM = r"""
#include <libdask.h>
#include <stdio.h>
#include <string.h>

static int fail(const char *what, dask_error *err) {
    fprintf(stderr, "%s: %s\n", what, dask_error_message(err));
    dask_error_free(err);
    return 1;
}

int main(int argc, char **argv) {
    dask_client *client = NULL; dask_error *err = NULL; dask_future *f = NULL, *bad = NULL;
    dask_value *args, *text = NULL, *result = NULL; int64_t n = 0;
    if (argc != 2) return 2;
    if (dask_client_connect(argv[1], 10000, &client, &err) != DASK_OK) return fail("connect", err);
    args = dask_value_new_array();
    if (dask_value_new_string("one two three four five", &text, &err) != DASK_OK) return fail("string", err);
    dask_value_array_push(args, text, NULL);
    if (dask_client_submit(client, "py.word_count", args, &f, &err) != DASK_OK) return fail("submit", err);
    if (dask_future_result(f, 60000, &result, &err) != DASK_OK) return fail("result", err);
    if (dask_value_as_int(result, &n, &err) != DASK_OK) return fail("as_int", err);
    printf("py.word_count = %lld\n", (long long)n);
    dask_value_free(result); result = NULL;
    if (dask_client_submit(client, "py.fail", args, &bad, &err) != DASK_OK) return fail("submit", err);
    if (dask_future_result(bad, 60000, &result, &err) == DASK_OK) { fprintf(stderr, "py.fail succeeded\n"); return 1; }
    printf("py.fail: %s\n", dask_error_message(err));
    dask_error_free(err);
    dask_value_free(args); dask_future_free(f); dask_future_free(bad); dask_client_free(client);
    return n == 5 ? 0 : 1;
}
"""

JS_PROGRAM = r"""
import { Client } from %s;
const client = await Client.connect(process.argv[2]);
const freq = await client.submit('py.word_frequencies', ['x y x']).result();
const words = await client.submit('py.word_count', ['a b c']).result();
let error = null;
try { await client.submit('py.fail', ['from js']).result(); } catch (e) { error = e; }
console.log(JSON.stringify({ freq, words, errorType: error && error.remoteType, message: error && error.remoteMessage, traceback: error && error.traceback }));
await client.close();
"""


def test_rust_client_calls_a_python_workers_function(cluster, tmp_path):
    graph = {
        "tasks": [
            {"key": "words", "function": "py.word_count", "args": ["to be or not to be"]},
            {"key": "freq", "function": "py.word_frequencies", "args": ["to be or not to be"]},
            {"key": "total", "function": "add", "args": [{"$ref": "words"}, 100]},
        ],
        "wanted": ["freq", "total"],
    }
    path = tmp_path / "graph.json"
    path.write_text(json.dumps(graph))
    out = subprocess.run([str(binary("dask-rs")), "submit", "--scheduler", cluster.address, str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" = ", 1) for line in out.stdout.splitlines())
    assert json.loads(lines["freq"]) == {"to": 2, "be": 2, "or": 1, "not": 1}
    assert json.loads(lines["total"]) == 106


def _libdask() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    for profile in ("debug", "release"):
        lib = target / profile / "libdask.so"
        if lib.exists():
            return lib
    if os.environ.get("DASK_PY_REQUIRE_ALL"):
        pytest.fail("libdask.so not built: cargo build -p dask-sdk-c")
    pytest.skip("libdask.so not built: cargo build -p dask-sdk-c")


def test_c_sdk_calls_a_python_workers_function(cluster, tmp_path):
    require_tool("gcc")
    lib = _libdask()
    source = tmp_path / "call.c"
    source.write_text(C_PROGRAM)
    exe = tmp_path / "call"
    # The program loads libdask by its SONAME (libdask.so.0.MINOR), which
    # `make lib` links beside it; here, a link in the test's directory.
    dump = subprocess.run(["objdump", "-p", str(lib)], capture_output=True, text=True, check=True).stdout
    soname = next(line.split()[1] for line in dump.splitlines() if line.strip().startswith("SONAME"))
    (tmp_path / soname).symlink_to(lib)
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", str(source), "-I", str(REPO / "sdk-c" / "include"),
                    "-L", str(lib.parent), "-ldask", f"-Wl,-rpath,{tmp_path}", "-o", str(exe)], check=True)
    out = subprocess.run([str(exe), cluster.address], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "py.word_count = 5" in out.stdout
    assert "ValueError" in out.stdout  # the Python error's type reaches C


def test_js_sdk_calls_a_python_workers_function(cluster, tmp_path):
    require_tool("node")
    wasm = REPO / "sdk-js" / "dask_sdk_js.wasm"
    if not wasm.exists():
        if os.environ.get("DASK_PY_REQUIRE_ALL"):
            pytest.fail("sdk-js/dask_sdk_js.wasm not built: (cd sdk-js && npm run build)")
        pytest.skip("sdk-js/dask_sdk_js.wasm not built: (cd sdk-js && npm run build)")
    script = tmp_path / "call.mjs"
    script.write_text(JS_PROGRAM % json.dumps((REPO / "sdk-js" / "index.js").as_uri()))
    out = subprocess.run(["node", str(script), cluster.address], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["freq"] == {"x": 2, "y": 1} and got["words"] == 3
    assert got["errorType"] == "ValueError" and got["message"] == "from js"
    assert "raise ValueError(message)" in got["traceback"]  # the Python traceback reaches Node
