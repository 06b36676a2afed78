#!/usr/bin/perl
# The built-in executor (SPEC 9.4): runs of an agent as streamed chat
# completions of its model through a creor_provider (t/lib/provider.mjs).
# Deltas as step.progress live and in order, the answer and usage; the
# provider's request (system prompt, settings, the thread cut at
# contextWindowSize, inputs as JSON, chatModelId); client-side tool calls
# (one round, two rounds, reject, bad outputs); provider errors retried
# then failed; cancel closing the provider call; kill -9 of the worker;
# no creor_executor at all, a reload mid-leg, creor_run_timeout.

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

my $JSONU = JSON::PP->new->utf8->canonical;
my %TERMINAL = map { $_ => 1 } qw(completed failed cancelled);

my $pv = CreorProvider->new;
my $pport = $pv->port;

my $t = CreorTest->new(
    store_opts    => 'sync=off',
    http_config   => join("\n",
        'creor_executor builtin;',
        'creor_run_lease 3s;',
        'creor_executor_retries 2;',
        $pv->upstream),
    api_location  => join(' ',
        'location /v1/ {',
        '    creor_api;',
        '    creor_provider test /provider/test;',
        '    creor_provider short /provider/short;',
        '}'),
    server_config => join("\n",
        $pv->location('/provider/test', 'proxy_read_timeout 30s;'),
        $pv->location('/provider/short', 'proxy_read_timeout 1s;')),
);

my $TOK = $t->bootstrap->{token};
my $PROJ;

