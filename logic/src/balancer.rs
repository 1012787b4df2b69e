//! The weighted comet balancer behind the nodes API (goim's
//! `internal/logic/balancer.go`).
//!
//! Each comet has a fixed weight and a connection count from its online
//! report. A pick computes every comet's current weight, orders by it, and
//! credits the top comet with one more connection, so successive picks rotate
//! across comets in proportion to their weights.
//!
//! goim multiplies a comet's weight by `regionWeight` when it is in the
//! client's region, but its IP → region lookup is a stub that always returns
//! "", so the boost never applies; rim leaves it out.
//!
//! Differences from goim, on purpose: ties are broken by hostname (goim's
//! order depends on Go map iteration), a comet reporting weight 0 (the proto3
//! default for "unset") counts as weight 1, and an update is not ignored when
//! the comet list shrinks by more than half (goim's discovery glitch guard
//! would keep dead comets forever when most comets really are gone).

use std::collections::HashMap;

use rim_router::ServerOnline;

const MIN_WEIGHT: i64 = 1;
const MAX_WEIGHT: i64 = 1 << 20;

/// How many comets one pick returns (goim `_maxNodes`).
pub(crate) const MAX_NODES: usize = 5;

/// The weight a comet is balanced with: its reported weight, 1 when unset.
pub(crate) fn effective_weight(reported: i32) -> i64 {
    i64::from(reported).max(1)
}

#[derive(Debug, Clone)]
struct Node {
    hostname: String,
    addrs: Vec<String>,
    fixed_weight: i64,
    current_weight: i64,
    current_conns: i64,
    updated: i64,
}

impl Node {
    fn calculate_weight(&mut self, total_weight: i64, total_conns: i64) {
        if total_conns <= 0 || total_weight <= 0 {
            self.current_weight = 0;
            return;
        }
        // Without a region boost goim's `fixedWeight × gain` is the fixed weight.
        let fixed = self.fixed_weight as f64;
        let weight_ratio = fixed / total_weight as f64;
        let conn_ratio = self.current_conns as f64 / total_conns as f64 * 0.5;
        let diff = weight_ratio - conn_ratio;
        let multiple = diff * total_conns as f64;
        let floor = multiple.floor();
        // Halves round down, as in goim.
        let rounded = if floor - multiple >= -0.5 {
            floor
        } else {
            multiple.ceil()
        };
        let weight = (fixed + rounded) as i64;
        self.current_weight = if diff < 0.0 {
            weight.max(MIN_WEIGHT)
        } else {
            weight.min(MAX_WEIGHT)
        };
    }
}

/// One comet chosen by a pick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Picked {
    /// The comet's server id (hostname).
    pub(crate) hostname: String,
    /// Its client-facing addresses.
    pub(crate) addrs: Vec<String>,
}

/// The balancer state: comets with their accumulated counters.
#[derive(Debug, Default)]
pub(crate) struct Balancer {
    nodes: HashMap<String, Node>,
    total_conns: i64,
    total_weight: i64,
}

impl Balancer {
    /// Replaces the comet list with fresh online reports. A comet whose report
    /// is unchanged (same `updated`) keeps the connections credited to it by
    /// picks since; the others restart from their reported counts.
    pub(crate) fn update(&mut self, reports: &[ServerOnline]) {
        let mut nodes = HashMap::with_capacity(reports.len());
        let (mut total_conns, mut total_weight) = (0i64, 0i64);
        for report in reports {
            let node = match self.nodes.remove(&report.server) {
                Some(old) if old.updated == report.updated => old,
                _ => Node {
                    hostname: report.server.clone(),
                    addrs: report
                        .addrs
                        .iter()
                        .filter(|a| !a.is_empty())
                        .cloned()
                        .collect(),
                    fixed_weight: effective_weight(report.weight),
                    current_weight: 0,
                    current_conns: report.conn_count.max(0),
                    updated: report.updated,
                },
            };
            total_conns = total_conns.saturating_add(node.current_conns);
            total_weight = total_weight.saturating_add(node.fixed_weight);
            nodes.insert(report.server.clone(), node);
        }
        self.nodes = nodes;
        self.total_conns = total_conns;
        self.total_weight = total_weight;
    }

