//! The built-in function library every dask-rs worker offers.
//!
//! Each function's doc comment is its user documentation: it is what
//! `dask-worker --list-functions` prints (through [`builtin_docs`]). The
//! first line is the signature.
//!
//! Conventions shared by all of them:
//! - Arguments bind like Python's: positionally, or by name through kwargs;
//!   a missing, extra or unknown argument is a `TypeError`.
//! - Numbers: integers stay integers and must stay in the signed 64-bit
//!   range (`OverflowError` otherwise); as soon as one operand is a float
//!   the result is a float. Booleans and everything else are not numbers
//!   (`TypeError`).
//! - Results that could not fit in one frame are refused before they are
//!   built (`ValueTooLarge`) rather than allocated.

use std::sync::OnceLock;
use std::time::Duration;

use dask_core::msgpack::VALUE_DEPTH_MAX;
use dask_core::FRAME_BYTES_MAX;
use rmpv::{Value, ValueRef};

use crate::function::{FunctionRegistry, TaskError, TaskResult};

/// Most elements `range` builds.
pub const RANGE_LEN_MAX: u64 = 16 * 1024 * 1024;

/// Most elements `random_floats` and `random_ints` build: each takes up to
/// 9 bytes encoded, so this many still fit in one frame.
pub const RANDOM_ELEMENTS_MAX: u64 = (FRAME_BYTES_MAX / 9) as u64;

/// The built-ins marked quick ([`FunctionRegistry::mark_quick`]): arithmetic
/// on numbers, a few hundred instructions on the small inputs they are run
/// inline with.
pub const QUICK_BUILTINS: &[&str] = &["add", "sub", "mul", "inc", "neg"];

