//! Transports. `http` (axum), `grpc` (tonic) and `ui` (server-rendered pages) translate wire formats into calls on
//! `service::Service` and map `ErrorKind` in their own exhaustive tables. Neither
//! touches the store, judges or committee directly.

pub mod grpc;
pub mod http;
pub mod ui;
