//! [`Reader`], the bounds-checked cursor every decoder reads through.

use super::*;

/// A cursor over msgpack bytes. Every read checks bounds and returns
/// [`WireError`] instead of panicking.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// `buf` as a shared buffer: large values read from it share it.
    pub(super) shared: Option<&'a Bytes>,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`. Values read from it are copied.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            shared: None,
        }
    }

    /// A reader at the start of `buf` whose large values
    /// ([`SHARED_VALUE_BYTES_MIN`]) share `buf` instead of being copied.
    pub fn over_shared(buf: &'a Bytes) -> Self {
        Reader {
            buf,
            pos: 0,
            shared: Some(buf),
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The marker byte of the next object, without consuming it.
    pub fn peek(&self) -> Result<u8, WireError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(WireError::truncated)
    }

    /// Whether the next object is nil.
    pub fn next_is_nil(&self) -> bool {
        self.buf.get(self.pos) == Some(&0xc0)
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.remaining() {
            return Err(WireError::truncated());
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn wrong(&self, expected: &'static str, marker: u8) -> WireError {
        // 0xc1 is no msgpack type at all: the bytes are malformed, whatever
        // was expected (as when the value is skipped).
        if marker == 0xc1 {
            return WireError::malformed("reserved msgpack byte 0xc1");
        }
        WireError::wrong_type(expected, marker_kind(marker))
    }

    /// Reads nil.
    pub fn read_nil(&mut self) -> Result<(), WireError> {
        match self.byte()? {
            0xc0 => Ok(()),
            m => Err(self.wrong("nil", m)),
        }
    }

    /// Reads a boolean.
    pub fn read_bool(&mut self) -> Result<bool, WireError> {
        match self.byte()? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            m => Err(self.wrong("boolean", m)),
        }
    }

    /// Reads any msgpack integer as i128, so both u64 and i64 fit.
    pub fn read_int(&mut self) -> Result<i128, WireError> {
        let m = self.byte()?;
        Ok(match m {
            0x00..=0x7f => m as i128,
            0xe0..=0xff => (m as i8) as i128,
            0xcc => u8::from_be_bytes(self.be()?) as i128,
            0xcd => u16::from_be_bytes(self.be()?) as i128,
            0xce => u32::from_be_bytes(self.be()?) as i128,
            0xcf => u64::from_be_bytes(self.be()?) as i128,
            0xd0 => i8::from_be_bytes(self.be()?) as i128,
            0xd1 => i16::from_be_bytes(self.be()?) as i128,
            0xd2 => i32::from_be_bytes(self.be()?) as i128,
            0xd3 => i64::from_be_bytes(self.be()?) as i128,
            _ => return Err(self.wrong("integer", m)),
        })
    }

    /// Reads an integer that must fit in `T`.
    pub fn read_int_as<T: TryFrom<i128>>(
        &mut self,
        expected: &'static str,
    ) -> Result<T, WireError> {
        let v = self.read_int()?;
        T::try_from(v).map_err(|_| WireError::wrong_type(expected, "integer out of range"))
    }

    /// Reads a float; integers are accepted and converted.
    pub fn read_f64(&mut self) -> Result<f64, WireError> {
        match self.peek()? {
            0xca => {
                self.pos += 1;
                Ok(f32::from_be_bytes(self.be()?) as f64)
            }
            0xcb => {
                self.pos += 1;
                Ok(f64::from_be_bytes(self.be()?))
            }
            m if marker_kind(m) == "integer" => Ok(self.read_int()? as f64),
            m => Err(self.wrong("number", m)),
        }
    }

    /// Reads the length of a string and its bytes.
    pub fn read_str(&mut self) -> Result<&'a str, WireError> {
        check_utf8(self.read_str_bytes()?)
    }

    /// Reads a string's bytes without checking that they are UTF-8: for
    /// names compared with known (ASCII) ones, which need no check when
    /// they match. Anything kept or shown as text goes through
    /// [`Reader::read_str`] or [`check_utf8`].
    #[inline]
    pub fn read_str_bytes(&mut self) -> Result<&'a [u8], WireError> {
        // Field names, ops and most keys are fixstrs: read in line.
        if let Some(&m @ 0xa0..=0xbf) = self.buf.get(self.pos) {
            let start = self.pos + 1;
            if let Some(bytes) = self.buf.get(start..start + (m & 0x1f) as usize) {
                self.pos = start + bytes.len();
                return Ok(bytes);
            }
        }
        self.read_str_bytes_any()
    }

    /// [`Reader::read_str_bytes`] of any string header, and its errors.
    #[inline(never)]
    fn read_str_bytes_any(&mut self) -> Result<&'a [u8], WireError> {
        let m = self.byte()?;
        let len = match m {
            0xa0..=0xbf => (m & 0x1f) as usize,
            0xd9 => u8::from_be_bytes(self.be()?) as usize,
            0xda => u16::from_be_bytes(self.be()?) as usize,
            0xdb => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("string", m)),
        };
        self.take(len)
    }

    /// Reads binary data.
    pub fn read_bin(&mut self) -> Result<&'a [u8], WireError> {
        let m = self.byte()?;
        let len = match m {
            0xc4 => u8::from_be_bytes(self.be()?) as usize,
            0xc5 => u16::from_be_bytes(self.be()?) as usize,
            0xc6 => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("binary", m)),
        };
        self.take(len)
    }

    /// Reads binary data as [`Bytes`]: a slice of the shared buffer when
    /// there is one and the data is large ([`SHARED_VALUE_BYTES_MIN`]),
    /// else a copy.
    pub fn read_bin_shared(&mut self) -> Result<Bytes, WireError> {
        let bytes = self.read_bin()?;
        let end = self.pos;
        Ok(match self.shared {
            Some(frame) if bytes.len() >= SHARED_VALUE_BYTES_MIN => {
                frame.slice(end - bytes.len()..end)
            }
            _ => Bytes::copy_from_slice(bytes),
        })
    }

    /// The bytes from `start` to here: a slice of the shared buffer when
    /// there is one and they are large (as [`RawValue::read`]), else a copy.
    pub fn shared_since(&self, start: usize) -> Bytes {
        let bytes = self.buf.get(start..self.pos).unwrap_or_default();
        match self.shared {
            Some(frame)
                if bytes.len() >= SHARED_VALUE_BYTES_MIN
                    && bytes.len() >= frame.len() / SHARED_VALUE_FRAME_FRACTION =>
            {
                frame.slice(start..self.pos)
            }
            _ => Bytes::copy_from_slice(bytes),
        }
    }

    /// Reads an array header. The length is checked against the bytes left
    /// (each element takes at least one byte), so callers may reserve it.
    pub fn read_array_len(&mut self) -> Result<usize, WireError> {
        let m = self.byte()?;
        let len = match m {
            0x90..=0x9f => (m & 0x0f) as usize,
            0xdc => u16::from_be_bytes(self.be()?) as usize,
            0xdd => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("array", m)),
        };
        if len > self.remaining() {
            return Err(WireError::truncated());
        }
        Ok(len)
    }

    /// Reads a map header; the length is checked like an array's.
    pub fn read_map_len(&mut self) -> Result<usize, WireError> {
        let m = self.byte()?;
        let len = match m {
            0x80..=0x8f => (m & 0x0f) as usize,
            0xde => u16::from_be_bytes(self.be()?) as usize,
            0xdf => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("map", m)),
        };
        if len.saturating_mul(2) > self.remaining() {
            return Err(WireError::truncated());
        }
        Ok(len)
    }

    /// Reads an ext header and payload.
    pub fn read_ext(&mut self) -> Result<(i8, &'a [u8]), WireError> {
        let m = self.byte()?;
        let len = match m {
            0xd4 => 1,
            0xd5 => 2,
            0xd6 => 4,
            0xd7 => 8,
            0xd8 => 16,
            0xc7 => u8::from_be_bytes(self.be()?) as usize,
            0xc8 => u16::from_be_bytes(self.be()?) as usize,
            0xc9 => u32::from_be_bytes(self.be()?) as usize,
            _ => return Err(self.wrong("ext", m)),
        };
        let ty = i8::from_be_bytes(self.be()?);
        Ok((ty, self.take(len)?))
    }

    /// Skips one whole value, checking that it is well formed (UTF-8
    /// strings, depth at most [`VALUE_DEPTH_MAX`], task references hold
    /// valid keys), and returns its bytes. `on_ref` sees every task reference.
    pub fn skip_value(&mut self, on_ref: &mut dyn FnMut(&'a str)) -> Result<&'a [u8], WireError> {
        self.skip_nested(VALUE_DEPTH_MAX, on_ref)
    }

    /// Like [`Reader::skip_value`], with nesting up to `depth_max` levels.
    pub fn skip_nested(
        &mut self,
        depth_max: usize,
        on_ref: &mut dyn FnMut(&'a str),
    ) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        if let Some(end) = self.flat_end(depth_max) {
            self.pos = end;
            return Ok(&self.buf[start..end]);
        }
        // An explicit stack of "objects still to read" keeps deep input from
        // overflowing the native stack. Its first levels are in place: every
        // message skips its values, and a heap stack was a malloc and a free
        // for each one holding a container (most task arguments).
        let mut pending = SkipStack::default();
        let mut todo = 1usize;
        loop {
            while todo == 0 {
                match pending.pop() {
                    Some(t) => todo = t,
                    None => return Ok(&self.buf[start..self.pos]),
                }
            }
            todo -= 1;
            let m = self.peek()?;
            let is_container = matches!(m, 0x80..=0x9f | 0xdc..=0xdf);
            // Every open container is on `pending`, so its length is the
            // number of containers around this object. An empty container
            // counts as a level too: the limit is on nesting, not on data.
            if is_container && pending.len() >= depth_max {
                return Err(WireError::malformed(format!(
                    "nested deeper than {depth_max} levels"
                )));
            }
            let children = match m {
                0x80..=0x8f | 0xde | 0xdf => self.read_map_len()? * 2,
                0x90..=0x9f | 0xdc | 0xdd => self.read_array_len()?,
                0xa0..=0xbf | 0xd9..=0xdb => {
                    self.read_str()?;
                    0
                }
                0xc4..=0xc6 => {
                    self.read_bin()?;
                    0
                }
                0xc7..=0xc9 | 0xd4..=0xd8 => {
                    let (ty, data) = self.read_ext()?;
                    if ty == TASK_REF_EXT {
                        on_ref(parse_ref(data)?);
                    }
                    0
                }
                0xc0 | 0xc2 | 0xc3 => {
                    self.pos += 1;
                    0
                }
                0xca => {
                    self.take(5)?;
                    0
                }
                0xcb => {
                    self.take(9)?;
                    0
                }
                0xcc..=0xd3 | 0x00..=0x7f | 0xe0..=0xff => {
                    self.read_int()?;
                    0
                }
                _ => return Err(WireError::malformed("reserved msgpack byte 0xc1")),
            };
            if children > 0 {
                pending.push(todo);
                todo = children;
            }
        }
    }
}

impl Reader<'_> {
    /// Where the next object ends when it is a fixed-size scalar, or a
    /// fixarray of them (`depth_max` allowing): most task arguments and
    /// small results, whose bounds are all there is to check, skipped
    /// without [`Reader::skip_nested`]'s general walk. `None` for anything
    /// else, or when bytes are missing (the walk then says which error).
    fn flat_end(&self, depth_max: usize) -> Option<usize> {
        let m = *self.buf.get(self.pos)?;
        let end = match m {
            0x90..=0x9f if depth_max > 0 => {
                let mut at = self.pos + 1;
                for _ in 0..m & 0x0f {
                    at += scalar_len(*self.buf.get(at)?)?;
                }
                at
            }
            _ => self.pos + scalar_len(m)?,
        };
        (end <= self.buf.len()).then_some(end)
    }
}

/// Bytes of a fixed-size scalar whose marker is `m` (nil, booleans,
/// integers, floats); `None` for any other object.
fn scalar_len(m: u8) -> Option<usize> {
    Some(match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 1,
        0xcc | 0xd0 => 2,
        0xcd | 0xd1 => 3,
        0xce | 0xd2 | 0xca => 5,
        0xcf | 0xd3 | 0xcb => 9,
        _ => return None,
    })
}

/// The stack of [`Reader::skip_nested`]: its first levels in place, the
/// rest on the heap.
#[derive(Default)]
struct SkipStack {
    inline: [usize; SkipStack::INLINE],
    len: usize,
    deeper: Vec<usize>,
}

impl SkipStack {
    const INLINE: usize = 8;

    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, todo: usize) {
        match self.inline.get_mut(self.len) {
            Some(at) => *at = todo,
            None => self.deeper.push(todo),
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<usize> {
        self.len = self.len.checked_sub(1)?;
        match self.inline.get(self.len) {
            Some(&todo) => Some(todo),
            None => self.deeper.pop(),
        }
    }
}
