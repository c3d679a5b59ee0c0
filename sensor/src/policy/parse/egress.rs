//! Parsing of the `egress` section (model: `policy/egress.rs`).
use super::{Cx, Node, Value};
use crate::policy::{
    egress::{AllowedDestination, EgressAction, EgressPolicy},
    model::{At, Network},
};

impl Cx<'_> {
    /// `egress: {action, allow: [{network, ports}], allowed_uids, min_bytes, bulk_read:
    /// {bytes, files}, window_seconds, slow_drip: {bytes, window_seconds}, print: {spool},
    /// dns_tunnel: {long_label, entropy_min_length, entropy_bits, long_name, queries,
    /// window_seconds}}`.
    pub(super) fn egress(&mut self, node: &Node) -> Option<At<EgressPolicy>> {
        let f = self.fields(
            node,
            "egress",
            &[
                "action",
                "allow",
                "allowed_uids",
                "min_bytes",
                "bulk_read",
                "window_seconds",
                "slow_drip",
                "print",
                "dns_tunnel",
            ],
        )?;
        let mut e = EgressPolicy::default();
        if let Some(n) = f.get("action") {
            e.action = self.keyword(n, "egress action", EgressAction::NAMES, EgressAction::from_name)?;
        }
        if let Some(n) = f.get("allow") {
            for item in self.seq(n, "egress allow")? {
                if let Some(a) = self.destination(item) {
                    e.allow.push(a);
                }
            }
        }
        if let Some(n) = f.get("allowed_uids") {
            for item in self.seq(n, "allowed_uids")? {
                e.allowed_uids.extend(self.uid(item, "an allowed uid").map(|u| u.value));
            }
        }
        if let Some(n) = f.get("min_bytes") {
            e.min_bytes = self.count(n, "min_bytes")?;
        }
        if let Some(n) = f.get("window_seconds") {
            e.window_seconds = self.count(n, "window_seconds")?.max(1);
        }
        if let Some(n) = f.get("bulk_read") {
            let b = self.fields(n, "bulk_read", &["bytes", "files"])?;
            if let Some(n) = b.get("bytes") {
                e.bulk_bytes = self.count(n, "bulk_read bytes")?;
            }
            if let Some(n) = b.get("files") {
                e.bulk_files = self.count(n, "bulk_read files")?;
            }
        }
        if let Some(n) = f.get("slow_drip") {
            let d = self.fields(n, "slow_drip", &["bytes", "window_seconds"])?;
            if let Some(n) = d.get("bytes") {
                e.slow_drip.bytes = self.count(n, "slow_drip bytes")?;
            }
            if let Some(n) = d.get("window_seconds") {
                e.slow_drip.window_seconds = self.count(n, "slow_drip window_seconds")?.max(1);
            }
        }
        if let Some(n) = f.get("print") {
            let p = self.fields(n, "print", &["spool"])?;
            if let Some(n) = p.get("spool") {
                e.print_spool.clear();
                for item in self.seq(n, "print spool")? {
                    let s = self.string(item, "a spool directory")?;
                    if s.value.starts_with('/') {
                        e.print_spool.push(s.value.into());
                    } else {
                        self.invalid(s.pos, format!("spool directory `{}` is not absolute", s.value));
                    }
                }
            }
        }
        if let Some(n) = f.get("dns_tunnel") {
            self.dns_tunnel(n, &mut e.dns_tunnel);
        }
        Some(At::new(node.pos, e))
    }

    /// `dns_tunnel`: each threshold within the range DNS gives it meaning in.
    fn dns_tunnel(&mut self, node: &Node, d: &mut crate::analyze::dns::Settings) -> Option<()> {
        let f = self.fields(
            node,
            "dns_tunnel",
            &["long_label", "entropy_min_length", "entropy_bits", "long_name", "queries", "window_seconds"],
        )?;
        let length = |cx: &mut Self, key: &str, max: u64, into: &mut usize| {
            if let Some(n) = f.get(key)
                && let Some(v) = cx.count(n, &format!("dns_tunnel {key}"))
            {
                if (1..=max).contains(&v) {
                    *into = v as usize;
                } else {
                    cx.invalid(n.pos, format!("dns_tunnel {key} is {v}; it must be 1–{max} (characters)"));
                }
            }
        };
        length(self, "long_label", 63, &mut d.long_label);
        length(self, "entropy_min_length", 63, &mut d.entropy_min_length);
        length(self, "long_name", 253, &mut d.long_name);
        if let Some(n) = f.get("entropy_bits") {
            let bits = match &n.value {
                Value::Float(x) => Some(*x),
                Value::Int(i) => Some(*i as f64),
                _ => {
                    self.wrong_type(n, "dns_tunnel entropy_bits", "a number");
                    None
                }
            };
            match bits {
                Some(b) if b > 0.0 && b <= 8.0 => d.entropy_bits = b,
                Some(b) => self.invalid(
                    n.pos,
                    format!("dns_tunnel entropy_bits is {b}; it must be above 0 and at most 8 (bits per character)"),
                ),
                None => {}
            }
        }
        if let Some(n) = f.get("queries") {
            d.queries = self.count(n, "dns_tunnel queries")?;
        }
        if let Some(n) = f.get("window_seconds") {
            match self.count(n, "dns_tunnel window_seconds")? {
                0 => self.invalid(n.pos, "dns_tunnel window_seconds must be at least 1".to_owned()),
                v => d.window_seconds = v,
            }
        }
        Some(())
    }

    fn destination(&mut self, node: &Node) -> Option<AllowedDestination> {
        let f = self.fields(node, "an egress allow entry", &["network", "ports"])?;
        let n = f.require(self, "network")?;
        let s = self.string(n, "a network")?;
        let network = match s.value.parse::<Network>() {
            Ok(n) => n,
            Err(why) => {
                self.invalid(s.pos, why);
                return None;
            }
        };
        let mut ports = Vec::new();
        if let Some(n) = f.get("ports") {
            let items = self.seq(n, "ports")?;
            if items.len() > 8 {
                self.invalid(n.pos, "at most 8 ports per allowed network; split the entry".to_owned());
            }
            for item in items {
                match &item.value {
                    Value::Int(p) if (1..=65535).contains(p) => ports.push(*p as u16),
                    _ => self.invalid(item.pos, "a port is a number 1–65535".to_owned()),
                }
            }
        }
        Some(AllowedDestination { network, ports })
    }

    fn count(&mut self, node: &Node, what: &str) -> Option<u64> {
        match &node.value {
            Value::Int(i) if *i >= 0 && *i <= i128::from(u64::MAX) => Some(*i as u64),
            _ => {
                self.wrong_type(node, what, "a non-negative integer");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Arc};

    use crate::policy::{LoadOptions, PolicySet, egress::EgressAction, nss::FixedDirectory};

    fn load(egress: &[&str]) -> Result<PolicySet, String> {
        let texts: Vec<(PathBuf, String)> = egress
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let doc = format!(
                    "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: p{i}}}\nspec:\n  mode: audit\n  protect: []\n  default: {{action: audit, severity: low}}\n{e}"
                );
                (PathBuf::from(format!("p{i}.yaml")), doc)
            })
            .collect();
        let options = LoadOptions { host_checks: false, directory: Arc::new(FixedDirectory::default()) };
        PolicySet::from_texts(&texts, &options).map_err(|e| e.to_string())
    }

    #[test]
    fn section_with_defaults_and_values() {
        let set = load(&["  egress:\n    action: deny\n    allow:\n      - {network: 10.0.0.0/8, ports: [443, 8443]}\n      - {network: '2001:db8::1'}\n    bulk_read: {files: 5}\n"]).unwrap();
        let e = set.egress().unwrap();
        assert_eq!(e.action, EgressAction::Deny);
        assert_eq!(e.allow.len(), 2);
        assert_eq!(e.allow[0].ports, vec![443, 8443]);
        assert_eq!(e.allow[1].network.prefix, 128);
        assert_eq!(e.bulk_files, 5);
        assert_eq!(e.bulk_bytes, 100 << 20, "default kept");
        assert_eq!(e.min_bytes, 1);
        assert_eq!(e.slow_drip.window_seconds, 24 * 3600, "default kept");
        let set = load(&["  egress:\n    slow_drip: {bytes: 5000}\n"]).unwrap();
        assert_eq!(set.egress().unwrap().slow_drip.bytes, 5000);
        assert_eq!(set.egress().unwrap().print_spool, vec![PathBuf::from("/var/spool/cups")]);
        let set = load(&["  egress:\n    print: {spool: [/srv/spool]}\n"]).unwrap();
        assert_eq!(set.egress().unwrap().print_spool, vec![PathBuf::from("/srv/spool")]);
        assert!(load(&["  egress:\n    print: {spool: [spool]}\n"]).unwrap_err().contains("not absolute"));
        assert!(load(&[""]).unwrap().egress().is_none());
        let set =
            load(&["  egress:\n    dns_tunnel: {long_label: 50, entropy_bits: 4, queries: 20}\n"]).unwrap();
        let d = set.egress().unwrap().dns_tunnel;
        assert_eq!((d.long_label, d.entropy_bits, d.queries), (50, 4.0, 20));
        assert_eq!((d.entropy_min_length, d.long_name, d.window_seconds), (16, 120, 600), "defaults kept");
    }

    #[test]
    fn dns_thresholds_out_of_range_are_errors() {
        for (text, want) in [
            ("{long_label: 64}", "long_label is 64; it must be 1–63"),
            ("{long_label: 0}", "long_label is 0"),
            ("{entropy_min_length: 100}", "entropy_min_length is 100"),
            ("{long_name: 254}", "long_name is 254; it must be 1–253"),
            ("{entropy_bits: 9.5}", "entropy_bits is 9.5"),
            ("{entropy_bits: 0}", "entropy_bits is 0"),
            ("{entropy_bits: high}", "entropy_bits"),
            ("{window_seconds: 0}", "window_seconds must be at least 1"),
            ("{queries: -1}", "queries"),
            ("{label: 3}", "label"),
        ] {
            let err = load(&[&format!("  egress:\n    dns_tunnel: {text}\n")]).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    #[test]
    fn errors_are_reported_with_positions() {
        let err = load(&["  egress:\n    action: block\n"]).unwrap_err();
        assert!(err.contains("egress action `block`"), "{err}");
        let err = load(&["  egress:\n    allow: [{network: 10.0.0.0/33}]\n"]).unwrap_err();
        assert!(err.contains("prefix"), "{err}");
        let err = load(&["  egress:\n    allow: [{network: 10.0.0.1, ports: [0]}]\n"]).unwrap_err();
        assert!(err.contains("port"), "{err}");
        let err = load(&["  egress:\n    colour: red\n"]).unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = load(&["  egress: {}\n", "  egress: {}\n"]).unwrap_err();
        assert!(err.contains("second `egress` section"), "{err}");
    }
}
