//! A job's arguments as a function receives them: decoded msgpack trees in
//! which every task reference is replaced by its dependency's value. Two
//! forms: owned trees ([`owned_arguments`]; each dependency is decoded once
//! per reference, straight into the tree, never decoded and then cloned),
//! and trees borrowing from the encoded arguments and values
//! ([`borrowed_arguments`]; a large binary or string stays where it was
//! received, a slice of its frame, and is not copied at all).

use std::sync::Arc;

use rmpv::{Value, ValueRef};

use crate::error::WireError;
use crate::msgpack::{parse_ref, TASK_REF_EXT};
use crate::{Key, RawValue};

use super::{Job, TaskError};

/// Keyword arguments as owned (name, value) pairs, in wire order.
pub type Kwargs = Vec<(String, Value)>;

/// Keyword arguments as (name, value) pairs borrowing from the job.
pub type BorrowedKwargs<'a> = Vec<(&'a str, ValueRef<'a>)>;

/// Args and kwargs as owned trees, references replaced.
pub fn owned_arguments(job: &Job) -> Result<(Vec<Value>, Kwargs), TaskError> {
    let (args, kwargs) = arguments(job, RawValue::to_value)?;
    let Value::Array(args) = args else {
        return Err(TaskError::type_error("args must be an array"));
    };
    let kwargs = match kwargs {
        None => Vec::new(),
        Some(value) => keyword_arguments(value)?,
    };
    Ok((args, kwargs))
}

/// Args and kwargs as trees borrowing from `job`, references replaced.
pub fn borrowed_arguments(job: &Job) -> Result<(Vec<ValueRef<'_>>, BorrowedKwargs<'_>), TaskError> {
    let (args, kwargs) = arguments(job, RawValue::to_value_ref)?;
    let ValueRef::Array(args) = args else {
        return Err(TaskError::type_error("args must be an array"));
    };
    let kwargs = match kwargs {
        None | Some(ValueRef::Nil) => Vec::new(),
        Some(ValueRef::Map(entries)) => entries
            .into_iter()
            .map(|(k, v)| match k {
                ValueRef::String(s) if s.as_str().is_some() => Ok((s.into_str().unwrap_or(""), v)),
                other => Err(not_a_name(&other)),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(TaskError::type_error("kwargs must be a map")),
    };
    Ok((args, kwargs))
}

/// Decoded kwargs (nil or a map with string keys, references replaced) as
/// the owned (name, value) pairs a function receives.
pub fn keyword_arguments(value: Value) -> Result<Kwargs, TaskError> {
    match value {
        Value::Nil => Ok(Vec::new()),
        Value::Map(entries) => entries
            .into_iter()
            .map(|(k, v)| match k {
                Value::String(s) if s.is_str() => Ok((s.into_str().unwrap_or_default(), v)),
                other => Err(not_a_name(&other)),
            })
            .collect(),
        _ => Err(TaskError::type_error("kwargs must be a map")),
    }
}

fn not_a_name(key: &dyn std::fmt::Display) -> TaskError {
    TaskError::type_error(format!("kwargs keys must be strings, got {key}"))
}

/// Decodes args and kwargs with `decode` and replaces their task
/// references, each by its dependency decoded with `decode`.
fn arguments<'a, T: Tree>(
    job: &'a Job,
    decode: fn(&'a RawValue) -> Result<T, WireError>,
) -> Result<(T, Option<T>), TaskError> {
    let deps = Deps::new(&job.deps);
    let mut lookup = |key: &str| match deps.get(key) {
        Some(raw) => decode(raw).map_err(|e| {
            TaskError::value_error(format!("dependency {key} cannot be decoded: {e}"))
        }),
        None => Err(TaskError::new(
            "MissingDependency",
            format!("no value for task reference {key:?}"),
        )),
    };
    let mut read = |raw: &'a RawValue, what: &str| -> Result<T, TaskError> {
        let mut tree = decode(raw)
            .map_err(|e| TaskError::type_error(format!("{what} cannot be decoded: {e}")))?;
        if !job.deps.is_empty() {
            substitute_refs(&mut tree, &mut lookup)?;
        }
        Ok(tree)
    };
    let args = read(&job.args, "args")?;
    let kwargs = match &job.kwargs {
        Some(raw) => Some(read(raw, "kwargs")?),
        None => None,
    };
    Ok((args, kwargs))
}

/// Past this many dependencies a job's are found through a map; up to it
/// by a scan (nearly every job: no map built, nothing hashed).
const DEPS_SCANNED_MAX: usize = 16;

/// A job's dependency values by key.
struct Deps<'a> {
    deps: &'a [(Key, Arc<RawValue>)],
    map: Option<foldhash::HashMap<&'a str, &'a RawValue>>,
}

