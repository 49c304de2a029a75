use clap::Parser as _;
use hsdns::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Command::Run(args) => hsdns::daemon::run(*args),
        Command::Records(args) => hsdns::daemon::print_records(&args),
        Command::Stats { pin_dir } => hsdns::daemon::print_stats(&pin_dir),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsdns: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
