//! Where the cache lives and which python runs pip, resolved from environment
//! values. The resolution is a pure function of a `CacheEnv` snapshot so that
//! it is tested without mutating the process environment (tests run in
//! parallel threads). The fallbacks follow the XDG Base Directory spec:
//! an empty or relative `XDG_CACHE_HOME` is ignored.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::error::AssetError;

/// The environment values that decide the cache root and the interpreter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheEnv {
    /// `IVG_CACHE_DIR`: the cache root itself, used as given.
    pub ivg_cache_dir: Option<OsString>,
    /// `XDG_CACHE_HOME`: the root is `$XDG_CACHE_HOME/ivg` when absolute.
    pub xdg_cache_home: Option<OsString>,
    /// `HOME`: the root is `$HOME/.cache/ivg` as the last resort.
    pub home: Option<OsString>,
    /// `IVG_PYTHON`: the interpreter that runs `-m pip`; default `python3`.
    pub ivg_python: Option<OsString>,
}

impl CacheEnv {
    /// Snapshot of the current process environment.
    pub fn from_process() -> Self {
        CacheEnv {
            ivg_cache_dir: std::env::var_os("IVG_CACHE_DIR"),
            xdg_cache_home: std::env::var_os("XDG_CACHE_HOME"),
            home: std::env::var_os("HOME"),
            ivg_python: std::env::var_os("IVG_PYTHON"),
        }
    }

    /// `$IVG_CACHE_DIR`, else `$XDG_CACHE_HOME/ivg`, else `$HOME/.cache/ivg`.
    pub fn cache_root(&self) -> Result<PathBuf, AssetError> {
        if let Some(dir) = non_empty(&self.ivg_cache_dir) {
            return Ok(PathBuf::from(dir));
        }
        if let Some(xdg) = non_empty(&self.xdg_cache_home).filter(|x| Path::new(x).is_absolute()) {
            return Ok(Path::new(xdg).join("ivg"));
        }
        if let Some(home) = non_empty(&self.home) {
            return Ok(Path::new(home).join(".cache").join("ivg"));
        }
        Err(AssetError::NoCacheDir)
    }

    /// `$IVG_PYTHON`, else `python3` (looked up on `PATH` when run).
    pub fn python(&self) -> PathBuf {
        non_empty(&self.ivg_python).map_or_else(|| PathBuf::from("python3"), PathBuf::from)
    }
}

fn non_empty(v: &Option<OsString>) -> Option<&OsString> {
    v.as_ref().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(ivg: Option<&str>, xdg: Option<&str>, home: Option<&str>) -> CacheEnv {
        CacheEnv {
            ivg_cache_dir: ivg.map(OsString::from),
            xdg_cache_home: xdg.map(OsString::from),
            home: home.map(OsString::from),
            ivg_python: None,
        }
    }

    fn root(e: &CacheEnv) -> PathBuf {
        e.cache_root().unwrap_or_else(|err| panic!("{err}"))
    }

    #[test]
    fn ivg_cache_dir_wins_over_everything() {
        assert_eq!(
            root(&env(Some("/data/ivg"), Some("/x"), Some("/home/u"))),
            PathBuf::from("/data/ivg")
        );
        assert_eq!(
            root(&env(Some("rel/cache"), None, None)),
            PathBuf::from("rel/cache")
        );
    }

    #[test]
    fn xdg_then_home() {
        assert_eq!(
            root(&env(None, Some("/xdg"), Some("/home/u"))),
            PathBuf::from("/xdg/ivg")
        );
        assert_eq!(
            root(&env(Some(""), Some(""), Some("/home/u"))),
            PathBuf::from("/home/u/.cache/ivg")
        );
        // A relative XDG_CACHE_HOME is invalid per the XDG spec and ignored.
        assert_eq!(
            root(&env(None, Some("xdg"), Some("/home/u"))),
            PathBuf::from("/home/u/.cache/ivg")
        );
    }

    #[test]
    fn nothing_set_is_a_clear_error() {
        let err = env(None, Some(""), None)
            .cache_root()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("IVG_CACHE_DIR"), "{err}");
    }

    #[test]
    fn python_defaults_to_python3() {
        assert_eq!(CacheEnv::default().python(), PathBuf::from("python3"));
        let e = CacheEnv {
            ivg_python: Some("/opt/py/bin/python".into()),
            ..CacheEnv::default()
        };
        assert_eq!(e.python(), PathBuf::from("/opt/py/bin/python"));
        let empty = CacheEnv {
            ivg_python: Some("".into()),
            ..CacheEnv::default()
        };
        assert_eq!(empty.python(), PathBuf::from("python3"));
    }
}
