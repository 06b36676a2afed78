// A fake OpenAI-compatible model provider for the tests of
// ngx_creor_module: POST /v1/chat/completions (any path ending in
// /chat/completions) answers like a real provider, as the model name asks,
// and records every request so tests can check what the module sent and
// when it gave up on a connection.
//
//     node t/lib/provider.mjs        prints "port N" once it listens
//
// The model (as the provider receives it, i.e. after the module removed
// "provider/") chooses the behaviour; modifiers follow a "+":
//
//     ok          a completion "Hello world" with usage (prompt 11,
//                 completion 3); as a stream: role, "Hel", "lo ", "world",
//                 finish_reason, a usage chunk if stream_options.
//                 include_usage, data: [DONE]
//     ok+split    every event written in pieces, 30 ms apart
//     ok+batch    all events in one write
//     ok+crlf     "\r\n" line ends
//     ok+comments ": keep-alive" comments between events
//     ok+slow     200 ms between events
//     ok+big      a 1 MiB content (non-stream)
//     fail400     400 with an OpenAI error body
//     fail400s    400 with {"error": "..."} (Ollama's form)
//     fail429     429, Retry-After: 7
//     fail500     500
//     failonce    500 on the first request of its body's test_id, then ok
//     fail429once 429 on the first request of its test_id, then ok
//     delay       ok, after the body's delay seconds (1)
//     hang        headers never come (watches for the peer closing)
//     hangstream  a stream's first event, then nothing (watches too)
//     cut         two events of a stream, then the connection is cut
//     errorevent  one event, then data: {"error": ...}, then the end
//     flood       a stream of flood_events (4000) events of 10 kB, as fast
//                 as the peer takes them; "written" counts them
//     tools       (stream) while fewer tool messages follow the last user
//     tools2      message than rounds (1, 2), asks for a tool call
//                 (id call_<round>, lookup({"q": "<round>"}), its
//                 arguments in two deltas); then answers "Tool said: " and
//                 the last tool output, word by word
//
// GET /_requests: every request so far, as JSON: {at, path, headers,
// body (decoded), raw, closed_at (the peer closed before the answer
// ended), done_at}.  POST /_reset forgets them.

import http from 'node:http';

const requests = [];
const attempts = new Map();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function completion(model, content) {
    return {
        id: 'chatcmpl-test', object: 'chat.completion', created: 1767225600,
        model,
        choices: [{ index: 0, finish_reason: 'stop',
                    message: { role: 'assistant', content } }],
        usage: { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 },
    };
}

function chunk(model, delta, finish, extra) {
    return {
        id: 'chatcmpl-test', object: 'chat.completion.chunk',
        created: 1767225600, model,
        choices: [{ index: 0, delta, finish_reason: finish ?? null }],
        ...(extra || {}),
    };
}

function events(model, includeUsage) {
    const u = includeUsage ? { usage: null } : {};
    const ev = [
        chunk(model, { role: 'assistant', content: '' }, null, u),
        chunk(model, { content: 'Hel' }, null, u),
        chunk(model, { content: 'lo ' }, null, u),
        chunk(model, { content: 'world' }, null, u),
        chunk(model, {}, 'stop', u),
    ].map((c) => 'data: ' + JSON.stringify(c));
    if (includeUsage) {
        ev.push('data: ' + JSON.stringify({
            id: 'chatcmpl-test', object: 'chat.completion.chunk',
            created: 1767225600, model, choices: [],
            usage: { prompt_tokens: 11, completion_tokens: 3,
                     total_tokens: 14 },
        }));
    }
    ev.push('data: [DONE]');
    return ev;
}

// the tool-call script's events: a call while rounds remain, else text
function toolEvents(model, body, rounds) {
    const msgs = Array.isArray(body.messages) ? body.messages : [];
    let lastUser = -1;
    msgs.forEach((m, i) => { if (m && m.role === 'user') lastUser = i; });
    const outputs = msgs.slice(lastUser + 1).filter((m) => m?.role === 'tool');
    const usage = { usage: null };
    const ev = [];
    if (outputs.length < rounds) {
        const n = outputs.length + 1;
        ev.push(chunk(model, { role: 'assistant', content: null }, null, usage));
        ev.push(chunk(model, { tool_calls: [{ index: 0, id: 'call_' + n,
            type: 'function', function: { name: 'lookup', arguments: '' } }] },
            null, usage));
        ev.push(chunk(model, { tool_calls: [{ index: 0,
            function: { arguments: '{"q": ' } }] }, null, usage));
        ev.push(chunk(model, { tool_calls: [{ index: 0,
            function: { arguments: '"' + n + '"}' } }] }, null, usage));
        ev.push(chunk(model, {}, 'tool_calls', usage));
    } else {
        const last = outputs.length ? outputs[outputs.length - 1].content
                                    : 'nothing';
        const words = ('Tool said: ' + last).split(' ');
        ev.push(chunk(model, { role: 'assistant', content: '' }, null, usage));
        words.forEach((w, i) => ev.push(chunk(model,
            { content: (i ? ' ' : '') + w }, null, usage)));
        ev.push(chunk(model, {}, 'stop', usage));
    }
    ev.push({ id: 'chatcmpl-test', object: 'chat.completion.chunk',
              created: 1767225600, model, choices: [],
              usage: { prompt_tokens: 7, completion_tokens: 5,
                       total_tokens: 12 } });
    return ev.map((c) => 'data: ' + JSON.stringify(c))
             .concat(['data: [DONE]']);
}

function error(res, status, body, headers) {
    res.writeHead(status, { 'Content-Type': 'application/json',
                            ...(headers || {}) });
    res.end(JSON.stringify(body));
}

