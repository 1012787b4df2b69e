#!/usr/bin/env python3
"""A small IM client for rim's chat tour (README, "Chat"): standard library only.

    python3 scripts/chat.py MID [--room live://1] [--host 127.0.0.1] [--port 3101]

It connects as user MID in IM mode, syncs what it missed since its last run
(it keeps its epoch and last seq in .chat-MID.json), acks what it holds, and
prints every message. Type lines to send:

    to 456 hello            a message to user 456
    group 9 hello all       a message to group 9
    room hello room         a message to the room given with --room
    read                    mark everything held as read
"""

import argparse
import itertools
import json
import socket
import struct
import sys
import threading
import time

HEADER = struct.Struct(">IHHII")  # packLen, headerLen=16, ver, op, seq
LOCK = threading.Lock()


def send(sock, op, seq, body=b""):
    with LOCK:
        sock.sendall(HEADER.pack(16 + len(body), 16, 1, op, seq) + body)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except OSError:
            chunk = b""
        if not chunk:
            sys.exit("connection closed by the server")
        data += chunk
    return data


def read(sock):
    n, _, _, op, seq = HEADER.unpack(recv_exact(sock, 16))
    return op, seq, recv_exact(sock, n - 16)


class State:
    """(epoch, last contiguous seq), kept across runs."""

    def __init__(self, mid):
        self.path = f".chat-{mid}.json"
        try:
            with open(self.path) as f:
                saved = json.load(f)
            self.epoch, self.last = saved["epoch"], saved["last"]
        except (OSError, ValueError, KeyError):
            self.epoch, self.last = None, 0
        self.syncing = True

    def save(self):
        with open(self.path, "w") as f:
            json.dump({"epoch": self.epoch, "last": self.last}, f)


def ticker(sock, state):
    """Every second: ack what is held (op 21); every 30 s: heartbeat (op 2)."""
    acked = 0
    for tick in itertools.count():
        try:
            if tick % 30 == 0:
                send(sock, 2, 0)
            if state.last > acked:
                acked = state.last
                send(sock, 21, 0, json.dumps({"seq": acked}).encode())
        except OSError:
            return
        time.sleep(1)


def typing(sock, state, room):
    """Lines typed become op 4 (send) or op 22 (read)."""
    seqs = itertools.count(100)
    for line in sys.stdin:
        words = line.split(maxsplit=2)
        seq = next(seqs)
        message = {"op": 1000, "id": f"m{int(time.time() * 1000)}-{seq}"}
        if words[:1] == ["read"]:
            send(sock, 22, seq, json.dumps({"seq": state.last}).encode())
            continue
        if len(words) == 3 and words[0] == "to":
            message.update(to=int(words[1]), body={"text": words[2].strip()})
        elif len(words) == 3 and words[0] == "group":
            message.update(group=int(words[1]), body={"text": words[2].strip()})
        elif words[:1] == ["room"] and room:
            message.update(room=room, body={"text": line.split(maxsplit=1)[1].strip()})
        else:
            print("? to MID TEXT | group GID TEXT | room TEXT | read", flush=True)
            continue
        send(sock, 4, seq, json.dumps(message).encode())


def main():
    parser = argparse.ArgumentParser(description="rim chat tour client")
    parser.add_argument("mid", type=int)
    parser.add_argument("--room", default="")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3101)
    args = parser.parse_args()
    state = State(args.mid)
    sock = socket.create_connection((args.host, args.port))
    since = {"seq": state.last}
    if state.epoch:
        since["epoch"] = state.epoch
    token = {"mid": args.mid, "key": f"chat-{args.mid}", "room_id": args.room, "im": True, "since": since}
    send(sock, 7, 1, json.dumps(token).encode())
    threading.Thread(target=ticker, args=(sock, state), daemon=True).start()
    threading.Thread(target=typing, args=(sock, state, args.room), daemon=True).start()

    def sync():
        if not state.syncing:
            state.syncing = True
            send(sock, 18, 0, json.dumps({"seq": state.last, "epoch": state.epoch}).encode())

    while True:
        op, seq, body = read(sock)
        if op in (3, 8):
            continue
        text = body.decode(errors="replace")
        if op == 19:
            begin = json.loads(body)
            if not begin["complete"]:
                print(f"-- some older messages are gone (first is now {begin['first']})", flush=True)
            if begin["epoch"] != state.epoch or not begin["complete"]:
                state.epoch, state.last = begin["epoch"], begin["from"] - 1
        elif op == 20:
            end = json.loads(body)
            state.syncing = False
            if end.get("more") or "code" in end:
                time.sleep("code" in end)
                sync()
        elif op == 5:
            print(f"-- sent: {text}", flush=True)
        elif op == 23:
            print(f"-- another device: {text}", flush=True)
        elif seq == 0:
            print(f"room: {text}", flush=True)
        elif seq == state.last + 1:
            state.last = seq
            state.save()
            print(f"#{seq} {text}", flush=True)
        elif seq > state.last + 1:
            sync()


if __name__ == "__main__":
    main()
