// Chat completions through the gateway with the official `openai` npm
// package (t/package.json), as a client would use it: baseURL pointed at
// /v1.  Prints one JSON object: for each case what the SDK saw (content,
// chunks, usage, or the error's status, code, type, message, headers), for
// t/24-chat-sdk.t to check.
//
// Environment: CREOR_URL (http://127.0.0.1:PORT/v1), CREOR_TOKEN, and
// CREOR_SLOW_TOKEN, a key whose own limit is 2 requests.

import OpenAI from 'openai';

const client = new OpenAI({ baseURL: process.env.CREOR_URL,
                            apiKey: process.env.CREOR_TOKEN,
                            maxRetries: 0, timeout: 20000 });
const slow = new OpenAI({ baseURL: process.env.CREOR_URL,
                          apiKey: process.env.CREOR_SLOW_TOKEN,
                          maxRetries: 0, timeout: 20000 });

const messages = [{ role: 'user', content: 'Hi' }];

function header(h, name) {
    if (!h) {
        return null;
    }
    return typeof h.get === 'function' ? h.get(name) : (h[name] ?? null);
}

function failure(e) {
    return { error: true, name: e.constructor.name, status: e.status ?? null,
             code: e.code ?? null, type: e.type ?? null,
             param: e.param ?? null, message: e.message ?? null,
             retry_after: header(e.headers, 'retry-after') };
}

async function stream(c, body) {
    const s = await c.chat.completions.create({ ...body, stream: true });
    const out = { content: '', chunks: 0, usage: null };
    for await (const chunk of s) {
        out.chunks++;
        if (chunk.usage) {
            out.usage = chunk.usage;
        }
        for (const ch of chunk.choices) {
            out.content += ch.delta?.content ?? '';
        }
    }
    return out;
}

const cases = {
    nonstream: async () => {
        const r = await client.chat.completions.create({
            model: 'test/ok', messages });
        return { content: r.choices[0].message.content, usage: r.usage,
                 model: r.model };
    },
    stream: () => stream(client, { model: 'test/ok+split', messages }),
    stream_usage: () => stream(client, {
        model: 'test/ok+crlf', messages,
        stream_options: { include_usage: true } }),
    unknown_model: () => client.chat.completions.create({
        model: 'nope/gpt-4o', messages }),
    provider_500: () => client.chat.completions.create({
        model: 'test/fail500', messages }),
    provider_400: () => client.chat.completions.create({
        model: 'test/fail400', messages }),
    stream_error_event: () => stream(client, {
        model: 'test/errorevent', messages }),
    stream_cut: () => stream(client, { model: 'test/cut', messages }),
    rate_limited: async () => {
        const r = [];
        for (let i = 0; i < 3; i++) {
            try {
                await slow.chat.completions.create({ model: 'test/ok',
                                                     messages });
                r.push({ ok: true });
            } catch (e) {
                r.push(failure(e));
            }
        }
        return r;
    },
};

const results = {};

for (const [name, run] of Object.entries(cases)) {
    try {
        results[name] = await run();
    } catch (e) {
        results[name] = failure(e);
    }
}

process.stdout.write(JSON.stringify(results) + '\n');
