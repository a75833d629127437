//! Running one task on the calling thread: its arguments decoded, task
//! references replaced by the dependencies' results (moved when this task
//! is their last consumer, copied otherwise), the function called inside a
//! panic boundary (again after an error, as often as its `retries` say),
//! the result checked and normalised as a worker's encoding would.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use dask_core::msgpack::{parse_ref, TASK_REF_EXT, VALUE_DEPTH_MAX};
use dask_core::worker::arguments::{keyword_arguments, Kwargs};
use dask_core::RawValue;
use dask_worker::executor::panic_error;
use dask_worker::{Function, FunctionRegistry, TaskError};
use rmpv::{Value, ValueRef};

use crate::plan::{Plan, TaskId};

/// The functions of a plan, looked up once: by [`crate::PlannedTask::function`].
pub(crate) struct Functions(Vec<Option<Function>>);

impl Functions {
    pub(crate) fn resolve(plan: &Plan, registry: &FunctionRegistry) -> Functions {
        Functions(
            plan.functions()
                .iter()
                .map(|name| registry.get(name).cloned())
                .collect(),
        )
    }
}

/// Runs task `t` with `inputs`, its dependencies' results in the order of
/// [`Plan::deps`] (taken from the slice). A result held only by `inputs`
/// is moved into the arguments rather than copied.
pub(crate) fn run(
    plan: &Plan,
    functions: &Functions,
    t: TaskId,
    inputs: &mut [Option<Arc<Value>>],
) -> Result<Value, TaskError> {
    let task = plan.task(t);
    let Some(function) = &functions.0[task.function as usize] else {
        return Err(TaskError::unknown_function(
            &plan.functions()[task.function as usize],
        ));
    };
    let (args, kwargs) = arguments(plan, t, inputs)?;
    let mut attempts_left = task.retries;
    loop {
        let outcome = catch_unwind(AssertUnwindSafe(|| call(function, &args, &kwargs)));
        let result = match outcome {
            Ok(result) => result.and_then(normalised),
            Err(panic) => Err(panic_error(panic.as_ref())),
        };
        match result {
            Err(_) if attempts_left > 0 => attempts_left -= 1,
            result => return result,
        }
    }
}

