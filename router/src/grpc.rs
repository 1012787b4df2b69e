//! The router service over gRPC (`rim.router.Router`): [`RouterService`]
//! serves one shard's [`SessionStore`] to logic, and [`RemoteStore`] is the
//! logic-side client, itself a `SessionStore`, so the sharded [`crate::Router`]
//! composes remote shards exactly like local ones.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rim_proto::pb::router as pb;
use rim_proto::pb::router::router_client::RouterClient;
use rim_proto::pb::router::router_server::{Router as RouterRpc, RouterServer};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::{ServerOnline, SessionStore, StoreError};

/// Serves one shard's store.
#[derive(Clone)]
pub struct RouterService {
    store: Arc<dyn SessionStore>,
}

impl RouterService {
    /// A tonic service over `store`.
    pub fn server(store: Arc<dyn SessionStore>) -> RouterServer<RouterService> {
        RouterServer::new(RouterService { store })
    }
}

/// Records a router RPC's latency when dropped, so a call cancelled by its
/// caller's deadline is recorded too.
struct RequestTimer {
    method: &'static str,
    start: Instant,
}

impl Drop for RequestTimer {
    fn drop(&mut self) {
        metrics::histogram!("rim_router_request_seconds", "method" => self.method)
            .record(self.start.elapsed().as_secs_f64());
    }
}

/// Runs one store call of RPC `method`: its latency goes to
/// `rim_router_request_seconds{method}` and a failure (the store, e.g. Redis,
/// unavailable) to `rim_router_store_errors_total{method}` before it is
/// answered as `UNAVAILABLE`.
async fn observed<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, Status> {
    let _timer = RequestTimer {
        method,
        start: Instant::now(),
    };
    let result = call.await;
    result.map_err(|e| {
        metrics::counter!("rim_router_store_errors_total", "method" => method).increment(1);
        Status::unavailable(e.to_string())
    })
}

fn to_pb(o: &ServerOnline) -> pb::ServerOnline {
    pb::ServerOnline {
        server: o.server.clone(),
        room_count: o.room_count.clone(),
        conn_count: o.conn_count,
        ip_count: o.ip_count,
        addrs: o.addrs.clone(),
        weight: o.weight,
        updated: o.updated,
        grpc_addr: o.grpc_addr.clone(),
    }
}

fn from_pb(o: pb::ServerOnline) -> ServerOnline {
    ServerOnline {
        server: o.server,
        room_count: o.room_count,
        conn_count: o.conn_count,
        ip_count: o.ip_count,
        addrs: o.addrs,
        weight: o.weight,
        updated: o.updated,
        grpc_addr: o.grpc_addr,
    }
}

