//! The transport-independent life of a connection: auth handshake, session
//! registration, the op dispatch (docs/protocol.md, "Operations"), the
//! writer, and teardown.
//!
//! Ordering guarantees: the session is registered before the auth reply is
//! buffered, and the task is the only writer, so no push can precede op 8;
//! replies and pushes reach the socket in the order the task handled them.
//! A join (op 8 with a room, op 12, op 24) is applied and answered only once
//! logic has recorded this comet as holding the room (`announce`), so a room
//! push accepted after the answer finds this comet (docs/protocol.md,
//! "Rooms").

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use rim_proto::pb::im::{ReadReq, SendReply, SendReq, SyncReq};
use rim_proto::pb::logic::{ConnectReply, ConnectReq, DisconnectReq, HeartbeatReq, ReceiveReq};
use rim_proto::{Frame, Op};
use tokio::time::{Instant, Sleep};
use tracing::{debug, info, warn};

use super::{
    log_close, CloseReason, ConnCtx, ConnInfo, FrameIo, Incoming, Opened, Slot, FINISH_TIMEOUT,
};
use crate::announce::AnnounceError;
use crate::im::{self, ImGate, SeqBody, SyncAnswer, SyncRequest};
use crate::limits::FrameRate;
use crate::logic::LogicCallError;
use crate::metrics;
use crate::push::Push;
use crate::room::{self, RoomRefusal};
use crate::session::{Closed, Session};

/// Runs an authenticated connection until it closes, then tears it down.
/// `handshake` is the boxed transport setup and [`establish`]; `None` if it
/// failed (already logged).
///
/// The handshake and the teardown run boxed: their state (the WebSocket
/// upgrade, logic requests and replies, timers) is freed when they finish, so
/// an idle connection's task holds only what the frame loop needs: the
/// session, the transport and the heartbeat timer.
pub(crate) async fn serve<T, F>(handshake: Pin<Box<F>>, _opened: Opened)
where
    T: FrameIo,
    F: Future<Output = Option<(Active, T)>> + Send + ?Sized,
{
    let Some((active, mut io)) = handshake.await else {
        return;
    };
    let reason = active.run(&mut io).await;
    // Logic is told before the client hears of the close (and before `io`,
    // the socket, is dropped), so a client that sees the close can rely on
    // its mapping being gone (or left to its successor).
    Box::pin(async move {
        if matches!(reason, CloseReason::Shutdown) {
            active.drain(&mut io).await;
        }
        teardown(&active, &reason).await;
        io.finish(&reason).await;
    })
    .await;
}

/// Authenticates a connection whose transport is ready (TCP accepted,
/// WebSocket upgraded) within `deadline`, registers the session and buffers
/// the auth reply; `cookie` is the WebSocket `Cookie` header ("" on TCP).
/// Gives `io` back for the frame loop; on failure logs the close.
pub(crate) async fn establish<T: FrameIo>(
    ctx: Arc<ConnCtx>,
    mut io: T,
    conn: ConnInfo,
    cookie: String,
    deadline: Instant,
    slot: Slot,
) -> Option<(Active, T)> {
    match authenticated(ctx, &mut io, conn, cookie, deadline).await {
        Ok(active) => {
            // From here `Active` gives the connection's slot back.
            slot.into_session();
            Some((active, io))
        }
        Err(reason) => {
            log_close(&conn, None, &reason);
            io.finish(&reason).await;
            None
        }
    }
}