impl<'a> Deps<'a> {
    fn new(deps: &'a [(Key, Arc<RawValue>)]) -> Deps<'a> {
        let map = (deps.len() > DEPS_SCANNED_MAX)
            .then(|| deps.iter().map(|(k, v)| (k.as_str(), &**v)).collect());
        Deps { deps, map }
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        match &self.map {
            Some(map) => map.get(key).copied(),
            None => self
                .deps
                .iter()
                .find(|(k, _)| k.as_str() == key)
                .map(|(_, v)| &**v),
        }
    }
}

/// Replaces every task reference inside `tree`, in place, with the tree
/// `lookup` gives for its key. Fails with `lookup`'s first error.
pub fn substitute_refs<T: Tree>(
    tree: &mut T,
    lookup: &mut dyn FnMut(&str) -> Result<T, TaskError>,
) -> Result<(), TaskError> {
    if let Some(data) = tree.task_ref() {
        let replacement = match parse_ref(data) {
            Ok(key) => lookup(key)?,
            Err(e) => return Err(TaskError::value_error(format!("task reference: {e}"))),
        };
        *tree = replacement;
        return Ok(());
    }
    tree.for_each_child(&mut |child| substitute_refs(child, lookup))
}

/// A decoded msgpack tree ([`Value`] or [`ValueRef`]), as
/// [`substitute_refs`] walks it.
pub trait Tree: Sized {
    /// The key's bytes, when this is a task reference.
    fn task_ref(&self) -> Option<&[u8]>;
    /// Calls `f` with each element of an array and each key and value of a
    /// map, stopping at the first error.
    fn for_each_child(
        &mut self,
        f: &mut dyn FnMut(&mut Self) -> Result<(), TaskError>,
    ) -> Result<(), TaskError>;
}

/// The same walk over both tree types (their variants have the same names).
macro_rules! impl_tree {
    ($tree:ident $(<$l:lifetime>)?) => {
        impl Tree for $tree$(<$l>)? {
            fn task_ref(&self) -> Option<&[u8]> {
                match self {
                    $tree::Ext(ty, data) if *ty == TASK_REF_EXT => Some(data),
                    _ => None,
                }
            }

            fn for_each_child(
                &mut self,
                f: &mut dyn FnMut(&mut Self) -> Result<(), TaskError>,
            ) -> Result<(), TaskError> {
                match self {
                    $tree::Array(items) => items.iter_mut().try_for_each(f),
                    $tree::Map(entries) => entries.iter_mut().try_for_each(|(k, v)| {
                        f(k)?;
                        f(v)
                    }),
                    _ => Ok(()),
                }
            }
        }
    };
}

impl_tree!(Value);
impl_tree!(ValueRef<'_>);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::task_ref_value;

    fn job(args: Value, kwargs: Option<Value>, deps: Vec<(&str, Value)>) -> Job {
        Job {
            run_id: 1,
            priority: 0,
            seq: 0,
            function: "f".into(),
            args: RawValue::from_value(&args),
            kwargs: kwargs.map(|k| RawValue::from_value(&k)),
            deps: deps
                .into_iter()
                .map(|(k, v)| (Key::from(k), Arc::new(RawValue::from_value(&v))))
                .collect(),
        }
    }

    #[test]
    fn references_at_any_depth_are_replaced_in_both_forms() {
        let args = Value::Array(vec![
            task_ref_value("a"),
            Value::Map(vec![(
                Value::from("k"),
                Value::Array(vec![task_ref_value("b"), task_ref_value("a")]),
            )]),
        ]);
        let kwargs = Value::Map(vec![(Value::from("x"), task_ref_value("b"))]);
        let deps = vec![("a", Value::Binary(vec![7; 3])), ("b", Value::from("bee"))];
        let j = job(args, Some(kwargs), deps);
        let (args, kwargs) = owned_arguments(&j).unwrap();
        assert_eq!(
            Value::Array(args).to_string(),
            r#"[[7, 7, 7], {"k": ["bee", [7, 7, 7]]}]"#
        );
        assert_eq!(kwargs, vec![("x".to_string(), Value::from("bee"))]);
        let (args, kwargs) = borrowed_arguments(&j).unwrap();
        assert_eq!(
            ValueRef::Array(args).to_owned().to_string(),
            r#"[[7, 7, 7], {"k": ["bee", [7, 7, 7]]}]"#
        );
        assert_eq!(kwargs.len(), 1);
        assert_eq!(kwargs[0].0, "x");
        assert_eq!(kwargs[0].1.to_owned(), Value::from("bee"));
    }

    #[test]
    fn dependencies_are_found_below_and_past_the_scan() {
        for n in [
            1,
            DEPS_SCANNED_MAX,
            DEPS_SCANNED_MAX + 1,
            3 * DEPS_SCANNED_MAX,
        ] {
            let names: Vec<String> = (0..n).map(|i| format!("d{i}")).collect();
            // Referenced in reverse, each value its index times ten.
            let args = Value::Array(names.iter().rev().map(|k| task_ref_value(k)).collect());
            let deps = || {
                names
                    .iter()
                    .enumerate()
                    .map(|(i, k)| (k.as_str(), Value::from(i * 10)))
                    .collect()
            };
            let j = job(args, None, deps());
            let expected: Vec<Value> = (0..n).rev().map(|i| Value::from(i * 10)).collect();
            let (args, _) = owned_arguments(&j).unwrap();
            assert_eq!(args, expected, "{n} dependencies");
            let (args, _) = borrowed_arguments(&j).unwrap();
            let args: Vec<Value> = args.iter().map(|v| v.to_owned()).collect();
            assert_eq!(args, expected, "{n} dependencies, borrowed");
            // A key not among them is still missing.
            let j = job(Value::Array(vec![task_ref_value("absent")]), None, deps());
            assert_eq!(
                owned_arguments(&j).unwrap_err().error_type,
                "MissingDependency"
            );
        }
    }

    #[test]
    fn a_borrowed_binary_is_the_dependency_s_own_bytes() {
        let j = job(
            Value::Array(vec![task_ref_value("a")]),
            None,
            vec![("a", Value::Binary(vec![1; 100_000]))],
        );
        let (args, _) = borrowed_arguments(&j).unwrap();
        let ValueRef::Binary(b) = &args[0] else {
            panic!("{:?}", args[0]);
        };
        let stored = j.deps[0].1.as_bytes();
        assert_eq!(b.len(), 100_000);
        // Not a copy: the slice lies inside the stored encoding.
        assert!(stored.as_ptr_range().contains(&b.as_ptr()));
    }

    #[test]
    fn missing_dependencies_and_bad_shapes_are_task_errors() {
        let j = job(
            Value::Array(vec![task_ref_value("x")]),
            None,
            vec![("y", Value::Nil)],
        );
        assert_eq!(
            owned_arguments(&j).unwrap_err().error_type,
            "MissingDependency"
        );
        assert_eq!(
            borrowed_arguments(&j).unwrap_err().error_type,
            "MissingDependency"
        );
        let j = job(Value::from(1), None, vec![]);
        assert_eq!(owned_arguments(&j).unwrap_err().error_type, "TypeError");
        assert_eq!(borrowed_arguments(&j).unwrap_err().error_type, "TypeError");
        let bad_kwargs = Value::Map(vec![(Value::from(1), Value::from(2))]);
        let j = job(Value::Array(vec![]), Some(bad_kwargs), vec![]);
        assert_eq!(owned_arguments(&j).unwrap_err().error_type, "TypeError");
        assert_eq!(borrowed_arguments(&j).unwrap_err().error_type, "TypeError");
        let j = job(Value::Array(vec![]), Some(Value::from(3)), vec![]);
        assert_eq!(owned_arguments(&j).unwrap_err().error_type, "TypeError");
        assert_eq!(borrowed_arguments(&j).unwrap_err().error_type, "TypeError");
    }
}
