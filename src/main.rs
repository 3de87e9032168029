//! The `tiklive` binary: load `.env`, parse the command line, start logging, run, exit with the code
//! the outcome calls for. Everything else lives in the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tiklive::cli::Cli;

fn main() -> ExitCode {
    tiklive::config::load_dotenv();
    let cli = Cli::parse();
    if let Err(err) = tiklive::config::init_logging(cli.quiet, cli.verbose, cli.log_file()) {
        let _ = writeln!(std::io::stderr(), "tiklive: error: {err}");
        return ExitCode::from(tiklive::error::Exit::Failure as u8);
    }
    let code = match tiklive::commands::run(cli) {
        Ok(exit) => exit,
        Err(err) => {
            // Not eprintln!: a closed stderr must not turn an error into a panic.
            let _ = writeln!(
                std::io::stderr(),
                "tiklive: error: {}",
                tiklive::error::message(&err)
            );
            tiklive::error::exit_for(&err)
        }
    };
    ExitCode::from(code as u8)
}
