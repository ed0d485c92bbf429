//! The on-disk cache of compiled code objects. The key hashes everything that determines
//! the output (generated source, full target name, compiler identity, options); entries
//! carry a checksum so a corrupt or truncated file is detected and recompiled, never
//! loaded; writes go to a temporary file renamed into place, so readers never see a
//! partial entry.

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"GRETACO1";
const HEADER: usize = 8 + 8 + 32;

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

    /// A cache in `dir` (created on first write).
    pub fn at(dir: impl Into<PathBuf>) -> KernelCache {
        KernelCache { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.co"))
    }

    /// The cached code object, if present and intact. A damaged entry is removed.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let path = self.path(key);
        let data = std::fs::read(&path).ok()?;
        match decode(&data) {
            Some(payload) => Some(payload.to_vec()),
            None => {
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
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io)?;
        tmp.write_all(MAGIC).map_err(io)?;
        tmp.write_all(&(code.len() as u64).to_le_bytes())
            .map_err(io)?;
        tmp.write_all(&Sha256::digest(code)).map_err(io)?;
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

    /// Removes every entry; returns how many were removed.
    pub fn clear(&self) -> Result<u64> {
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
            .collect())
    }
}

/// The payload of an entry, if its header, length and checksum agree.
fn decode(data: &[u8]) -> Option<&[u8]> {
    if data.len() < HEADER || &data[..8] != MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(data[8..16].try_into().ok()?) as usize;
    let payload = data.get(HEADER..)?;
    if payload.len() != len || Sha256::digest(payload).as_slice() != &data[16..48] {
        return None;
    }
    Some(payload)
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
}
