use dask_core::msgpack::VALUE_DEPTH_MAX;

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
    let text =
        r#"{"n": 3, "big": 18446744073709551615, "neg": -2, "x": 1.5, "list": [true, null, "s"]}"#;
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
