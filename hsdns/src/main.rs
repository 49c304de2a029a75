use clap::Parser as _;
use hsdns::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    // A parent may have blocked these (masks are inherited across exec);
    // the daemon must see them to detach and clean up.
    // SAFETY: plain sigset manipulation on this thread before any other
    // thread exists.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.cmd {
        Command::Run(args) => hsdns::daemon::run(*args),
        Command::Uninstall(args) => hsdns::lifecycle::uninstall::run(&args),
        Command::MountBpffs { pin_dir } => hsdns::lifecycle::bpffs::mount_for(&pin_dir),
        Command::Records(args) => hsdns::daemon::table::print_records(&args),
        Command::Stats { pin_dir, json } => hsdns::stats::print(&pin_dir, json),
        Command::Query(args) => hsdns::query::run(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hsdns: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
