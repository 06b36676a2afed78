#!/usr/bin/perl
# POST /v1/chat/completions (SPEC 9) against t/lib/provider.mjs through a
# creor_provider location: routing and the rewritten body, non-stream
# answers and provider errors, retries, streams whatever the provider's
# chunking, usage chunks, errors inside a stream, a client going away,
# idempotency, hostile bodies, $creor_tokens_*, metering.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;
use CreorProvider;

my $JSON = JSON::PP->new->utf8->canonical;

my $pv = CreorProvider->new;

# a port nothing listens on: the "down" provider
my $down = free_port();

my $t = CreorTest->new(
    store_opts  => 'sync=off',
    http_config => join("\n",
        $pv->upstream,
        q{log_format chat '$request_id $status in=$creor_tokens_in }
            . q{out=$creor_tokens_out';},
        'access_log logs/chat.log chat;'),
    api_location => join(' ',
        'location /v1/ {',
        '    creor_api;',
        '    client_max_body_size 1m;',
        '    creor_provider test /provider/test;',
        '    creor_provider down /provider/down;',
        '    creor_provider demo /provider/demo;',
        '    creor_provider slow /provider/slow;',
        '    creor_provider_retries 2;',
        '}'),
    server_config => join("\n",
        'location = /metrics { creor_metrics; }',
        $pv->location('/provider/test', 'proxy_read_timeout 3s;'),
        $pv->location('/provider/slow', 'proxy_read_timeout 60s;'),
        'location = /provider/down {',
        '    internal;',
        "    proxy_pass http://127.0.0.1:$down/v1/chat/completions;",
        '}',
        # a provider that is nginx itself, as in conf/nginx.conf
        'location = /provider/demo {',
        '    internal;',
        q|    if ($request_body ~ '"stream"\s*:\s*true') {|,
        q|        return 200 'data: {"choices":[{"index":0,"delta":|
            . q|{"content":"hi"}}]}\n\ndata: [DONE]\n\n';|,
        q|    }|,
        q|    return 200 '{"object":"chat.completion","choices":[]}';|,
        '}'),
);

my $boot = $t->bootstrap;
my $TOK = $boot->{token};

###########################################################################
# Helpers

my $n_id = 0;
sub test_id { sprintf('t%d-%d-%d', $$, int(time * 1000), ++$n_id) }

