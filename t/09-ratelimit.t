#!/usr/bin/perl
# Rate limits (SPEC 7): exact GCRA per credential across workers, the
# limit headers, a key's own rateLimit, per-location limits and off, the
# global limit, the anonymous limit against key guessing, and nginx -t on
# bad directive values.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi qw(hdr);

my $NGINX = $CreorTest::NGINX;

# Default limits (60r/m burst=10 per credential, 60r/m per address), with
# two locations of their own:
#   = /v1/projects   creor_rate_limit 3r/s burst=2
#   = /v1/api-keys   creor_rate_limit off
my $t = CreorTest->new(
    store_opts    => 'sync=off',
    rate_limits   => 1,
    http_config   => 'add_header X-Worker-Pid $pid always;',
    server_config => join("\n",
        'location = /v1/projects { creor_api; creor_rate_limit 3r/s burst=2; }',
        'location = /v1/api-keys { creor_api; creor_rate_limit off; }'),
);
my $boot = $t->bootstrap(name => 'Rate Org');

###########################################################################
# Helpers

# a fresh key of the org, made with the CLI (no request counted)
my $n_keys = 0;
sub fresh_key {
    my ($inst, $org, $role) = @_;
    return $inst->cli('key', 'create', '--org', $org, '--role', $role // 'admin',
                      '--name', 'k' . ++$n_keys);
}

