#!/usr/bin/perl
# Store failures (issue 7): with build/mdbfault.so preloaded into nginx and
# build/creor, mdb_put, mdb_del and mdb_txn_commit fail when the test says
# so.  A key's lastUsedAt write that fails leaves no write transaction
# open; every write route answers its JSON envelope (503 STORE_FULL for a
# full map, 500 INTERNAL_ERROR otherwise) within a deadline; a failing
# worker does not stop the other one or the CLI; the background tick and
# the purge log the failure and go on; nginx -s quit stays quick; once the
# faults stop everything works and every acknowledged write is there.  Then
# a real full map (map_size=256k) filled to the brim.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi;
use CreorExecutor;
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

my $DEADLINE = 10;    # seconds for any answer, ASan on 2 busy cores
my $QUIT     = 8;     # seconds for nginx -s quit
my %TERMINAL = map { $_ => 1 } qw(completed failed cancelled);

my $LIB = "$CreorTest::BUILD/mdbfault.so";
die "$LIB not built (run make)\n" unless -f $LIB;

# the control file and the record of injected failures: read by workers
# (nobody), the record appended by them
my $FDIR = tempdir('creor-fault-XXXXXX', TMPDIR => 1,
                   CLEANUP => !$ENV{CREOR_KEEP});
chmod 0777, $FDIR or die "chmod $FDIR: $!";
my $CTL  = "$FDIR/ctl";
my $FLOG = "$FDIR/injected.log";

my $ex = CreorExecutor->new;
my $t = CreorTest->new(
    store_opts    => 'sync=off',
    http_config   => 'creor_executor /_exec; creor_run_lease 2s; '
                   . 'creor_executor_retries 20; creor_idempotency_ttl 1s; '
                   . 'add_header X-Worker-Pid $pid always;',
    server_config => $ex->location('proxy_read_timeout 60s;'),
    preload       => [$LIB],
    env           => { MDBFAULT_CTL => $CTL, MDBFAULT_LOG => $FLOG },
    cli_env       => { MDBFAULT_CTL => $CTL, MDBFAULT_LOG => $FLOG });

###########################################################################
# Helpers

# faults(mode => 'always', ops => 'put', err => 'MAP_FULL', prefix => ...):
# a new file renamed over the old one, which every process reads again
sub faults {
    my (%o) = @_;
    open(my $fh, '>', "$CTL.tmp") or die "write $CTL.tmp: $!";
    print $fh join(' ', map { "$_=$o{$_}" } sort keys %o), "\n";
    close $fh or die "write $CTL.tmp: $!";
    rename "$CTL.tmp", $CTL or die "rename $CTL: $!";
}

sub faults_off { unlink $CTL }

# injected failures so far that match $re ("pid op key" lines)
sub injected {
    my ($re) = @_;
    open(my $fh, '<', $FLOG) or return 0;
    return scalar grep { /$re/ } <$fh>;
}

my $TOK;

# a run needs an Idempotency-Key: a new one each time
my $IKEY = 0;
sub ikey { ('Idempotency-Key' => 'faults-' . $$ . '-' . ++$IKEY) }

# a 2xx or the envelope of a store failure, within the deadline
sub answered {
    my ($r) = @_;
    return 'ok' if $r->{status} >= 200 && $r->{status} < 300;
    my $code = ref $r->{json} eq 'HASH' && ref $r->{json}{error} eq 'HASH'
             ? $r->{json}{error}{code} // '' : '';
    return 'failed' if ($r->{status} == 503 && $code eq 'STORE_FULL')
                    || ($r->{status} == 500 && $code eq 'INTERNAL_ERROR');
    return undef;
}

# acknowledged writes, read again at the end: [path, status, check, name]
my @ACK;
sub ack { push @ACK, [@_] }

