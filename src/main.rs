use std::process::ExitCode;

use switchboard::config::{self, Command};

fn main() -> ExitCode {
    let cfg = match config::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(cfg)) => cfg,
        Ok(Command::Print(text)) => {
            // `--help` or `--version`: clap writes it to stdout.
            let _ = text.print();
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
        // A key file that cannot be used is a bad value, like a bad flag.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            eprintln!("switchboard: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}