    /// Picks up to `max` comets, best first, and credits the best one with
    /// the connection the client is about to make.
    pub(crate) fn pick(&mut self, max: usize) -> Vec<Picked> {
        let (total_weight, total_conns) = (self.total_weight, self.total_conns);
        let mut ranked: Vec<&mut Node> = self.nodes.values_mut().collect();
        for node in ranked.iter_mut() {
            node.calculate_weight(total_weight, total_conns);
        }
        ranked.sort_by(|a, b| {
            b.current_weight
                .cmp(&a.current_weight)
                .then_with(|| a.hostname.cmp(&b.hostname))
        });
        if let Some(top) = ranked.first_mut() {
            top.current_conns += 1;
        } else {
            return Vec::new();
        }
        let picked = ranked
            .iter()
            .take(max)
            .map(|n| Picked {
                hostname: n.hostname.clone(),
                addrs: n.addrs.clone(),
            })
            .collect();
        self.total_conns = self.total_conns.saturating_add(1);
        picked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(server: &str, weight: i32, conns: i64, updated: i64) -> ServerOnline {
        ServerOnline {
            server: server.into(),
            conn_count: conns,
            weight,
            addrs: vec![format!("{server}:3101")],
            updated,
            ..ServerOnline::default()
        }
    }

    fn top(balancer: &mut Balancer) -> String {
        balancer.pick(MAX_NODES)[0].hostname.clone()
    }

    #[test]
    fn empty_balancer_picks_nothing() {
        assert!(Balancer::default().pick(MAX_NODES).is_empty());
    }

    fn share_of_b(weight_a: i32, weight_b: i32, picks: usize) -> usize {
        let mut balancer = Balancer::default();
        balancer.update(&[report("a", weight_a, 0, 1), report("b", weight_b, 0, 1)]);
        (0..picks).filter(|_| top(&mut balancer) == "b").count()
    }

    #[test]
    fn equal_weights_alternate() {
        assert_eq!(share_of_b(1, 1, 400), 200);
    }

    #[test]
    fn picks_lean_to_the_heavier_comet() {
        // goim's formula balances `w/W - 0.5·c/C` across comets, which
        // amplifies weight differences: 2:3 settles near a 30:70 split (and
        // 1:3 would send everything to the heavier comet).
        let b = share_of_b(2, 3, 1000);
        assert!((650..=750).contains(&b), "b picked {b} of 1000");
        assert_eq!(share_of_b(1, 3, 100), 99);
    }

    #[test]
    fn loaded_comet_is_avoided_until_others_catch_up() {
        let mut balancer = Balancer::default();
        balancer.update(&[report("a", 1, 100, 1), report("b", 1, 0, 1)]);
        for _ in 0..50 {
            assert_eq!(top(&mut balancer), "b");
        }
    }

    #[test]
    fn unchanged_reports_keep_credited_connections() {
        let mut balancer = Balancer::default();
        balancer.update(&[report("a", 1, 0, 1), report("b", 1, 5, 1)]);
        assert_eq!(top(&mut balancer), "a");
        assert_eq!(
            (balancer.nodes["a"].current_conns, balancer.total_conns),
            (1, 6)
        );
        // Same report timestamps: the credited connection is remembered.
        balancer.update(&[report("a", 1, 0, 1), report("b", 1, 5, 1)]);
        assert_eq!(
            (balancer.nodes["a"].current_conns, balancer.total_conns),
            (1, 6)
        );
        // A newer report resets the counters to what the comet says.
        balancer.update(&[report("a", 1, 0, 2), report("b", 1, 5, 1)]);
        assert_eq!(
            (balancer.nodes["a"].current_conns, balancer.total_conns),
            (0, 5)
        );
        // A comet that is no longer reported is dropped.
        balancer.update(&[report("b", 1, 5, 1)]);
        assert_eq!(balancer.nodes.len(), 1);
        assert_eq!(top(&mut balancer), "b");
    }

    #[test]
    fn at_most_max_nodes_and_ties_by_hostname() {
        let mut balancer = Balancer::default();
        let reports: Vec<_> = (0..8).map(|i| report(&format!("c{i}"), 1, 0, 1)).collect();
        balancer.update(&reports);
        let picked = balancer.pick(MAX_NODES);
        assert_eq!(picked.len(), MAX_NODES);
        assert_eq!(picked[0].hostname, "c0");
        assert_eq!(picked[0].addrs, vec!["c0:3101".to_string()]);
    }

    #[test]
    fn goim_weight_formula() {
        // goim: fw=2, totalWeight=3, conns=1, totalConns=4:
        // diff = 2/3 - 0.125 = 0.5417, m = 2.1667 -> floor 2 -> weight 4.
        let mut node = Node {
            hostname: "a".into(),
            addrs: vec![],
            fixed_weight: 2,
            current_weight: 0,
            current_conns: 1,
            updated: 0,
        };
        node.calculate_weight(3, 4);
        assert_eq!(node.current_weight, 4);
        // Heavily loaded: fw=1, W=3, c=C=100: diff = 1/3 - 0.5 < 0, and
        // 1 + round(-16.7) < 1 clamps to the minimum weight.
        node.fixed_weight = 1;
        node.current_conns = 100;
        node.calculate_weight(3, 100);
        assert_eq!(node.current_weight, MIN_WEIGHT);
        // No connections anywhere: weight 0.
        node.calculate_weight(3, 0);
        assert_eq!(node.current_weight, 0);
    }
}
