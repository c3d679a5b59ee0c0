//! The ledger's Ed25519 signing key: generated at first start, stored 0600 in the state
//! directory (`ledger.key`, the 32-byte seed as hex). The public key is printed by
//! `mnsensor ledger pubkey` so that it can be kept off the host.
use std::{
    fs,
    io::{Read as _, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use ed25519_dalek::{SigningKey, VerifyingKey};

/// File name of the key in the state directory.
pub const KEY_FILE: &str = "ledger.key";

/// A key that could not be read, created or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot use ledger key {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("ledger key {path} is not 64 hex digits")]
    Format { path: PathBuf },
    #[error("ledger key {path} is readable by group or others (mode {mode:o}); expected 0600")]
    Mode { path: PathBuf, mode: u32 },
    #[error("public key {0:?} is not 64 hex digits of an Ed25519 key")]
    Public(String),
}

/// Loads the key from `state_dir`, creating it (0600) when it does not exist.
pub fn load_or_create(state_dir: &Path) -> Result<SigningKey, KeyError> {
    let path = state_dir.join(KEY_FILE);
    let io = |source| KeyError::Io { path: path.clone(), source };
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
        Ok(mut file) => {
            let mut seed = [0u8; 32];
            fs::File::open("/dev/urandom").and_then(|mut r| r.read_exact(&mut seed)).map_err(io)?;
            file.write_all(hex(&seed).as_bytes()).and_then(|()| file.sync_all()).map_err(io)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load(state_dir),
        Err(e) => Err(io(e)),
    }
}

/// Loads an existing key (refusing one others can read).
pub fn load(state_dir: &Path) -> Result<SigningKey, KeyError> {
    let path = state_dir.join(KEY_FILE);
    let io = |source| KeyError::Io { path: path.clone(), source };
    let mode = fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Mode { path, mode });
    }
    let text = fs::read_to_string(&path).map_err(io)?;
    let seed = unhex(text.trim()).ok_or_else(|| KeyError::Format { path: path.clone() })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Parses a public key given as 64 hex digits, or as a file holding them.
pub fn parse_public(arg: &str) -> Result<VerifyingKey, KeyError> {
    let text =
        if Path::new(arg).is_file() { fs::read_to_string(arg).unwrap_or_default() } else { arg.to_owned() };
    unhex(text.trim())
        .and_then(|b| VerifyingKey::from_bytes(&b).ok())
        .ok_or_else(|| KeyError::Public(arg.to_owned()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 32 bytes from 64 hex digits.
fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn created_once_0600_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("mnsensor-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let a = super::load_or_create(&dir).unwrap();
        let b = super::load_or_create(&dir).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let mode = std::fs::metadata(dir.join(super::KEY_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let public = super::hex(a.verifying_key().as_bytes());
        assert_eq!(super::parse_public(&public).unwrap(), a.verifying_key());
        assert!(super::parse_public("abc").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
