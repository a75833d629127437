use super::*;

fn encode(v: &rmpv::Value) -> Vec<u8> {
    RawValue::from_value(v).into_bytes()
}

#[test]
fn a_tree_given_away_encodes_as_one_borrowed() {
    let patterned = |n: usize| (0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>();
    for value in [
        rmpv::Value::Binary(patterned(SHARED_VALUE_BYTES_MIN)),
        rmpv::Value::Binary(patterned(3 << 20)),
        rmpv::Value::Binary(patterned(SHARED_VALUE_BYTES_MIN - 1)),
        rmpv::Value::Binary(Vec::new()),
        rmpv::Value::from("text"),
        rmpv::Value::Array(vec![rmpv::Value::Binary(patterned(1 << 17))]),
    ] {
        let given = RawValue::from_owned_value(value.clone());
        assert!(given.as_bytes() == encode(&value).as_slice());
        assert_eq!(given.to_value().unwrap(), value);
    }
}

#[test]
fn integers_use_the_smallest_form() {
    let cases: &[(i64, &[u8])] = &[
        (0, &[0x00]),
        (127, &[0x7f]),
        (128, &[0xcc, 0x80]),
        (-1, &[0xff]),
        (-33, &[0xd0, 0xdf]),
        (65536, &[0xce, 0, 1, 0, 0]),
    ];
    for (v, bytes) in cases {
        let mut w = Vec::new();
        write::int(&mut w, *v);
        assert_eq!(&w, bytes, "{v}");
        assert_eq!(Reader::new(&w).read_int().unwrap(), *v as i128);
    }
}

#[test]
fn refs_are_found_at_any_depth() {
    use rmpv::Value;
    let v = Value::Array(vec![
        task_ref_value("a"),
        Value::Map(vec![(
            Value::from("k"),
            Value::Array(vec![task_ref_value("b")]),
        )]),
    ]);
    let raw = RawValue::from_bytes(encode(&v)).unwrap();
    assert_eq!(raw.refs(), vec!["a", "b"]);
}

#[test]
fn refs_and_siblings_are_read_past_the_stack_kept_in_place() {
    // 20 levels, more than the skip stack holds in place: a reference
    // before and after each inner array, so each level is resumed after
    // its inner one ends, on both sides of the boundary.
    use rmpv::Value;
    let depth = 20;
    let mut v = Value::Array(vec![]);
    for d in (0..depth).rev() {
        v = Value::Array(vec![
            task_ref_value(&format!("in-{d}")),
            v,
            task_ref_value(&format!("out-{d}")),
        ]);
    }
    let bytes = encode(&v);
    let raw = RawValue::from_bytes(bytes.clone()).unwrap();
    let mut want: Vec<String> = (0..depth).map(|d| format!("in-{d}")).collect();
    want.extend((0..depth).rev().map(|d| format!("out-{d}")));
    assert_eq!(raw.refs(), want);
    let mut r = Reader::new(&bytes);
    assert_eq!(r.skip_value(&mut |_| {}).unwrap().len(), bytes.len());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let mut bytes = vec![0x91; 100_000];
    bytes.push(0xc0);
    assert!(RawValue::from_bytes(bytes).is_err());
    let mut ok = vec![0x91; VALUE_DEPTH_MAX];
    ok.push(0xc0);
    assert!(RawValue::from_bytes(ok).is_ok());
    let mut ok = vec![0x91; VALUE_DEPTH_MAX - 1];
    ok.push(0x90);
    assert!(RawValue::from_bytes(ok).is_ok());
}

#[test]
fn an_empty_container_past_the_limit_is_too_deep() {
    // 100 arrays around an empty one: 101 levels of nesting.
    let mut bytes = vec![0x91; VALUE_DEPTH_MAX];
    bytes.push(0x90);
    assert!(RawValue::from_bytes(bytes).is_err());
    let mut bytes = vec![0x91; VALUE_DEPTH_MAX];
    bytes.push(0x80);
    assert!(RawValue::from_bytes(bytes).is_err());
}

#[test]
fn trees_are_written_canonically() {
    use rmpv::Value;
    let v = Value::Array(vec![
        Value::F32(1.5),
        Value::from(300u64),
        Value::from(-33i64),
    ]);
    let bytes = RawValue::from_value(&v).into_bytes();
    assert_eq!(
        bytes,
        [0x93, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xcd, 0x01, 0x2c, 0xd0, 0xdf]
    );
}

#[test]
fn huge_declared_lengths_do_not_allocate() {
    // array32 claiming 4 billion elements, with nothing after it.
    assert!(RawValue::from_bytes(vec![0xdd, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(RawValue::from_bytes(vec![0xdb, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(RawValue::from_bytes(vec![0xc1]).is_err());
}

/// Scalars and fixarrays of them (skipped without the general walk) end
/// where they end, every cut of them is refused, and whatever else is in
/// a fixarray is still checked.
#[test]
fn flat_values_are_skipped_exactly_and_their_cuts_refused() {
    use rmpv::Value;
    let scalars: Vec<Value> = vec![
        Value::Nil,
        Value::from(true),
        Value::from(0),
        Value::from(127),
        Value::from(128),
        Value::from(65_536),
        Value::from(1u64 << 40),
        Value::from(-1),
        Value::from(-33),
        Value::from(-40_000),
        Value::from(-(1i64 << 40)),
        Value::F64(1.5),
    ];
    let mut values = scalars.clone();
    values.push(Value::Array(vec![]));
    values.push(Value::Array(scalars.clone()));
    values.extend(scalars.iter().map(|s| Value::Array(vec![s.clone()])));
    for v in &values {
        let mut bytes = encode(v);
        let len = bytes.len();
        bytes.push(0x01);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.skip_value(&mut |_| {}).unwrap().len(), len, "{v}");
        assert_eq!(r.remaining(), 1, "{v}");
        for cut in 0..len {
            let e = Reader::new(&bytes[..cut]).skip_value(&mut |_| {});
            assert!(e.is_err(), "{v} cut at {cut}");
        }
    }
    let skip = |b: &[u8]| Reader::new(b).skip_value(&mut |_| {}).map(<[u8]>::len);
    assert!(skip(&[0x91, 0xc1]).unwrap_err().message.contains("0xc1"));
    assert_eq!(skip(&[0x92, 0xa1, b'a', 0x01]).unwrap(), 4);
    assert!(skip(&[0x91, 0xa1, 0xff]).is_err());
    assert!(Reader::new(&[0x91, 0x01])
        .skip_nested(0, &mut |_| {})
        .is_err());
    assert_eq!(
        Reader::new(&[0x01]).skip_nested(0, &mut |_| {}).unwrap(),
        [0x01]
    );
}
