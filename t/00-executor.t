#!/usr/bin/perl
# Self-check of t/lib/CreorExecutor.pm, the fake agent runner, over plain
# HTTP (no nginx).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use CreorExecutor;
use CreorApi qw(types);

my $JSON = JSON::PP->new->utf8->canonical;
my $seq  = 0;
sub run_id { sprintf 'run_test%d_%d', $$, ++$seq }

# A run request body as the module sends it.
sub run_body {
    my (%o) = @_;
    return {
        run    => { id => $o{id} // run_id(), inputs => $o{inputs} // {},
                    agent_id => 'agt_1' },
        agent  => { id => 'agt_1', name => 'Test agent' },
        thread => { messages => [{ role => 'user', content => 'hi' }] },
        files  => $o{files} // [],
        signal => $o{signal},
    };
}

# Open a connection and send one request; returns the socket.
sub send_req {
    my ($port, %o) = @_;
    my $s = $o{sock} // IO::Socket::IP->new(
        PeerHost => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout  => 5) or die "connect: $@";
    binmode $s;
    my $body = exists $o{raw_body} ? $o{raw_body} : $JSON->encode($o{json});
    my $text = $o{raw} // (($o{method} // 'POST') . ' ' . ($o{path} // '/v1/run')
        . ' HTTP/' . ($o{version} // '1.1') . "\r\n"
        . "Host: executor\r\nContent-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . "Connection: " . ($o{keepalive} ? 'keep-alive' : 'close') . "\r\n"
        . "\r\n" . $body);
    syswrite($s, $text) == length $text or die "write: $!";
    return $s;
}

