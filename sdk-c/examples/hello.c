#include <libdask.h>
#include <stdio.h>

int main(void) {
    dask_client *client; dask_future *sum; dask_value *args, *result = NULL; int64_t n = 0;
    dask_client_start_local(1, 2, NULL, &client, NULL);        /* embedded scheduler + worker */
    args = dask_value_new_array();
    dask_value_array_push_int(args, 40, NULL);
    dask_value_array_push_int(args, 2, NULL);
    dask_client_submit(client, "add", args, &sum, NULL);         /* returns at once */
    dask_future_result(sum, DASK_NO_TIMEOUT, &result, NULL);     /* waits, then fetches */
    dask_value_as_int(result, &n, NULL);
    printf("40 + 2 = %lld\n", (long long)n);
    dask_value_free(result); dask_value_free(args); dask_future_free(sum); dask_client_free(client);
    return n == 42 ? 0 : 1;
}
