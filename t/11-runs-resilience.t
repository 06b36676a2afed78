#!/usr/bin/perl
# Detached run execution under stress (SPEC 8.5): a keep-alive client is not
# delayed by the run it created and closing it does not stop the run; a
# worker killed with -9 in the middle of a leg, nginx -s reload with 50 runs
# in flight and a restart of nginx lose no run (legs are finished by the old
# worker or taken over after creor_run_lease); creor_run_timeout fails a run
# with RUN_TIMEOUT and closes its executor call.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi qw(project_agent types list_all);
use CreorExecutor;
use Time::HiRes qw(time sleep);

my $LEASE = 2;    # creor_run_lease, seconds

my %TERMINAL = map { $_ => 1 } qw(completed failed cancelled);

my $ex = CreorExecutor->new;

sub exec_location { $ex->location('proxy_read_timeout 60s;') }

my $t = CreorTest->new(
    http_config   => "creor_executor /_exec; creor_run_lease ${LEASE}s;",
    server_config => exec_location());
my $boot = $t->bootstrap;
my $tok  = $boot->{token};

my ($proj, $agent) = setup($t, $tok);

###########################################################################
# helpers

sub setup {
    my ($t, $tok) = @_;
    return map { $_ // 'none' }
        project_agent($t, $tok, project => 'resilience', name => 'runner',
                      check_project => 'project created',
                      check => 'agent created');
}

# POST /v1/runs on $c (a CreorTest::Conn) or a fresh connection
sub create_run {
    my ($t, $tok, $agent, $inputs, $c) = @_;
    my @a = (POST => '/v1/runs', token => $tok, timeout => 5,
             json => { appId => $agent, inputs => $inputs });
    return $c ? $c->req(@a) : $t->req(@a);
}

sub get_run {
    my ($t, $tok, $id, $c) = @_;
    my @a = (GET => "/v1/runs/$id", token => $tok, timeout => 5);
    my $r = $c ? $c->req(@a) : eval { $t->req(@a) };
    return $r && $r->{status} == 200 ? $r->{json} : undef;
}

# Poll until the run's status is in @want; returns the run object or undef.
sub wait_status {
    my ($t, $tok, $id, $timeout, @want) = @_;
    my %want = map { $_ => 1 } @want;
    my $deadline = time + $timeout;
    my $run;
    while (time < $deadline) {
        $run = get_run($t, $tok, $id);
        return $run if $run && $want{$run->{status} // ''};
        sleep 0.1;
    }
    return undef;
}

# All events of a run, oldest first (every page).
sub all_events {
    my ($t, $tok, $id) = @_;
    return list_all("/v1/runs/$id/events?order=asc", inst => $t, token => $tok,
                    timeout => 5);
}

sub count_type {
    my ($ev, $type) = @_;
    return scalar grep { ($_->{type} // '') eq $type } @{$ev // []};
}

# Waits up to $timeout s for run $id to end, then asserts (named "$name:
# ..."): it completed (the name ends in $o{completed}); its result text
# when result => [TEXT, NAME-TAIL]; its events end with run.completed,
# once; $o{events}->($events) for more; seq increasing when seq => 1.
sub completed_ok {
    my ($t, $tok, $id, $timeout, $name, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $run = wait_status($t, $tok, $id, $timeout, keys %TERMINAL);
    is($run && $run->{status}, 'completed', "$name: $o{completed}")
        or diag(explain($run // get_run($t, $tok, $id)));
    is($run && $run->{result}{text}, $o{result}[0], "$name: $o{result}[1]")
        if $o{result};
    my $ev = all_events($t, $tok, $id) // [];
    is($ev->[-1] && $ev->[-1]{type}, 'run.completed',
       "$name: events end with run.completed");
    is(count_type($ev, 'run.completed'), 1,
       "$name: run.completed exactly once");
    $o{events}->($ev) if $o{events};
    ok(seqs_increase($ev), "$name: seq strictly increasing") if $o{seq};
    return $run;
}

# A run of $inputs, created and called at the executor (within 5 s):
# asserts "$name: run created" and "$name: $called"; returns its id and
# the executor's first request for it.
sub started_run {
    my ($name, $inputs, $called) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $r = create_run($t, $tok, $agent, $inputs);
    is($r->{status}, 202, "$name: run created");
    my $id = $r->{json}{id} // 'none';
    my ($first) = $ex->wait_for(sub { $ex->requests_for($id) }, 5);
    ok($first, "$name: $called");
    return ($id, $first);
}

sub seqs_increase {
    my ($ev) = @_;
    my @s = map { $_->{seq} // -1 } @$ev;
    for my $i (1 .. $#s) { return 0 unless $s[$i] > $s[$i - 1] }
    return 1;
}

# nginx processes holding an established connection to the executor
sub executor_conn_pids {
    my $port = $ex->port;
    my $out = `ss -tnpH state established '( dport = :$port )' 2>/dev/null`;
    my %pids;
    for my $line (split /\n/, $out) {
        next unless $line =~ /127\.0\.0\.1:$port\b/;
        $pids{$1} = 1 while $line =~ /\("nginx",pid=(\d+)/g;
    }
    return sort { $a <=> $b } keys %pids;
}

sub wait_gone {
    my ($timeout, @procs) = @_;
    my $deadline = time + $timeout;
    sleep 0.02 while time < $deadline
                     && grep { CreorTest::_alive($_) } @procs;
    return !grep { CreorTest::_alive($_) } @procs;
}

# Start nginx again on the same conf and store (CreorTest::start_again).
sub start_again {
    my ($t) = @_;
    my ($rc, $out, $pid) = $t->start_again;
    is($rc, 0, 'nginx started again on the same conf and store')
        or diag($out);
    ok($pid, 'restarted master pid') or return;
    is(scalar(my @w = $t->worker_pids), 2, 'restarted nginx has two workers');
    return $pid;
}

###########################################################################
# 1. a keep-alive client is not delayed by its run; closing the creating
#    connection does not stop the run

{
    my $c = $t->conn;
    my $t0 = time;
    # the run takes 6 s: answers within 2.5 s were not held by it
    my $r = create_run($t, $tok, $agent,
                       { script => 'long', steps => 30, delay => 0.2 }, $c);
    my $post_took = time - $t0;
    is($r->{status}, 202, 'keepalive: run created 202') or diag($r->{body});
    my $id = $r->{json}{id} // 'none';
    cmp_ok($post_took, '<', 2.5, 'keepalive: 202 answered at once')
        or diag(sprintf 'POST took %.3f s', $post_took);

    $t0 = time;
    my $g = $c->req(GET => "/v1/runs/$id", token => $tok, timeout => 5);
    my $get_took = time - $t0;
    is($g->{status}, 200, 'keepalive: GET on the same connection 200');
    cmp_ok($get_took, '<', 2.5,
           'keepalive: GET on the same connection answers at once')
        or diag(sprintf 'GET took %.3f s', $get_took);
    like($g->{json}{status} // '', qr/^(?:queued|running)$/,
         'keepalive: run is queued or running');
    ok(!$c->closed, 'keepalive: connection still open');
    $c->close;

    my $run = wait_status($t, $tok, $id, 25, keys %TERMINAL);
    is($run && $run->{status}, 'completed', 'keepalive: run completed');
}

{
    my $c = $t->conn;
    my $r = create_run($t, $tok, $agent,
                       { script => 'long', steps => 15, delay => 0.1 }, $c);
    $c->close;
    my $closed = time;
    is($r->{status}, 202, 'closed client: run created 202');
    my $id = $r->{json}{id} // 'none';

    my ($call) = $ex->wait_for(sub { $ex->requests_for($id) }, 5);
    ok($call, 'closed client: executor called after the client left');

    my $run = wait_status($t, $tok, $id, 15, keys %TERMINAL);
    is($run && $run->{status}, 'completed',
       'closed client: run completed after its connection closed');
    cmp_ok(time - $closed, '>=', 1.2,
           'closed client: the run ran its course (about 1.6 s)');
    my @calls = $ex->requests_for($id);
    is(scalar @calls, 1, 'closed client: one executor call');
    is($calls[0] && $calls[0]{closed_at}, undef,
       'closed client: executor call not cut');
    is($run && $run->{result}{text},
       join('', map { "$_ " } 1 .. 15), 'closed client: full result');
}

###########################################################################
# 2. kill -9 of the worker running a leg: taken over after the lease

{
    my ($id, $first) = started_run('kill -9', { script => 'long', steps => 40,
                                                delay => 0.1 },
                                   'executor called');

    # some progress stored before the kill
    ok($ex->wait_for(sub {
           count_type(all_events($t, $tok, $id), 'step.progress') >= 2 }, 5),
       'kill -9: progress stored before the kill');

    my @owner = $ex->wait_for(sub { executor_conn_pids() }, 3);
    is(scalar @owner, 1, 'kill -9: one nginx process holds the executor call')
        or diag("ss: @owner\n" . `ss -tnp 2>&1`);
    my %workers = map { $_ => 1 } $t->worker_pids;
    my $victim = $owner[0];
    ok($victim && $workers{$victim}, 'kill -9: it is a worker of this nginx')
        or diag("owner @owner, workers " . join ' ', sort keys %workers);

    my $killed;
    SKIP: {
        skip 'no worker to kill', 10 unless $victim && $workers{$victim};
        ok(kill('KILL', $victim), "kill -9 worker $victim");
        $killed = time;

        my $rec = $ex->wait_for(sub {
            my ($x) = grep { defined $_->{closed_at} && $_->{id} eq $first->{id} }
                      $ex->requests_for($id);
            $x }, 3);
        ok($rec, 'kill -9: executor saw the connection closed');

        my @w;
        my $replaced = $ex->wait_for(sub {
            @w = $t->worker_pids;
            @w == 2 && !grep { $_ == $victim } @w }, 5);
        ok($replaced, 'kill -9: the master started a new worker')
            or diag("workers: @w");

        my $second = $ex->wait_for(sub {
            my @c = $ex->requests_for($id);
            @c >= 2 ? $c[1] : undef }, $LEASE + 5);
        ok($second, 'kill -9: another worker took the leg over')
            or diag(scalar($ex->requests_for($id)) . ' executor calls');
        if ($second) {
            my $after = $second->{at} - $killed;
            cmp_ok($after, '<', $LEASE + 4,
                   'kill -9: taken over within the lease and a few seconds')
                or diag(sprintf 'second call %.2f s after the kill', $after);
            is($second->{body}{run}{id}, $id, 'kill -9: same run id');
            note(sprintf 'second call %.2f s after the kill', $after);
        }

        completed_ok($t, $tok, $id, 20, 'kill -9', completed => 'run completed',
                     result => [join('', map { "$_ " } 1 .. 40),
                                'result of the full leg'],
                     seq => 1, events => sub {
            my ($ev) = @_;
            cmp_ok(count_type($ev, 'step.started'), '>=', 2,
                   'kill -9: events of both calls (two step.started)')
                or diag(explain(types($ev)));
            cmp_ok(count_type($ev, 'step.progress'), '>=', 42,
                   'kill -9: progress of both calls kept');
        });
    }
    like($t->error_log_text, qr/exited on signal 9/,
         'kill -9: error.log records the worker exit');
}

###########################################################################
# 3. nginx -s reload with 50 runs in flight loses none

{
    my $N = 50;
    my $c = $t->conn;
    my @ids;
    for my $i (1 .. $N) {
        $c = $t->conn if $c->closed;
        my $r = create_run($t, $tok, $agent,
                           { script => 'long', steps => 10, delay => 0.2 }, $c);
        push @ids, $r->{json}{id} if $r->{status} == 202 && $r->{json}{id};
    }
    $c->close;
    is(scalar @ids, $N, "reload: $N runs created");
    my %mine = map { $_ => 1 } @ids;

    my $started = sub {
        my %s;
        $s{$_->{run_id}} = 1
            for grep { defined $_->{run_id} && $mine{$_->{run_id}} }
                $ex->requests;
        return scalar keys %s;
    };
    ok($ex->wait_for(sub { $started->() >= 10 }, 10),
       'reload: at least 10 runs running')
        or diag($started->() . ' started');
    my $running = grep { ((get_run($t, $tok, $_) // {})->{status} // '') eq 'running' }
                  @ids;
    note("$running runs running at the reload");

    my @old = $t->worker_pids;
    my @new = eval { $t->reload };
    ok(@new, 'reload: new workers') or diag($@);

    my %status;
    my $deadline = time + 60;
    while (time < $deadline) {
        my $c2 = $t->conn;
        for my $id (@ids) {
            next if $TERMINAL{$status{$id} // ''};
            $c2 = $t->conn if $c2->closed;
            my $run = get_run($t, $tok, $id, $c2);
            $status{$id} = $run->{status} if $run;
        }
        $c2->close;
        last unless grep { !$TERMINAL{$status{$_} // ''} } @ids;
        sleep 0.25;
    }
    my %by;
    $by{$status{$_} // 'unknown'}++ for @ids;
    is($by{completed} // 0, $N, "reload: all $N runs completed")
        or diag(explain(\%by));
    my @bad;
    for my $id (@ids) {
        my $ev = all_events($t, $tok, $id);
        push @bad, "$id: " . join(',', @{types($ev)})
            unless $ev && @$ev && $ev->[-1]{type} eq 'run.completed'
                   && count_type($ev, 'run.completed') == 1;
    }
    is(scalar @bad, 0,
       'reload: every run ends with run.completed exactly once')
        or diag(join "\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]);
    my %calls;
    $calls{$_->{run_id}}++
        for grep { defined $_->{run_id} && $mine{$_->{run_id}} } $ex->requests;
    note(scalar(grep { $_ > 1 } values %calls)
         . " of $N runs had more than one executor call");
    ok(wait_gone(10, @old), 'reload: old workers exited')
        or diag('still alive: ' . join ' ', grep { CreorTest::_alive($_) } @old);
}

###########################################################################
# 4. a restart of nginx loses no run

# 4a. graceful stop (QUIT) with a run in flight
{
    my ($id) = started_run('restart (QUIT)', { script => 'long', steps => 20,
                                               delay => 0.1 },
                           'running before the stop');
    my $st = (get_run($t, $tok, $id) // {})->{status} // '';
    like($st, qr/^(?:queued|running)$/,
         'restart (QUIT): not terminal at the stop');

    $t->stop;
    ok(!$t->{running}, 'restart (QUIT): nginx stopped');
    ok(start_again($t), 'restart (QUIT): nginx started again');

    completed_ok($t, $tok, $id, 15, 'restart (QUIT)',
                 completed => 'run completed after the restart');
    note(scalar(my @c = $ex->requests_for($id))
         . ' executor call(s) for the run stopped with QUIT');
}

# 4b. fast stop (TERM) in the middle of a leg: taken over after restart
{
    my ($id, $first) = started_run('restart (TERM)', { script => 'long',
                                                       steps => 20,
                                                       delay => 0.1 },
                                   'running before the stop');

    my @procs = ($t->pid, $t->worker_pids);
    kill 'TERM', $t->pid;
    ok(wait_gone(10, @procs), 'restart (TERM): nginx stopped');
    $t->{running} = 0;
    my $stopped = time;

    ok($ex->wait_for(sub {
           my ($x) = grep { defined $_->{closed_at} } $ex->requests_for($id);
           $x }, 3),
       'restart (TERM): executor call closed by the stop');

    ok(start_again($t), 'restart (TERM): nginx started again');

    my $second = $ex->wait_for(sub {
        my @c = $ex->requests_for($id);
        @c >= 2 ? $c[1] : undef }, $LEASE + 5);
    ok($second, 'restart (TERM): leg taken over after the restart');

    completed_ok($t, $tok, $id, 15, 'restart (TERM)',
                 completed => 'run completed after the restart',
                 result => [join('', map { "$_ " } 1 .. 20), 'full result'],
                 seq => 1);
}

$t->stop;
$t->no_alerts_ok('no alerts besides the killed worker',
                 ignore => qr/exited on signal 9/);

###########################################################################
# 5. creor_run_timeout: RUN_TIMEOUT, executor call closed

{
    my $t5 = CreorTest->new(
        http_config   => "creor_executor /_exec; creor_run_lease ${LEASE}s; "
                       . "creor_run_timeout 2s;",
        server_config => exec_location());
    my $b5 = $t5->bootstrap;
    my (undef, $agent5) = setup($t5, $b5->{token});

    my $t0 = time;
    my $r = create_run($t5, $b5->{token}, $agent5,
                       { script => 'hang', hang => 30 });
    is($r->{status}, 202, 'timeout: run created');
    my $id = $r->{json}{id} // 'none';
    my ($call) = $ex->wait_for(sub { $ex->requests_for($id) }, 5);
    ok($call, 'timeout: executor called');

    my $run = wait_status($t5, $b5->{token}, $id, 15, keys %TERMINAL);
    my $took = time - $t0;
    is($run && $run->{status}, 'failed', 'timeout: run failed')
        or diag(explain($run // get_run($t5, $b5->{token}, $id)));
    is($run && $run->{errorCode}, 'RUN_TIMEOUT', 'timeout: errorCode RUN_TIMEOUT');
    # creor_run_timeout 2s against a leg that hangs 30 s
    cmp_ok($took, '<', 10, 'timeout: failed within 10 s')
        or diag(sprintf 'took %.2f s', $took);
    cmp_ok($took, '>=', 1.8, 'timeout: not before creor_run_timeout')
        or diag(sprintf 'took %.2f s', $took);

    my $closed = $ex->wait_for(sub {
        my ($x) = grep { defined $_->{closed_at} } $ex->requests_for($id);
        $x }, 3);
    ok($closed, 'timeout: executor connection closed');

    my $ev = all_events($t5, $b5->{token}, $id) // [];
    is($ev->[-1] && $ev->[-1]{type}, 'run.failed',
       'timeout: events end with run.failed');
    is($ev->[-1] && $ev->[-1]{payload}{value}{reason_code}, 'RUN_TIMEOUT',
       'timeout: run.failed reason_code RUN_TIMEOUT')
        or diag(explain($ev->[-1]));
    sleep 1;
    is(scalar(my @c = $ex->requests_for($id)), 1,
       'timeout: no further executor call');

    $t5->finish('timeout instance: no alerts');
}

$ex->stop;
done_testing;
