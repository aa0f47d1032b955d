'use strict';
// Benchmark peer "node-ws": a room broadcast relay on the ws package.
// No auth, no storage. A WebSocket upgrade on any path with ?room=NAME joins
// room NAME and gets the text frame "joined"; every text frame it sends then
// goes, byte for byte, to every other member of that room. Binary frames are
// ignored; pings are answered by ws. Usage: node server.js [--port N] (or PORT).

const http = require('node:http');
const { WebSocketServer, WebSocket } = require('ws');

function parsePort() {
  const args = process.argv.slice(2);
  let given = process.env.PORT;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port') given = args[++i];
    else if (args[i].startsWith('--port=')) given = args[i].slice('--port='.length);
    else {
      process.stderr.write(`node-ws: unknown argument ${args[i]}; usage: server.js [--port N]\n`);
      process.exit(2);
    }
  }
  const port = Number(given ?? 8091);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`node-ws: bad port ${given}\n`);
    process.exit(2);
  }
  return port;
}

// The value of room= in the query string, as is (only ever compared with
// other clients' values, so it is not percent-decoded).
function roomIn(url) {
  const q = url.indexOf('?');
  if (q < 0) return null;
  for (const pair of url.slice(q + 1).split('&')) {
    if (pair.startsWith('room=') && pair.length > 5) return pair.slice(5);
  }
  return null;
}

const rooms = new Map(); // room name -> Set of sockets

function join(ws, name) {
  let members = rooms.get(name);
  if (members === undefined) {
    members = new Set();
    rooms.set(name, members);
  }
  members.add(ws);
  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    for (const peer of members) {
      if (peer !== ws && peer.readyState === WebSocket.OPEN) peer.send(data, { binary: false });
    }
  });
  ws.on('error', () => {}); // 'close' follows
  ws.on('close', () => {
    members.delete(ws);
    if (members.size === 0 && rooms.get(name) === members) rooms.delete(name);
  });
  ws.send('joined');
}

const port = parsePort();
const wss = new WebSocketServer({
  noServer: true,
  perMessageDeflate: false,
  clientTracking: false,
  maxPayload: 1 << 20,
});
const server = http.createServer((req, res) => {
  res.writeHead(426, { 'content-type': 'text/plain' });
  res.end('WebSocket only\n');
});
server.on('upgrade', (req, socket, head) => {
  const name = roomIn(req.url);
  if (name === null) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  socket.setNoDelay(true);
  wss.handleUpgrade(req, socket, head, (ws) => join(ws, name));
});
server.on('clientError', (err, socket) => socket.destroy());
server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
  process.stderr.write(`node-ws listening on 127.0.0.1:${port}\n`);
});
