//! What the library's functions share: binding arguments as Python does,
//! numbers and their rules, text, `exec`'s arguments and errors, JSON
//! values, and the seeded generator of the random functions.

use std::time::Duration;

use dask_core::msgpack::VALUE_DEPTH_MAX;
use rmpv::Value;

use crate::function::{TaskError, TaskResult};

/// Binds positional and keyword arguments to parameter names, as Python
/// does: the first `required` are mandatory, the rest optional. The slots
/// are an array the size of `names` (no allocation per call).
pub(super) fn bind<'a, T, K: AsRef<str>, const N: usize>(
    function: &str,
    names: &[&str; N],
    required: usize,
    args: &'a [T],
    kwargs: &'a [(K, T)],
) -> Result<[Option<&'a T>; N], TaskError> {
    if args.len() > names.len() {
        return Err(TaskError::type_error(format!(
            "{function}() takes at most {} arguments ({} given)",
            names.len(),
            args.len()
        )));
    }
    let mut bound: [Option<&T>; N] = [None; N];
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
pub(super) fn req<'a>(bound: &[Option<&'a Value>], at: usize) -> &'a Value {
    const NIL: &Value = &Value::Nil;
    bound.get(at).copied().flatten().unwrap_or(NIL)
}

/// The name of a value's msgpack kind, for error messages.
pub(super) fn kind(v: &Value) -> &'static str {
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
pub(super) enum Num {
    Int(i128),
    Float(f64),
}

pub(super) fn number(function: &str, v: &Value) -> Result<Num, TaskError> {
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

pub(super) fn int_arg(function: &str, v: &Value) -> Result<i128, TaskError> {
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
pub(super) fn count_arg(function: &str, v: &Value, max: u64) -> Result<usize, TaskError> {
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
pub(super) fn seed_arg(function: &str, v: &Value) -> Result<u64, TaskError> {
    Ok(int_arg(function, v)? as u64)
}

pub(super) fn duration_arg(function: &str, seconds: f64) -> Result<Duration, TaskError> {
    if seconds.is_nan() || seconds < 0.0 {
        return Err(TaskError::value_error(format!(
            "{function}() needs a non-negative duration, got {seconds}"
        )));
    }
    Duration::try_from_secs_f64(seconds)
        .map_err(|e| TaskError::value_error(format!("{function}(): {e}")))
}

/// An integer result, which must fit in i64.
pub(super) fn int_value(v: i128) -> TaskResult {
    i64::try_from(v)
        .map(Value::from)
        .map_err(|_| TaskError::overflow_error(format!("integer {v} is outside the 64-bit range")))
}

#[derive(Clone, Copy)]
pub(super) enum Op {
    Add,
    Sub,
    Mul,
}

pub(super) fn arith(function: &str, a: &Value, b: &Value, op: Op) -> TaskResult {
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

pub(super) fn as_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

pub(super) fn array_arg<'a>(function: &str, v: &'a Value) -> Result<&'a [Value], TaskError> {
    match v {
        Value::Array(items) => Ok(items),
        other => Err(TaskError::type_error(format!(
            "{function}() needs an array, got {}",
            kind(other)
        ))),
    }
}

/// min or max: keeps the element that compares `wanted` against the best so far.
pub(super) fn extreme(function: &str, v: &Value, wanted: std::cmp::Ordering) -> TaskResult {
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

pub(super) fn text<'a>(function: &str, v: &'a Value) -> Result<&'a str, TaskError> {
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

pub(super) fn join_parts(parts: &[Value]) -> TaskResult {
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

pub(super) fn mixed(part: &Value, expected: &str) -> TaskError {
    TaskError::type_error(format!(
        "concat() parts must all be of one kind: expected {expected}, got {}",
        kind(part)
    ))
}

/// A Python-style index (negative counts from the end) into `len` elements.
pub(super) fn resolve_index(i: i128, len: usize) -> Result<usize, TaskError> {
    let at = if i < 0 { i + len as i128 } else { i };
    if at < 0 || at >= len as i128 {
        return Err(TaskError::index_error(format!(
            "index {i} out of range for length {len}"
        )));
    }
    Ok(at as usize)
}

/// A bound `exec` call.
pub(super) struct ExecCall<'a> {
    pub(super) program: &'a str,
    pub(super) args: Vec<&'a str>,
    /// Whether a non-zero exit is an error.
    pub(super) check: bool,
}

pub(super) fn exec_args<'a>(
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
pub(super) fn called_process_error(program: &str, output: &std::process::Output) -> TaskError {
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
pub(super) fn json_value(json: &serde_json::Value, depth: usize) -> TaskResult {
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
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub(super) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, span) for 1 <= span <= 2^64, without modulo bias:
    /// draws that fall in the incomplete last block are redrawn.
    pub(super) fn below(&mut self, span: u128) -> u64 {
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
