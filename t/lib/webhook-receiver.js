// A webhook receiver for the tests of ngx_creor_module.  It verifies each
// delivery twice: with the standardwebhooks package (webhook-id,
// webhook-timestamp, webhook-signature) and with seed 000's code, an HMAC
// of JSON.stringify(req.body) as an express app would compute it.
//
//     node webhook-receiver.js      prints its port, then serves:
//
//     POST /_secrets {"/path": ["whsec_..", ...]}   secrets to verify with
//     GET  /_log                    every delivery received, in order
//     POST /<anything>              a delivery; the path picks the answer:
//          /ok  2xx   /500  500   /410  410   /redirect  302 to /ok
//          /429-N  429 with Retry-After: N   /hang  no answer ever
//          /fail-N  500 for the first N tries of each event, then 200

"use strict";

const http = require("node:http");
const crypto = require("node:crypto");
const { Webhook } = require("standardwebhooks");

const secrets = {};
const log = [];
const tries = {};

// seed 000, "Verifying Signatures"
function verifyWebhookSignature(body, signature, secret) {
  const expected = crypto
    .createHmac("sha256", secret)
    .update(body)
    .digest("hex");

  return signature.length === expected.length
    && crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
}

function verify(path, raw, headers) {
  const res = { standard: false, seed: false, reserialized: false };
  let parsed;

  try {
    parsed = JSON.parse(raw);
    res.reserialized = JSON.stringify(parsed) === raw;
  } catch (e) {
    return res;
  }

  for (const secret of secrets[path] || []) {
    try {
      new Webhook(secret).verify(raw, headers);
      res.standard = true;
    } catch (e) { /* the next secret */ }

    if (verifyWebhookSignature(JSON.stringify(parsed),
                               headers["creor-signature"] || "", secret)) {
      res.seed = true;
    }
  }

  return res;
}

const server = http.createServer((req, res) => {
  const chunks = [];

  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const raw = Buffer.concat(chunks).toString("utf8");
    const path = req.url.split("?")[0];

    if (path === "/_secrets") {
      Object.assign(secrets, JSON.parse(raw));
      res.end("{}");
      return;
    }

    if (path === "/_log") {
      res.setHeader("Content-Type", "application/json");
      res.end(JSON.stringify(log));
      return;
    }

    let event = null;
    try { event = JSON.parse(raw); } catch (e) { /* recorded as is */ }

    const id = event && event.event_id;
    const n = tries[path + " " + id] = (tries[path + " " + id] || 0) + 1;

    log.push({
      path, method: req.method, headers: req.headers, body: raw, event,
      verified: verify(path, raw, req.headers), at: Date.now(), try: n,
    });

    let m;

    if (path === "/hang") {
      return;
    }

    if (path === "/500") {
      res.statusCode = 500;
    } else if (path === "/410") {
      res.statusCode = 410;
    } else if (path === "/redirect") {
      res.statusCode = 302;
      res.setHeader("Location", "/ok");
    } else if ((m = path.match(/^\/429-(\d+)$/))) {
      res.statusCode = 429;
      res.setHeader("Retry-After", m[1]);
    } else if ((m = path.match(/^\/fail-(\d+)$/))) {
      res.statusCode = n <= Number(m[1]) ? 500 : 200;
    } else {
      res.statusCode = 200;
    }

    res.end("ok");
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(server.address().port + "\n");
});

process.on("SIGTERM", () => process.exit(0));