# Read a response, noting when each byte arrived.  Stops at the end of the
# response (last chunk, Content-Length, EOF), when the body matches
# $o{until}, or after $o{timeout} seconds.  Returns { status, headers,
# body, lines => [[time, text]], events, terminated, eof, timeout }.
sub read_resp {
    my ($s, %o) = @_;
    my $deadline = time + ($o{timeout} // 10);
    my $buf = '';
    my @marks;              # [end offset, arrival time]
    my $r = { eof => 0, timeout => 0, terminated => 0, lines => [] };
    my $when = sub {
        my ($off) = @_;
        for (@marks) { return $_->[1] if $_->[0] >= $off }
        return time;
    };
    my $fill = sub {
        my $left = $deadline - time;
        if ($left <= 0 || !IO::Select->new($s)->can_read($left)) {
            $r->{timeout} = 1;
            return 0;
        }
        my $n = sysread($s, $buf, 65536, length $buf);
        if (!$n) { $r->{eof} = 1; return 0 }
        push @marks, [length $buf, time];
        return 1;
    };

    $fill->() or return $r while $buf !~ /\r\n\r\n/;
    my $hlen = index($buf, "\r\n\r\n") + 4;
    my ($line, @h) = split /\r\n/, substr($buf, 0, $hlen - 4);
    ($r->{status}) = $line =~ m{^HTTP/1\.\d (\d{3})};
    for (@h) { $r->{headers}{lc $1} = $2 if /^([^:]+):\s*(.*)$/ }
    my $h = $r->{headers};

    my $pos = $hlen;
    my $body = '';
    my $chunked = ($h->{'transfer-encoding'} // '') =~ /chunked/i;
    while (1) {
        if ($chunked) {
            while (substr($buf, $pos) =~ /^([0-9a-f]+)\r\n/) {
                my ($size, $l) = (hex $1, length $&);
                if ($size == 0) {
                    if (length($buf) >= $pos + $l + 2) {
                        $r->{terminated} = 1;
                        $pos += $l + 2;
                    }
                    last;
                }
                last if length($buf) < $pos + $l + $size + 2;
                my $data = substr($buf, $pos + $l, $size);
                push @{$r->{lines}}, [$when->($pos + $l + $size), $data];
                $body .= $data;
                $pos += $l + $size + 2;
            }
        } else {
            while ((my $i = index($buf, "\n", $pos)) >= 0) {
                my $data = substr($buf, $pos, $i + 1 - $pos);
                push @{$r->{lines}}, [$when->($i + 1), $data];
                $body .= $data;
                $pos = $i + 1;
            }
        }
        last if $r->{terminated};
        last if defined $h->{'content-length'}
                && length($buf) - $hlen >= $h->{'content-length'};
        last if $o{until} && $body =~ $o{until};
        $fill->() or last;
    }
    $body = substr($buf, $hlen) unless $chunked;
    $r->{body}   = $body;
    $r->{json}   = eval { $JSON->decode($body) };
    $r->{events} = [map { scalar eval { $JSON->decode($_->[1]) } }
                      @{$r->{lines}}];
    return $r;
}

sub post {
    my ($ex, %o) = @_;
    my $s = send_req($ex->port, %o);
    my $r = read_resp($s, %o);
    close $s;
    return $r;
}


my $ex = CreorExecutor->new;
like($ex->url, qr{^http://127\.0\.0\.1:\d+$}, 'url');
is($ex->url, 'http://127.0.0.1:' . $ex->port, 'url has the port');
ok(-d $ex->dir, 'recording dir');
ok(scalar(my @p = $ex->pids) >= 1, 'server running');

# ok: incremental, one chunk per line
{
    my $id = run_id();
    my $t0 = time;
    my $r = post($ex, json => run_body(id => $id,
                                       inputs => { script => 'ok', delay => 0.15 }),
                 path => '/agents/run');
    is($r->{status}, 200, 'ok: 200');
    is($r->{headers}{'content-type'}, 'application/x-ndjson', 'ok: ndjson');
    is($r->{headers}{'x-accel-buffering'}, 'no', 'ok: X-Accel-Buffering');
    is($r->{headers}{'transfer-encoding'}, 'chunked', 'ok: chunked');
    ok($r->{terminated}, 'ok: last chunk sent');
    is_deeply(types($r->{events}),
              [qw(step.started step.progress step.progress step.progress
                  step.done run.completed)], 'ok: event types');
    ok(!(grep { $_->[1] !~ /^[^\n]+\n\z/ } @{$r->{lines}}),
       'ok: every chunk is one line');
    is(join('', map { $_->{value}{content_delta} }
                @{$r->{events}}[1 .. 3]), 'Hello world', 'ok: deltas');
    is_deeply([map { $_->{value}{kind} } @{$r->{events}}[1 .. 3]],
              [('content_delta') x 3], 'ok: delta kind');
    is($r->{events}[4]{value}{outcome}, 'succeeded', 'ok: step.done outcome');
    is_deeply($r->{events}[5]{value},
              { result => { text => 'Hello world', artifacts => [] },
                usage  => { inputTokens => 12, outputTokens => 3 } },
              'ok: run.completed');
    my @t = map { $_->[0] } @{$r->{lines}};
    my @gaps = map { $t[$_] - $t[$_ - 1] } 1 .. 4;
    ok(!(grep { $_ < 0.13 } @gaps), 'ok: lines arrive incrementally')
        or diag("gaps: @gaps");
    ok(time - $t0 >= 0.6, 'ok: took the delays');

    my @rq = $ex->requests_for($id);
    is(scalar @rq, 1, 'ok: one request recorded');
    is($rq[0]{path}, '/agents/run', 'ok: path recorded');
    is($rq[0]{method}, 'POST', 'ok: method recorded');
    is($rq[0]{body}{run}{id}, $id, 'ok: body recorded');
    is($rq[0]{body}{thread}{messages}[0]{content}, 'hi', 'ok: thread recorded');
    is($rq[0]{run_id}, $id, 'ok: run_id');
    is($rq[0]{script}, 'ok', 'ok: script');
    is($rq[0]{status}, 200, 'ok: status');
    is($rq[0]{attempt}, 1, 'ok: attempt');
    ok($rq[0]{at} >= $t0 && $rq[0]{at} < $t0 + 1, 'ok: arrival time');
    is($rq[0]{closed_at}, undef, 'ok: not closed by the peer');
    ok($ex->wait_for(sub { ($ex->requests_for($id))[0]{done_at} }, 2),
       'ok: done_at');
    is($rq[0]{headers}{'content-type'}, 'application/json', 'ok: headers');
}

# default script, HTTP/1.0, framing by close
{
    my $id = run_id();
    my $r = post($ex, json => run_body(id => $id,
                                       inputs => { framing => 'close' }),
                 version => '1.0');
    is($r->{status}, 200, 'close framing: 200');
    ok(!defined $r->{headers}{'transfer-encoding'}, 'close framing: no TE');
    ok(!defined $r->{headers}{'content-length'}, 'close framing: no length');
    ok($r->{eof}, 'close framing: ends with EOF');
    is(types($r->{events})->[-1], 'run.completed',
       'close framing: default script is ok');
    is(scalar @{$r->{lines}}, 6, 'close framing: six lines');
    is(($ex->requests_for($id))[0]{version}, '1.0', 'HTTP/1.0 recorded');
}

# input, without and with a signal
{
    my $id = run_id();
    my $r = post($ex, json => run_body(id => $id,
                                       inputs => { script => 'input' }));
    ok($r->{terminated}, 'input: response ends');
    is_deeply(types($r->{events}), [qw(step.started run.awaiting_input)],
              'input: awaiting input');
    is($r->{events}[1]{value}{prompt}, 'Approve?', 'input: prompt');

    $r = post($ex, json => run_body(id => $id, inputs => { script => 'input' },
                                    signal => { action => 'approve',
                                                input => { note => 'yes' } }));
    is_deeply(types($r->{events}), ['run.completed'], 'signal: completed');
    is($r->{events}[0]{value}{result}{text}, 'signal:approve:{"note":"yes"}',
       'signal: text');

    $r = post($ex, json => run_body(id => $id, inputs => { script => 'input' },
                                    signal => { action => 'reject' }));
    is($r->{events}[0]{value}{result}{text}, 'signal:reject:',
       'signal without input');
    is_deeply([map { $_->{attempt} } $ex->requests_for($id)], [1, 2, 3],
              'input: attempts counted per run');
}

# fail500
{
    my $r = post($ex, json => run_body(inputs => { script => 'fail500' }));
    is($r->{status}, 500, 'fail500: 500');
    is($r->{headers}{'content-type'}, 'application/json', 'fail500: JSON');
    ok(ref $r->{json} eq 'HASH' && $r->{json}{error}, 'fail500: error body');
}

# failonce
{
    my $id = run_id();
    my $body = run_body(id => $id, inputs => { script => 'failonce' });
    is(post($ex, json => $body)->{status}, 500, 'failonce: first 500');
    my $r = post($ex, json => $body);
    is($r->{status}, 200, 'failonce: then 200');
    is(types($r->{events})->[-1], 'run.completed', 'failonce: then ok');
    is(post($ex, json => $body)->{status}, 200, 'failonce: stays ok');
    is(post($ex, json => run_body(inputs => { script => 'failonce' }))
           ->{status}, 500, 'failonce: counted per run id');
    is_deeply([map { [$_->{attempt}, $_->{status}] } $ex->requests_for($id)],
              [[1, 500], [2, 200], [3, 200]], 'failonce: recorded');
}

# cut
{
    my $r = post($ex, json => run_body(inputs => { script => 'cut' }));
    is($r->{status}, 200, 'cut: 200');
    is_deeply(types($r->{events}), [qw(step.progress step.progress)],
              'cut: two progress lines');
    ok(!$r->{terminated}, 'cut: no last chunk');
    ok($r->{eof} && !$r->{timeout}, 'cut: connection closed');
}

# hang, then the client closes
{
    my $id = run_id();
    my $s = send_req($ex->port,
                     json => run_body(id => $id, inputs => { script => 'hang' }));
    my $r = read_resp($s, until => qr/\n/, timeout => 5);
    is_deeply(types($r->{events}), ['step.started'], 'hang: step.started');
    my $more = read_resp_more($s, 0.5);
    is($more, '', 'hang: nothing more');
    my $rec = ($ex->requests_for($id))[0];
    is($rec->{closed_at}, undef, 'hang: not closed yet');
    my $closed = time;
    close $s;
    $rec = $ex->wait_for(sub { my ($x) = grep { defined $_->{closed_at} }
                                           $ex->requests_for($id); $x }, 5);
    ok($rec, 'hang: closed_at recorded');
    ok($rec && $rec->{closed_at} - $closed < 3 && $rec->{closed_at} >= $closed,
       'hang: closed_at is the close time');
}

sub read_resp_more {
    my ($s, $secs) = @_;
    my $buf = '';
    my $deadline = time + $secs;
    while ((my $left = $deadline - time) > 0) {
        last unless IO::Select->new($s)->can_read($left);
        sysread($s, $buf, 4096, length $buf) or last;
    }
    return $buf;
}

# executor_fail and garbage
{
    my $r = post($ex, json => run_body(inputs => { script => 'executor_fail' }));
    is_deeply(types($r->{events}), [qw(step.started run.failed)],
              'executor_fail: events');
    is($r->{events}[1]{value}{reason_code}, 'TOOL_ERROR', 'executor_fail: code');

    $r = post($ex, json => run_body(inputs => { script => 'garbage' }));
    ok($r->{terminated}, 'garbage: response ends');
    my @e = @{$r->{events}};
    ok((grep { !defined } @e) >= 2, 'garbage: lines that are not JSON');
    ok((grep { ref $_ eq 'HASH' && !exists $_->{type} } @e),
       'garbage: a line without type');
    is($e[-1]{type}, 'run.completed', 'garbage: then completed');
}

# files: fetched under the gateway (this executor answers GETs with 400)
{
    my $files = [
        { id => 'file_1', name => 'a.txt', type => 'text/plain', size => 3,
          url => '/v1/runs/run_x/files/file_1' },
        { id => 'file_2', name => 'b.txt', type => 'text/plain', size => 3,
          url => $ex->url . '/abs/file_2' },
    ];
    my $r = post($ex, json => run_body(inputs => { script => 'files',
                                                   gateway => $ex->url . '/' },
                                       files => $files));
    my $v = $r->{events}[-1]{value};
    is($r->{events}[-1]{type}, 'run.completed', 'files: completed');
    is_deeply($JSON->decode($v->{result}{text}), $files, 'files: text');
    my $a = $v->{result}{artifacts};
    is(scalar @$a, 2, 'files: two artifacts');
    is($a->[0]{status}, 400, 'files: fetched');
    ok($a->[0]{length} > 0, 'files: length');
    is($a->[0]{head_hex}, unpack('H*', '{"error":{"code"'), 'files: head hex');
    my @gets = grep { $_->{method} eq 'GET' } $ex->requests;
    is_deeply([sort map { $_->{path} } @gets],
              ['/abs/file_2', '/v1/runs/run_x/files/file_1'],
              'files: relative url under the gateway');
}

# bad requests
{
    my $r = post($ex, raw_body => 'not json');
    is($r->{status}, 400, 'non-JSON body: 400');
    $r = post($ex, raw_body => '[1]');
    is($r->{status}, 400, 'non-object body: 400');
    $r = post($ex, json => run_body(inputs => { script => 'nonesuch' }));
    is($r->{status}, 400, 'unknown script: 400');
    $r = post($ex, raw => "BOGUS\r\n\r\n");
    is($r->{status}, 400, 'malformed request: 400');
    ok((grep { ($_->{raw} // '') eq 'not json' && $_->{status} == 400 }
        $ex->requests), 'bad body recorded');
}

# keep-alive: two requests on one connection
{
    my ($id1, $id2) = (run_id(), run_id());
    my $s = send_req($ex->port, keepalive => 1,
                     json => run_body(id => $id1, inputs => { delay => 0 }));
    my $r = read_resp($s);
    ok($r->{terminated} && !$r->{eof}, 'keep-alive: first response');
    send_req($ex->port, sock => $s, keepalive => 1,
             json => run_body(id => $id2, inputs => { delay => 0 }));
    $r = read_resp($s);
    ok($r->{terminated}, 'keep-alive: second response');
    close $s;
    is(($ex->requests_for($id1))[0]{pid}, ($ex->requests_for($id2))[0]{pid},
       'keep-alive: same handler');
}

# concurrency: three runs of 2 s each take 6 s one after another; the
# bound leaves 2.5 s to a busy host
{
    my $t0 = time;
    my @s = map { send_req($ex->port, json => run_body(
                      inputs => { script => 'long', steps => 4,
                                  delay => 0.5 })) } 1 .. 3;
    my @r = map { read_resp($_) } @s;
    close $_ for @s;
    my $took = time - $t0;
    is(scalar(grep { $_->{terminated} } @r), 3, 'long: three complete');
    is($r[0]{events}[-1]{value}{result}{text}, '1 2 3 4 ', 'long: text');
    is(scalar @{$r[0]{lines}}, 7, 'long: steps lines');
    ok($took < 4.5, 'requests are served concurrently') or diag("took $took");
}

my @all = $ex->requests;
is_deeply([map { $_->{at} } @all], [sort { $a <=> $b } map { $_->{at} } @all],
          'requests sorted by arrival');

# a second executor: fixed port, framing close
{
    my $port = do {
        my $l = IO::Socket::IP->new(LocalHost => '127.0.0.1', LocalPort => 0,
                                    Listen => 1, ReuseAddr => 1) or die $@;
        my $p = $l->sockport;
        close $l;
        $p;
    };
    my $ex2 = CreorExecutor->new(port => $port, framing => 'close');
    is($ex2->port, $port, 'port option');
    my $r = post($ex2, json => run_body(inputs => { delay => 0 }));
    ok(!defined $r->{headers}{'transfer-encoding'} && $r->{eof},
       'framing option');
    is(types($r->{events})->[-1], 'run.completed', 'second executor works');
    my $s = send_req($ex2->port, json => run_body(inputs => { script => 'hang' }));
    read_resp($s, until => qr/\n/, timeout => 5);
    ok(scalar(my @p = $ex2->pids) >= 2, 'handler running');
    undef $ex2;    # DESTROY stops it, hanging handler included
    ok(!(grep { kill 0, $_ } @p), 'second executor stopped');
    close $s;
}

# stop: no processes, no zombies
{
    my $s = send_req($ex->port, json => run_body(inputs => { script => 'hang' }));
    read_resp($s, until => qr/\n/, timeout => 5);
    my @p = $ex->pids;
    my $spid = $ex->pid;
    ok(@p >= 2, 'server and a hanging handler');
    my $t0 = time;
    $ex->stop;
    # quicker than the 5 s after which stop() kills
    ok(time - $t0 < 4.5, 'stop is quick');
    is_deeply([CreorExecutor::_group_pids($spid)], [],
              'nothing left in the process group');
    ok(!(grep { kill 0, $_ } @p), 'all gone');
    is(waitpid(-1, WNOHANG), -1, 'no children, no zombies');
    ok(read_resp_more($s, 1) eq '', 'hanging connection closed');
    close $s;
    ok(eval { $ex->stop; 1 }, 'stop twice is fine');
}

done_testing;
