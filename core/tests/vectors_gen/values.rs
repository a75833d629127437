//! `values.json`: values kept verbatim, canonical and not.

use super::encoding::*;
use serde_json::{json, Value as Json};

pub(super) fn values() -> Json {
    let mut cases = Vec::new();
    let mut v = |d: &str, j: Json, alts: &[&str]| {
        cases.push(value_case(d, j, alts.iter().map(|h| unhex(h)).collect()));
    };
    v("nil", json!(null), &[]);
    v("true", json!(true), &[]);
    v("false", json!(false), &[]);
    v(
        "0: positive fixint",
        json!(0),
        &[
            "cc00",
            "cd0000",
            "ce00000000",
            "cf0000000000000000",
            "d000",
            "d10000",
            "d200000000",
            "d30000000000000000",
        ],
    );
    v(
        "127: the largest positive fixint",
        json!(127),
        &["cc7f", "d07f"],
    );
    v("128: uint 8", json!(128), &["cd0080", "d10080"]);
    v("255", json!(255), &["cd00ff"]);
    v("256: uint 16", json!(256), &["ce00000100"]);
    v("65535", json!(65535), &[]);
    v(
        "65536: uint 32",
        json!(65536),
        &["cf0000000000010000", "d200010000"],
    );
    v("4294967295", json!(4294967295u64), &[]);
    v(
        "4294967296: uint 64",
        json!(4294967296u64),
        &["d30000000100000000"],
    );
    v(
        "18446744073709551615: the largest integer",
        json!(u64::MAX),
        &[],
    );
    v(
        "-1: negative fixint",
        json!(-1),
        &["d0ff", "d1ffff", "d3ffffffffffffffff"],
    );
    v("-32: the smallest negative fixint", json!(-32), &["d0e0"]);
    v("-33: int 8", json!(-33), &["d1ffdf"]);
    v("-128", json!(-128), &[]);
    v("-129: int 16", json!(-129), &[]);
    v("-32768", json!(-32768), &[]);
    v("-32769: int 32", json!(-32769), &[]);
    v("-2147483648", json!(-2147483648i64), &[]);
    v("-2147483649: int 64", json!(-2147483649i64), &[]);
    v(
        "-9223372036854775808: the smallest integer",
        json!(i64::MIN),
        &[],
    );
    v("1.5: floats are float 64", json!(1.5), &["ca3fc00000"]);
    v(
        "1.0: a float with an integral value stays a float",
        json!(1.0),
        &["ca3f800000"],
    );
    v("-0.0", json!(-0.0), &[]);
    v("1e300", json!(1e300), &[]);
    v("5e-324: the smallest subnormal", json!(5e-324), &[]);
    v(
        "NaN",
        json!({"$float": "NaN"}),
        &["ca7fc00000", "cb7ff8000000000001"],
    );
    v("infinity", json!({"$float": "inf"}), &["ca7f800000"]);
    v("minus infinity", json!({"$float": "-inf"}), &["caff800000"]);
    v("empty string", json!(""), &["d900", "da0000", "db00000000"]);
    v(
        "string",
        json!("a"),
        &["d90161", "da000161", "db0000000161"],
    );
    v("31 bytes: the longest fixstr", json!("a".repeat(31)), &[]);
    v("32 bytes: str 8", json!("a".repeat(32)), &[]);
    v("256 bytes: str 16", json!("b".repeat(256)), &[]);
    v("multi-byte UTF-8", json!("é☃😀"), &[]);
    v(
        "empty binary",
        json!({"$bin": ""}),
        &["c50000", "c600000000"],
    );
    v("binary", json!({"$bin": "00ff10"}), &["c5000300ff10"]);
    v(
        "task reference, 1-byte key: fixext 1",
        json!({"$ref": "x"}),
        &["c7010178", "c800010178", "c90000000101 78"],
    );
    v(
        "task reference, 3-byte key: ext 8",
        json!({"$ref": "abc"}),
        &["c900000003 01 616263"],
    );
    v(
        "task reference, 16-byte key: fixext 16",
        json!({"$ref": "0123456789abcdef"}),
        &[],
    );
    v(
        "task reference, non-ASCII key",
        json!({"$ref": "données"}),
        &[],
    );
    v(
        "other ext type (5)",
        json!({"$ext": [5, "01"]}),
        &["c7010501"],
    );
    v(
        "pickled Python object (ext type 2, since 1.1): the tuple (1, 2)",
        json!({"$ext": [2, "00000000120000000000000080059507000000000000004b014b0286942e"]}),
        &[],
    );
    v(
        "negative ext type (-1, msgpack timestamp 32)",
        json!({"$ext": [-1, "00000000"]}),
        &[],
    );
    v("empty array", json!([]), &["dc0000", "dd00000000"]);
    v(
        "array",
        json!([1, [2, [3]]]),
        &["dc0002 01 dc0002 02 dd00000001 03"],
    );
    v(
        "16 elements: array 16",
        json!((0..16).collect::<Vec<u32>>()),
        &[],
    );
    v("empty map", json!({}), &["de0000", "df00000000"]);
    v(
        "map: entries keep their order (values are not sorted)",
        json!({"b": 1, "a": [true]}),
        &["de0002 a162 01 a161 91c3"],
    );
    v(
        "16 entries: map 16",
        Json::Object((0..16).map(|i| (format!("k{i:02}"), json!(i))).collect()),
        &[],
    );
    v(
        "map with integer keys",
        json!({"$map": [[1, "one"], [2, "two"]]}),
        &[],
    );
    v(
        "map whose only key is \"$ref\": not a task reference",
        json!({"$map": [["$ref", "x"]]}),
        &[],
    );
    v(
        "map with a task reference as a key",
        json!({"$map": [[{"$ref": "k"}, 1]]}),
        &[],
    );
    v(
        "map with an array key and a nil key",
        json!({"$map": [[[1, 2], null], [null, 0]]}),
        &[],
    );
    v(
        "task references nested in arrays and maps",
        json!([{"$ref": "a"}, {"k": [{"$ref": "b"}, {"deeper": {"$ref": "c"}}]}]),
        &[],
    );
    v(
        "nesting 100 levels deep (the limit)",
        nested(99, json!([1])),
        &[],
    );
    json!({
        "description": "The JSON form of msgpack values (PROTOCOL.md#json-form) and their encodings: canonical first, then other encodings a decoder must accept. Every value here is a valid task argument or result.",
        "cases": cases,
    })
}
