#!/usr/bin/env perl
# Costs that must not grow with the data (issue 13, point 3): the same
# requests against an organization of 1,000 runs and 1,000 agents and one
# of 1,000,000 runs and 100,000 agents (loaded by `creor bench-load`, as
# the server writes them, without fsync).  Prints p50 and p99 of each list
# mode, filter, deep page and offset, run creation and agent deletion,
# and while an agent with a tenth of the runs (all waiting for input) is
# deleted and its runs are cancelled in the background, the latency of
# small writes on fresh connections (so on both workers): the longest
# time another write waited for the write lock.  Not run by CI or
# `make bench`: the large load takes a minute or two and ~1.5 GB.
#
#   bench/large.pl [large runs] [large agents] [samples]
#                  (1000000 100000 200)

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../t/lib";

use CreorTest;
use IO::Socket::IP;
use Time::HiRes qw(time sleep);

my $RUNS    = $ARGV[0] // 1_000_000;
my $AGENTS  = $ARGV[1] // 100_000;
my $SAMPLES = $ARGV[2] // 200;

sub pct {
    my ($p, @v) = @_;
    @v = sort { $a <=> $b } @v;
    return $v[int($p / 100 * $#v + 0.5)] // 0;
}

# A keep-alive request whose answer is read, not decoded: JSON::PP would
# cost more than the server.  Returns the status and the body.
sub fast {
    my ($t, $conn, $method, $path, %o) = @_;
    $$conn //= IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                   PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $@\n";
    my $text = CreorTest::build_request($method, $path, 1, %o);
    syswrite($$conn, $text) == length $text or die "write: $!\n";
    my $buf = '';
    while ($buf !~ /\r\n\r\n/) {
        sysread($$conn, $buf, 65536, length $buf) or die "read: $!\n";
    }
    my $hlen = index($buf, "\r\n\r\n") + 4;
    my ($status) = $buf =~ /^HTTP\/1\.1 (\d+)/;
    my ($len) = $buf =~ /\r\ncontent-length:\s*(\d+)/i;
    die "$path: no content-length\n" unless defined $len;
    while (length($buf) < $hlen + $len) {
        sysread($$conn, $buf, 65536, length $buf) or die "read: $!\n";
    }
    undef $$conn if $buf =~ /\r\nconnection: close/i;
    return ($status, substr($buf, $hlen, $len));
}

sub measure {
    my ($n, $f) = @_;
    my @ms;
    $f->(-1) for 1 .. 10;                   # warm the pages and the pools
    for my $i (0 .. $n - 1) {
        my $t0 = time;
        $f->($i);
        push @ms, (time - $t0) * 1000;
    }
    return [pct(50, @ms), pct(99, @ms), pct(100, @ms)];
}

sub scenario {
    my ($runs, $agents) = @_;
    my $waiting = int($runs / 10);
    my %res;

    my $t = CreorTest->new(store_opts => 'sync=off map_size=16g');
    my $b = $t->bootstrap(name => 'Large');
    my $proj = $t->cli('project', 'create', '--org', $b->{org}, 'big');
    my $t0 = time;
    my $heavy = $t->cli('bench-load', '--org', $b->{org}, '--project', $proj,
                        '--agents', $agents, '--runs', $runs,
                        '--waiting', $waiting);
    my $load = time - $t0;
    printf STDERR "%s: loaded %d runs, %d agents in %.1f s\n", scalar
        localtime, $runs, $agents,
        $load;

    my $get = sub {
        my ($path) = @_;
        my $r = $t->req(GET => $path, token => $b->{token});
        die "$path: $r->{status} $r->{body}\n" if $r->{status} != 200;
        return $r->{json};
    };

    my $page1 = $get->('/v1/agents?limit=20');
    my $cursor = $page1->{next_cursor};
    my $deep_page = int($agents / 20 / 2);
    my $deep_off = int($runs / 2);

    my @lists = (
        ['agents, cursor, first page', '/v1/agents?limit=20'],
        ['agents, cursor, next page', "/v1/agents?limit=20&cursor=$cursor"],
        ['agents, page 1', '/v1/agents?page=1&limit=20'],
        ["agents, deep page (half way)",
         "/v1/agents?page=$deep_page&limit=20"],
        ['agents, status=failed, cursor', '/v1/agents?status=failed&limit=20'],
        ['agents, status=failed, deep page',
         '/v1/agents?status=failed&page=' . int($deep_page / 8) . '&limit=20'],
        ['runs, cursor, first page', '/v1/runs?limit=20'],
        ['runs, offset half way', "/v1/runs?offset=$deep_off&limit=20"],
        ['runs, status=failed, cursor', '/v1/runs?status=failed&limit=20'],
        ['runs, status=failed, offset half way',
         '/v1/runs?status=failed&offset=' . int($deep_off / 8) . '&limit=20'],
        ['runs of one agent (app route)', "/v1/apps/$heavy/runs?limit=20"],
    );

    my $fc;
    my $req = sub {
        my ($want, $method, $path, %o) = @_;
        my ($st, $body) = fast($t, \$fc, $method, $path,
                               token => $b->{token}, %o);
        die "$method $path: $st $body\n" if $st != $want;
    };

    for my $l (@lists) {
        my ($name, $path) = @$l;
        $res{$name} = measure($SAMPLES, sub { $req->(200, GET => $path) });
    }

    # run creation: ordinary agents, one each (no executor: they fail soon)
    my @ids = map { $_->{id} }
              @{$get->('/v1/agents?order=asc&limit=100&page=2')->{data}};
    $res{'run creation'} = measure($SAMPLES, sub {
        $req->(202, POST => '/v1/runs',
               json => { agentId => $ids[$_[0] % @ids] });
    });

    # deleting ordinary agents (ten runs each, some waiting)
    my @doomed = map { $_->{id} }
                 @{$get->('/v1/agents?order=asc&limit=100&page=3')->{data}},
                 @{$get->('/v1/agents?order=asc&limit=100&page=4')->{data}};
    my $n = @doomed > 110 ? 100 : @doomed - 10;
    $res{'agent delete'} = measure($n, sub {
        $req->(200, DELETE => '/v1/agents/' . shift @doomed);
    });

    # small writes on fresh connections, idle and while the heavy agent's
    # runs are cancelled
    my $probe = sub {
        my $pc;
        my $t1 = time;
        my ($st, $body) = fast($t, \$pc, PATCH => "/v1/agents/$ids[0]",
                               token => $b->{token},
                               json => { description => 'probe ' . rand() });
        die "probe: $st $body\n" if $st != 200;
        return (time - $t1) * 1000;
    };
    my @idle = map { $probe->() } 1 .. $SAMPLES;
    $res{'small write, idle'} = [pct(50, @idle), pct(99, @idle),
                                 pct(100, @idle)];

    my $waiting_now = sub {
        my $wc;
        my ($st, $body) = fast($t, \$wc, GET => '/v1/runs?status='
                               . 'awaiting_input&offset=0&limit=1',
                               token => $b->{token});
        die "waiting: $st $body\n" if $st != 200;
        return $body =~ /"total":(\d+)/ ? $1 : die "no total: $body\n";
    };
    my $w0 = $waiting_now->();
    $t0 = time;
    $req->(200, DELETE => "/v1/agents/$heavy");
    my $del = (time - $t0) * 1000;

    my (@busy, $left);
    while (1) {
        push @busy, $probe->();
        $left = $waiting_now->();
        last if $left <= $w0 - $waiting || time - $t0 > 600;
    }
    my $reap = time - $t0;
    $res{"delete agent with $waiting waiting runs"} = [$del, $del, $del];
    $res{'small write, during its background cancel'} =
        [pct(50, @busy), pct(99, @busy), pct(100, @busy)];

    # the counters and chunks still agree with every index
    my ($rc, $out, $err) = $t->cli_status('index', 'check');
    chomp $out;
    print STDERR "index check: ", ($rc ? "FAILED\n$err" : "$out indexes, "
                                   . "no errors\n");

    $t->finish;

    return (\%res, { load => $load, reap => $reap, waiting => $waiting,
                     probes => scalar @busy });
}

Test::More::plan('no_plan');

my ($small, $si) = scenario(1_000, 1_000);
my ($large, $li) = scenario($RUNS, $AGENTS);

printf "%-44s | %-19s | %-19s | %s\n", 'ms: p50 / p99 (max)',
    '1,000 runs / agents', sprintf('%d runs / %d agents', $RUNS, $AGENTS),
    'p50 ratio';
for my $k (sort keys %$small) {
    my ($s, $l) = ($small->{$k}, $large->{$k} // $large->{
        (grep { /^delete agent with/ } keys %$large)[0] });
    next unless $l;
    my $name = $k =~ /^delete agent with/ ? 'delete agent with a tenth of '
                                            . 'the runs waiting' : $k;
    printf "%-44s | %5.2f / %5.2f (%5.1f) | %5.2f / %5.2f (%5.1f) | %.2f\n",
        $name, @$s, @$l, $s->[0] ? $l->[0] / $s->[0] : 0;
}
printf "load: %.1f s / %.1f s; background cancel of %d / %d runs: "
       . "%.2f s / %.2f s (%d / %d probes)\n",
    $si->{load}, $li->{load}, $si->{waiting}, $li->{waiting}, $si->{reap},
    $li->{reap}, $si->{probes}, $li->{probes};
