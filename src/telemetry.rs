//! The one place logging is set up, filtered by `RUST_LOG`: to the journal with native fields
//! when systemd connected stderr to it (see `journal`), otherwise to stderr, human-readable.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `verbose` raises the default level to debug; `quiet` lowers it
/// to warnings (a run drawing its progress on a terminal).
pub fn init(verbose: bool, quiet: bool) {
    let default = match (verbose, quiet) {
        (true, _) => "swarm_upgrade=debug",
        (false, true) => "swarm_upgrade=warn",
        (false, false) => "swarm_upgrade=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    if let Some(journal) = crate::journal::JournalLayer::for_stderr() {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let _ = tracing_subscriber::registry().with(filter).with(journal).try_init();
        return;
    }
    // Colour only on a terminal: under systemd stderr goes to the journal, which keeps the lines
    // as they are (`run finished run=… outcome=Succeeded`), so the fields stay greppable.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A second init (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}