/// Declares the library: each entry becomes a documented `pub fn`, an entry
/// of [`builtin_docs`] and a registration in [`register_all`], so the
/// documentation printed by the binary is the doc comment itself. An entry
/// marked `[borrowing]` takes its arguments as trees borrowing from the
/// received bytes (for functions that only read them: see
/// [`crate::function::BorrowingTaskFn`]).
macro_rules! builtins {
    ($( $(#[doc = $doc:literal])+ $wire:literal => $([$kind:ident])? fn $name:ident($args:ident, $kwargs:ident) $body:block )*) => {
        $(
            builtin_fn!([$($kind)?] $(#[doc = $doc])+ $name($args, $kwargs) $body);
        )*

        /// Every built-in function as (name, documentation), in library
        /// order. The documentation's first line is the signature.
        pub fn builtin_docs() -> Vec<(&'static str, &'static str)> {
            static DOCS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
            DOCS.get_or_init(|| vec![$(($wire, clean_doc(&[$($doc),+]))),*])
                .iter()
                .map(|(name, doc)| (*name, doc.as_str()))
                .collect()
        }

        /// Registers every built-in function.
        pub(crate) fn register_all(registry: &mut FunctionRegistry) {
            $(register_builtin!([$($kind)?] registry, $wire, $name);)*
        }
    };
}

/// One built-in's signature, by how it takes its arguments.
macro_rules! builtin_fn {
    ([] $(#[$doc:meta])+ $name:ident($args:ident, $kwargs:ident) $body:block) => {
        $(#[$doc])+
        pub fn $name($args: &[Value], $kwargs: &[(String, Value)]) -> TaskResult $body
    };
    ([borrowing] $(#[$doc:meta])+ $name:ident($args:ident, $kwargs:ident) $body:block) => {
        $(#[$doc])+
        pub fn $name($args: &[ValueRef<'_>], $kwargs: &[(&str, ValueRef<'_>)]) -> TaskResult $body
    };
}

/// One built-in's registration, by how it takes its arguments.
macro_rules! register_builtin {
    ([] $registry:ident, $wire:literal, $name:ident) => {
        $registry.register($wire, $name)
    };
    ([borrowing] $registry:ident, $wire:literal, $name:ident) => {
        $registry.register_borrowing($wire, $name)
    };
}

/// Doc attribute lines keep the space after `///`; drop it.
fn clean_doc(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

builtins! {
    /// add(a, b) -> a + b
    ///
    /// Integers give an integer (OverflowError outside the signed 64-bit
    /// range); any float gives a float; anything else is a TypeError.
    "add" => fn add(args, kwargs) {
        let p = bind("add", &["a", "b"], 2, args, kwargs)?;
        arith("add", req(&p, 0), req(&p, 1), Op::Add)
    }

    /// sub(a, b) -> a - b
    ///
    /// Number rules as for add.
    "sub" => fn sub(args, kwargs) {
        let p = bind("sub", &["a", "b"], 2, args, kwargs)?;
        arith("sub", req(&p, 0), req(&p, 1), Op::Sub)
    }

    /// mul(a, b) -> a * b
    ///
    /// Number rules as for add.
    "mul" => fn mul(args, kwargs) {
        let p = bind("mul", &["a", "b"], 2, args, kwargs)?;
        arith("mul", req(&p, 0), req(&p, 1), Op::Mul)
    }

    /// inc(x) -> x + 1
    ///
    /// Number rules as for add.
    "inc" => fn inc(args, kwargs) {
        let p = bind("inc", &["x"], 1, args, kwargs)?;
        arith("inc", req(&p, 0), &Value::from(1), Op::Add)
    }

    /// neg(x) -> -x
    ///
    /// Number rules as for add (neg of the smallest integer overflows).
    "neg" => fn neg(args, kwargs) {
        let p = bind("neg", &["x"], 1, args, kwargs)?;
        arith("neg", &Value::from(0), req(&p, 0), Op::Sub)
    }

    /// sum(values) -> the sum of an array of numbers
    ///
    /// An empty array sums to 0. Integers only give an integer
    /// (OverflowError outside the signed 64-bit range); any float gives a float.
    "sum" => fn sum(args, kwargs) {
        let p = bind("sum", &["values"], 1, args, kwargs)?;
        let items = array_arg("sum", req(&p, 0))?;
        let mut int_total: i128 = 0;
        let mut float_total = 0.0f64;
        let mut any_float = false;
        for item in items {
            match number("sum", item)? {
                Num::Int(i) => {
                    int_total += i;
                    float_total += i as f64;
                }
                Num::Float(f) => {
                    any_float = true;
                    float_total += f;
                }
            }
        }
        if any_float {
            Ok(Value::from(float_total))
        } else {
            int_value(int_total)
        }
    }

    /// min(values) -> the smallest element of an array
    ///
    /// The elements must all be numbers (compared by value, the element is
    /// returned as it is) or all strings. An empty array is a ValueError.
    "min" => fn min(args, kwargs) {
        let p = bind("min", &["values"], 1, args, kwargs)?;
        extreme("min", req(&p, 0), std::cmp::Ordering::Less)
    }

    /// max(values) -> the largest element of an array
    ///
    /// Rules as for min.
    "max" => fn max(args, kwargs) {
        let p = bind("max", &["values"], 1, args, kwargs)?;
        extreme("max", req(&p, 0), std::cmp::Ordering::Greater)
    }

    /// mean(values) -> the arithmetic mean of an array of numbers, as a float
    ///
    /// An empty array is a ValueError.
    "mean" => fn mean(args, kwargs) {
        let p = bind("mean", &["values"], 1, args, kwargs)?;
        let items = array_arg("mean", req(&p, 0))?;
        if items.is_empty() {
            return Err(TaskError::value_error("mean() of an empty array"));
        }
        let mut total = 0.0f64;
        for item in items {
            total += match number("mean", item)? {
                Num::Int(i) => i as f64,
                Num::Float(f) => f,
            };
        }
        Ok(Value::from(total / items.len() as f64))
    }

    /// concat(part, part, ...) or concat([part, part, ...]) -> the parts joined
    ///
    /// Parts are all arrays (gives an array), all strings (a string) or all
    /// binaries (a binary). With one argument, that argument is the array
    /// of parts. Mixed kinds are a TypeError.
    "concat" => fn concat(args, kwargs) {
        if !kwargs.is_empty() {
            return Err(TaskError::type_error("concat() takes no keyword arguments"));
        }
        let parts: &[Value] = match args {
            [] => return Err(TaskError::type_error("concat() needs at least one argument")),
            [Value::Array(parts)] => parts,
            [other] => {
                return Err(TaskError::type_error(format!(
                    "concat() with one argument needs an array of parts, got {}",
                    kind(other)
                )))
            }
            parts => parts,
        };
        join_parts(parts)
    }

    /// len(x) -> the number of elements of an array or entries of a map,
    /// characters of a string, or bytes of a binary
    "len" => [borrowing] fn len(args, kwargs) {
        // Borrowing: the length of a large binary is read where it was
        // received, without a copy.
        let p = bind("len", &["x"], 1, args, kwargs)?;
        let n = match p[0] {
            Some(ValueRef::Array(a)) => a.len(),
            Some(ValueRef::Map(m)) => m.len(),
            Some(ValueRef::String(s)) => match s.as_str() {
                Some(s) => s.chars().count(),
                None => s.as_bytes().len(),
            },
            Some(ValueRef::Binary(b)) => b.len(),
            Some(other) => {
                return Err(TaskError::type_error(format!(
                    "len() of a {} is not defined",
                    kind(&other.to_owned())
                )))
            }
            None => return Err(TaskError::type_error("len() missing required argument \"x\"")),
        };
        Ok(Value::from(n as u64))
    }

    /// getitem(container, index_or_key) -> one element
    ///
    /// Arrays, strings (by character) and binaries (a byte, as an integer)
    /// take an integer index; negative counts from the end (IndexError
    /// outside). Maps take a key (KeyError when absent).
    "getitem" => fn getitem(args, kwargs) {
        let p = bind("getitem", &["container", "index"], 2, args, kwargs)?;
        let (container, index) = (req(&p, 0), req(&p, 1));
        if let Value::Map(entries) = container {
            return entries
                .iter()
                .find(|(k, _)| k == index)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| TaskError::key_error(format!("{index}")));
        }
        let Num::Int(i) = number("getitem", index).map_err(|_| {
            TaskError::type_error(format!("{} indices must be integers", kind(container)))
        })?
        else {
            return Err(TaskError::type_error(format!(
                "{} indices must be integers, not float",
                kind(container)
            )));
        };
        match container {
            Value::Array(items) => Ok(items[resolve_index(i, items.len())?].clone()),
            Value::Binary(bytes) => Ok(Value::from(bytes[resolve_index(i, bytes.len())?])),
            Value::String(s) => {
                let text = s.as_str().ok_or_else(|| TaskError::value_error("string is not UTF-8"))?;
                let count = text.chars().count();
                let at = resolve_index(i, count)?;
                Ok(Value::from(text.chars().nth(at).map(String::from).unwrap_or_default()))
            }
            other => Err(TaskError::type_error(format!(
                "a {} is not subscriptable",
                kind(other)
            ))),
        }
    }

    /// identity(x) -> x
    "identity" => fn identity(args, kwargs) {
        let p = bind("identity", &["x"], 1, args, kwargs)?;
        Ok(req(&p, 0).clone())
    }

    /// range(n) or range(start, stop[, step]) -> an array of integers
    ///
    /// As Python's range: from start (default 0) up to but not including
    /// stop, by step (default 1; 0 is a ValueError). At most 16777216 elements.
    "range" => fn range(args, kwargs) {
        let p = bind("range", &["start", "stop", "step"], 1, args, kwargs)?;
        let first = int_arg("range", req(&p, 0))?;
        let (start, stop) = match p[1] {
            Some(stop) => (first, int_arg("range", stop)?),
            None => (0, first),
        };
        let step = match p[2] {
            Some(step) => int_arg("range", step)?,
            None => 1,
        };
        if step == 0 {
            return Err(TaskError::value_error("range() step must not be zero"));
        }
        let span = if step > 0 { stop - start } else { start - stop };
        let count = if span <= 0 { 0 } else { (span + step.abs() - 1) / step.abs() };
        if count > RANGE_LEN_MAX as i128 {
            return Err(TaskError::value_error(format!(
                "range() of {count} elements is over the limit of {RANGE_LEN_MAX}"
            )));
        }
        (0..count)
            .map(|i| int_value(start + i * step))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    }

    /// sleep(seconds[, value]) -> value (nil when absent), after sleeping
    ///
    /// seconds is a non-negative number (integer or float).
    "sleep" => fn sleep(args, kwargs) {
        let p = bind("sleep", &["seconds", "value"], 1, args, kwargs)?;
        let seconds = match number("sleep", req(&p, 0))? {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        };
        std::thread::sleep(duration_arg("sleep", seconds)?);
        Ok(p[1].cloned().unwrap_or(Value::Nil))
    }

    /// random_bytes(n, seed) -> a binary of n pseudo-random bytes
    ///
    /// Deterministic: the same seed gives the same bytes on every worker
    /// (splitmix64). Over one frame is a ValueTooLarge.
    "random_bytes" => fn random_bytes(args, kwargs) {
        let p = bind("random_bytes", &["n", "seed"], 2, args, kwargs)?;
        let n = count_arg("random_bytes", req(&p, 0), FRAME_BYTES_MAX as u64)?;
        let mut rng = SplitMix64::new(seed_arg("random_bytes", req(&p, 1))?);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let word = rng.next_u64().to_le_bytes();
            let take = (n - out.len()).min(8);
            out.extend_from_slice(&word[..take]);
        }
        Ok(Value::Binary(out))
    }

    /// random_floats(n, seed) -> an array of n pseudo-random floats in [0, 1)
    ///
    /// Deterministic, as random_bytes.
    "random_floats" => fn random_floats(args, kwargs) {
        let p = bind("random_floats", &["n", "seed"], 2, args, kwargs)?;
        let n = count_arg("random_floats", req(&p, 0), RANDOM_ELEMENTS_MAX)?;
        let mut rng = SplitMix64::new(seed_arg("random_floats", req(&p, 1))?);
        Ok(Value::Array((0..n).map(|_| Value::from(rng.next_f64())).collect()))
    }

    /// random_ints(n, seed[, low, high]) -> an array of n pseudo-random integers in [low, high)
    ///
    /// low defaults to 0 and high to 2147483648; low < high. Deterministic,
    /// as random_bytes, and unbiased.
    "random_ints" => fn random_ints(args, kwargs) {
        let p = bind("random_ints", &["n", "seed", "low", "high"], 2, args, kwargs)?;
        let n = count_arg("random_ints", req(&p, 0), RANDOM_ELEMENTS_MAX)?;
        let mut rng = SplitMix64::new(seed_arg("random_ints", req(&p, 1))?);
        let low = match p[2] {
            Some(v) => int_arg("random_ints", v)?,
            None => 0,
        };
        let high = match p[3] {
            Some(v) => int_arg("random_ints", v)?,
            None => 1 << 31,
        };
        if low >= high || low < i64::MIN as i128 || high > i64::MAX as i128 + 1 {
            return Err(TaskError::value_error(format!(
                "random_ints() needs low < high inside the 64-bit range, got [{low}, {high})"
            )));
        }
        let span = (high - low) as u128;
        (0..n)
            .map(|_| int_value(low + rng.below(span) as i128))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array)
    }

    /// exec(program[, args][, check=true]) or exec(program, arg, arg, ...) -> {code, stdout, stderr}
    ///
    /// Runs program directly (no shell) with string arguments, waits for it
    /// and returns its exit code and its output as strings (invalid UTF-8
    /// replaced). A program that exits non-zero or is killed by a signal is
    /// a CalledProcessError whose message has the exit code (or signal) and
    /// the last 2048 bytes of its stderr and stdout; with check=false it
    /// is a result like any other (code nil when killed by a signal). A
    /// program that cannot be started is a FileNotFoundError or an OSError.
    /// Anyone who can submit a task to this worker can run programs as its
    /// user. To feed a program's JSON output to later tasks:
    /// parse_json(getitem(exec(...), "stdout")).
    "exec" => fn exec(args, kwargs) {
        let call = exec_args(args, kwargs)?;
        let output = std::process::Command::new(call.program)
            .args(&call.args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                let error_type = if e.kind() == std::io::ErrorKind::NotFound {
                    "FileNotFoundError"
                } else {
                    "OSError"
                };
                TaskError::new(error_type, format!("cannot run {:?}: {e}", call.program))
            })?;
        if call.check && !output.status.success() {
            return Err(called_process_error(call.program, &output));
        }
        Ok(Value::Map(vec![
            (Value::from("code"), output.status.code().map(Value::from).unwrap_or(Value::Nil)),
            (Value::from("stdout"), Value::from(String::from_utf8_lossy(&output.stdout).into_owned())),
            (Value::from("stderr"), Value::from(String::from_utf8_lossy(&output.stderr).into_owned())),
        ]))
    }

    /// parse_json(text) -> the value the JSON text (a string, or a binary of UTF-8) describes
    ///
    /// Objects become maps (keys in text order), arrays arrays, integers
    /// integers (beyond the 64-bit range, floats, as JavaScript's
    /// JSON.parse does), other numbers floats, and strings, booleans and
    /// null themselves; no `$ref`-style forms are read. Invalid JSON is a
    /// ValueError naming the line and column; nesting deeper than 100
    /// levels is a ValueError.
    "parse_json" => fn parse_json(args, kwargs) {
        let p = bind("parse_json", &["text"], 1, args, kwargs)?;
        let bytes = match req(&p, 0) {
            Value::String(s) => s.as_bytes(),
            Value::Binary(b) => b.as_slice(),
            other => {
                return Err(TaskError::type_error(format!(
                    "parse_json() takes a string or a binary, got {}",
                    kind(other)
                )))
            }
        };
        let text = std::str::from_utf8(bytes)
            .map_err(|e| TaskError::value_error(format!("parse_json(): not UTF-8: {e}")))?;
        let json: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| TaskError::value_error(format!("parse_json(): not JSON: {e}")))?;
        json_value(&json, 0)
    }

    /// conformance.echo(x) -> x unchanged
    "conformance.echo" => fn conformance_echo(args, kwargs) {
        let p = bind("conformance.echo", &["x"], 1, args, kwargs)?;
        Ok(req(&p, 0).clone())
    }

    /// conformance.add(a, b) -> a + b
    ///
    /// Both integers: an integer (OverflowError outside the signed 64-bit
    /// range); otherwise a float; non-numbers: TypeError.
    "conformance.add" => fn conformance_add(args, kwargs) {
        let p = bind("conformance.add", &["a", "b"], 2, args, kwargs)?;
        arith("conformance.add", req(&p, 0), req(&p, 1), Op::Add)
    }

    /// conformance.fail(message) -> always errs
    ///
    /// error_type "ConformanceError", message = message (a non-string is
    /// shown as text).
    "conformance.fail" => fn conformance_fail(args, kwargs) {
        let p = bind("conformance.fail", &["message"], 1, args, kwargs)?;
        let message = match req(&p, 0) {
            Value::String(s) if s.is_str() => s.as_str().unwrap_or_default().to_string(),
            other => other.to_string(),
        };
        Err(TaskError::new("ConformanceError", message))
    }

    /// conformance.sleep(ms[, value]) -> value (nil when absent), after sleeping ms milliseconds
    "conformance.sleep" => fn conformance_sleep(args, kwargs) {
        let p = bind("conformance.sleep", &["ms", "value"], 1, args, kwargs)?;
        let ms = match number("conformance.sleep", req(&p, 0))? {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        };
        std::thread::sleep(duration_arg("conformance.sleep", ms / 1000.0)?);
        Ok(p[1].cloned().unwrap_or(Value::Nil))
    }

    /// conformance.bytes(n) -> a binary of n bytes, byte i = i % 251
    ///
    /// Over one frame is a ValueTooLarge.
    "conformance.bytes" => fn conformance_bytes(args, kwargs) {
        let p = bind("conformance.bytes", &["n"], 1, args, kwargs)?;
        let n = count_arg("conformance.bytes", req(&p, 0), FRAME_BYTES_MAX as u64)?;
        let pattern: Vec<u8> = (0..251u8).collect();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let take = (n - out.len()).min(pattern.len());
            out.extend_from_slice(&pattern[..take]);
        }
        Ok(Value::Binary(out))
    }
}

/// Binds positional and keyword arguments to parameter names, as Python
/// does: the first `required` are mandatory, the rest optional.
fn bind<'a, T, K: AsRef<str>>(
    function: &str,
    names: &[&str],
    required: usize,
    args: &'a [T],
    kwargs: &'a [(K, T)],
) -> Result<Vec<Option<&'a T>>, TaskError> {
    if args.len() > names.len() {
        return Err(TaskError::type_error(format!(
            "{function}() takes at most {} arguments ({} given)",
            names.len(),
            args.len()
        )));
    }
    let mut bound: Vec<Option<&T>> = vec![None; names.len()];
    for (slot, arg) in bound.iter_mut().zip(args) {
        *slot = Some(arg);
    }
    for (name, value) in kwargs {
        let name = name.as_ref();
        let Some(at) = names.iter().position(|n| *n == name) else {
            return Err(TaskError::type_error(format!(
                "{function}() got an unexpected keyword argument {name:?}"
            )));
        };
        if bound[at].is_some() {
            return Err(TaskError::type_error(format!(
                "{function}() got multiple values for argument {name:?}"
            )));
        }
        bound[at] = Some(value);
    }
    if let Some(missing) = (0..required).find(|&i| bound[i].is_none()) {
        return Err(TaskError::type_error(format!(
            "{function}() missing required argument {:?}",
            names[missing]
        )));
    }
    Ok(bound)
}

