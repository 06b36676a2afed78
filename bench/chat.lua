-- POST a chat completion request (the body of bench/chat.sh's requests)

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model": "bench/fixed", "messages": [{"role": "system", ' ..
           '"content": "You are terse."}, {"role": "user", "content": ' ..
           '"Say hello."}], "temperature": 0.2, "max_tokens": 64}'
