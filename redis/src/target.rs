//! [`Target`]: one Redis or a Redis Cluster, as a config names it.

use std::fmt;

/// The Redis a store talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One Redis: `redis://host:port/db`.
    Node(String),
    /// A Redis Cluster, by seed nodes (`redis://host:port`); the client
    /// learns every other node, and who serves which slot, from them. Give
    /// several: any one that answers is enough to start.
    Cluster(Vec<String>),
}

impl Target {
    /// The target of a config's two settings: `url` (one Redis) and
    /// `cluster` (a cluster's seed nodes). At most one may be given; `None`
    /// when neither is.
    pub fn from_settings(url: Option<&str>, cluster: &[String]) -> Result<Option<Target>, String> {
        let target = match (url, cluster.is_empty()) {
            (None, true) => return Ok(None),
            (Some(url), true) => Target::Node(url.to_owned()),
            (None, false) => Target::Cluster(cluster.to_vec()),
            (Some(_), false) => {
                return Err(
                    "give redis_url (one Redis) or redis_cluster (a Redis Cluster's seed nodes), not both"
                        .into(),
                )
            }
        };
        target.validate()?;
        Ok(Some(target))
    }

    /// Checks that every URL parses, and that a cluster's seeds name no
    /// database (a cluster has only database 0).
    pub fn validate(&self) -> Result<(), String> {
        for url in self.urls() {
            let client =
                redis::Client::open(url.as_str()).map_err(|e| format!("redis url {url:?}: {e}"))?;
            if self.is_cluster() && client.get_connection_info().redis_settings().db() != 0 {
                return Err(format!(
                    "redis cluster seed {url:?} names a database; a cluster has only database 0"
                ));
            }
        }
        if self.urls().is_empty() {
            return Err("a redis cluster needs at least one seed node".into());
        }
        Ok(())
    }

    /// Whether this is a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// The node's URL, or the cluster's seeds.
    pub fn urls(&self) -> &[String] {
        match self {
            Target::Node(url) => std::slice::from_ref(url),
            Target::Cluster(seeds) => seeds,
        }
    }

    /// A plain client per URL, for what needs a connection of its own to
    /// one node (a pub/sub subscriber).
    pub fn clients(&self) -> redis::RedisResult<Vec<redis::Client>> {
        self.urls()
            .iter()
            .map(|url| redis::Client::open(url.as_str()))
            .collect()
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(url) => f.write_str(url),
            Target::Cluster(seeds) => write!(f, "cluster {}", seeds.join(",")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_url_or_seed_nodes_but_not_both() {
        assert_eq!(Target::from_settings(None, &[]), Ok(None));
        assert_eq!(
            Target::from_settings(Some("redis://127.0.0.1:6379/2"), &[]),
            Ok(Some(Target::Node("redis://127.0.0.1:6379/2".into())))
        );
        let seeds = s(&["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]);
        assert_eq!(
            Target::from_settings(None, &seeds),
            Ok(Some(Target::Cluster(seeds.clone())))
        );
        let both = Target::from_settings(Some("redis://127.0.0.1:6379/"), &seeds).unwrap_err();
        assert!(both.contains("not both"), "{both}");
    }

    #[test]
    fn bad_urls_and_a_cluster_database_are_refused() {
        let bad = Target::from_settings(Some("nonsense://x"), &[]).unwrap_err();
        assert!(bad.contains("nonsense://x"), "{bad}");
        let db = Target::from_settings(None, &s(&["redis://127.0.0.1:7000/3"])).unwrap_err();
        assert!(db.contains("database"), "{db}");
        assert!(Target::Cluster(Vec::new()).validate().is_err());
    }

    #[test]
    fn display_names_the_kind() {
        assert_eq!(
            Target::Cluster(s(&["redis://a:1", "redis://b:2"])).to_string(),
            "cluster redis://a:1,redis://b:2"
        );
        assert_eq!(
            Target::Node("redis://a:1/".into()).to_string(),
            "redis://a:1/"
        );
    }
}
