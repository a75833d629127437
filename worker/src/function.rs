//! Functions a worker can run: the [`FunctionRegistry`] maps a task's
//! `function` name to Rust code, and [`TaskError`] is how that code fails.
//!
//! A function receives its positional arguments and its keyword arguments
//! (in the order they came on the wire) as decoded msgpack trees, with every
//! task reference already replaced by the referenced task's result: owned
//! trees ([`TaskFn`]), or trees borrowing from the received bytes
//! ([`BorrowingTaskFn`], for a function that only reads its arguments: a
//! large value is then never copied on its way in).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Defined in core, beside the worker state machine that reports it.
pub use dask_core::worker::TaskError;

/// What a function returns: a msgpack tree, or an error reported as
/// `task-erred`.
pub type TaskResult = Result<rmpv::Value, TaskError>;

/// The signature every registered function has: positional arguments and
/// keyword arguments as ordered (name, value) pairs.
pub type TaskFn = dyn Fn(&[rmpv::Value], &[(String, rmpv::Value)]) -> TaskResult + Send + Sync;

/// A function that reads its arguments where they were received.
pub type BorrowingTaskFn =
    dyn Fn(&[rmpv::ValueRef<'_>], &[(&str, rmpv::ValueRef<'_>)]) -> TaskResult + Send + Sync;

/// A registered function, by how it takes its arguments.
#[derive(Clone)]
pub enum Function {
    /// As owned trees.
    Owned(Arc<TaskFn>),
    /// As trees borrowing from the task's encoded arguments and values.
    Borrowing(Arc<BorrowingTaskFn>),
}

/// Functions by name. Cloning is cheap: functions are shared.
#[derive(Clone, Default)]
pub struct FunctionRegistry {
    functions: HashMap<String, Function>,
}

impl FunctionRegistry {
    /// An empty registry.
    pub fn new() -> FunctionRegistry {
        FunctionRegistry::default()
    }

    /// The built-in library (see [`crate::builtins`]), conformance functions included.
    pub fn builtins() -> FunctionRegistry {
        let mut registry = FunctionRegistry::new();
        crate::builtins::register_all(&mut registry);
        registry
    }

    /// Adds `f` under `name`, replacing any function of that name.
    pub fn register<F>(&mut self, name: impl Into<String>, f: F)
    where
        F: Fn(&[rmpv::Value], &[(String, rmpv::Value)]) -> TaskResult + Send + Sync + 'static,
    {
        self.functions
            .insert(name.into(), Function::Owned(Arc::new(f)));
    }

    /// Adds `f`, which takes borrowed trees, under `name`, replacing any
    /// function of that name.
    pub fn register_borrowing<F>(&mut self, name: impl Into<String>, f: F)
    where
        F: Fn(&[rmpv::ValueRef<'_>], &[(&str, rmpv::ValueRef<'_>)]) -> TaskResult
            + Send
            + Sync
            + 'static,
    {
        self.functions
            .insert(name.into(), Function::Borrowing(Arc::new(f)));
    }

    /// Withdraws the function named `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        self.functions.remove(name).is_some()
    }

    /// The function named `name`.
    pub fn get(&self, name: &str) -> Option<&Function> {
        self.functions.get(name)
    }

    /// Whether a function named `name` is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.functions.contains_key(name)
    }

    /// All names, sorted (as announced in `register-worker`).
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.functions.keys().cloned().collect();
        names.sort();
        names
    }

    /// Number of functions.
    pub fn len(&self) -> usize {
        self.functions.len()
    }

    /// Whether no function is registered.
    pub fn is_empty(&self) -> bool {
        self.functions.is_empty()
    }
}

impl fmt::Debug for FunctionRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FunctionRegistry")
            .field("names", &self.names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmpv::Value;

    #[test]
    fn registered_functions_are_found_by_name_and_listed_sorted() {
        let mut r = FunctionRegistry::new();
        assert!(r.is_empty());
        r.register("b", |args, _| Ok(Value::from(args.len() as u64)));
        r.register("a", |_, kwargs| Ok(Value::from(kwargs.len() as u64)));
        assert_eq!(r.names(), vec!["a".to_string(), "b".to_string()]);
        let Some(Function::Owned(b)) = r.get("b") else {
            panic!("b is registered as taking owned trees");
        };
        assert_eq!(
            b(&[Value::Nil, Value::Nil], &[]).unwrap(),
            Value::from(2u64)
        );
        r.register_borrowing("c", |args, _| Ok(Value::from(args.len() as u64)));
        let Some(Function::Borrowing(c)) = r.get("c") else {
            panic!("c is registered as taking borrowed trees");
        };
        assert_eq!(c(&[rmpv::ValueRef::Nil], &[]).unwrap(), Value::from(1u64));
        assert!(r.get("d").is_none());
        assert!(r.contains("a"));
    }

    #[test]
    fn builtins_include_the_conformance_functions() {
        let r = FunctionRegistry::builtins();
        for name in [
            "conformance.echo",
            "conformance.add",
            "conformance.fail",
            "conformance.sleep",
            "conformance.bytes",
            "add",
            "exec",
        ] {
            assert!(r.contains(name), "{name}");
        }
    }

    #[test]
    fn errors_display_type_and_message() {
        let e = TaskError::type_error("bad").with_traceback("tb");
        assert_eq!(e.to_string(), "TypeError: bad");
        assert_eq!(e.traceback, "tb");
        assert_eq!(
            TaskError::unknown_function("f").error_type,
            "UnknownFunction"
        );
    }
}
