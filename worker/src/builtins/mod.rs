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

use dask_core::FRAME_BYTES_MAX;
use rmpv::{Value, ValueRef};

use crate::function::{FunctionRegistry, TaskError, TaskResult};

mod helpers;
pub use helpers::EXEC_TAIL_BYTES;
use helpers::*;

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

#[cfg(test)]
mod tests;
