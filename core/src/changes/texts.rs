//! The top-level fields of a record as JSON texts, serialized once into one
//! buffer: what a change record is built from.
//!
//! Why not `serde_json::to_value`: a sale's record went through a `Value`
//! tree (a map entry and an allocation per field, line and tender), was
//! filtered, diffed and serialized again; that was 113,000 of the 634,000
//! instructions of a sale (callgrind, `Store::sell` of a 3-line bill).
//! Comparing texts is comparing values here: the records have no floats and
//! no unordered maps, so equal values serialize to equal text.

use std::ops::Range;

use serde::ser::{self, Impossible, Serialize, SerializeStruct, Serializer};

/// One record's fields: names in declaration order, texts in one buffer.
#[derive(Debug, Default)]
pub(crate) struct FieldTexts {
    buf: Vec<u8>,
    fields: Vec<(&'static str, Range<usize>)>,
}

impl FieldTexts {
    /// The fields of `record` (a struct), less those named in `skip`.
    pub(crate) fn of<T: Serialize>(record: &T, skip: &[&str]) -> serde_json::Result<FieldTexts> {
        let mut texts = FieldTexts::default();
        record.serialize(Collector {
            texts: &mut texts,
            skip,
        })?;
        Ok(texts)
    }

    /// `(name, JSON text)` of every field, in declaration order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, &[u8])> + '_ {
        self.fields
            .iter()
            .map(|(name, range)| (*name, &self.buf[range.clone()]))
    }

    /// The JSON text of field `name`, if the record has it.
    pub(crate) fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }
}

/// Writes `fields` (name, JSON text) as one JSON object.
pub(crate) fn object<'n, 't>(fields: impl Iterator<Item = (&'n str, &'t [u8])>) -> String {
    let mut out = Vec::with_capacity(256);
    out.push(b'{');
    for (i, (name, text)) in fields.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Field names are Rust identifiers: nothing to escape.
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(text);
    }
    out.push(b'}');
    // Only JSON texts and identifiers went in.
    String::from_utf8(out).unwrap_or_default()
}

/// The JSON text of a null.
pub(crate) const NULL: &[u8] = b"null";

/// Serializes a struct field by field into [`FieldTexts`].
struct Collector<'a> {
    texts: &'a mut FieldTexts,
    skip: &'a [&'a str],
}

impl SerializeStruct for Collector<'_> {
    type Ok = ();
    type Error = serde_json::Error;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), Self::Error> {
        if self.skip.contains(&name) {
            return Ok(());
        }
        let start = self.texts.buf.len();
        serde_json::to_writer(&mut self.texts.buf, value)?;
        self.texts.fields.push((name, start..self.texts.buf.len()));
        Ok(())
    }

    fn end(self) -> Result<(), Self::Error> {
        Ok(())
    }
}

fn not_a_struct() -> serde_json::Error {
    ser::Error::custom("a change record is made of a struct")
}

macro_rules! refuse {
    ($($name:ident($($arg:ty),*);)*) => {
        $(fn $name(self, $(_: $arg),*) -> Result<(), serde_json::Error> {
            Err(not_a_struct())
        })*
    };
}

impl<'a> Serializer for Collector<'a> {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Impossible<(), serde_json::Error>;
    type SerializeTuple = Impossible<(), serde_json::Error>;
    type SerializeTupleStruct = Impossible<(), serde_json::Error>;
    type SerializeTupleVariant = Impossible<(), serde_json::Error>;
    type SerializeMap = Impossible<(), serde_json::Error>;
    type SerializeStruct = Collector<'a>;
    type SerializeStructVariant = Impossible<(), serde_json::Error>;

    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        self.texts.fields.reserve(len);
        Ok(self)
    }

    refuse! {
        serialize_bool(bool);
        serialize_i8(i8);
        serialize_i16(i16);
        serialize_i32(i32);
        serialize_i64(i64);
        serialize_u8(u8);
        serialize_u16(u16);
        serialize_u32(u32);
        serialize_u64(u64);
        serialize_f32(f32);
        serialize_f64(f64);
        serialize_char(char);
        serialize_str(&str);
        serialize_bytes(&[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(&'static str);
        serialize_unit_variant(&'static str, u32, &'static str);
    }

    fn serialize_some<T: ?Sized + Serialize>(self, _: &T) -> Result<(), Self::Error> {
        Err(not_a_struct())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<(), Self::Error> {
        Err(not_a_struct())
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Self::Error> {
        Err(not_a_struct())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Err(not_a_struct())
    }

    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Err(not_a_struct())
    }

    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Err(not_a_struct())
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        Err(not_a_struct())
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Err(not_a_struct())
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Err(not_a_struct())
    }
}