/// A required parameter (checked by [`bind`]).
fn req<'a>(bound: &[Option<&'a Value>], at: usize) -> &'a Value {
    const NIL: &Value = &Value::Nil;
    bound.get(at).copied().flatten().unwrap_or(NIL)
}

/// The name of a value's msgpack kind, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Boolean(_) => "boolean",
        Value::Integer(_) => "integer",
        Value::F32(_) | Value::F64(_) => "float",
        Value::String(_) => "string",
        Value::Binary(_) => "binary",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Ext(..) => "ext",
    }
}

/// A number argument. i128 holds every msgpack integer, so sums and
/// differences of two cannot overflow before the final range check.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn number(function: &str, v: &Value) -> Result<Num, TaskError> {
    match v {
        Value::Integer(i) => match (i.as_i64(), i.as_u64()) {
            (Some(i), _) => Ok(Num::Int(i as i128)),
            (None, Some(u)) => Ok(Num::Int(u as i128)),
            (None, None) => Err(TaskError::type_error("integer out of range")),
        },
        Value::F32(f) => Ok(Num::Float(*f as f64)),
        Value::F64(f) => Ok(Num::Float(*f)),
        other => Err(TaskError::type_error(format!(
            "{function}() needs numbers, got {}",
            kind(other)
        ))),
    }
}

