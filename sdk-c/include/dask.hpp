// dask.hpp: a header-only C++17 wrapper over libdask.h.
//
// - RAII: every handle is a move-only (or cloning) object that frees itself.
// - Failures throw dask::Error, carrying the library's message and code
//   (and, for a task that failed on a worker, its remote type and message).
// - std::string, std::vector and C++ numbers convert to and from dask::Value.
// - Worker functions can be any callable `Value(const Value& args, const Value& kwargs)`;
//   throwing dask::TaskError(type, message) (or any std::exception) reports
//   the task as failed.
//
//   dask::Client client = dask::Client::local(1, 2);
//   dask::Future sum = client.submit("add", dask::array(40, 2));
//   std::cout << sum.result().as_int() << "\n";   // 42
//
// Thread safety and ownership follow libdask.h: a Client, Future or Worker
// may be used from several threads at once; a Value or Delayed being
// changed may not. Link with -ldask (pkg-config --cflags --libs dask).
#ifndef DASK_HPP
#define DASK_HPP

#include <libdask.h>

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace dask {

/// A failed libdask call.
class Error : public std::runtime_error {
public:
    Error(dask_result code, const std::string &message, std::string remote_type = {},
          std::string remote_message = {})
        : std::runtime_error(message), code_(code), remote_type_(std::move(remote_type)),
          remote_message_(std::move(remote_message)) {}

    /// The status code, e.g. DASK_TIMEOUT.
    dask_result code() const noexcept { return code_; }
    /// For DASK_REMOTE_ERROR: the task's error type, e.g. "ValueError"; else empty.
    const std::string &remote_type() const noexcept { return remote_type_; }
    /// For DASK_REMOTE_ERROR: the task's own error message; else empty.
    const std::string &remote_message() const noexcept { return remote_message_; }

private:
    dask_result code_;
    std::string remote_type_;
    std::string remote_message_;
};

/// Thrown by a worker function to fail its task with a type and message.
class TaskError : public std::runtime_error {
public:
    TaskError(std::string type, const std::string &message)
        : std::runtime_error(message), type_(std::move(type)) {}
    const std::string &type() const noexcept { return type_; }

private:
    std::string type_;
};

/// Milliseconds to wait without limit.
constexpr std::int64_t no_timeout = DASK_NO_TIMEOUT;

namespace detail {

inline Error to_error(dask_result code, dask_error *err) {
    auto text = [](const char *s) { return s != nullptr ? std::string(s) : std::string(); };
    Error e(code, text(dask_error_message(err)), text(dask_error_remote_type(err)),
            text(dask_error_remote_message(err)));
    dask_error_free(err);
    return e;
}

/// Runs `call(&err)`; throws dask::Error when it fails.
template <class Call> void check(Call &&call) {
    dask_error *err = nullptr;
    dask_result code = call(&err);
    if (code != DASK_OK) {
        throw to_error(code, err);
    }
}

template <class T, void (*Free)(T *)> struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};

template <class T, void (*Free)(T *)> using Handle = std::unique_ptr<T, Deleter<T, Free>>;

} // namespace detail

class Future;
class Delayed;
class Value;

/// A read-only view of a value inside another (an array item, a map
/// entry): valid while the value it came from lives unchanged.
class ValueView {
public:
    explicit ValueView(const dask_value *v) noexcept : v_(v) {}

    dask_type type() const noexcept { return dask_value_type(v_); }
    bool is_null() const noexcept { return type() == DASK_TYPE_NULL; }
    /// Items of an array, entries of a map, bytes of a string or binary.
    std::size_t size() const noexcept { return dask_value_len(v_); }

