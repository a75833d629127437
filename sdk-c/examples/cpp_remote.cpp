// The C++ wrapper as a client of a running cluster (dask-scheduler,
// dask-worker, the C worker and the C++ worker as separate processes):
// built-in, C and C++ functions side by side.
//
// Usage: cpp_remote tcp://HOST:PORT|tls://HOST:PORT [WORKERS]
// Credentials are found as every dask-rs program finds them; the TLS files
// come from DASK_TLS_CA_FILE and DASK_TLS_CERT (as the C examples').
#include <dask.hpp>

#include <cstdlib>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char **argv) try {
    if (argc < 2 || argc > 3) {
        std::cerr << "usage: " << argv[0] << " tcp://HOST:PORT|tls://HOST:PORT [WORKERS]\n";
        return 2;
    }
    std::size_t wanted = argc == 3 ? std::stoul(argv[2]) : 3;
    dask::Security security;
    if (const char *ca = std::getenv("DASK_TLS_CA_FILE")) security.tls_ca_file = ca;
    if (const char *cert = std::getenv("DASK_TLS_CERT")) security.tls_cert_file = cert;
    dask::Client client = dask::Client::connect(argv[1], security, 10000);
    for (int i = 0; i < 600 && client.worker_count() < wanted; i++) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    std::cout << "connected to " << client.address() << ", " << client.worker_count()
              << " workers\n";

    dask::Future words = client.submit("c.word_count", dask::array("to be or not to be"));
    dask::Future reversed = client.submit("cpp.reverse", dask::array("drawer"));
    dask::Future stats = client.submit("cpp.stats", dask::array(std::vector<double>{1, 2, 6}));
    dask::Future total = client.submit("sum", dask::array(std::vector<int>{1, 2, 3, 4}));

    std::int64_t n = words.result(120000).as_int();
    std::string r = reversed.result(120000).as_string();
    dask::Value s = stats.result(120000);
    std::cout << "c.word_count = " << n << " (C), cpp.reverse = " << r
              << " (C++), cpp.stats mean = " << s.at("mean").as_double()
              << " (C++), sum = " << total.result(120000).as_int() << " (built-in)\n";

    try {
        client.submit("cpp.stats", dask::array(dask::Value::array())).result(120000);
        std::cerr << "cpp_remote: cpp.stats([]) did not fail\n";
        return 1;
    } catch (const dask::Error &e) {
        std::cout << "cpp.stats([]) failed as it should: " << e.remote_type() << "\n";
    }
    return n == 6 && r == "reward" && s.at("mean").as_double() == 3.0 ? 0 : 1;
} catch (const dask::Error &e) {
    std::cerr << "cpp_remote: " << e.what() << " (" << dask_result_name(e.code()) << ")\n";
    return 1;
}
