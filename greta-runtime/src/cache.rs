//! The on-disk cache of compiled code objects. The key hashes everything that determines
//! the output (generated source, full target name, compiler identity, options). An entry
//! carries its full key and a checksum over key and payload, so a corrupt, truncated,
//! renamed or copied file is detected and recompiled, never loaded as another kernel.
//! Writes go to a temporary file renamed into place, so readers never see a partial entry;
//! temporary files a killed writer left behind are swept when the cache is opened.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The first bytes of an entry this version writes.
const MAGIC: &[u8; 8] = b"GRETACO2";
/// The first bytes of entries earlier versions wrote: recognised as ours (cleared, counted),
/// never loaded.
const OLD_MAGICS: [&[u8; 8]; 1] = [b"GRETACO1"];
/// The key is 64 hex digits (a SHA-256).
const KEY_LEN: usize = 64;
/// Magic, key, payload length, checksum.
const HEADER: usize = 8 + KEY_LEN + 8 + 32;
/// File-name prefix of entries being written.
const TMP_PREFIX: &str = ".greta-tmp-";
/// A temporary file older than this belongs to a writer that died: a live one renames its
/// file within the time one compile's result takes to write.
const STALE_TMP: Duration = Duration::from_secs(600);

/// A cache folder.
#[derive(Clone, Debug)]
pub struct KernelCache {
    dir: PathBuf,
}

/// What is in the cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
}