/// Authenticates within the handshake deadline, registers the session and
/// buffers the auth reply.
async fn authenticated<T: FrameIo>(
    ctx: Arc<ConnCtx>,
    io: &mut T,
    conn: ConnInfo,
    cookie: String,
    deadline: Instant,
) -> Result<Active, CloseReason> {
    let (auth, reply) = tokio::select! {
        biased;
        () = ctx.closing.cancelled() => return Err(CloseReason::Shutdown),
        result = tokio::time::timeout_at(deadline, authenticate(&ctx, io, &conn, cookie)) => {
            match result {
                Ok(result) => result?,
                Err(_) => return Err(CloseReason::HandshakeTimeout(ctx.config.handshake_timeout)),
            }
        }
    };
    let ConnectReply {
        mid,
        key,
        room_id,
        accepts,
        heartbeat,
        im,
        since,
    } = reply;
    let since = since.filter(|_| im);
    if !room_id.is_empty() {
        // Within the handshake deadline, like the connect itself.
        let announced = tokio::select! {
            biased;
            () = ctx.closing.cancelled() => Err(CloseReason::Shutdown),
            result = tokio::time::timeout_at(deadline, ctx.rooms.ensure(&room_id)) => match result {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(CloseReason::RoomAnnounce(e)),
                Err(_) => Err(CloseReason::HandshakeTimeout(ctx.config.handshake_timeout)),
            },
        };
        if let Err(reason) = announced {
            // Logic recorded the session at connect; the client never gets
            // op 8, so the session is removed again.
            let req = DisconnectReq {
                mid,
                key: key.clone(),
                server: ctx.server_id().to_owned(),
            };
            if let Err(e) = ctx
                .logic
                .call("disconnect", ctx.logic.client().disconnect(req))
                .await
            {
                warn!(conn.id = conn.id, key = %key, mid, error = %e, "logic disconnect failed");
            }
            return Err(reason);
        }
    }
    let session = Arc::new(Session::with_im(
        conn.id,
        Arc::from(key),
        mid,
        conn.peer.ip(),
        &accepts,
        // With `since`, live stored frames are held from the start: the
        // first sync runs right after op 8.
        im.then(|| ImGate::new(since.map(|s| (s.seq, s.epoch)))),
    ));
    ctx.hub
        .register(&session, (!room_id.is_empty()).then_some(room_id.as_str()));
    ::metrics::gauge!(metrics::SESSIONS).increment(1.0);
    // Registered first: no push can be queued before this reply goes out.
    io.queue_reply(&auth.reply(Op::AuthReply, Bytes::new()));
    debug!(
        conn.id = conn.id,
        peer.addr = %conn.peer,
        key = %session.key,
        mid,
        room = room_id,
        im,
        "authenticated"
    );
    let heartbeat = match u64::try_from(heartbeat) {
        Ok(nanos) if nanos > 0 => Duration::from_nanos(nanos),
        _ => ctx.config.heartbeat_timeout,
    };
    let (min, max) = (
        ctx.config.logic_heartbeat_interval_min,
        ctx.config.logic_heartbeat_interval_max,
    );
    Ok(Active {
        ctx,
        session,
        conn,
        heartbeat,
        logic_heartbeat_interval: rand::rng().random_range(min..=max),
    })
}

/// Unregisters the session, counts what it still had queued, logs the close
/// and, if the key was still this session's, tells logic.
async fn teardown(active: &Active, reason: &CloseReason) {
    let Active {
        ctx, session, conn, ..
    } = active;
    let current = ctx.hub.unregister(session);
    ::metrics::gauge!(metrics::SESSIONS).decrement(1.0);
    let lost = session.close(Closed::Ended);
    if lost > 0 {
        debug!(conn.id = conn.id, key = %session.key, mid = session.mid, lost, "queued messages dropped at close");
        metrics::dropped(metrics::DROP_CONNECTION_CLOSED, lost as u64);
    }
    log_close(conn, Some(session), reason);
    if !current {
        // Kicked: the key's mapping in logic belongs to the successor now.
        return;
    }
    let req = DisconnectReq {
        mid: session.mid,
        key: session.key.to_string(),
        server: ctx.server_id().to_owned(),
    };
    if let Err(e) = ctx
        .logic
        .call("disconnect", ctx.logic.client().disconnect(req))
        .await
    {
        warn!(conn.id = conn.id, key = %session.key, mid = session.mid, error = %e, "logic disconnect failed");
    }
}

