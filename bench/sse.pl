#!/usr/bin/env perl
# Event stream fan-out.
#
# 1. Latency from an executor line to a subscriber: an agent runner stands
#    in for a real one and writes lines stamped with the time they leave;
#    subscribers on fresh connections (so on both workers) read the SSE
#    frames and take the difference.  Prints p50 and p99 over all frames.
# 2. Capacity: N idle subscribers to a run awaiting input; the workers'
#    resident memory before and after gives the cost of one; then a
#    signal completes the run and every subscriber must see the end.
#
#   bench/sse.pl [subscribers for latency] [lines] [idle subscribers]
#
# With SSE_BUILTIN=1 the runs are the built-in executor's: the same
# server stands in for a model provider whose stamped deltas are the
# lines (their time in the delta's text), subscribers join while the
# run waits for a tool output, and the leg after it streams.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";

use CreorTest;
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(:sys_wait_h);
use Time::HiRes qw(time sleep);

my $nsub   = $ARGV[0] // 40;
my $nlines = $ARGV[1] // 200;
my $nidle  = $ARGV[2] // 2000;
my $builtin = $ENV{SSE_BUILTIN};

# --- a runner that stamps each line ------------------------------------------

my $runner = IO::Socket::INET->new(Listen => 64, LocalAddr => '127.0.0.1',
                                   LocalPort => 0, Proto => 'tcp',
                                   ReuseAddr => 1) or die "listen: $!";
my $rport = $runner->sockport;
my $rpid = fork // die "fork: $!";

