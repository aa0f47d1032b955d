'use strict';
// Benchmark peer "node-socketio": a Socket.IO 4 room relay. No auth, no
// storage; WebSocket transport only, no compression.
//   emit "join" ROOM  -> the socket joins ROOM and gets "joined" back
//   emit "msg" DATA   -> every other socket in the sender's room gets "msg" DATA
// With REDIS_URL set, rooms are shared between instances through
// @socket.io/redis-adapter (one publishing and one subscribing client).
// Usage: node server.js [--port N] (or PORT).

const http = require('node:http');
const { Server } = require('socket.io');

function parsePort() {
  const args = process.argv.slice(2);
  let given = process.env.PORT;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') given = args[++i];
    else if (args[i].startsWith('--port=')) given = args[i].slice('--port='.length);
    else {
      process.stderr.write(`node-socketio: unknown argument ${args[i]}; usage: server.js [--port N]\n`);
      process.exit(2);
    }
  }
  const port = Number(given ?? 8092);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`node-socketio: bad port ${given}\n`);
    process.exit(2);
  }
  return port;
}

async function redisAdapter(url) {
  const { createClient } = require('redis');
  const { createAdapter } = require('@socket.io/redis-adapter');
  const pub = createClient({ url });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) {
    client.on('error', (err) => process.stderr.write(`node-socketio: redis: ${err.message}\n`));
  }
  await Promise.all([pub.connect(), sub.connect()]);
  return createAdapter(pub, sub);
}

async function main() {
  const port = parsePort();
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    transports: ['websocket'],
    allowUpgrades: false,
    perMessageDeflate: false,
    httpCompression: false,
    serveClient: false,
    maxHttpBufferSize: 1 << 20,
  });
  const redisUrl = process.env.REDIS_URL;
  if (redisUrl) io.adapter(await redisAdapter(redisUrl));

  io.on('connection', (socket) => {
    let room = null;
    socket.on('join', (name) => {
      if (typeof name !== 'string' || name === '') return;
      if (room !== null) socket.leave(room);
      room = name;
      socket.join(name);
      socket.emit('joined');
    });
    socket.on('msg', (data) => {
      if (room !== null) socket.to(room).emit('msg', data);
    });
  });

  httpServer.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
    const cluster = redisUrl ? ' (redis adapter)' : '';
    process.stderr.write(`node-socketio listening on 127.0.0.1:${port}${cluster}\n`);
  });
}

main().catch((err) => {
  process.stderr.write(`node-socketio: ${err.stack || err}\n`);
  process.exit(1);
});
