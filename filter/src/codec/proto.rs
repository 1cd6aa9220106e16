//! Just enough protobuf to write OTLP export requests straight from tollgate's own structures and to read the
//! collector's `partial_success` answer: no generated message types, no per-attribute allocation.
//!
//! Field numbers are those of opentelemetry-proto v1 (`common.proto`, `resource.proto`, `trace.proto`,
//! `metrics.proto`, `trace_service.proto`, `metrics_service.proto`). Fields are written in field-number
//! order (as prost does; a oneof at its lowest number) and default scalars are omitted as proto3 requires, so the bytes equal
//! what the generated types produce; the golden tests (`telemetry/golden_test.rs`) decode them with the
//! official types.

use std::borrow::Cow;

pub const VARINT: u32 = 0;
pub const FIXED64: u32 = 1;
pub const LEN: u32 = 2;
pub const FIXED32: u32 = 5;

/// Bytes a varint takes.
pub const fn varint_len(v: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

pub fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

pub fn tag(buf: &mut Vec<u8>, field: u32, wire: u32) {
    varint(buf, u64::from((field << 3) | wire));
}

/// A length-delimited field's bytes with its tag and length (tags here are all below 16: one byte).
pub const fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// Tag and length of a length-delimited field whose body follows.
pub fn len_prefix(buf: &mut Vec<u8>, field: u32, len: usize) {
    tag(buf, field, LEN);
    varint(buf, len as u64);
}

pub fn bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    len_prefix(buf, field, data.len());
    buf.extend_from_slice(data);
}

/// A proto3 string/bytes field: omitted when empty.
pub fn opt_bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    if !data.is_empty() {
        bytes(buf, field, data);
    }
}

pub fn fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    tag(buf, field, FIXED64);
    buf.extend_from_slice(&v.to_le_bytes());
}

/// A proto3 fixed64 field: omitted when 0.
pub fn opt_fixed64(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        fixed64(buf, field, v);
    }
}

pub fn double(buf: &mut Vec<u8>, field: u32, v: f64) {
    fixed64(buf, field, v.to_bits());
}

/// A proto3 varint field (uint32, int32/int64 as two's complement, enum, bool): omitted when 0.
pub fn opt_varint(buf: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        tag(buf, field, VARINT);
        varint(buf, v);
    }
}

/// A nested message whose length is only known once written: the body is written in place and its length
/// inserted in front of it (cheap for the small messages this is used for).
pub fn message(buf: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    tag(buf, field, LEN);
    let start = buf.len();
    body(buf);
    let len = buf.len() - start;
    let mut prefix = [0u8; 10];
    let mut n = 0;
    let mut v = len as u64;
    for slot in prefix.iter_mut() {
        n += 1;
        if v < 0x80 {
            *slot = v as u8;
            break;
        }
        *slot = (v as u8) | 0x80;
        v >>= 7;
    }
    buf.splice(start..start, prefix.into_iter().take(n));
}

/// An attribute value (`AnyValue`) in the forms tollgate emits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
}

impl Value<'_> {
    /// Length of the `AnyValue` message body.
    fn any_len(&self) -> usize {
        match self {
            Value::Str(s) => field_len(s.len()),
            Value::Bool(_) => 2,
            Value::Int(i) => 1 + varint_len(*i as u64),
            Value::Double(_) => 9,
        }
    }

    fn write_any(&self, buf: &mut Vec<u8>) {
        match *self {
            Value::Str(s) => bytes(buf, 1, s.as_bytes()),
            Value::Bool(b) => {
                tag(buf, 2, VARINT);
                buf.push(u8::from(b));
            }
            Value::Int(i) => {
                tag(buf, 3, VARINT);
                varint(buf, i as u64);
            }
            Value::Double(d) => double(buf, 4, d),
        }
    }
}

/// A `KeyValue` as repeated field `field` of the enclosing message.
pub fn key_value(buf: &mut Vec<u8>, field: u32, key: &str, v: Value<'_>) {
    let any = v.any_len();
    len_prefix(buf, field, field_len(key.len()) + field_len(any));
    bytes(buf, 1, key.as_bytes());
    len_prefix(buf, 2, any);
    v.write_any(buf);
}

/// A `KeyValue` holding an `ArrayValue` of strings.
pub fn key_strings<S: AsRef<str>>(buf: &mut Vec<u8>, field: u32, key: &str, values: &[S]) {
    let array: usize = values
        .iter()
        .map(|s| field_len(field_len(s.as_ref().len())))
        .sum();
    let any = field_len(array);
    len_prefix(buf, field, field_len(key.len()) + field_len(any));
    bytes(buf, 1, key.as_bytes());
    len_prefix(buf, 2, any);
    len_prefix(buf, 5, array);
    for s in values {
        let s = s.as_ref();
        len_prefix(buf, 1, field_len(s.len()));
        bytes(buf, 1, s.as_bytes());
    }
}

