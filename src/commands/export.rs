//! `tiklive export`: stored history as CSV, for cron jobs and spreadsheets.

use crate::cli::ExportArgs;
use crate::error::Exit;

pub fn run(args: ExportArgs, quiet: bool) -> anyhow::Result<Exit> {
    anyhow::bail!("export is being written: {args:?} {quiet}")
}