    bool as_bool() const {
        bool out = false;
        detail::check([&](dask_error **e) { return dask_value_as_bool(v_, &out, e); });
        return out;
    }
    std::int64_t as_int() const {
        std::int64_t out = 0;
        detail::check([&](dask_error **e) { return dask_value_as_int(v_, &out, e); });
        return out;
    }
    std::uint64_t as_uint() const {
        std::uint64_t out = 0;
        detail::check([&](dask_error **e) { return dask_value_as_uint(v_, &out, e); });
        return out;
    }
    double as_double() const {
        double out = 0;
        detail::check([&](dask_error **e) { return dask_value_as_double(v_, &out, e); });
        return out;
    }
    std::string as_string() const {
        const char *s = nullptr;
        std::size_t len = 0;
        detail::check([&](dask_error **e) { return dask_value_as_string(v_, &s, &len, e); });
        return std::string(s, len);
    }
    std::vector<std::uint8_t> as_bytes() const {
        const std::uint8_t *data = nullptr;
        std::size_t len = 0;
        detail::check([&](dask_error **e) { return dask_value_as_bytes(v_, &data, &len, e); });
        return data != nullptr ? std::vector<std::uint8_t>(data, data + len)
                               : std::vector<std::uint8_t>();
    }
    /// Item `index` of an array.
    ValueView operator[](std::size_t index) const {
        const dask_value *item = nullptr;
        detail::check([&](dask_error **e) { return dask_value_array_get(v_, index, &item, e); });
        return ValueView(item);
    }
    /// The value of string key `key` in a map.
    ValueView at(const std::string &key) const {
        const dask_value *item = nullptr;
        detail::check(
            [&](dask_error **e) { return dask_value_map_get(v_, key.c_str(), &item, e); });
        return ValueView(item);
    }
    /// Entry `index` of a map, as (key, value).
    std::pair<ValueView, ValueView> entry(std::size_t index) const {
        const dask_value *key = nullptr, *value = nullptr;
        detail::check(
            [&](dask_error **e) { return dask_value_map_entry(v_, index, &key, &value, e); });
        return {ValueView(key), ValueView(value)};
    }
    /// Converts to T: bool, an integer type, double, std::string,
    /// std::vector<std::uint8_t> (a binary), or std::vector<U> (an array of U).
    template <class T> T as() const;
    /// The msgpack encoding.
    std::vector<std::uint8_t> to_msgpack() const {
        dask_bytes *bytes = nullptr;
        detail::check([&](dask_error **e) { return dask_value_to_msgpack(v_, &bytes, e); });
        detail::Handle<dask_bytes, dask_bytes_free> owned(bytes);
        const std::uint8_t *data = dask_bytes_data(bytes);
        return data != nullptr ? std::vector<std::uint8_t>(data, data + dask_bytes_len(bytes))
                               : std::vector<std::uint8_t>();
    }
    const dask_value *get() const noexcept { return v_; }

protected:
    const dask_value *v_;
};

template <class T> struct is_vector : std::false_type {};
template <class U> struct is_vector<std::vector<U>> : std::true_type {};

template <class T> T ValueView::as() const {
    if constexpr (std::is_same_v<T, bool>) {
        return as_bool();
    } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
        return static_cast<T>(as_int());
    } else if constexpr (std::is_integral_v<T>) {
        return static_cast<T>(as_uint());
    } else if constexpr (std::is_floating_point_v<T>) {
        return static_cast<T>(as_double());
    } else if constexpr (std::is_same_v<T, std::string>) {
        return as_string();
    } else if constexpr (std::is_same_v<T, std::vector<std::uint8_t>>) {
        return as_bytes();
    } else if constexpr (is_vector<T>::value) {
        if (type() != DASK_TYPE_ARRAY) {
            throw Error(DASK_WRONG_TYPE, "dask::ValueView::as: expected an array");
        }
        T out;
        std::size_t n = size();
        out.reserve(n);
        for (std::size_t i = 0; i < n; i++) {
            out.push_back((*this)[i].template as<typename T::value_type>());
        }
        return out;
    } else {
        static_assert(sizeof(T) == 0, "dask::ValueView::as<T>: unsupported T");
    }
}

/// An owned value. Copying copies the value; moving moves it.
class Value : public ValueView {
public:
    /// null.
    Value() : Value(dask_value_new_null()) {}
    Value(std::nullptr_t) : Value() {}
    Value(bool b) : Value(dask_value_new_bool(b)) {}
    template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                                            std::is_signed_v<T>,
                                        int> = 0>
    Value(T i) : Value(dask_value_new_int(static_cast<std::int64_t>(i))) {}
    template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool> &&
                                            std::is_unsigned_v<T>,
                                        int> = 0>
    Value(T u) : Value(dask_value_new_uint(static_cast<std::uint64_t>(u))) {}
    Value(double d) : Value(dask_value_new_double(d)) {}
    Value(const char *s) : Value(make_string(s)) {}
    Value(const std::string &s) : Value(make_string(s.c_str())) {}
    /// A binary.
    Value(const std::vector<std::uint8_t> &bytes) : Value(make_bytes(bytes)) {}
    /// An array of the items.
    template <class T> Value(const std::vector<T> &items) : Value(dask_value_new_array()) {
        for (const auto &item : items) {
            push_back(Value(item));
        }
    }
    /// A reference to a future's result (for arguments of calls).
    Value(const Future &future);
    /// A reference to a delayed call's result (for arguments of calls).
    Value(const Delayed &delayed);

