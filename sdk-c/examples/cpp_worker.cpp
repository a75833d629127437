// A worker written in C++: offers cpp.reverse and cpp.stats next to the
// built-in library, until the scheduler closes it or SIGINT / SIGTERM
// (turned into Worker::stop() by a second thread).
//
// Usage: cpp_worker tcp://HOST:PORT|tls://HOST:PORT [NTHREADS [NAME]]
// Credentials are found as every dask-rs program finds them; the TLS files
// come from DASK_TLS_CA_FILE and DASK_TLS_CERT (as the C examples').
#include <dask.hpp>

#include <cstdlib>

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

int main(int argc, char **argv) {
    if (argc < 2 || argc > 4) {
        std::cerr << "usage: " << argv[0] << " tcp://HOST:PORT|tls://HOST:PORT [NTHREADS [NAME]]\n";
        return 2;
    }
    // Stop signals go to the waiting thread only (the mask is inherited by
    // every thread started from here on, the library's too).
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    try {
        dask::Functions functions = dask::Functions::builtins();
        functions.add("cpp.reverse", [](const dask::Value &args, const dask::Value &) {
            std::string text = args[0].as_string();
            std::reverse(text.begin(), text.end());
            return dask::Value(text);
        });
        functions.add("cpp.stats", [](const dask::Value &args, const dask::Value &) {
            std::vector<double> xs = args[0].as<std::vector<double>>();
            if (xs.empty()) {
                throw dask::TaskError("ValueError", "cpp.stats of an empty list");
            }
            double sum = 0;
            for (double x : xs) {
                sum += x;
            }
            dask::Value out = dask::Value::map();
            out.set("min", *std::min_element(xs.begin(), xs.end()));
            out.set("max", *std::max_element(xs.begin(), xs.end()));
            out.set("mean", sum / static_cast<double>(xs.size()));
            return out;
        });
        std::size_t nthreads = argc >= 3 ? std::stoul(argv[2]) : 1;
        dask::Security security;
        if (const char *ca = std::getenv("DASK_TLS_CA_FILE")) security.tls_ca_file = ca;
        if (const char *cert = std::getenv("DASK_TLS_CERT")) security.tls_cert_file = cert;
        dask::Worker worker(argv[1], functions, security, nthreads, argc == 4 ? argv[3] : "");
        std::cout << "worker " << worker.name() << " serving at " << worker.address() << std::endl;

        std::thread waiter([&] {
            int sig = 0;
            if (sigwait(&signals, &sig) == 0 && sig != SIGUSR1) {
                worker.stop();
            }
        });
        int status = 0;
        try {
            worker.run();
        } catch (const dask::Error &e) {
            std::cerr << "cpp_worker: " << e.what() << "\n";
            status = 1;
        }
        pthread_kill(waiter.native_handle(), SIGUSR1);
        waiter.join();
        return status;
    } catch (const std::exception &e) {
        std::cerr << "cpp_worker: " << e.what() << "\n";
        return 1;
    }
}
