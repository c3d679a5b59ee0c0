//! Users and groups for policies: names → ids at load, and a user's groups (primary and
//! supplementary, `getgrouplist`) at evaluation, through the system's NSS (files, LDAP,
//! sssd, winbind…). A trait so that tests can use a fixed directory.
use std::{
    collections::HashMap,
    ffi::{CStr, CString},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// A passwd entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
}

/// Where user and group names come from.
pub trait Directory: Send + Sync {
    fn user_by_name(&self, name: &str) -> Option<UserEntry>;
    fn user_by_uid(&self, uid: u32) -> Option<UserEntry>;
    fn group_by_name(&self, name: &str) -> Option<u32>;
    fn group_name(&self, gid: u32) -> Option<String>;
    /// The groups of `user`: its primary group and every group listing it as a member.
    fn groups_of(&self, user: &UserEntry) -> Vec<u32>;
}

/// The system's NSS (`getpwnam_r`, `getgrnam_r`, `getgrouplist`…).
#[derive(Clone, Copy, Debug, Default)]
pub struct Nss;

impl Directory for Nss {
    fn user_by_name(&self, name: &str) -> Option<UserEntry> {
        let c = CString::new(name).ok()?;
        passwd(|pw, buf, out| {
            // SAFETY: valid NUL-terminated name and out-parameters (see `passwd`).
            unsafe { libc::getpwnam_r(c.as_ptr(), pw, buf.as_mut_ptr().cast(), buf.len(), out) }
        })
    }

    fn user_by_uid(&self, uid: u32) -> Option<UserEntry> {
        passwd(|pw, buf, out| {
            // SAFETY: valid out-parameters (see `passwd`).
            unsafe { libc::getpwuid_r(uid, pw, buf.as_mut_ptr().cast(), buf.len(), out) }
        })
    }

    fn group_by_name(&self, name: &str) -> Option<u32> {
        let c = CString::new(name).ok()?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // SAFETY: zeroed group is a valid out-parameter.
            let mut gr: libc::group = unsafe { std::mem::zeroed() };
            let mut out: *mut libc::group = std::ptr::null_mut();
            // SAFETY: all pointers are valid for the call.
            let rc = unsafe {
                libc::getgrnam_r(c.as_ptr(), &raw mut gr, buf.as_mut_ptr().cast(), buf.len(), &raw mut out)
            };
            if rc == libc::ERANGE && buf.len() < 4 << 20 {
                buf.resize(buf.len() * 4, 0);
                continue;
            }
            return (rc == 0 && !out.is_null()).then_some(gr.gr_gid);
        }
    }

    fn group_name(&self, gid: u32) -> Option<String> {
        crate::users::lookup_group(gid)
    }

    fn groups_of(&self, user: &UserEntry) -> Vec<u32> {
        let Ok(name) = CString::new(user.name.as_str()) else {
            return vec![user.gid];
        };
        let mut groups: Vec<libc::gid_t> = vec![0; 64];
        loop {
            let mut n = libc::c_int::try_from(groups.len()).unwrap_or(libc::c_int::MAX);
            // SAFETY: `groups` has room for `n` entries; name is NUL-terminated.
            let rc = unsafe { libc::getgrouplist(name.as_ptr(), user.gid, groups.as_mut_ptr(), &raw mut n) };
            let n = usize::try_from(n).unwrap_or(0);
            if rc >= 0 {
                groups.truncate(n);
                return groups;
            }
            if groups.len() >= 65_536 {
                return vec![user.gid];
            }
            groups.resize(n.max(groups.len() * 2), 0);
        }
    }
}

/// Calls a `getpw*_r` function, growing the buffer on ERANGE.
fn passwd(
    call: impl Fn(*mut libc::passwd, &mut [u8], *mut *mut libc::passwd) -> libc::c_int,
) -> Option<UserEntry> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: zeroed passwd is a valid out-parameter.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&raw mut pw, &mut buf, &raw mut out);
        if rc == libc::ERANGE && buf.len() < 4 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || out.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string inside buf.
        let name = unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned();
        return Some(UserEntry { name, uid: pw.pw_uid, gid: pw.pw_gid });
    }
}

/// How long a user's group list is trusted on the evaluation path.
pub const GROUPS_TTL: Duration = Duration::from_secs(60);

/// A user's groups and when they were looked up.
type Cached = (Arc<[u32]>, Instant);

/// The groups of a responsible uid, cached for [`GROUPS_TTL`] (evaluation runs on the
/// event path; NSS may be a network round trip).
pub struct GroupCache {
    directory: Arc<dyn Directory>,
    cache: Mutex<HashMap<u32, Cached>>,
}

impl GroupCache {
    pub fn new(directory: Arc<dyn Directory>) -> Self {
        Self { directory, cache: Mutex::new(HashMap::new()) }
    }

    pub fn directory(&self) -> &dyn Directory {
        &*self.directory
    }

    /// The groups of user `uid` (empty when the uid has no passwd entry).
    pub fn groups(&self, uid: u32) -> Arc<[u32]> {
        if let Ok(cache) = self.cache.lock()
            && let Some((groups, at)) = cache.get(&uid)
            && at.elapsed() < GROUPS_TTL
        {
            return groups.clone();
        }
        let groups: Arc<[u32]> = match self.directory.user_by_uid(uid) {
            Some(user) => self.directory.groups_of(&user).into(),
            None => Arc::from([]),
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() > 65_536 {
                cache.clear();
            }
            cache.insert(uid, (groups.clone(), Instant::now()));
        }
        groups
    }
}

/// A fixed directory for tests and offline checks.
#[derive(Clone, Debug, Default)]
pub struct FixedDirectory {
    pub users: Vec<UserEntry>,
    /// (name, gid, member user names)
    pub groups: Vec<(String, u32, Vec<String>)>,
}

impl Directory for FixedDirectory {
    fn user_by_name(&self, name: &str) -> Option<UserEntry> {
        self.users.iter().find(|u| u.name == name).cloned()
    }
    fn user_by_uid(&self, uid: u32) -> Option<UserEntry> {
        self.users.iter().find(|u| u.uid == uid).cloned()
    }
    fn group_by_name(&self, name: &str) -> Option<u32> {
        self.groups.iter().find(|g| g.0 == name).map(|g| g.1)
    }
    fn group_name(&self, gid: u32) -> Option<String> {
        self.groups.iter().find(|g| g.1 == gid).map(|g| g.0.clone())
    }
    fn groups_of(&self, user: &UserEntry) -> Vec<u32> {
        let mut out = vec![user.gid];
        for (_, gid, members) in &self.groups {
            if members.contains(&user.name) && !out.contains(gid) {
                out.push(*gid);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{Directory, Nss};

    #[test]
    fn nss_knows_root() {
        let root = Nss.user_by_name("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(Nss.user_by_uid(0).unwrap().name, "root");
        assert_eq!(Nss.group_by_name("root"), Some(0));
        assert!(Nss.groups_of(&root).contains(&0));
        assert_eq!(Nss.user_by_name("no-such-user-mnsensor"), None);
        assert_eq!(Nss.group_by_name("no-such-group-mnsensor"), None);
    }
}
