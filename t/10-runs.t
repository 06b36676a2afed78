#!/usr/bin/perl
# Runs (SPEC 8.2-8.5) against the scripted executor of t/lib/CreorExecutor.pm:
# lifecycle, the event log, SSE replay / resume / live follow / keepalive,
# signals, cancel (also of a streaming leg), executor failures and retries,
# multipart attachments and their signed URLs, lists, tenancy, per-app keys,
# agent prompt launch and followup, required idempotency, malformed input.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::IP;
use JSON::PP;
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;
use CreorExecutor;

my $JSONU = JSON::PP->new->utf8->canonical;
my $RUN   = qr/^run_[0-9a-hjkmnp-tv-z]{26}$/;
my $EVT   = qr/^evt_[0-9a-hjkmnp-tv-z]{26}$/;
my $FILE  = qr/^file_[0-9a-hjkmnp-tv-z]{26}$/;
my $TS    = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$/;
my %TERMINAL = map { $_ => 1 } qw(completed failed cancelled);

my $ex = CreorExecutor->new;
my $exec_loc = sub {
    CreorExecutor::location_for($_[0], 'proxy_read_timeout 30s;');
};
my $t = CreorTest->new(
    store_opts    => 'sync=off',
    http_config   => 'creor_executor /_exec; creor_run_lease 3s; '
                   . 'creor_sse_keepalive 1s; client_max_body_size 120m; '
                   . 'add_header X-Worker-Pid $pid always;',
    server_config => $exec_loc->($ex->url),
);
my $GATEWAY = 'http://127.0.0.1:' . $t->port;

###########################################################################
# Helpers

my $TOK;    # the token requests use unless told otherwise

