"""The installed package: one abi3 wheel for CPython 3.9 and later, and
type stubs that say what the native module really holds."""

import ast
import importlib.metadata
import inspect
from pathlib import Path

import dask_rs
from dask_rs import _native


def test_the_wheel_is_abi3_for_cpython_3_9_and_later():
    wheel = importlib.metadata.distribution("dask-rs").read_text("WHEEL")
    tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")]
    assert tags and all(t.startswith("cp39-abi3-") for t in tags), tags
    assert Path(_native.__file__).name.endswith(".abi3.so") or _native.__file__.endswith(".pyd")


def stub_classes():
    stub = Path(dask_rs.__file__).with_name("_native.pyi")
    assert stub.exists(), "the stubs are installed beside the module"
    tree = ast.parse(stub.read_text())
    classes = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            members = {}
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    members[item.name] = [a.arg for a in item.args.args + item.args.kwonlyargs if a.arg != "self"]
            classes[node.name] = members
    return tree, classes


def test_the_stubs_match_the_native_module():
    tree, classes = stub_classes()
    native_classes = {n for n, v in vars(_native).items() if inspect.isclass(v) and not n.startswith("_")}
    assert set(classes) == native_classes
    for name, members in classes.items():
        cls = getattr(_native, name)
        public = {m for m in dir(cls) if not m.startswith("_")}
        assert {m for m in members if not m.startswith("_")} == public, name
        for method, params in members.items():
            target = cls if method == "__init__" else getattr(cls, method)
            if isinstance(target, property) or not callable(target):
                continue
            try:
                signature = inspect.signature(target)
            except (TypeError, ValueError):
                continue  # a class without a constructor (futures come from a client)
            native = [p for p in signature.parameters if p != "self"]
            assert native == params, f"{name}.{method}: the stub says {params}, the module {native}"
    constants = {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    assert {"CLOUDPICKLE_FUNCTION", "PICKLE_EXT"} <= constants
    assert all(hasattr(_native, c) for c in constants)
