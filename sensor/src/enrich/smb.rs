//! Samba attribution: the client an `smbd` process serves.
//!
//! Samba's `smbd` forks one child per accepted client connection; the child serves only that
//! client and switches its effective uid to the authenticated user's (mapped through NSS, so
//! winbind domain users included) for each request. So the client is the peer of the TCP
//! connection the child holds, read once per process from `/proc/<pid>/fd` (its socket
//! inodes) and `/proc/<pid>/net/tcp{,6}` (its network namespace's sockets): the established
//! socket among its descriptors whose local port a listening socket of that namespace also has
//! (an accepted connection, not one it made). The user is the name of the effective uid at the
//! record (`crate::users`). Cached per process until its pid is reused (a fork record), or
//! for 10 s after its exit record (its late records: a fanotify decision can come after it).
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
/// How long the client of an exited process is kept for its late records (a `policy.decision`
/// from the fanotify responder can be enriched after the process's exit record).
const AFTER_EXIT: Duration = Duration::from_secs(10);
/// Most processes remembered.
const MAX_PROCESSES: usize = 16_384;

/// Whether `program` is Samba's `smbd`.
pub fn is_smbd(program: &Program) -> bool {
    program
        .exe
        .as_deref()
        .is_some_and(|exe| crate::event::subject::basename(exe.trim_end_matches(" (deleted)")) == "smbd")
}

/// What is known about one process.
struct Entry {
    client: Option<Arc<Client>>,
    /// When `/proc` was read.
    read: Instant,
    /// When its exit record passed.
    exited: Option<Instant>,
}

/// The client of each `smbd` process seen.
#[derive(Default)]
pub struct SmbClients {
    by_pid: HashMap<u32, Entry>,
    /// The connection each listening `smbd` accepted last, from the kernel's
    /// `network.accept` record: the child it forks next serves it.
    accepted: HashMap<u32, Arc<Client>>,
}

impl SmbClients {
    /// The client `smbd` process `tgid` serves, if it holds an accepted connection.
    pub fn client(&mut self, now: Instant, tgid: u32) -> Option<Arc<Client>> {
        if let Some(e) = self.by_pid.get(&tgid) {
            let fresh = match e.exited {
                Some(at) => now.duration_since(at) < AFTER_EXIT,
                None => e.client.is_some() || now.duration_since(e.read) < RETRY,
            };
            if fresh {
                return e.client.clone();
            }
        }
        let client = accepted_peer(tgid).map(|peer| Arc::new(Client::new(peer.ip(), peer.port())));
        if self.by_pid.len() >= MAX_PROCESSES {
            self.by_pid.clear();
        }
        self.by_pid.insert(tgid, Entry { client: client.clone(), read: now, exited: None });
        client
    }

    /// Process `tgid` exited: its client is kept for [`AFTER_EXIT`] (or until the pid is
    /// reused, [`Self::forked`]).
    pub fn exited(&mut self, now: Instant, tgid: u32) {
        if let Some(e) = self.by_pid.get_mut(&tgid) {
            e.exited = Some(now);
        }
    }

    /// `smbd` process `tgid` accepted a connection from `client` (a `network.accept` record).
    pub fn accepted(&mut self, tgid: u32, client: Client) {
        if self.accepted.len() >= MAX_PROCESSES {
            self.accepted.clear();
        }
        self.accepted.insert(tgid, Arc::new(client));
    }

    /// A new process `tgid` was forked by `parent`: nothing known about an earlier one with
    /// its pid applies, and when `parent` is an `smbd` that has just accepted a connection,
    /// the child serves that client (smbd forks one child per accepted connection, right
    /// after the accept). This does not depend on reading `/proc` while the child lives.
    pub fn forked(&mut self, now: Instant, parent: u32, tgid: u32) {
        self.by_pid.remove(&tgid);
        if let Some(client) = self.accepted.remove(&parent) {
            if self.by_pid.len() >= MAX_PROCESSES {
                self.by_pid.clear();
            }
            self.by_pid.insert(tgid, Entry { client: Some(client), read: now, exited: None });
        }
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
        net::{TcpListener, TcpStream},
        os::fd::OwnedFd,
        process::{Child, Command, Stdio},
        sync::Arc,
        time::Instant,
    };