/// The key of one compilation.
pub fn cache_key(source: &str, target: &str, compiler: &str, options: &[String]) -> String {
    let mut h = Sha256::new();
    for part in [source, target, compiler] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    for o in options {
        h.update((o.len() as u64).to_le_bytes());
        h.update(o.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl KernelCache {
    /// The cache at `$GRETA_CACHE_DIR`, else the platform cache folder (`~/.cache/greta`).
    pub fn default_location() -> Result<KernelCache> {
        let dir = match std::env::var_os("GRETA_CACHE_DIR") {
            Some(d) => PathBuf::from(d),
            None => dirs::cache_dir()
                .map(|d| d.join("greta"))
                .ok_or_else(|| Error::Unavailable("no cache folder: set GRETA_CACHE_DIR".into()))?,
        };
        Ok(KernelCache::at(dir))
    }

    /// A cache in `dir` (created on first write); temporary files killed writers left
    /// there are removed.
    pub fn at(dir: impl Into<PathBuf>) -> KernelCache {
        let cache = KernelCache { dir: dir.into() };
        cache.sweep_stale(STALE_TMP);
        cache
    }

    /// Removes temporary files older than `age`; a cache that cannot be read is left to
    /// fail on use, with its path in the error.
    fn sweep_stale(&self, age: Duration) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in rd.filter_map(|e| e.ok()) {
            let is_tmp = entry.file_name().to_string_lossy().starts_with(TMP_PREFIX);
            let old = entry
                .metadata()
                .ok()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|d| d >= age);
            if is_tmp && old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.co"))
    }

    /// The cached code object, if present, intact and stored under `key`. A damaged entry,
    /// or one whose header names another key, is removed.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key);
        let data = std::fs::read(&path).ok()?;
        match decode(&data) {
            Some((stored, payload)) if stored == key.as_bytes() => Some(payload.to_vec()),
            _ => {
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a code object atomically.
    pub fn put(&self, key: &str, code: &[u8]) -> Result<()> {
        let io = |source| Error::Io {
            path: self.dir.display().to_string(),
            source,
        };
        if key.len() != KEY_LEN || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Unavailable(format!(
                "cache key `{key}` is not {KEY_LEN} hex digits (use cache_key)"
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(&self.dir)
            .map_err(io)?;
        tmp.write_all(MAGIC).map_err(io)?;
        tmp.write_all(key.as_bytes()).map_err(io)?;
        tmp.write_all(&(code.len() as u64).to_le_bytes())
            .map_err(io)?;
        tmp.write_all(&checksum(key.as_bytes(), code)).map_err(io)?;
        tmp.write_all(code).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(self.path(key)).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Number and total size of entries.
    pub fn stats(&self) -> Result<CacheStats> {
        let mut s = CacheStats::default();
        for entry in self.entries()? {
            s.entries += 1;
            s.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(s)
    }

    /// Removes every entry this cache wrote (regular `.co` files that start with an entry
    /// header) and any temporary file; other files and folders are left alone. Returns how
    /// many entries were removed.
    pub fn clear(&self) -> Result<u64> {
        self.sweep_stale(Duration::ZERO);
        let mut n = 0;
        for entry in self.entries()? {
            std::fs::remove_file(entry.path()).map_err(|source| Error::Io {
                path: entry.path().display().to_string(),
                source,
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// The entries this cache wrote: regular `.co` files beginning with an entry's magic.
    fn entries(&self) -> Result<Vec<std::fs::DirEntry>> {
        let rd = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    path: self.dir.display().to_string(),
                    source,
                })
            }
        };
        Ok(rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "co"))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter(|e| starts_with_magic(&e.path()))
            .collect())
    }
}

/// Whether the file at `path` begins with the magic of an entry of any version.
fn starts_with_magic(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 8];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| &head == MAGIC || OLD_MAGICS.contains(&&head))
}

/// SHA-256 over the key and the payload.
fn checksum(key: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(key);
    h.update(payload);
    h.finalize().into()
}

/// The stored key and payload of an entry, if its header, length and checksum agree.
fn decode(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if data.len() < HEADER || &data[..8] != MAGIC {
        return None;
    }
    let key = &data[8..8 + KEY_LEN];
    let at = 8 + KEY_LEN;
    let len = u64::from_le_bytes(data[at..at + 8].try_into().ok()?);
    let sum = &data[at + 8..HEADER];
    let payload = &data[HEADER..];
    if payload.len() as u64 != len || checksum(key, payload).as_slice() != sum {
        return None;
    }
    Some((key, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::at(dir.path());
        let key = cache_key("src", "sm_90", "nvrtc-13.0", &["-O3".into()]);
        assert_ne!(
            key,
            cache_key("src", "sm_90", "nvrtc-13.0", &[]),
            "options are part of the key"
        );
        assert!(cache.get(&key).is_none());
        cache.put(&key, b"code object bytes").expect("put");
        assert_eq!(cache.get(&key).as_deref(), Some(&b"code object bytes"[..]));
        assert_eq!(cache.stats().expect("stats").entries, 1);

        // Flip one payload byte: the entry must be rejected and removed.
        let path = dir.path().join(format!("{key}.co"));
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        assert!(cache.get(&key).is_none());
        assert!(!path.exists());

        // Truncation likewise.
        cache.put(&key, b"code object bytes").expect("put");
        std::fs::write(&path, &std::fs::read(&path).expect("read")[..20]).expect("truncate");
        assert!(cache.get(&key).is_none());

        cache.put(&key, b"x").expect("put");
        assert_eq!(cache.clear().expect("clear"), 1);
        assert_eq!(cache.stats().expect("stats"), CacheStats::default());
    }

    #[test]
    fn a_renamed_or_copied_entry_is_not_loaded_as_another_kernel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = KernelCache::at(dir.path());
        let a = cache_key("kernel a", "sm_90", "nvrtc", &[]);
        let b = cache_key("kernel b", "sm_90", "nvrtc", &[]);
        cache.put(&a, b"code of a").expect("put");
        let (pa, pb) = (cache.path(&a), cache.path(&b));
        std::fs::copy(&pa, &pb).expect("copy");
        assert_eq!(cache.get(&b), None, "a copy under b's name must not load");
        assert!(!pb.exists(), "the misplaced entry is removed");
        std::fs::rename(&pa, &pb).expect("rename");
        assert_eq!(cache.get(&b), None, "a renamed entry must not load");
        cache.put(&a, b"code of a").expect("put");
        assert_eq!(cache.get(&a).as_deref(), Some(&b"code of a"[..]));
        assert!(
            cache.put("../escape", b"x").is_err(),
            "keys are hashes, not paths"
        );
    }

    #[test]
    fn stale_temporary_files_are_swept_and_clear_removes_only_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = dir.path().join(format!("{TMP_PREFIX}killed"));
        let fresh = dir.path().join(format!("{TMP_PREFIX}writing"));
        for p in [&stale, &fresh] {
            std::fs::write(p, b"partial").expect("write");
        }
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(hour_ago))
            .expect("age the stale file");
        let cache = KernelCache::at(dir.path());
        assert!(!stale.exists(), "a killed writer's file is swept on open");
        assert!(fresh.exists(), "a live writer's file is left alone");

        let key = cache_key("k", "gfx942", "hiprtc", &[]);
        cache.put(&key, b"entry").expect("put");
        let folder = dir.path().join("folder.co");
        std::fs::create_dir(&folder).expect("mkdir");
        std::fs::write(folder.join("inside"), b"user data").expect("write");
        let foreign = dir.path().join("notes.co");
        std::fs::write(&foreign, b"not an entry").expect("write");
        assert_eq!(cache.stats().expect("stats").entries, 1);
        assert_eq!(cache.clear().expect("clear"), 1);
        assert!(
            folder.join("inside").exists(),
            "a folder named *.co is not touched"
        );
        assert!(
            foreign.exists(),
            "a file the cache did not write is not touched"
        );
        assert!(!fresh.exists(), "clear also removes temporary files");
        assert!(cache.get(&key).is_none());
    }
}
