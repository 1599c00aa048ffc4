use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    credential_ledger::telemetry::init();
    credential_ledger::cli::Cli::parse().run().await
}