    /// Takes over a dask_value from the C API.
    explicit Value(dask_value *owned) : ValueView(owned) {
        if (owned == nullptr) {
            throw Error(DASK_NULL_PARAMETER, "dask::Value: NULL value");
        }
    }
    Value(const Value &other) : Value(dask_value_clone(other.get())) {}
    Value(const ValueView &view) : Value(dask_value_clone(view.get())) {}
    Value(Value &&other) noexcept : ValueView(other.v_) { other.v_ = nullptr; }
    Value &operator=(Value other) noexcept {
        std::swap(v_, other.v_);
        return *this;
    }
    ~Value() { dask_value_free(mut()); }

    /// An empty array / map.
    static Value array() { return Value(dask_value_new_array()); }
    static Value map() { return Value(dask_value_new_map()); }
    /// Decodes one msgpack value.
    static Value from_msgpack(const std::uint8_t *data, std::size_t len) {
        dask_value *out = nullptr;
        detail::check([&](dask_error **e) { return dask_value_from_msgpack(data, len, &out, e); });
        return Value(out);
    }
    static Value from_msgpack(const std::vector<std::uint8_t> &bytes) {
        return from_msgpack(bytes.data(), bytes.size());
    }

    /// Appends to an array.
    Value &push_back(Value item) {
        dask_value *raw = item.release();
        detail::check([&](dask_error **e) { return dask_value_array_push(mut(), raw, e); });
        return *this;
    }
    /// Sets a map entry.
    Value &set(const std::string &key, Value item) {
        dask_value *raw = item.release();
        detail::check(
            [&](dask_error **e) { return dask_value_map_set(mut(), key.c_str(), raw, e); });
        return *this;
    }
    /// Gives up ownership (for C calls that consume a value).
    dask_value *release() noexcept {
        dask_value *p = mut();
        v_ = nullptr;
        return p;
    }

private:
    dask_value *mut() const noexcept { return const_cast<dask_value *>(v_); }
    static dask_value *make_string(const char *s) {
        dask_value *out = nullptr;
        detail::check([&](dask_error **e) { return dask_value_new_string(s, &out, e); });
        return out;
    }
    static dask_value *make_bytes(const std::vector<std::uint8_t> &b) {
        dask_value *out = nullptr;
        detail::check(
            [&](dask_error **e) { return dask_value_new_bytes(b.data(), b.size(), &out, e); });
        return out;
    }
};

/// An array of the arguments: dask::array(1, "x", future, 2.5).
template <class... Items> Value array(Items &&...items) {
    Value out = Value::array();
    (out.push_back(Value(std::forward<Items>(items))), ...);
    return out;
}

/// A handle to the result of one key on the cluster (copying takes another
/// reference to the same key).
class Future {
public:
    explicit Future(dask_future *owned) : f_(owned) {
        if (owned == nullptr) {
            throw Error(DASK_NULL_PARAMETER, "dask::Future: NULL future");
        }
    }
    Future(const Future &other) : Future(dask_future_clone(other.get())) {}
    Future(Future &&) noexcept = default;
    Future &operator=(Future other) noexcept {
        std::swap(f_, other.f_);
        return *this;
    }

