//! The `stream-consumer` binary: the service (default), `replay`, and `dlq list|redrive` ([`commands`]).

use std::process::ExitCode;

use clap::Parser;

use stream_consumer::{
    commands::{self, Cli},
    settings::{Settings, SERVICE},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings: Settings = match codegraph_shared::settings::load(SERVICE) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stream-consumer: configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    match runtime.block_on(commands::dispatch(cli, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream-consumer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
