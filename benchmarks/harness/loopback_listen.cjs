// Node preload that makes TCP servers listen on 127.0.0.1 when they name no host.
//
//     node --require benchmarks/harness/loopback_listen.cjs SCRIPT ...
//
// `leangate bench` starts the Portkey gateway (@portkey-ai/gateway 1.15.2) with it, because that
// start script has no listen-address option: it calls `serve({fetch, port})` from
// @hono/node-server 1.19, which runs `server.listen(port, undefined, callback)`, and Node then
// listens on every interface.
//
// This file replaces `net.Server.prototype.listen` (so `http` and `https` servers too) with a
// wrapper that passes 127.0.0.1 as the host when a call gives none, or gives an unspecified
// address (0.0.0.0, ::). It covers every argument form that Node 20 documents:
// `listen([port][, host][, backlog][, callback])`, `listen(options[, callback])`, `listen()` and
// `listen(callback)`. Calls with another explicit host, a Unix socket or pipe path, a handle or a
// file descriptor pass through unchanged, so the harness still checks the listening sockets.
// Each rewritten call prints one line to stderr.

"use strict";

const net = require("node:net");

const LOOPBACK_HOST = "127.0.0.1";

function isUnspecifiedHost(host) {
  if (host === undefined || host === null || host === "") {
    return true;
  }
  if (typeof host !== "string") {
    return false;
  }
  const bare = host.replace(/^\[|\]$/g, "");
  if (bare === "0.0.0.0") {
    return true;
  }
  // The IPv6 unspecified address in any spelling: "::", "::0", "0:0:0:0:0:0:0:0".
  return net.isIPv6(bare) && /^[0:]+$/.test(bare);
}

// Node treats a string port that is not a number as a pipe or Unix socket path.
function isPipeName(value) {
  return typeof value === "string" && !(Number(value) >= 0);
}

function isSocketOptions(options) {
  return "path" in options || "fd" in options || "handle" in options || "_handle" in options;
}

function loopbackArguments(args) {
  const first = args[0];

  // listen() and listen(callback): Node picks a free port on every interface.
  if (args.length === 0 || typeof first === "function") {
    return [0, LOOPBACK_HOST, ...args];
  }

  // listen(options[, callback]), and listen(handle[, backlog][, callback]) with a server or socket.
  if (typeof first === "object" && first !== null) {
    if (isSocketOptions(first) || first instanceof net.Server || first instanceof net.Socket) {
      return args;
    }
    if (!isUnspecifiedHost(first.host)) {
      return args;
    }
    return [{ ...first, host: LOOPBACK_HOST }, ...args.slice(1)];
  }

  if (isPipeName(first)) {
    return args;
  }

  // listen(port[, host][, backlog][, callback]). Node reads the host only from a string second
  // argument: a number there is the backlog, a function the callback, undefined a placeholder.
  const second = args[1];
  if (typeof second === "string") {
    return isUnspecifiedHost(second) ? [first, LOOPBACK_HOST, ...args.slice(2)] : args;
  }
  if (args.length > 1 && (second === undefined || second === null)) {
    return [first, LOOPBACK_HOST, ...args.slice(2)];
  }
  return [first, LOOPBACK_HOST, ...args.slice(1)];
}

function requestedPort(args) {
  const first = args[0];
  const port = typeof first === "object" && first !== null ? first.port : first;
  return port === undefined || port === null ? 0 : port;
}

const originalListen = net.Server.prototype.listen;

net.Server.prototype.listen = function listenOnLoopback(...args) {
  const rewritten = loopbackArguments(args);
  if (rewritten !== args) {
    process.stderr.write(`loopback_listen: a listen call on port ${requestedPort(rewritten)} named no host `
      + `or an unspecified one; listening on ${LOOPBACK_HOST}\n`);
  }
  return originalListen.apply(this, rewritten);
};