    std::string key() const { return dask_future_key(get()); }
    dask_status status() const noexcept { return dask_future_status(get()); }
    bool done() const noexcept { return status() != DASK_STATUS_PENDING; }
    /// Waits until finished; throws dask::Error (DASK_TIMEOUT, DASK_REMOTE_ERROR, ...).
    void wait(std::int64_t timeout_ms = no_timeout) const {
        detail::check([&](dask_error **e) { return dask_future_wait(get(), timeout_ms, e); });
    }
    /// Waits and fetches the result.
    Value result(std::int64_t timeout_ms = no_timeout) const {
        dask_value *out = nullptr;
        detail::check(
            [&](dask_error **e) { return dask_future_result(get(), timeout_ms, &out, e); });
        return Value(out);
    }
    /// Waits and fetches the result's msgpack encoding.
    std::vector<std::uint8_t> result_msgpack(std::int64_t timeout_ms = no_timeout) const {
        dask_bytes *bytes = nullptr;
        detail::check([&](dask_error **e) {
            return dask_future_result_msgpack(get(), timeout_ms, &bytes, e);
        });
        detail::Handle<dask_bytes, dask_bytes_free> owned(bytes);
        const std::uint8_t *data = dask_bytes_data(bytes);
        return data != nullptr ? std::vector<std::uint8_t>(data, data + dask_bytes_len(bytes))
                               : std::vector<std::uint8_t>();
    }
    void cancel() const {
        detail::check([&](dask_error **e) { return dask_future_cancel(get(), e); });
    }
    const dask_future *get() const noexcept { return f_.get(); }

private:
    detail::Handle<dask_future, dask_future_free> f_;
};

/// A lazy call, computed with Client::compute; pass it (as a Value) in the
/// arguments of other calls to build a graph.
class Delayed {
public:
    Delayed(const std::string &function, const Value &args = Value::array()) {
        dask_delayed *out = nullptr;
        detail::check([&](dask_error **e) {
            return dask_delayed_new(function.c_str(), args.get(), &out, e);
        });
        d_.reset(out);
    }
    Delayed(const Delayed &other) : d_(dask_delayed_clone(other.get())) {}
    Delayed(Delayed &&) noexcept = default;
    Delayed &operator=(Delayed other) noexcept {
        std::swap(d_, other.d_);
        return *this;
    }
    std::string key() const { return dask_delayed_key(get()); }
    Delayed &key(const std::string &key) {
        detail::check([&](dask_error **e) { return dask_delayed_set_key(d_.get(), key.c_str(), e); });
        return *this;
    }
    Delayed &priority(std::int64_t priority) {
        detail::check([&](dask_error **e) { return dask_delayed_set_priority(d_.get(), priority, e); });
        return *this;
    }
    Delayed &retries(std::uint32_t retries) {
        detail::check([&](dask_error **e) { return dask_delayed_set_retries(d_.get(), retries, e); });
        return *this;
    }
    const dask_delayed *get() const noexcept { return d_.get(); }

private:
    detail::Handle<dask_delayed, dask_delayed_free> d_;
};

inline Value::Value(const Future &future) : ValueView(nullptr) {
    dask_value *out = nullptr;
    detail::check([&](dask_error **e) { return dask_value_new_future(future.get(), &out, e); });
    v_ = out;
}

inline Value::Value(const Delayed &delayed) : ValueView(nullptr) {
    dask_value *out = nullptr;
    detail::check([&](dask_error **e) { return dask_value_new_delayed(delayed.get(), &out, e); });
    v_ = out;
}

/// Yields futures as they complete.
class AsCompleted {
public:
    explicit AsCompleted(dask_as_completed *owned) : it_(owned) {}
    /// The next completed future; std::nullopt when all were given. Throws
    /// dask::Error with DASK_TIMEOUT when none completed in time.
    std::optional<Future> next(std::int64_t timeout_ms = no_timeout) {
        dask_future *out = nullptr;
        dask_error *err = nullptr;
        dask_result code = dask_as_completed_next(it_.get(), timeout_ms, &out, &err);
        if (code == DASK_DONE) {
            return std::nullopt;
        }
        if (code != DASK_OK) {
            throw detail::to_error(code, err);
        }
        return Future(out);
    }
    void add(const Future &future) {
        detail::check([&](dask_error **e) { return dask_as_completed_add(it_.get(), future.get(), e); });
    }
    std::size_t size() const noexcept { return dask_as_completed_count(it_.get()); }

private:
    detail::Handle<dask_as_completed, dask_as_completed_free> it_;
};

/// Functions a worker offers, by name.
class Functions {
public:
    /// What a C++ worker function is.
    using Function = std::function<Value(const Value &args, const Value &kwargs)>;

