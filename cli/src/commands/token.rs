//! `docket token`: development tokens signed with a local Ed25519 key.

use std::io::Write;
use std::path::Path;

use docket_auth::Signer;

use crate::args::{MintArgs, TokenCommand};
use crate::commands::Outcome;
use crate::error::Error;

pub fn run(command: TokenCommand) -> Result<Outcome, Error> {
    match command {
        TokenCommand::Mint(args) => mint(args),
        TokenCommand::Keygen { private, public } => keygen(&private, &public),
    }
}

fn keygen(private: &Path, public: &Path) -> Result<Outcome, Error> {
    for path in [private, public] {
        if path.exists() {
            return Err(Error::InvalidArgument {
                flag: if path == private { "--private" } else { "--public" },
                value: path.display().to_string(),
                reason: "the file exists; remove it or choose another path".to_owned(),
            });
        }
    }
    let pair = docket_auth::generate_ed25519_keypair().map_err(|error| Error::Mint(error.to_string()))?;
    write_private(private, pair.private_pem.as_bytes())?;
    std::fs::write(public, pair.public_pem.as_bytes()).map_err(|source| Error::Open { path: public.to_owned(), source })?;
    Ok(Outcome::Success)
}

/// Creates the private key file readable by its owner only.
fn write_private(path: &Path, pem: &[u8]) -> Result<(), Error> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| Error::Open { path: path.to_owned(), source })?;
    file.write_all(pem).map_err(|source| Error::Open { path: path.to_owned(), source })
}

fn mint(args: MintArgs) -> Result<Outcome, Error> {
    let pem = std::fs::read(&args.key).map_err(|source| Error::Open { path: args.key.clone(), source })?;
    let signer = Signer::from_pem(&pem, args.kid, args.issuer, args.audience)
        .map_err(|error| Error::Mint(format!("{}: {error}", args.key.display())))?;
    let token = signer.mint(&args.sub, &args.roles, args.ttl).map_err(|error| Error::Mint(error.to_string()))?;
    println!("{token}");
    Ok(Outcome::Success)
}
