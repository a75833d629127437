import dask.array as da
import dask_rs

with dask_rs.Client(n_workers=2) as client:  # a scheduler here, two Python worker processes
    squares = client.map(lambda x: x * x, range(10))  # cloudpickled, run by the Python workers
    print("sum of squares", client.submit(sum, squares).result())  # 285
    print("40 + 2 =", client.submit("add", 40, 2).result())  # a built-in function, by name
    x = da.random.random((4000, 4000), chunks=(1000, 1000))
    print("mean", (x + x.T).mean().compute(scheduler=client.get))  # Dask's collections on dask-rs