sub chat {
    my ($body, %o) = @_;
    return $t->req(POST => '/v1/chat/completions', token => $o{token} // $TOK,
                   timeout => 15, body => $JSON->encode($body),
                   headers => { 'Content-Type' => 'application/json',
                                %{ $o{headers} // {} } });
}

sub body_for {
    my ($model, %o) = @_;
    return { model => $model, test_id => $o{id} // test_id(),
             messages => [{ role => 'user', content => 'Hi' }],
             %{ $o{extra} // {} } };
}

# the events of an SSE body, and the data of each
sub events { grep { /\S/ } split /\r?\n\r?\n/, $_[0] }
sub datas  { map { /^data: ?(.*?)\r?$/m ? ($1) : () } events($_[0]) }

sub content_of {
    my ($body) = @_;
    my $text = '';
    for my $d (datas($body)) {
        next if $d eq '[DONE]';
        my $c = eval { $JSON->decode($d) } or next;
        $text .= $_->{delta}{content} // '' for @{ $c->{choices} // [] };
    }
    return $text;
}

sub usage_chunks {
    grep { ref $_ eq 'HASH' && ref $_->{usage} eq 'HASH' }
    map { eval { $JSON->decode($_) } } grep { $_ ne '[DONE]' } datas($_[0]);
}

# A completion longer than an idempotency claim's lease (30 s) keeps its
# claim: started here, checked at the end of the file.
my $LONG_KEY = "long-$$-" . int(time * 1000);
my $LONG_ID = test_id();
my $LONG_BODY = $JSON->encode(body_for('slow/delay', id => $LONG_ID,
                                       extra => { delay => 34 }));
my $long_t0 = time;
my $long = CreorTest::Conn->new($t, keepalive => 0, timeout => 60);
$long->send(CreorTest::build_request(POST => '/v1/chat/completions', 0,
    token => $TOK, body => $LONG_BODY,
    headers => { 'Content-Type' => 'application/json',
                 'Idempotency-Key' => $LONG_KEY }));

###########################################################################
# 1. Routing: the provider gets its own model name, every other field as
#    the client sent it

{
    my $id = test_id();
    my $extra = {
        temperature     => 0.25,
        tools           => [{ type => 'function', function => {
                              name => 'get_weather', parameters => {
                                  type => 'object', properties => {
                                      city => { type => 'string' } } } } }],
        response_format => { type => 'json_object' },
        metadata        => { 'ключ' => "valeur \x{e9}t\x{e9} \x{1F600}" },
        max_tokens      => 17,
        seed            => JSON::PP::null,
        logit_bias      => { '50256' => -100 },
    };
    my $r = chat(body_for('test/ok', id => $id, extra => $extra));
    is($r->{status}, 200, 'non-stream: 200') or diag($r->{body});
    is($r->{headers}{'content-type'}, 'application/json',
       'non-stream: application/json');
    ok($r->{headers}{'x-request-id'}, 'non-stream: X-Request-Id');
    is($r->{json}{choices}[0]{message}{content}, 'Hello world',
       "non-stream: the provider's answer");

    my $got = $pv->request_for($id);
    ok($got, 'the provider got the call') or BAIL_OUT('no provider call');
    is($got->{body}{model}, 'ok', 'model rewritten to the name after "/"');
    is($got->{method}, 'POST', 'a POST');
    is($got->{headers}{'content-type'}, 'application/json',
       'application/json towards the provider');
    ok(!exists $got->{headers}{authorization},
       "the client's key does not reach the provider");
    my %want = (%{ body_for('test/ok', id => $id, extra => $extra) },
                model => 'ok');
    is_deeply($got->{body}, JSON::PP->new->utf8->decode(
                  JSON::PP->new->utf8->encode(\%want)),
              'unknown fields passed through untouched');
    ok(!exists $got->{body}{stream_options},
       'no stream_options added to a non-stream call');
}

# Bytes as sent: spacing, 1.0, escapes; the stream_options the client sent
# keep their other members; a member name with an escape still works.
{
    my @cases = (
        # name, body sent, body the provider must get
        ['bytes kept',
         qq({ "test_id" : "%s", "model":"test/ok" ,"temperature": 1.0,\n)
         . q( "messages": [{"role":"user","content":"caf\u00e9 \"q\" \/"}],)
         . q( "x": [1e2, -0.0, {"a": null}] }),
         qq({ "test_id" : "%s", "model":"ok" ,"temperature": 1.0,\n)
         . q( "messages": [{"role":"user","content":"caf\u00e9 \"q\" \/"}],)
         . q( "x": [1e2, -0.0, {"a": null}] })],
        ['stream_options kept, include_usage added',
         q({"test_id":"%s","stream":true,"stream_options":{"x":1},)
         . q("model":"test/ok","messages":[]}),
         q({"test_id":"%s","stream":true,"stream_options":{"x":1,)
         . q("include_usage":true},"model":"ok","messages":[]})],
        ['stream_options added',
         q({"test_id":"%s","stream":true,"model":"test/ok","messages":[]}),
         q({"test_id":"%s","stream":true,"model":"ok","messages":[],)
         . q("stream_options":{"include_usage":true}})],
        ['model with escapes',
         q({"test_id":"%s","model":"te\u0073t/\u006fk","messages":[]}),
         q({"test_id":"%s","model":"ok","messages":[]})],
        ['a name that needs escaping',
         q({"test_id":"%s","model":"test/ok\"\\\n","messages":[]}),
         q({"test_id":"%s","model":"ok\"\\\n","messages":[]})],
        ['a member name with an escape',
         q({"test_id":"%s","mod\u0065l":"test/ok","messages":[]}),
         q({"test_id":"%s","mod\u0065l":"ok","messages":[]})],
        ['include_usage false made true',
         q({"test_id":"%s","stream":true,"stream_options":)
         . q({"include_usage" : false,"x":1},"model":"test/ok","messages":[]}),
         q({"test_id":"%s","stream":true,"stream_options":)
         . q({"include_usage" : true,"x":1},"model":"ok","messages":[]})],
        ['include_usage true kept',
         q({"test_id":"%s","stream":true,"stream_options":)
         . q({"include_usage":true},"model":"test/ok","messages":[]}),
         q({"test_id":"%s","stream":true,"stream_options":)
         . q({"include_usage":true},"model":"ok","messages":[]})],
        ['stream_options null replaced',
         q({"test_id":"%s","stream":true,"stream_options":null,)
         . q("model":"test/ok","messages":[]}),
         q({"test_id":"%s","stream":true,"stream_options":)
         . q({"include_usage":true},"model":"ok","messages":[]})],
        ['empty stream_options',
         q({"test_id":"%s","stream":true,"stream_options":{ },)
         . q("model":"test/ok","messages":[]}),
         q({"test_id":"%s","stream":true,"stream_options":)
         . q({ "include_usage":true},"model":"ok","messages":[]})],
        ['stream_options added before trailing space',
         qq({"test_id":"%s","stream":true,"model":"test/ok","messages":[]}\n ),
         q({"test_id":"%s","stream":true,"model":"ok","messages":[],)
         . qq("stream_options":{"include_usage":true}}\n )],
    );
    for my $c (@cases) {
        my ($name, $send, $want) = @$c;
        my $id = test_id();
        my $r = $t->req(POST => '/v1/chat/completions', token => $TOK,
                        body => sprintf($send, $id),
                        headers => { 'Content-Type' => 'application/json' });
        ok($r->{status} == 200 || $r->{status} == 502, "$name: answered")
            or diag($r->{body});
        my $got = $pv->request_for($id) // {};
        is($got->{raw}, sprintf($want, $id), "$name: the provider's bytes");
    }

}

###########################################################################
# 2. Non-stream answers and provider failures (retries 2)

{
    my @cases = (
        # model, status, code, message, Retry-After, calls
        ['ok+big',      200, undef, undef, undef, 1],
        ['fail400',     400, 'PROVIDER_ERROR', qr/temperature/, undef, 1],
        ['fail400s',    400, 'PROVIDER_ERROR', qr/not found/, undef, 1],
        ['fail429',     429, 'PROVIDER_ERROR', qr/Rate limit/, '7', 3],
        ['fail500',     502, 'PROVIDER_ERROR', qr/server had an error/,
                        undef, 3],
        ['failonce',    200, undef, undef, undef, 2],
        ['fail429once', 200, undef, undef, undef, 2],
        ['hang',        504, 'PROVIDER_TIMEOUT', qr/in time/, undef, 1],
    );

    for my $c (@cases) {
        my ($model, $status, $code, $msg, $ra, $calls) = @$c;
        my $id = test_id();
        my $r = chat(body_for("test/$model", id => $id));
        if ($code) {
            my $e = err_is($r, $status, $code, undef, $model,
                           type => 'provider_error');
            like($e->{message} // '', $msg, "$model: the provider's message");
            ok($e->{request_id}, "$model: request_id");
        } else {
            is($r->{status}, $status, "$model: $status") or diag($r->{body});
            is($r->{json}{object}, 'chat.completion', "$model: the answer");
        }
        is($r->{headers}{'retry-after'}, $ra,
           "$model: Retry-After " . ($ra // 'none'));
        my @calls = $pv->request_for($id);
        is(scalar @calls, $calls, "$model: $calls provider call(s)");
    }

    my $r = chat(body_for('test/ok+big'));
    is(length($r->{json}{choices}[0]{message}{content} // ''), 1 << 20,
       'a 1 MiB answer whole (no subrequest buffer cap)');

    $r = chat(body_for('down/x'));
    err_is($r, 502, 'PROVIDER_ERROR', undef, 'unreachable',
           type => 'provider_error');

    $r = chat(body_for('demo/x'));
    is($r->{body}, '{"object":"chat.completion","choices":[]}',
       'a provider served by nginx itself (return 200): bytes as sent');
    $r = chat(body_for('demo/x', extra => { stream => JSON::PP::true }));
    is(content_of($r->{body}), 'hi',
       'a provider served by nginx itself: its stream, for "stream": true');
}

###########################################################################
# 3. Streams: whatever the provider's chunking, events whole and in order;
#    the usage chunk only when the client asked

{
    my @cases = (
        # model, client asked for usage
        ['ok', 0], ['ok', 1], ['ok+split', 0], ['ok+split', 1],
        ['ok+batch', 0], ['ok+crlf', 1], ['ok+comments', 0],
        ['ok+crlf+comments+split', 1],
    );

    for my $c (@cases) {
        my ($model, $usage) = @$c;
        my $name = "stream $model" . ($usage ? ' include_usage' : '');
        my $id = test_id();
        my $r = chat(body_for("test/$model", id => $id, extra => {
                    stream => JSON::PP::true,
                    ($usage ? (stream_options => {
                                   include_usage => JSON::PP::true }) : ()),
                }));
        is($r->{status}, 200, "$name: 200") or diag($r->{body});
        is($r->{headers}{'content-type'}, 'text/event-stream',
           "$name: text/event-stream");
        is(content_of($r->{body}), 'Hello world', "$name: the content");
        is((datas($r->{body}))[-1], '[DONE]', "$name: ends with [DONE]");
        is(scalar usage_chunks($r->{body}), $usage,
           "$name: " . ($usage ? 'the' : 'no') . ' usage chunk');
        my $got = $pv->request_for($id);
        is($got->{body}{stream_options}{include_usage}, JSON::PP::true,
           "$name: include_usage asked of the provider");
        if ($model =~ /crlf/) {
            like($r->{body}, qr/^data: [^\r\n]*\r\n\r\n/m,
                 "$name: \\r\\n line ends kept");
        }
        if ($model =~ /comments/) {
            like($r->{body}, qr/^: keep-alive\r?\n/m,
                 "$name: comments passed on");
        }
    }
}

# Each HTTP chunk the client gets holds whole events, though the provider
# split every event in three writes.
{
    my $c = CreorTest::Conn->new($t, keepalive => 0, timeout => 15);
    $c->send(CreorTest::build_request(POST => '/v1/chat/completions', 0,
             token => $TOK, json => body_for('test/ok+split', extra => {
                 stream => JSON::PP::true })));
    1 while $c->_fill(time + 10);
    my ($head, $raw) = split /\r\n\r\n/, $c->{buf}, 2;
    my @chunks;
    while ($raw =~ s/^([0-9a-f]+)\r\n//i) {
        my $n = hex $1;
        last if $n == 0;
        push @chunks, substr($raw, 0, $n, '');
        $raw =~ s/^\r\n//;
    }
    ok(@chunks >= 6, 'split stream: one chunk per event (' . @chunks . ')');
    is(scalar(grep { !/\n\n\z/ } @chunks), 0,
       'split stream: no chunk ends inside an event');
}

# Events reach the client as the provider sends them (200 ms apart).
{
    my $s = $t->stream(POST => '/v1/chat/completions', token => $TOK,
                       timeout => 15, json => body_for('test/ok+slow',
                           extra => { stream => JSON::PP::true }));
    my @at;
    while (defined(my $text = $s->read_until(qr/\n\n/, 10))) {
        push @at, time for events($text);
        last if $text =~ /\[DONE\]/;
    }
    $s->close;
    is(scalar @at, 6, 'slow stream: 6 events');
    ok(@at && $at[-1] - $at[0] >= 0.7,
       sprintf('slow stream: events arrive as sent (first to last %.2f s)',
               @at ? $at[-1] - $at[0] : 0));
}

###########################################################################
# 4. Errors inside a started stream, and before it started

{
    my $r = chat(body_for('test/errorevent',
                          extra => { stream => JSON::PP::true }));
    is($r->{status}, 200, 'error event: 200');
    my @d = datas($r->{body});
    is(scalar @d, 2, "error event: one event, then the provider's error");
    like($d[-1], qr/^\{"error":\{"message":"The model is overloaded\./,
         "error event: the provider's error event as it sent it");

    $r = chat(body_for('test/cut', extra => { stream => JSON::PP::true }));
    is($r->{status}, 200, 'cut stream: 200');
    @d = datas($r->{body});
    is(scalar @d, 3, 'cut stream: two events, then an error event');
    my $e = eval { $JSON->decode($d[-1]) } // {};
    is($e->{error}{code}, 'PROVIDER_ERROR', 'cut stream: PROVIDER_ERROR event');
    is($e->{error}{type}, 'provider_error', 'cut stream: provider_error');
    ok($r->{raw} =~ /0\r\n\r\n\z/, 'cut stream: the response ends properly');

    for my $c (['fail500', 502, 'PROVIDER_ERROR'],
               ['fail400', 400, 'PROVIDER_ERROR'],
               ['hang', 504, 'PROVIDER_TIMEOUT'])
    {
        my ($model, $status, $code) = @$c;
        $r = chat(body_for("test/$model",
                           extra => { stream => JSON::PP::true }));
        err_is($r, $status, $code, undef,
               "stream $model before any event", type => 'provider_error');
        is($r->{headers}{'content-type'}, 'application/json',
           "stream $model before any event: an envelope, not a stream");
    }
}

###########################################################################
# 5. A client that goes away ends the provider call

for my $c (['hang', 0], ['hangstream', 1]) {
    my ($model, $stream) = @$c;
    my $id = test_id();
    my $s = $t->stream(POST => '/v1/chat/completions', token => $TOK,
                       json => body_for("test/$model", id => $id, extra => {
                           $stream ? (stream => JSON::PP::true) : () }));
    ok($pv->wait_for(sub { $pv->request_for($id) }, 5),
       "$model: the provider has the call");
    if ($stream) {
        ok(defined $s->read_until(qr/\n\n/, 5), "$model: the first event");
    } else {
        sleep 0.2;
    }
    my $gone = time;
    $s->close;
    my $closed = $pv->wait_for(sub {
        ($pv->request_for($id) // {})->{closed_at} }, 5);
    ok($closed && $closed - $gone < 2,
       sprintf("$model: the provider's connection closed %.2f s after the "
               . "client left", $closed ? $closed - $gone : -1));
}

# A client that does not read holds the provider back: nginx does not
# take the stream into memory (40 MB here, more than every socket buffer on
# the way), and the client gets all of it once it reads again.
{
    my $id = test_id();
    my $c = CreorTest::Conn->new($t, keepalive => 0, timeout => 60);
    $c->send(CreorTest::build_request(POST => '/v1/chat/completions', 0,
             token => $TOK, body => $JSON->encode(body_for('test/flood',
                 id => $id, extra => { stream => JSON::PP::true })),
             headers => { 'Content-Type' => 'application/json' }));
    ok($pv->wait_for(sub { ($pv->request_for($id) // {})->{written} }, 10),
       'flood: the provider streams');
    sleep 2;
    my $rec = $pv->request_for($id) // {};
    ok(!$rec->{done_at} && $rec->{written} < 4000,
       'flood: a client that does not read holds the provider back ('
       . ($rec->{written} // 0) . ' of 4000 events written)');

    1 while substr($c->{buf}, -7) ne "\r\n0\r\n\r\n" && $c->_fill(time + 60);
    my $n = () = $c->{buf} =~ /data: \{/g;
    is($n, 4000, 'flood: then every event reaches the client');
    like(substr($c->{buf}, -40), qr/data: \[DONE\]\n\n\r\n0\r\n\r\n\z/,
         'flood: and the end');
    $c->close;
}

###########################################################################
# 6. Idempotency: a non-stream answer is replayed byte for byte, a stream
#    is served again and not stored

{
    my $key = "chat-$$-" . int(time * 1000);
    my $id = test_id();
    my $body = body_for('test/ok', id => $id);
    my $r1 = chat($body, headers => { 'Idempotency-Key' => $key });
    my $r2 = chat($body, headers => { 'Idempotency-Key' => $key });
    is($r1->{status}, 200, 'idempotent: first 200');
    is($r2->{status}, 200, 'idempotent: replay 200');
    is($r2->{body}, $r1->{body}, 'idempotent: the replay byte for byte');
    is($r2->{headers}{'idempotent-replayed'}, 'true',
       'idempotent: Idempotent-Replayed: true');
    is(scalar(my @c = $pv->request_for($id)), 1,
       'idempotent: one provider call');

    my $r3 = chat({ %$body, temperature => 1 },
                  headers => { 'Idempotency-Key' => $key });
    err_is($r3, 409, 'IDEMPOTENCY_KEY_REUSED', undef,
           'idempotent: another body', type => 'conflict');

    # a provider error that a retry may not get is not stored
    $key .= '-e';
    $id = test_id();
    $body = body_for('test/failonce', id => $id);
    $r1 = chat($body, headers => { 'Idempotency-Key' => $key });
    is($r1->{status}, 200, 'idempotent failonce: retried inside, 200');

    $key .= '-s';
    $id = test_id();
    $body = body_for('test/ok', id => $id,
                     extra => { stream => JSON::PP::true });
    $r1 = chat($body, headers => { 'Idempotency-Key' => $key });
    $r2 = chat($body, headers => { 'Idempotency-Key' => $key });
    is($r1->{status}, 200, 'idempotent stream: first 200');
    is($r2->{status}, 200, 'idempotent stream: second 200');
    is(content_of($r2->{body}), 'Hello world',
       'idempotent stream: the second is a stream too');
    ok(!exists $r2->{headers}{'idempotent-replayed'},
       'idempotent stream: not replayed');
    is(scalar(my @s = $pv->request_for($id)), 2,
       'idempotent stream: the provider called each time');
}

###########################################################################
# 7. Hostile bodies: envelopes, and the provider never called

{
    my $before = scalar $pv->requests;
    my $ro = $t->cli('key', 'create', '--org', $boot->{org},
                     '--role', 'read_only', '--name', 'ro');
    my $big = '{"model":"test/ok","messages":[{"role":"user","content":"'
            . ('x' x (2 << 20)) . '"}]}';
    my @cases = (
        # name, request options, status, code, param
        ['no model', { json => { messages => [] } },
         400, 'MISSING_FIELD', 'model'],
        ['model null', { json => { model => undef, messages => [] } },
         400, 'MISSING_FIELD', 'model'],
        ['model a number', { json => { model => 5, messages => [] } },
         400, 'VALIDATION_ERROR', 'model'],
        ['model an object', { json => { model => {}, messages => [] } },
         400, 'VALIDATION_ERROR', 'model'],
        ['model without provider', { json => body_for('gpt-4o') },
         422, 'UNSUPPORTED_MODEL', 'model'],
        ['unknown provider', { json => body_for('nope/gpt-4o') },
         422, 'UNSUPPORTED_MODEL', 'model'],
        ['empty name', { json => body_for('test/') },
         422, 'UNSUPPORTED_MODEL', 'model'],
        ['empty provider', { json => body_for('/ok') },
         422, 'UNSUPPORTED_MODEL', 'model'],
        ['no messages', { json => { model => 'test/ok' } },
         400, 'MISSING_FIELD', 'messages'],
        ['messages a string', { json => { model => 'test/ok',
                                          messages => 'hi' } },
         400, 'VALIDATION_ERROR', 'messages'],
        ['stream a string', { json => body_for('test/ok',
                                  extra => { stream => 'yes' }) },
         400, 'VALIDATION_ERROR', 'stream'],
        ['stream_options a number', { json => body_for('test/ok',
                                  extra => { stream_options => 1 }) },
         400, 'VALIDATION_ERROR', 'stream_options'],
        ['include_usage a string', { json => body_for('test/ok',
             extra => { stream_options => { include_usage => 'y' } }) },
         400, 'VALIDATION_ERROR', 'stream_options.include_usage'],
        ['bad JSON', { body => '{"model":"test/ok",',
                       headers => { 'Content-Type' => 'application/json' } },
         400, 'INVALID_JSON', undef],
        ['an array', { body => '[1]',
                       headers => { 'Content-Type' => 'application/json' } },
         400, 'VALIDATION_ERROR', undef],
        ['duplicate model', { body => '{"model":"test/ok","model":"x/y",'
                                      . '"messages":[]}',
                              headers => { 'Content-Type'
                                           => 'application/json' } },
         400, 'INVALID_JSON', undef],
        # what the one-pass check leaves to yajl is refused as before
        (map { [$_->[0], { body => $_->[1], headers => { 'Content-Type'
                                                   => 'application/json' } },
                400, 'INVALID_JSON', undef] } (
            ['a lone surrogate escape',
             '{"model":"test/ok","messages":["\\ud800"]}'],
            ['a nested duplicate name',
             '{"model":"test/ok","messages":[{"a":1,"a":2}]}'],
            ['a duplicate name with an escape',
             '{"model":"x/y","mod\\u0065l":"test/ok","messages":[]}'],
            ['\u0000 in a value',
             '{"model":"test/ok","messages":["a\\u0000"]}'],
            ['a control character in a string',
             qq({"model":"test/ok","messages":["a\x01"]})],
            ['a leading zero', '{"model":"test/ok","messages":[01]}'],
            ['nesting too deep',
             '{"model":"test/ok","messages":' . ('[' x 40) . (']' x 40)
             . '}'],
            ['trailing garbage', '{"model":"test/ok","messages":[]} x'],
            ['overlong UTF-8',
             qq({"model":"test/ok","messages":["\xc0\xaf"]})],
            # found by fuzz/json_scan.c: 0x11 | 0x20 is the digit '1'
            ['a control character inside a \\u escape',
             qq({"model":"test/ok","messages":["rea\\ubf\x11d1"]})],
        )),
        ['huge body', { body => $big,
                        headers => { 'Content-Type' => 'application/json' } },
         413, 'BODY_TOO_LARGE', undef],
        ['text/plain', { body => '{}',
                         headers => { 'Content-Type' => 'text/plain' } },
         415, 'UNSUPPORTED_MEDIA_TYPE', undef],
        ['no key', { json => body_for('test/ok'), token => undef },
         401, 'AUTH_MISSING_HEADER', undef],
        ['read-only key', { json => body_for('test/ok'), token => $ro },
         403, 'PERMISSION_DENIED', undef],
    );

    for my $c (@cases) {
        my ($name, $o, $status, $code, $param) = @$c;
        my %o = (token => $TOK, timeout => 15, %$o);
        delete $o{token} unless defined $o{token};
        my $r = $t->req(POST => '/v1/chat/completions', %o);
        my $e = err_is($r, $status, $code, undef, $name);
        is($e->{param}, $param, "$name: param " . ($param // 'none'))
            if defined $param;
    }

    my $r = $t->req(GET => '/v1/chat/completions', token => $TOK);
    err_is($r, 405, 'METHOD_NOT_ALLOWED', undef, 'GET');
    is($r->{headers}{allow}, 'POST', 'GET: Allow: POST');

    is(scalar(my @a = $pv->requests), $before,
       'no hostile body reached the provider');
}

###########################################################################
# 8. $creor_tokens_in, $creor_tokens_out and metering

{
    my $org = $t->bootstrap;
    my @rs = (chat(body_for('test/ok'), token => $org->{token}),
              chat(body_for('test/ok', extra => { stream => JSON::PP::true }),
                   token => $org->{token}),
              chat(body_for('test/ok+split', extra => {
                       stream => JSON::PP::true,
                       stream_options => { include_usage => JSON::PP::true }
                   }), token => $org->{token}),
              chat(body_for('test/fail400'), token => $org->{token}));

    my $log = '';
    $pv->wait_for(sub {
        $log = CreorTest::_slurp($t->dir . '/logs/chat.log') // '';
        my $all = 1;
        for my $r (@rs) {
            my $rid = $r->{headers}{'x-request-id'} // 'none';
            $all = 0 unless $log =~ /^\Q$rid\E /m;
        }
        $all;
    }, 5);
    for my $i (0 .. 2) {
        my $rid = $rs[$i]{headers}{'x-request-id'} // 'none';
        like($log, qr/^\Q$rid\E 200 in=11 out=3$/m,
             "\$creor_tokens_*: completion $i logged in=11 out=3");
    }
    my $rid = $rs[3]{headers}{'x-request-id'} // 'none';
    like($log, qr/^\Q$rid\E 400 in=- out=-$/m,
         '$creor_tokens_*: a failed call has none');

    # usage is written once a second
    my $u;
    $pv->wait_for(sub {
        my $r = $t->req(GET => '/v1/usage?group_by=model',
                        token => $org->{token});
        $u = $r->{json};
        ref $u eq 'HASH' && ($u->{totals}{requests} // 0) >= 3;
    }, 5);
    my ($g) = grep { ($_->{model} // '') eq 'test/ok' } @{ $u->{data} // [] };
    is($g->{requests}, 2, 'usage: test/ok, 2 requests (stream or not)');
    is($g->{input_tokens}, 22, 'usage: test/ok, 22 input tokens');
    is($g->{output_tokens}, 6, 'usage: test/ok, 6 output tokens');
    is($u->{totals}{requests}, 3, 'usage: the failed call is not counted');

    # metrics: tokens by model, provider calls
    my $m = $t->req(GET => '/metrics')->{body} // '';
    my ($in) = $m =~ /^creor_chat_tokens_total
                      \{direction="in",model="test\/ok"\}\ (\d+)/mx;
    cmp_ok($in // 0, '>=', 22, 'metrics: creor_chat_tokens_total of test/ok');
    my ($calls) = $m =~ /^creor_provider_duration_seconds_count (\d+)/m;
    cmp_ok($calls // 0, '>=', 4, 'metrics: provider calls timed');
}

###########################################################################
# 9. The long completion (34 s) started first: after 32 s a retry with its
#    key is still 409, and the answer is replayed after it came

{
    my $wait = $long_t0 + 32 - time;
    sleep $wait if $wait > 0;
    my %h = ('Content-Type' => 'application/json',
             'Idempotency-Key' => $LONG_KEY);
    my $r = $t->req(POST => '/v1/chat/completions', token => $TOK,
                    body => $LONG_BODY, headers => \%h, timeout => 15);
    err_is($r, 409, 'IDEMPOTENCY_REQUEST_IN_PROGRESS', undef,
           'a retry after 32 s of a 34 s completion', type => 'conflict');
    my $first = $long->read_response(method => 'POST', timeout => 30);
    is($first->{status}, 200, 'the long completion: 200')
        or diag($first->{body});
    $r = $t->req(POST => '/v1/chat/completions', token => $TOK,
                 body => $LONG_BODY, headers => \%h, timeout => 15);
    is($r->{body}, $first->{body}, 'the long completion: replayed after');
    is(scalar(my @c = $pv->request_for($LONG_ID)), 1,
       'the long completion: one provider call');
    $long->close;
}

###########################################################################
# 10. Directives: bad values fail nginx -t naming the directive

{
    my $store = $t->conf_dir . '/store';
    my @cases = (
        # creor_api location's directives, ok?, output
        ['creor_provider openai /p/openai; creor_provider local /p/local; '
         . 'creor_provider_retries 3;', 1, qr/successful/],
        ['creor_provider a/b /p;', 0, qr/"creor_provider": invalid name/],
        ['creor_provider openai p/openai;', 0,
         qr/"creor_provider": invalid uri/],
        ['creor_provider x /a; creor_provider x /b;', 0,
         qr/"creor_provider": "x" is duplicate/],
        ['creor_provider x;', 0,
         qr/invalid number of arguments in "creor_provider"/],
        ['creor_provider_retries many;', 0,
         qr/"creor_provider_retries" directive invalid number/],
    );
    for my $c (@cases) {
        my ($loc, $ok, $re) = @$c;
        my ($rc, $out) = $t->conf_test("creor_store $store;",
                                       "creor_api; $loc");
        is($rc == 0 ? 1 : 0, $ok, "nginx -t: $loc " . ($ok ? 'ok' : 'fails'))
            or diag($out);
        like($out, $re, "nginx -t: $loc: the message");
    }
}

$t->finish;
$pv->stop;
done_testing;