sub ack_id {
    my ($path, $r, $name) = @_;
    my $id = ref $r->{json} eq 'HASH' ? $r->{json}{id} // 'none' : 'none';
    ack("$path/$id", 200, sub { ($_[0]{id} // '') eq $id }, $name);
    return $id;
}

# keep-alive connections on each worker: { pid => [conn, ...] }
sub worker_conns {
    my ($want) = @_;
    my %by;
    for my $round (1 .. 10) {
        my @cs = map { $t->conn(timeout => $DEADLINE) } 1 .. 8;
        sleep 0.1;
        for my $c (@cs) {
            my $r = $c->req(GET => '/plain');
            my $pid = $r->{headers}{'x-worker-pid'} // 0;
            push @{$by{$pid}}, $c;
        }
        last if (grep { @{$by{$_} // []} >= $want } $t->worker_pids) == 2;
    }
    return \%by;
}

sub quit_ok {
    my ($inst, $name) = @_;
    my @procs = ($inst->pid, $inst->worker_pids);
    my $t0 = time;
    kill 'QUIT', $inst->pid;
    sleep 0.05 while time - $t0 < $QUIT
                     && grep { CreorTest::_alive($_) } @procs;
    my $took = time - $t0;
    ok(!(grep { CreorTest::_alive($_) } @procs),
       sprintf("%s: nginx -s quit stops within %ds (%.1fs)", $name, $QUIT,
               $took));
}

my $B = $t->bootstrap(name => 'Faults');
$TOK = $B->{token};
api_use($t, token => $TOK, timeout => $DEADLINE);

my $r = api(POST => '/v1/projects', json => { name => 'faults' });
is($r->{status}, 201, 'setup: project') or diag($r->{body});
my $PROJ = ack_id('/v1/projects', $r, 'setup project');
my %INP = (headers => { 'X-Project-Id' => $PROJ });

$r = api(POST => '/v1/agents', %INP, json => { name => 'runner', model => 'x/y' });
is($r->{status}, 201, 'setup: agent') or diag($r->{body});
my $APP = ack_id('/v1/agents', $r, 'setup agent');

###########################################################################
# The issue's case: a failed lastUsedAt write left its transaction open and
# every later write of every process waited for it

{
    my $fresh = $t->cli('key', 'create', '--org', $B->{org}, '--role',
                        'admin', '--name', 'never used');
    faults(mode => 'always', ops => 'put', prefix => 'k:', err => 'MAP_FULL');

    $r = api(GET => '/v1/projects', token => $fresh);
    is($r->{status}, 200, 'lastUsedAt fails: the request itself is 200');
    ok(injected(qr/ put k:key_/), 'lastUsedAt: its write was made to fail');

    for my $i (1 .. 4) {
        $r = api(POST => '/v1/projects', json => { name => "after $i" });
        is($r->{status}, 201, "lastUsedAt: a write afterwards is 201 ($i)")
            or diag($r->{status} ? $r->{body} : "no answer: $r->{error}");
        ack_id('/v1/projects', $r, "project after lastUsedAt $i")
            if $r->{status} == 201;
    }

    my ($rc, $out, $err) = $t->cli_timed($DEADLINE, 'org', 'create', 'after');
    is($rc, 0, 'lastUsedAt: build/creor writes afterwards')
        or diag($rc == -1 ? "creor still waiting after ${DEADLINE}s" : $err);

    faults_off();
    $r = api(GET => '/v1/projects', token => $fresh);
    is($r->{status}, 200, 'lastUsedAt: the key works once faults stop');
    $r = api(GET => '/v1/api-keys', token => $fresh);
    my ($k) = grep { $_->{name} eq 'never used' } @{$r->{json}{data} // []};
    ok($k && defined $k->{lastUsedAt}, 'lastUsedAt: recorded once faults stop');
}

###########################################################################
# The purge (every 30 s in each worker) with every commit failing: it logs
# at error and the server keeps answering.  Between turns, faults off, an
# idempotent write leaves a record that expires in 1 s (creor_idempotency_
# _ttl), so the purge always has work to commit.

{
    my $purged = qr/\[error\] .*creor: idempotency purge failed/;
    my $deadline = time + 75;
    my ($gets, $posts, $bad) = (0, 0, 0);
    until ($t->error_log_text =~ $purged || time > $deadline) {
        faults_off();
        $r = api(POST => '/v1/projects', headers => { ikey() },
                 json => { name => 'expiring' });
        $r->{status} == 201 ? ack_id('/v1/projects', $r, 'purge project')
                            : $bad++;
        faults(mode => 'always', ops => 'commit', err => 'EIO');
        $r = api(GET => "/v1/projects/$PROJ");
        $r->{status} == 200 ? $gets++ : $bad++;
        $r = api(POST => '/v1/projects', json => { name => 'during purge' });
        ($r->{status} == 500 && ($r->{json}{error}{code} // '') eq
         'INTERNAL_ERROR') ? $posts++ : $bad++;
        sleep 0.5;
    }
    like($t->error_log_text, $purged, 'purge: a failed purge logs at error');
    ok(injected(qr/ commit -/), 'purge: commits were made to fail');
    ok($gets && $posts && !$bad, "purge: meanwhile reads 200 ($gets), "
       . "writes 500 INTERNAL_ERROR ($posts), nothing else ($bad)");
    faults_off();

    $r = api(POST => '/v1/projects', json => { name => 'after purge' });
    is($r->{status}, 201, 'purge: writes work once faults stop');
    ack_id('/v1/projects', $r, 'project after purge') if $r->{status} == 201;
}

###########################################################################
# Every write route: its own record's put fails (503 STORE_FULL), its
# commit fails (500 INTERNAL_ERROR), a delete fails (500); then, faults
# off, the same request succeeds.  Objects the routes act on:

my %OBJ;
{
    for my $k (qw(rotate revoke)) {
        $r = api(POST => '/v1/api-keys', json => { name => "to $k" });
        is($r->{status}, 201, "setup: key to $k") or diag($r->{body});
        $OBJ{$k} = $r->{json}{id};
    }
    for my $a (qw(patch delete)) {
        $r = api(POST => '/v1/agents', %INP,
                 json => { name => "to $a", model => 'x/y' });
        is($r->{status}, 201, "setup: agent to $a") or diag($r->{body});
        $OBJ{$a} = $r->{json}{id};
    }
    $r = api(POST => '/v1/runs', headers => { ikey() },
             json => { appId => $APP, inputs => { script => 'hang', hang => 30 } });
    is($r->{status}, 202, 'setup: run to cancel') or diag($r->{body});
    $OBJ{cancel} = $r->{json}{id};
    $r = api(POST => '/v1/runs', headers => { ikey() },
             json => { appId => $APP, inputs => { script => 'input' } });
    is($r->{status}, 202, 'setup: run to signal') or diag($r->{body});
    $OBJ{signal} = $r->{json}{id};
    my $run = wait_run($OBJ{signal},
                       sub { ($_[0]{status} // '') eq 'awaiting_input' }, 20);
    is($run->{status}, 'awaiting_input', 'setup: run awaiting input');
    $run = wait_run($OBJ{cancel}, sub { ($_[0]{status} // '') eq 'running' },
                    20);
    is($run->{status}, 'running', 'setup: run to cancel is running');
}

# a multipart run: appId and one file
sub form {
    my (%o) = @_;
    my ($body, $ct) = multipart_body([[appId => $APP],
                                      [files => 'hello', 'a.txt', 'text/plain']],
                                     boundary => 'creor-faults-boundary');
    return api(POST => $o{path} // '/v1/runs',
               headers => { ikey(), 'Content-Type' => $ct }, body => $body);
}

# [route, prefix of the record it writes, ops to fail, request, 2xx, ack]
my @ROUTES = (
    ['projects create', 'p:', [qw(put commit)],
     sub { api(POST => '/v1/projects', json => { name => 'p' }) }, 201,
     sub { ack_id('/v1/projects', $_[0], 'route project') }],
    ['api-keys create', 'k:', [qw(put commit)],
     sub { api(POST => '/v1/api-keys', json => { name => 'k' }) }, 201,
     sub { ack_id('/v1/api-keys', $_[0], 'route key') }],
    ['api-keys rotate', 'k:', [qw(put commit)],
     sub { api(POST => "/v1/api-keys/$OBJ{rotate}/rotate", json => {}) }, 200,
     sub { my $tok = $_[0]{json}{token} // '';
           ack('/v1/projects', 200, sub { 1 }, 'rotated token', $tok) }],
    ['api-keys revoke', 'k:', [qw(put commit)],
     sub { api(DELETE => "/v1/api-keys/$OBJ{revoke}") }, 200,
     sub { ack("/v1/api-keys/$OBJ{revoke}", 200,
               sub { defined $_[0]{revokedAt} }, 'revoked key') }],
    ['agents create', 'a:', [qw(put commit)],
     sub { api(POST => '/v1/agents', %INP, json => { name => 'a', model => 'x/y' }) },
     201, sub { ack_id('/v1/agents', $_[0], 'route agent') }],
    ['agents create with a prompt', 'ri:', [qw(put commit)],
     sub { api(POST => '/v1/agents', %INP,
               json => { name => 'ap', model => 'x/y', prompt => 'hi' }) },
     201, sub { ack_id('/v1/agents', $_[0], 'route agent with prompt');
                ack("/v1/runs/$_[0]{json}{runId}", 200, sub { 1 },
                    'route agent run') }],
    ['agents patch', 'a:', [qw(put commit)],
     sub { api(PATCH => "/v1/agents/$OBJ{patch}", json => { name => 'patched' }) },
     200, sub { ack("/v1/agents/$OBJ{patch}", 200,
                    sub { ($_[0]{name} // '') eq 'patched' }, 'patched agent') }],
    ['agents followup', 'ri:', [qw(put commit)],
     sub { api(POST => "/v1/agents/$APP/followup", json => { prompt => 'more' }) },
     202, sub { ack_id('/v1/runs', $_[0], 'route followup') }],
    ['agents delete', 'a:', [qw(del commit)],
     sub { api(DELETE => "/v1/agents/$OBJ{delete}") }, 200,
     sub { ack("/v1/agents/$OBJ{delete}", 404, sub { 1 }, 'deleted agent') }],
    ['runs create', 'ri:', [qw(put commit)],
     sub { api(POST => '/v1/runs', headers => { ikey() },
               json => { appId => $APP, inputs => { script => 'ok' } }) },
     202, sub { ack_id('/v1/runs', $_[0], 'route run') }],
    ['runs create multipart', 'ri:', [qw(put commit)], sub { form() }, 202,
     sub { ack_id('/v1/runs', $_[0], 'route multipart run') }],
    ['apps runs create', 'ri:', [qw(put commit)],
     sub { api(POST => "/v1/apps/$APP/runs", headers => { ikey() },
               json => { inputs => { script => 'ok' } }) },
     202, sub { ack_id('/v1/runs', $_[0], 'route app run') }],
    ['runs cancel', 'e:', [qw(put commit)],
     sub { api(POST => "/v1/runs/$OBJ{cancel}/cancel", json => {}) }, 200,
     sub { ack("/v1/runs/$OBJ{cancel}", 200,
               sub { ($_[0]{status} // '') eq 'cancelled' }, 'cancelled run') }],
    ['runs signal', 'e:', [qw(put commit)],
     sub { api(POST => "/v1/runs/$OBJ{signal}/signal",
               json => { action => 'approve' }) }, 202,
     sub { ack("/v1/runs/$OBJ{signal}", 200,
               sub { ($_[0]{status} // '') ne 'awaiting_input' },
               'signalled run') }],
);

my %FAIL = (put    => ['MAP_FULL', 503, 'STORE_FULL'],
            del    => ['EIO', 500, 'INTERNAL_ERROR'],
            commit => ['EIO', 500, 'INTERNAL_ERROR']);

for my $route (@ROUTES) {
    my ($name, $prefix, $ops, $send, $status, $acked) = @$route;

    for my $op (@$ops) {
        my ($err, $st, $code) = @{$FAIL{$op}};
        my $before = injected(qr/ $op /);
        faults(mode => 'always', ops => $op, prefix => $prefix, err => $err);
        err_is($send->(), $st, $code, undef, "$name, $op fails");
        ok(injected(qr/ $op /) > $before, "$name: the $op was made to fail");
        faults_off();
    }

    $r = $send->();
    is($r->{status}, $status, "$name: $status once faults stop")
        or diag($r->{body});
    $acked->($r) if $r->{status} == $status;
}

# the idempotency claim itself fails: the envelope, and the key is free
{
    my %key = ikey();
    faults(mode => 'always', ops => 'put', prefix => 'i:', err => 'MAP_FULL');
    $r = api(POST => '/v1/runs', headers => \%key,
             json => { appId => $APP, inputs => { script => 'ok' } });
    err_is($r, 503, 'STORE_FULL', undef, 'idempotency claim fails');
    faults_off();
    $r = api(POST => '/v1/runs', headers => \%key,
             json => { appId => $APP, inputs => { script => 'ok' } });
    is($r->{status}, 202, 'idempotency claim: the same key works afterwards');
    ack_id('/v1/runs', $r, 'run after a failed claim') if $r->{status} == 202;
}

###########################################################################
# One worker fails every write; the other and the CLI go on

{
    my @w = $t->worker_pids;
    my $by = worker_conns(3);
    is(scalar(grep { @{$by->{$_} // []} >= 3 } @w), 2,
       'one worker fails: connections to both workers');

    faults(mode => 'always', ops => 'put,del,commit', err => 'EIO',
           pid => $w[0]);
    for my $pid (@w) {
        my $c = shift @{$by->{$pid} // []} or next;
        my $r = $c->req(POST => '/v1/projects', token => $TOK,
                        json => { name => "worker $pid" },
                        timeout => $DEADLINE);
        if ($pid == $w[0]) {
            err_is($r, 500, 'INTERNAL_ERROR', undef, 'the failing worker');
        } else {
            is($r->{status}, 201, 'the other worker writes')
                or diag($r->{body});
            ack_id('/v1/projects', $r, 'project of the other worker')
                if $r->{status} == 201;
        }
        $c = shift @{$by->{$pid} // []} or next;
        $r = $c->req(GET => "/v1/projects/$PROJ", token => $TOK,
                     timeout => $DEADLINE);
        is($r->{status}, 200, 'reads work on ' . ($pid == $w[0]
                              ? 'the failing worker' : 'the other worker'));
    }
    my ($rc, $org) = $t->cli_timed($DEADLINE, 'org', 'create', 'one worker');
    is($rc, 0, 'one worker fails: build/creor writes');
    faults_off();
    $_->close for map { @$_ } values %$by;
}

# $n acknowledged runs with these inputs ("$what: run N"): their ids
sub new_runs {
    my ($what, $n, $inputs) = @_;
    return map {
        my $r = api(POST => '/v1/runs', headers => { ikey() },
                    json => { appId => $APP, inputs => $inputs });
        is($r->{status}, 202, "$what: run $_") or diag($r->{body});
        ack_id('/v1/runs', $r, "$what run $_");
    } 1 .. $n;
}

###########################################################################
# Random failures everywhere: requests, the tick running runs, the CLI

{
    my @runs = new_runs('random', 3, { script => 'long', steps => 10 });

    faults(mode => 'random', p => '0.2', err => 'EIO');
    my @sends = (
        sub { api(POST => '/v1/projects', json => { name => 'rnd' }) },
        sub { api(POST => '/v1/agents', %INP,
                  json => { name => 'rnd', model => 'x/y' }) },
        sub { api(POST => '/v1/api-keys', json => { name => 'rnd' }) },
        sub { api(POST => '/v1/runs', headers => { ikey() },
                  json => { appId => $APP, inputs => { script => 'ok' } }) },
    );
    my @paths = qw(/v1/projects /v1/agents /v1/api-keys /v1/runs);
    my (%n, @odd);
    for my $i (0 .. 31) {
        my $r = $sends[$i % 4]->();
        my $a = answered($r);
        $n{$a // 'odd'}++;
        push @odd, $r unless $a;
        ack_id($paths[$i % 4], $r, "random $paths[$i % 4]")
            if ($a // '') eq 'ok';
        if ($i % 8 == 0) {
            my ($rc) = $t->cli_timed($DEADLINE, 'org', 'create', "rnd $i");
            ok($rc == 0 || $rc == 1, "random: build/creor ends (exit $rc)");
        }
    }
    ok(!@odd, 'random: every request answers 2xx or its envelope in time')
        or diag(join "\n", map { "$_->{status} $_->{body}" } @odd);
    ok($n{ok} && $n{failed}, "random: some writes succeed ($n{ok}), "
       . 'some fail (' . ($n{failed} // 0) . ')');

    # events of running legs fail to commit: the tick logs and retries
    my $bg = qr/\[error\] .*creor: cannot (?:claim|record the events of|renew the lease of|retry|fail) run_/;
    faults_off();
    my $logged = () = $t->error_log_text =~ /$bg/g;
    push @runs, new_runs('background', 2, { script => 'long', steps => 20 });
    faults(mode => 'always', ops => 'commit', prefix => 'e:', err => 'EIO');
    my $deadline = time + 15;
    sleep 0.2 until (() = $t->error_log_text =~ /$bg/g) > $logged
                    || time > $deadline;
    sleep 1;
    faults_off();
    cmp_ok((() = $t->error_log_text =~ /$bg/g), '>', $logged,
           'background: a failed commit of a leg logs at error');

    for my $id (@runs) {
        my $run = wait_run($id, sub { $TERMINAL{$_[0]{status} // ''} }, 60);
        is($run->{status}, 'completed', "background: $id completes "
           . 'once faults stop');
    }
}

###########################################################################
# The CLI through failures

{
    my ($ulid) = $t->cli('key', 'create', '--org', $B->{org})
                 =~ /^ck_([0-9a-z]{26})_/;
    my $REVOKE = 'key_' . ($ulid // 'none');
    my @cases = (
        ['org create, a put fails', [qw(org create c1)],
         mode => 'always', ops => 'put', prefix => 'o:', err => 'MAP_FULL'],
        ['org create, the commit fails', [qw(org create c2)],
         mode => 'always', ops => 'commit', err => 'EIO'],
        ['key create, a put fails', ['key', 'create', '--org', $B->{org}],
         mode => 'always', ops => 'put', prefix => 'k:', err => 'MAP_FULL'],
        ['key revoke, the put fails', ['key', 'revoke', $REVOKE],
         mode => 'always', ops => 'put', prefix => 'k:', err => 'EIO'],
    );
    for my $c (@cases) {
        my ($name, $args, %f) = @$c;
        faults(%f);
        my ($rc, $out, $err) = $t->cli_timed($DEADLINE, @$args);
        is($rc, 1, "creor $name: exit 1");
        like($err, qr/^creor: /, "creor $name: says so");
        faults_off();
        $r = api(POST => '/v1/projects', json => { name => "after $name" });
        is($r->{status}, 201, "creor $name: the server writes afterwards");
        ($rc, $out, $err) = $t->cli_timed($DEADLINE, @$args);
        is($rc, 0, "creor $name: works once faults stop") or diag($err);
    }
    $r = api(GET => "/v1/api-keys/$REVOKE");
    ok(defined $r->{json}{revokedAt}, 'creor key revoke: acknowledged');
}

###########################################################################
# Faults stopped: every acknowledged write is there

{
    my @lost;
    for my $a (@ACK) {
        my ($path, $status, $check, $name, $tok) = @$a;
        my $r = api(GET => $path, defined $tok ? (token => $tok) : ());
        push @lost, "$name: GET $path: $r->{status} $r->{body}"
            unless $r->{status} == $status && $check->($r->{json} // {});
    }
    ok(@ACK > 50 && !@lost, 'every acknowledged write is there ('
       . scalar(@ACK) . ' read again)') or diag(join "\n", @lost);
}

# the guard that aborts a forgotten transaction never had to
unlike($t->error_log_text, qr/write transactions? (?:was|were) left open/,
       'every path ended its own write transaction');

faults(mode => 'random', p => '0.5', err => 'EIO');
quit_ok($t, 'under faults');
faults_off();
$t->finish('faults: no [alert]/[crit] in error.log');

###########################################################################
# A real full map: reads work, writes fail cleanly, deletes free space

{
    my $s = CreorTest->new(store_opts => 'map_size=256k sync=off');
    my $sb = $s->bootstrap(name => 'Full');
    my $tok = $sb->{token};
    my $fresh = $s->cli('key', 'create', '--org', $sb->{org}, '--name',
                        'first use when full');
    my $sr = $s->req(POST => '/v1/projects', token => $tok,
                     json => { name => 'full' });
    is($sr->{status}, 201, 'full map: project');
    my $sp = $sr->{json}{id};

    my $prompt = 'P' x 20000;
    my (@big, $full, @odd);
    for my $i (1 .. 100) {
        $sr = $s->req(POST => '/v1/agents', token => $tok, timeout => $DEADLINE,
                      headers => { 'X-Project-Id' => $sp },
                      json => { name => "big$i", model => 'x/y',
                                systemPrompt => $prompt });
        if ($sr->{status} == 201) { push @big, $sr->{json}{id}; next }
        if ($sr->{status} == 503) { $full = $sr } else { push @odd, $sr }
        last;
    }
    ok(!@odd && $full, 'full map: 201s, then 503 (' . scalar(@big)
       . ' agents fit)') or diag(map { "$_->{status} $_->{body}" } @odd);
    err_is($full // {}, 503, 'STORE_FULL', undef, 'full map: agents create');

    # to the brim: smaller inserts until they fail too
    for my $w (['projects', '/v1/projects'], ['api-keys', '/v1/api-keys']) {
        my ($name, $path) = @$w;
        my $n = 0;
        for my $i (1 .. 300) {
            $sr = $s->req(POST => $path, token => $tok, timeout => $DEADLINE,
                          json => { name => "s$i" });
            last unless $sr->{status} == 201;
            $n++;
        }
        err_is($sr, 503, 'STORE_FULL', undef, "full map: $name ($n fit)");
    }

    # LMDB fits a write by its size: these are no smaller than those that
    # just failed, and nothing was committed since
    for my $w (['api-keys create', POST => '/v1/api-keys', { name => 'k' }],
               ['agents create', POST => '/v1/agents',
                { name => 'n', model => 'x/y', systemPrompt => $prompt }],
               ['agents patch', PATCH => "/v1/agents/$big[0]",
                { systemPrompt => 'Q' x 20000 }],
               ['projects create', POST => '/v1/projects', { name => 'p' }],
               ['runs create', POST => '/v1/runs',
                { appId => $big[0] // 'none' }]) {
        my ($name, $m, $path, $json) = @$w;
        $sr = $s->req($m, $path, token => $tok, timeout => $DEADLINE,
                      headers => { 'X-Project-Id' => $sp,
                                   $path eq '/v1/runs'
                                   ? ('Idempotency-Key' => 'full-run') : () },
                      json => $json);
        err_is($sr, 503, 'STORE_FULL', undef, "full map: $name");
    }

    # an organization is smaller than any of those: it may still fit
    my ($rc, $out, $err) = $s->cli_timed($DEADLINE, 'org', 'create', 'full');
    ok($rc == 0 || ($rc == 1 && $err =~ /^creor: /),
       "full map: creor org create ends in time, 0 or 1 saying why "
       . "(exit $rc)") or diag($err);

    my $reads = grep { $s->req(GET => "/v1/agents/$_", token => $tok,
                               timeout => $DEADLINE)->{status} == 200 } @big;
    is($reads, scalar @big, 'full map: every agent reads');
    is($s->req(GET => '/v1/agents?limit=100', token => $tok)->{status}, 200,
       'full map: lists read');

    # the issue's case on a real map: a first use writes lastUsedAt (a
    # rewrite, which LMDB may still fit), then writes answer in time
    $sr = $s->req(GET => "/v1/projects/$sp", token => $fresh,
                  timeout => $DEADLINE);
    is($sr->{status}, 200, 'full map: a new key reads');
    $sr = $s->req(POST => '/v1/agents', token => $tok, timeout => $DEADLINE,
                  headers => { 'X-Project-Id' => $sp },
                  json => { name => 'n', model => 'x/y',
                            systemPrompt => $prompt });
    err_is($sr, 503, 'STORE_FULL', undef, 'full map: a write after it');

    # deletes answer; once some went through, space is back
    my (%del, @dodd);
    for my $id (@big) {
        $sr = $s->req(DELETE => "/v1/agents/$id", token => $tok,
                      timeout => $DEADLINE);
        my $a = answered($sr);
        $del{$a // 'odd'}++;
        push @dodd, $sr unless $a;
    }
    ok(!@dodd, 'full map: every delete answers 200 or its envelope')
        or diag(map { "$_->{status} $_->{body}" } @dodd);
    ok($del{ok}, 'full map: deletes go through (' . ($del{ok} // 0) . ' of '
       . scalar(@big) . ')');
    $sr = $s->req(POST => '/v1/projects', token => $tok, timeout => $DEADLINE,
                  json => { name => 'after deletes' });
    is($sr->{status}, 201, 'full map: a write fits after the deletes');
    ($rc, $out, $err) = $s->cli_timed($DEADLINE, 'org', 'create', 'again');
    is($rc, 0, 'full map: creor writes after the deletes') or diag($err);

    unlike($s->error_log_text, qr/write transactions? (?:was|were) left open/,
           'full map: every path ended its own write transaction');
    quit_ok($s, 'full map');
    $s->finish('full map: no [alert]/[crit] in error.log');
}

done_testing;
