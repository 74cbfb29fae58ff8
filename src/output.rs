//! Writing result files: every file goes to a temporary name in its destination folder and is
//! renamed into place only once it is complete, so a failed run never leaves a partial file.

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes a file atomically: `fill` writes the whole content into a temporary file created next to
/// `path`, which is then renamed to `path`. On any error the temporary file is removed.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let mut tmp = temp_file_beside(path)?;
    {
        let mut buffered = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut buffered)?;
        buffered.flush().with_context(|| format!("cannot write {}", path.display()))?;
    }
    tmp.persist(path).map_err(|e| anyhow::anyhow!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// Checks, before any work is done, that `path` can be written: its extension is one of
/// `extensions` (any if empty) and its folder exists and accepts new files.
pub fn check_writable(path: &Path, extensions: &[&str]) -> Result<()> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if !extensions.is_empty() && !extensions.contains(&ext) {
        bail!("output path {} must end in .{}", path.display(), extensions.join(" or ."));
    }
    temp_file_beside(path).map(drop)
}

/// A temporary file in `path`'s folder (removed when dropped unless persisted).
fn temp_file_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "cannot write {}: folder {} does not exist; create it or choose another output path",
            path.display(),
            dir.display()
        );
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(".neoprobe-").suffix(".tmp");
    // Results are ordinary files (0644 before the umask), not private temporaries (0600).
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder.tempfile_in(dir).with_context(|| {
        format!(
            "cannot write {}: folder {} is not writable; choose another output path",
            path.display(),
            dir.display()
        )
    })
}

