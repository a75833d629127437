// Tests of the C++ wrapper dask.hpp: conversions, RAII copies and moves,
// exceptions carrying the library's messages, and a worker function that
// throws. Prints failed checks and ends with "N passed, M failed".
#include <dask.hpp>

#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

static int passed = 0, failed = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (cond) {                                                                     \
            passed++;                                                                   \
        } else {                                                                        \
            failed++;                                                                   \
            std::cerr << __FILE__ << ":" << __LINE__ << ": check failed: " #cond "\n";  \
        }                                                                               \
    } while (0)

// `body` must throw dask::Error with `code` and a message containing `needle`.
template <class Body> static void check_throws(int line, dask_result code, const char *needle, Body body) {
    try {
        body();
        failed++;
        std::cerr << __FILE__ << ":" << line << ": no exception\n";
    } catch (const dask::Error &e) {
        if (e.code() == code && std::strstr(e.what(), needle) != nullptr) {
            passed++;
        } else {
            failed++;
            std::cerr << __FILE__ << ":" << line << ": got " << dask_result_name(e.code()) << ": "
                      << e.what() << "\n";
        }
    }
}

static void values() {
    dask::Value n(42), u(std::uint64_t(1) << 63), d(2.5), s("text"), b(true), null;
    dask::Value bytes(std::vector<std::uint8_t>{1, 2, 3});
    CHECK(n.as_int() == 42 && n.as<int>() == 42 && n.as<double>() == 42.0);
    CHECK(u.as_uint() == (std::uint64_t(1) << 63));
    CHECK(d.as_double() == 2.5 && s.as_string() == "text" && b.as_bool() && null.is_null());
    CHECK(bytes.type() == DASK_TYPE_BYTES && bytes.as_bytes().size() == 3);
    check_throws(__LINE__, DASK_WRONG_TYPE, "expected an integer, got a string", [&] { s.as_int(); });
    check_throws(__LINE__, DASK_OUT_OF_RANGE, "does not fit in int64_t", [&] { u.as_int(); });

    dask::Value list = dask::array(1, "two", 3.0, std::vector<int>{4, 5});
    CHECK(list.size() == 4 && list[1].as_string() == "two" && list[3].as<std::vector<int>>()[1] == 5);
    check_throws(__LINE__, DASK_OUT_OF_RANGE, "past the end", [&] { list[9]; });
    check_throws(__LINE__, DASK_WRONG_TYPE, "expected an array", [&] { n.as<std::vector<int>>(); });

    dask::Value m = dask::Value::map();
    m.set("a", 1).set("b", dask::array("x"));
    CHECK(m.at("a").as_int() == 1 && m.entry(1).first.as_string() == "b");
    check_throws(__LINE__, DASK_NOT_FOUND, "no key \"z\"", [&] { m.at("z"); });

    // copies are deep, moves transfer
    dask::Value copy = list;
    copy.push_back(6);
    CHECK(copy.size() == 5 && list.size() == 4);
    dask::Value moved = std::move(copy);
    CHECK(moved.size() == 5);

    // msgpack both ways
    std::vector<std::uint8_t> packed = list.to_msgpack();
    CHECK(dask::Value::from_msgpack(packed).size() == 4);
    check_throws(__LINE__, DASK_INVALID_MSGPACK, "not one valid msgpack value",
                 [] { dask::Value::from_msgpack(std::vector<std::uint8_t>{0xc1}); });
    check_throws(__LINE__, DASK_INVALID_ARGUMENT, "not valid UTF-8", [] { dask::Value("\xff"); });
}

