// The Node.js peer `make bench` measures pichat against: a room on the `ws` package.
//
// Like bench/naive.py it speaks just enough of pichat.v1 for the load generator:
// `join` gets a welcome-shaped frame with the last 100 messages, `say` becomes a
// `message` with an id and a date, sent to every open client. It is written the way
// a fast ws room is written: the frame is encoded once into a Buffer and handed to
// every socket, no compression. What it does not do is pichat's real work: no
// validation, no storage, no presence, no rate limits, no keepalive pings.
//
// Run it alone with `node bench/node/server.js PORT` (after `npm ci` in bench/node).
"use strict";

const { WebSocketServer, WebSocket } = require("ws");

const port = Number(process.argv[2]);
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
const messages = [];

server.on("connection", (socket) => {
  let name = "";
  socket.on("message", (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "join") {
      name = String(frame.name);
      const welcome = { type: "welcome", you: { name, avatar: "" }, history: messages.slice(-100) };
      socket.send(JSON.stringify(welcome));
    } else if (frame.type === "say") {
      const message = {
        type: "message",
        id: messages.length + 1,
        date: new Date().toISOString(),
        name,
        avatar: "",
        text: String(frame.text),
      };
      messages.push(message);
      const out = Buffer.from(JSON.stringify(message));
      for (const client of server.clients) {
        if (client.readyState === WebSocket.OPEN) client.send(out, { binary: false });
      }
    }
  });
});

process.on("SIGTERM", () => {
  for (const client of server.clients) client.terminate();
  server.close(() => process.exit(0));
});
