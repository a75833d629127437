"""A Python error's type, message and traceback reach the client."""

import pytest

import dask_rs


def divide(a, b):
    return a / b


def test_a_remote_error_keeps_its_type_message_and_traceback(client):
    f = client.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError) as e:
        f.result()
    error = e.value
    assert isinstance(error, dask_rs.RemoteError)
    assert error.error_type == "ZeroDivisionError"
    assert error.message == "division by zero"
    assert "in divide" in error.traceback and "return a / b" in error.traceback
    assert error.key == f.key and error.cause is None
    assert f.status == "error"
    assert isinstance(f.exception(), ZeroDivisionError)
    assert "in divide" in f.traceback()


def test_a_dependent_names_the_task_that_raised(client):
    bad = client.submit(divide, 1, 0)
    dependent = client.submit(lambda x: x + 1, bad)
    with pytest.raises(dask_rs.RemoteError) as e:
        dependent.result()
    assert e.value.error_type == "ZeroDivisionError"
    assert e.value.cause == bad.key and e.value.key == dependent.key


def test_user_exception_types_and_named_functions(client):
    class Custom(Exception):
        pass

    def raise_custom():
        raise Custom("mine")

    with pytest.raises(dask_rs.RemoteError) as e:
        client.submit(raise_custom).result()
    assert e.value.error_type == "Custom" and e.value.message == "mine"
    with pytest.raises(ValueError, match="from a named function"):
        client.submit("py.fail", "from a named function").result()


def test_an_unpicklable_result_is_a_task_error(client):
    import threading

    with pytest.raises(dask_rs.RemoteError) as e:
        client.submit(threading.Lock).result()
    assert "pickle" in (e.value.message + e.value.error_type).lower()