    /// No functions.
    Functions() : f_(dask_functions_new()) {}
    /// The built-in library (add, inc, sum, ..., conformance.*).
    static Functions builtins() { return Functions(dask_functions_new_builtins()); }

    /// Registers a C++ callable under `name`. It runs on worker threads,
    /// several at once: it must be thread-safe. Throw dask::TaskError to fail
    /// the task with a type; any other exception fails it too.
    Functions &add(const std::string &name, Function function) {
        auto *owned = new Function(std::move(function));
        detail::check([&](dask_error **e) {
            return dask_functions_register(f_.get(), name.c_str(), &trampoline, owned,
                                           &free_function, e);
        });
        return *this;
    }
    /// Registers a plain C function (see dask_function in libdask.h).
    Functions &add_c(const std::string &name, dask_function function, void *user_data = nullptr,
                     dask_free_fn free_user_data = nullptr) {
        detail::check([&](dask_error **e) {
            return dask_functions_register(f_.get(), name.c_str(), function, user_data,
                                           free_user_data, e);
        });
        return *this;
    }
    bool contains(const std::string &name) const noexcept {
        return dask_functions_contains(f_.get(), name.c_str());
    }
    std::size_t size() const noexcept { return dask_functions_len(f_.get()); }
    const dask_functions *get() const noexcept { return f_.get(); }

private:
    explicit Functions(dask_functions *owned) : f_(owned) {}

    static void trampoline(void *user_data, const std::uint8_t *args, std::size_t args_len,
                           const std::uint8_t *kwargs, std::size_t kwargs_len,
                           dask_task_output *output) {
        // No exception may cross into the C library.
        try {
            Value a = Value::from_msgpack(args, args_len);
            Value k = Value::from_msgpack(kwargs, kwargs_len);
            Value result = (*static_cast<Function *>(user_data))(a, k);
            dask_error *err = nullptr;
            if (dask_task_output_set_value(output, result.get(), &err) != DASK_OK) {
                dask_task_output_set_error(output, "ValueError", dask_error_message(err), nullptr);
                dask_error_free(err);
            }
        } catch (const TaskError &e) {
            dask_task_output_set_error(output, e.type().c_str(), e.what(), nullptr);
        } catch (const Error &e) {
            dask_task_output_set_error(output, "DaskError", e.what(), nullptr);
        } catch (const std::exception &e) {
            dask_task_output_set_error(output, "CppException", e.what(), nullptr);
        } catch (...) {
            dask_task_output_set_error(output, "CppException", "an unknown C++ exception", nullptr);
        }
    }
    static void free_function(void *user_data) { delete static_cast<Function *>(user_data); }

    detail::Handle<dask_functions, dask_functions_free> f_;
};

/// Computes `delayed` and every call it refers to in this process, with no
/// scheduler and no socket, calling `functions` on `threads` threads (0:
/// every task on the calling thread, one at a time, for a debugger). Throws
/// dask::Error: DASK_REMOTE_ERROR when a task failed, DASK_REFUSED when the
/// graph cannot run here (it refers to a Future).
inline Value compute_in_process(const Delayed &delayed, const Functions &functions,
                                std::size_t threads) {
    dask_value *out = nullptr;
    detail::check([&](dask_error **e) {
        return dask_delayed_compute_in_process(delayed.get(), functions.get(), threads, &out, e);
    });
    return Value(out);
}

/// Several delayed calls computed together in this process (a call they
/// share runs once); their results in order.
inline std::vector<Value> compute_in_process(const std::vector<Delayed> &calls,
                                             const Functions &functions, std::size_t threads) {
    std::vector<const dask_delayed *> raw;
    for (const auto &d : calls) {
        raw.push_back(d.get());
    }
    std::vector<dask_value *> out(calls.size(), nullptr);
    detail::check([&](dask_error **e) {
        return dask_delayed_compute_in_process_many(raw.data(), raw.size(), functions.get(),
                                                    threads, out.data(), e);
    });
    std::vector<Value> values;
    for (dask_value *v : out) {
        values.emplace_back(v);
    }
    return values;
}

