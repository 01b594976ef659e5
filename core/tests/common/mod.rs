//! Fixtures shared by the integration tests: a store on a real SQLite file in
//! a temporary folder, and a look at that file behind the store's back.

use std::fmt::Debug;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use till_core::{Error, Store, StoreOptions};

/// A store on a real file in a temporary folder that is removed on drop.
pub struct TempStore {
    /// The open store (dropped before the folder: fields drop in order).
    pub store: Store,
    /// The SQLite file.
    pub path: PathBuf,
    /// Kept only to delete the folder when the test ends.
    pub dir: tempfile::TempDir,
}

impl Deref for TempStore {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.store
    }
}

/// The options every test opens with: tenant `acme`, store `S01`, device `T01`.
pub fn options(path: &Path) -> StoreOptions {
    StoreOptions::new(path, "acme", "S01", "T01")
}

/// A fresh store in a new temporary folder.
pub fn temp_store() -> TempStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("till.db");
    let store = Store::open(options(&path)).expect("open store");
    TempStore { store, path, dir }
}

/// The field a validation error names; panics on success or any other error.
pub fn invalid_field<T: Debug>(result: Result<T, Error>) -> String {
    match result {
        Err(Error::Validation { field, .. }) => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

/// How many rows the change log holds, read with a plain connection.
pub fn change_count(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).expect("plain connection");
    conn.query_row("SELECT count(*) FROM changes", [], |r| r.get(0))
        .expect("count changes")
}
