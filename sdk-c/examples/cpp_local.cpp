// The C++ wrapper on an embedded cluster: a C++ function offered by the
// cluster's worker, calls, a graph, scatter, gather, as-completed, and a
// failing task caught as an exception.
//
// Usage: cpp_local
#include <dask.hpp>

#include <algorithm>
#include <iostream>
#include <string>
#include <vector>

int main() try {
    // The built-in library plus a function written in C++.
    dask::Functions functions = dask::Functions::builtins();
    functions.add("cpp.reverse", [](const dask::Value &args, const dask::Value &) {
        std::string text = args[0].as_string();
        std::reverse(text.begin(), text.end());
        return dask::Value(text);
    });
    functions.add("cpp.checked_div", [](const dask::Value &args, const dask::Value &) {
        std::int64_t a = args[0].as_int(), b = args[1].as_int();
        if (b == 0) {
            throw dask::TaskError("ZeroDivisionError", "cpp.checked_div by zero");
        }
        return dask::Value(a / b);
    });
    dask::Client client = dask::Client::local(1, 2, &functions);
    std::cout << "cluster at " << client.address() << "\n";

    std::cout << "cpp.reverse(\"stressed\") = "
              << client.submit("cpp.reverse", dask::array("stressed")).result().as_string() << "\n";

    // A graph: add(inc(1), sum([1, 2, 3])), one submission.
    dask::Delayed one("inc", dask::array(1));
    dask::Delayed six("sum", dask::array(std::vector<int>{1, 2, 3}));
    dask::Future total = client.compute(dask::Delayed("add", dask::array(one, six)));
    std::cout << "add(inc(1), sum([1, 2, 3])) = " << total.result(30000).as_int() << "\n";

    // Scatter, then use the data in calls; gather all results at once.
    std::vector<dask::Future> data = client.scatter({dask::Value(10), dask::Value(20)});
    std::vector<dask::Future> sums;
    for (int i = 0; i < 3; i++) {
        sums.push_back(client.submit("add", dask::array(data[i % 2], i)));
    }
    std::int64_t check = 0;
    for (const dask::Value &v : client.gather(sums, 30000)) {
        check += v.as<std::int64_t>();
    }
    std::cout << "gathered sum = " << check << "\n";

    // As completed.
    dask::AsCompleted completed = client.as_completed(sums);
    std::size_t seen = 0;
    while (auto f = completed.next(30000)) {
        seen += f->done() ? 1 : 0;
    }

    // A C++ function's exception reaches the client as dask::Error.
    try {
        client.submit("cpp.checked_div", dask::array(1, 0)).result(30000);
        std::cerr << "cpp_local: division by zero did not fail\n";
        return 1;
    } catch (const dask::Error &e) {
        std::cout << "cpp.checked_div(1, 0) failed as it should: " << e.remote_type() << ": "
                  << e.remote_message() << "\n";
    }
    return check == 10 + 20 + 10 + 0 + 1 + 2 && seen == 3 && total.result().as_int() == 8 ? 0 : 1;
} catch (const dask::Error &e) {
    std::cerr << "cpp_local: " << e.what() << "\n";
    return 1;
}