/// `InstrumentationScope { name, version }` as field `field`.
pub fn scope(buf: &mut Vec<u8>, field: u32, name: &str, version: &str) {
    let len = field_len(name.len())
        + if version.is_empty() {
            0
        } else {
            field_len(version.len())
        };
    len_prefix(buf, field, len);
    bytes(buf, 1, name.as_bytes());
    opt_bytes(buf, 2, version.as_bytes());
}

/// One field read from a message: its number and its value.
#[derive(Debug, PartialEq)]
pub enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
    /// A (deprecated) group, skipped.
    Group,
}

impl<'a> Field<'a> {
    /// The value of a varint field; None for another wire type.
    pub fn varint(self) -> Option<u64> {
        match self {
            Field::Varint(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes of a length-delimited field; None for another wire type.
    pub fn len(self) -> Option<&'a [u8]> {
        match self {
            Field::Len(b) => Some(b),
            _ => None,
        }
    }

    /// The value of a fixed64 field; None for another wire type.
    pub fn fixed64(self) -> Option<u64> {
        match self {
            Field::Fixed64(v) => Some(v),
            _ => None,
        }
    }
}

/// Read `body` field by field through `each`; None when the message is malformed or `each` returns None
/// (a known field with the wrong wire type, a bad nested message): what a generated decoder rejects.
pub fn read_message<'a>(
    body: &'a [u8],
    mut each: impl FnMut(u32, Field<'a>) -> Option<()>,
) -> Option<()> {
    let mut r = Reader::new(body);
    for (n, f) in &mut r {
        each(n, f)?;
    }
    (!r.malformed).then_some(())
}

fn read_varint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            // The tenth byte may only hold the top bit of a u64.
            return (shift < 63 || b < 2).then_some(v);
        }
    }
    None
}

/// A field key: (field number ≥ 1, wire type), as generated decoders accept it (the key fits 32 bits).
fn read_key(buf: &mut &[u8]) -> Option<(u32, u32)> {
    let key = u32::try_from(read_varint(buf)?).ok()?;
    Some((key >> 3, key & 7)).filter(|&(field, _)| field > 0)
}

/// Skip the rest of the group `field` (after its start key): up to its end key, nested groups included.
fn skip_group(buf: &mut &[u8], field: u32, depth: u32) -> Option<()> {
    loop {
        let (n, wire) = read_key(buf)?;
        match wire {
            4 => return (n == field).then_some(()),
            3 => skip_group(buf, n, depth.checked_sub(1)?)?,
            _ => {
                skip_value(buf, wire)?;
            }
        }
    }
}

fn skip_value<'a>(buf: &mut &'a [u8], wire: u32) -> Option<Field<'a>> {
    Some(match wire {
        0 => Field::Varint(read_varint(buf)?),
        1 => {
            let (b, rest) = buf.split_first_chunk::<8>()?;
            *buf = rest;
            Field::Fixed64(u64::from_le_bytes(*b))
        }
        2 => {
            let len = usize::try_from(read_varint(buf)?).ok()?;
            let (b, rest) = buf.split_at_checked(len)?;
            *buf = rest;
            Field::Len(b)
        }
        5 => {
            let (b, rest) = buf.split_first_chunk::<4>()?;
            *buf = rest;
            Field::Fixed32(u32::from_le_bytes(*b))
        }
        _ => return None,
    })
}

/// The fields of a message in order; stops at the end or at malformed input (then `malformed` is set).
/// Groups (wire types 3 and 4, deprecated) count as malformed.
pub struct Reader<'a> {
    rest: &'a [u8],
    pub malformed: bool,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            rest: buf,
            malformed: false,
        }
    }

    fn field(&mut self) -> Option<(u32, Field<'a>)> {
        let (field, wire) = read_key(&mut self.rest)?;
        let value = match wire {
            3 => {
                skip_group(&mut self.rest, field, 100)?;
                Field::Group
            }
            w => skip_value(&mut self.rest, w)?,
        };
        Some((field, value))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = (u32, Field<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.malformed {
            return None;
        }
        let f = self.field();
        if f.is_none() {
            self.malformed = true;
            self.rest = &[];
        }
        f
    }
}

