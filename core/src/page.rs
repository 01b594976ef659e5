//! Keyset pagination shared by every list: a page of items plus an opaque
//! cursor for the next one. A cursor carries the sort key of the last item
//! returned, so pages stay stable while rows are added, and every page costs
//! one index seek whatever its depth.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The most items one page returns, whatever the caller asks for.
pub const PAGE_CAP: u32 = 200;

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, in the list's order.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The page size to fetch: at least 1, at most [`PAGE_CAP`].
pub(crate) fn limit(requested: u32) -> Result<u32> {
    if requested == 0 {
        return Err(Error::invalid("limit", "must be at least 1"));
    }
    Ok(requested.min(PAGE_CAP))
}

/// Encodes the sort key of the last item returned.
pub(crate) fn encode_cursor<K: Serialize>(key: &K) -> String {
    // Serialising plain tuples of numbers and strings cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).unwrap_or_default())
}

/// Decodes a cursor made by [`encode_cursor`] for the same list.
pub(crate) fn decode_cursor<K: DeserializeOwned>(cursor: &str) -> Result<K> {
    let bad = || Error::invalid("cursor", "not a cursor of this list");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// Builds a page from up to `limit + 1` fetched rows: the extra row only
/// tells that another page exists.
pub(crate) fn assemble<T, K: Serialize>(
    mut rows: Vec<T>,
    limit: u32,
    key_of: impl Fn(&T) -> K,
) -> Page<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = if more {
        rows.last().map(|last| encode_cursor(&key_of(last)))
    } else {
        None
    };
    Page { items: rows, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = encode_cursor(&("Asha".to_string(), 42i64));
        let back: (String, i64) = decode_cursor(&c).expect("decode");
        assert_eq!(back, ("Asha".to_string(), 42));
        for bad in ["", "!!!", "e30"] {
            assert!(decode_cursor::<(String, i64)>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_are_capped_and_never_zero() {
        assert_eq!(limit(10).expect("10"), 10);
        assert_eq!(limit(10_000).expect("cap"), PAGE_CAP);
        assert!(limit(0).is_err());
    }

    #[test]
    fn the_extra_row_becomes_the_cursor_of_the_last_kept_item() {
        let page = assemble(vec![1, 2, 3], 2, |n| *n);
        assert_eq!(page.items, vec![1, 2]);
        assert_eq!(
            page.next
                .as_deref()
                .map(decode_cursor::<i32>)
                .transpose()
                .expect("c"),
            Some(2)
        );
        assert_eq!(assemble(vec![1, 2], 2, |n| *n).next, None);
    }
}
