//! `tiklive sale`: create, list, update and cancel sales from the command line.

use crate::cli::SaleCommand;
use crate::error::Exit;

pub fn run(command: SaleCommand) -> anyhow::Result<Exit> {
    anyhow::bail!("sale is being written: {command:?}")
}
