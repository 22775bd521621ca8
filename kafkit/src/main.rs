//! `kafkit`: parse the command line, set up telemetry, hand over to the library.

use clap::Parser;
use kafkit::{Cli, Command};

/// Counts heap allocations per thread (a thread-local counter, no shared
/// state), so `kafkit bench` can report them per encoded event.
#[global_allocator]
static ALLOCATOR: densa_alloc::CountingAllocator = densa_alloc::CountingAllocator::system();

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The services it can run are named as themselves; every other command is "kafkit".
    let (service_name, default_filter) = match &cli.command {
        Command::ProducerService(_) => ("producer-service", "info"),
        Command::ConsumerService(_) => ("consumer-service", "info"),
        Command::Registry(_) => ("schema-registry", "info"),
        // librdkafka's own connection errors repeat what the command's
        // error says ("could not reach Kafka at ..."): quiet unless asked.
        _ => ("kafkit", "warn,librdkafka=off,rdkafka=off"),
    };
    let telemetry = match kafkit_telemetry::init(kafkit_telemetry::Options {
        service_name: service_name.into(),
        default_filter: default_filter.into(),
        stderr: true,
    }) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = kafkit::run(cli).await;
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
