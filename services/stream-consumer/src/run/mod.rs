//! The running service: [`app`] starts one [`ownership`] loop per sink, which holds project [`lease`]s and runs
//! one [`worker`] per owned project (a large batch [`decoded`] on a thread of its own while the worker commits); the
//! owner [`trim`]s the stream; [`status`] and [`http`] report.

pub mod app;
pub mod decoded;
pub mod http;
pub mod lease;
pub mod ownership;
pub mod status;
pub mod trim;
pub mod worker;