async function answer(req, res, rec) {
    const body = rec.body || {};
    const [script, ...mods] = String(body.model ?? '').split('+');
    const mod = new Set(mods);
    const model = String(body.model);

    const first = (kind) => {
        const key = kind + ':' + (body.test_id ?? '');
        const n = (attempts.get(key) ?? 0) + 1;
        attempts.set(key, n);
        return n === 1;
    };

    switch (script) {
    case 'fail400':
        return error(res, 400, { error: {
            message: "Invalid value for 'temperature': must be <= 2.",
            type: 'invalid_request_error', param: 'temperature',
            code: 'invalid_value' } });
    case 'fail400s':
        return error(res, 400, { error: "model 'nope' not found" });
    case 'fail429':
        return error(res, 429, { error: { message: 'Rate limit reached.',
                                          type: 'requests' } },
                     { 'Retry-After': '7' });
    case 'fail500':
        return error(res, 500, { error: { message: 'The server had an '
                                          + 'error.', type: 'server_error' } });
    case 'failonce':
        if (first('failonce')) {
            return error(res, 500, { error: { message: 'once' } });
        }
        break;
    case 'fail429once':
        if (first('fail429once')) {
            return error(res, 429, { error: { message: 'once' } },
                         { 'Retry-After': '1' });
        }
        break;
    case 'delay':
        await sleep(Number(body.delay ?? 1) * 1000);
        if (rec.closed_at) {
            return;
        }
        break;
    case 'hang':
        return;     // the peer's close is recorded
    default:
        break;
    }

    if (!body.stream) {
        const content = mod.has('big') ? 'x'.repeat(1 << 20) : 'Hello world';
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(completion(model, content)));
        rec.done_at = Date.now() / 1000;
        return;
    }

    res.writeHead(200, { 'Content-Type': 'text/event-stream',
                         'Cache-Control': 'no-cache' });
    res.flushHeaders();

    const includeUsage = body.stream_options?.include_usage === true;
    const eol = mod.has('crlf') ? '\r\n' : '\n';
    let ev = (script === 'tools' || script === 'tools2'
              ? toolEvents(model, body, script === 'tools2' ? 2 : 1)
              : events(model, includeUsage)).map((e) => e + eol + eol);

    if (mod.has('comments')) {
        ev = ev.flatMap((e) => [': keep-alive' + eol + eol, e]);
    }

    if (script === 'hangstream') {
        res.write(ev[0]);
        return;
    }

    if (script === 'flood') {
        const n = Number(body.flood_events ?? 4000);
        const c = { content: 'x'.repeat(10000) };
        rec.written = 0;
        for (let i = 0; i < n; i++) {
            if (rec.closed_at) {
                return;
            }
            const more = res.write('data: ' + JSON.stringify(chunk(model, c))
                                   + '\n\n');
            rec.written = i + 1;
            if (!more) {
                await new Promise((resolve) => res.once('drain', resolve));
            }
        }
        res.end('data: [DONE]\n\n');
        rec.done_at = Date.now() / 1000;
        return;
    }

    if (script === 'cut') {
        res.write(ev[0]);
        await sleep(20);
        res.write(ev[1]);
        await sleep(20);
        res.socket.destroy();
        return;
    }

    if (script === 'errorevent') {
        res.write(ev[0]);
        await sleep(20);
        res.write('data: ' + JSON.stringify({ error: {
            message: 'The model is overloaded.', type: 'server_error' } })
                  + eol + eol);
        res.end();
        rec.done_at = Date.now() / 1000;
        return;
    }

    if (mod.has('batch')) {
        res.write(ev.join(''));
    } else {
        for (const e of ev) {
            if (rec.closed_at) {
                return;
            }
            if (mod.has('split')) {
                // pieces cut inside "data:", inside the JSON, between the
                // two line ends
                const cuts = [3, Math.floor(e.length / 2), e.length - 1];
                let at = 0;
                for (const c of cuts) {
                    res.write(e.slice(at, c));
                    at = c;
                    await sleep(30);
                }
                res.write(e.slice(at));
            } else {
                res.write(e);
            }
            await sleep(mod.has('slow') ? 200 : 10);
        }
    }
    res.end();
    rec.done_at = Date.now() / 1000;
}

const server = http.createServer((req, res) => {
    const parts = [];
    req.on('data', (d) => parts.push(d));
    req.on('end', () => {
        const raw = Buffer.concat(parts).toString('utf8');

        if (req.url === '/_requests') {
            res.writeHead(200, { 'Content-Type': 'application/json' });
            res.end(JSON.stringify(requests));
            return;
        }

        if (req.url === '/_reset') {
            requests.length = 0;
            res.end('{}');
            return;
        }

        let body = null;
        try {
            body = JSON.parse(raw);
        } catch (e) {
            body = null;
        }

        const rec = { at: Date.now() / 1000, path: req.url, method: req.method,
                      headers: req.headers, body, raw, closed_at: null,
                      done_at: null };
        requests.push(rec);

        res.on('close', () => {
            if (!res.writableFinished && rec.closed_at === null) {
                rec.closed_at = Date.now() / 1000;
            }
        });

        if (!/\/chat\/completions$/.test(req.url) || body === null) {
            return error(res, 400, { error: { message: 'bad request' } });
        }

        answer(req, res, rec).catch((e) => {
            process.stderr.write('provider: ' + e.stack + '\n');
            res.destroy();
        });
    });
});

server.keepAliveTimeout = 30000;
server.on('connection', (s) => s.setNoDelay(true));

server.listen(Number(process.env.PROVIDER_PORT || 0), '127.0.0.1', () => {
    process.stdout.write('port ' + server.address().port + '\n');
});

// the test went away: so does the provider
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
