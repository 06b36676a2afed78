#!/usr/bin/perl
# Indexes, counters and chunk counts (docs/architecture.md, "Lists that
# do not grow with the store"): every filter, page and offset of agents
# and runs lists, for every kind of key, against the plain walk of the
# collection; after inserts, status changes and deletes; after an agent
# with many active runs is deleted (its runs cancelled in the background);
# and after a store without indexes is indexed at start.  Sizes are past
# two chunks (512 to 1024 items), so skips cross chunks and chunks split.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;

my $t = CreorTest->new(store_opts => 'sync=off');
my $A = $t->bootstrap(name => 'Indexed');
my $TOK = $A->{token};

my $P1 = $t->cli('project', 'create', '--org', $A->{org}, 'one');
my $P2 = $t->cli('project', 'create', '--org', $A->{org}, 'two');

# 1100 agents and 4000 runs of P1; the last 1300 runs all wait for input
# and belong to the first agent
my $HEAVY = $t->cli('bench-load', '--org', $A->{org}, '--project', $P1,
                    '--agents', 1100, '--runs', 4000, '--waiting', 1300);
like($HEAVY, qr/^agent_/, 'bench-load: the first agent');

api_use($t, token => $TOK, keepalive => 1);

# every item of a list in creation order, by cursor walk
sub walk {
    my ($path, $tok) = @_;
    my $sep = $path =~ /\?/ ? '&' : '?';
    my $all = list_all("$path${sep}order=asc", token => $tok // $TOK)
        // die "walk $path: a page did not answer 200\n";
    return @$all;
}

# A few agents and runs of P2 made through the API, with a key bound to
# P2 and one bound to one of its agents
my @P2AGENTS = map {
    api(POST => '/v1/agents', headers => { 'X-Project-Id' => $P2 },
        json => { name => "p2 $_", model => 'openai/gpt-4o' })->{json}{id}
} 1 .. 3;
for my $i (1 .. 7) {
    my $r = api(POST => '/v1/runs',
                json => { agentId => $P2AGENTS[$i % 3],
                          inputs => { n => $i } });
    is($r->{status}, 202, "p2 run $i") or diag($r->{body});
}
my $BOUND = $t->cli('key', 'create', '--org', $A->{org}, '--project', $P2,
                    '--role', 'admin', '--name', 'bound');
my $APP = $t->cli('key', 'create', '--org', $A->{org}, '--project', $P2,
                  '--app', $P2AGENTS[1], '--role', 'user', '--name', 'app');

# runs without an executor fail at once: wait until none is active
sub settle {
    for (1 .. 400) {
        my $r = api(GET => '/v1/runs?status=queued&offset=0&limit=1');
        my $q = $r->{json}{total} // -1;
        $r = api(GET => '/v1/runs?status=running&offset=0&limit=1');
        return if $q == 0 && ($r->{json}{total} // -1) == 0;
        sleep 0.05;
    }
    fail('runs settle');
}

my %RUNSTATUS = map { $_ => $_ } qw(queued running awaiting_input completed
                                    failed cancelled);

sub slice {
    my ($list, $from, $n) = @_;
    return [] if $from >= @$list;
    my $to = $from + $n - 1;
    $to = $#$list if $to > $#$list;
    return [@$list[$from .. $to]];
}

sub ids { [map { $_->{id} } @_] }

# Every list mode against the oracle: the collection walked unfiltered
sub check_all {
    my ($when) = @_;
    my @runs = walk('/v1/runs');
    my @agents = walk('/v1/agents');

    my @kinds = (
        [org => $TOK, sub { 1 }, sub { 1 }],
        [project => $BOUND, sub { $_[0]{projectId} eq $P2 },
                            sub { $_[0]{projectId} eq $P2 }],
        [app => $APP, sub { $_[0]{agentId} eq $P2AGENTS[1] },
                      sub { $_[0]{id} eq $P2AGENTS[1] }],
    );

    for my $k (@kinds) {
        my ($kind, $tok, $seesrun, $seesagent) = @$k;

        # runs: offset mode, every status, both orders, across chunks
        for my $status (undef, qw(completed awaiting_input failed cancelled
                                  pending)) {
            my $want = $status ? ($status eq 'pending' ? 'queued' : $status)
                               : undef;
            my @exp = grep { $seesrun->($_)
                             && (!$want || $_->{status} eq $want) } @runs;
            my $n = @exp;
            my $name = "$when: $kind runs" . ($status ? " $status" : '');
            my $q = $status ? "status=$status&" : '';

            is_deeply(ids(walk("/v1/runs?$q" =~ s/&$//r, $tok)), ids(@exp),
                      "$name: cursor walk");

            for my $order (qw(asc desc)) {
                my @o = $order eq 'asc' ? @exp : reverse @exp;
                for my $off (0, 1, 511, 512, 1023, 1024, 1500, $n - 1,
                             $n, $n + 5) {
                    next if $off < 0;
                    my $r = api(GET => "/v1/runs?${q}offset=$off&limit=7"
                                . "&order=$order", token => $tok // $TOK);
                    my $ok = is_deeply(
                        [ids(@{$r->{json}{data} // []}), $r->{json}{total},
                         $r->{json}{has_more} ? 1 : 0],
                        [ids(@{slice(\@o, $off, 7)}), $n,
                         $off + 7 < $n ? 1 : 0],
                        "$name: offset $off $order");
                    diag($r->{body}) unless $ok;
                }
            }
        }

        # agents: page mode, every status, both orders
        for my $status (undef, qw(idle running completed failed)) {
            my @exp = grep { $seesagent->($_)
                             && (!$status || $_->{status} eq $status) }
                      @agents;
            my $n = @exp;
            my $name = "$when: $kind agents" . ($status ? " $status" : '');
            my $q = $status ? "status=$status&" : '';
            for my $order (qw(asc desc)) {
                my @o = $order eq 'asc' ? @exp : reverse @exp;
                my $last = int(($n + 49) / 50) || 1;
                for my $page (1, 2, 11, 12, $last, $last + 1) {
                    my $r = api(GET => "/v1/agents?${q}page=$page&limit=50"
                                . "&order=$order", token => $tok // $TOK);
                    my $m = $r->{json}{meta} // {};
                    my $ok = is_deeply(
                        [ids(@{$r->{json}{data} // []}), $m->{total},
                         $m->{totalPages}],
                        [ids(@{slice(\@o, ($page - 1) * 50, 50)}), $n,
                         int(($n + 49) / 50)],
                        "$name: page $page $order");
                    diag($r->{body}) unless $ok;
                }
            }
        }

        # the project filter of agents
        my @exp = grep { $seesagent->($_) && $_->{projectId} eq $P1 } @agents;
        my $r = api(GET => "/v1/agents?projectId=$P1&page=3&limit=100",
                    token => $tok // $TOK);
        is_deeply([ids(@{$r->{json}{data} // []}), $r->{json}{meta}{total}],
                  [ids(@{slice([reverse @exp], 200, 100)}), scalar @exp],
                  "$when: $kind agents of P1, page 3");
    }

    # counters and chunks against every index, by a walk of each
    my ($rc, $out, $err) = $t->cli_status('index', 'check');
    is($rc, 0, "$when: creor index check") or diag($err);
    cmp_ok($out, '>', 20, "$when: indexes checked");

    return (\@runs, \@agents);
}

my ($runs, $agents) = check_all('loaded');
is(scalar @$runs, 4007, 'loaded: 4007 runs');
is(scalar @$agents, 1103, 'loaded: 1103 agents');

###########################################################################
# SPEC 5 in an index: agents join and leave the failed index (a run of a
# completed agent fails at once without an executor; deletes) between the
# pages of a walk of it; no item repeats, none that stayed is missed

{
    my @failed = grep { $_->{status} eq 'failed' } @$agents;
    my @completed = grep { $_->{status} eq 'completed' } @$agents;
    my (%seen, $dup, $cursor, %gone);
    my $pages = 0;
    for my $order (qw(desc)) {
        for (1 .. 100) {
            my $r = api(GET => "/v1/agents?status=failed&limit=20"
                        . "&order=$order" . ($cursor ? "&cursor=$cursor" : ''));
            last if $r->{status} != 200;
            $dup++ for grep { $seen{$_->{id}}++ } @{$r->{json}{data}};
            $pages++;
            # one joins anywhere in the index, one that stayed leaves
            my $in = shift @completed;
            api(POST => '/v1/runs', json => { agentId => $in->{id} });
            my $out = $failed[-1 - $pages * 3];
            $gone{$out->{id}} = 1
                if api(DELETE => "/v1/agents/$out->{id}")->{status} == 200;
            $cursor = $r->{json}{next_cursor} or last;
        }
    }
    cmp_ok($pages, '>', 3, 'failed index walked in several pages');
    ok(!$dup, 'walk under changes: no agent twice');
    is_deeply([grep { !$seen{$_->{id}} && !$gone{$_->{id}} } @failed], [],
              'walk under changes: every agent that stayed is seen');
    settle();
}

###########################################################################
# Inserts, status changes and deletes keep the counters

for my $i (0 .. 39) {
    my $id = $agents->[100 + $i * 3]{id};
    is(api(DELETE => "/v1/agents/$id")->{status}, 200, "delete agent $i");
}
for my $i (0 .. 29) {
    my $r = api(POST => '/v1/agents', headers => { 'X-Project-Id' => $P1 },
                json => { name => "new $i", model => 'openai/gpt-4o',
                          ($i % 2 ? (prompt => 'go') : ()) });
    is($r->{status}, 201, "new agent $i") or diag($r->{body});
}
for my $i (0 .. 19) {
    my $r = api(POST => '/v1/runs',
                json => { agentId => $agents->[500 + $i]{id} });
    is($r->{status}, 202, "new run $i") or diag($r->{body});
}
settle();
check_all('changed');

###########################################################################
# An agent with 1300 waiting runs: deleted at once, its runs cancelled by
# the background steps, a batch per commit

my @heavy = grep { $_->{agentId} eq $HEAVY
                   && $_->{status} eq 'awaiting_input' } @$runs;
cmp_ok(scalar @heavy, '>=', 1300, 'the first agent has 1300 waiting runs');
my $before = api(GET => '/v1/runs?status=cancelled&offset=0&limit=1')
    ->{json}{total};
is(api(DELETE => "/v1/agents/$HEAVY")->{status}, 200, 'heavy agent deleted');
is(api(GET => "/v1/agents/$HEAVY")->{status}, 404, 'heavy agent: gone');

my $cancelled;
for (1 .. 600) {
    $cancelled = api(GET => '/v1/runs?status=cancelled&offset=0&limit=1')
        ->{json}{total};
    last if $cancelled == $before + @heavy;
    sleep 0.05;
}
is($cancelled, $before + @heavy, 'every waiting run of it is cancelled');
my %st = map { $_->{id} => $_->{status} } walk('/v1/runs');
is(scalar(grep { $st{$_->{id}} ne 'cancelled' } @heavy), 0,
   'each of them, by id');
check_all('heavy deleted');

###########################################################################
# A store without indexes (an older version's) is indexed at start

$t->stop;
$t->cli('index', 'drop');
$t->start;
api_use($t, token => $TOK, keepalive => 1);
like($t->error_log_text, qr/creor_store: indexed \d+ records/,
     'start: the store is indexed');
check_all('reindexed');
is($t->cli('index', 'rebuild') > 5000, 1, 'creor index rebuild');
check_all('rebuilt');

$t->finish;
done_testing;
