use std::process::ExitCode;

use switchboard::config::{self, Command};

fn main() -> ExitCode {
    let args = std::env::args().skip(1);
    let cfg = match config::parse(args, |k| std::env::var(k).ok()) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Help) => {
            print!("{}", config::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("switchboard {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("switchboard: {e}");
            return ExitCode::from(2);
        }
    };
    switchboard::log::set_level(cfg.log_level);
    match switchboard::net::server::run(*cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}
