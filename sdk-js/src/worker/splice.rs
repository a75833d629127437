use std::collections::HashMap;

use dask_core::msgpack::{parse_ref, Reader, TASK_REF_EXT};
use dask_core::WireError;

/// Copies the msgpack value `bytes`, replacing every task reference by the
/// encoded value `deps` gives for its key. The bytes of everything else are
/// kept as they are.
pub fn splice_refs(bytes: &[u8], deps: &HashMap<&str, &[u8]>) -> Result<Vec<u8>, String> {
    if deps.is_empty() {
        return Ok(bytes.to_vec());
    }
    let extra: usize = deps.values().map(|v| v.len()).sum();
    let mut out = Vec::with_capacity(bytes.len() + extra);
    let mut r = Reader::new(bytes);
    // Objects still to copy in each open container (an explicit stack, so
    // depth costs no native stack).
    let mut pending: Vec<usize> = Vec::new();
    let mut todo = 1usize;
    let err = |e: WireError| e.to_string();
    loop {
        while todo == 0 {
            match pending.pop() {
                Some(t) => todo = t,
                None => return Ok(out),
            }
        }
        todo -= 1;
        let start = r.position();
        let children = match r.peek().map_err(err)? {
            0x80..=0x8f | 0xde | 0xdf => r.read_map_len().map_err(err)? * 2,
            0x90..=0x9f | 0xdc | 0xdd => r.read_array_len().map_err(err)?,
            0xc7..=0xc9 | 0xd4..=0xd8 => {
                let (ty, data) = r.read_ext().map_err(err)?;
                if ty == TASK_REF_EXT {
                    let key = parse_ref(data).map_err(err)?;
                    let value = deps
                        .get(key)
                        .ok_or_else(|| format!("no value for task reference {key:?}"))?;
                    out.extend_from_slice(value);
                    continue;
                }
                0
            }
            _ => {
                r.skip_value(&mut |_| {}).map_err(err)?;
                0
            }
        };
        out.extend_from_slice(&bytes[start..r.position()]);
        if children > 0 {
            pending.push(todo);
            todo = children;
        }
    }
}
