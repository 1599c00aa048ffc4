use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Before the runtime starts its threads.
    credential_ledger::startup::bound_allocator_arenas();
    credential_ledger::telemetry::init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(credential_ledger::cli::Cli::parse().run())
}