fn int_arg(function: &str, v: &Value) -> Result<i128, TaskError> {
    match number(function, v) {
        Ok(Num::Int(i)) => Ok(i),
        _ => Err(TaskError::type_error(format!(
            "{function}() needs an integer, got {}",
            kind(v)
        ))),
    }
}

/// A non-negative count of at most `max` (past it: ValueTooLarge, so
/// nothing huge is allocated).
fn count_arg(function: &str, v: &Value, max: u64) -> Result<usize, TaskError> {
    let n = int_arg(function, v)?;
    if n < 0 {
        return Err(TaskError::value_error(format!(
            "{function}() needs a non-negative count, got {n}"
        )));
    }
    if n > max as i128 {
        return Err(TaskError::new(
            "ValueTooLarge",
            format!("{function}() of {n} elements would not fit in one frame (limit {max})"),
        ));
    }
    Ok(n as usize)
}

/// A seed: any integer, its 64 bits taken as they are.
fn seed_arg(function: &str, v: &Value) -> Result<u64, TaskError> {
    Ok(int_arg(function, v)? as u64)
}

fn duration_arg(function: &str, seconds: f64) -> Result<Duration, TaskError> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(TaskError::value_error(format!(
            "{function}() needs a non-negative duration, got {seconds}"
        )));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|e| TaskError::value_error(format!("{function}(): {e}")))
}

/// An integer result, which must fit in i64.
fn int_value(v: i128) -> TaskResult {
    i64::try_from(v)
        .map(Value::from)
        .map_err(|_| TaskError::overflow_error(format!("integer {v} is outside the 64-bit range")))
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
}

fn arith(function: &str, a: &Value, b: &Value, op: Op) -> TaskResult {
    match (number(function, a)?, number(function, b)?) {
        (Num::Int(x), Num::Int(y)) => {
            let r = match op {
                Op::Add => x.checked_add(y),
                Op::Sub => x.checked_sub(y),
                Op::Mul => x.checked_mul(y),
            };
            match r {
                Some(r) => int_value(r),
                None => Err(TaskError::overflow_error(format!(
                    "{function}(): integer result is outside the 64-bit range"
                ))),
            }
        }
        (x, y) => {
            let (x, y) = (as_f64(x), as_f64(y));
            Ok(Value::from(match op {
                Op::Add => x + y,
                Op::Sub => x - y,
                Op::Mul => x * y,
            }))
        }
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

fn array_arg<'a>(function: &str, v: &'a Value) -> Result<&'a [Value], TaskError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(TaskError::type_error(format!(
            "{function}() needs an array, got {}",
            kind(other)
        ))),
    }
}

/// min or max: keeps the element that compares `wanted` against the best so far.
fn extreme(function: &str, v: &Value, wanted: std::cmp::Ordering) -> TaskResult {
    let items = array_arg(function, v)?;
    let Some(first) = items.first() else {
        return Err(TaskError::value_error(format!(
            "{function}() of an empty array"
        )));
    };
    if let Value::String(_) = first {
        let mut best = text(function, first)?;
        let mut best_item = first;
        for item in &items[1..] {
            let t = text(function, item)?;
            if t.cmp(best) == wanted {
                best = t;
                best_item = item;
            }
        }
        return Ok(best_item.clone());
    }
    let mut best = number(function, first)?;
    let mut best_item = first;
    for item in &items[1..] {
        let n = number(function, item)?;
        let order = match (n, best) {
            (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
            (x, y) => as_f64(x).partial_cmp(&as_f64(y)),
        };
        if order == Some(wanted) {
            best = n;
            best_item = item;
        }
    }
    Ok(best_item.clone())
}

fn text<'a>(function: &str, v: &'a Value) -> Result<&'a str, TaskError> {
    match v {
        Value::String(s) => s
            .as_str()
            .ok_or_else(|| TaskError::value_error("string is not UTF-8")),
        other => Err(TaskError::type_error(format!(
            "{function}() cannot compare a string with a {}",
            kind(other)
        ))),
    }
}