/// Where a client or worker finds its credentials and TLS files
/// (dask_security). An empty string is "not given": no credentials file
/// finds them as every dask-rs program does; no TLS file, plain TCP.
struct Security {
    /// The cluster's credentials file, as `--credentials`.
    std::string credentials_file;
    /// The cluster's CA certificate, as `--tls-ca-file` (for tls:// addresses).
    std::string tls_ca_file;
    /// This program's certificate (may also hold its key), as `--tls-cert`.
    std::string tls_cert_file;
    /// The certificate's key, as `--tls-key`.
    std::string tls_key_file;
    /// Prove no credentials (a scheduler run with --no-auth-anyone-can-connect).
    bool no_auth = false;

    /// The C view; valid while this Security lives.
    dask_security c() const noexcept {
        const auto opt = [](const std::string &s) { return s.empty() ? nullptr : s.c_str(); };
        dask_security out{};
        out.credentials_file = opt(credentials_file);
        out.tls_ca_file = opt(tls_ca_file);
        out.tls_cert_file = opt(tls_cert_file);
        out.tls_key_file = opt(tls_key_file);
        out.no_auth = no_auth;
        return out;
    }
};

/// A connection to a scheduler.
class Client {
public:
    /// Connects to `address` (tcp://HOST:PORT), proving the credentials
    /// found as every dask-rs program finds them.
    static Client connect(const std::string &address, std::int64_t timeout_ms = 10000) {
        dask_client *out = nullptr;
        detail::check([&](dask_error **e) {
            return dask_client_connect(address.c_str(), timeout_ms, &out, e);
        });
        return Client(out);
    }
    /// Connects to `address` (tcp:// or tls://) with these credentials and
    /// TLS files.
    static Client connect(const std::string &address, const Security &security,
                          std::int64_t timeout_ms = 10000) {
        dask_client *out = nullptr;
        const dask_security c = security.c();
        detail::check([&](dask_error **e) {
            return dask_client_connect_secure(address.c_str(), timeout_ms, &c, &out, e);
        });
        return Client(out);
    }
    /// Starts an embedded cluster this client owns (stopped with the client).
    static Client local(std::size_t workers = 1, std::size_t threads_per_worker = 0,
                        const Functions *functions = nullptr) {
        dask_client *out = nullptr;
        detail::check([&](dask_error **e) {
            return dask_client_start_local(workers, threads_per_worker,
                                           functions != nullptr ? functions->get() : nullptr,
                                           &out, e);
        });
        return Client(out);
    }
    explicit Client(dask_client *owned) : c_(owned) {}

    std::string address() const { return dask_client_address(c_.get()); }
    bool connected() const noexcept { return dask_client_is_connected(c_.get()); }
    std::size_t worker_count() const {
        std::size_t n = 0;
        detail::check([&](dask_error **e) { return dask_client_worker_count(c_.get(), &n, e); });
        return n;
    }
    /// Submits function(*args); returns at once.
    Future submit(const std::string &function, const Value &args = Value::array()) const {
        dask_future *out = nullptr;
        detail::check([&](dask_error **e) {
            return dask_client_submit(c_.get(), function.c_str(), args.get(), &out, e);
        });
        return Future(out);
    }
    /// Submits function with args given as a msgpack array.
    Future submit_msgpack(const std::string &function, const std::vector<std::uint8_t> &args) const {
        dask_future *out = nullptr;
        detail::check([&](dask_error **e) {
            return dask_client_submit_msgpack(c_.get(), function.c_str(), args.data(),
                                              args.size(), &out, e);
        });
        return Future(out);
    }
    /// Submits a delayed call and everything it refers to, as one graph.
    Future compute(const Delayed &delayed) const {
        dask_future *out = nullptr;
        detail::check(
            [&](dask_error **e) { return dask_client_compute(c_.get(), delayed.get(), &out, e); });
        return Future(out);
    }
    std::vector<Future> compute(const std::vector<Delayed> &calls) const {
        std::vector<const dask_delayed *> raw;
        for (const auto &d : calls) {
            raw.push_back(d.get());
        }
        std::vector<dask_future *> out(calls.size(), nullptr);
        detail::check([&](dask_error **e) {
            return dask_client_compute_many(c_.get(), raw.data(), raw.size(), out.data(), e);
        });
        return adopt(out);
    }
    /// Every result, fetched in one request.
    std::vector<Value> gather(const std::vector<Future> &futures,
                              std::int64_t timeout_ms = no_timeout) const {
        std::vector<const dask_future *> raw;
        for (const auto &f : futures) {
            raw.push_back(f.get());
        }
        std::vector<dask_value *> out(futures.size(), nullptr);
        detail::check([&](dask_error **e) {
            return dask_client_gather(c_.get(), raw.data(), raw.size(), timeout_ms, out.data(), e);
        });
        std::vector<Value> values;
        values.reserve(out.size());
        for (auto *v : out) {
            values.emplace_back(v);
        }
        return values;
    }
    /// Stores values on the cluster; one future per value.
    std::vector<Future> scatter(const std::vector<Value> &values) const {
        std::vector<const dask_value *> raw;
        for (const auto &v : values) {
            raw.push_back(v.get());
        }
        std::vector<dask_future *> out(values.size(), nullptr);
        detail::check([&](dask_error **e) {
            return dask_client_scatter(c_.get(), raw.data(), raw.size(), out.data(), e);
        });
        return adopt(out);
    }
    AsCompleted as_completed(const std::vector<Future> &futures) const {
        std::vector<const dask_future *> raw;
        for (const auto &f : futures) {
            raw.push_back(f.get());
        }
        dask_as_completed *out = nullptr;
        detail::check([&](dask_error **e) {
            return dask_client_as_completed(c_.get(), raw.data(), raw.size(), &out, e);
        });
        return AsCompleted(out);
    }
    /// Closes the connection (and an owned embedded cluster).
    void close() {
        detail::check([&](dask_error **e) { return dask_client_close(c_.get(), e); });
    }
    const dask_client *get() const noexcept { return c_.get(); }

private:
    static std::vector<Future> adopt(const std::vector<dask_future *> &raw) {
        std::vector<Future> out;
        out.reserve(raw.size());
        for (auto *f : raw) {
            out.emplace_back(f);
        }
        return out;
    }
    detail::Handle<dask_client, dask_client_free> c_;
};