/// `partial_success` of an `ExportTraceServiceResponse` / `ExportMetricsServiceResponse` (both are
/// `{ int64 rejected = 1; string error_message = 2; }` in field 1): (rejected, message).
pub fn partial_success(body: &[u8]) -> Option<(i64, Cow<'_, str>)> {
    let mut found = None;
    for (n, f) in Reader::new(body) {
        if let (1, Field::Len(inner)) = (n, f) {
            let (mut rejected, mut message) = (0i64, Cow::Borrowed(""));
            for (n, f) in Reader::new(inner) {
                match (n, f) {
                    (1, Field::Varint(v)) => rejected = v as i64,
                    (2, Field::Len(s)) => message = String::from_utf8_lossy(s),
                    _ => {}
                }
            }
            found = Some((rejected, message));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTracePartialSuccess, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, ArrayValue, KeyValue};
    use prost::Message;

    #[test]
    fn varints() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            16383,
            16384,
            u32::MAX as u64,
            u64::MAX,
        ] {
            let mut b = Vec::new();
            varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            assert_eq!(read_varint(&mut b.as_slice()), Some(v));
            let mut p = Vec::new();
            prost::encoding::encode_varint(v, &mut p);
            assert_eq!(b, p);
        }
    }

    #[test]
    fn nested_message_lengths() {
        for n in [0usize, 1, 127, 128, 200, 20_000] {
            let mut b = vec![9];
            message(&mut b, 3, |b| b.extend(std::iter::repeat_n(7u8, n)));
            let mut expect = vec![9];
            bytes(&mut expect, 3, &vec![7u8; n]);
            assert_eq!(b, expect);
        }
    }

    fn kv(key: &str, v: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    #[test]
    fn key_values_match_prost() {
        use any_value::Value as V;
        let long = "x".repeat(300);
        let cases: Vec<(Value<'_>, V)> = vec![
            (Value::Str(""), V::StringValue(String::new())),
            (Value::Str("abc"), V::StringValue("abc".into())),
            (Value::Str(&long), V::StringValue(long.clone())),
            (Value::Bool(true), V::BoolValue(true)),
            (Value::Bool(false), V::BoolValue(false)),
            (Value::Int(0), V::IntValue(0)),
            (Value::Int(-5), V::IntValue(-5)),
            (Value::Int(i64::MAX), V::IntValue(i64::MAX)),
            (Value::Double(0.0), V::DoubleValue(0.0)),
            (Value::Double(-1.5e300), V::DoubleValue(-1.5e300)),
        ];
        for (ours, theirs) in cases {
            let mut b = Vec::new();
            key_value(&mut b, 1, "some.key", ours);
            let expect = ArrayHolder {
                kvs: vec![kv("some.key", theirs)],
            };
            assert_eq!(b, expect.encode_to_vec(), "{ours:?}");
        }
        for values in [vec![], vec!["a".to_owned()], vec!["".into(), long.clone()]] {
            let mut b = Vec::new();
            key_strings(&mut b, 1, "k", &values);
            let arr = V::ArrayValue(ArrayValue {
                values: values
                    .iter()
                    .map(|s| AnyValue {
                        value: Some(V::StringValue(s.clone())),
                    })
                    .collect(),
            });
            let expect = ArrayHolder {
                kvs: vec![kv("k", arr)],
            };
            assert_eq!(b, expect.encode_to_vec());
        }
    }

    /// A message with `repeated KeyValue kvs = 1`, like `Resource`.
    #[derive(Clone, PartialEq, prost::Message)]
    struct ArrayHolder {
        #[prost(message, repeated, tag = "1")]
        kvs: Vec<KeyValue>,
    }

    #[test]
    fn reads_partial_success() {
        let t = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 3,
                error_message: "bad span".into(),
            }),
        };
        assert_eq!(
            partial_success(&t.encode_to_vec()),
            Some((3, "bad span".into()))
        );
        let m = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 70_000,
                error_message: String::new(),
            }),
        };
        assert_eq!(
            partial_success(&m.encode_to_vec()),
            Some((70_000, "".into()))
        );
        assert_eq!(partial_success(&[]), None);
        assert_eq!(
            partial_success(&ExportTraceServiceResponse::default().encode_to_vec()),
            None
        );
        // Unknown fields of every wire type are skipped; truncated input ends the read without panicking.
        let mut odd = vec![
            0x08, 0x96, 0x01, 0x11, 1, 2, 3, 4, 5, 6, 7, 8, 0x1d, 1, 2, 3, 4,
        ];
        odd.extend(t.encode_to_vec());
        assert_eq!(partial_success(&odd), Some((3, "bad span".into())));
        for cut in 0..odd.len() {
            let _ = partial_success(odd.get(..cut).unwrap());
        }
        assert_eq!(partial_success(&[0x0a, 0xff]), None);
    }
}
