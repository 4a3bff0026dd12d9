//! The running service: [`app`] starts one [`ownership`] loop per sink, which holds project [`lease`]s and runs
//! one [`worker`] per owned project; the owner [`trim`]s the stream; [`status`] and [`http`] report.

pub mod app;
pub mod http;
pub mod lease;
pub mod ownership;
pub mod status;
pub mod trim;
pub mod worker;
