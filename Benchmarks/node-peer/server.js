// The peer mediagate's chat fan-out is measured against (Benchmarks/chat-fanout.py): the chat
// server people write by hand in Node, Express for the JSON calls and `ws` for the sockets,
// speaking the part of mediagate's protocol the benchmark uses. State is in memory (no
// database): the peer gets every advantage, mediagate stores each message in SQLite or
// PostgreSQL before it fans it out.
//
//   NODE_PATH=/usr/share/nodejs node Benchmarks/node-peer/server.js PORT
//
// Debian's node-express and node-ws (scripts/install-deps.sh --bench).
'use strict';
const crypto = require('crypto');
const http = require('http');
const express = require('express');
const { WebSocketServer, WebSocket } = require('ws');

const port = Number(process.argv[2] || 8001);
// A socket whose unsent frames pass this is dropped as too slow, as mediagate drops one whose
// queue is full: neither server buffers without bound for a client that stopped reading.
const maxBufferedBytes = 4 << 20;

const usersByToken = new Map();
const rooms = new Map();
let nextUserId = 1;
let nextRoomId = 1;
let nextMessageId = 1;

const app = express();
app.use(express.json({ limit: '64kb' }));

app.get('/healthz', (req, res) => res.json({ status: 'ok' }));

app.post('/api/auth/register', (req, res) => {
  const { username, password } = req.body || {};
  if (typeof username !== 'string' || typeof password !== 'string' || password.length < 8) {
    return res.status(422).json({ error: { code: 'unprocessable', message: 'username and password' } });
  }
  const user = { id: nextUserId++, username };
  const token = crypto.randomBytes(32).toString('base64url');
  usersByToken.set(token, user);
  res.status(201).json({ access_token: token, refresh_token: token, token_type: 'bearer',
                         user: { id: String(user.id), username } });
});

function authenticated(req, res, next) {
  const header = req.get('authorization') || '';
  const user = usersByToken.get(header.startsWith('Bearer ') ? header.slice(7) : '');
  if (!user) return res.status(401).json({ error: { code: 'unauthorized', message: 'log in' } });
  req.user = user;
  next();
}

app.post('/api/rooms', authenticated, (req, res) => {
  const room = { id: nextRoomId++, name: String((req.body || {}).name || 'room'), members: new Set([req.user.id]),
                 sockets: new Set(), messages: [] };
  rooms.set(room.id, room);
  res.json({ id: room.id, name: room.name });
});

app.post('/api/rooms/:id/join', authenticated, (req, res) => {
  const room = rooms.get(Number(req.params.id));
  if (!room) return res.status(404).json({ error: { code: 'not_found', message: 'no such room' } });
  room.members.add(req.user.id);
  res.json({ id: room.id, name: room.name });
});

const server = http.createServer(app);
const sockets = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://127.0.0.1');
  const match = url.pathname.match(/^\/ws\/chat\/(\d+)$/);
  const user = usersByToken.get(url.searchParams.get('token') || '');
  const room = match && rooms.get(Number(match[1]));
  if (!user || !room || !room.members.has(user.id)) {
    socket.end(`HTTP/1.1 ${user ? 404 : 401} ${user ? 'Not Found' : 'Unauthorized'}\r\nContent-Length: 0\r\n\r\n`);
    return;
  }
  sockets.handleUpgrade(req, socket, head, (ws) => serve(ws, user, room));
});

function serve(ws, user, room) {
  room.sockets.add(ws);
  ws.on('close', () => room.sockets.delete(ws));
  ws.send(JSON.stringify({ type: 'connected', room_id: room.id, room_name: room.name, sender: user.username,
                           user_id: user.id, timestamp: new Date().toISOString() }));
  ws.on('message', (data) => {
    let frame;
    try { frame = JSON.parse(data); } catch { return ws.send(JSON.stringify({ type: 'error', code: 'bad_frame' })); }
    if (frame.type === 'ping') return ws.send(JSON.stringify({ type: 'pong' }));
    if (frame.type !== 'message') return;
    const message = { id: nextMessageId++, room_id: room.id, user_id: user.id, sender: user.username,
                      content: String(frame.content || ''), client_id: frame.client_id || null,
                      timestamp: new Date().toISOString() };
    room.messages.push(message);
    // Encoded once; every socket in the room is sent the same bytes.
    const encoded = Buffer.from(JSON.stringify({ type: 'message', id: message.id, message_id: message.id,
      room_id: room.id, user_id: user.id, sender: user.username, content: message.content,
      message_type: 'text', client_id: message.client_id, timestamp: message.timestamp }));
    for (const peer of room.sockets) {
      if (peer.readyState !== WebSocket.OPEN) continue;
      if (peer.bufferedAmount > maxBufferedBytes) { peer.close(4008, 'client too slow'); continue; }
      peer.send(encoded, { binary: false });
    }
    ws.send(JSON.stringify({ type: 'ack', status: 'sent', id: message.id, message_id: message.id,
                             client_id: message.client_id, room_id: room.id, timestamp: message.timestamp }));
  });
}

server.listen(port, '127.0.0.1');

process.on('SIGTERM', () => {
  for (const ws of sockets.clients) ws.close(1001, 'shutting down');
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
});
