//! Shared fixtures for the end-to-end tests: a standalone rim on 127.0.0.1:0
//! and a small HTTP client for its push API.

#![allow(dead_code, unreachable_pub)]

pub mod cluster;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use rim::config::StandaloneConfig;
use rim::standalone::Standalone;
use rim_testkit::poll;
use serde_json::Value;

/// A test configuration: every listener on an ephemeral loopback port and
/// online reports every 50 ms so counts converge quickly.
pub fn test_config() -> StandaloneConfig {
    let mut config = StandaloneConfig::default();
    config.comet.tcp_bind = vec!["127.0.0.1:0".into()];
    config.comet.ws_bind = vec!["127.0.0.1:0".into()];
    config.comet.server_id = Some("comet-test".into());
    config.comet.online_report_interval = Duration::from_millis(50);
    config.logic.http_bind = "127.0.0.1:0".into();
    // Tests that need the embedded store give it a directory of their own.
    config.mailbox.store = rim::config::StoreKind::Memory;
    config
}

/// A running server and clients for it.
pub struct Rim {
    pub server: Standalone,
    pub http: Http,
}

impl Rim {
    pub async fn start() -> Rim {
        Rim::start_with(test_config()).await
    }

    pub async fn start_with(config: StandaloneConfig) -> Rim {
        let server = Standalone::bind_and_start(config, None)
            .await
            .expect("standalone starts");
        let http = Http::new(server.http_addr);
        Rim { server, http }
    }

    pub fn tcp(&self) -> SocketAddr {
        self.server.tcp_addrs[0]
    }

    pub fn ws(&self) -> SocketAddr {
        self.server.ws_addrs[0]
    }

    pub fn addr(&self, ws: bool) -> SocketAddr {
        if ws {
            self.ws()
        } else {
            self.tcp()
        }
    }
}

/// The push API over real HTTP.
#[derive(Clone)]
pub struct Http {
    base: String,
    client: reqwest::Client,
}

/// Status and parsed JSON body of a response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
}

impl Http {
    pub fn new(addr: SocketAddr) -> Http {
        Http {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
        }
    }

    pub async fn post(
        &self,
        path_and_query: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Reply> {
        let resp = self
            .client
            .post(format!("{}{}", self.base, path_and_query))
            .body(body)
            .send()
            .await?;
        Self::reply(resp).await
    }

    pub async fn delete(&self, path_and_query: &str) -> Result<Reply> {
        let resp = self
            .client
            .delete(format!("{}{}", self.base, path_and_query))
            .send()
            .await?;
        Self::reply(resp).await
    }

    /// POSTs `json` as the body.
    pub async fn post_json(&self, path: &str, json: &Value) -> Result<Reply> {
        self.post(path, json.to_string()).await
    }

    /// Stores `body` for `mids` (`store=1`, op 1000), asserts success and
    /// returns the message id.
    pub async fn store(&self, mids: &[i64], body: &str) -> String {
        let query: Vec<String> = mids.iter().map(|m| format!("mids={m}")).collect();
        let path = format!("/goim/push/mids?operation=1000&store=1&{}", query.join("&"));
        let reply = self
            .post(&path, body.to_owned())
            .await
            .expect("http request");
        assert_eq!(reply.status, 200, "{path}: {:?}", reply.json);
        assert_eq!(reply.json["code"], 0, "{path}: {:?}", reply.json);
        assert_eq!(
            reply.json["data"]["accepted"],
            mids.len(),
            "{:?}",
            reply.json
        );
        reply.json["data"]["id"]
            .as_str()
            .expect("the reply names the message id")
            .to_owned()
    }

    pub async fn get(&self, path_and_query: &str) -> Result<Reply> {
        let resp = self
            .client
            .get(format!("{}{}", self.base, path_and_query))
            .send()
            .await?;
        Self::reply(resp).await
    }

    async fn reply(resp: reqwest::Response) -> Result<Reply> {
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let json = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => bail!("non-JSON reply ({status}): {text:?}: {e}"),
        };
        Ok(Reply { status, json })
    }

    /// POSTs and asserts goim v2 success `{"code":0}` with HTTP 200.
    pub async fn push_ok(&self, path_and_query: &str, body: impl Into<reqwest::Body>) {
        let reply = self.post(path_and_query, body).await.expect("http request");
        assert_eq!(reply.status, 200, "{path_and_query}: {:?}", reply.json);
        assert_eq!(reply.json["code"], 0, "{path_and_query}: {:?}", reply.json);
    }

    /// POSTs until the push is accepted (HTTP 200), every 200 ms, failing
    /// with `what` and the last answer at `deadline` (a service recovering).
    pub async fn push_until_accepted(
        &self,
        path_and_query: &str,
        body: &'static str,
        deadline: tokio::time::Instant,
        what: &str,
    ) {
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        poll::eventually(within, Duration::from_millis(200), async || {
            let reply = self.post(path_and_query, body).await.expect("http request");
            if reply.status == 200 {
                Ok(())
            } else {
                Err(format!("{what}: {} {:?}", reply.status, reply.json))
            }
        })
        .await
    }

    /// POSTs and asserts goim v1 success `{"ret":1}` with HTTP 200.
    pub async fn push_v1_ok(&self, path_and_query: &str, body: &'static str) {
        let reply = self.post(path_and_query, body).await.expect("http request");
        assert_eq!(reply.status, 200, "{path_and_query}: {:?}", reply.json);
        assert_eq!(reply.json["ret"], 1, "{path_and_query}: {:?}", reply.json);
    }

    /// Polls a GET until `check` accepts the JSON (online counts converge on
    /// the comet's report interval), failing after 10 s.
    pub async fn get_until(&self, path_and_query: &str, check: impl Fn(&Value) -> bool) -> Value {
        poll::eventually(
            Duration::from_secs(10),
            Duration::from_millis(20),
            async || {
                let reply = self.get(path_and_query).await.expect("http request");
                if reply.status == 200 && check(&reply.json) {
                    Ok(reply.json)
                } else {
                    Err(format!(
                        "{path_and_query} never matched; last reply {} {:?}",
                        reply.status, reply.json
                    ))
                }
            },
        )
        .await
    }
}