sub create_run {
    my ($json, %o) = @_;
    return api(POST => $o{path} // '/v1/runs', json => $json, %o);
}

# Parse SSE text: frames { event, id, data (decoded) } and comments.
sub sse_parse {
    my ($text) = @_;
    my (@frames, @comments);
    for my $block (split /\n\n/, $text) {
        my %f;
        for my $line (split /\n/, $block) {
            if ($line =~ /^:(.*)$/) { push @comments, $1; next }
            my ($k, $v) = $line =~ /^([^:]+):\s?(.*)$/ or next;
            $f{$k} = exists $f{$k} && $k eq 'data' ? "$f{$k}\n$v" : $v;
        }
        next unless exists $f{event} || exists $f{data};
        $f{raw} = $f{data};
        $f{data} = eval { $JSONU->decode($f{data}) } if defined $f{data};
        push @frames, \%f;
    }
    return (\@frames, \@comments);
}

# Read a stream until the response ends or $timeout passes; returns the
# body text and whether it ended.
sub sse_collect {
    my ($s, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    my $text = '';
    while (time < $deadline) {
        my $chunk = $s->read_until(qr/\n\n/, $deadline - time);
        last unless defined $chunk;
        $text .= $chunk;
    }
    $text .= $s->pending;
    return ($text, $s->done ? 1 : 0);
}

# multipart/form-data: parts [name, value] or [name, value, filename, type]
my $BOUNDARY = '----creor-test-7MA4YWxkTrZu0gW';
my %MP = (boundary => $BOUNDARY, file_type => 'application/octet-stream');
sub multipart { (multipart_body([@_], %MP))[0] }    # with this boundary

sub post_form {
    my ($body, %o) = @_;
    return api(POST => $o{path} // '/v1/runs', body => $body,
               headers => { 'Content-Type' =>
                   $o{ct} // "multipart/form-data; boundary=$BOUNDARY" },
               %o{grep { exists $o{$_} } qw(token inst)});
}

###########################################################################
# Setup: org A with a project and two agents, org B

my $A = $t->bootstrap(name => 'Runs A');
my $B = $t->bootstrap(name => 'Runs B');
$TOK = $A->{token};
api_use($t, token => $TOK);

my $r = api(POST => '/v1/projects', json => { name => 'runs' });
is($r->{status}, 201, 'project created') or diag($r->{body});
my $PROJ = $r->{json}{id};

sub mk_agent {
    my ($name, %extra) = @_;
    my $r = api(POST => '/v1/agents', headers => { 'X-Project-Id' => $PROJ },
                json => { name => $name, model => 'openai/gpt-4o', %extra });
    is($r->{status}, 201, "agent $name created") or diag($r->{body});
    return $r->{json};
}
my $AG  = mk_agent('runner-1');
my $AG2 = mk_agent('runner-2');
my $APP = $AG->{id};

###########################################################################
# Lifecycle of an "ok" run

my $t0 = time;
$r = create_run({ appId => $APP, inputs => { script => 'ok' } });
is($r->{status}, 202, 'create: 202') or diag($r->{body});
my $c = $r->{json} // {};
like($c->{id}, $RUN, 'create: run id');
is($c->{object}, 'run', 'create: object');
is($c->{status}, 'queued', 'create: queued');
is($c->{appId}, $APP, 'create: appId');
is($c->{appName}, 'runner-1', 'create: appName');
ok(defined $c->{threadId} && $c->{threadId} ne '', 'create: threadId');
like($c->{createdAt} // '', $TS, 'create: createdAt');
ok(defined $c->{request_id}
   && $c->{request_id} eq (hdr($r, 'X-Request-Id') // ''),
   'create: request_id is X-Request-Id');
ok(time - $t0 < 3, 'create answers at once');
my $OK = $c->{id};

my $run = wait_run($OK);
is($run->{status}, 'completed', 'ok: completed');
is($run->{id}, $OK, 'run: id');
is($run->{object}, 'run', 'run: object');
is($run->{agentId}, $APP, 'run: agentId');
is($run->{appId}, $APP, 'run: appId = agentId');
is($run->{appName}, 'runner-1', 'run: appName');
is($run->{threadId}, $c->{threadId}, 'run: threadId');
is($run->{projectId}, $PROJ, 'run: projectId');
is_deeply($run->{inputs}, { script => 'ok' }, 'run: inputs');
is_deeply($run->{result}, { text => 'Hello world', artifacts => [] },
          'run: result');
is($run->{errorCode}, undef, 'run: no errorCode');
is_deeply($run->{usage}, { inputTokens => 12, outputTokens => 3 },
          'run: usage');
is_deeply($run->{files}, [], 'run: no files');
like($run->{createdAt} // '', $TS, 'run: createdAt');
like($run->{startedAt} // '', $TS, 'run: startedAt');
like($run->{completedAt} // '', $TS, 'run: completedAt');
ok(($run->{createdAt} // 'z') le ($run->{startedAt} // '')
   && ($run->{startedAt} // 'z') le ($run->{completedAt} // ''),
   'run: createdAt <= startedAt <= completedAt')
    or diag("$run->{createdAt} $run->{startedAt} $run->{completedAt}");
for my $k (qw(webhookUrl chatModelId workspaceId metadata)) {
    ok(exists $run->{$k}, "run: has $k");
}

# the executor call
{
    my @rq = $ex->requests_for($OK);
    is(scalar @rq, 1, 'ok: one executor call');
    my $b = $rq[0]{body} // {};
    is($rq[0]{method}, 'POST', 'executor: POST');
    is($rq[0]{path}, '/run', 'executor: through the internal location');
    is($b->{run}{id}, $OK, 'executor: run object');
    is_deeply($b->{run}{inputs}, { script => 'ok' }, 'executor: run inputs');
    is(ref $b->{agent} eq 'HASH' && $b->{agent}{id}, $APP, 'executor: agent');
    is(ref $b->{thread}{messages}, 'ARRAY', 'executor: thread.messages');
    is_deeply($b->{files}, [], 'executor: files');
    ok(exists $b->{signal} && !defined $b->{signal}, 'executor: signal null');
}

# the event log
my @OK_TYPES = qw(run.queued run.started step.started step.progress
                  step.progress step.progress step.done run.completed);
{
    my $ev = events_of($OK);
    is_deeply(types($ev), \@OK_TYPES, 'events: types in order');
    is_deeply([map { $_->{seq} } @$ev], [1 .. 8], 'events: seq 1..8');
    ok(!(grep { ($_->{id} // '') !~ $EVT } @$ev), 'events: evt_ ids');
    ok(!(grep { ($_->{run_id} // '') ne $OK } @$ev), 'events: run_id');
    ok(!(grep { ($_->{created_at} // '') !~ $TS } @$ev), 'events: created_at');
    ok(!(grep { ref $_->{payload} ne 'HASH'
                || ref $_->{payload}{value} ne 'HASH' } @$ev),
       'events: payload.value objects');
    is(join('', map { $_->{payload}{value}{content_delta} // '' }
                @$ev[3 .. 5]), 'Hello world', 'events: deltas kept');
    is($ev->[6]{payload}{value}{outcome}, 'succeeded', 'events: step.done');
    is_deeply($ev->[7]{payload}{value}{result},
              { text => 'Hello world', artifacts => [] },
              'events: run.completed value.result');
    my @ids = map { $_->{id} } @$ev;
    is_deeply(\@ids, [sort @ids], 'events: ids in creation order');

    $r = api(GET => "/v1/runs/$OK/events");
    is($r->{status}, 200, 'events: default list');
    is($r->{json}{object}, 'list', 'events: list object');
    is_deeply([map { $_->{seq} } @{$r->{json}{data}}], [reverse 1 .. 8],
              'events: default order desc');

    # cursor walk, 3 a page, ascending
    my (@seen, $cursor);
    for (1 .. 5) {
        $r = api(GET => "/v1/runs/$OK/events?order=asc&limit=3"
                        . (defined $cursor ? "&cursor=$cursor" : ''));
        last unless $r->{status} == 200;
        push @seen, map { $_->{seq} } @{$r->{json}{data}};
        last unless $r->{json}{has_more};
        $cursor = $r->{json}{next_cursor};
    }
    is_deeply(\@seen, [1 .. 8], 'events: cursor walk');
}

# SSE replay of a finished run
{
    my $s = $t->stream(GET => "/v1/runs/$OK/events/stream", token => $TOK);
    is($s->status, 200, 'sse replay: 200');
    my $h = $s->headers;
    like($h->{'content-type'} // '', qr{^text/event-stream}, 'sse: type');
    is($h->{'cache-control'}, 'no-cache', 'sse: Cache-Control');
    is($h->{'x-accel-buffering'}, 'no', 'sse: X-Accel-Buffering');
    ok($h->{'x-request-id'}, 'sse: X-Request-Id');
    my ($text, $ended) = sse_collect($s, 5);
    ok($ended, 'sse replay: response ends after the terminal event');
    my ($f) = sse_parse($text);
    is_deeply([map { $_->{event} } @$f], [('run_event') x 8],
              'sse replay: event: run_event');
    is_deeply([map { $_->{id} } @$f], [1 .. 8], 'sse replay: id: seq');
    is_deeply([map { ref $_->{data} eq 'HASH' ? $_->{data}{type} : '?' } @$f],
              \@OK_TYPES, 'sse replay: types');
    is_deeply([map { ref $_->{data} eq 'HASH' ? $_->{data}{seq} : 0 } @$f],
              [1 .. 8], 'sse replay: envelope seq');
    is_deeply($f->[0]{data}, events_of($OK)->[0],
              'sse replay: envelope equals the stored event');
    $s->close;

    # [query, headers, ids sent, names of: the status, the ids, the end]
    for my $c (['', { 'Last-Event-ID' => 3 }, [4 .. 8], 'Last-Event-ID: 200',
                'Last-Event-ID 3 resumes at 4', 'Last-Event-ID: ends'],
               ['?after=5', {}, [6 .. 8], undef,
                '?after=5 resumes at 6', '?after=5: ends'],
               ['?after=8', {}, [], undef,
                '?after=8 of a finished run: nothing to send',
                '?after=8: ends at once']) {
        my ($q, $h, $ids, $n_status, $n_ids, $n_end) = @$c;
        $s = $t->stream(GET => "/v1/runs/$OK/events/stream$q", token => $TOK,
                        headers => $h);
        is($s->status, 200, $n_status) if defined $n_status;
        ($text, $ended) = sse_collect($s, 5);
        ($f) = sse_parse($text);
        is_deeply([map { $_->{id} } @$f], $ids, $n_ids);
        ok($ended, $n_end);
        $s->close;
    }

    $r = api(GET => "/v1/runs/$OK/events/stream", token => undef);
    err_is($r, 401, 'AUTH_MISSING_HEADER', undef, 'sse without credentials');
    like(hdr($r, 'Content-Type') // '', qr{^application/json},
         'sse 401 is JSON');
}

###########################################################################
# Live follow: two subscribers before the run finishes

{
    $r = create_run({ appId => $APP,
                      inputs => { script => 'long', steps => 10, delay => 0.1 } });
    is($r->{status}, 202, 'long: 202') or diag($r->{body});
    my $id = $r->{json}{id};
    my $s1 = $t->stream(GET => "/v1/runs/$id/events/stream", token => $TOK);
    is($s1->status, 200, 'live: first subscriber 200');
    my $pid1 = $s1->headers->{'x-worker-pid'} // '';
    # the second subscriber: on the other worker if a few tries get there
    my $s2;
    for (1 .. 10) {
        my $s = $t->stream(GET => "/v1/runs/$id/events/stream", token => $TOK);
        $s2->close if $s2;
        $s2 = $s;
        last if ($s->headers->{'x-worker-pid'} // '') ne $pid1;
    }
    is($s2->status, 200, 'live: second subscriber 200');
    my $pid2 = $s2->headers->{'x-worker-pid'} // '';
    ok($pid1 ne '' && $pid2 ne '', 'live: X-Worker-Pid on the streams');
    diag("live: both subscribers on worker $pid1") if $pid1 eq $pid2;

    my $first = $s1->read_until(qr/\n\n/, 5);
    ok(defined $first, 'live: first frame arrives');
    my $mid = get_run($id);
    ok($mid && !$TERMINAL{$mid->{status}},
       'live: the run was not finished when the first frame arrived')
        or diag($mid && $mid->{status});
    my $running = wait_run($id, sub { $_[0]{status} ne 'queued' }, 5);
    is($running->{status}, 'running', 'long: status running while it streams');
    like($running->{startedAt} // '', $TS, 'long: startedAt while running');
    is($running->{completedAt}, undef, 'long: no completedAt while running');

    my ($text1, $end1) = sse_collect($s1, 10);
    my ($text2, $end2) = sse_collect($s2, 10);
    my ($f1) = sse_parse(($first // '') . $text1);
    my ($f2) = sse_parse($text2);
    my @want = ('run.queued', 'run.started', 'step.started',
                ('step.progress') x 10, 'step.done', 'run.completed');
    is_deeply([map { $_->{data}{type} } @$f1], \@want,
              'live: subscriber 1 got every event in order');
    is_deeply([map { $_->{id} } @$f1], [1 .. 15], 'live: subscriber 1 ids');
    ok($end1, 'live: subscriber 1 stream ends');
    is_deeply([map { $_->{data}{type} } @$f2], \@want,
              'live: subscriber 2 got every event in order');
    is_deeply([map { $_->{id} } @$f2], [1 .. 15], 'live: subscriber 2 ids');
    ok($end2, 'live: subscriber 2 stream ends');
    is(join('', map { $_->{data}{payload}{value}{content_delta} // '' } @$f2),
       join('', map { "$_ " } 1 .. 10), 'live: deltas');
    $s1->close;
    $s2->close;
    my $done = wait_run($id);
    is($done->{status}, 'completed', 'long: completed');
    is_deeply($done->{usage}, { inputTokens => 12, outputTokens => 10 },
              'long: usage');
}

###########################################################################
# awaiting_input: keepalive on an idle stream, signal, completed

{
    $r = create_run({ appId => $APP, inputs => { script => 'input' } });
    my $id = $r->{json}{id};
    my $w = wait_run($id, sub { $_[0]{status} eq 'awaiting_input'
                                || $TERMINAL{$_[0]{status}} });
    is($w->{status}, 'awaiting_input', 'input: awaiting_input');

    $r = api(POST => "/v1/runs/$id/signal", json => { action => 'dance' });
    err_is($r, 400, 'VALIDATION_ERROR', 'action', 'signal: unknown action');

    my $s = $t->stream(GET => "/v1/runs/$id/events/stream", token => $TOK);
    is($s->status, 200, 'idle stream: 200');
    my $head = $s->read_until(qr/run\.awaiting_input.*\n\n/s, 5);
    ok(defined $head, 'idle stream: replayed up to run.awaiting_input');
    my $k0 = time;
    my $ka = $s->read_until(qr/^: ?keepalive/m, 8);
    my $took = time - $k0;
    ok(defined $ka, 'idle stream: keepalive comment arrives');
    # every 1 s here, against 15 s by default
    ok($took < 5, 'idle stream: within a few seconds') or diag("took $took");
    ok(!$s->done, 'idle stream: still open');

    $r = api(POST => "/v1/runs/$id/signal",
             json => { action => 'approve', input => { note => 'yes' } });
    is($r->{status}, 202, 'signal: 202') or diag($r->{body});

    my ($text, $ended) = sse_collect($s, 10);
    my ($f) = sse_parse($text);
    my $tp = [map { $_->{data}{type} } @$f];
    ok((grep { $_ eq 'run.signal' } @$tp), 'idle stream: run.signal follows')
        or diag("@$tp");
    is($tp->[-1], 'run.completed', 'idle stream: run.completed last');
    ok($ended, 'idle stream: ends after the signal leg');
    $s->close;

    my $done = wait_run($id);
    is($done->{status}, 'completed', 'signal: completed');
    is($done->{result}{text}, 'signal:approve:{"note":"yes"}',
       'signal: the executor got action and input');
    my @rq = $ex->requests_for($id);
    is(scalar @rq, 2, 'signal: two executor legs');
    is($rq[1]{body}{signal}{action}, 'approve',
       'signal: second leg body has signal.action');
    is_deeply($rq[1]{body}{signal}{input}, { note => 'yes' },
              'signal: second leg body has signal.input');
    my $ev = events_of($id);
    my ($sig) = grep { $_->{type} eq 'run.signal' } @$ev;
    is($sig && $sig->{payload}{value}{action}, 'approve',
       'signal: run.signal event carries the action');
    is_deeply([map { $_->{seq} } @$ev], [1 .. scalar @$ev],
              'signal: seqs contiguous');

    $r = api(POST => "/v1/runs/$id/signal", json => { action => 'approve' });
    err_is($r, 409, 'RUN_NOT_AWAITING_INPUT', undef,
           'signal on a completed run');
    $r = api(POST => "/v1/runs/$OK/signal", json => { action => 'reject' });
    err_is($r, 409, 'RUN_NOT_AWAITING_INPUT', undef,
           'signal on another completed run');
}

# submit_input, and cancel while awaiting input
{
    my @ids = map { create_run({ appId => $APP,
                                 inputs => { script => 'input' } })->{json}{id} }
              1 .. 2;
    for my $id (@ids) {
        my $w = wait_run($id, sub { $_[0]{status} eq 'awaiting_input'
                                    || $TERMINAL{$_[0]{status}} });
        is($w->{status}, 'awaiting_input', 'input run: awaiting_input');
    }
    $r = api(POST => "/v1/runs/$ids[0]/signal",
             json => { action => 'submit_input', input => { answer => 42 } });
    is($r->{status}, 202, 'submit_input: 202') or diag($r->{body});
    $r = api(POST => "/v1/runs/$ids[0]/signal", json => { action => 'reject' });
    ok($r->{status} == 409 || $r->{status} == 202,
       'second signal at once: 409 (or 202 if the leg already asked again)');
    is(wait_run($ids[0])->{result}{text}, 'signal:submit_input:{"answer":42}',
       'submit_input: the executor got the input');

    $r = api(POST => "/v1/runs/$ids[1]/cancel");
    is($r->{status}, 200, 'cancel awaiting_input: 200') or diag($r->{body});
    is(wait_run($ids[1])->{status}, 'cancelled', 'cancel awaiting_input: cancelled');
    $r = api(POST => "/v1/runs/$ids[1]/signal", json => { action => 'approve' });
    err_is($r, 409, 'RUN_NOT_AWAITING_INPUT', undef, 'signal after cancel');
    is(scalar(my @l = $ex->requests_for($ids[1])), 1,
       'cancel awaiting_input: no further leg');
}

###########################################################################
# Cancel

{
    # right after creation (queued or running)
    $r = create_run({ appId => $APP, inputs => { script => 'hang', hang => 20 } });
    my $id = $r->{json}{id};
    $r = api(POST => "/v1/runs/$id/cancel");
    is($r->{status}, 200, 'cancel: 200') or diag($r->{body});
    is_deeply($r->{json}, { success => JSON::PP::true }, 'cancel: success');
    my $x = wait_run($id);
    is($x->{status}, 'cancelled', 'cancel: cancelled');
    like($x->{completedAt} // '', $TS, 'cancel: completedAt');
    my $ev = events_of($id);
    is(types($ev)->[-1], 'run.cancelled', 'cancel: run.cancelled event last');
    $r = api(POST => "/v1/runs/$id/cancel");
    err_is($r, 409, 'RUN_NOT_CANCELLABLE', undef, 'cancel again');
    $r = api(POST => "/v1/runs/$OK/cancel");
    err_is($r, 409, 'RUN_NOT_CANCELLABLE', undef, 'cancel a completed run');
    $r = api(POST => "/v1/runs/$id/signal", json => { action => 'approve' });
    err_is($r, 409, 'RUN_NOT_AWAITING_INPUT', undef, 'signal a cancelled run');

    # a streaming leg: the executor sees the connection closed within 1 s
    $r = create_run({ appId => $APP, inputs => { script => 'hang', hang => 30 } });
    $id = $r->{json}{id};
    my ($rec) = $ex->wait_for(sub { $ex->requests_for($id) }, 5);
    ok($rec, 'hang: executor called');
    my $w = wait_run($id, sub { $_[0]{status} ne 'queued' }, 5);
    is($w->{status}, 'running', 'hang: running');
    $r = api(POST => "/v1/runs/$id/signal", json => { action => 'approve' });
    err_is($r, 409, 'RUN_NOT_AWAITING_INPUT', undef, 'signal a running run');

    # a subscriber of the running run sees the cancel and the end
    my $s = $t->stream(GET => "/v1/runs/$id/events/stream", token => $TOK);
    ok(defined $s->read_until(qr/step\.started.*\n\n/s, 5),
       'hang: subscriber got step.started');
    my $tc = time;
    $r = api(POST => "/v1/runs/$id/cancel");
    is($r->{status}, 200, 'cancel streaming leg: 200') or diag($r->{body});
    my ($closed) = $ex->wait_for(sub {
        grep { defined $_->{closed_at} } $ex->requests_for($id) }, 8);
    ok($closed, 'cancel streaming leg: executor connection closed');
    # the leg hangs for 30 s unless the cancel closes it
    ok($closed && $closed->{closed_at} - $tc < 5,
       'cancel streaming leg: closed within 5 s of the cancel')
        or diag($closed ? 'after ' . ($closed->{closed_at} - $tc) : 'never');
    $x = wait_run($id);
    is($x->{status}, 'cancelled', 'cancel streaming leg: cancelled');
    my ($text, $ended) = sse_collect($s, 5);
    my ($f) = sse_parse($text);
    is(($f->[-1] // {})->{data}{type}, 'run.cancelled',
       'cancel: subscriber gets run.cancelled');
    ok($ended, 'cancel: subscriber stream ends');
    $s->close;
    is(scalar(my @l = $ex->requests_for($id)), 1, 'cancel: no new leg');
}

###########################################################################
# Executor failures, run concurrently

my %FAIL;
for my $script (qw(fail500 failonce cut executor_fail garbage)) {
    $r = create_run({ appId => $APP, inputs => { script => $script } });
    is($r->{status}, 202, "$script: 202") or diag($r->{body});
    $FAIL{$script} = $r->{json}{id};
}
{
    my %fin = map { $_ => wait_run($FAIL{$_}, undef, 15) } keys %FAIL;

    my $x = $fin{fail500};
    is($x->{status}, 'failed', 'fail500: failed');
    is($x->{errorCode}, 'EXECUTOR_UNAVAILABLE', 'fail500: EXECUTOR_UNAVAILABLE');
    like($x->{completedAt} // '', $TS, 'fail500: completedAt');
    my @rq = $ex->requests_for($FAIL{fail500});
    is(scalar @rq, 3, 'fail500: 1 call + 2 retries');
    my $ev = events_of($FAIL{fail500});
    my ($wf) = grep { $_->{type} eq 'run.worker.failed' } @$ev;
    ok($wf, 'fail500: run.worker.failed event');
    is($wf && $wf->{payload}{value}{reason_code}, 'EXECUTOR_UNAVAILABLE',
       'fail500: run.worker.failed reason_code');
    is(types($ev)->[-1], 'run.worker.failed', 'fail500: it is the last event');
    ok(@rq == 3 && $rq[2]{at} - $rq[0]{at} >= 1.0,
       'fail500: retries with backoff');

    $x = $fin{failonce};
    is($x->{status}, 'completed', 'failonce: completed after a retry');
    is(scalar(@rq = $ex->requests_for($FAIL{failonce})), 2,
       'failonce: two calls');
    is($x->{result}{text}, 'Hello world', 'failonce: result');

    $x = $fin{cut};
    is($x->{status}, 'failed', 'cut: failed');
    is($x->{errorCode}, 'EXECUTOR_UNAVAILABLE', 'cut: EXECUTOR_UNAVAILABLE');
    is(scalar(@rq = $ex->requests_for($FAIL{cut})), 3, 'cut: retried');
    is(types(events_of($FAIL{cut}))->[-1], 'run.worker.failed',
       'cut: run.worker.failed last');

    $x = $fin{executor_fail};
    is($x->{status}, 'failed', 'executor_fail: failed');
    is($x->{errorCode}, 'TOOL_ERROR', 'executor_fail: TOOL_ERROR');
    is(scalar(@rq = $ex->requests_for($FAIL{executor_fail})), 1,
       'executor_fail: not retried');
    $ev = events_of($FAIL{executor_fail});
    is(types($ev)->[-1], 'run.failed', 'executor_fail: run.failed last');
    is($ev->[-1]{payload}{value}{reason_code}, 'TOOL_ERROR',
       'executor_fail: reason_code');

    $x = $fin{garbage};
    is($x->{status}, 'completed', 'garbage: completed');
    is($x->{result}{text}, 'survived', 'garbage: result');
    $ev = events_of($FAIL{garbage});
    is(types($ev)->[-1], 'run.completed', 'garbage: run.completed last');
    ok(!(grep { !defined $_->{type} || $_->{type} eq '' } @$ev),
       'garbage: no event without a type');
    is_deeply([map { $_->{seq} } @$ev], [1 .. scalar @$ev],
              'garbage: seqs contiguous');
}

###########################################################################
# Multipart: attachments, downloads, signed URLs

my ($FRUN, @FILES);
{
    my $one = "hello file one\n";
    my $two = join('', map { chr($_ % 256) } 0 .. 4999)
            . "\r\n--" . substr($BOUNDARY, 0, 12) . "\r\nnot a boundary\r\n";
    my $body = multipart(
        [appId => $APP],
        [inputs => $JSONU->encode({ script => 'files', gateway => $GATEWAY })],
        [chatModelId => 'openai/gpt-4o-mini'],
        [workspaceId => 'ws_123'],
        [metadata => '{"ticket":42}'],
        [files => $one, 'one.txt', 'text/plain'],
        [files => $two, 'two.bin', 'application/octet-stream'],
    );
    $r = post_form($body);
    is($r->{status}, 202, 'multipart: 202') or diag($r->{body});
    $FRUN = $r->{json}{id};
    my $x = wait_run($FRUN);
    is($x->{status}, 'completed', 'multipart: completed');
    is_deeply($x->{inputs}, { script => 'files', gateway => $GATEWAY },
              'multipart: inputs parsed');
    is($x->{chatModelId}, 'openai/gpt-4o-mini', 'multipart: chatModelId');
    is($x->{workspaceId}, 'ws_123', 'multipart: workspaceId');
    is_deeply($x->{metadata}, { ticket => 42 }, 'multipart: metadata');
    @FILES = @{$x->{files} // []};
    is(scalar @FILES, 2, 'multipart: two files on the run');
    is_deeply([map { $_->{name} } @FILES], ['one.txt', 'two.bin'],
              'multipart: names');
    is_deeply([map { $_->{size} } @FILES], [length $one, length $two],
              'multipart: sizes');
    is_deeply([map { $_->{type} } @FILES],
              ['text/plain', 'application/octet-stream'], 'multipart: types');
    ok(!(grep { ($_->{id} // '') !~ $FILE } @FILES), 'multipart: file_ ids');

    my @bytes = ($one, $two);
    for my $i (0, 1) {
        my $f = $FILES[$i] // {};
        $r = api(GET => "/v1/runs/$FRUN/files/" . ($f->{id} // 'x'));
        is($r->{status}, 200, "download $i: 200");
        ok($r->{body} eq $bytes[$i], "download $i: bytes equal");
        like(hdr($r, 'Content-Type') // '', qr{^\Q$f->{type}\E},
             "download $i: content type of the part");
    }

    # what the executor got, and fetched through the signed URLs
    my ($rq) = grep { $_->{method} eq 'POST' } $ex->requests_for($FRUN);
    my $xf = $rq ? $rq->{body}{files} // [] : [];
    is(scalar @$xf, 2, 'executor: two files');
    is_deeply([map { [@$_{qw(id name type size)}] } @$xf],
              [map { [@$_{qw(id name type size)}] } @FILES],
              'executor: id, name, type, size');
    my $i = 0;
    for my $f (@$xf) {
        like($f->{url} // '', qr{^/v1/runs/\Q$FRUN\E/files/\Q$f->{id}\E\?expires=\d+&signature=[0-9A-Za-z_-]+$},
             "executor: signed relative url $i");
        $i++;
    }
    my $art = $x->{result}{artifacts} // [];
    is(scalar @$art, 2, 'files script: two artifacts');
    is_deeply([map { $_->{status} } @$art], [200, 200],
              'files script: fetched without credentials');
    is_deeply([map { $_->{length} } @$art], [length $one, length $two],
              'files script: lengths match');
    is($art->[0]{head_hex}, unpack('H*', substr($one, 0, 16)),
       'files script: bytes match');

    # signed URLs: valid without credentials, tampered or unsigned not
    if (my $url = $xf->[0]{url}) {
        $r = $t->req(GET => $url);
        is($r->{status}, 200, 'signed url: 200 without credentials');
        ok($r->{body} eq $one, 'signed url: bytes');
        (my $bad = $url) =~ s/(signature=.*)(.)$/$1 . ($2 eq 'a' ? 'b' : 'a')/e;
        $r = $t->req(GET => $bad);
        err_is($r, 401, 'AUTH_KEY_INVALID', undef, 'tampered signature');
        (my $later = $url) =~ s/expires=(\d+)/'expires=' . ($1 + 1)/e;
        $r = $t->req(GET => $later);
        is($r->{status}, 401, 'changed expires: 401');
        my $other = $xf->[1]{id};
        (my $swap = $url) =~ s{/files/[^?]+}{/files/$other};
        $r = $t->req(GET => $swap);
        is($r->{status}, 401, 'signature of another file: 401');
        $r = $t->req(GET => "/v1/runs/$FRUN/files/$xf->[0]{id}");
        is($r->{status}, 401, 'unsigned, no credentials: 401');
    } else {
        fail('no signed url to test');
    }

    # limits
    my @ten = map { [files => "f$_", "f$_.txt", 'text/plain'] } 1 .. 10;
    $r = post_form(multipart([appId => $APP], @ten));
    is($r->{status}, 202, 'ten files: 202') or diag($r->{body});
    my $ten = $r->{json}{id};
    $r = post_form(multipart([appId => $APP], @ten,
                             [files => 'f11', 'f11.txt', 'text/plain']));
    err_is($r, 413, 'TOO_MANY_FILES', 'files', 'eleven files');
    $r = post_form(multipart([appId => $APP],
                             [files => '', 'empty.txt', 'text/plain']));
    err_is($r, 400, 'VALIDATION_ERROR', 'files', 'empty file');
    my $big = 'x' x (10 * 1024 * 1024);
    $r = post_form(multipart([appId => $APP],
                             [files => $big, 'max.bin', 'application/octet-stream']));
    is($r->{status}, 202, '10 MB file: 202') or diag($r->{body});
    my $max = $r->{json}{id};
    $r = post_form(multipart([appId => $APP],
                             [files => "${big}y", 'big.bin',
                              'application/octet-stream']));
    err_is($r, 413, 'FILE_TOO_LARGE', 'files', '10 MB + 1 byte');
    undef $big;
    is(wait_run($ten)->{status}, 'completed', 'ten files: run completes');
    my $mx = wait_run($max);
    is($mx->{status}, 'completed', '10 MB: run completes');
    is($mx->{files}[0]{size}, 10 * 1024 * 1024, '10 MB: size');
}

###########################################################################
# Apps routes and lists

my @APP2_RUNS;
{
    $r = create_run({ appId => $APP, inputs => { script => 'ok' } },
                    path => "/v1/apps/$AG2->{id}/runs");
    is($r->{status}, 202, 'apps create: 202') or diag($r->{body});
    is($r->{json}{appId}, $AG2->{id}, 'apps create: URL wins over the body');
    is($r->{json}{appName}, 'runner-2', 'apps create: appName');
    push @APP2_RUNS, $r->{json}{id};
    $r = create_run({ inputs => { script => 'ok' } },
                    path => "/v1/apps/$AG2->{id}/runs");
    is($r->{status}, 202, 'apps create without appId: 202') or diag($r->{body});
    push @APP2_RUNS, $r->{json}{id};
    $r = post_form(multipart([inputs => '{"script":"ok"}']),
                   path => "/v1/apps/$AG2->{id}/runs");
    is($r->{status}, 202, 'apps create multipart: 202') or diag($r->{body});
    push @APP2_RUNS, $r->{json}{id};
    wait_run($_) for @APP2_RUNS;

    $r = api(GET => "/v1/apps/$AG2->{id}/runs?limit=100");
    is($r->{status}, 200, 'apps list: 200');
    is_deeply([sort map { $_->{id} } @{$r->{json}{data} // []}],
              [sort @APP2_RUNS], 'apps list: only that app');
    $r = api(GET => "/v1/apps/$AG2->{id}/runs/$APP2_RUNS[0]");
    is($r->{status}, 200, 'apps get: 200');
    is($r->{json}{id}, $APP2_RUNS[0], 'apps get: the run');
    $r = api(GET => "/v1/apps/$AG2->{id}/runs/$OK");
    err_is($r, 404, 'NOT_FOUND', undef, "apps get: another app's run");
    $r = api(GET => "/v1/apps/$AG2->{id}/runs?status=completed&limit=100");
    is(scalar @{$r->{json}{data} // []}, 3, 'apps list: status filter');

    # /v1/runs with status filters
    $r = api(GET => '/v1/runs?limit=100');
    is($r->{status}, 200, 'list: 200');
    my @all = @{$r->{json}{data} // []};
    my %st = map { $_->{id} => $_->{status} } @all;
    my @ids = map { $_->{id} } @all;
    is_deeply(\@ids, [sort { $b cmp $a } @ids], 'list: newest first');
    ok($st{$OK} && $st{$FAIL{fail500}}, 'list: has the runs');

    $r = api(GET => '/v1/runs?status=completed&limit=100');
    is($r->{status}, 200, 'status=completed: 200');
    my @c = @{$r->{json}{data} // []};
    ok(@c && !(grep { $_->{status} ne 'completed' } @c),
       'status=completed: only completed');
    is_deeply([sort map { $_->{id} } @c],
              [sort grep { $st{$_} eq 'completed' } keys %st],
              'status=completed: all of them');
    $r = api(GET => '/v1/runs?status=failed&limit=100');
    is_deeply([sort map { $_->{id} } @{$r->{json}{data} // []}],
              [sort @FAIL{qw(fail500 cut executor_fail)}],
              'status=failed');
    $r = api(GET => '/v1/runs?status=cancelled&limit=100');
    is(scalar @{$r->{json}{data} // []}, 3, 'status=cancelled: the three cancelled runs');

    # pending = queued: park runs on an executor that cannot be reached?
    # No: runs leave queued at once; check the alias answers like queued.
    my $p = api(GET => '/v1/runs?status=pending&limit=100');
    my $q = api(GET => '/v1/runs?status=queued&limit=100');
    is($p->{status}, 200, 'status=pending: 200');
    ok(!(grep { $_->{status} ne 'queued' } @{$p->{json}{data} // []}),
       'status=pending: only queued runs');
    is(scalar @{$p->{json}{data} // []}, scalar @{$q->{json}{data} // []},
       'status=pending lists like status=queued');

    # cursor mode
    my (@walk, $cursor);
    for (1 .. 20) {
        $r = api(GET => '/v1/runs?limit=4' . ($cursor ? "&cursor=$cursor" : ''));
        last unless $r->{status} == 200;
        push @walk, map { $_->{id} } @{$r->{json}{data}};
        last unless $r->{json}{has_more};
        $cursor = $r->{json}{next_cursor};
    }
    is_deeply(\@walk, \@ids, 'cursor walk: every run once, in order');
    $r = api(GET => "/v1/runs?limit=4&status=completed&cursor=$cursor")
        if $cursor;
    is($r->{status}, 400, 'cursor with other filters: 400') if $cursor;

    # offset mode
    $r = api(GET => '/v1/runs?offset=0&limit=3');
    is($r->{status}, 200, 'offset mode: 200');
    is($r->{json}{total}, scalar @ids, 'offset mode: total');
    is($r->{json}{limit}, 3, 'offset mode: limit');
    is($r->{json}{offset}, 0, 'offset mode: offset');
    is_deeply([map { $_->{id} } @{$r->{json}{data}}], [@ids[0 .. 2]],
              'offset mode: first page');
    $r = api(GET => '/v1/runs?offset=3&limit=3');
    is_deeply([map { $_->{id} } @{$r->{json}{data}}], [@ids[3 .. 5]],
              'offset mode: second page');
    is($r->{json}{offset}, 3, 'offset mode: offset 3');
    $r = api(GET => '/v1/runs?offset=' . scalar(@ids) . '&limit=3');
    is_deeply($r->{json}{data}, [], 'offset mode: past the end');
    $r = api(GET => '/v1/runs?offset=1&limit=100&status=failed');
    is($r->{json}{total}, 3, 'offset mode with status: total');
    is(scalar @{$r->{json}{data}}, 2, 'offset mode with status: data');
    $r = api(GET => "/v1/apps/$AG2->{id}/runs?offset=0&limit=2");
    is($r->{json}{total}, 3, 'offset mode, app scoped: total');
}

###########################################################################
# Tenancy and per-app keys

{
    my $fid = $FILES[0]{id} // 'file_x';
    my @paths = (
        [GET  => "/v1/runs/$OK"],
        [POST => "/v1/runs/$OK/cancel"],
        [POST => "/v1/runs/$OK/signal", { action => 'approve' }],
        [GET  => "/v1/runs/$OK/events"],
        [GET  => "/v1/runs/$OK/events/stream"],
        [GET  => "/v1/runs/$FRUN/files/$fid"],
        [GET  => "/v1/apps/$APP/runs"],
        [GET  => "/v1/apps/$APP/runs/$OK"],
        [POST => "/v1/apps/$APP/runs", { inputs => {} }],
    );
    for my $p (@paths) {
        my ($m, $path, $json) = @$p;
        $r = api($m => $path, token => $B->{token},
                 (defined $json ? (json => $json) : ()));
        err_is($r, 404, 'NOT_FOUND', undef, "org B: $m $path");
        like(hdr($r, 'Content-Type') // '', qr{^application/json},
             "org B: $m $path is JSON");
    }
    $r = api(GET => '/v1/apps/agent_00000000000000000000000000/runs');
    err_is($r, 404, 'NOT_FOUND', undef, 'GET /v1/apps/<unknown agent>/runs');
    $r = api(GET => '/v1/apps/agent_00000000000000000000000000/runs/' . $OK);
    err_is($r, 404, 'NOT_FOUND', undef,
           'GET /v1/apps/<unknown agent>/runs/:runId');
    $r = create_run({ appId => $APP }, token => $B->{token});
    err_is($r, 404, 'NOT_FOUND', undef, "org B: POST /v1/runs with A's app");
    $r = api(GET => '/v1/runs?limit=100', token => $B->{token});
    is_deeply($r->{json}{data}, [], "org B sees none of A's runs");
    is(get_run($OK)->{status}, 'completed', "A's run untouched");

    # per-app key bound to $APP
    $r = api(POST => '/v1/api-keys',
             json => { name => 'app-key', role => 'user', appId => $APP });
    is($r->{status}, 201, 'per-app key created') or diag($r->{body});
    my $ak = $r->{json}{token};
    my $other = $APP2_RUNS[0];
    for my $p ([GET => "/v1/runs/$other"],
               [GET => "/v1/runs/$other/events"],
               [GET => "/v1/runs/$other/events/stream"],
               [POST => "/v1/runs/$other/cancel"],
               [GET => "/v1/apps/$AG2->{id}/runs"],
               [GET => "/v1/apps/$AG2->{id}/runs/$other"]) {
        $r = api($p->[0] => $p->[1], token => $ak);
        err_is($r, 403, 'APP_SCOPE_RESTRICTED', undef,
               "app key: $p->[0] $p->[1]");
    }
    $r = create_run({ inputs => { script => 'ok' } }, token => $ak,
                    path => "/v1/apps/$AG2->{id}/runs");
    err_is($r, 403, 'APP_SCOPE_RESTRICTED', undef,
           'app key: POST other app runs');
    $r = create_run({ appId => $AG2->{id} }, token => $ak);
    err_is($r, 403, 'APP_SCOPE_RESTRICTED', undef,
           'app key: POST /v1/runs other app');
    is(get_run($OK, token => $ak)->{id}, $OK, 'app key: own app run readable');
    $r = create_run({ appId => $APP, inputs => { script => 'ok' } },
                    token => $ak);
    is($r->{status}, 202, 'app key: may run its app') or diag($r->{body});
    my $own = $r->{json}{id};
    $r = api(GET => '/v1/runs?limit=100', token => $ak);
    ok(!(grep { $_->{appId} ne $APP } @{$r->{json}{data} // []}),
       "app key: list shows only its app's runs");
    is(wait_run($own)->{status}, 'completed', 'app key run completes');
}

###########################################################################
# Agent prompt launch and followup

{
    $r = api(POST => '/v1/agents', headers => { 'X-Project-Id' => $PROJ },
             json => { name => 'chatty', model => 'openai/gpt-4o',
                       prompt => 'Say hello' });
    is($r->{status}, 201, 'agent with prompt: 201') or diag($r->{body});
    my $ag = $r->{json};
    like($ag->{runId} // '', $RUN, 'agent: runId');
    like($ag->{status} // '', qr/^(?:queued|running|completed)$/,
         'agent: status of its run');
    my $first = wait_run($ag->{runId});
    is($first->{status}, 'completed', 'agent run: completed');
    is($first->{agentId}, $ag->{id}, 'agent run: agentId');
    $r = api(GET => "/v1/agents/$ag->{id}");
    is($r->{json}{status}, 'completed', 'agent: status completed');
    is($r->{json}{runId}, $ag->{runId}, 'agent: runId');

    $r = api(POST => "/v1/agents/$ag->{id}/followup",
             json => { prompt => 'And goodbye' });
    is($r->{status}, 202, 'followup: 202') or diag($r->{body});
    my $fu = $r->{json};
    like($fu->{id} // '', $RUN, 'followup: a run');
    isnt($fu->{id}, $ag->{runId}, 'followup: a new run');
    is($fu->{threadId}, $first->{threadId}, "followup: the agent's thread");
    is(wait_run($fu->{id})->{status}, 'completed', 'followup: completed');
    # thread.messages holds the earlier runs of the thread; the new prompt
    # travels in run.inputs.prompt
    my ($rq) = $ex->requests_for($ag->{runId});
    is($rq && $rq->{body}{run}{inputs}{prompt}, 'Say hello',
       'first run: executor gets the prompt in run.inputs');
    is_deeply($rq ? $rq->{body}{thread}{messages} : undef, [],
              'first run: no earlier messages');
    ($rq) = $ex->requests_for($fu->{id});
    is($rq && $rq->{body}{run}{inputs}{prompt}, 'And goodbye',
       'followup: executor gets the new prompt in run.inputs');
    is($rq && $rq->{body}{thread}{id}, $first->{threadId},
       'followup: thread id');
    is_deeply($rq ? $rq->{body}{thread}{messages} : undef,
              [{ role => 'user', content => 'Say hello' },
               { role => 'assistant', content => 'Hello world' }],
              "followup: thread.messages has the first run's prompt and result");

    # a second followup sees both earlier runs, oldest first
    $r = api(POST => "/v1/agents/$ag->{id}/followup",
             json => { prompt => 'Third' });
    is($r->{status}, 202, 'second followup: 202') or diag($r->{body});
    my $fu2 = $r->{json}{id} // '';
    is(wait_run($fu2)->{status}, 'completed', 'second followup: completed');
    ($rq) = $ex->requests_for($fu2);
    is_deeply([map { $_->{content} }
               @{$rq ? $rq->{body}{thread}{messages} // [] : []}],
              ['Say hello', 'Hello world', 'And goodbye', 'Hello world'],
              'second followup: both earlier runs in order');
    $r = api(GET => "/v1/agents/$ag->{id}");
    is($r->{json}{runId}, $fu2, 'agent: runId is its latest run');

    # the thread is cut to the agent's contextWindowSize runs, the latest
    $r = api(PATCH => "/v1/agents/$ag->{id}",
             json => { settings => { contextWindowSize => 1 } });
    is($r->{status}, 200, 'contextWindowSize 1') or diag($r->{body});
    $r = api(POST => "/v1/agents/$ag->{id}/followup",
             json => { prompt => 'Fourth' });
    my $fu3 = $r->{json}{id} // '';
    is(wait_run($fu3)->{status}, 'completed', 'third followup: completed');
    ($rq) = $ex->requests_for($fu3);
    is_deeply([map { $_->{content} }
               @{$rq ? $rq->{body}{thread}{messages} // [] : []}],
              ['Third', 'Hello world'],
              'contextWindowSize 1: only the latest earlier run');

    $r = api(POST => "/v1/agents/$ag->{id}/followup", json => {});
    err_is($r, 400, 'MISSING_FIELD', 'prompt', 'followup without prompt');
    $r = api(POST => "/v1/agents/$ag->{id}/followup",
             json => { prompt => 'x' }, token => $B->{token});
    err_is($r, 404, 'NOT_FOUND', undef, 'followup: another org');
}

###########################################################################
# Malformed requests

{
    my $id = $OK;
    my $mp = "multipart/form-data; boundary=$BOUNDARY";
    my @corpus = (
        ['invalid JSON', POST => '/v1/runs', body => '{"appId":',
         ct => 'application/json', 400, 'INVALID_JSON'],
        ['JSON array', POST => '/v1/runs', body => '[1]',
         ct => 'application/json', 400, 'VALIDATION_ERROR'],
        ['inputs a string', POST => '/v1/runs',
         json => { appId => $APP, inputs => 'x' }, 400, 'VALIDATION_ERROR'],
        ['inputs an array', POST => '/v1/runs',
         json => { appId => $APP, inputs => [1] }, 400, 'VALIDATION_ERROR'],
        ['unknown field', POST => '/v1/runs',
         json => { appId => $APP, bogus => 1 }, 400, 'UNKNOWN_PARAMETER'],
        ['no appId', POST => '/v1/runs', json => { inputs => {} },
         400, 'MISSING_FIELD'],
        ['appId a number', POST => '/v1/runs', json => { appId => 7 },
         400, 'VALIDATION_ERROR'],
        ['appId empty', POST => '/v1/runs', json => { appId => '' },
         400, 'VALIDATION_ERROR'],
        ['appId null', POST => '/v1/runs', json => { appId => undef },
         400, 'VALIDATION_ERROR'],
        ['agentId null', POST => '/v1/runs', json => { agentId => undef },
         400, 'VALIDATION_ERROR'],
        ['appId null, agentId given', POST => '/v1/runs',
         json => { appId => undef, agentId => $APP }, 400, 'VALIDATION_ERROR'],
        ['appId unknown', POST => '/v1/runs',
         json => { appId => 'agent_00000000000000000000000000' },
         404, 'NOT_FOUND'],
        ['appId not an agent', POST => '/v1/runs', json => { appId => $PROJ },
         404, 'NOT_FOUND'],
        ['metadata a string', POST => '/v1/runs',
         json => { appId => $APP, metadata => 'x' }, 400, 'VALIDATION_ERROR'],
        ['chatModelId a number', POST => '/v1/runs',
         json => { appId => $APP, chatModelId => 5 }, 400, 'VALIDATION_ERROR'],
        ['webhookUrl not http', POST => '/v1/runs',
         json => { appId => $APP, webhookUrl => 'ftp://x/y' },
         400, 'VALIDATION_ERROR'],
        ['text/plain', POST => '/v1/runs', body => '{}', ct => 'text/plain',
         415, 'UNSUPPORTED_MEDIA_TYPE'],
        ['multipart without boundary', POST => '/v1/runs',
         body => multipart([appId => $APP]), ct => 'multipart/form-data',
         400, 'VALIDATION_ERROR'],
        ['multipart unterminated', POST => '/v1/runs',
         body => "--$BOUNDARY\r\nContent-Disposition: form-data; "
               . "name=\"appId\"\r\n\r\n$APP", ct => $mp,
         400, 'VALIDATION_ERROR'],
        ['multipart other boundary', POST => '/v1/runs',
         body => multipart([appId => $APP]) =~ s/\Q$BOUNDARY\E/zzz/gr,
         ct => $mp, 400, 'VALIDATION_ERROR'],
        ['multipart part without disposition', POST => '/v1/runs',
         body => "--$BOUNDARY\r\nContent-Type: text/plain\r\n\r\nx\r\n"
               . "--$BOUNDARY--\r\n", ct => $mp, 400, 'VALIDATION_ERROR'],
        ['multipart inputs not JSON', POST => '/v1/runs',
         body => multipart([appId => $APP], [inputs => '{nope']), ct => $mp,
         400, 'INVALID_JSON'],
        ['multipart inputs an array', POST => '/v1/runs',
         body => multipart([appId => $APP], [inputs => '[]']), ct => $mp,
         400, 'VALIDATION_ERROR'],
        ['multipart unknown field', POST => '/v1/runs',
         body => multipart([appId => $APP], [colour => 'red']), ct => $mp,
         400, 'UNKNOWN_PARAMETER'],
        ['multipart files not a file', POST => '/v1/runs',
         body => multipart([appId => $APP], [files => 'abc']), ct => $mp,
         400, 'VALIDATION_ERROR'],
        ['multipart appId twice', POST => '/v1/runs',
         body => multipart([appId => $APP], [appId => $APP]), ct => $mp,
         400, 'VALIDATION_ERROR'],
        ['multipart empty file name', POST => '/v1/runs',
         body => multipart([appId => $APP], [files => 'x', '', 'text/plain']),
         ct => $mp, 400, 'VALIDATION_ERROR'],
        ['multipart no appId', POST => '/v1/runs',
         body => multipart([inputs => '{}']), ct => $mp,
         400, 'MISSING_FIELD'],
        ['bad status filter', GET => '/v1/runs?status=bogus',
         400, 'VALIDATION_ERROR'],
        ['limit 0', GET => '/v1/runs?limit=0', 400, 'VALIDATION_ERROR'],
        ['limit 101', GET => '/v1/runs?limit=101', 400, 'VALIDATION_ERROR'],
        ['bad cursor', GET => '/v1/runs?cursor=garbage', 400, 'INVALID_CURSOR'],
        ['negative offset', GET => '/v1/runs?offset=-1', 400,
         'VALIDATION_ERROR'],
        ['unknown query', GET => '/v1/runs?colour=red', 400,
         'UNKNOWN_PARAMETER'],
        ['Last-Event-ID abc', GET => "/v1/runs/$id/events/stream",
         headers => { 'Last-Event-ID' => 'abc' }, 400, 'VALIDATION_ERROR'],
        ['Last-Event-ID -1', GET => "/v1/runs/$id/events/stream",
         headers => { 'Last-Event-ID' => '-1' }, 400, 'VALIDATION_ERROR'],
        ['after=abc', GET => "/v1/runs/$id/events/stream?after=abc",
         400, 'VALIDATION_ERROR'],
        ['after huge', GET => "/v1/runs/$id/events/stream?after=99999999999999",
         400, 'VALIDATION_ERROR'],
        ['stream unknown query', GET => "/v1/runs/$id/events/stream?x=1",
         400, 'UNKNOWN_PARAMETER'],
        ['events bad order', GET => "/v1/runs/$id/events?order=sideways",
         400, 'VALIDATION_ERROR'],
        ['signal without action', POST => "/v1/runs/$id/signal", json => {},
         400, 'MISSING_FIELD'],
        ['signal action a number', POST => "/v1/runs/$id/signal",
         json => { action => 1 }, 400, 'VALIDATION_ERROR'],
        ['signal unknown field', POST => "/v1/runs/$id/signal",
         json => { action => 'approve', extra => 1 }, 400,
         'UNKNOWN_PARAMETER'],
        ['signal invalid JSON', POST => "/v1/runs/$id/signal", body => '{',
         ct => 'application/json', 400, 'INVALID_JSON'],
        ['run id malformed', GET => '/v1/runs/run_bogus', 404, 'NOT_FOUND'],
        ['run id unknown', GET => '/v1/runs/run_00000000000000000000000000',
         404, 'NOT_FOUND'],
        ['stream of unknown run',
         GET => '/v1/runs/run_00000000000000000000000000/events/stream',
         404, 'NOT_FOUND'],
        ['file unknown', GET => "/v1/runs/$id/files/file_00000000000000000000000000",
         404, 'NOT_FOUND'],
        ['DELETE a run', DELETE => "/v1/runs/$id", 405, 'METHOD_NOT_ALLOWED'],
        ['PUT runs', PUT => '/v1/runs', body => '{}',
         ct => 'application/json', 405, 'METHOD_NOT_ALLOWED'],
    );
    my $n5xx = 0;
    for my $c (@corpus) {
        my ($name, $m, $path, @rest) = @$c;
        my ($code, $status) = (pop @rest, pop @rest);
        my %o = @rest;
        my $ct = delete $o{ct};
        $o{headers} = { %{$o{headers} // {}},
                        (defined $ct ? ('Content-Type' => $ct) : ()) };
        $r = api($m => $path, %o);
        $n5xx++ if $r->{status} >= 500 || $r->{status} == 0;
        err_is($r, $status, $code, undef, "malformed: $name");
        my $e = ref $r->{json} eq 'HASH' ? $r->{json}{error} : undef;
        ok(ref $e eq 'HASH' && $e->{type} && $e->{message}
           && ($e->{request_id} // '') eq (hdr($r, 'X-Request-Id') // '-'),
           "malformed: $name: error envelope");
    }
    is($n5xx, 0, 'malformed: no 5xx');
}

###########################################################################
# A second instance: creor_idempotency_required on, executor refused

{
    my $dead = free_port();
    my $t2 = CreorTest->new(
        store_opts    => 'sync=off',
        http_config   => 'creor_executor /_exec; creor_run_lease 3s; '
                       . 'creor_idempotency_required on;',
        server_config => $exec_loc->("http://127.0.0.1:$dead"),
    );
    my $b2 = $t2->bootstrap(name => 'Idem');
    my %o = (inst => $t2, token => $b2->{token});
    $r = api(POST => '/v1/projects', %o, json => { name => 'p' });
    my $p2 = $r->{json}{id};
    $r = api(POST => '/v1/agents', %o, headers => { 'X-Project-Id' => $p2 },
             json => { name => 'a', model => 'openai/gpt-4o' });
    is($r->{status}, 201, 'idem: agent (no key needed)') or diag($r->{body});
    my $a2 = $r->{json}{id};

    $r = api(POST => '/v1/runs', %o, json => { appId => $a2 });
    err_is($r, 400, 'MISSING_IDEMPOTENCY_KEY', undef,
           'idem: POST /v1/runs without key');
    $r = api(POST => "/v1/apps/$a2/runs", %o, json => {});
    err_is($r, 400, 'MISSING_IDEMPOTENCY_KEY', undef,
           'idem: POST apps runs without key');

    my $key = "runs-$$-" . int(time * 1000);
    my $body = { appId => $a2, inputs => { script => 'ok' } };
    my $r1 = api(POST => '/v1/runs', %o, json => $body,
                 headers => { 'Idempotency-Key' => $key });
    is($r1->{status}, 202, 'idem: first 202') or diag($r1->{body});
    ok(!$r1->{json}{replayed}, 'idem: first not replayed');
    my $r2 = api(POST => '/v1/runs', %o, json => $body,
                 headers => { 'Idempotency-Key' => $key });
    is($r2->{status}, 202, 'idem: replay 202') or diag($r2->{body});
    is($r2->{json}{id}, $r1->{json}{id}, 'idem: replay has the same id');
    is($r2->{json}{replayed}, JSON::PP::true, 'idem: "replayed": true');
    is(hdr($r2, 'Idempotent-Replayed'), 'true', 'idem: replay header');
    $r = api(GET => '/v1/runs?limit=100', %o);
    is(scalar @{$r->{json}{data} // []}, 1, 'idem: one run made');
    $r = api(POST => '/v1/runs', %o, json => { appId => $a2 },
             headers => { 'Idempotency-Key' => $key });
    err_is($r, 409, 'IDEMPOTENCY_KEY_REUSED', undef,
           'idem: same key, other body');

    # nothing listens behind /_exec
    my $x = wait_run($r1->{json}{id}, undef, 15, %o);
    is($x->{status}, 'failed', 'refused: failed');
    is($x->{errorCode}, 'EXECUTOR_UNAVAILABLE', 'refused: EXECUTOR_UNAVAILABLE');
    my $ev = events_of($r1->{json}{id}, %o);
    is(types($ev)->[-1], 'run.worker.failed', 'refused: run.worker.failed');
    is($ev->[-1]{payload}{value}{reason_code}, 'EXECUTOR_UNAVAILABLE',
       'refused: reason_code');
    $t2->finish('second instance: no alerts');
}

###########################################################################

$t->finish;
$ex->stop;
done_testing;
