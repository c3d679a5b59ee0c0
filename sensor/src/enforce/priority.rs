//! Which opens the kernel sends to its priority ring (kernel half:
//! `sensor-ebpf/src/priority.rs`; docs/architecture.md, "Loss").
//!
//! Every protection rule covered by a policy (any mode) gets that policy as its guard: of the
//! policies covering the rule's path, the one whose covering path is the longest (as
//! `lsm::compile_at` chooses). The guard's allowed uids are the users its allow entries name,
//! directly or through a group (NSS at compile time). An open by any other responsible uid is
//! a priority record, which bulk traffic cannot crowd out.
use std::collections::HashSet;

use aya::maps::{Array, HashMap, MapData};
use sensor_common::event::policy::AllowKey;

use crate::{
    bpf::BpfError,
    policy::{PolicySet, compile::TargetKind},
    protect::ProtectSet,
};

/// The compiled guard tables.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Guards {
    /// (protection rule, guard id: policy index + 1).
    pub rule_guard: Vec<(u32, u32)>,
    /// (guard id, uid) pairs the guard allows.
    pub allowed: HashSet<AllowKey>,
}

/// Compiles the guards of `set` for the protected rules of `protect`.
pub fn compile(set: &PolicySet, protect: &ProtectSet) -> Guards {
    let mut g = Guards::default();
    let mut guards = HashSet::new();
    for e in protect.entries() {
        let best = set
            .policies()
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p.covering(&e.path).map(|t| &t.kind) {
                Some(TargetKind::Path(p)) => Some((p.as_os_str().len(), std::cmp::Reverse(i))),
                Some(TargetKind::Glob { .. }) => Some((0, std::cmp::Reverse(i))),
                None => None,
            })
            .max();
        if let Some((_, std::cmp::Reverse(i))) = best {
            g.rule_guard.push((e.value.rule, i as u32 + 1));
            guards.insert(i);
        }
    }
    for i in guards {
        let policy = &set.policies()[i];
        for entry in &policy.allow {
            let mut uids: Vec<u32> = entry.subjects.uids.iter().map(|(u, _)| *u).collect();
            for (gid, _) in &entry.subjects.gids {
                uids.extend(super::lsm::group_members(*gid));
            }
            g.allowed.extend(uids.into_iter().map(|uid| AllowKey { policy: i as u32 + 1, uid }));
        }
    }
    g
}

/// The kernel's guard maps.
pub struct GuardMaps {
    pub rule_guard: Array<MapData, u32>,
    pub allowed: HashMap<MapData, AllowKey, u8>,
}

impl GuardMaps {
    /// Writes compiled guards: new entries first, then stale ones removed.
    pub fn update(&mut self, g: &Guards) -> Result<(), BpfError> {
        let err = |name: &'static str| move |source| BpfError::Map { name, source };
        let rules: HashSet<u32> = g.rule_guard.iter().map(|(r, _)| *r).collect();
        for (rule, guard) in &g.rule_guard {
            self.rule_guard.set(*rule, *guard, 0).map_err(err("GUARD_RULE"))?;
        }
        for k in &g.allowed {
            self.allowed.insert(k, 1, 0).map_err(err("GUARD_ALLOWED"))?;
        }
        for rule in 0..self.rule_guard.len() {
            if !rules.contains(&rule) && self.rule_guard.get(&rule, 0).is_ok_and(|v| v != 0) {
                self.rule_guard.set(rule, 0, 0).map_err(err("GUARD_RULE"))?;
            }
        }
        let stale: Vec<AllowKey> =
            self.allowed.keys().filter_map(Result::ok).filter(|k| !g.allowed.contains(k)).collect();
        for k in stale {
            let _ = self.allowed.remove(&k);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::compile;
    use crate::{policy::PolicySet, protect::ProtectSet};

    #[test]
    fn outsiders_are_the_users_the_allow_list_does_not_name() {
        let tree = std::env::temp_dir().join(format!("mnsensor-guard-test.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::create_dir_all(&tree).unwrap();
        let doc = format!(
            "apiVersion: mnsensor/v1\nkind: AccessPolicy\nmetadata: {{name: p}}\nspec:\n  mode: audit\n  protect: [{{path: \"{}\"}}]\n  allow:\n    - name: e\n      subjects: [{{uid: 1234}}]\n      operations: [read]\n  default: {{action: alert, severity: high}}\n",
            tree.display()
        );
        let texts = vec![(std::path::PathBuf::from("p.yaml"), doc)];
        let set = PolicySet::from_texts(&texts, &crate::policy::LoadOptions::default()).unwrap();
        let protect = ProtectSet::resolve(std::slice::from_ref(&tree), 1024).unwrap();
        let g = compile(&set, &protect);
        assert_eq!(g.rule_guard.len(), 1);
        let guard = g.rule_guard[0].1;
        assert!(g.allowed.contains(&sensor_common::event::policy::AllowKey { policy: guard, uid: 1234 }));
        assert_eq!(g.allowed.len(), 1);
        std::fs::remove_dir_all(&tree).unwrap();
    }
}
