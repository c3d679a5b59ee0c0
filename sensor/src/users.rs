//! User and group names, through the system's NSS (files, LDAP, winbind…), cached.
use std::{
    collections::HashMap,
    ffi::CStr,
    sync::{Arc, LazyLock, Mutex, PoisonError},
    time::{Duration, Instant},
};

/// How long a looked-up name (or the absence of one) is trusted.
const TTL: Duration = Duration::from_secs(60);

/// Caches uid → user name and gid → group name.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, (Option<Arc<str>>, Instant)>,
    groups: HashMap<u32, (Option<Arc<str>>, Instant)>,
}

impl Names {
    /// The name of user `uid`, if it has one.
    pub fn user(&mut self, uid: u32) -> Option<Arc<str>> {
        cached(&mut self.users, uid, lookup_user)
    }

    /// The name of group `gid`, if it has one.
    pub fn group(&mut self, gid: u32) -> Option<Arc<str>> {
        cached(&mut self.groups, gid, lookup_group)
    }
}

/// The name of user `uid` for records built outside the enrich stage (the detections of
/// `sensor/src/egress/record.rs`), from one process-wide cache trusted as long as [`Names`].
pub fn user_name(uid: u32) -> Option<Arc<str>> {
    static SHARED: LazyLock<Mutex<Names>> = LazyLock::new(Mutex::default);
    SHARED.lock().unwrap_or_else(PoisonError::into_inner).user(uid)
}

fn cached(
    map: &mut HashMap<u32, (Option<Arc<str>>, Instant)>,
    id: u32,
    lookup: fn(u32) -> Option<String>,
) -> Option<Arc<str>> {
    if let Some((name, at)) = map.get(&id)
        && at.elapsed() < TTL
    {
        return name.clone();
    }
    let name: Option<Arc<str>> = lookup(id).map(Into::into);
    if map.len() > 65_536 {
        map.clear();
    }
    map.insert(id, (name.clone(), Instant::now()));
    name
}

/// `getpwuid_r`.
pub fn lookup_user(uid: u32) -> Option<String> {
    let mut buf = vec![0u8; 4096];
    // SAFETY: zeroed passwd is a valid out-parameter.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives the use of pw's strings.
    let rc = unsafe { libc::getpwuid_r(uid, &raw mut pw, buf.as_mut_ptr().cast(), buf.len(), &raw mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside buf.
    Some(unsafe { CStr::from_ptr(pw.pw_name) }.to_string_lossy().into_owned())
}

/// `getgrgid_r`.
pub fn lookup_group(gid: u32) -> Option<String> {
    let mut buf = vec![0u8; 16384];
    // SAFETY: zeroed group is a valid out-parameter.
    let mut gr: libc::group = unsafe { std::mem::zeroed() };
    let mut out: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in lookup_user.
    let rc = unsafe { libc::getgrgid_r(gid, &raw mut gr, buf.as_mut_ptr().cast(), buf.len(), &raw mut out) };
    if rc != 0 || out.is_null() {
        return None;
    }
    // SAFETY: as in lookup_user.
    Some(unsafe { CStr::from_ptr(gr.gr_name) }.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::Names;

    #[test]
    fn root_has_a_name() {
        let mut names = Names::default();
        assert_eq!(names.user(0).as_deref(), Some("root"));
        assert_eq!(names.group(0).as_deref(), Some("root"));
        assert_eq!(names.user(3_999_999_999), None);
        assert_eq!(super::user_name(0).as_deref(), Some("root"));
    }
}
