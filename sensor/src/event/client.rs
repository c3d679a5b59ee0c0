//! The remote client a file server process acts for: `client.address`, `client.port` and
//! `mnsensor.smb.user.name`, written after the process block of every record of an `smbd`
//! process that serves a client. Found by the enrich stage (`crate::enrich::smb`).
use std::{net::IpAddr, sync::Arc};

use super::{attr, json};

/// The peer of the connection a Samba `smbd` process accepted (one `smbd` child serves one
/// client connection).
#[derive(Debug)]
pub struct Client {
    pub address: IpAddr,
    pub port: u16,
    /// `client.address` and `client.port`, without a leading comma.
    block: Box<[u8]>,
}

impl Client {
    /// The client at `address`:`port` (an IPv4-mapped IPv6 address is written as IPv4, as in
    /// the `network.*` records).
    pub fn new(address: IpAddr, port: u16) -> Self {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let mut block = Vec::with_capacity(64);
        json::pair(&mut block, attr::CLIENT_ADDRESS, &address.to_string());
        json::pair(&mut block, attr::CLIENT_PORT, &port);
        Self { address, port, block: block.into() }
    }
}

/// What a subject served by a file server carries: the client's connection, and the user the
/// server acted as at the time of the record (the name of its effective uid through NSS).
#[derive(Clone, Debug)]
pub struct Served {
    pub client: Arc<Client>,
    pub user: Option<Arc<str>>,
}

impl Served {
    /// Writes `client.address`, `client.port`, `mnsensor.smb.user.name`.
    pub fn write(&self, out: &mut Vec<u8>) {
        json::sep(out);
        out.extend_from_slice(&self.client.block);
        json::opt(out, attr::SMB_USER_NAME, self.user.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, sync::Arc};

    use super::{Client, Served};

    #[test]
    fn writes_ipv4_mapped_clients_as_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let served =
            Served { client: Arc::new(Client::new(mapped, 50_123)), user: Some("EXAMPLE\\taro".into()) };
        let mut out = b"{\"a\":1".to_vec();
        served.write(&mut out);
        out.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["client.address"], "192.0.2.7");
        assert_eq!(v["client.port"], 50_123);
        assert_eq!(v["mnsensor.smb.user.name"], "EXAMPLE\\taro");
        let v6 = Client::new("2001:db8::1".parse().unwrap(), 1);
        assert_eq!(v6.address.to_string(), "2001:db8::1");
    }
}