api_use($t, token => $TOK, headers => { 'X-Project-Id' => '' });
$PROJ = api(POST => '/v1/projects', json => { name => 'p' })->{json}{id};
api_use($t, token => $TOK, headers => { 'X-Project-Id' => $PROJ // '' });

sub agent {
    my (%o) = @_;
    my $r = api(POST => '/v1/agents', json => {
        name => 'a' . int(rand(1e9)), model => 'test/ok',
        systemPrompt => 'You are terse.', %o });
    die "agent: $r->{body}" unless $r->{status} == 201;
    return $r->{json}{id};
}

sub run {
    my ($agent, %o) = @_;
    my $r = api(POST => '/v1/runs', json => { agentId => $agent, %o });
    die "run: $r->{body}" unless $r->{status} == 202;
    return $r->{json}{id};
}

sub awaiting { my $id = shift; wait_run($id, sub {
    $_[0]{status} eq 'awaiting_input' || $TERMINAL{ $_[0]{status} } }) }

# the provider's requests whose last user message is $text
sub calls_for {
    my ($text) = @_;
    return grep {
        my @u = grep { ($_->{role} // '') eq 'user' }
                @{ ref $_->{body} eq 'HASH' ? $_->{body}{messages} // [] : [] };
        @u && ($u[-1]{content} // '') eq $text;
    } $pv->requests;
}

sub signal { api(POST => "/v1/runs/$_[0]/signal", json => $_[1]) }

###########################################################################
# 1. A run streams its deltas live, in order, and completes

{
    my $ag = agent(model => 'test/ok+slow',
                   settings => { temperature => 0.3, maxTokens => 64 });
    my $id = run($ag, inputs => { prompt => 'stream me' });

    my $s = $t->stream(GET => "/v1/runs/$id/events/stream", token => $TOK);
    my (@deltas, @at, $text);
    my $deadline = time + 15;
    while (time < $deadline) {
        my $chunk = $s->read_until(qr/\n\n/, $deadline - time) // last;
        $text .= $chunk;
        while ($chunk =~ /^data: (.*)$/mg) {
            my $ev = $JSONU->decode($1);
            if ($ev->{type} eq 'step.progress') {
                push @deltas, $ev->{payload}{value}{content_delta};
                push @at, time;
            }
        }
        last if $text =~ /run\.completed/;
    }
    is_deeply(\@deltas, ['Hel', 'lo ', 'world'],
              'stream: deltas as step.progress, in order');
    # the provider sends one every 200 ms: they come apart, not at the end
    ok(@at == 3 && $at[2] - $at[0] > 0.2,
       'stream: deltas reach the subscriber as they arrive');

    my $run = wait_run($id);
    is($run->{status}, 'completed', 'stream: completed');
    is($run->{result}{text}, 'Hello world', 'stream: result.text');
    is_deeply($run->{usage}, { inputTokens => 11, outputTokens => 3 },
              'stream: usage from the provider');
    is_deeply(types(events_of($id)),
              [qw(run.queued run.started step.started step.progress
                  step.progress step.progress step.done run.completed)],
              'stream: the events of a leg');

    my ($req) = calls_for('stream me');
    my $b = $req->{body};
    is($b->{model}, 'ok+slow', 'request: the provider\'s model name');
    ok($b->{stream} && $b->{stream_options}{include_usage},
       'request: a stream, usage asked for');
    is($b->{temperature}, 0.3, 'request: temperature');
    is($b->{max_tokens}, 64, 'request: max_tokens');
    is_deeply($b->{messages},
              [{ role => 'system', content => 'You are terse.' },
               { role => 'user', content => 'stream me' }],
              'request: system prompt, then the input');
    ok(!exists $b->{tools}, 'request: no tools unless given');

    # metered with the run: its model, its tokens
    my $u = api(GET => '/v1/usage?group_by=model');
    my ($row) = grep { $_->{model} eq 'test/ok+slow' }
                @{ $u->{json}{data} // [] };
    is_deeply($row && [@$row{qw(runs input_tokens output_tokens)}],
              [1, 11, 3], 'usage: the run and its tokens under its model')
        or diag($u->{body});
}

###########################################################################
# 2. Follow-ups: the earlier turns, cut at contextWindowSize

{
    my $ag = agent(settings => { contextWindowSize => 3 });
    my $id = run($ag, inputs => { prompt => 'p1' });
    is(wait_run($id)->{status}, 'completed', 'thread: first run completed');

    for my $p (qw(p2 p3)) {
        my $r = api(POST => "/v1/agents/$ag/followup",
                    json => { prompt => $p });
        is($r->{status}, 202, "thread: followup $p");
        is(wait_run($r->{json}{id})->{status}, 'completed',
           "thread: followup $p completed");
    }

    my ($req) = calls_for('p3');
    is_deeply([map { "$_->{role}:$_->{content}" } @{ $req->{body}{messages} }],
              ['system:You are terse.', 'assistant:Hello world', 'user:p2',
               'assistant:Hello world', 'user:p3'],
              'thread: the last 3 earlier messages, then the input');

    ($req) = calls_for('p2');
    is(scalar @{ $req->{body}{messages} }, 4,
       'thread: the second run saw the first\'s prompt and answer');

    # no prompt: the inputs as JSON; chatModelId picks the model
    my $id2 = run($ag, inputs => { city => 'Oslo', days => 3 },
                  chatModelId => 'test/ok+batch');
    is(wait_run($id2)->{status}, 'completed', 'inputs: completed');
    ($req) = calls_for('{"city":"Oslo","days":3}');
    ok($req, 'inputs: sent as JSON when there is no prompt');
    is($req && $req->{body}{model}, 'ok+batch', 'chatModelId: its model');

    # an earlier run's inputs are text in the thread too
    my $r = api(POST => "/v1/agents/$ag/followup",
                json => { prompt => 'after json' });
    is(wait_run($r->{json}{id})->{status}, 'completed',
       'inputs: followup completed');
    ($req) = calls_for('after json');
    is_deeply([map { $_->{content} } @{ $req->{body}{messages} }[1, 2]],
              ['{"city":"Oslo","days":3}', 'Hello world'],
              'inputs: the earlier run\'s inputs as JSON text');

    # attachments: listed by name, type and signed URL
    my $B = 'creor-builtin-boundary';
    my $body = join('',
        "--$B\r\nContent-Disposition: form-data; name=\"appId\"\r\n\r\n",
        "$ag\r\n",
        "--$B\r\nContent-Disposition: form-data; name=\"inputs\"\r\n\r\n",
        qq({"prompt": "read it"}\r\n),
        "--$B\r\nContent-Disposition: form-data; name=\"files\"; ",
        "filename=\"notes.txt\"\r\nContent-Type: text/plain\r\n\r\n",
        "some notes\r\n--$B--\r\n");
    $r = api(POST => '/v1/runs', body => $body, headers => {
        'Content-Type' => "multipart/form-data; boundary=$B" });
    is($r->{status}, 202, 'files: run created') or diag($r->{body});
    wait_run($r->{json}{id});
    ($req) = grep { ($_->{body}{messages}[-1]{content} // '') =~ /^read it/ }
             $pv->requests;
    like($req && $req->{body}{messages}[-1]{content},
         qr{^read\ it\n\nAttached\ files:\n-\ notes\.txt\ \(text/plain\):
            \ /v1/runs/run_\w+/files/file_\w+\?expires=\d+&signature=\w+$}x,
         'files: listed after the prompt')
        or diag(explain($req && $req->{body}{messages}));
}

###########################################################################
# 3. Client-side tools: one round, two rounds, reject, bad outputs

my @TOOLS = ({ type => 'function', function => {
    name => 'lookup', description => 'Looks a thing up.',
    parameters => { type => 'object',
                    properties => { q => { type => 'string' } } } } });

{
    my $ag = agent();
    my $id = run($ag, chatModelId => 'test/tools',
                 inputs => { prompt => 'use a tool', tools => \@TOOLS });
    my $run = awaiting($id);
    is($run->{status}, 'awaiting_input', 'tools: awaiting_input');
    my $want = { kind => 'tool_calls', content => undef, tool_calls => [
        { id => 'call_1', type => 'function',
          function => { name => 'lookup', arguments => '{"q": "1"}' } }] };
    is_deeply($run->{awaitingInput}, $want,
              'tools: the calls on the run, arguments joined');
    my ($ev) = grep { $_->{type} eq 'run.awaiting_input' } @{ events_of($id) };
    is_deeply($ev->{payload}{value}, $want, 'tools: the calls in the event');

    my ($req) = calls_for('use a tool');
    is_deeply($req->{body}{tools}, \@TOOLS, 'tools: sent to the model');

    for my $case (
        [ 'approve without outputs', { action => 'approve' } ],
        [ 'outputs not an array', { action => 'submit_input',
                                    input => { tool_outputs => 'x' } } ],
        [ 'output not a string', { action => 'submit_input', input => {
            tool_outputs => [{ tool_call_id => 'call_1', output => 5 }] } } ],
        [ 'unknown call', { action => 'submit_input', input => {
            tool_outputs => [{ tool_call_id => 'call_9', output => 'x' }] } } ],
        [ 'a call twice', { action => 'submit_input', input => {
            tool_outputs => [{ tool_call_id => 'call_1', output => 'x' },
                             { tool_call_id => 'call_1', output => 'y' }] } } ],
    ) {
        my ($name, $body) = @$case;
        my $r = signal($id, $body);
        is($r->{status}, 400, "tools: $name is 400");
        is($r->{json}{error}{code}, 'VALIDATION_ERROR', "tools: $name code");
    }

    my $r = signal($id, { action => 'submit_input', input => {
        tool_outputs => [{ tool_call_id => 'call_1', output => '42' }] } });
    is($r->{status}, 202, 'tools: outputs accepted');
    $run = wait_run($id);
    is($run->{status}, 'completed', 'tools: completed');
    is($run->{result}{text}, 'Tool said: 42', 'tools: the answer used it');
    is($run->{awaitingInput}, undef, 'tools: nothing awaited any more');
    is_deeply($run->{usage}, { inputTokens => 14, outputTokens => 10 },
              'tools: usage of both legs');

    my @calls = calls_for('use a tool');
    is(scalar @calls, 2, 'tools: two provider calls');
    my @m = @{ $calls[1]{body}{messages} };
    is_deeply([@m[-2, -1]],
              [{ role => 'assistant', content => undef,
                 tool_calls => $want->{tool_calls} },
               { role => 'tool', tool_call_id => 'call_1',
                 content => '42' }],
              'tools: the assistant\'s calls, then the outputs');
    is_deeply(types(events_of($id)),
              [qw(run.queued run.started step.started step.done
                  run.awaiting_input run.signal step.started step.progress
                  step.progress step.progress step.done run.completed)],
              'tools: the events of both legs');
}

{
    my $ag = agent();
    my $id = run($ag, chatModelId => 'test/tools2',
                 inputs => { prompt => 'two rounds', tools => \@TOOLS });
    for my $n (1, 2) {
        my $run = awaiting($id);
        is($run->{awaitingInput}{tool_calls}[0]{id}, "call_$n",
           "two rounds: call $n awaited");
        my $r = signal($id, { action => 'approve', input => {
            tool_outputs => [{ tool_call_id => "call_$n",
                               output => "out$n" }] } });
        is($r->{status}, 202, "two rounds: outputs $n accepted");
    }
    my $run = wait_run($id);
    is($run->{status}, 'completed', 'two rounds: completed');
    is($run->{result}{text}, 'Tool said: out2', 'two rounds: answer');
    my @calls = calls_for('two rounds');
    is_deeply([map { $_->{role} } @{ $calls[2]{body}{messages} }],
              [qw(system user assistant tool assistant tool)],
              'two rounds: the third call has both rounds');

    # the thread keeps every turn: a follow-up sees the tool rounds
    my $r = api(POST => "/v1/agents/$ag/followup",
                json => { prompt => 'and then?' });
    is(wait_run($r->{json}{id})->{status}, 'completed',
       'two rounds: follow-up completed');
    my ($req) = calls_for('and then?');
    is_deeply([map { $_->{role} } @{ $req->{body}{messages} }],
              [qw(system user assistant tool assistant tool assistant
                  user)],
              'two rounds: the follow-up sees every turn');
}

{
    my $id = run(agent(), chatModelId => 'test/tools',
                 inputs => { prompt => 'reject me', tools => \@TOOLS });
    is(awaiting($id)->{status}, 'awaiting_input', 'reject: awaiting');
    is(signal($id, { action => 'reject' })->{status}, 202, 'reject: 202');
    my $run = wait_run($id);
    is($run->{status}, 'failed', 'reject: failed');
    is($run->{errorCode}, 'TOOL_CALL_REJECTED', 'reject: errorCode');
    is(scalar(calls_for('reject me')), 1, 'reject: no second provider call');
    is(signal($id, { action => 'reject' })->{status}, 409,
       'reject: a signal to the failed run is 409');
}

###########################################################################
# 4. Provider failures

for my $case (
    # model, calls, errorCode, within s
    [ 'test/fail500', 3, 'PROVIDER_ERROR', 10 ],
    [ 'test/fail400', 1, 'PROVIDER_ERROR', 5 ],
    [ 'short/hang', 3, 'PROVIDER_TIMEOUT', 15 ],
    [ 'test/cut', 3, 'PROVIDER_ERROR', 10 ],
    [ 'test/errorevent', 3, 'PROVIDER_ERROR', 10 ],
    [ 'nope/x', 0, 'UNSUPPORTED_MODEL', 5 ],
) {
    my ($model, $calls, $code, $within) = @$case;
    my $prompt = "fail $model";
    my $id = run(agent(model => $model), inputs => { prompt => $prompt });
    my $run = wait_run($id, undef, $within);
    is($run->{status}, 'failed', "$model: failed");
    is($run->{errorCode}, $code, "$model: $code");
    is(scalar(calls_for($prompt)), $calls, "$model: $calls provider calls");
    my ($ev) = grep { $_->{type} eq 'run.failed' } @{ events_of($id) };
    is($ev && $ev->{payload}{value}{reason_code}, $code,
       "$model: run.failed with reason_code");
}

###########################################################################
# 5. Cancel mid-stream closes the provider's connection

{
    my $id = run(agent(model => 'test/hangstream'),
                 inputs => { prompt => 'cancel me' });
    ok($pv->wait_for(sub { calls_for('cancel me') }, 5),
       'cancel: the provider is called');
    ok(wait_run($id, sub { @{ events_of($id) } >= 3 }), 'cancel: running');
    my $r = api(POST => "/v1/runs/$id/cancel");
    my $at = time;
    is($r->{status}, 200, 'cancel: 200');
    my $closed = $pv->wait_for(sub {
        my ($c) = calls_for('cancel me');
        $c && $c->{closed_at};
    }, 5);
    ok($closed, 'cancel: the provider saw its connection closed');
    cmp_ok($closed - $at, '<', 1.5, 'cancel: within a second or so')
        if $closed;
    is(get_run($id)->{status}, 'cancelled', 'cancel: cancelled');
}

###########################################################################
# 6. kill -9 of the worker mid-leg: another worker finishes the run

sub provider_conn_pids {
    my $out = `ss -tnpH state established '( dport = :$pport )' 2>/dev/null`;
    my %pids;
    $pids{$1} = 1 while $out =~ /\("nginx",pid=(\d+)/g;
    return sort keys %pids;
}

{
    my $id = run(agent(model => 'test/ok+slow'),
                 inputs => { prompt => 'kill me' });
    ok(wait_run($id, sub {
        grep { $_->{type} eq 'step.progress' } @{ events_of($id) } }),
       'kill -9: a delta stored');
    my ($victim) = grep { my $p = $_; grep { $_ == $p } $t->worker_pids }
                   provider_conn_pids();
    SKIP: {
        skip 'ss shows no worker on the provider', 3 unless $victim;
        ok(kill('KILL', $victim), "kill -9: worker $victim");
        my $run = wait_run($id, undef, 20);
        is($run->{status}, 'completed', 'kill -9: another worker completed');
        is($run->{result}{text}, 'Hello world', 'kill -9: the whole answer');
    }
}

###########################################################################
# 7. No creor_executor at all is the built-in one; a reload mid-leg gives
#    the leg to the new workers; creor_run_timeout closes the provider call

{
    my $id = run(agent(model => 'test/ok+slow'),
                 inputs => { prompt => 'reload me' });
    ok(wait_run($id, sub {
        grep { $_->{type} eq 'step.progress' } @{ events_of($id) } }),
       'reload: a delta stored');
    (my $http = $t->{http_config}) =~ s/creor_executor builtin;\n//;
    $t->reload(http_config => $http . "\ncreor_run_timeout 4s;");
    unlike($t->conf_text, qr/creor_executor\s/,
           'reload: no creor_executor');

    my $run = wait_run($id, undef, 15);
    is($run->{status}, 'completed', 'reload: completed by the new workers');
    is($run->{result}{text}, 'Hello world', 'reload: the whole answer');
    my @calls = calls_for('reload me');
    is(scalar @calls, 2, 'reload: the leg called the provider again');
    ok($calls[0]{closed_at}, 'reload: the old worker closed its call');

    $id = run(agent(model => 'test/hang'), inputs => { prompt => 'time out' });
    $run = wait_run($id, undef, 15);
    is($run->{errorCode}, 'RUN_TIMEOUT', 'timeout: RUN_TIMEOUT');
    ok($pv->wait_for(sub { (calls_for('time out'))[0]{closed_at} }, 5),
       'timeout: the provider call is closed');
}

$t->stop;
$t->no_alerts_ok('no alerts besides the killed worker',
                 ignore => qr/exited on signal 9/);
done_testing;
