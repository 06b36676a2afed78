#!/usr/bin/perl
# Shutdown and binary upgrade (issue 12): `nginx -s quit` with event streams
# open and legs in flight ends both at once and cleanly (each stream gets a
# final comment and is closed; each leg's executor call is closed and its
# run left to the next nginx, which takes it over without waiting for the
# lease); a binary upgrade (USR2, then QUIT to the old master) loses no run,
# and every stream client sees only a closed connection, from which it
# resumes with Last-Event-ID and misses and repeats nothing.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorExecutor;
use Time::HiRes qw(time sleep);

# A lease far longer than any wait below: a run finished in time after a
# stop was given back by the stopping worker, not taken over on expiry.
my $LEASE = 120;

# Legs far longer than any wait below: a worker that waited for its legs
# before exiting would fail the timing checks.
my %LONG = (script => 'long', steps => 300, delay => 0.1);     # 30 s
my %SHORT = (script => 'long', steps => 20, delay => 0.1);     # 2 s

my $ex = CreorExecutor->new;

my $t = CreorTest->new(
    http_config   => "creor_executor /_exec; creor_run_lease ${LEASE}s; "
                   . 'creor_sse_keepalive 1s;',
    server_config => $ex->location('proxy_read_timeout 60s;'));
my $tok = $t->bootstrap->{token};

my $proj = $t->req(POST => '/v1/projects', token => $tok,
                   json => { name => 'shutdown' })->{json}{id};
my $agent = $t->req(POST => '/v1/agents', token => $tok,
                    headers => { 'X-Project-Id' => $proj },
                    json => { name => 'runner', model => 'x/y' })->{json}{id};
ok($agent, 'agent');

sub create_runs {
    my ($n, %inputs) = @_;
    my @ids;
    for (1 .. $n) {
        my $r = $t->req(POST => '/v1/runs', token => $tok,
                        json => { appId => $agent, inputs => {%inputs} });
        is($r->{status}, 202, 'run created') or diag($r->{body});
        push @ids, $r->{json}{id} // 'none';
    }
    return @ids;
}

sub run_status {
    my ($id) = @_;
    my $r = $t->req(GET => "/v1/runs/$id", token => $tok);
    return $r->{json}{status} // "http $r->{status}";
}

# every run of @ids reached $status within $timeout seconds
sub all_reach {
    my ($timeout, $status, @ids) = @_;
    my $deadline = time + $timeout;
    my %left = map { $_ => 1 } @ids;
    while (%left && time < $deadline) {
        run_status($_) eq $status and delete $left{$_} for keys %left;
        sleep 0.1 if %left;
    }
    diag("not $status: " . join(' ', map { "$_=" . run_status($_) }
                                     sort keys %left)) if %left;
    return !%left;
}

# SSE frames in $text: [seq, type] pairs
sub frames {
    my ($text) = @_;
    my @f;
    while ($text =~ /^id: (\d+)\ndata: (\{.*\})\n\n/mg) {
        my ($seq, $data) = ($1, $2);
        my ($type) = $data =~ /"type":"([^"]+)"/;
        push @f, [$seq, $type // '?'];
    }
    return @f;
}

sub open_stream {
    my ($id, $last) = @_;
    return $t->stream(GET => "/v1/runs/$id/events/stream", token => $tok,
                      timeout => 20,
                      headers => { defined $last ? ('Last-Event-ID' => $last)
                                                 : () });
}

# The rest of a stream until it ends (or $timeout): its text.
sub drain {
    my ($s, $timeout) = @_;
    my $text = '';
    my $deadline = time + $timeout;
    while (time < $deadline) {
        my $got = $s->read_until(qr/\n\n\z/, $deadline - time);
        $text .= defined $got ? $got : $s->pending;
        last if !defined $got && $s->done;
    }
    return $text;
}

###########################################################################
# 1. nginx -s quit with streams open and legs in flight

my @quit_runs = create_runs(4, %LONG);
ok(all_reach(20, 'running', @quit_runs), 'quit: legs running');
ok($ex->wait_for(sub { (grep { $ex->requests_for($_) } @quit_runs)
                       == @quit_runs }, 10),
   'quit: the executor has every leg');

my @streams = map { open_stream($_) } @quit_runs[0, 1];
for my $i (0, 1) {
    is($streams[$i]->status, 200, "quit: stream $i open");
    like($streams[$i]->read_until(qr/^id: \d+\n/m, 10) // '',
         qr/"type":"run\.started"/, "quit: stream $i replays");
}