if ($rpid == 0) {
    $SIG{CHLD} = 'IGNORE';
    while (my $c = $runner->accept) {
        next if fork;
        my $head = '';
        while ($head !~ /\r\n\r\n/) {
            sysread($c, $head, 4096, length $head) or exit 0;
        }
        my ($len) = $head =~ /content-length:\s*(\d+)/i;
        my $body = substr($head, index($head, "\r\n\r\n") + 4);
        while (length $body < ($len // 0)) {
            sysread($c, $body, 65536, length $body) or exit 0;
        }
        my $req = decode_json($body);
        $c->autoflush(1);
        provider($c, $req) if $head =~ m{^POST \S*/chat/completions};
        my $in = $req->{run}{inputs};
        syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson"
                     . "\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n";
        if ($in->{mode} eq 'input' && !$req->{signal}) {
            syswrite $c, encode_json({ type => 'run.awaiting_input',
                                       value => { prompt => 'go?' } }) . "\n";
            exit 0;
        }
        for my $i (1 .. ($in->{lines} // 0)) {
            sleep($in->{gap} // 0.01);
            syswrite $c, encode_json({ type => 'step.progress',
                value => { kind => 'content_delta', content_delta => "$i ",
                           sent_at => time } }) . "\n";
        }
        syswrite $c, encode_json({ type => 'run.completed',
                                   value => { result => { text => 'done' } } })
                     . "\n";
        exit 0;
    }
    exit 0;
}

close $runner;

# the model provider of SSE_BUILTIN: a tool call first, then the stamped
# deltas; the user message is the run's inputs as JSON
sub provider {
    my ($c, $req) = @_;
    my $in = decode_json($req->{messages}[-1]{role} eq 'tool'
                         ? $req->{messages}[-3]{content}
                         : $req->{messages}[-1]{content});
    my $chunk = sub {
        syswrite $c, 'data: ' . encode_json({ choices => [{ index => 0,
            delta => $_[0], finish_reason => $_[1] }] }) . "\n\n";
    };
    syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 . "Connection: close\r\n\r\n";
    if ($req->{messages}[-1]{role} ne 'tool' && $in->{mode} eq 'input') {
        $chunk->({ tool_calls => [{ index => 0, id => 'call_1',
            type => 'function',
            function => { name => 'go', arguments => '{}' } }] });
        $chunk->({}, 'tool_calls');
    } else {
        for my $i (1 .. ($in->{lines} // 0)) {
            sleep($in->{gap} // 0.01);
            $chunk->({ content => "$i\@" . time . ' ' });
        }
        $chunk->({}, 'stop');
    }
    syswrite $c, "data: [DONE]\n\n";
    exit 0;
}

my $t = CreorTest->new(
    workers     => 2,
    http_config => ($builtin ? '' : 'creor_executor /_exec; ')
                 . 'creor_sse_keepalive 60s;',
    api_location => 'location /v1/ { creor_api; '
                  . 'creor_provider bench /_provider; }',
    server_config => "location /_exec { internal; "
                   . "proxy_pass http://127.0.0.1:$rport/run; "
                   . "proxy_buffering off; proxy_http_version 1.1; }"
                   . "location /_provider { internal; proxy_pass "
                   . "http://127.0.0.1:$rport/v1/chat/completions; "
                   . "proxy_buffering off; proxy_http_version 1.1; }",
    main_config => "worker_rlimit_nofile 65536;",
    worker_connections => 20000,
);

my $boot = $t->bootstrap;
my %auth = (token => $boot->{token});
my $proj = $t->req('POST', '/v1/projects', %auth, json => { name => 'b' })
             ->{json}{id};
my $agent = $t->req('POST', '/v1/agents', %auth,
                    headers => { 'X-Project-Id' => $proj },
                    json => { name => 'bench', model => 'bench/m' })
              ->{json}{id};

sub run_create {
    my ($inputs) = @_;
    $inputs->{tools} = [{ type => 'function', function => { name => 'go' } }]
        if $builtin;
    return $t->req('POST', '/v1/runs', %auth,
                   json => { appId => $agent, inputs => $inputs })->{json}{id};
}

# what lets a run waiting for input go on
my %GO = $builtin
    ? (action => 'submit_input', input => { tool_outputs => [
          { tool_call_id => 'call_1', output => 'go' }] })
    : (action => 'approve');

sub subscribe {
    my ($run) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $!";
    print $s "GET /v1/runs/$run/events/stream HTTP/1.1\r\nHost: b\r\n"
           . "Authorization: Bearer $boot->{token}\r\n\r\n";
    $s->blocking(0);
    return { sock => $s, buf => '', done => 0 };
}

# read every subscriber until all saw the end; call $frame->(data, now)
sub pump {
    my ($subs, $frame, $deadline) = @_;
    my $sel = IO::Select->new(map { $_->{sock} } @$subs);
    my %by = map { fileno($_->{sock}) => $_ } @$subs;
    my $left = grep { !$_->{done} } @$subs;

    while ($left && time < $deadline) {
        for my $fh ($sel->can_read(0.5)) {
            my $sub = $by{fileno $fh};
            my $n = sysread($fh, $sub->{buf}, 65536, length $sub->{buf});
            my $now = time;
            if (!$n) {
                $sel->remove($fh);
                $left-- unless $sub->{done}++;
                next;
            }
            while ($sub->{buf} =~ s/^.*?data: (\{.*?\})\n\n//s) {
                my $ev = decode_json($1);
                $frame->($ev, $now) if $frame;
                if ($ev->{type} eq 'run.completed' && !$sub->{done}++) {
                    $left--;
                    $sel->remove($fh);
                }
            }
        }
    }

    return $left;
}

sub pct {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return $v[int($p / 100 * $#v + 0.5)];
}

# --- 1. latency ----------------------------------------------------------------

# subscribers join a run waiting for input; the leg after the signal
# streams the stamped lines

my $run = run_create({ mode => 'input', lines => $nlines, gap => 0.01 });
sleep 0.1 until $t->req('GET', "/v1/runs/$run", %auth)->{json}{status}
                 eq 'awaiting_input';

my @subs = map { subscribe($run) } 1 .. $nsub;
sleep 1;

$t->req('POST', "/v1/runs/$run/signal", %auth, json => \%GO);

my @lat;
my $left = pump(\@subs, sub {
    my ($ev, $now) = @_;
    my $v = $ev->{payload}{value};
    my ($sent) = $v->{sent_at} // (($v->{content_delta} // '') =~ /@([\d.]+)/);
    push @lat, ($now - $sent) * 1000 if defined $sent;
}, time + 120);
close $_->{sock} for @subs;

printf "fan-out latency, %s -> subscriber, %d subscribers on "
     . "2 workers, %d lines: p50 %.2f ms, p99 %.2f ms, max %.2f ms "
     . "(%d frames, %d subscribers unfinished)\n",
     $builtin ? 'provider delta' : 'executor line', $nsub, $nlines,
     pct(50, @lat), pct(99, @lat), pct(100, @lat),
     scalar @lat, $left;

# --- 2. capacity ---------------------------------------------------------------

sub rss_kb {
    my $kb = 0;
    for my $pid ($t->worker_pids) {
        open my $fh, '<', "/proc/$pid/status" or next;
        while (<$fh>) { $kb += $1 if /^VmRSS:\s+(\d+)/ }
    }
    return $kb;
}

$run = run_create({ mode => 'input', lines => 0 });
sleep 0.1 until $t->req('GET', "/v1/runs/$run", %auth)->{json}{status}
                 eq 'awaiting_input';

my $before = rss_kb();
my $t0 = time;
@subs = ();

for (1 .. $nidle) {
    push @subs, subscribe($run);
}

# let every stream send its replay
my $seen = 0;
my $sel = IO::Select->new(map { $_->{sock} } @subs);
my %by = map { fileno($_->{sock}) => $_ } @subs;
while ($seen < $nidle && time < $t0 + 60) {
    for my $fh ($sel->can_read(0.5)) {
        my $sub = $by{fileno $fh};
        sysread($fh, $sub->{buf}, 65536, length $sub->{buf});
        if (!$sub->{replayed} && $sub->{buf} =~ /run\.awaiting_input/) {
            $sub->{replayed} = 1;
            $seen++;
        }
    }
}

sleep 1;
my $after = rss_kb();

$t->req('POST', "/v1/runs/$run/signal", %auth, json => \%GO);
$left = pump(\@subs, undef, time + 60);
close $_->{sock} for @subs;

printf "capacity: %d idle subscribers held (%d streaming their replay), "
     . "workers' RSS %+.1f MB, %.1f KB a subscriber; %d of them missed the "
     . "end\n",
     $nidle, $seen, ($after - $before) / 1024,
     ($after - $before) / ($nidle || 1), $left;

$t->stop;
kill 'KILL', $rpid;
waitpid $rpid, 0;
