//! A stored record as a device receives it whole (in a bootstrap page or a
//! customer's history): its field values and the latest stamp the server
//! resolved into it, read straight from the stored merge state.
//!
//! Why not parse the state into `RecordState`: a bootstrap sends every
//! record of a store, a million bills at a time, and only needs the values
//! as they are stored plus one stamp. The values pass through as raw JSON
//! (borrowed, copied once) and the stamps are compared as borrowed text, so
//! no map of the record is ever built on the server.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use till_core::sync::protocol::SnapshotRecord;

/// The parts of a stored `RecordState` a snapshot needs.
#[derive(Deserialize)]
struct StateView<'a> {
    #[serde(borrow)]
    values: &'a RawValue,
    #[serde(borrow)]
    clocks: Latest<'a>,
    #[serde(default, borrow)]
    tags: Latest<'a>,
}

/// The greatest stamp among the values of a map whose values are stamps
/// (`clocks`) or objects holding one in `hlc` (`tags`).
#[derive(Default)]
struct Latest<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Latest<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = Latest<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of stamps")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Latest<'de>, A::Error> {
                let mut latest: Option<Cow<'de, str>> = None;
                while let Some((IgnoredAny, Stamp(stamp))) = map.next_entry()? {
                    if latest.as_deref().is_none_or(|l| *stamp > *l) {
                        latest = Some(stamp);
                    }
                }
                Ok(Latest(latest))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

/// A stamp: a string, or an object with the stamp in `hlc`.
struct Stamp<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Stamp<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StampVisitor;
        impl<'de> Visitor<'de> for StampVisitor {
            type Value = Stamp<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a stamp, or an object with one in `hlc`")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Stamp<'de>, E> {
                Ok(Stamp(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Stamp<'de>, E> {
                Ok(Stamp(Cow::Owned(v.to_owned())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Stamp<'de>, A::Error> {
                let mut hlc = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "hlc" {
                        hlc = Some(map.next_value::<Stamp<'de>>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                hlc.ok_or_else(|| de::Error::missing_field("hlc"))
            }
        }
        deserializer.deserialize_any(StampVisitor)
    }
}

/// The record `id` of `entity` whose stored merge state is `state`.
pub fn record(
    entity: &str,
    id: String,
    state: &str,
) -> Result<SnapshotRecord<Box<RawValue>>, serde_json::Error> {
    let view: StateView<'_> = serde_json::from_str(state)?;
    let hlc = match (view.clocks.0, view.tags.0) {
        (Some(a), Some(b)) => a.max(b),
        (a, b) => a.or(b).unwrap_or_default(),
    };
    Ok(SnapshotRecord {
        entity: entity.to_owned(),
        id,
        fields: view.values.to_owned(),
        hlc: hlc.into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use till_core::sync::conflict::{RecordState, TagClock};

    #[test]
    fn a_stored_state_gives_its_values_and_latest_stamp() {
        let mut state = RecordState {
            values: json!({"name": "A", "tags": ["vip"], "notes": "x\"y"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..RecordState::default()
        };
        state
            .clocks
            .insert("name".into(), "000000000000005-0000000000-S1/T1".into());
        state
            .clocks
            .insert("notes".into(), "000000000000007-0000000000-S1/T2".into());
        let stored = serde_json::to_string(&state).expect("state");
        let got = record("customer", "c1".into(), &stored).expect("view");
        assert_eq!(got.hlc, "000000000000007-0000000000-S1/T2");
        let values: serde_json::Value = serde_json::from_str(got.fields.get()).expect("values");
        assert_eq!(values, serde_json::Value::Object(state.values.clone()));
        assert_eq!((got.entity.as_str(), got.id.as_str()), ("customer", "c1"));

        // A tag written later than every field carries the latest stamp.
        state.tags.insert(
            "vip".into(),
            TagClock {
                present: true,
                hlc: "000000000000009-0000000000-S1/T3".into(),
            },
        );
        let stored = serde_json::to_string(&state).expect("state");
        let got = record("customer", "c1".into(), &stored).expect("view");
        assert_eq!(got.hlc, "000000000000009-0000000000-S1/T3");
    }

    #[test]
    fn a_state_that_is_not_a_merge_state_is_an_error() {
        assert!(record("bill", "b".into(), "{\"values\": 1}").is_err());
        assert!(record("bill", "b".into(), "[]").is_err());
    }
}