sub is_429 {
    my ($r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $e = ref $r->{json} eq 'HASH' ? $r->{json}{error} : undef;
    my $ok = is($r->{status}, 429, "$name: 429");
    is(ref $e eq 'HASH' ? $e->{code} : undef, 'RATE_LIMIT_EXCEEDED',
       "$name: code RATE_LIMIT_EXCEEDED");
    is(ref $e eq 'HASH' ? $e->{type} : undef, 'rate_limit_exceeded',
       "$name: type rate_limit_exceeded");
    like(hdr($r, 'Retry-After') // '', qr/^[1-9]\d*$/,
         "$name: Retry-After whole seconds >= 1");
    diag("got: $r->{status} $r->{body}") unless $ok;
    return $ok;
}

###########################################################################
# 1. 100 concurrent requests from a fresh key: exactly 70 admitted

{
    my $K = fresh_key($t, $boot->{org}, 'user');
    my @rs = $t->concurrent([map { [GET => '/v1/agents', token => $K] } 1 .. 100]);
    my @ok   = grep { $_->{status} == 200 } @rs;
    my @over = grep { $_->{status} == 429 } @rs;
    my %pids;
    $pids{hdr($_, 'X-Worker-Pid') // '?'}++ for @rs;
    my ($t0) = sort { $a <=> $b } map { $_->{t0} // 0 } @rs;
    my ($t1) = sort { $b <=> $a } map { $_->{t1} // 0 } @rs;
    note(sprintf('burst: %d x 200, %d x 429 in %.3fs; workers %s',
                 scalar @ok, scalar @over, $t1 - $t0,
                 join(',', map { "$_=$pids{$_}" } sort keys %pids)));

    is(scalar @ok, 70, 'burst: exactly 70 x 200');
    is(scalar @over, 30, 'burst: exactly 30 x 429');
    is(scalar(keys %pids), 2, 'burst: both workers answered');

    my @bad = grep {
        my $e = ref $_->{json} eq 'HASH' ? $_->{json}{error} : {};
        !((hdr($_, 'Retry-After') // '') =~ /^[1-9]\d*$/
          && ($e->{type} // '') eq 'rate_limit_exceeded'
          && ($e->{code} // '') eq 'RATE_LIMIT_EXCEEDED')
    } @over;
    is(scalar @bad, 0, 'burst: every 429 has Retry-After >= 1, type and code')
        or diag($bad[0]{raw});

    # each admitted request took one of the 70: remaining 69 .. 0, once each
    my @rem = sort { $a <=> $b }
              map { hdr($_, 'X-RateLimit-Remaining') // -1 } @ok;
    is_deeply(\@rem, [0 .. 69],
              'burst: X-RateLimit-Remaining of the 200s is 69..0, each once');
    is(scalar(grep { (hdr($_, 'X-RateLimit-Remaining') // '') ne '0' } @over),
       0, 'burst: X-RateLimit-Remaining 0 on every 429');

    # one a second after that
    sleep 1.1;
    my $c = $t->conn;
    my $r1 = $c->req(GET => '/v1/agents', token => $K);
    my $r2 = $c->req(GET => '/v1/agents', token => $K);
    $c->close;
    is($r1->{status}, 200, 'burst: 1.1 s later one more is admitted');
    is_429($r2, 'burst: the next one at once');
    is(hdr($r2, 'Retry-After'), '1', 'burst: Retry-After: 1 at 1r/s refill');
}

###########################################################################
# 2. Headers on every authenticated response

{
    my $K  = fresh_key($t, $boot->{org}, 'admin');
    my $c  = $t->conn;
    my $p  = $t->cli('project', 'create', '--org', $boot->{org}, 'Hdr');
    my @reqs = (
        [GET   => '/v1/agents'],
        [GET   => '/v1/agents?limit=1'],
        [POST  => '/v1/agents', headers => {'X-Project-Id' => $p},
                 json => {name => 'hdr', model => 'a/b'}],
        [GET   => '/v1/agents/agent_01m00000000000000000000000'],    # 404
        [POST  => '/v1/agents', headers => {'X-Project-Id' => $p},
                 json => {name => 5, model => 'a/b'}],                # 400
        [GET   => '/v1/agents'],
    );
    my $expect = 69;
    for my $q (@reqs) {
        my ($m, $path, %o) = @$q;
        my $now = time;
        my $r = $c->req($m, $path, token => $K, %o);
        my $name = "headers ($m $path -> $r->{status})";
        is(hdr($r, 'X-RateLimit-Limit'), '70', "$name: X-RateLimit-Limit 70");
        is(hdr($r, 'X-RateLimit-Remaining'), $expect,
           "$name: X-RateLimit-Remaining $expect");
        my $reset = hdr($r, 'X-RateLimit-Reset') // '';
        like($reset, qr/^\d{10}$/, "$name: X-RateLimit-Reset epoch seconds");
        ok($reset =~ /^\d+$/ && $reset >= int($now),
           "$name: X-RateLimit-Reset >= now");
        is(hdr($r, 'RateLimit-Policy'), '"default";q=70;w=60',
           "$name: RateLimit-Policy");
        my ($rr, $tt) = (hdr($r, 'RateLimit') // '')
                        =~ /^"default";r=(\d+);t=(\d+)$/;
        ok(defined $rr, "$name: RateLimit field")
            or diag(hdr($r, 'RateLimit') // '(none)');
        is($rr, $expect, "$name: RateLimit r = remaining");
        ok(defined $tt && $reset =~ /^\d+$/
           && abs($reset - ($now + $tt)) <= 2,
           "$name: X-RateLimit-Reset = now + t");
        $expect--;
    }
    $c->close;
    is($expect, 69 - @reqs, 'remaining went down by one per request');

}

###########################################################################
# 3. A key's own rateLimit overrides the default

{
    my $ADM = fresh_key($t, $boot->{org}, 'admin');
    my $r = $t->req(POST => '/v1/api-keys', token => $ADM,
                    json => {name => 'slow', role => 'user', rateLimit => '5r/m'});
    is($r->{status}, 201, 'key with rateLimit 5r/m created') or diag($r->{body});
    is($r->{json}{rateLimit}, '5r/m', 'rateLimit shown on the key');
    my $SLOW = $r->{json}{token} // 'none';
    my $c = $t->conn;
    my @st = map { $c->req(GET => '/v1/agents', token => $SLOW) } 1 .. 6;
    $c->close;
    is_deeply([map { $_->{status} } @st[0 .. 4]], [(200) x 5],
              'own rateLimit: 5 admitted');
    is(hdr($st[0], 'X-RateLimit-Limit'), '5', 'own rateLimit: X-RateLimit-Limit 5');
    is(hdr($st[0], 'RateLimit-Policy'), '"default";q=5;w=60',
       'own rateLimit: RateLimit-Policy');
    is_429($st[5], 'own rateLimit: the 6th');
    like(hdr($st[5], 'Retry-After') // '', qr/^(1[0-2]|[1-9])$/,
         'own rateLimit: Retry-After about 12 s (one per 12 s)');
}

###########################################################################
# 4. creor_rate_limit 3r/s burst=2 in a location: 5 back to back

{
    my $K = fresh_key($t, $boot->{org}, 'admin');
    my $c = $t->conn;
    my @rs = map { $c->req(GET => '/v1/projects', token => $K) } 1 .. 6;
    $c->close;
    is_deeply([map { $_->{status} } @rs[0 .. 4]], [(200) x 5],
              'location 3r/s burst=2: 5 back to back admitted');
    is_429($rs[5], 'location 3r/s burst=2: the 6th');
    is(hdr($rs[0], 'X-RateLimit-Limit'), '5', 'location limit: X-RateLimit-Limit 5');
    is(hdr($rs[0], 'RateLimit-Policy'), '"default";q=5;w=1',
       'location limit: RateLimit-Policy w=1');
    is(hdr($rs[0], 'X-RateLimit-Remaining'), '4', 'location limit: remaining 4');
}

###########################################################################
# 5. creor_rate_limit off: no headers, no 429

{
    my $K = fresh_key($t, $boot->{org}, 'admin');
    my $c = $t->conn;
    my (%status, $with_headers);
    for (1 .. 100) {
        my $r = $c->req(GET => '/v1/api-keys', token => $K);
        $status{$r->{status}}++;
        $with_headers++ if grep { /^(x-)?ratelimit/i } keys %{$r->{headers}};
        if ($c->closed) { $c->close; $c = $t->conn }
    }
    $c->close;
    is_deeply(\%status, {200 => 100}, 'creor_rate_limit off: 100 x 200');
    ok(!$with_headers, 'creor_rate_limit off: no rate limit headers');
}

###########################################################################
# 6. Key guessing: the anonymous limit (60r/m, no burst) per address

{
    my @rs = $t->concurrent([map {
        [GET => '/v1/agents', token => "ck_bogus$_"]
    } 1 .. 100]);
    my %st;
    $st{$_->{status}}++ for @rs;
    note('bad credentials: ' . join(', ', map { "$_ x $st{$_}" } sort keys %st));
    is($st{401} // 0, 60, 'bad credentials: exactly 60 x 401');
    is($st{429} // 0, 40, 'bad credentials: then 40 x 429');
    my @bad = grep {
        $_->{status} == 429
        && !(($_->{json}{error}{code} // '') eq 'RATE_LIMIT_EXCEEDED'
             && (hdr($_, 'Retry-After') // '') =~ /^[1-9]\d*$/)
    } @rs;
    is(scalar @bad, 0, 'bad credentials: 429s are RATE_LIMIT_EXCEEDED '
                       . 'with Retry-After');

    my $r = $t->req(GET => '/v1/agents', token => 'ck_bogus');
    is_429($r, 'bad credentials: one more');
    $r = $t->req(GET => '/v1/agents');
    is_429($r, 'no credentials at all: same address bucket');

    my $K = fresh_key($t, $boot->{org}, 'user');
    $r = $t->req(GET => '/v1/agents', token => $K);
    is($r->{status}, 200, 'a valid key from the same address still works');
    is(hdr($r, 'X-RateLimit-Remaining'), '69', '... on its own bucket');
}

###########################################################################
# 6b. Counters survive a reload, a stop and a kill -9 of every process:
#     the shared table outlives a reload, a stopping worker writes back
#     what changed and a timer does it once a second.  A key of 5r/m
#     makes 3 requests, then after the event exactly 2 more are admitted
#     (the bucket refills one per 12 s: the margin of the case).

{
    my $ADM = fresh_key($t, $boot->{org}, 'admin');
    my @events = (
        [reload => sub { $t->reload; 1 }],
        [stop   => sub { $t->stop; $t->start; 1 }],
        # the write-back timer runs every second: 2.5 s leaves a margin
        ['kill -9' => sub { sleep 2.5; my $ok = $t->kill_all; $t->start; $ok }],
    );
    for my $e (@events) {
        my ($name, $do) = @$e;
        my $r = $t->req(POST => '/v1/api-keys', token => $ADM,
                        json => {name => "survive $name", role => 'user',
                                 rateLimit => '5r/m'});
        my $K = $r->{json}{token} // 'none';
        my @before = map { $t->req(GET => '/v1/agents', token => $K) } 1 .. 3;
        is_deeply([map { $_->{status} } @before], [200, 200, 200],
                  "$name: 3 admitted before");
        ok($do->(), "$name: done");
        my @after = map { $t->req(GET => '/v1/agents', token => $K) } 1 .. 3;
        is_deeply([map { $_->{status} } @after[0, 1]], [200, 200],
                  "$name: 2 more admitted after");
        is_deeply([map { hdr($_, 'X-RateLimit-Remaining') } @after[0, 1]],
                  [1, 0], "$name: remaining 1, 0 after");
        is_429($after[2], "$name: the 6th");
    }
}

$t->finish;

###########################################################################
# 7. creor_rate_limit_global 10r/m: shared by all credentials

{
    my $g = CreorTest->new(store_opts => 'sync=off', rate_limits => 1,
                           http_config => 'creor_rate_limit_global 10r/m;');
    my $o  = $g->bootstrap(name => 'Global Org');
    my $o2 = $g->bootstrap(name => 'Global Org 2');
    my @keys = ($o->{token}, fresh_key($g, $o2->{org}, 'user'));
    my @st = map { $g->req(GET => '/v1/agents', token => $keys[$_ % 2])->{status} }
             0 .. 9;
    is_deeply(\@st, [(200) x 10], 'global: 10 admitted over two keys');
    my $r1 = $g->req(GET => '/v1/agents', token => $keys[0]);
    my $r2 = $g->req(GET => '/v1/agents', token => $keys[1]);
    is_429($r1, 'global: 11th (key 1)');
    is_429($r2, 'global: 12th (key 2)');
    my $K3 = fresh_key($g, $o->{org}, 'user');
    is_429($g->req(GET => '/v1/agents', token => $K3),
           'global: a fresh key is limited too');
    $g->finish('global instance: no alerts');
}

###########################################################################
# 8. Bad directive values fail nginx -t, naming the directive

my $cdir = $t->conf_dir;

sub conf_test {
    my ($http, $loc) = @_;
    return $t->conf_test("creor_store $cdir/store; $http", "creor_api; $loc");
}

{
    my ($rc, $out) = conf_test('creor_rate_limit 10r/s burst=5; '
                               . 'creor_rate_limit_global 100r/m; '
                               . 'creor_rate_limit_anonymous 30r/m; '
                               . 'creor_idempotency_ttl 1h;',
                               'creor_rate_limit 2r/h;');
    is($rc, 0, 'nginx -t: valid rate limit directives pass') or diag($out);

    my @bad = (
        ['creor_rate_limit 10r/x;',          '', 'creor_rate_limit'],
        ['creor_rate_limit abc;',            '', 'creor_rate_limit'],
        ['creor_rate_limit 10r/s burst=;',   '', 'creor_rate_limit'],
        ['creor_rate_limit 0r/s;',           '', 'creor_rate_limit'],
        ['creor_rate_limit 10r/s burst=x;',  '', 'creor_rate_limit'],
        ['creor_rate_limit_anonymous 5r/d;', '', 'creor_rate_limit_anonymous'],
        ['creor_rate_limit_global 10r/x;',   '', 'creor_rate_limit_global'],
        ['', 'creor_rate_limit_global 10r/m;',   'creor_rate_limit_global'],
        ['creor_idempotency_ttl abc;',       '', 'creor_idempotency_ttl'],
        ['creor_rate_limit 10r/s; creor_rate_limit 20r/s;', '',
         'creor_rate_limit'],
    );
    for my $c (@bad) {
        my ($http, $loc, $dir) = @$c;
        my $what = ($http . $loc) =~ s/;\s*$//r;
        $what .= ' in a location' if $loc ne '';
        ($rc, $out) = conf_test($http, $loc);
        isnt($rc, 0, "nginx -t: $what fails");
        like($out, qr/"\Q$dir\E"/, "$what: message names $dir") or diag($out);
    }
}

done_testing;