static void client_and_worker() {
    check_throws(__LINE__, DASK_INVALID_ARGUMENT, "bad address", [] { dask::Client::connect("nowhere"); });

    dask::Functions functions;
    functions.add("cpp.twice", [](const dask::Value &args, const dask::Value &kwargs) {
        std::int64_t by = kwargs.size() > 0 ? kwargs.at("by").as_int() : 2;
        return dask::Value(args[0].as_int() * by);
    });
    functions.add("cpp.throws", [](const dask::Value &, const dask::Value &) -> dask::Value {
        throw std::runtime_error("a C++ exception");
    });
    functions.add("cpp.typed", [](const dask::Value &, const dask::Value &) -> dask::Value {
        throw dask::TaskError("KeyError", "no such thing");
    });
    CHECK(functions.contains("cpp.twice") && functions.size() == 3);

    dask::LocalCluster cluster(1, 1);
    dask::Worker worker(cluster.address(), functions, 2, "cpp-test-worker");
    CHECK(worker.name() == "cpp-test-worker");
    dask::Client client = cluster.client();
    CHECK(client.connected() && client.worker_count() == 2);

    dask::Future f = client.submit("cpp.twice", dask::array(21));
    CHECK(f.result(60000).as_int() == 42 && f.done() && f.status() == DASK_STATUS_FINISHED);
    dask::Future g = f; // another reference to the key
    CHECK(g.key() == f.key());
    CHECK(client.submit_msgpack("cpp.twice", dask::array(5).to_msgpack()).result(60000).as_int() == 10);
    CHECK(client.submit("add", dask::array(f, g)).result_msgpack(60000).size() == 1);
    try {
        client.submit("cpp.throws").result(60000);
        CHECK(false);
    } catch (const dask::Error &e) {
        CHECK(e.code() == DASK_REMOTE_ERROR && e.remote_type() == "CppException" &&
              e.remote_message() == "a C++ exception");
    }
    try {
        client.submit("cpp.typed").wait(60000);
        CHECK(false);
    } catch (const dask::Error &e) {
        CHECK(e.remote_type() == "KeyError" && e.remote_message() == "no such thing");
    }

    // a graph, compute many, gather, scatter, as completed
    dask::Delayed a("inc", dask::array(1));
    a.key("cpp-a").priority(1).retries(0);
    CHECK(a.key() == "cpp-a");
    std::vector<dask::Future> fs = client.compute({a, dask::Delayed("add", dask::array(a, 10))});
    std::vector<dask::Value> rs = client.gather(fs, 60000);
    CHECK(rs.size() == 2 && rs[0].as_int() == 2 && rs[1].as_int() == 12);
    std::vector<dask::Future> data = client.scatter({dask::Value("x"), dask::Value(7)});
    CHECK(client.gather(data)[0].as_string() == "x");
    dask::AsCompleted it = client.as_completed(fs);
    it.add(data[1]);
    CHECK(it.size() == 3);
    int n = 0;
    while (auto next = it.next(60000)) {
        n++;
    }
    CHECK(n == 3);

    // stop the worker from another thread while run() waits
    std::thread stopper([&] { worker.stop(); });
    worker.run();
    stopper.join();

    client.close();
    check_throws(__LINE__, DASK_CLOSED, "the client is closed", [&] { client.submit("inc", dask::array(1)); });
    check_throws(__LINE__, DASK_CONNECTION, "connection", [&] { f.result(60000); });
}

// A graph computed in this process with C++ functions: no scheduler, no
// socket; the same result on several threads and on this one.
static void in_process() {
    dask::Functions functions = dask::Functions::builtins();
    functions.add("cpp.square", [](const dask::Value &args, const dask::Value &) {
        std::int64_t x = args[0].as_int();
        return dask::Value(x * x);
    });
    functions.add("cpp.refuse", [](const dask::Value &, const dask::Value &) -> dask::Value {
        throw dask::TaskError("KeyError", "not here");
    });
    std::vector<dask::Delayed> squares;
    for (int i = 0; i < 8; i++) {
        squares.emplace_back("cpp.square", dask::array(i));
    }
    dask::Delayed total("sum", dask::array(std::vector<dask::Value>(squares.begin(), squares.end())));
    for (std::size_t threads : {0, 1, 4}) {
        CHECK(dask::compute_in_process(total, functions, threads).as_int() == 140);
    }
    std::vector<dask::Value> both = dask::compute_in_process({squares[3], total}, functions, 2);
    CHECK(both.size() == 2 && both[0].as_int() == 9 && both[1].as_int() == 140);
    dask::Delayed refused("inc", dask::array(dask::Delayed("cpp.refuse")));
    try {
        dask::compute_in_process(refused, functions, 2);
        CHECK(false);
    } catch (const dask::Error &e) {
        CHECK(e.code() == DASK_REMOTE_ERROR && e.remote_type() == "KeyError" &&
              e.remote_message() == "not here");
    }
}

int main() {
    try {
        values();
        in_process();
        client_and_worker();
    } catch (const dask::Error &e) {
        failed++;
        std::cerr << "unexpected: " << e.what() << "\n";
    }
    std::cout << passed << " passed, " << failed << " failed\n";
    return failed == 0 ? 0 : 1;
}
