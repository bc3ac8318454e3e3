'use strict';
// Baseline: a raw `ws` broadcast server, the floor under any Socket.IO server. A socket
// connects with ?token=..., joins the rooms the users file gives that token and gets "ok";
// a frame "<room>\n<payload>" goes, as <payload>, to every socket of that room.
//
// usage: node ws-server.js PORT USERS.json   (users: {token: [room, ...]})

const fs = require('fs');
const { WebSocketServer } = require('ws');

const [port, usersFile] = process.argv.slice(2);
const roomsOf = new Map(Object.entries(JSON.parse(fs.readFileSync(usersFile, 'utf8'))));
const members = new Map(); // room -> Set of sockets

const server = new WebSocketServer({ host: '127.0.0.1', port: Number(port) });
server.on('connection', (ws, request) => {
  const token = new URL(request.url, 'http://x').searchParams.get('token');
  const rooms = roomsOf.get(token);
  if (!rooms) {
    ws.close(4001, 'unauthorized');
    return;
  }
  for (const room of rooms) {
    if (!members.has(room)) members.set(room, new Set());
    members.get(room).add(ws);
  }
  ws.on('message', (data) => {
    const cut = data.indexOf(10); // "\n"
    const targets = members.get(data.toString('utf8', 0, cut));
    if (!targets) return;
    const payload = data.toString('utf8', cut + 1);
    for (const member of targets) member.send(payload);
  });
  ws.on('close', () => {
    for (const room of rooms) members.get(room).delete(ws);
  });
  ws.send('ok');
});
server.on('listening', () => console.log('listening'));