my @procs = ($t->pid, $t->worker_pids);
my $t0 = time;
kill 'QUIT', $t->pid;
my $deadline = time + 20;
sleep 0.02 while time < $deadline && grep { CreorTest::_alive($_) } @procs;
my $took = time - $t0;
ok(!(grep { CreorTest::_alive($_) } @procs), 'quit: nginx exited');
cmp_ok($took, '<', 10,
       'quit: within 10 s, not after its legs (30 s) or leases (120 s)')
    or diag(sprintf 'took %.1f s', $took);
$t->{running} = 0;

for my $i (0, 1) {
    my $rest = drain($streams[$i], 5);
    like($rest, qr/^: server shutting down, reconnect with Last-Event-ID$/m,
         "quit: stream $i got the final comment");
    ok($streams[$i]->done, "quit: stream $i closed");
}

ok($ex->wait_for(sub { !grep { !grep { defined $_->{closed_at} }
                                    $ex->requests_for($_) } @quit_runs }, 5),
   'quit: every executor call was closed');

# the next nginx on the same store takes the legs over at once

$t->start;
$t0 = time;
ok($ex->wait_for(sub { !grep { $ex->requests_for($_) < 2 } @quit_runs },
                 15),
   'quit: every leg called again by the next nginx')
    or diag(join ' ', map { scalar $ex->requests_for($_) } @quit_runs);
cmp_ok(time - $t0, '<', $LEASE / 4, 'quit: without waiting for the lease');
for my $id (@quit_runs) {
    my $r = $t->req(POST => "/v1/runs/$id/cancel", token => $tok);
    is($r->{status}, 200, 'quit: cancel the long run');
}

my $log = $t->error_log_text;
like($log, qr/leaving the leg of run_\w+ to another worker/,
     'quit: the log says legs were left');
unlike($log, qr/taking over run_/, 'quit: no takeover of a dead worker');

###########################################################################
# 2. binary upgrade with runs in flight and streams open

my @up_runs = create_runs(6, %SHORT);
ok(all_reach(20, 'running', @up_runs[0 .. 2]), 'upgrade: legs running');

my %seen;       # run id -> [seq, type] frames received, across reconnects
my %last;       # run id -> last event id received
my %s = map { $_ => open_stream($_) } @up_runs;
for my $id (@up_runs) {
    is($s{$id}->status, 200, 'upgrade: stream open');
    my $got = $s{$id}->read_until(qr/^id: \d+\ndata: .*\n\n/m, 10) // '';
    push @{$seen{$id}}, frames($got);
    $last{$id} = $seen{$id}[-1][0] if @{$seen{$id}};
}

my @new = eval { $t->upgrade };
ok(@new, 'upgrade: new master and workers, the old ones gone') or diag($@);

# Each stream ends with only a closed connection; reconnecting with the
# last id it had resumes it until the run's terminal event.
my %ended;
for my $id (@up_runs) {
    for my $try (1 .. 5) {
        my $text = drain($s{$id}, 30);
        is($s{$id}->status, 200, "upgrade: stream answered 200 (try $try)");
        for my $f (frames($text)) {
            push @{$seen{$id}}, $f;
            $last{$id} = $f->[0];
        }
        if (@{$seen{$id}} && $seen{$id}[-1][1] =~ /^run\.(?:completed|failed)/)
        {
            $ended{$id} = 1;
            last;
        }
        $s{$id} = open_stream($id, $last{$id} // 0);
    }
}

is(scalar(keys %ended), scalar @up_runs,
   'upgrade: every stream followed its run to the end');
for my $id (@up_runs) {
    my @seq = map { $_->[0] } @{$seen{$id}};
    is_deeply(\@seq, [1 .. scalar @seq],
              "upgrade: $id events in order, none missed or repeated");
    my @done = grep { $_->[1] eq 'run.completed' } @{$seen{$id}};
    is(scalar @done, 1, "upgrade: $id completed once");
}
ok(all_reach(30, 'completed', @up_runs), 'upgrade: no run lost');

my $r = $t->req(GET => '/v1/agents', token => $tok);
is($r->{status}, 200, 'upgrade: the new nginx serves');

$t->finish;
$ex->stop;
done_testing;
