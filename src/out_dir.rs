//! Output folders of commands that write several files (`challenge`, the sweeps): checked before
//! any work, filled in a staging folder beside them, and published only once every file is
//! complete, so that a failed run leaves nothing behind.

use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Checks, before any work, that a run will be able to write its output folder: an existing one
/// must be a writable folder, empty unless `force`, with no folder in the way of one of `files`;
/// a new one must have a parent folder that accepts a new folder. `whose` names the files in the
/// `--force` hint ("the challenge's files").
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
                "output folder {shown} already holds {entries} entr{}; pass --force to replace {whose} in it, or choose another --out-dir",
                if entries == 1 { "y" } else { "ies" }
            );
        }
        if let Some(name) = files.iter().find(|name| out.join(name).is_dir()) {
            bail!("output folder {shown} has a folder named {name} where a file of this run goes; move it or choose another --out-dir");
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
    pub path: PathBuf,
}

impl Staging {
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

    /// The path of output file `name` inside the staging folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Moves `files` into `out`: the whole folder is renamed when `out` does not exist,
    /// otherwise the files are renamed into it one by one (replacing files of the same names).
    pub fn publish(self, out: &Path, files: &[&str]) -> Result<Vec<PathBuf>> {
        self.open_up(files)?;
        let targets: Vec<PathBuf> = files.iter().map(|name| out.join(name)).collect();
        if !out.exists() {
            fs::rename(&self.path, out)
                .with_context(|| format!("cannot create output folder {}", out.display()))?;
        } else {
            for (name, target) in files.iter().zip(&targets) {
                fs::rename(self.path.join(name), target)
                    .with_context(|| format!("cannot move {name} into output folder {}", out.display()))?;
            }
        }
        Ok(targets)
    }

    /// Gives the files the permissions of a file created the usual way (the atomic writer's
    /// temporary files may be private): the staging folder's own mode, which the umask shaped,
    /// without the execute bits.
    #[cfg(unix)]
    fn open_up(&self, files: &[&str]) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&self.path)?.permissions().mode() & 0o666;
        for name in files {
            let path = self.path.join(name);
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the permissions of {}", path.display()))?;
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn open_up(&self, _files: &[&str]) -> Result<()> {
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
    fn unpublished_staging_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        {
            let staging = Staging::create(&out).unwrap();
            fs::write(staging.file("a.txt"), "a").unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn publish_moves_only_the_named_files_into_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("keep.txt"), "mine").unwrap();
        check_out_dir(&out, false, &["a.txt"], "the files").unwrap_err();
        check_out_dir(&out, true, &["a.txt"], "the files").unwrap();
        let staging = Staging::create(&out).unwrap();
        fs::write(staging.file("a.txt"), "a").unwrap();
        let files = staging.publish(&out, &["a.txt"]).unwrap();
        assert_eq!(files, vec![out.join("a.txt")]);
        assert_eq!(fs::read_to_string(out.join("keep.txt")).unwrap(), "mine");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "the staging folder is gone");
    }
}