/// Reads until op 7 (other frames are ignored) and asks logic to connect.
async fn authenticate<T: FrameIo>(
    ctx: &ConnCtx,
    io: &mut T,
    conn: &ConnInfo,
    cookie: String,
) -> Result<(Frame, ConnectReply), CloseReason> {
    let mut rate = FrameRate::default();
    let auth = loop {
        let incoming = io.read_frame().await?;
        if !matches!(incoming, Incoming::End) {
            count_frame(ctx, &mut rate)?;
        }
        match incoming {
            Incoming::Frame(frame) if frame.op == Op::Auth.code() => break frame,
            Incoming::Frame(frame) => debug!(
                conn.id = conn.id,
                peer.addr = %conn.peer,
                op = frame.op,
                "frame before auth ignored"
            ),
            // A pong to a ping before auth.
            Incoming::Control => io.flush().await?,
            Incoming::End => return Err(CloseReason::ClientClosed),
        }
    };
    let req = ConnectReq {
        server: ctx.server_id().to_owned(),
        cookie,
        token: auth.body.clone(),
    };
    let reply = ctx
        .logic
        .call("connect", ctx.logic.client().connect(req))
        .await
        .map_err(CloseReason::AuthFailed)?;
    if reply.key.is_empty() {
        return Err(CloseReason::AuthFailed(LogicCallError::Refused(
            "logic returned an empty key".to_owned(),
        )));
    }
    Ok((auth, reply))
}

/// Counts one client frame against `comet.max_frames_per_sec`.
fn count_frame(ctx: &ConnCtx, rate: &mut FrameRate) -> Result<(), CloseReason> {
    let max = ctx.config.max_frames_per_sec;
    if rate.allow(max, ctx.limits.second()) {
        Ok(())
    } else {
        Err(CloseReason::FrameRate(max))
    }
}

/// An authenticated connection.
pub(crate) struct Active {
    ctx: Arc<ConnCtx>,
    session: Arc<Session>,
    conn: ConnInfo,
    /// Close if no op 2 arrives within this.
    heartbeat: Duration,
    /// Least time between two logic heartbeats of this connection.
    logic_heartbeat_interval: Duration,
}

impl Drop for Active {
    /// Gives back the connection's slot in the comet's limits (taken over
    /// from the handshake's [`Slot`]).
    fn drop(&mut self) {
        self.ctx.limits.release(self.conn.peer.ip());
    }
}

impl Active {
    async fn run<T: FrameIo>(&self, io: &mut T) -> CloseReason {
        // Shutdown closes every registered session; one registered after
        // that sees `closing` here.
        if self.ctx.closing.is_cancelled() {
            return CloseReason::Shutdown;
        }
        if let Some((seq, epoch)) = self.session.take_since() {
            // Boxed, like `apply`: only needed while it runs.
            let sync = self.sync(seq, epoch, im::SYNC_LIMIT_DEFAULT, 0);
            if let Err(reason) = Box::pin(sync).await {
                return reason;
            }
        }
        let timer = tokio::time::sleep(self.heartbeat);
        tokio::pin!(timer);
        let mut rate = FrameRate::default();
        loop {
            match self.session.take_queue() {
                Ok(queue) => {
                    for push in &queue {
                        io.queue_push(push);
                    }
                }
                Err(closed) => return closed.into(),
            }
            if io.has_output() {
                if let Err(reason) = self.flush(io, timer.as_mut()).await {
                    return reason;
                }
            }
            // Reads come before the queue notification, and the queue is
            // drained on every iteration, so neither a flood of client frames
            // nor a stream of pushes starves the other. Pushes that arrived
            // during the write left a notification, so this does not sleep.
            // No `closing` branch: shutdown closes the session, which wakes
            // `notified` (and keeps this task's future small).
            let read = tokio::select! {
                biased;
                () = timer.as_mut() => return CloseReason::HeartbeatTimeout(self.heartbeat),
                read = io.read_frame() => read,
                () = self.session.notified() => continue,
            };
            let incoming = match read {
                Ok(Incoming::End) => return CloseReason::ClientClosed,
                Ok(incoming) => incoming,
                Err(reason) => return reason,
            };
            if let Err(reason) = count_frame(&self.ctx, &mut rate) {
                return reason;
            }
            // A control frame's answer is buffered: flushed at the top.
            let Incoming::Frame(frame) = incoming else {
                continue;
            };
            if frame.op == Op::Heartbeat.code() {
                // Only op 2 keeps the connection alive, as in goim.
                timer.as_mut().reset(Instant::now() + self.heartbeat);
            }
            // Boxed: a logic call's state is only needed while it runs.
            match Box::pin(self.apply(frame)).await {
                Ok(Some(reply)) => io.queue_reply(&reply),
                // Answered through the session's queue (a sync), or not at all.
                Ok(None) => {}
                Err(reason) => return reason,
            }
        }
    }