#[async_trait]
impl RouterRpc for RouterService {
    async fn set_key(&self, req: Request<pb::SetKeyReq>) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        observed("set_key", self.store.set_key(&r.key, &r.server)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn expire_key(
        &self,
        req: Request<pb::KeyReq>,
    ) -> Result<Response<pb::BoolReply>, Status> {
        let ok = observed("expire_key", self.store.expire_key(&req.into_inner().key)).await?;
        Ok(Response::new(pb::BoolReply { ok }))
    }

    async fn del_key(
        &self,
        req: Request<pb::DelKeyReq>,
    ) -> Result<Response<pb::BoolReply>, Status> {
        let r = req.into_inner();
        let ok = observed("del_key", self.store.del_key(&r.key, &r.server)).await?;
        Ok(Response::new(pb::BoolReply { ok }))
    }

    async fn get_keys(
        &self,
        req: Request<pb::GetKeysReq>,
    ) -> Result<Response<pb::GetKeysReply>, Status> {
        let servers = observed("get_keys", self.store.get_keys(&req.into_inner().keys)).await?;
        Ok(Response::new(pb::GetKeysReply {
            servers: servers
                .into_iter()
                .map(|s| pb::MaybeServer {
                    found: s.is_some(),
                    server: s.unwrap_or_default(),
                })
                .collect(),
        }))
    }

    async fn add_mid_key(
        &self,
        req: Request<pb::AddMidKeyReq>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        observed(
            "add_mid_key",
            self.store.add_mid_key(r.mid, &r.key, &r.server),
        )
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn expire_mid(
        &self,
        req: Request<pb::MidReq>,
    ) -> Result<Response<pb::BoolReply>, Status> {
        let ok = observed("expire_mid", self.store.expire_mid(req.into_inner().mid)).await?;
        Ok(Response::new(pb::BoolReply { ok }))
    }

    async fn del_mid_key(
        &self,
        req: Request<pb::DelMidKeyReq>,
    ) -> Result<Response<pb::BoolReply>, Status> {
        let r = req.into_inner();
        let ok = observed(
            "del_mid_key",
            self.store.del_mid_key(r.mid, &r.key, &r.server),
        )
        .await?;
        Ok(Response::new(pb::BoolReply { ok }))
    }

    async fn get_mids(
        &self,
        req: Request<pb::GetMidsReq>,
    ) -> Result<Response<pb::GetMidsReply>, Status> {
        let sessions = observed("get_mids", self.store.get_mids(&req.into_inner().mids)).await?;
        Ok(Response::new(pb::GetMidsReply {
            sessions: sessions
                .into_iter()
                .map(|(key, server)| pb::KeyServer { key, server })
                .collect(),
        }))
    }

    async fn put_online(
        &self,
        req: Request<pb::ServerOnline>,
    ) -> Result<Response<pb::Empty>, Status> {
        let online = from_pb(req.into_inner());
        observed("put_online", self.store.put_online(&online)).await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn online(&self, _req: Request<pb::Empty>) -> Result<Response<pb::OnlineReply>, Status> {
        let servers = observed("online", self.store.online()).await?;
        Ok(Response::new(pb::OnlineReply {
            servers: servers.iter().map(to_pb).collect(),
        }))
    }

    async fn del_server(
        &self,
        req: Request<pb::ServerReq>,
    ) -> Result<Response<pb::CountReply>, Status> {
        let count = observed(
            "del_server",
            self.store.del_server(&req.into_inner().server),
        )
        .await?;
        Ok(Response::new(pb::CountReply { count }))
    }

    async fn announce_rooms(
        &self,
        req: Request<pb::AnnounceRoomsReq>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = req.into_inner();
        if r.ttl_ms == 0 {
            return Err(Status::invalid_argument("ttl_ms: must be greater than 0"));
        }
        let ttl = Duration::from_millis(r.ttl_ms);
        observed(
            "announce_rooms",
            self.store.announce_rooms(&r.server, &r.rooms, ttl),
        )
        .await?;
        Ok(Response::new(pb::Empty {}))
    }

    async fn room_servers(
        &self,
        req: Request<pb::RoomServersReq>,
    ) -> Result<Response<pb::RoomServersReply>, Status> {
        let rooms = observed(
            "room_servers",
            self.store.room_servers(&req.into_inner().rooms),
        )
        .await?;
        Ok(Response::new(pb::RoomServersReply {
            rooms: rooms
                .into_iter()
                .map(|servers| pb::RoomServers { servers })
                .collect(),
        }))
    }
}

/// A router shard reached over gRPC. Connects lazily and reconnects on its
/// own; every call has a deadline.
#[derive(Clone, Debug)]
pub struct RemoteStore {
    client: RouterClient<Channel>,
    addr: String,
}

impl RemoteStore {
    /// A client for the router at `addr` (`host:port`), with `timeout` on
    /// connecting and on every call.
    pub fn new(addr: &str, timeout: Duration) -> Result<RemoteStore, StoreError> {
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| StoreError::Unavailable(format!("router address {addr:?}: {e}")))?
            .connect_timeout(timeout)
            .timeout(timeout);
        Ok(RemoteStore {
            client: RouterClient::new(endpoint.connect_lazy()),
            addr: addr.to_owned(),
        })
    }

    fn fail(&self, status: Status) -> StoreError {
        metrics::counter!("rim_router_client_errors_total", "code" => format!("{:?}", status.code()))
            .increment(1);
        StoreError::Unavailable(format!("router {}: {}", self.addr, status.message()))
    }
}

#[async_trait]
impl SessionStore for RemoteStore {
    async fn set_key(&self, key: &str, server: &str) -> Result<(), StoreError> {
        let req = pb::SetKeyReq {
            key: key.to_owned(),
            server: server.to_owned(),
        };
        self.client
            .clone()
            .set_key(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }

    async fn expire_key(&self, key: &str) -> Result<bool, StoreError> {
        let req = pb::KeyReq {
            key: key.to_owned(),
        };
        let reply = self
            .client
            .clone()
            .expire_key(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner().ok)
    }

    async fn del_key(&self, key: &str, server: &str) -> Result<bool, StoreError> {
        let req = pb::DelKeyReq {
            key: key.to_owned(),
            server: server.to_owned(),
        };
        let reply = self
            .client
            .clone()
            .del_key(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner().ok)
    }

    async fn get_keys(&self, keys: &[String]) -> Result<Vec<Option<String>>, StoreError> {
        let req = pb::GetKeysReq {
            keys: keys.to_vec(),
        };
        let reply = self
            .client
            .clone()
            .get_keys(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply
            .into_inner()
            .servers
            .into_iter()
            .map(|s| s.found.then_some(s.server))
            .collect())
    }

    async fn add_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<(), StoreError> {
        let req = pb::AddMidKeyReq {
            mid,
            key: key.to_owned(),
            server: server.to_owned(),
        };
        self.client
            .clone()
            .add_mid_key(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }

    async fn expire_mid(&self, mid: i64) -> Result<bool, StoreError> {
        let reply = self
            .client
            .clone()
            .expire_mid(pb::MidReq { mid })
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner().ok)
    }

    async fn del_mid_key(&self, mid: i64, key: &str, server: &str) -> Result<bool, StoreError> {
        let req = pb::DelMidKeyReq {
            mid,
            key: key.to_owned(),
            server: server.to_owned(),
        };
        let reply = self
            .client
            .clone()
            .del_mid_key(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner().ok)
    }

    async fn get_mids(&self, mids: &[i64]) -> Result<Vec<(String, String)>, StoreError> {
        let req = pb::GetMidsReq {
            mids: mids.to_vec(),
        };
        let reply = self
            .client
            .clone()
            .get_mids(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply
            .into_inner()
            .sessions
            .into_iter()
            .map(|s| (s.key, s.server))
            .collect())
    }

    async fn put_online(&self, online: &ServerOnline) -> Result<(), StoreError> {
        self.client
            .clone()
            .put_online(to_pb(online))
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }

    async fn online(&self) -> Result<Vec<ServerOnline>, StoreError> {
        let reply = self
            .client
            .clone()
            .online(pb::Empty {})
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply
            .into_inner()
            .servers
            .into_iter()
            .map(from_pb)
            .collect())
    }

    async fn del_server(&self, server: &str) -> Result<u64, StoreError> {
        let req = pb::ServerReq {
            server: server.to_owned(),
        };
        let reply = self
            .client
            .clone()
            .del_server(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(reply.into_inner().count)
    }

    async fn announce_rooms(
        &self,
        server: &str,
        rooms: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let req = pb::AnnounceRoomsReq {
            server: server.to_owned(),
            rooms: rooms.to_vec(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        };
        self.client
            .clone()
            .announce_rooms(req)
            .await
            .map_err(|s| self.fail(s))?;
        Ok(())
    }

    async fn room_servers(&self, rooms: &[String]) -> Result<Vec<Vec<String>>, StoreError> {
        let req = pb::RoomServersReq {
            rooms: rooms.to_vec(),
        };
        let reply = self
            .client
            .clone()
            .room_servers(req)
            .await
            .map_err(|s| self.fail(s))?
            .into_inner();
        if reply.rooms.len() != rooms.len() {
            return Err(StoreError::Unavailable(format!(
                "router {}: {} answers to {} rooms",
                self.addr,
                reply.rooms.len(),
                rooms.len()
            )));
        }
        Ok(reply.rooms.into_iter().map(|r| r.servers).collect())
    }
}

/// Serves `store` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    store: Arc<dyn SessionStore>,
    listener: tokio::net::TcpListener,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(RouterService::server(store))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await
}
