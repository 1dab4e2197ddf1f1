//! Streaming sha256 of files (FIPS 180-4 via the `sha2` crate), read in
//! 1 MiB blocks so that multi-hundred-megabyte weights never sit in memory.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::AssetError;

const BLOCK: usize = 1 << 20;

/// Lowercase hex sha256 of the file at `path`.
pub fn sha256_file(path: &Path) -> Result<String, AssetError> {
    let mut file = File::open(path).map_err(AssetError::io("open", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BLOCK];
    loop {
        let n = file.read(&mut buf).map_err(AssetError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Errors with `HashMismatch` naming `path` unless its sha256 is `expected`.
pub(crate) fn verify_file(path: &Path, expected: &str) -> Result<(), AssetError> {
    let actual = sha256_file(path)?;
    if actual == expected {
        Ok(())
    } else {
        Err(AssetError::HashMismatch {
            file: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// Appends `src` to `out` while feeding the bytes to `hasher`; returns bytes copied.
pub(crate) fn append_hashing(
    src: &Path,
    out: &mut File,
    out_path: &Path,
    hasher: &mut Sha256,
) -> Result<u64, AssetError> {
    let mut file = File::open(src).map_err(AssetError::io("open", src))?;
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(AssetError::io("read", src))?;
        if n == 0 {
            return Ok(total);
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(AssetError::io("write", out_path))?;
        total += n as u64;
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        std::fs::write(&p, b"abc").unwrap();
        // FIPS 180-2 appendix B.1 test vector.
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            sha256_file(&empty).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn multi_block_file_and_concatenation_agree() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(BLOCK * 2 + 17))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, &data[..BLOCK + 5]).unwrap();
        std::fs::write(&b, &data[BLOCK + 5..]).unwrap();
        let whole = dir.path().join("whole");
        std::fs::write(&whole, &data).unwrap();
        let out_path = dir.path().join("out");
        let mut out = File::create(&out_path).unwrap();
        let mut hasher = Sha256::new();
        let n = append_hashing(&a, &mut out, &out_path, &mut hasher).unwrap()
            + append_hashing(&b, &mut out, &out_path, &mut hasher).unwrap();
        drop(out);
        assert_eq!(n, data.len() as u64);
        let expected = hex(&Sha256::digest(&data));
        assert_eq!(hex(&hasher.finalize()), expected);
        assert_eq!(sha256_file(&whole).unwrap(), expected);
        assert_eq!(std::fs::read(&out_path).unwrap(), data);
        let err = verify_file(&whole, &"0".repeat(64))
            .unwrap_err()
            .to_string();
        assert!(err.contains("whole") && err.contains(&expected), "{err}");
    }
}
