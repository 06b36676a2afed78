// Streams through the gateway against plain proxy_pass (bench/chat.sh):
//
//   time to first byte of a fixed SSE body nginx returns itself
//   (/v1/chat/completions "benchs/..." vs /plain/stream), and
//   the delay of each event from a paced provider's write to the client's
//   read (this process is both: /v1 "paced/..." vs /plain/paced).
//
//   node bench/chat-stream.mjs PROVIDER_PORT http://127.0.0.1:PORT KEY

import http from 'node:http';

const [pport, base, key] = process.argv.slice(2);
const EVENTS = 20;
const GAP = 5;          // ms between a paced provider's events
const TTFB_ROUNDS = 300;
const PACED_ROUNDS = 30;

const now = () => Number(process.hrtime.bigint()) / 1e6;     // ms
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const sent = new Map();     // "round:i" -> when the provider wrote it

// the round is in the query (plain) or in the body (the gateway passes
// unknown fields on)
const provider = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (c) => parts.push(c));
    req.on('end', async () => {
        let round = new URL(req.url, base).searchParams.get('round');
        try {
            round = JSON.parse(Buffer.concat(parts)).round ?? round;
        } catch (e) {
            // the plain path's body is {}
        }
        res.writeHead(200, { 'Content-Type': 'text/event-stream' });
        res.flushHeaders();
        for (let i = 0; i < EVENTS; i++) {
            const ev = 'data: {"object":"chat.completion.chunk","choices":'
                + `[{"index":0,"delta":{"content":"w${i}"}}],"i":"${round}:${i}"}\n\n`;
            sent.set(`${round}:${i}`, now());
            res.write(ev);
            await sleep(GAP);
        }
        res.end('data: [DONE]\n\n');
    });
});
provider.on('connection', (s) => s.setNoDelay(true));
await new Promise((r) => provider.listen(Number(pport), '127.0.0.1', r));

const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

// one request; calls onData(text, t) per read; resolves at the end
function request(path, body, headers, onData) {
    return new Promise((resolve, reject) => {
        const req = http.request(base + path, {
            method: 'POST', agent,
            headers: { 'Content-Type': 'application/json', ...headers },
        }, (res) => {
            res.setEncoding('utf8');
            res.on('data', (d) => onData(d, now()));
            res.on('end', resolve);
        });
        req.on('error', reject);
        req.end(body);
    });
}

const auth = { Authorization: `Bearer ${key}` };
const gwBody = (model, round) => JSON.stringify({
    model, stream: true, round, messages: [{ role: 'user', content: 'Hi' }] });

async function ttfb(path, body, headers) {
    let first = null;
    const t0 = now();
    await request(path, body, headers, (d, t) => { first ??= t; });
    return first - t0;
}

async function paced(path, body, headers, round) {
    const delays = [];
    let buf = '';
    await request(path, body, headers, (d, t) => {
        buf += d;
        let m;
        while ((m = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, m);
            buf = buf.slice(m + 2);
            const id = /"i":"([^"]+)"/.exec(ev);
            if (id && sent.has(id[1])) {
                delays.push(t - sent.get(id[1]));
            }
        }
    });
    return delays;
}

const pct = (a, p) => {
    const s = [...a].sort((x, y) => x - y);
    return s[Math.min(s.length - 1, Math.floor(p * s.length))];
};

const t = { plain: [], gw: [] };
for (let i = 0; i < TTFB_ROUNDS; i++) {
    t.plain.push(await ttfb('/plain/stream', '{}', {}));
    t.gw.push(await ttfb('/v1/chat/completions', gwBody('benchs/fixed', 0),
                         auth));
}

const d = { plain: [], gw: [] };
for (let i = 0; i < PACED_ROUNDS; i++) {
    d.plain.push(...await paced(`/plain/paced?round=p${i}`, '{}', {},
                                `p${i}`));
    d.gw.push(...await paced('/v1/chat/completions',
                             gwBody(`paced/${i}`, `g${i}`), auth, `g${i}`));
}

const f = (x) => x.toFixed(3);
console.log(`(c) streams, ${TTFB_ROUNDS} fixed SSE bodies and `
            + `${PACED_ROUNDS} x ${EVENTS} paced events each way (ms):`);
console.log(`    time to first byte    plain p50 ${f(pct(t.plain, .5))} `
            + `p99 ${f(pct(t.plain, .99))}, gateway p50 ${f(pct(t.gw, .5))} `
            + `p99 ${f(pct(t.gw, .99))}`);
console.log(`    added                 p50 ${f(pct(t.gw, .5) - pct(t.plain, .5))}`
            + `, p99 ${f(pct(t.gw, .99) - pct(t.plain, .99))}`);
console.log(`    event write to read   plain p50 ${f(pct(d.plain, .5))} `
            + `p99 ${f(pct(d.plain, .99))}, gateway p50 ${f(pct(d.gw, .5))} `
            + `p99 ${f(pct(d.gw, .99))}`);
console.log(`    added                 p50 ${f(pct(d.gw, .5) - pct(d.plain, .5))}`
            + `, p99 ${f(pct(d.gw, .99) - pct(d.plain, .99))}`);
console.log(`    (${d.plain.length} and ${d.gw.length} events timed)`);

// rows for bench/all.sh
console.log(`ROW chat stream, added time to first byte | p50 `
            + `${f(pct(t.gw, .5) - pct(t.plain, .5))} ms, p99 `
            + `${f(pct(t.gw, .99) - pct(t.plain, .99))} ms | plain `
            + '`proxy_pass` of the same SSE body');
console.log(`ROW chat stream, added delay of each event (provider write to `
            + `client read) | p50 ${f(pct(d.gw, .5) - pct(d.plain, .5))} ms, `
            + `p99 ${f(pct(d.gw, .99) - pct(d.plain, .99))} ms | plain `
            + '`proxy_pass` of the same paced stream');

agent.destroy();
provider.close();
process.exit(0);
