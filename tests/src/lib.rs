//! End-to-end tests of Till live in `tests/`: real till-core stores syncing
//! through a real sync-server started on 127.0.0.1 port 0. This library is
//! empty; it exists so the package has a target.
