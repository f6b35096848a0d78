//! [E] `sparrow completions` and `sparrow man`: shell completions and manual pages made from
//! the clap definitions, so they cannot drift from the command line. The Debian package
//! ships their output (`deploy/debian/build-deb`).

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory as _;

use super::{Cli, EXIT_FAILURE};

/// Prints the completion script for `shell` to standard output.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sparrow", &mut out);
    write_stdout(&out)
}

/// Prints sparrow(1), or writes every page into `dir`.
pub fn man(dir: Option<&Path>) -> ExitCode {
    // As `clap_mangen::generate_to` builds it, so the printed page is the written one.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let Some(dir) = dir else {
        let mut out = Vec::new();
        if let Err(e) = clap_mangen::Man::new(cmd).render(&mut out) {
            eprintln!("error: cannot render the manual page: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
        return write_stdout(&out);
    };
    let made = std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir));
    match made {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!(
                "error: cannot write the manual pages to {}: {e}",
                dir.display()
            );
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`sparrow man | head`) is not worth an error message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
