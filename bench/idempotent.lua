-- POST /v1/agents, each request with an Idempotency-Key of its own

local counter = 0
local thread_id = 0
local threads = 0

function setup(thread)
    thread:set("tid", threads)
    threads = threads + 1
end

function init(args)
    thread_id = tid
end

wrk.method = "POST"
wrk.body = '{"name": "bench", "model": "openai/gpt-4o-mini", ' ..
           '"systemPrompt": "You are terse."}'

request = function()
    counter = counter + 1
    wrk.headers["Idempotency-Key"] = string.format("bench-%d-%d-%d",
        os.time(), thread_id, counter)
    return wrk.format("POST", nil, nil, wrk.body)
end
