//! Functions a worker can run: the [`FunctionRegistry`] maps a task's
//! `function` name to Rust code, and [`TaskError`] is how that code fails.
//!
//! A function receives its positional arguments and its keyword arguments
//! (in the order they came on the wire) as decoded msgpack trees, with every
//! task reference already replaced by the referenced task's result: owned
//! trees ([`TaskFn`]), or trees borrowing from the received bytes
//! ([`BorrowingTaskFn`], for a function that only reads its arguments: a
//! large value is then never copied on its way in).

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
    /// Looked up for every task run: foldhash, not SipHash.
    functions: foldhash::HashMap<String, Function>,
    /// Names of functions marked quick ([`FunctionRegistry::mark_quick`]).
    quick: foldhash::HashSet<String>,
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
        for name in crate::builtins::QUICK_BUILTINS {
            registry.mark_quick(name);
        }
        registry
    }

    /// Adds `f` under `name`, replacing any function of that name.
    pub fn register<F>(&mut self, name: impl Into<String>, f: F)
    where
        F: Fn(&[rmpv::Value], &[(String, rmpv::Value)]) -> TaskResult + Send + Sync + 'static,
    {
        let name = name.into();
        self.quick.remove(&name);
        self.functions.insert(name, Function::Owned(Arc::new(f)));
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
        let name = name.into();
        self.quick.remove(&name);
        self.functions
            .insert(name, Function::Borrowing(Arc::new(f)));
    }

    /// Marks the function named `name` as quick: it takes a few
    /// microseconds at most on small inputs, never blocks, and touches
    /// nothing shared, so the worker runs it on its event loop's thread
    /// when its inputs are small ([`crate::executor::QUICK_INPUT_BYTES_MAX`])
    /// rather than hand it to an executor thread and back (two thread
    /// wakeups, most of such a task's cost). It may then run beside the
    /// `nthreads` tasks on the executor. Registering the name again
    /// clears the mark. False when no function has that name.
    pub fn mark_quick(&mut self, name: &str) -> bool {
        if !self.functions.contains_key(name) {
            return false;
        }
        self.quick.insert(name.to_owned());
        true
    }

    /// Whether the function named `name` is marked quick.
    pub fn is_quick(&self, name: &str) -> bool {
        self.quick.contains(name)
    }

    /// Withdraws the function named `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        self.quick.remove(name);
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
    fn a_function_is_quick_while_marked_and_not_registered_again() {
        let mut r = FunctionRegistry::builtins();
        assert!(r.is_quick("inc"));
        assert!(!r.is_quick("sleep"));
        assert!(!r.mark_quick("nope"), "no such function");
        // A user's own `inc` may be slow: registering clears the mark.
        r.register("inc", |_, _| Ok(Value::Nil));
        assert!(!r.is_quick("inc"));
        assert!(r.mark_quick("inc"));
        r.register_borrowing("inc", |_, _| Ok(Value::Nil));
        assert!(!r.is_quick("inc"));
        assert!(r.mark_quick("inc"));
        assert!(r.remove("inc"));
        assert!(!r.is_quick("inc"));
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