/// The bytes of a `.npy` file (format 1.0) holding a little-endian float32 C-order array.
pub fn npy_bytes(shape: &[usize], data: &[f32]) -> Vec<u8> {
    assert_eq!(shape.iter().product::<usize>(), data.len(), "npy shape does not match data");
    let shape_text = match shape {
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64
    // and ended by a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A float32 tensor to be stored in a `.safetensors` file.
pub struct NamedTensor<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: &'a [f32],
}

/// The bytes of a `.safetensors` file holding float32 tensors and string metadata.
pub fn safetensors_bytes(tensors: &[NamedTensor], metadata: &HashMap<String, String>) -> Result<Vec<u8>> {
    use safetensors::tensor::{Dtype, TensorView};
    let views = tensors
        .iter()
        .map(|t| {
            let bytes: &[u8] = bytemuck::cast_slice(t.data);
            TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                .map(|v| (t.name.to_string(), v))
                .with_context(|| format!("tensor {} does not match its shape {:?}", t.name, t.shape))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = if metadata.is_empty() { None } else { Some(metadata.clone()) };
    safetensors::serialize(views, metadata).context("cannot serialize safetensors")
}

/// Writes `data` with `shape` to `path`, as `.npy` or `.safetensors` (tensor `activations` with
/// `metadata`) according to the extension.
pub fn write_array(
    path: &Path,
    shape: &[usize],
    data: &[f32],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let bytes = match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => npy_bytes(shape, data),
        Some("safetensors") => {
            safetensors_bytes(&[NamedTensor { name: "activations", shape: shape.to_vec(), data }], metadata)?
        }
        _ => bail!("output path {} must end in .npy or .safetensors", path.display()),
    };
    write_atomic(path, |w| Ok(w.write_all(&bytes)?))
}

/// Checks, before any work, that a run will be able to write its output folder `out`, whose
/// files are `files` (`whose`: "the challenge's", for the messages): an existing folder must be
/// writable, empty unless `force`, with no folder in the way of an output file; a new one must
/// have a parent folder that accepts a new folder.
pub fn check_out_dir(out: &Path, force: bool, files: &[&str], whose: &str) -> Result<()> {
    let shown = out.display();
    if out.exists() {
        if !out.is_dir() {
            bail!("--out-dir {shown} exists and is not a folder; choose another output folder");
        }
        let entries = fs::read_dir(out)
            .with_context(|| format!("cannot read output folder {shown}; choose another --out-dir"))?
            .count();
        if entries > 0 && !force {
            bail!(
                "output folder {shown} already holds {entries} entr{}; pass --force to replace {whose} files in it, or choose another --out-dir",
                if entries == 1 { "y" } else { "ies" }
            );
        }
        if let Some(name) = files.iter().find(|name| out.join(name).is_dir()) {
            bail!("output folder {shown} has a folder named {name} where {whose} file goes; move it or choose another --out-dir");
        }
        if !writable(out) {
            bail!("output folder {shown} is not writable; choose another --out-dir");
        }
        return Ok(());
    }
    let parent = parent_of(out);
    if !parent.is_dir() {
        let blocker = parent.ancestors().find(|a| a.is_file());
        match blocker {
            Some(file) => bail!(
                "cannot create output folder {shown}: {} is a file, not a folder; choose another --out-dir",
                file.display()
            ),
            None => bail!(
                "cannot create output folder {shown}: folder {} does not exist; create it or choose another --out-dir",
                parent.display()
            ),
        }
    }
    // A real attempt, so that read-only file systems and root-proof folders count too.
    let probe = tempfile::Builder::new().prefix(".neoprobe-probe-").tempdir_in(parent).map_err(|e| {
        anyhow::anyhow!(
            "cannot create output folder {shown}: folder {} is not writable ({}); choose another --out-dir",
            parent.display(),
            e.kind()
        )
    })?;
    probe.close().with_context(|| format!("cannot clean up a probe folder in {}", parent.display()))?;
    Ok(())
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether the current user may create files in `dir` (without creating one).
#[cfg(unix)]
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call; access() only reads it.
    unsafe { libc::access(path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(not(unix))]
fn writable(dir: &Path) -> bool {
    fs::metadata(dir).map(|m| !m.permissions().readonly()).unwrap_or(false)
}

/// A fresh folder beside the output folder that receives every file of a run; removed with
/// whatever it holds unless it is published.
pub struct Staging {
    path: PathBuf,
}

impl Staging {
    /// A staging folder for the output folder `out`.
    pub fn create(out: &Path) -> Result<Staging> {
        let parent = parent_of(out);
        let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        for attempt in 0..100u32 {
            let path = parent.join(format!(
                ".{name}.neoprobe-{}-{}-{attempt}",
                std::process::id(),
                stamp.subsec_nanos()
            ));
            // create_dir (not a tempdir) so that the folder gets the usual permissions when it
            // becomes the output folder.
            match fs::create_dir(&path) {
                Ok(()) => return Ok(Staging { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => bail!(
                    "cannot create a staging folder in {} for {} ({e}); choose another --out-dir",
                    parent.display(),
                    out.display()
                ),
            }
        }
        bail!("cannot find a free staging folder name in {}", parent.display())
    }

    /// Where the run writes its files until they are published.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the files `names` into `out`: the whole folder is renamed when `out` does not exist,
    /// otherwise the files are renamed into it one by one (replacing files of the same names).
    pub fn publish(self, out: &Path, names: &[&str]) -> Result<Vec<PathBuf>> {
        self.open_up(names)?;
        let files: Vec<PathBuf> = names.iter().map(|name| out.join(name)).collect();
        if !out.exists() {
            fs::rename(&self.path, out)
                .with_context(|| format!("cannot create output folder {}", out.display()))?;
        } else {
            for (name, target) in names.iter().zip(&files) {
                fs::rename(self.path.join(name), target)
                    .with_context(|| format!("cannot move {name} into output folder {}", out.display()))?;
            }
        }
        Ok(files)
    }
}

impl Staging {
    /// Gives the files the permissions of a file created the usual way (the atomic writer's
    /// temporary files are private, 0600): the staging folder's own mode, which the umask
    /// shaped, without the execute bits.
    #[cfg(unix)]
    fn open_up(&self, names: &[&str]) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&self.path)?.permissions().mode() & 0o666;
        for name in names {
            let path = self.path.join(name);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn open_up(&self, _names: &[&str]) -> Result<()> {
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // After a successful publish of a new folder the path is gone; otherwise this removes the
        // staging folder (and, after a move into an existing folder, the now empty folder).
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_describes_the_array() {
        let bytes = npy_bytes(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)"), "{header}");
        assert!(header.ends_with('\n'));
        assert_eq!(bytes.len(), 10 + header_len + 24);
        assert_eq!(&bytes[10 + header_len + 4..10 + header_len + 8], &1.0f32.to_le_bytes());
    }

    #[test]
    fn npy_one_dimensional_shape_has_trailing_comma() {
        let bytes = npy_bytes(&[3], &[0.0; 3]);
        assert!(String::from_utf8_lossy(&bytes).contains("'shape': (3,)"));
    }

    #[test]
    fn atomic_write_leaves_nothing_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        let result = write_atomic(&path, |_| anyhow::bail!("boom"));
        assert!(result.is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn unknown_extension_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_array(&dir.path().join("x.csv"), &[1], &[0.0], &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains(".npy or .safetensors"));
    }
}
