//! The analysis-worker: turns a repository into the code graph.
//!
//! Map: [`discover`] picks the files, [`lang`] (one analyzer per language) extracts [`facts`] from each (pass 1),
//! [`symbols`] and [`resolve`] link them (pass 2), [`desired`] turns that into nodes and relationships by owner,
//! [`analysis`] runs those steps in memory. Everything after that talks to Redis: [`job`] runs one job,
//! [`queue`] takes them from the jobs stream, [`retention`] expires finished job records, [`watch`] follows a folder, [`watches`] shares the watched
//! folders out between the workers (one lease per project).

pub mod alloc;
pub mod analysis;
pub mod current;
pub mod delta;
pub mod desired;
pub mod discover;
pub mod facts;
pub mod fresh;
pub mod http;
pub mod job;
pub mod lang;
pub mod progress;
pub mod queue;
pub mod resolve;
pub mod retention;
pub mod settings;
pub mod status;
pub mod symbols;
pub mod sync;
pub mod watch;
pub mod watches;