    /// Writes everything buffered; a close of the session (also at shutdown)
    /// or the heartbeat deadline abandons a write stuck on a client that does
    /// not read.
    async fn flush<T: FrameIo>(
        &self,
        io: &mut T,
        mut timer: Pin<&mut Sleep>,
    ) -> Result<(), CloseReason> {
        let write = io.flush();
        tokio::pin!(write);
        let mut pushed = false;
        loop {
            tokio::select! {
                biased;
                () = self.session.notified() => {
                    if let Some(closed) = self.session.closed() {
                        return Err(closed.into());
                    }
                    // A push arrived: the frame loop must look at the queue
                    // again after this write (a push into a non-empty queue
                    // does not notify again).
                    pushed = true;
                }
                () = timer.as_mut() => return Err(CloseReason::HeartbeatTimeout(self.heartbeat)),
                written = &mut write => {
                    if pushed {
                        self.session.renotify();
                    }
                    return written;
                }
            }
        }
    }

    /// At shutdown: writes what the comet accepted for this session before
    /// the shutdown began (still queued, or buffered by a write the shutdown
    /// interrupted), for at most [`FINISH_TIMEOUT`].
    async fn drain<T: FrameIo>(&self, io: &mut T) {
        while let Ok(queue) = self.session.take_queue() {
            if queue.is_empty() {
                break;
            }
            for push in &queue {
                io.queue_push(push);
            }
        }
        if io.has_output() {
            match tokio::time::timeout(FINISH_TIMEOUT, io.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    debug!(conn.id = self.conn.id, key = %self.session.key, error = %e, "final write at shutdown failed")
                }
                Err(_) => {
                    debug!(conn.id = self.conn.id, key = %self.session.key, "final write at shutdown timed out")
                }
            }
        }
    }

    /// Handles one client frame after auth and returns the reply, if it has
    /// one of its own.
    async fn apply(&self, frame: Frame) -> Result<Option<Frame>, CloseReason> {
        let session = &self.session;
        if session.im {
            match frame.op() {
                Op::Sync => return self.sync_request(&frame).await.map(|()| None),
                Op::Ack => {
                    self.ack(&frame);
                    return Ok(None);
                }
                Op::Read => return self.read(&frame).await.map(|()| None),
                Op::SendMsg => {
                    self.send(frame);
                    return Ok(None);
                }
                _ => {}
            }
        }
        self.apply_goim(frame).await.map(Some)
    }

    /// An IM session's op 18: a malformed body is answered with op 20
    /// `{"code": 400}` and nothing else.
    async fn sync_request(&self, frame: &Frame) -> Result<(), CloseReason> {
        match SyncRequest::parse(&frame.body) {
            Ok(req) => {
                let limit = req.limit();
                self.sync(req.seq, req.epoch.unwrap_or_default(), limit, frame.seq)
                    .await
            }
            Err(reason) => {
                debug!(conn.id = self.conn.id, key = %self.session.key, mid = self.session.mid, reason = %reason, "sync refused");
                metrics::im_sync("bad_request");
                let end = Push::encode(im::sync_error(frame.seq, 400, &reason).into());
                self.session.push(&end, None, self.ctx.hub.session_queue());
                Ok(())
            }
        }
    }

    /// Runs one sync from `after` of `epoch` ("" = none): holds live stored
    /// frames, reads the page through logic and queues op 19, the page, op
    /// 20 and the held frames the page did not have. `echo` is the header
    /// seq of the client's op 18 (0 for the token's `since`).
    async fn sync(
        &self,
        after: u32,
        epoch: String,
        limit: u32,
        echo: i32,
    ) -> Result<(), CloseReason> {
        let session = &self.session;
        let capacity = self.ctx.hub.session_queue();
        session.begin_sync();
        let req = SyncReq {
            mid: session.mid,
            after,
            epoch,
            limit,
        };
        let call = self
            .ctx
            .logic
            .call("sync", self.ctx.logic.client().sync(req));
        let result = tokio::select! {
            biased;
            () = self.ctx.closing.cancelled() => return Err(CloseReason::Shutdown),
            result = call => result,
        };
        match result {
            Ok(reply) => {
                metrics::im_sync(if reply.complete {
                    "complete"
                } else {
                    "incomplete"
                });
                let answer = SyncAnswer::new(reply, echo);
                let more = session.finish_sync(&answer, capacity);
                debug!(conn.id = self.conn.id, key = %session.key, mid = session.mid, after, last = answer.last, more, "synced");
            }
            Err(e) => {
                warn!(conn.id = self.conn.id, key = %session.key, mid = session.mid, error = %e, "sync failed");
                metrics::im_sync("error");
                let code = if matches!(e, crate::logic::LogicCallError::Refused(_)) {
                    400
                } else {
                    503
                };
                let end = Push::encode(im::sync_error(echo, code, &e.to_string()).into());
                session.fail_sync(&end, capacity);
            }
        }
        Ok(())
    }

    /// An IM session's op 21: recorded, sent to logic with the next batch.
    fn ack(&self, frame: &Frame) {
        let session = &self.session;
        match SeqBody::parse(&frame.body) {
            Ok(seq) => {
                ::metrics::counter!(metrics::IM_ACKS).increment(1);
                self.ctx.acks.record(session.mid, &session.key, seq);
            }
            Err(reason) => {
                info!(conn.id = self.conn.id, key = %session.key, mid = session.mid, reason = %reason, "ack ignored: body is not {{\"seq\": N}}");
            }
        }
    }

    /// An IM session's op 22: the user's read mark, through logic (which
    /// tells the user's other IM sessions).
    async fn read(&self, frame: &Frame) -> Result<(), CloseReason> {
        let session = &self.session;
        let seq = match SeqBody::parse(&frame.body) {
            Ok(seq) => seq,
            Err(reason) => {
                info!(conn.id = self.conn.id, key = %session.key, mid = session.mid, reason = %reason, "read ignored: body is not {{\"seq\": N}}");
                return Ok(());
            }
        };
        ::metrics::counter!(metrics::IM_READS).increment(1);
        let req = ReadReq {
            mid: session.mid,
            key: session.key.to_string(),
            seq,
        };
        let call = self
            .ctx
            .logic
            .call("read", self.ctx.logic.client().read(req));
        tokio::select! {
            biased;
            () = self.ctx.closing.cancelled() => return Err(CloseReason::Shutdown),
            result = call => {
                if let Err(e) = result {
                    warn!(conn.id = self.conn.id, key = %session.key, mid = session.mid, error = %e, "logic read failed");
                }
            }
        }
        Ok(())
    }

    /// An IM session's op 4: handed to logic without holding up this
    /// connection's reads; op 5 (echoing the header seq) is queued like a
    /// push when logic answers, or with code 503 when it does not in time.
    fn send(&self, frame: Frame) {
        let ctx = Arc::clone(&self.ctx);
        let session = Arc::clone(&self.session);
        self.ctx.tracker.spawn(async move {
            let rooms = session.rooms();
            let req = SendReq {
                mid: session.mid,
                key: session.key.to_string(),
                body: frame.body.clone(),
                room: rooms.primary().map(|r| r.to_string()).unwrap_or_default(),
                rooms: rooms.others().iter().map(|r| r.to_string()).collect(),
            };
            let reply = match ctx.logic.call("send", ctx.logic.client().send(req)).await {
                Ok(reply) => reply,
                Err(e) => {
                    warn!(conn.id = session.id, key = %session.key, mid = session.mid, error = %e, "logic send failed");
                    SendReply {
                        id: im::client_msg_id(&frame.body),
                        code: 503,
                        reason: "unavailable: the message was not accepted, send it again".into(),
                    }
                }
            };
            metrics::im_send(reply.code);
            let push = Push::encode(im::send_reply(frame.seq, &reply).into());
            session.push(&push, None, ctx.hub.session_queue());
        });
    }

    /// goim's ops (and every op of a session that is not an IM session).
    async fn apply_goim(&self, frame: Frame) -> Result<Frame, CloseReason> {
        let session = &self.session;
        match frame.op() {
            Op::Heartbeat => {
                let online = session
                    .room()
                    .map_or(0, |room| self.ctx.hub.room_online(&room));
                self.maybe_logic_heartbeat();
                Ok(frame.reply(
                    Op::HeartbeatReply,
                    Bytes::copy_from_slice(&online.to_be_bytes()),
                ))
            }
            Op::ChangeRoom => {
                match std::str::from_utf8(&frame.body) {
                    Ok(room) => {
                        if !room.is_empty() {
                            // No refusal exists for op 12: a room that
                            // cannot be recorded closes the connection.
                            if let Err(e) = self.announce(room).await {
                                return Err(if self.ctx.closing.is_cancelled() {
                                    CloseReason::Shutdown
                                } else {
                                    CloseReason::RoomAnnounce(e)
                                });
                            }
                        }
                        self.ctx
                            .hub
                            .change_room(session, (!room.is_empty()).then_some(room));
                        debug!(conn.id = self.conn.id, key = %session.key, mid = session.mid, room, "room changed");
                    }
                    Err(_) => info!(
                        conn.id = self.conn.id,
                        key = %session.key,
                        mid = session.mid,
                        "change room ignored: room id is not utf-8"
                    ),
                }
                Ok(frame.reply(Op::ChangeRoomReply, frame.body.clone()))
            }
            Op::JoinRoom | Op::LeaveRoom => self.room_request(&frame).await,
            Op::Sub => {
                match parse_ops(&frame.body) {
                    Some(ops) => {
                        if !session.sub(&ops) {
                            info!(conn.id = self.conn.id, key = %session.key, mid = session.mid, "sub ignored: too many accepted ops");
                        }
                    }
                    None => {
                        info!(conn.id = self.conn.id, key = %session.key, mid = session.mid, "sub ignored: body is not a comma-separated int32 list")
                    }
                }
                Ok(frame.reply(Op::SubReply, frame.body.clone()))
            }
            Op::Unsub => {
                match parse_ops(&frame.body) {
                    Some(ops) => session.unsub(&ops),
                    None => {
                        info!(conn.id = self.conn.id, key = %session.key, mid = session.mid, "unsub ignored: body is not a comma-separated int32 list")
                    }
                }
                Ok(frame.reply(Op::UnsubReply, frame.body.clone()))
            }
            op => {
                let reply = frame.reply(op, Bytes::new());
                let req = ReceiveReq {
                    mid: session.mid,
                    proto: Some(frame.into()),
                };
                let call = self
                    .ctx
                    .logic
                    .call("receive", self.ctx.logic.client().receive(req));
                tokio::select! {
                    biased;
                    () = self.ctx.closing.cancelled() => return Err(CloseReason::Shutdown),
                    result = call => {
                        if let Err(e) = result {
                            warn!(conn.id = self.conn.id, key = %session.key, mid = session.mid, op = op.code(), error = %e, "logic receive failed");
                        }
                    }
                }
                Ok(reply)
            }
        }
    }

    /// Announces `room` to logic unless its record is known to live past
    /// the margin (sharing a call in flight); gives up at shutdown.
    async fn announce(&self, room: &str) -> Result<(), AnnounceError> {
        tokio::select! {
            biased;
            () = self.ctx.closing.cancelled() => Err(AnnounceError::Abandoned),
            result = self.ctx.rooms.ensure(room) => result.map(|_| ()),
        }
    }

    /// op 24 (join a room) or op 26 (leave one): answered with op 25 or 27,
    /// the room id echoed when done, else `{"code", "reason"}`. A join is
    /// checked, then announced to logic, then applied.
    async fn room_request(&self, frame: &Frame) -> Result<Frame, CloseReason> {
        let session = &self.session;
        let join = frame.op() == Op::JoinRoom;
        let result = match room::room_id(&frame.body) {
            Ok(room) if join => match self.ctx.hub.check_join(session, room) {
                Ok(()) => match self.announce(room).await {
                    Ok(()) => self.ctx.hub.join_room(session, room),
                    Err(AnnounceError::Abandoned) if self.ctx.closing.is_cancelled() => {
                        return Err(CloseReason::Shutdown)
                    }
                    Err(e) => {
                        warn!(conn.id = self.conn.id, key = %session.key, mid = session.mid, room, error = %e, "join refused: room not recorded");
                        Err(RoomRefusal::Unavailable)
                    }
                },
                Err(refusal) => Err(refusal),
            },
            Ok(room) => self.ctx.hub.leave_room(session, room),
            Err(refusal) => Err(refusal),
        };
        let (op, reply_op) = if join {
            ("join", Op::JoinRoomReply)
        } else {
            ("leave", Op::LeaveRoomReply)
        };
        let label = result.err().map_or("ok", RoomRefusal::label);
        ::metrics::counter!(metrics::ROOM_REQUESTS, "op" => op, "result" => label).increment(1);
        Ok(match result {
            Ok(()) => {
                debug!(conn.id = self.conn.id, key = %session.key, mid = session.mid, op, room = %String::from_utf8_lossy(&frame.body), "room request done");
                frame.reply(reply_op, frame.body.clone())
            }
            Err(refusal) => {
                debug!(conn.id = self.conn.id, key = %session.key, mid = session.mid, op, reason = %refusal.reason(), "room request refused");
                let body = serde_json::json!({"code": refusal.code(), "reason": refusal.reason()});
                frame.reply(reply_op, Bytes::from(body.to_string()))
            }
        })
    }

    /// Refreshes logic's mapping TTL at most once per interval, without
    /// holding up this connection's frames.
    fn maybe_logic_heartbeat(&self) {
        if !self
            .session
            .start_logic_heartbeat(Instant::now(), self.logic_heartbeat_interval)
        {
            return;
        }
        let ctx = Arc::clone(&self.ctx);
        let session = Arc::clone(&self.session);
        self.ctx.tracker.spawn(async move {
            let req = HeartbeatReq {
                mid: session.mid,
                key: session.key.to_string(),
                server: ctx.server_id().to_owned(),
            };
            let result = ctx
                .logic.call("heartbeat", ctx.logic.client().heartbeat(req))
                .await;
            if let Err(e) = &result {
                warn!(conn.id = session.id, key = %session.key, mid = session.mid, error = %e, "logic heartbeat failed");
            }
            session.finish_logic_heartbeat(result.is_ok(), Instant::now());
        });
    }
}

/// Parses a sub/unsub body `"1000, 1001"`; `None` if any element is not an
/// int32 (goim then ignores the whole request).
fn parse_ops(body: &[u8]) -> Option<Vec<i32>> {
    std::str::from_utf8(body)
        .ok()?
        .split(',')
        .map(|op| op.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_ops;

    #[test]
    fn ops_parse_like_goim() {
        assert_eq!(parse_ops(b"2000,2001"), Some(vec![2000, 2001]));
        assert_eq!(parse_ops(b" 1 , 2 "), Some(vec![1, 2]));
        assert_eq!(parse_ops(b"-5"), Some(vec![-5]));
        assert_eq!(parse_ops(b""), None);
        assert_eq!(parse_ops(b"1,"), None);
        assert_eq!(parse_ops(b"1,x"), None);
        assert_eq!(parse_ops(b"99999999999"), None);
        assert_eq!(parse_ops(&[0xff]), None);
    }
}