fn join_parts(parts: &[Value]) -> TaskResult {
    match parts.first() {
        None => Ok(Value::Array(Vec::new())),
        Some(Value::Array(_)) => {
            let mut out = Vec::new();
            for part in parts {
                match part {
                    Value::Array(items) => out.extend(items.iter().cloned()),
                    other => return Err(mixed(other, "array")),
                }
            }
            Ok(Value::Array(out))
        }
        Some(Value::String(_)) => {
            let mut out = String::new();
            for part in parts {
                out.push_str(text("concat", part).map_err(|_| mixed(part, "string"))?);
            }
            Ok(Value::from(out))
        }
        Some(Value::Binary(_)) => {
            let mut out = Vec::new();
            for part in parts {
                match part {
                    Value::Binary(b) => out.extend_from_slice(b),
                    other => return Err(mixed(other, "binary")),
                }
            }
            Ok(Value::Binary(out))
        }
        Some(other) => Err(TaskError::type_error(format!(
            "concat() joins arrays, strings or binaries, not a {}",
            kind(other)
        ))),
    }
}

fn mixed(part: &Value, expected: &str) -> TaskError {
    TaskError::type_error(format!(
        "concat() parts must all be of one kind: expected {expected}, got {}",
        kind(part)
    ))
}

/// A Python-style index (negative counts from the end) into `len` elements.
fn resolve_index(i: i128, len: usize) -> Result<usize, TaskError> {
    let at = if i < 0 { i + len as i128 } else { i };
    if at < 0 || at >= len as i128 {
        return Err(TaskError::index_error(format!(
            "index {i} out of range for length {len}"
        )));
    }
    Ok(at as usize)
}

/// A bound `exec` call.
struct ExecCall<'a> {
    program: &'a str,
    args: Vec<&'a str>,
    /// Whether a non-zero exit is an error.
    check: bool,
}

