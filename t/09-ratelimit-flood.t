#!/usr/bin/perl
# Rate limit counters are bounded (SPEC 7): a flood of bad credentials
# from many distinct client addresses against a small counters map.
# Anonymous counters are evicted when their share is full; authenticated
# requests stay 200 and exactly counted, failed ones stay 401 (never 503),
# and an address that keeps guessing is still limited.
#
# The addresses come through the realip module (X-Forwarded-For from
# 127.0.0.1), so one keep-alive connection can carry many of them.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time);
use CreorTest;
use CreorApi qw(hdr);

# distinct addresses flooded; CREOR_FLOOD overrides
my $FLOOD    = $ENV{CREOR_FLOOD} // 40000;
# requests written at once, then one authenticated: at most 160 of those
my $PIPELINE = $FLOOD > 40000 ? int(($FLOOD + 159) / 160) : 250;

# counters=1m: room for about 2000 anonymous counters; without eviction
# 40000 fill the map several times over.  200r/h per key (160 probes)
# refills one request in 18 s, so the remaining count of the probe key is
# exact within a margin of the flood's duration.
my $t = CreorTest->new(
    store_opts  => 'sync=off counters=1m',
    rate_limits => 1,
    http_config => join("\n",
        'set_real_ip_from 127.0.0.1;',
        'real_ip_header X-Forwarded-For;',
        'creor_rate_limit 200r/h;',
        'keepalive_requests 1000000;'),
);
my $boot = $t->bootstrap(name => 'Flood Org');
my $KEY  = $t->cli('key', 'create', '--org', $boot->{org}, '--role', 'user',
                   '--name', 'probe');

sub addr { my $i = shift; join '.', 127, ($i >> 16) & 255, ($i >> 8) & 255,
                                     $i & 255 }

sub bad_request {
    my ($ip) = @_;
    return "GET /v1/agents HTTP/1.1\r\nHost: localhost\r\n"
         . "Authorization: Bearer ck_flood\r\n"
         . "X-Forwarded-For: $ip\r\n\r\n";
}

###########################################################################
# 1. The flood, with an authenticated probe after every $PIPELINE addresses

my (%status, @probes);
my $c = $t->conn(timeout => 60);
my $t0 = time;

for (my $i = 1; $i <= $FLOOD; $i += $PIPELINE) {
    my @ips = map { addr($_) } $i .. ($i + $PIPELINE - 1 > $FLOOD
                                      ? $FLOOD : $i + $PIPELINE - 1);
    $c->send(join '', map { bad_request($_) } @ips);
    for (@ips) {
        my $r = $c->read_response;
        $status{$r->{status}}++;
    }
    push @probes, $c->req(GET => '/v1/agents', token => $KEY);
}
$c->close;

my $secs = time - $t0;
note(sprintf('flooded %d distinct addresses in %.1f s (%.0f/s); '
             . 'statuses %s', $FLOOD, $secs, $FLOOD / ($secs || 1),
             join(', ', map { "$_ x $status{$_}" } sort keys %status)));

is_deeply(\%status, {401 => $FLOOD},
          "flood: all $FLOOD requests with bad credentials are 401");

my @not200 = grep { $_->{status} != 200 } @probes;
is(scalar @not200, 0,
   'flood: every authenticated request during the flood is 200 ('
   . scalar(@probes) . ' probes)')
    or diag("got $not200[0]{status}: $not200[0]{body}");

# counted, one each: remaining went 199, 198, ... (plus any refill)
my @rem = map { hdr($_, 'X-RateLimit-Remaining') // -1 } @probes;
my $refill = int($secs / 18) + 1;
my @off = grep { $rem[$_] < 199 - $_ || $rem[$_] > 199 - $_ + $refill }
          0 .. $#rem;
is(scalar @off, 0, 'flood: each authenticated request was counted once')
    or diag("probe $off[0]: remaining $rem[$off[0]]");

###########################################################################
# 2. After the flood: the anonymous limit still holds for a guesser, and
#    a fresh key's burst is still exact over both workers

{
    # 60r/m admits one more a second: the count of 401s may exceed 60 by
    # the seconds the requests took, however slow the host
    my $g  = $t->conn;
    my $g0 = time;
    my @st = map {
        $g->req(GET => '/v1/agents',
                headers => {'X-Forwarded-For' => '10.1.2.3',
                            Authorization => 'Bearer ck_guess'})->{status}
    } 1 .. 75;
    my $took = time - $g0;
    $g->close;
    my $n401 = grep { $_ == 401 } @st;
    is(scalar(grep { $_ != 401 && $_ != 429 } @st), 0,
       'guesser: every answer is 401 or 429');
    ok($n401 >= 60 && $n401 <= 61 + $took,
       "guesser: $n401 x 401 in ${\ sprintf('%.1f', $took)} s, then 429 "
       . '(60r/m per address)');
    is($st[-1], 429, 'guesser: the last is 429');
}

{
    my $ADM = $t->cli('key', 'create', '--org', $boot->{org}, '--role', 'admin',
                      '--name', 'adm');
    my $r = $t->req(POST => '/v1/api-keys', token => $ADM,
                    json => {name => 'burst', role => 'user',
                             rateLimit => '60r/m burst=10'});
    is($r->{status}, 201, 'key with 60r/m burst=10 made') or diag($r->{body});
    my $K = $r->{json}{token} // 'none';
    my @rs = $t->concurrent([map { [GET => '/v1/agents', token => $K] }
                             1 .. 100]);
    is(scalar(grep { $_->{status} == 200 } @rs), 70,
       'after the flood: 100 concurrent from a fresh key, exactly 70 x 200');
    is(scalar(grep { $_->{status} == 429 } @rs), 30,
       'after the flood: exactly 30 x 429');
}

###########################################################################
# 2b. More busy credentials than the workers' shared table holds: with
#     counters=1m it has 16 buckets of 8 counters.  160 keys are counted
#     once each, then once more: a key whose counter left the table
#     (written back first) is read again from the counters environment, so
#     every second answer says exactly 2 taken (200r/h refills one in 18 s)

{
    my @keys = map {
        $t->cli('key', 'create', '--org', $boot->{org}, '--role', 'user',
                '--name', "many$_")
    } 1 .. 160;
    my $c2 = $t->conn;
    my @first = map { $c2->req(GET => '/v1/agents', token => $_) } @keys;
    my @second = map { $c2->req(GET => '/v1/agents', token => $_) } @keys;
    $c2->close;
    is(scalar(grep { $_->{status} != 200 } @first, @second), 0,
       '160 keys, twice: every answer 200');
    my @off = grep {
        (hdr($_, 'X-RateLimit-Remaining') // -1)
        != (hdr($_, 'X-RateLimit-Limit') // 0) - 2
    } @second;
    is(scalar @off, 0, '160 keys: the second answer of each says 2 taken')
        or diag(join ' ', map { hdr($_, 'X-RateLimit-Remaining') // '-' }
                              @off);
}

###########################################################################
# 3. Nothing fell back to "not counted", nothing alarming in the logs

unlike($t->error_log_text, qr/rate limit counters (?:failed|are full)/,
       'error.log: the counters never filled');

$t->finish;
done_testing;