/// Calls `function` with the arguments, borrowed when it takes them so
/// (a borrowed tree of a binary is the binary itself, not a copy).
fn call(function: &Function, args: &[Value], kwargs: &Kwargs) -> Result<Value, TaskError> {
    match function {
        Function::Owned(f) => f(args, kwargs),
        Function::Borrowing(f) => {
            let args: Vec<ValueRef<'_>> = args.iter().map(Value::as_ref).collect();
            let kwargs: Vec<(&str, ValueRef<'_>)> = kwargs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_ref()))
                .collect();
            f(&args, &kwargs)
        }
    }
}

/// Decodes args and kwargs and puts the inputs where the references are.
fn arguments(
    plan: &Plan,
    t: TaskId,
    inputs: &mut [Option<Arc<Value>>],
) -> Result<(Vec<Value>, Kwargs), TaskError> {
    let task = plan.task(t);
    let mut supply = Supply::new(plan, t, inputs);
    let decode = |raw: &RawValue, what: &str| {
        raw.to_value()
            .map_err(|e| TaskError::type_error(format!("{what} cannot be decoded: {e}")))
    };
    let mut args = decode(&task.args, "args")?;
    if !supply.is_empty() {
        substitute(&mut args, &mut supply)?;
    }
    let Value::Array(args) = args else {
        return Err(TaskError::type_error("args must be an array"));
    };
    let kwargs = match &task.kwargs {
        None => Vec::new(),
        Some(raw) => {
            let mut value = decode(raw, "kwargs")?;
            if !supply.is_empty() {
                substitute(&mut value, &mut supply)?;
            }
            keyword_arguments(value)?
        }
    };
    Ok((args, kwargs))
}

/// Hands out the inputs for the references, in the order they come.
struct Supply<'p, 'i> {
    plan: &'p Plan,
    deps: &'p [TaskId],
    inputs: &'i mut [Option<Arc<Value>>],
    /// Each dependency is referred to once: the k-th reference is the
    /// k-th dependency (the plan lists them in order of appearance), and
    /// its input can be moved.
    once: bool,
    next: usize,
    /// Positions by key, for a task of many dependencies referred to
    /// more than once.
    by_key: Option<HashMap<&'p str, usize>>,
}

/// Dependencies up to this many are found by scanning.
const SCANNED_MAX: usize = 16;

impl<'p, 'i> Supply<'p, 'i> {
    fn new(plan: &'p Plan, t: TaskId, inputs: &'i mut [Option<Arc<Value>>]) -> Supply<'p, 'i> {
        let deps = plan.deps(t);
        let once = !plan.task(t).repeats_refs;
        let by_key = (!once && deps.len() > SCANNED_MAX).then(|| {
            deps.iter()
                .enumerate()
                .map(|(i, &d)| (plan.task(d).key.as_str(), i))
                .collect()
        });
        Supply {
            plan,
            deps,
            inputs,
            once,
            next: 0,
            by_key,
        }
    }

    fn is_empty(&self) -> bool {
        self.deps.is_empty()
    }

    fn position(&self, key: &str) -> Option<usize> {
        let named = |i: usize| self.plan.task(self.deps[i]).key.as_str() == key;
        if self.once && self.next < self.deps.len() && named(self.next) {
            return Some(self.next);
        }
        match &self.by_key {
            Some(map) => map.get(key).copied(),
            None => (0..self.deps.len()).find(|&i| named(i)),
        }
    }

    /// The input for a reference to `key`.
    fn take(&mut self, key: &str) -> Result<Value, TaskError> {
        let missing = || TaskError::new("MissingDependency", format!("no value for {key:?}"));
        let i = self.position(key).ok_or_else(missing)?;
        if self.once {
            self.next = i + 1;
            let input = self.inputs[i].take().ok_or_else(missing)?;
            Ok(Arc::try_unwrap(input).unwrap_or_else(|shared| (*shared).clone()))
        } else {
            let input = self.inputs[i].as_ref().ok_or_else(missing)?;
            Ok((**input).clone())
        }
    }
}

/// Replaces every task reference in `value` (map keys too) by its input.
fn substitute(value: &mut Value, supply: &mut Supply<'_, '_>) -> Result<(), TaskError> {
    match value {
        Value::Ext(ty, data) if *ty == TASK_REF_EXT => {
            let key =
                parse_ref(data).map_err(|e| TaskError::new("MissingDependency", e.message))?;
            *value = supply.take(key)?;
        }
        Value::Array(items) => {
            for item in items {
                substitute(item, supply)?;
            }
        }
        Value::Map(entries) => {
            for (k, v) in entries {
                substitute(k, supply)?;
                substitute(v, supply)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// The result as a worker's encoding would deliver it: floats as 64-bit;
/// refused (as a worker refuses it) when the encoding could not carry it
/// (nested deeper than dask/1 allows, strings that are not UTF-8, task
/// references that are not keys).
fn normalised(mut value: Value) -> Result<Value, TaskError> {
    if carried(&mut value, 0) {
        return Ok(value);
    }
    // The rare refusal: the worker's own words for it.
    let message = match RawValue::from_bytes(RawValue::from_value(&value).into_bytes()) {
        Err(e) => e.message,
        Ok(_) => format!("nested deeper than {VALUE_DEPTH_MAX} levels"),
    };
    Err(TaskError::value_error(format!(
        "result is not a valid dask/1 value: {message}"
    )))
}

/// Turns float 32s into float 64s; false when the encoding could not carry
/// the value. `depth` counts the containers around it.
fn carried(value: &mut Value, depth: usize) -> bool {
    match value {
        Value::F32(f) => {
            *value = Value::F64(*f as f64);
            true
        }
        Value::String(s) => s.is_str(),
        Value::Ext(ty, data) if *ty == TASK_REF_EXT => parse_ref(data).is_ok(),
        Value::Array(items) => {
            depth < VALUE_DEPTH_MAX && items.iter_mut().all(|v| carried(v, depth + 1))
        }
        Value::Map(entries) => {
            depth < VALUE_DEPTH_MAX
                && entries
                    .iter_mut()
                    .all(|(k, v)| carried(k, depth + 1) && carried(v, depth + 1))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deep(levels: usize) -> Value {
        let mut v = Value::Nil;
        for _ in 0..levels {
            v = Value::Array(vec![v]);
        }
        v
    }

    #[test]
    fn results_are_normalised_or_refused_as_a_worker_would() {
        assert_eq!(
            normalised(Value::Array(vec![Value::F32(1.5)])).unwrap(),
            Value::Array(vec![Value::F64(1.5)])
        );
        assert!(normalised(deep(VALUE_DEPTH_MAX)).is_ok());
        let e = normalised(deep(VALUE_DEPTH_MAX + 1)).unwrap_err();
        assert_eq!(e.error_type, "ValueError");
        assert!(e
            .message
            .starts_with("result is not a valid dask/1 value: "));
        // A msgpack string of two bytes that are not UTF-8.
        let bad_utf8 = rmpv::decode::read_value(&mut &[0xa2, 0xff, 0xfe][..]).unwrap();
        assert_eq!(normalised(bad_utf8).unwrap_err().error_type, "ValueError");
        let bad_ref = Value::Ext(TASK_REF_EXT, Vec::new());
        assert_eq!(normalised(bad_ref).unwrap_err().error_type, "ValueError");
    }
}