fn exec_args<'a>(
    args: &'a [Value],
    kwargs: &'a [(String, Value)],
) -> Result<ExecCall<'a>, TaskError> {
    let mut program = args.first();
    let mut list: Option<&Value> = None;
    let mut check: Option<&Value> = None;
    for (name, value) in kwargs {
        match name.as_str() {
            "program" if program.is_none() => program = Some(value),
            "args" if list.is_none() && args.len() <= 1 => list = Some(value),
            "check" if check.is_none() => check = Some(value),
            _ => {
                return Err(TaskError::type_error(format!(
                    "exec() got an unexpected or repeated keyword argument {name:?}"
                )))
            }
        }
    }
    let check = match check {
        None => true,
        Some(Value::Boolean(b)) => *b,
        Some(other) => {
            return Err(TaskError::type_error(format!(
                "exec() check must be a boolean, got {}",
                kind(other)
            )))
        }
    };
    let Some(program) = program else {
        return Err(TaskError::type_error(
            "exec() missing required argument \"program\"",
        ));
    };
    let program = match program {
        Value::String(s) => s
            .as_str()
            .ok_or_else(|| TaskError::value_error("program is not UTF-8"))?,
        other => {
            return Err(TaskError::type_error(format!(
                "exec() program must be a string, got {}",
                kind(other)
            )))
        }
    };
    let rest: &[Value] = match (list, args.get(1..).unwrap_or(&[])) {
        (Some(Value::Array(items)), _) => items,
        (Some(other), _) => {
            return Err(TaskError::type_error(format!(
                "exec() args must be an array, got {}",
                kind(other)
            )))
        }
        (None, [Value::Array(items)]) => items,
        (None, rest) => rest,
    };
    let strings = rest
        .iter()
        .map(|v| match v {
            Value::String(s) => s
                .as_str()
                .ok_or_else(|| TaskError::value_error("argument is not UTF-8")),
            other => Err(TaskError::type_error(format!(
                "exec() arguments must be strings, got {}",
                kind(other)
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ExecCall {
        program,
        args: strings,
        check,
    })
}

/// Bytes of a failed program's stderr and stdout its error shows, from the end.
pub const EXEC_TAIL_BYTES: usize = 2048;

/// The error of a program that exited non-zero or was killed: how it
/// ended, then the tails of its stderr and stdout.
fn called_process_error(program: &str, output: &std::process::Output) -> TaskError {
    use std::os::unix::process::ExitStatusExt;
    let ended = match (output.status.code(), output.status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {}", output.status),
    };
    let mut message = format!("{program:?} {ended}");
    for (name, bytes) in [("stderr", &output.stderr), ("stdout", &output.stdout)] {
        message.push_str(&format!("\n--- {name}"));
        let text = String::from_utf8_lossy(bytes);
        let mut start = text.len().saturating_sub(EXEC_TAIL_BYTES);
        while !text.is_char_boundary(start) {
            start += 1;
        }
        if start > 0 {
            message.push_str(&format!(
                " (last {} of {} bytes)",
                text.len() - start,
                text.len()
            ));
        }
        if text.is_empty() {
            message.push_str(": empty");
        } else {
            message.push_str(" ---\n");
            message.push_str(text[start..].trim_end_matches('\n'));
        }
    }
    TaskError::new("CalledProcessError", message)
}

/// The msgpack value of parsed JSON inside `depth` arrays and objects,
/// refused past [`VALUE_DEPTH_MAX`] of them (as a decoder would refuse it).
fn json_value(json: &serde_json::Value, depth: usize) -> TaskResult {
    use serde_json::Value as Json;
    if matches!(json, Json::Array(_) | Json::Object(_)) && depth >= VALUE_DEPTH_MAX {
        return Err(TaskError::value_error(format!(
            "parse_json(): arrays and objects nested deeper than {VALUE_DEPTH_MAX} levels"
        )));
    }
    Ok(match json {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| json_value(item, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(entries) => Value::Map(
            entries
                .iter()
                .map(|(k, v)| Ok((Value::from(k.as_str()), json_value(v, depth + 1)?)))
                .collect::<Result<_, TaskError>>()?,
        ),
    })
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for
/// test data; written here so results are the same on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, span) for 1 <= span <= 2^64, without modulo bias:
    /// draws that fall in the incomplete last block are redrawn.
    fn below(&mut self, span: u128) -> u64 {
        if span > u64::MAX as u128 {
            return self.next_u64();
        }
        let span = span as u64;
        // 2^64 mod span: draws at or above 2^64 - that would be biased.
        let leftover = (u64::MAX % span + 1) % span;
        loop {
            let x = self.next_u64();
            if leftover == 0 || x < 0u64.wrapping_sub(leftover) {
                return x % span;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(x: impl Into<Value>) -> Value {
        x.into()
    }

    fn arr(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    fn err_type(r: TaskResult) -> String {
        r.unwrap_err().error_type
    }

    #[test]
    fn add_sub_mul_keep_integers_and_check_overflow() {
        assert_eq!(add(&[v(2), v(3)], &[]).unwrap(), v(5));
        assert_eq!(sub(&[v(2), v(3)], &[]).unwrap(), v(-1));
        assert_eq!(mul(&[v(-4), v(3)], &[]).unwrap(), v(-12));
        assert_eq!(add(&[v(2), v(0.5)], &[]).unwrap(), v(2.5));
        assert_eq!(mul(&[v(2.0), v(3)], &[]).unwrap(), v(6.0));
        assert_eq!(err_type(add(&[v(i64::MAX), v(1)], &[])), "OverflowError");
        assert_eq!(err_type(sub(&[v(i64::MIN), v(1)], &[])), "OverflowError");
        assert_eq!(
            err_type(mul(&[v(u64::MAX), v(u64::MAX)], &[])),
            "OverflowError"
        );
        assert_eq!(add(&[v(u64::MAX), v(i64::MIN)], &[]).unwrap(), v(i64::MAX));
        assert_eq!(err_type(add(&[v("a"), v(1)], &[])), "TypeError");
        assert_eq!(err_type(add(&[v(true), v(1)], &[])), "TypeError");
        assert_eq!(err_type(add(&[v(1)], &[])), "TypeError");
        assert_eq!(err_type(add(&[v(1), v(2), v(3)], &[])), "TypeError");
    }

    #[test]
    fn arguments_bind_by_name_like_python() {
        let kw = vec![("b".to_string(), v(10))];
        assert_eq!(add(&[v(1)], &kw).unwrap(), v(11));
        let both = vec![("a".to_string(), v(1)), ("b".to_string(), v(2))];
        assert_eq!(add(&[], &both).unwrap(), v(3));
        let dup = vec![("a".to_string(), v(1))];
        assert_eq!(err_type(add(&[v(1), v(2)], &dup)), "TypeError");
        let unknown = vec![("c".to_string(), v(1))];
        assert_eq!(err_type(add(&[v(1), v(2)], &unknown)), "TypeError");
    }

    #[test]
    fn inc_and_neg() {
        assert_eq!(inc(&[v(41)], &[]).unwrap(), v(42));
        assert_eq!(inc(&[v(1.5)], &[]).unwrap(), v(2.5));
        assert_eq!(err_type(inc(&[v(i64::MAX)], &[])), "OverflowError");
        assert_eq!(neg(&[v(5)], &[]).unwrap(), v(-5));
        assert_eq!(neg(&[v(-2.5)], &[]).unwrap(), v(2.5));
        assert_eq!(err_type(neg(&[v(i64::MIN)], &[])), "OverflowError");
        assert_eq!(err_type(neg(&[Value::Nil], &[])), "TypeError");
    }

    #[test]
    fn sum_mean_min_max_over_arrays() {
        assert_eq!(sum(&[arr(vec![v(1), v(2), v(3)])], &[]).unwrap(), v(6));
        assert_eq!(sum(&[arr(vec![])], &[]).unwrap(), v(0));
        assert_eq!(sum(&[arr(vec![v(1), v(0.5)])], &[]).unwrap(), v(1.5));
        assert_eq!(
            err_type(sum(&[arr(vec![v(i64::MAX), v(1)])], &[])),
            "OverflowError"
        );
        assert_eq!(err_type(sum(&[v(3)], &[])), "TypeError");
        assert_eq!(err_type(sum(&[arr(vec![v("x")])], &[])), "TypeError");
        assert_eq!(mean(&[arr(vec![v(1), v(2)])], &[]).unwrap(), v(1.5));
        assert_eq!(err_type(mean(&[arr(vec![])], &[])), "ValueError");
        assert_eq!(min(&[arr(vec![v(3), v(1.5), v(2)])], &[]).unwrap(), v(1.5));
        assert_eq!(max(&[arr(vec![v(3), v(1.5), v(7)])], &[]).unwrap(), v(7));
        assert_eq!(
            max(&[arr(vec![v("b"), v("c"), v("a")])], &[]).unwrap(),
            v("c")
        );
        assert_eq!(
            min(&[arr(vec![v("b"), v("c"), v("a")])], &[]).unwrap(),
            v("a")
        );
        assert_eq!(err_type(min(&[arr(vec![v("b"), v(1)])], &[])), "TypeError");
        assert_eq!(err_type(max(&[arr(vec![])], &[])), "ValueError");
    }

    #[test]
    fn concat_joins_arrays_strings_and_binaries() {
        let joined = concat(&[arr(vec![v(1)]), arr(vec![v(2), v(3)])], &[]).unwrap();
        assert_eq!(joined, arr(vec![v(1), v(2), v(3)]));
        let one_arg = concat(&[arr(vec![arr(vec![v(1)]), arr(vec![v(2)])])], &[]).unwrap();
        assert_eq!(one_arg, arr(vec![v(1), v(2)]));
        assert_eq!(concat(&[v("ab"), v("cd")], &[]).unwrap(), v("abcd"));
        assert_eq!(
            concat(&[arr(vec![v("ab"), v("c")])], &[]).unwrap(),
            v("abc")
        );
        assert_eq!(
            concat(&[Value::Binary(vec![1]), Value::Binary(vec![2, 3])], &[]).unwrap(),
            Value::Binary(vec![1, 2, 3])
        );
        assert_eq!(concat(&[arr(vec![])], &[]).unwrap(), arr(vec![]));
        assert_eq!(err_type(concat(&[v("a"), arr(vec![])], &[])), "TypeError");
        assert_eq!(err_type(concat(&[arr(vec![v(1), v(2)])], &[])), "TypeError");
        assert_eq!(err_type(concat(&[v(1)], &[])), "TypeError");
        assert_eq!(err_type(concat(&[], &[])), "TypeError");
    }

    #[test]
    fn len_counts_elements_characters_and_bytes() {
        let len_of = |x: Value| len(&[x.as_ref()], &[]);
        assert_eq!(len_of(arr(vec![v(1), v(2)])).unwrap(), v(2));
        assert_eq!(len_of(v("héllo")).unwrap(), v(5));
        assert_eq!(len_of(Value::Binary(vec![0; 7])).unwrap(), v(7));
        assert_eq!(len_of(Value::Map(vec![(v("a"), v(1))])).unwrap(), v(1));
        assert_eq!(err_type(len_of(v(3))), "TypeError");
        let x = v("abc");
        assert_eq!(len(&[], &[("x", x.as_ref())]).unwrap(), v(3));
        assert_eq!(err_type(len(&[], &[])), "TypeError");
    }

    #[test]
    fn getitem_indexes_sequences_and_maps() {
        let a = arr(vec![v(10), v(20), v(30)]);
        assert_eq!(getitem(&[a.clone(), v(0)], &[]).unwrap(), v(10));
        assert_eq!(getitem(&[a.clone(), v(-1)], &[]).unwrap(), v(30));
        assert_eq!(err_type(getitem(&[a.clone(), v(3)], &[])), "IndexError");
        assert_eq!(err_type(getitem(&[a.clone(), v(-4)], &[])), "IndexError");
        assert_eq!(err_type(getitem(&[a, v(0.5)], &[])), "TypeError");
        let m = Value::Map(vec![(v("k"), v(1)), (v(2), v("two"))]);
        assert_eq!(getitem(&[m.clone(), v("k")], &[]).unwrap(), v(1));
        assert_eq!(getitem(&[m.clone(), v(2)], &[]).unwrap(), v("two"));
        assert_eq!(err_type(getitem(&[m, v("x")], &[])), "KeyError");
        assert_eq!(getitem(&[v("héllo"), v(1)], &[]).unwrap(), v("é"));
        assert_eq!(
            getitem(&[Value::Binary(vec![5, 6]), v(1)], &[]).unwrap(),
            v(6)
        );
        assert_eq!(err_type(getitem(&[v(1), v(0)], &[])), "TypeError");
    }

    #[test]
    fn identity_returns_its_argument() {
        let x = Value::Map(vec![(v("a"), arr(vec![Value::Nil]))]);
        assert_eq!(identity(std::slice::from_ref(&x), &[]).unwrap(), x);
        assert_eq!(err_type(identity(&[], &[])), "TypeError");
    }

    #[test]
    fn range_follows_python() {
        let ints = |xs: &[i64]| arr(xs.iter().map(|&x| v(x)).collect());
        assert_eq!(range(&[v(4)], &[]).unwrap(), ints(&[0, 1, 2, 3]));
        assert_eq!(range(&[v(2), v(5)], &[]).unwrap(), ints(&[2, 3, 4]));
        assert_eq!(
            range(&[v(0), v(10), v(3)], &[]).unwrap(),
            ints(&[0, 3, 6, 9])
        );
        assert_eq!(range(&[v(5), v(0), v(-2)], &[]).unwrap(), ints(&[5, 3, 1]));
        assert_eq!(range(&[v(-3)], &[]).unwrap(), ints(&[]));
        assert_eq!(err_type(range(&[v(0), v(5), v(0)], &[])), "ValueError");
        assert_eq!(err_type(range(&[v(i64::MAX)], &[])), "ValueError");
        assert_eq!(err_type(range(&[v(1.0)], &[])), "TypeError");
    }

    #[test]
    fn sleep_returns_its_value() {
        assert_eq!(sleep(&[v(0.001), v("x")], &[]).unwrap(), v("x"));
        assert_eq!(sleep(&[v(0)], &[]).unwrap(), Value::Nil);
        assert_eq!(err_type(sleep(&[v(-1)], &[])), "ValueError");
        assert_eq!(err_type(sleep(&[v(f64::NAN)], &[])), "ValueError");
        assert_eq!(err_type(sleep(&[v(1e300)], &[])), "ValueError");
    }

    #[test]
    fn random_data_is_deterministic_and_in_range() {
        let a = random_bytes(&[v(13), v(7)], &[]).unwrap();
        assert_eq!(a, random_bytes(&[v(13), v(7)], &[]).unwrap());
        assert_ne!(a, random_bytes(&[v(13), v(8)], &[]).unwrap());
        assert_eq!(a.as_slice().unwrap().len(), 13);
        // The first splitmix64 output for seed 0 is a published constant.
        let first = random_bytes(&[v(8), v(0)], &[]).unwrap();
        assert_eq!(
            first.as_slice().unwrap(),
            &0xE220_A839_7B1D_CDAFu64.to_le_bytes()
        );
        let floats = random_floats(&[v(1000), v(-3)], &[]).unwrap();
        let floats = floats.as_array().unwrap();
        assert_eq!(floats.len(), 1000);
        assert!(floats
            .iter()
            .all(|f| (0.0..1.0).contains(&f.as_f64().unwrap())));
        let ints = random_ints(&[v(1000), v(1), v(-5), v(5)], &[]).unwrap();
        let ints: Vec<i64> = ints
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_i64().unwrap())
            .collect();
        assert!(ints.iter().all(|i| (-5..5).contains(i)));
        assert!((-5..5).all(|x| ints.contains(&x)), "every value drawn");
        let default = random_ints(&[v(100), v(1)], &[]).unwrap();
        assert!(default
            .as_array()
            .unwrap()
            .iter()
            .all(|i| (0..1i64 << 31).contains(&i.as_i64().unwrap())));
        let wide = random_ints(&[v(10), v(1), v(i64::MIN), v(i64::MAX)], &[]).unwrap();
        assert_eq!(wide.as_array().unwrap().len(), 10);
        assert_eq!(
            err_type(random_ints(&[v(1), v(1), v(5), v(5)], &[])),
            "ValueError"
        );
        assert_eq!(err_type(random_bytes(&[v(-1), v(1)], &[])), "ValueError");
        assert_eq!(
            err_type(random_bytes(&[v(u64::MAX), v(1)], &[])),
            "ValueTooLarge"
        );
        assert_eq!(
            err_type(random_floats(&[v(1u64 << 40), v(1)], &[])),
            "ValueTooLarge"
        );
    }

    fn field(map: &Value, k: &str) -> Value {
        map.as_map()
            .unwrap()
            .iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .map(|(_, v)| v.clone())
            .unwrap()
    }

    #[test]
    fn exec_runs_a_program_without_a_shell() {
        let out = exec(&[v("echo"), arr(vec![v("hello"), v("$HOME")])], &[]).unwrap();
        assert_eq!(field(&out, "code"), v(0));
        assert_eq!(field(&out, "stdout"), v("hello $HOME\n"));
        assert_eq!(field(&out, "stderr"), v(""));
        let kw = vec![("args".to_string(), arr(vec![v("x")]))];
        assert!(exec(&[v("echo")], &kw).is_ok());
        assert_eq!(
            err_type(exec(&[v("/nonexistent/program")], &[])),
            "FileNotFoundError"
        );
        assert_eq!(err_type(exec(&[v("echo"), v(1)], &[])), "TypeError");
        assert_eq!(err_type(exec(&[], &[])), "TypeError");
        let check = |b: Value| vec![("check".to_string(), b)];
        assert_eq!(err_type(exec(&[v("true")], &check(v(1)))), "TypeError");
    }

    #[test]
    fn exec_fails_on_a_non_zero_exit_unless_check_is_false() {
        let script = [v("sh"), v("-c"), v("echo partial; echo boom >&2; exit 3")];
        let e = exec(&script, &[]).unwrap_err();
        assert_eq!(e.error_type, "CalledProcessError");
        assert_eq!(
            e.message,
            "\"sh\" exited with code 3\n--- stderr ---\nboom\n--- stdout ---\npartial"
        );
        // Killed by a signal.
        let e = exec(&[v("sh"), v("-c"), v("kill -9 $$")], &[]).unwrap_err();
        assert!(
            e.message.starts_with("\"sh\" was killed by signal 9"),
            "{}",
            e.message
        );
        // Only the tails of long output.
        let long = "yes 0123456789 | head -c 100000; yes abcdef | head -c 5000 >&2; exit 1";
        let e = exec(&[v("sh"), v("-c"), v(long)], &[]).unwrap_err();
        assert!(
            e.message.len() < 2 * EXEC_TAIL_BYTES + 200,
            "{}",
            e.message.len()
        );
        assert!(
            e.message
                .contains("--- stderr (last 2048 of 5000 bytes) ---\n"),
            "{}",
            e.message
        );
        assert!(e
            .message
            .contains("--- stdout (last 2048 of 100000 bytes) ---\n"));
        // check=false: the old behaviour, a result with the code.
        let kept = exec(&script, &[("check".to_string(), v(false))]).unwrap();
        assert_eq!(field(&kept, "code"), v(3));
        assert_eq!(field(&kept, "stdout"), v("partial\n"));
        assert_eq!(field(&kept, "stderr"), v("boom\n"));
        let killed = exec(
            &[v("sh"), v("-c"), v("kill -9 $$")],
            &[("check".to_string(), v(false))],
        );
        assert_eq!(field(&killed.unwrap(), "code"), Value::Nil);
        let e = exec(&[v("false")], &[]).unwrap_err();
        assert_eq!(
            e.message,
            "\"false\" exited with code 1\n--- stderr: empty\n--- stdout: empty"
        );
    }

    #[test]
    fn parse_json_reads_a_programs_output() {
        let text = r#"{"n": 3, "big": 18446744073709551615, "neg": -2, "x": 1.5,
                       "list": [true, null, "s"], "huge": 1e400000000}"#;
        assert_eq!(err_type(parse_json(&[v(text)], &[])), "ValueError");
        let text = r#"{"n": 3, "big": 18446744073709551615, "neg": -2, "x": 1.5, "list": [true, null, "s"]}"#;
        let got = parse_json(&[v(text)], &[]).unwrap();
        assert_eq!(
            got,
            Value::Map(vec![
                (v("n"), v(3)),
                (v("big"), v(u64::MAX)),
                (v("neg"), v(-2)),
                (v("x"), v(1.5)),
                (v("list"), arr(vec![v(true), Value::Nil, v("s")])),
            ])
        );
        assert_eq!(
            parse_json(&[Value::Binary(b"[1]".to_vec())], &[]).unwrap(),
            arr(vec![v(1)])
        );
        assert_eq!(parse_json(&[], &[("text".into(), v("2"))]).unwrap(), v(2));
        // Past 64 bits an integer is a float, as JSON.parse has it.
        assert_eq!(
            parse_json(&[v("18446744073709551616")], &[]).unwrap(),
            v(18446744073709551616.0)
        );
        // Not a string, not JSON, not UTF-8.
        assert_eq!(err_type(parse_json(&[v(1)], &[])), "TypeError");
        let e = parse_json(&[v("{\"a\": }")], &[]).unwrap_err();
        assert_eq!(
            (e.error_type.as_str(), e.message.contains("line 1 column 7")),
            ("ValueError", true),
            "{}",
            e.message
        );
        assert_eq!(
            err_type(parse_json(&[Value::Binary(vec![0xff])], &[])),
            "ValueError"
        );
        // 100 levels of arrays are a value; 101 are not.
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse_json(&[v(nested(VALUE_DEPTH_MAX).as_str())], &[]).is_ok());
        assert_eq!(
            err_type(parse_json(&[v(nested(VALUE_DEPTH_MAX + 1).as_str())], &[])),
            "ValueError"
        );
        assert_eq!(
            err_type(parse_json(&[v(nested(100_000).as_str())], &[])),
            "ValueError"
        );
    }

    #[test]
    fn conformance_functions_match_the_design_notes() {
        let x = arr(vec![v(1), Value::Binary(vec![1, 2]), Value::Nil]);
        assert_eq!(conformance_echo(std::slice::from_ref(&x), &[]).unwrap(), x);
        assert_eq!(conformance_add(&[v(2), v(3)], &[]).unwrap(), v(5));
        assert_eq!(conformance_add(&[v(2), v(0.25)], &[]).unwrap(), v(2.25));
        assert_eq!(
            err_type(conformance_add(&[v(i64::MAX), v(1)], &[])),
            "OverflowError"
        );
        assert_eq!(err_type(conformance_add(&[v("a"), v(1)], &[])), "TypeError");
        let fail = conformance_fail(&[v("boom")], &[]).unwrap_err();
        assert_eq!(fail, TaskError::new("ConformanceError", "boom"));
        assert_eq!(
            conformance_sleep(&[v(1), v("done")], &[]).unwrap(),
            v("done")
        );
        assert_eq!(conformance_sleep(&[v(0.5)], &[]).unwrap(), Value::Nil);
        let bytes = conformance_bytes(&[v(600)], &[]).unwrap();
        let bytes = bytes.as_slice().unwrap();
        assert_eq!(bytes.len(), 600);
        assert!(bytes
            .iter()
            .enumerate()
            .all(|(i, &b)| b as usize == i % 251));
        assert_eq!(
            conformance_bytes(&[v(0)], &[]).unwrap(),
            Value::Binary(vec![])
        );
        assert_eq!(
            err_type(conformance_bytes(&[v(FRAME_BYTES_MAX as u64 + 1)], &[])),
            "ValueTooLarge"
        );
    }

    #[test]
    fn every_builtin_is_documented_with_its_signature_first() {
        let docs = builtin_docs();
        let registry = FunctionRegistry::builtins();
        assert_eq!(docs.len(), registry.len());
        for (name, doc) in docs {
            assert!(registry.contains(name));
            assert!(doc.starts_with(name), "{name}: {doc}");
            assert!(!doc.lines().any(|l| l.starts_with(' ')), "{name}: {doc}");
        }
    }
}
