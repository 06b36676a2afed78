#!/usr/bin/perl
# Idempotency-Key (SPEC 6): concurrent claims, byte-identical replays,
# fingerprint conflicts, scope (org + method + path + key), PATCH, key
# syntax, which responses are stored, TTL, a killed worker's claim, and the
# $creor_idempotent variable.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use JSON::PP;
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;

my $JSONU = JSON::PP->new->utf8->canonical;
my $AGENT = qr/^agent_[0-9a-hjkmnp-tv-z]{26}$/;
my $PROJ  = qr/^proj_[0-9a-hjkmnp-tv-z]{26}$/;

# X-Worker-Pid tells which worker answered; idem.log has one line per
# request: request id, status, $creor_idempotent.
my $t = CreorTest->new(
    store_opts  => 'sync=off',
    http_config => join("\n",
        'add_header X-Worker-Pid $pid always;',
        q{log_format idem '$request_id $status idem=$creor_idempotent';},
        'access_log logs/idem.log idem;'),
);

###########################################################################
# Helpers

my $n_key = 0;
sub fresh_key { sprintf('idem-%d-%d-%06d', $$, int(time * 1000), ++$n_key) }

# POST /v1/agents in project $p with an optional Idempotency-Key.
sub post_agent {
    my ($tok, $proj, $key, $json, %o) = @_;
    my %h = ('X-Project-Id' => $proj, 'Content-Type' => 'application/json',
             %{$o{headers} // {}});
    $h{'Idempotency-Key'} = $key if defined $key;
    return $t->req(POST => '/v1/agents', token => $tok, %o, headers => \%h,
                   body => $JSONU->encode($json));
}

# How many agents named $name the org of $tok has (walks every page).
sub count_agents {
    my ($tok, $name, $inst) = @_;
    my $all = list_all('/v1/agents', token => $tok, inst => $inst // $t)
        // return -1;
    return scalar grep { ($_->{name} // '') eq $name } @$all;
}

# The response headers that belong to the request rather than to the
# stored response.
my $PER_REQUEST = qr/^(?:date|x-request-id|idempotent-replayed|x-worker-pid
                       |connection|x-ratelimit-.*|ratelimit(?:-policy)?)$/x;

sub own_headers {
    my ($r) = @_;
    return [sort map { lc($_->[0]) . ': ' . $_->[1] }
                 grep { lc($_->[0]) !~ $PER_REQUEST } @{$r->{header_lines}}];
}

###########################################################################
# Setup: org A with two projects, admin + user + project-bound keys; org B.

my $b     = $t->bootstrap(name => 'Idem Org A');
my $A     = $b->{token};
my $P1    = $t->cli('project', 'create', '--org', $b->{org}, 'P1');
my $P2    = $t->cli('project', 'create', '--org', $b->{org}, 'P2');
my $USER  = $t->cli('key', 'create', '--org', $b->{org}, '--role', 'user',
                    '--name', 'user');
my $BOUND = $t->cli('key', 'create', '--org', $b->{org}, '--role', 'user',
                    '--project', $P1, '--name', 'bound to P1');
like($P1, $PROJ, 'project P1 created');

my $bb  = $t->bootstrap(name => 'Idem Org B');
my $B   = $bb->{token};
my $PB  = $t->cli('project', 'create', '--org', $bb->{org}, 'PB');

my %log_expect;    # request id => miss|hit|conflict

###########################################################################
# 1. 100 concurrent POSTs with one fresh key and an identical body

{
    my $key  = fresh_key();
    my $name = "concurrent-$key";
    my @reqs = map {
        [POST => '/v1/agents', token => $A,
         headers => {'X-Project-Id' => $P1, 'Idempotency-Key' => $key},
         json => {name => $name, model => 'openai/gpt-4o'}]
    } 1 .. 100;
    my @rs = $t->concurrent(\@reqs);

    my (@created, @replayed, @busy, @other, %pids);
    for my $r (@rs) {
        $pids{hdr($r, 'X-Worker-Pid') // '?'}++;
        if ($r->{status} == 201) {
            if ((hdr($r, 'Idempotent-Replayed') // '') eq 'true') {
                push @replayed, $r;
            } else {
                push @created, $r;
            }
        } elsif ($r->{status} == 409
                 && ref $r->{json} eq 'HASH'
                 && ($r->{json}{error}{code} // '') eq
                    'IDEMPOTENCY_REQUEST_IN_PROGRESS') {
            push @busy, $r;
        } else {
            push @other, $r;
        }
    }
    note(sprintf('concurrent: %d created, %d replayed, %d in progress, '
                 . '%d other; workers %s', scalar @created, scalar @replayed,
                 scalar @busy, scalar @other,
                 join(',', map { "$_=$pids{$_}" } sort keys %pids)));

    is(scalar @other, 0, 'concurrent: every answer is 201 or 409 in progress')
        or diag(join "\n", map { "status $_->{status} "
                                 . ($_->{error} // '') . " $_->{body}" }
                           @other[0 .. ($#other < 4 ? $#other : 4)]);
    is(scalar(grep { $_->{status} >= 500 } @rs), 0, 'concurrent: no 5xx');
    is(scalar @created, 1,
       'concurrent: exactly one original 201 (without Idempotent-Replayed)');
    is(scalar(grep { $_->{status} == 201 } @rs),
       scalar(@created) + scalar(@replayed), 'concurrent: 201s accounted');

    my @bodies = map { $_->{body} } @created, @replayed;
    my %distinct = map { $_ => 1 } @bodies;
    is(scalar keys %distinct, 1, 'concurrent: all 201 bodies byte-identical');
    my $agent = @created ? $created[0]{json} : undef;
    like(ref $agent eq 'HASH' ? $agent->{id} : '', $AGENT,
         'concurrent: the 201 is an agent');

    my @bad_busy = grep {
        (hdr($_, 'Retry-After') // '') ne '1'
            || ($_->{json}{error}{type} // '') ne 'conflict'
    } @busy;
    is(scalar @bad_busy, 0,
       'concurrent: each 409 has Retry-After: 1 and type conflict')
        or diag($bad_busy[0]{raw});

    is(count_agents($A, $name), 1, 'concurrent: exactly one agent exists');

    # a later retry replays the same answer
    my $r = post_agent($A, $P1, $key, {name => $name, model => 'openai/gpt-4o'});
    is($r->{status}, 201, 'concurrent: later retry 201');
    is(hdr($r, 'Idempotent-Replayed'), 'true', 'concurrent: later retry replayed');
    is($r->{body}, $bodies[0], 'concurrent: later retry byte-identical')
        if @bodies;
    is(count_agents($A, $name), 1, 'concurrent: still exactly one agent');

    for my $x (@created) { $log_expect{hdr($x, 'X-Request-Id') // ''} = 'miss' }
    for my $x (@replayed, $r) {
        $log_expect{hdr($x, 'X-Request-Id') // ''} = 'hit';
    }
    for my $x (@busy) { $log_expect{hdr($x, 'X-Request-Id') // ''} = 'conflict' }
}

###########################################################################
# 2. Replay: byte-identical body and status, same Content-Type and own
#    headers, Idempotent-Replayed only on replays, X-Request-Id per request

my ($replay_agent, $replay_key);
{
    my $key  = $replay_key = fresh_key();
    my $body = {name => "replay-$key", model => 'openai/gpt-4o',
                description => "caf\x{e9} \x{2603}"};
    my $bytes = JSON::PP->new->utf8->canonical->encode($body);
    my $r1 = post_agent($A, $P1, $key, $body);
    is($r1->{status}, 201, 'replay: first request 201') or diag($r1->{body});
    ok(!defined hdr($r1, 'Idempotent-Replayed'),
       'replay: no Idempotent-Replayed on the original');
    $replay_agent = $r1->{json};

    my $r2 = post_agent($A, $P1, $key, $body);
    my $r3 = post_agent($A, $P1, $key, $body);
    for my $c (['second', $r2], ['third', $r3]) {
        my ($n, $r) = @$c;
        is($r->{status}, $r1->{status}, "replay ($n): same status");
        is($r->{body}, $r1->{body}, "replay ($n): byte-identical body");
        is(hdr($r, 'Content-Type'), hdr($r1, 'Content-Type'),
           "replay ($n): same Content-Type");
        is(hdr($r, 'Idempotent-Replayed'), 'true',
           "replay ($n): Idempotent-Replayed: true");
        is_deeply(own_headers($r), own_headers($r1),
                  "replay ($n): same response headers");
    }
    my @rids = map { hdr($_, 'X-Request-Id') // '' } $r1, $r2, $r3;
    like($_, qr/^[0-9a-f]{32}$/, 'replay: X-Request-Id present') for @rids;
    my %u = map { $_ => 1 } @rids;
    is(scalar keys %u, 3, 'replay: X-Request-Id differs per request');
    is(count_agents($A, "replay-$key"), 1, 'replay: one agent created');

    $log_expect{$rids[0]} = 'miss';
    $log_expect{$rids[1]} = 'hit';
    $log_expect{$rids[2]} = 'hit';

    # same key, different body: 409 IDEMPOTENCY_KEY_REUSED
    my $r4 = post_agent($A, $P1, $key, {%$body, name => "replay-other-$key"});
    err_is($r4, 409, 'IDEMPOTENCY_KEY_REUSED', undef,
           'same key, different body', type => 'conflict');
    ok(!defined hdr($r4, 'Idempotent-Replayed'), 'reused: not a replay');
    is(count_agents($A, "replay-other-$key"), 0,
       'reused: the different request did not run');
    $log_expect{hdr($r4, 'X-Request-Id') // ''} = 'conflict';

    # same key, same body bytes but a different Content-Type
    my $r5 = $t->req(POST => '/v1/agents', token => $A,
                     headers => {'X-Project-Id' => $P1, 'Idempotency-Key' => $key,
                                 'Content-Type'
                                     => 'application/json; charset=utf-8'},
                     body => $bytes);
    if ($r5->{status} == 415) {
        note('application/json; charset=utf-8 is not accepted (415)');
    } else {
        err_is($r5, 409, 'IDEMPOTENCY_KEY_REUSED', undef,
               'same key and body, other Content-Type', type => 'conflict');
    }

    # the original still replays after the conflicts
    my $r6 = post_agent($A, $P1, $key, $body);
    is($r6->{body}, $r1->{body}, 'replay after conflicts: byte-identical');
    is(hdr($r6, 'Idempotent-Replayed'), 'true',
       'replay after conflicts: replayed');
}

###########################################################################
# 3. Scope: path, organization

{
    my $key = fresh_key();
    my $ra = post_agent($A, $P1, $key, {name => "scope-$key", model => 'a/b'});
    is($ra->{status}, 201, 'scope: POST /v1/agents with key K 201');
    my $rp = $t->req(POST => '/v1/projects', token => $A,
                     headers => {'Idempotency-Key' => $key},
                     json => {name => "scope-$key"});
    is($rp->{status}, 201, 'scope: POST /v1/projects with the same K 201')
        or diag($rp->{body});
    like($rp->{json}{id} // '', $PROJ, 'scope: a project was created');
    ok(!defined hdr($rp, 'Idempotent-Replayed'), 'scope: other path not a replay');

    # identical path and body, another organization
    my $rb = post_agent($B, $PB, $key, {name => "scope-$key", model => 'a/b'});
    is($rb->{status}, 201, 'scope: org B reuses K: 201') or diag($rb->{body});
    ok(!defined hdr($rb, 'Idempotent-Replayed'), 'scope: org B not a replay');
    isnt($rb->{json}{id} // '', $ra->{json}{id} // '',
         'scope: org B got its own agent');
    is($rb->{json}{organizationId}, $bb->{org}, 'scope: agent in org B');
    is(count_agents($A, "scope-$key"), 1, 'scope: one agent in org A');
    is(count_agents($B, "scope-$key"), 1, 'scope: one agent in org B');

    # and the replays stay per org
    my $ra2 = post_agent($A, $P1, $key, {name => "scope-$key", model => 'a/b'});
    is($ra2->{body}, $ra->{body}, 'scope: org A replays its own answer');
    my $rb2 = post_agent($B, $PB, $key, {name => "scope-$key", model => 'a/b'});
    is($rb2->{body}, $rb->{body}, 'scope: org B replays its own answer');
}

###########################################################################
# 4. PATCH

{
    my $id = $replay_agent->{id} // 'agent_none';
    my $key = fresh_key();
    my $r1 = $t->req(PATCH => "/v1/agents/$id", token => $A,
                     headers => {'Idempotency-Key' => $key},
                     json => {description => 'first'});
    is($r1->{status}, 200, 'PATCH with key: 200') or diag($r1->{body});
    is($r1->{json}{description}, 'first', 'PATCH: description set');
    ok(!defined hdr($r1, 'Idempotent-Replayed'), 'PATCH: original not replayed');

    my $r2 = $t->req(PATCH => "/v1/agents/$id", token => $A,
                     json => {description => 'second'});
    is($r2->{status}, 200, 'PATCH without key: 200');
    is($r2->{json}{description}, 'second', 'PATCH without key: changed');

    my $r3 = $t->req(PATCH => "/v1/agents/$id", token => $A,
                     headers => {'Idempotency-Key' => $key},
                     json => {description => 'first'});
    is($r3->{status}, 200, 'PATCH replay: 200');
    is($r3->{body}, $r1->{body}, 'PATCH replay: the first answer, byte for byte');
    is(hdr($r3, 'Idempotent-Replayed'), 'true', 'PATCH replay: replayed');

    my $g = $t->req(GET => "/v1/agents/$id", token => $A);
    is($g->{json}{description}, 'second',
       'PATCH replay did not run again (agent keeps the later change)');

    err_is($t->req(PATCH => "/v1/agents/$id", token => $A,
                   headers => {'Idempotency-Key' => $key},
                   json => {description => 'third'}),
           409, 'IDEMPOTENCY_KEY_REUSED', undef, 'PATCH: same key, other body',
           type => 'conflict');

    # same key, same body, another agent: another path, so another scope
    my $other = post_agent($A, $P1, undef, {name => "patch-other-$key",
                                            model => 'a/b'});
    my $r4 = $t->req(PATCH => "/v1/agents/$other->{json}{id}", token => $A,
                     headers => {'Idempotency-Key' => $key},
                     json => {description => 'first'});
    is($r4->{status}, 200, 'PATCH: same key on another agent runs');
    ok(!defined hdr($r4, 'Idempotent-Replayed'), 'PATCH: other agent not replayed');
    is($r4->{json}{id}, $other->{json}{id}, 'PATCH: other agent answered');
}

###########################################################################
# 5. Key syntax: 1..255 visible ASCII characters

{
    my @bad = (
        ['empty'          => ''],
        ['256 chars'      => 'k' x 256],
        ['a space'        => 'abc def'],
        ['a tab'          => "abc\tdef"],
        ['non-ASCII (é)'  => "caf\xc3\xa9"],
        ['DEL (0x7f)'     => "abc\x7fdef"],
    );
    for my $c (@bad) {
        my ($what, $key) = @$c;
        my $name = "badkey-$n_key-" . ++$n_key;
        my $r = post_agent($A, $P1, $key, {name => $name, model => 'a/b'});
        err_is($r, 400, 'INVALID_IDEMPOTENCY_KEY', undef,
               "Idempotency-Key $what", type => 'invalid_request');
        is(count_agents($A, $name), 0, "Idempotency-Key $what: nothing created");
    }

    my $k255 = join('', map { chr(0x21 + $_ % 94) } 0 .. 254);
    is(length $k255, 255, '255-character key built');
    my $name = "key255-$$";
    my $r1 = post_agent($A, $P1, $k255, {name => $name, model => 'a/b'});
    is($r1->{status}, 201, 'Idempotency-Key of 255 visible characters accepted')
        or diag($r1->{body});
    my $r2 = post_agent($A, $P1, $k255, {name => $name, model => 'a/b'});
    is($r2->{body}, $r1->{body}, '255-character key replays');
    is(hdr($r2, 'Idempotent-Replayed'), 'true', '255-character key: replayed');
    is(count_agents($A, $name), 1, '255-character key: one agent');

    my $r3 = $t->req(POST => '/v1/projects', token => $A,
                     headers => {'Idempotency-Key' => 'x'},
                     json => {name => "one-char-$$"});
    is($r3->{status}, 201, 'Idempotency-Key of 1 character accepted');
}

###########################################################################
# 6. What is stored: 4xx yes; 401, 403 no

{
    # a 400 is stored and replayed
    my $key = fresh_key();
    my $r1 = post_agent($A, $P1, $key, {name => "v-$key", model => 5});
    err_is($r1, 400, 'VALIDATION_ERROR', undef, '400 with key',
           type => 'invalid_request');
    ok(!defined hdr($r1, 'Idempotent-Replayed'), '400: original not replayed');
    my $r2 = post_agent($A, $P1, $key, {name => "v-$key", model => 5});
    is($r2->{status}, 400, '400 replay: same status');
    is(hdr($r2, 'Idempotent-Replayed'), 'true', '400 replay: Idempotent-Replayed');
    is($r2->{body}, $r1->{body},
       '400 replay: byte-identical (request_id of the original)');

    # 403 by the permission check (user key, admin-only route) is not stored
    $key = fresh_key();
    my $body = {name => "perm-$key"};
    my $r3 = $t->req(POST => '/v1/projects', token => $USER,
                     headers => {'Idempotency-Key' => $key}, json => $body);
    err_is($r3, 403, 'PERMISSION_DENIED', undef,
           'user key POST /v1/projects with key', type => 'permission_denied');
    my $r4 = $t->req(POST => '/v1/projects', token => $A,
                     headers => {'Idempotency-Key' => $key}, json => $body);
    is($r4->{status}, 201, '403 not stored: admin with the same key runs (201)')
        or diag($r4->{body});
    ok(!defined hdr($r4, 'Idempotent-Replayed'), '403 not stored: not a replay');
    my $r5 = $t->req(POST => '/v1/projects', token => $A,
                     headers => {'Idempotency-Key' => $key}, json => $body);
    is($r5->{body}, $r4->{body}, '... and the 201 is what replays now');

    # 403 from the project check of a project-bound key is not stored
    $key = fresh_key();
    $body = {name => "bound-$key", model => 'a/b'};
    my $r6 = post_agent($BOUND, $P2, $key, $body);
    err_is($r6, 403, 'PERMISSION_DENIED', undef,
           'bound key, other project, with key', type => 'permission_denied');
    my $r7 = post_agent($BOUND, $P1, $key, $body);
    is($r7->{status}, 201, '403 not stored: same key and body, own project, runs')
        or diag($r7->{body});
    ok(!defined hdr($r7, 'Idempotent-Replayed'), '... not a replay');
    is($r7->{json}{projectId}, $P1, '... agent in the bound project');

    # 401: nothing is stored either (no organization); a valid retry runs
    $key = fresh_key();
    $body = {name => "unauth-$key", model => 'a/b'};
    my $r8 = post_agent('ck_bogus', $P1, $key, $body);
    is($r8->{status}, 401, '401 with key');
    my $r9 = post_agent($A, $P1, $key, $body);
    is($r9->{status}, 201, '401 not stored: a valid retry runs');
    ok(!defined hdr($r9, 'Idempotent-Replayed'), '... not a replay');
}

###########################################################################
# 7. A claim of a killed worker is freed (gdb stops a worker in the handler)

SKIP: {
    chomp(my $gdb = `command -v gdb 2>/dev/null` // '');
    skip 'gdb not installed', 11 unless $gdb && -x $gdb;

    my $tmp = tempdir('creor-gdb-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my @workers = $t->worker_pids;
    my %gdb;    # worker pid => gdb pid
    for my $w (@workers) {
        my $pid = fork // die "fork: $!";
        if ($pid == 0) {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>', "$tmp/gdb.$w.out";
            open STDERR, '>&', \*STDOUT;
            no warnings 'exec';
            exec $gdb, '-q', '-nx', '-batch', '-p', $w,
                '-ex', 'set breakpoint pending on',
                '-ex', 'set confirm off',
                '-ex', 'break creor_agents_create',
                '-ex', "shell touch $tmp/ready.$w",
                '-ex', 'continue',
                '-ex', "shell touch $tmp/hit.$w",
                '-ex', "shell i=0; while [ ! -e $tmp/release ] && [ \$i -lt 600 ];"
                       . " do sleep 0.1; i=\$((i+1)); done";
            POSIX::_exit(127);
        }
        $gdb{$w} = $pid;
    }
    # Lets every gdb end: the one whose worker hit the breakpoint waits in
    # its shell loop for the release file; the others are still in
    # "continue" and are interrupted (SIGINT), so they detach cleanly and
    # take their breakpoint out of the worker.
    my $reap_gdb = sub {
        my ($secs) = @_;
        open(my $fh, '>', "$tmp/release"); close $fh;
        for my $w (keys %gdb) {
            kill 'INT', $gdb{$w} unless -e "$tmp/hit.$w";
        }
        my $deadline = time + $secs;
        while (time < $deadline) {
            last unless grep { CreorTest::_alive($gdb{$_}) } keys %gdb;
            sleep 0.05;
        }
        for my $w (keys %gdb) {
            next unless CreorTest::_alive($gdb{$w});
            diag("gdb for worker $w did not end, killing it");
            kill 'KILL', $gdb{$w};
            waitpid($gdb{$w}, 0);
        }
        %gdb = ();
    };

    my $deadline = time + 20;
    sleep 0.05 while time < $deadline
                     && grep { !-e "$tmp/ready.$_" } @workers;
    my @ready = grep { -e "$tmp/ready.$_" } @workers;
    if (@ready != @workers) {
        my $out = join '', map { CreorTest::_slurp("$tmp/gdb.$_.out") // '' }
                               @workers;
        $reap_gdb->(5);
        skip "gdb cannot attach to the workers (ptrace not permitted?): "
             . (substr($out, 0, 300) =~ s/\s+/ /gr), 11;
    }
    sleep 0.3;    # both gdbs issued "continue"

    my $key  = fresh_key();
    my $name = "killed-$key";
    my $body = {name => $name, model => 'a/b'};
    my $s = $t->stream(POST => '/v1/agents', token => $A,
                       headers => {'X-Project-Id' => $P1,
                                   'Idempotency-Key' => $key},
                       json => $body, timeout => 10);
    $deadline = time + 10;
    my $victim;
    while (!$victim && time < $deadline) {
        ($victim) = grep { -e "$tmp/hit.$_" } @workers;
        sleep 0.05 unless $victim;
    }
    ok($victim, 'a worker stopped in creor_agents_create (claim committed)')
        or do { $reap_gdb->(5); $s->close; skip 'breakpoint not hit', 10 };

    # while it hangs, the key is in progress
    my $busy = post_agent($A, $P1, $key, $body, timeout => 5);
    err_is($busy, 409, 'IDEMPOTENCY_REQUEST_IN_PROGRESS', undef,
           'key claimed by the stopped worker', type => 'conflict');
    is(hdr($busy, 'Retry-After'), '1', 'in progress: Retry-After: 1');

    kill 'KILL', $victim;
    $reap_gdb->(10);    # the tracer lets go, the master reaps the worker
    $deadline = time + 10;
    sleep 0.05 while time < $deadline && -e "/proc/$victim";
    ok(!-e "/proc/$victim", 'the killed worker is gone');
    is($s->status(2), 0, 'the hung request got no answer');
    $s->close;

    my $t0 = time;
    my $r = post_agent($A, $P1, $key, $body, timeout => 10);
    my $took = time - $t0;
    is($r->{status}, 201, "retry after the worker died runs (201, not 409)")
        or diag($r->{body});
    ok(!defined hdr($r, 'Idempotent-Replayed'), 'retry: not a replay');
    ok($took < 15, sprintf('retry answered promptly (%.2fs), not after the '
                          . '30 s lease', $took));
    is(count_agents($A, $name), 1, 'one agent from the killed-worker key');

    # the master restarts the worker
    $deadline = time + 10;
    sleep 0.05 while time < $deadline && $t->worker_pids < 2;
}

###########################################################################
# 8. $creor_idempotent in the access log

{
    my $log = $t->dir . '/logs/idem.log';
    my %got;
    my $deadline = time + 5;
    while (1) {
        %got = ();
        for (split /\n/, CreorTest::_slurp($log) // '') {
            $got{$1} = $2 if /^([0-9a-f]{32}) \d+ idem=(\S*)/;
        }
        last if !(grep { !exists $got{$_} } keys %log_expect)
                || time > $deadline;
        sleep 0.1;
    }
    my @wrong = grep { ($got{$_} // '(none)') ne $log_expect{$_} }
                sort keys %log_expect;
    ok(scalar(keys %log_expect) > 5, 'logged requests to check');
    is(scalar @wrong, 0, '$creor_idempotent: miss/hit/conflict as expected')
        or diag(join "\n", map { "$_: expected $log_expect{$_}, got "
                                 . ($got{$_} // '(none)') } @wrong[0 .. 4]);
    my %vals = map { $_ => 1 } values %got;
    ok($vals{$_}, "access log has an idem=$_ line") for qw(miss hit conflict);
}

$t->no_alerts_ok('no alerts except the killed worker',
                 ignore => qr/exited on signal 9/);
$t->stop;

###########################################################################
# 9. 429 is not stored (rate_limits on, 1r/s per key: capacity 1)

{
    my $t2 = CreorTest->new(store_opts => 'sync=off', rate_limits => 1,
                            http_config => 'creor_rate_limit 1r/s;');
    my $b2 = $t2->bootstrap(name => 'Idem 429');
    my $k1 = fresh_key();
    my $k2 = fresh_key();
    my $r1 = $t2->req(POST => '/v1/projects', token => $b2->{token},
                      headers => {'Idempotency-Key' => $k1},
                      json => {name => 'first'});
    my $t_first = time;
    is($r1->{status}, 201, '429 instance: first request 201');
    my $r2 = $t2->req(POST => '/v1/projects', token => $b2->{token},
                      headers => {'Idempotency-Key' => $k2},
                      json => {name => 'second'});
    err_is($r2, 429, 'RATE_LIMIT_EXCEEDED', undef,
           'second request over 1r/s', type => 'rate_limit_exceeded');
    ok(!defined hdr($r2, 'Idempotent-Replayed'), '429 has no Idempotent-Replayed');
    like(hdr($r2, 'Retry-After') // '', qr/^[1-9]\d*$/, '429 has Retry-After');

    sleep(1.3 - (time - $t_first)) if time - $t_first < 1.3;
    my $r3 = $t2->req(POST => '/v1/projects', token => $b2->{token},
                      headers => {'Idempotency-Key' => $k2},
                      json => {name => 'second'});
    is($r3->{status}, 201, '429 not stored: the retry with the same key runs')
        or diag($r3->{body});
    ok(!defined hdr($r3, 'Idempotent-Replayed'), '... and is not a replay');
    $t2->finish('429 instance: no alerts');
}

###########################################################################
# 10. TTL: creor_idempotency_ttl 2s

{
    my $t3 = CreorTest->new(store_opts => 'sync=off',
                            http_config => 'creor_idempotency_ttl 2s;');
    my $b3 = $t3->bootstrap(name => 'Idem TTL');
    my $p3 = $t3->cli('project', 'create', '--org', $b3->{org}, 'TTL');
    my $key = fresh_key();
    my $name = "ttl-$key";
    my $req = sub {
        $t3->req(POST => '/v1/agents', token => $b3->{token},
                 headers => {'X-Project-Id' => $p3, 'Idempotency-Key' => $key},
                 json => {name => $name, model => 'a/b'});
    };
    my $r1 = $req->();
    is($r1->{status}, 201, 'TTL: first 201');
    my $r2 = $req->();
    is($r2->{body}, $r1->{body}, 'TTL: replayed within the TTL');
    is(hdr($r2, 'Idempotent-Replayed'), 'true', 'TTL: replay flagged');
    sleep 3;
    my $r3 = $req->();
    is($r3->{status}, 201, 'TTL: after 3 s the key runs again');
    ok(!defined hdr($r3, 'Idempotent-Replayed'), 'TTL: not a replay');
    like($r3->{json}{id} // '', $AGENT, 'TTL: an agent');
    isnt($r3->{json}{id} // '', $r1->{json}{id} // '', 'TTL: a new agent id');
    my $r4 = $req->();
    is($r4->{body}, $r3->{body}, 'TTL: the new answer is what replays now');
    is(count_agents($b3->{token}, $name, $t3), 2, 'TTL: two agents');
    $t3->finish('TTL instance: no alerts');
}

done_testing;