    use super::{SmbClients, accepted_peer, is_smbd};
    use crate::event::{
        client::Client,
        subject::{Attribution, Program},
    };

    /// A `sleep` holding `socket` as its only socket (its stdin); other tests of this process
    /// hold connections of their own, so the test looks at a child, not at itself.
    fn holder(socket: impl Into<OwnedFd>) -> Child {
        Command::new("sleep")
            .arg("30")
            .stdin(Stdio::from(socket.into()))
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    }

    #[test]
    fn finds_the_accepted_connection_not_the_one_made() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let made = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, made.local_addr().unwrap());
        let mut server = holder(accepted);
        // The connection it made: its local port listens nowhere.
        let mut client = holder(made);
        assert_eq!(accepted_peer(server.id()), Some(peer));
        assert_eq!(accepted_peer(client.id()), None);
        client.kill().unwrap();
        client.wait().unwrap();
        assert_eq!(accepted_peer(server.id()), Some(peer), "a connection the client closed still names it");
        let mut plain = Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().unwrap();
        assert_eq!(accepted_peer(plain.id()), None);
        for c in [&mut server, &mut plain] {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    #[test]
    fn finds_ipv6_and_ipv4_mapped_connections() {
        // IPv6 loopback, and an IPv4 client of a dual-stack listener (in `tcp6` as mapped).
        for (bind, connect) in [("[::1]:0", "::1"), ("[::]:0", "127.0.0.1")] {
            let listener = TcpListener::bind(bind).unwrap();
            let made = TcpStream::connect((connect, listener.local_addr().unwrap().port())).unwrap();
            let (accepted, peer) = listener.accept().unwrap();
            let mut server = holder(accepted);
            let found = accepted_peer(server.id());
            assert_eq!(found, Some(peer), "{connect}");
            let client = Client::new(found.unwrap().ip(), peer.port());
            assert_eq!(client.address, made.local_addr().unwrap().ip(), "{connect}");
            server.kill().unwrap();
            server.wait().unwrap();
        }
    }

    #[test]
    fn keeps_an_exited_process_client_until_its_pid_is_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let made = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, peer) = listener.accept().unwrap();
        let mut server = holder(accepted);
        let pid = server.id();
        let mut clients = SmbClients::default();
        let now = Instant::now();
        assert_eq!(clients.client(now, pid).map(|c| c.port), Some(peer.port()));
        server.kill().unwrap();
        server.wait().unwrap();
        drop(made);
        clients.exited(now, pid);
        // Late records of the exited process still get it (from the cache: it is gone).
        assert_eq!(clients.client(now, pid).map(|c| c.port), Some(peer.port()));
        clients.forked(now, 1, pid);
        assert!(clients.client(now, pid).is_none());
    }

    /// The child an `smbd` forks right after an accept serves that connection, whether or
    /// not `/proc` can still be read (pid 0 here: there is no such process).
    #[test]
    fn a_child_forked_after_an_accept_serves_its_client() {
        let mut clients = SmbClients::default();
        let now = Instant::now();
        clients.accepted(7, Client::new("::ffff:192.0.2.5".parse().unwrap(), 50123));
        clients.forked(now, 7, 0);
        let c = clients.client(now, 0).expect("the accepted client");
        assert_eq!((c.address.to_string(), c.port), ("192.0.2.5".to_owned(), 50123));
        // The accept is taken by one child only.
        clients.forked(now, 7, 9);
        assert!(clients.by_pid.get(&9).is_none_or(|e| e.client.is_none()));
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
