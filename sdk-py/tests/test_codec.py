"""How Python values travel, and where codec:cloudpickle tasks run."""

import numpy as np
import pandas as pd

from dask_rs import _codec
from conftest import addresses_of


def test_native_values_are_msgpack_and_others_pickles(client):
    values = [None, True, 3, -2**63, 2**64 - 1, 2**70, 1.5, "text", b"\x00\xff", [1, [2]], {"a": 1},
              (1, 2), {1: "int key"}, {3, 4}, np.float64(2.5)]
    [echo] = client.scatter([values])
    back = client.submit(lambda v: v, echo).result()
    assert back == values
    assert [type(v) for v in back] == [type(v) for v in values]
    # A Rust worker reads the msgpack ones: its built-in len of a list.
    assert client.submit("len", [1, 2, 3], workers=sorted(addresses_of(client, "rust-"))).result() == 3


def test_numpy_and_pandas_round_trip_aligned_and_writable(client):
    arr = np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000)
    df = pd.DataFrame({"a": np.arange(10), "b": list("abcdefghij")})
    out = client.submit(lambda a: a * 2, arr).result()
    np.testing.assert_array_equal(out, arr * 2)
    assert out.flags.writeable and out.ctypes.data % 64 == 0
    pd.testing.assert_frame_equal(client.submit(lambda d: d, df).result(), df)


def test_payload_layout_puts_buffers_out_of_band_at_64_byte_offsets():
    arr = np.arange(100, dtype=np.int64)
    payload = _codec.dumps(arr)
    n = int.from_bytes(payload[:4], "little")
    assert n == 1  # the array's memory is a buffer, not inside the pickle stream
    assert arr.tobytes() in payload
    assert payload.index(arr.tobytes()) % 64 == 0
    np.testing.assert_array_equal(_codec.loads(bytearray(payload)), arr)
    assert _codec.loads(_codec.dumps((1, "x"))) == (1, "x")


def test_cloudpickle_tasks_run_only_on_python_workers(client):
    python = addresses_of(client, "py-")
    futures = client.map(lambda i: i, range(60))
    client.gather(futures)
    holders = {a for addrs in client.who_has(futures).values() for a in addrs}
    assert holders and holders <= python
    # The Rust worker does get the tasks it can run.
    rust = addresses_of(client, "rust-")
    f = client.submit("inc", 1, workers=list(rust))
    assert f.result() == 2 and client.who_has([f])[f.key] == list(rust)
