//! Who did what to which file: the operator's user and host names and a file's sha256, recorded
//! in bank histories and operator verdicts so an audit can tell which image changed a decision.
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// The user and machine an action came from, as the environment names them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Operator {
    pub user: String,
    pub host: String,
}

impl Operator {
    /// `USER`/`LOGNAME`/`USERNAME`, and `HOSTNAME` or `/etc/hostname`; "unknown" when none is
    /// set, since an audit line with a placeholder beats no audit line.
    pub fn current() -> Operator {
        let env = |keys: &[&str]| {
            keys.iter()
                .filter_map(|k| std::env::var(k).ok())
                .map(|v| v.trim().to_string())
                .find(|v| !v.is_empty())
        };
        let user = env(&["USER", "LOGNAME", "USERNAME"]).unwrap_or_else(|| "unknown".into());
        let host = env(&["HOSTNAME", "COMPUTERNAME"])
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
            })
            .unwrap_or_else(|| "unknown".into());
        Operator { user, host }
    }
}

/// Lower-case hex sha256 of a file, read in blocks so a large image is never held twice.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("abc.txt");
        std::fs::write(&p, b"abc").expect("write");
        assert_eq!(
            sha256_file(&p).expect("hash"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(sha256_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn operator_is_never_empty() {
        let op = Operator::current();
        assert!(!op.user.is_empty() && !op.host.is_empty());
    }
}