/// A scheduler and workers inside this process.
class LocalCluster {
public:
    explicit LocalCluster(std::size_t workers = 1, std::size_t threads_per_worker = 0,
                          const Functions *functions = nullptr) {
        dask_local_cluster *out = nullptr;
        detail::check([&](dask_error **e) {
            return dask_local_cluster_start(workers, threads_per_worker,
                                            functions != nullptr ? functions->get() : nullptr,
                                            &out, e);
        });
        c_.reset(out);
    }
    std::string address() const { return dask_local_cluster_address(c_.get()); }
    Client client() const {
        dask_client *out = nullptr;
        detail::check([&](dask_error **e) { return dask_local_cluster_client(c_.get(), &out, e); });
        return Client(out);
    }

private:
    detail::Handle<dask_local_cluster, dask_local_cluster_free> c_;
};

/// A worker connected to a scheduler (stopped when destroyed).
class Worker {
public:
    Worker(const std::string &scheduler, const Functions &functions, std::size_t nthreads = 0,
           const std::string &name = {}) {
        dask_worker *out = nullptr;
        detail::check([&](dask_error **e) {
            return dask_worker_start(scheduler.c_str(), nthreads,
                                     name.empty() ? nullptr : name.c_str(), functions.get(), &out,
                                     e);
        });
        w_.reset(out);
    }
    /// A worker with these credentials and TLS files: with a certificate
    /// its data address is tls://.
    Worker(const std::string &scheduler, const Functions &functions, const Security &security,
           std::size_t nthreads = 0, const std::string &name = {}) {
        dask_worker *out = nullptr;
        const dask_security c = security.c();
        detail::check([&](dask_error **e) {
            return dask_worker_start_secure(scheduler.c_str(), nthreads,
                                            name.empty() ? nullptr : name.c_str(),
                                            functions.get(), &c, &out, e);
        });
        w_.reset(out);
    }
    std::string address() const { return dask_worker_address(w_.get()); }
    std::string name() const { return dask_worker_name(w_.get()); }
    /// Blocks until the worker ends (closed by the scheduler, or stop()).
    void run() const {
        detail::check([&](dask_error **e) { return dask_worker_run(w_.get(), e); });
    }
    /// Stops the worker; callable from any thread.
    void stop() const {
        detail::check([&](dask_error **e) { return dask_worker_stop(w_.get(), e); });
    }

private:
    detail::Handle<dask_worker, dask_worker_free> w_;
};

} // namespace dask

#endif // DASK_HPP
