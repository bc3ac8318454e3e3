'use strict';
// Baseline: a Socket.IO 4 server (websocket transport only, defaults otherwise) with room
// broadcast. A socket authenticates with CONNECT auth {clientKey, token} against the users
// file and joins that user's rooms; "chat message" {room, ...} is emitted to the room
// (sender included, as Parley does) and acknowledged.
//
// usage: node socketio-server.js PORT USERS.json CLIENT_KEY   (users: {token: [room, ...]})

const fs = require('fs');
const http = require('http');
const { Server } = require('socket.io');

const [port, usersFile, clientKey] = process.argv.slice(2);
const roomsOf = new Map(Object.entries(JSON.parse(fs.readFileSync(usersFile, 'utf8'))));

const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ['websocket'], serveClient: false });
io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  const rooms = roomsOf.get(auth.token);
  if (!rooms || auth.clientKey !== clientKey) {
    next(new Error('unauthorized'));
    return;
  }
  socket.join(rooms);
  next();
});
io.on('connection', (socket) => {
  socket.on('chat message', (body, ack) => {
    io.to(body.room).emit('chat message', body);
    if (typeof ack === 'function') ack({ RC: 0, RM: 'OK' });
  });
});
httpServer.listen(Number(port), '127.0.0.1', () => console.log('listening'));
