//! Customer search indexes. `fts` is the transactional SQLite FTS5 index,
//! written in the same transaction as the customer it describes.

pub(crate) mod fts;
