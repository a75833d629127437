use super::*;

// ---- the network ---------------------------------------------------------------

/// A network namespace joined to this one by a veth pair; removed (with
/// the pair) when dropped.
pub(super) struct Namespace {
    pub(super) name: String,
    /// The end inside the namespace: the partition takes it down.
    pub(super) inner_link: String,
    /// This side's address (the scheduler's and the other workers').
    pub(super) outer_addr: String,
    /// The address inside.
    pub(super) inner_addr: String,
}

pub(super) fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Namespace {
    pub(super) fn create() -> Result<Namespace, String> {
        let pid = std::process::id();
        let ns = Namespace {
            name: format!("dask-chaos-{pid}"),
            inner_link: format!("dc{}n", pid % 1_000_000),
            outer_addr: format!("10.213.{}.1", 100 + pid % 150),
            inner_addr: format!("10.213.{}.2", 100 + pid % 150),
        };
        let outer_link = format!("dc{}o", pid % 1_000_000);
        ip(&["netns", "add", &ns.name])?;
        let (name, inner, outer) = (&ns.name, &ns.inner_link, &outer_link);
        ip(&["link", "add", outer, "type", "veth", "peer", "name", inner])?;
        ip(&["link", "set", inner, "netns", name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.outer_addr),
            "dev",
            outer,
        ])?;
        ip(&["link", "set", outer, "up"])?;
        ip(&[
            "-n",
            name,
            "addr",
            "add",
            &format!("{}/30", ns.inner_addr),
            "dev",
            inner,
        ])?;
        ip(&["-n", name, "link", "set", inner, "up"])?;
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        // Traffic stays on the pair: checked before anything starts.
        let here = ip(&["route", "get", &ns.outer_addr])?;
        if !here.starts_with("local ") {
            return Err(format!("{} is not local here: {here}", ns.outer_addr));
        }
        let out = ip(&["route", "get", &ns.inner_addr])?;
        if !out.contains(&format!(" dev {outer} ")) {
            return Err(format!(
                "{} is not reached through {outer}: {out}",
                ns.inner_addr
            ));
        }
        let back = ip(&["-n", name, "route", "get", &ns.outer_addr])?;
        if !back.contains(&format!(" dev {inner} ")) {
            return Err(format!(
                "from {name}, {} is not reached through {inner}: {back}",
                ns.outer_addr
            ));
        }
        if !ip(&["-n", name, "route", "show", "default"])?
            .trim()
            .is_empty()
        {
            return Err(format!("{name} has a default route"));
        }
        Ok(ns)
    }

    pub(super) fn set_link(&self, up: bool) -> Result<(), String> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.name, "link", "set", &self.inner_link, state]).map(|_| ())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

extern "C" {
    pub(super) fn geteuid() -> u32;
}

/// A 5 MB tmpfs, unmounted and removed when dropped.
pub(super) struct SmallDisk {
    pub(super) dir: std::path::PathBuf,
}

impl SmallDisk {
    pub(super) fn mount() -> Result<SmallDisk, String> {
        let dir = std::env::temp_dir().join(format!("dask-chaos-{}-disk", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=5m", "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "--full-disk needs to mount a tmpfs (root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).output();
        let _ = std::fs::remove_dir(&self.dir);
    }
}

pub(super) fn can_partition() -> bool {
    // SAFETY: geteuid takes no argument, touches no memory of ours and
    // cannot fail.
    let root = unsafe { geteuid() } == 0;
    root && ip(&["netns", "list"]).is_ok()
}
