//! Samba attribution: the client an `smbd` process serves.
//!
//! Samba's `smbd` forks one child per accepted client connection; the child serves only that
//! client and switches its effective uid to the authenticated user's (mapped through NSS, so
//! winbind domain users included) for each request. So the client is the peer of the TCP
//! connection the child holds, read once per process from `/proc/<pid>/fd` (its socket
//! inodes) and `/proc/<pid>/net/tcp{,6}` (its network namespace's sockets): the established
//! socket among its descriptors whose local port a listening socket of that namespace also has
//! (an accepted connection, not one it made). The user is the name of the effective uid at the
//! record (`crate::users`). Cached per process until its exit record.
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use procfs::{
    net::TcpState,
    process::{FDTarget, Process},
};

use crate::event::{client::Client, subject::Program};

/// How long a process found without an accepted connection is not read again.
const RETRY: Duration = Duration::from_secs(5);
/// Most processes remembered.
const MAX_PROCESSES: usize = 16_384;

/// Whether `program` is Samba's `smbd`.
pub fn is_smbd(program: &Program) -> bool {
    program
        .exe
        .as_deref()
        .is_some_and(|exe| crate::event::subject::basename(exe.trim_end_matches(" (deleted)")) == "smbd")
}

/// The client of each `smbd` process seen.
#[derive(Default)]
pub struct SmbClients {
    by_pid: HashMap<u32, (Option<Arc<Client>>, Instant)>,
}

impl SmbClients {
    /// The client `smbd` process `tgid` serves, if it holds an accepted connection.
    pub fn client(&mut self, now: Instant, tgid: u32) -> Option<Arc<Client>> {
        if let Some((client, at)) = self.by_pid.get(&tgid)
            && (client.is_some() || now.duration_since(*at) < RETRY)
        {
            return client.clone();
        }
        let client = accepted_peer(tgid).map(|peer| Arc::new(Client::new(peer.ip(), peer.port())));
        if self.by_pid.len() >= MAX_PROCESSES {
            self.by_pid.clear();
        }
        self.by_pid.insert(tgid, (client.clone(), now));
        client
    }

    /// Process `tgid` exited (its pid may be reused).
    pub fn exited(&mut self, tgid: u32) {
        self.by_pid.remove(&tgid);
    }
}

/// The peer of the TCP connection process `pid` accepted and holds: the established (or
/// peer-closed) socket among its descriptors whose local port is also a listening port in its
/// network namespace. `None` when it holds none, or is gone.
pub fn accepted_peer(pid: u32) -> Option<SocketAddr> {
    let p = Process::new(i32::try_from(pid).ok()?).ok()?;
    let sockets: HashSet<u64> = p
        .fd()
        .ok()?
        .flatten()
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect();
    if sockets.is_empty() {
        return None;
    }
    let table: Vec<_> = p.tcp().unwrap_or_default().into_iter().chain(p.tcp6().unwrap_or_default()).collect();
    let listening: HashSet<u16> =
        table.iter().filter(|e| e.state == TcpState::Listen).map(|e| e.local_address.port()).collect();
    table
        .iter()
        .filter(|e| matches!(e.state, TcpState::Established | TcpState::CloseWait))
        .find(|e| sockets.contains(&e.inode) && listening.contains(&e.local_address.port()))
        .map(|e| e.remote_address)
}

#[cfg(test)]
mod tests {
    use std::{
        io::Read as _,
        net::{TcpListener, TcpStream},
        sync::Arc,
    };

    use super::{accepted_peer, is_smbd};
    use crate::event::subject::{Attribution, Program};

    #[test]
    fn finds_the_accepted_connection_not_the_one_made() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let me = std::process::id();
        assert_eq!(accepted_peer(me), None);
        // A connection this process made: its local port listens nowhere.
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut accepted, peer) = listener.accept().unwrap();
        // Both ends are this process's; only the accepted one has the listening local port.
        assert_eq!(peer, client.local_addr().unwrap());
        assert_eq!(accepted_peer(me), Some(peer));
        drop(client);
        let mut buf = [0u8; 1];
        assert_eq!(accepted.read(&mut buf).unwrap(), 0);
        assert_eq!(accepted_peer(me), Some(peer), "a connection the client closed still names it");
        drop(accepted);
        assert_eq!(accepted_peer(me), None);
    }

    #[test]
    fn recognises_smbd() {
        let program = |exe: &str| Program::new(Some(exe.into()), Arc::from(vec![]), Attribution::Procfs);
        assert!(is_smbd(&program("/usr/sbin/smbd")));
        assert!(is_smbd(&program("/usr/sbin/smbd (deleted)")));
        assert!(!is_smbd(&program("/usr/sbin/nmbd")));
        assert!(!is_smbd(&Program::new(None, Arc::from(vec![]), Attribution::Procfs)));
    }
}
