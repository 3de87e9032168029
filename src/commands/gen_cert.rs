//! `tiklive gen-cert`: a self-signed certificate and key for `serve --tls-cert/--tls-key`.

use std::io::Write;

use crate::certs::{Request, generate};
use crate::cli::GenCertArgs;
use crate::error::{Exit, is_closed_pipe};
use crate::events::rfc3339_ms;

pub fn run(args: &GenCertArgs) -> anyhow::Result<Exit> {
    let made = generate(&Request {
        out_dir: &args.out_dir,
        hosts: &args.hosts,
        days: args.days,
        force: args.force,
    })?;
    let expires = rfc3339_ms(made.not_after * 1000);
    let text = if args.json {
        let object = serde_json::json!({
            "cert": made.cert_path,
            "key": made.key_path,
            "names": made.names,
            "expires": expires,
            "sha256": made.sha256,
        });
        format!("{object}\n")
    } else {
        format!(
            "cert: {}\nkey: {} (mode 0600)\nnames: {}\nexpires: {expires}\nsha256: {}\n",
            made.cert_path.display(),
            made.key_path.display(),
            made.names.join(", "),
            made.sha256
        )
    };
    match std::io::stdout().write_all(text.as_bytes()) {
        Err(e) if !is_closed_pipe(&e) => Err(e.into()),
        _ => Ok(Exit::Success),
    }
}
