#!/usr/bin/perl
# Cursor pagination of /v1/agents, /v1/api-keys and /v1/projects: page
# sizes, order, parameter validation, cursor binding and walks under
# concurrent inserts and deletes.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi;

# /pid tells which worker serves a connection (for the same-millisecond
# creation order check at the end).
my $t = CreorTest->new(store_opts    => 'sync=off',
                       server_config => 'location = /pid { return 200 "$pid"; }');
my $A = $t->bootstrap(name => 'Pager A');
my $B = $t->bootstrap(name => 'Pager B');
api_use($t, token => $A->{token});

###########################################################################
# Helpers

sub esc {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf '%%%02X', ord $1/ge;
    return $s;
}

sub qs {
    my (%q) = @_;
    my @p = map { "$_=" . esc($q{$_}) } sort grep { defined $q{$_} } keys %q;
    return @p ? '?' . join('&', @p) : '';
}

# Fetch one page; returns the decoded list (or undef) and the response.
sub page {
    my ($route, %q) = @_;
    my $token = delete $q{token} // $A->{token};
    my $r = api(GET => $route . qs(%q), token => $token);
    return ($r->{status} == 200 ? $r->{json} : undef, $r);
}

# Walk a route; returns (list of pages as arrays of ids, list of has_more,
# last next_cursor, error response or undef).
sub walk {
    my ($route, %q) = @_;
    my (@pages, @more, $last_cursor);
    my $cursor;
    for (1 .. 200) {
        my ($l, $r) = page($route, %q, (defined $cursor ? (cursor => $cursor) : ()));
        return (\@pages, \@more, undef, $r) unless $l;
        push @pages, [map { $_->{id} } @{$l->{data}}];
        push @more, $l->{has_more} ? 1 : 0;
        $last_cursor = $l->{next_cursor};
        last unless $l->{has_more};
        $cursor = $l->{next_cursor};
        return (\@pages, \@more, $last_cursor, $r) unless defined $cursor;
    }
    return (\@pages, \@more, $last_cursor, undef);
}

sub uniq_count { my %s; $s{$_}++ for @_; return scalar keys %s }

sub create_agent {
    my ($proj, $name) = @_;
    my $r = $t->req(POST => '/v1/agents', token => $A->{token},
                    headers => { 'X-Project-Id' => $proj },
                    json => { name => $name, model => 'openai/gpt-4o' });
    die "create agent $name: $r->{status} $r->{body}" unless $r->{status} == 201;
    return $r->{json}{id};
}

###########################################################################
# Setup: a project and 25 agents in creation order

my $r = $t->req(POST => '/v1/projects', token => $A->{token},
                json => { name => 'pager-main' });
is($r->{status}, 201, 'project created') or diag($r->{body});
my $P1 = $r->{json}{id};
$r = $t->req(POST => '/v1/projects', token => $A->{token},
             json => { name => 'pager-other' });
is($r->{status}, 201, 'second project created');
my $P2 = $r->{json}{id};

# Ids are ULIDs, so creation order == sorted ids; the walks below compare
# against the sorted ids (a separate block checks that listing order really
# is creation order, where creates happen within the same millisecond).
my @created = sort map { create_agent($P1, "agent-$_") } 1 .. 25;
is(uniq_count(@created), 25, '25 distinct agent ids');

###########################################################################
# Full walks

for my $order (undef, 'desc', 'asc') {
    my $label = 'order=' . ($order // 'default');
    my ($pages, $more, $last, $err) =
        walk('/v1/agents', limit => 10, (defined $order ? (order => $order) : ()));
    ok(!$err, "$label: walk without errors") or diag($err->{body});
    is_deeply([map { scalar @$_ } @$pages], [10, 10, 5], "$label: page sizes 10,10,5");
    is_deeply($more, [1, 1, 0], "$label: has_more true,true,false");
    is($last, undef, "$label: next_cursor null on last page");
    my @ids = map { @$_ } @$pages;
    is(uniq_count(@ids), scalar @ids, "$label: no repeats");
    my @want = ($order // 'desc') eq 'asc' ? @created : reverse @created;
    is_deeply(\@ids, \@want, "$label: all 25 in creation order");
}

# The pages carry full agent objects and the list envelope.
{
    my ($l, $r) = page('/v1/agents', limit => 3, order => 'asc');
    is($r->{status}, 200, 'limit=3 asc');
    is($l->{object}, 'list', 'object list');
    is($l->{data}[0]{object}, 'agent', 'items are agents');
    is($l->{data}[0]{id}, $created[0], 'first item is the oldest');
    like($l->{next_cursor} // '', qr/^cur_/, 'cursor is opaque cur_...');
}

# Default limit is 20.
{
    my ($l, $r) = page('/v1/agents');
    is($r->{status}, 200, 'no limit: 200');
    is(scalar @{$l->{data} // []}, 20, 'default limit 20');
    ok($l->{has_more}, 'default limit: has_more');
    is_deeply([map { $_->{id} } @{$l->{data}}], [reverse @created[5 .. 24]],
              'default: newest 20 first');
}

# limit=100 returns everything, limit=1 one.
{
    my ($l) = page('/v1/agents', limit => 100);
    is(scalar @{$l->{data} // []}, 25, 'limit=100 returns all 25');
    ok(!$l->{has_more}, 'limit=100: has_more false');
    is($l->{next_cursor}, undef, 'limit=100: next_cursor null');
    ($l) = page('/v1/agents', limit => 1);
    is(scalar @{$l->{data} // []}, 1, 'limit=1 returns 1');
    ($l) = page('/v1/agents', limit => 25);
    ok($l && !$l->{has_more}, 'limit=25 exactly: has_more false');
    is($l && $l->{next_cursor}, undef, 'limit=25 exactly: next_cursor null');
}

###########################################################################
# Parameter validation

my @INVALID = (400, 'VALIDATION_ERROR');
cases_ok([
    (map { ["limit='$_'", GET => "/v1/agents?limit=$_", {}, @INVALID, 'limit'] }
         '0', '101', '-1', 'abc', ''),
    ['order=sideways',     GET => '/v1/agents?order=sideways', {}, @INVALID, 'order'],
    ['projects limit=0',   GET => '/v1/projects?limit=0',      {}, @INVALID, 'limit'],
    ['api-keys limit=101', GET => '/v1/api-keys?limit=101',    {}, @INVALID, 'limit'],
    ['api-keys order=up',  GET => '/v1/api-keys?order=up',     {}, @INVALID, 'order'],
]);

###########################################################################
# Cursor binding

my ($first_desc) = page('/v1/agents', limit => 10);
my $cur = $first_desc->{next_cursor};
ok(defined $cur, 'got a desc cursor');
my ($first_proj) = page('/v1/agents', limit => 10, projectId => $P1);
my $cur_proj = $first_proj->{next_cursor};
ok(defined $cur_proj, 'got a cursor for projectId filter');

{
    my ($l, $r) = page('/v1/agents', limit => 10, cursor => $cur);
    is($r->{status}, 200, 'cursor reused as issued: 200');
    is_deeply([map { $_->{id} } @{$l->{data}}], [reverse @created[5 .. 14]],
              'second desc page');

    # same cursor twice gives the same page
    my ($l2, $r2) = page('/v1/agents', limit => 10, cursor => $cur);
    is($r2->{status}, 200, 'same cursor again: 200');
    is_deeply([map { $_->{id} } @{$l2->{data}}], [map { $_->{id} } @{$l->{data}}],
              'same cursor twice gives the same page');
    is($l2->{has_more} ? 1 : 0, $l->{has_more} ? 1 : 0, 'same has_more');
}

my @BAD_CURSOR = (400, 'INVALID_CURSOR', 'cursor');
sub agents_qs { '/v1/agents' . qs(limit => 10, @_) }
cases_ok([
    ['desc cursor with order=asc',
        GET => agents_qs(cursor => $cur, order => 'asc'), {}, @BAD_CURSOR],
    ['cursor with added status filter',
        GET => agents_qs(cursor => $cur, status => 'idle'), {}, @BAD_CURSOR],
    ['cursor with added projectId filter',
        GET => agents_qs(cursor => $cur, projectId => $P1), {}, @BAD_CURSOR],
    ['projectId cursor without the filter',
        GET => agents_qs(cursor => $cur_proj), {}, @BAD_CURSOR],
    ['projectId cursor with another project',
        GET => agents_qs(cursor => $cur_proj, projectId => $P2), {}, @BAD_CURSOR],
    ['agents cursor on /v1/projects',
        GET => '/v1/projects' . qs(limit => 10, cursor => $cur), {}, @BAD_CURSOR],
    ['agents cursor on /v1/api-keys',
        GET => '/v1/api-keys' . qs(limit => 10, cursor => $cur), {}, @BAD_CURSOR],
    ["another org's cursor",
        GET => agents_qs(cursor => $cur), {token => $B->{token}}, @BAD_CURSOR],
]);

# The proper projectId-filtered continuation still works.
{
    my ($l, $r) = page('/v1/agents', limit => 10, projectId => $P1,
                       cursor => $cur_proj);
    is($r->{status}, 200, 'projectId cursor with its filter: 200');
}

# Tampered (one character changed in several places), cut, made up.
{
    my @pos = grep { $_ >= 4 } (4, int(length($cur) / 2), length($cur) - 1);
    my %tampered = map {
        my $bad = $cur;
        substr($bad, $_, 1) = substr($bad, $_, 1) eq 'A' ? 'B' : 'A';
        ($_ => $bad);
    } @pos;
    cases_ok([
        (map { ["cursor tampered at $_", GET => agents_qs(cursor => $tampered{$_}),
                {}, @BAD_CURSOR] } @pos),
        ['cursor with extra char', GET => agents_qs(cursor => $cur . 'A'),
            {}, @BAD_CURSOR],
        ['truncated cursor', GET => agents_qs(cursor => substr($cur, 0, -1)),
            {}, @BAD_CURSOR],
        (map { ["made-up cursor '$_'", GET => agents_qs(cursor => $_),
                {}, @BAD_CURSOR] }
             'cur_', 'cur_' . ('A' x 40), 'garbage',
             'cur_01ARZ3NDEKTSV4RRFFQ69G5FAV', $created[3]),
        ['empty cursor', GET => '/v1/agents?limit=10&cursor=', {}, @BAD_CURSOR],
    ]);
}

# An asc cursor is also bound to asc.
{
    my ($l) = page('/v1/agents', limit => 10, order => 'asc');
    my $ac = $l->{next_cursor};
    err_is(api(GET => '/v1/agents' . qs(limit => 10, cursor => $ac)),
           400, 'INVALID_CURSOR', 'cursor', 'asc cursor without order (desc)');
    my ($l2, $r2) = page('/v1/agents', limit => 10, order => 'asc', cursor => $ac);
    is($r2->{status}, 200, 'asc cursor with asc: 200');
    is_deeply([map { $_->{id} } @{$l2->{data} // []}], [@created[10 .. 19]],
              'second asc page');
}

# The cursor of the other org is not usable, and org B sees none of A's.
{
    my ($l, $r) = page('/v1/agents', token => $B->{token}, limit => 10);
    is($r->{status}, 200, 'org B list');
    is(scalar @{$l->{data} // []}, 0, 'org B sees no agents');
    ok(!$l->{has_more}, 'org B: has_more false');
}

###########################################################################
# Concurrent changes during a walk: after the first page of 5, an item not
# yet seen ($all[$gone_at]) and the anchor (the last one seen) are deleted
# and three agents created; $between->($cursor) runs then.  Returns the
# items in walk order before the changes, those seen, the deleted unseen
# one, the anchor, and the new ones.

sub concurrent_walk {
    my ($order, $gone_at, $between) = @_;
    my @all = $order eq 'asc' ? @created : reverse @created;
    my %q = (limit => 5, ($order eq 'asc' ? (order => 'asc') : ()));
    my ($l, $r) = page('/v1/agents', %q);
    my @seen = map { $_->{id} } @{$l->{data}};
    is_deeply(\@seen, [@all[0 .. 4]], "$order concurrent: first page");
    my $c = $l->{next_cursor};

    my ($gone, $anchor) = @all[$gone_at, 4];
    for my $id ($gone, $anchor) {
        my $d = api(DELETE => "/v1/agents/$id");
        is($d->{status}, 200, "$order concurrent: delete $id");
    }
    my @new = sort map { create_agent($P1, "late-$order-$_") } 1 .. 3;
    $between->($c) if $between;

    for (my $pages = 1; defined $c && $pages <= 50; $pages++) {
        ($l, $r) = page('/v1/agents', %q, cursor => $c);
        is($r->{status}, 200, "$order concurrent: next page 200") or last;
        push @seen, map { $_->{id} } @{$l->{data}};
        $c = $l->{next_cursor};
        last unless $l->{has_more};
    }
    my %seen; $seen{$_}++ for @seen;
    is(scalar(grep { $seen{$_} > 1 } keys %seen), 0,
       "$order concurrent: no repeats");
    ok(!$seen{$gone}, "$order concurrent: deleted unseen item not returned");
    return (\@all, \@seen, $gone, $anchor, \@new);
}

{
    my ($all, $seen, $gone, $anchor, $new) = concurrent_walk(desc => 12);
    my @survivors = grep { $_ ne $gone && $_ ne $anchor } @$all;
    is_deeply([grep { $_ ne $anchor } @$seen], \@survivors,
              'desc concurrent: every surviving item once, in order');
    my %seen = map { $_ => 1 } @$seen;
    ok(!(grep { $seen{$_} } @$new), 'desc concurrent: newer items not in desc walk');
    @created = sort((grep { $_ ne $gone && $_ ne $anchor } @created), @$new);
}

{
    is(scalar @created, 26, 'asc concurrent: 26 agents now');
    my ($all, $seen, $gone, $anchor, $new) = concurrent_walk(asc => 15, sub {
        my ($c) = @_;
        # same cursor twice gives the same page, even after changes
        my ($x1) = page('/v1/agents', limit => 5, order => 'asc', cursor => $c);
        my ($x2) = page('/v1/agents', limit => 5, order => 'asc', cursor => $c);
        is_deeply([map { $_->{id} } @{$x1->{data} // []}],
                  [map { $_->{id} } @{$x2->{data} // []}],
                  'asc concurrent: same cursor twice, same page');
    });
    my @want = ((grep { $_ ne $gone } @$all), @$new);
    is_deeply($seen, \@want,
              'asc concurrent: survivors once in order, new items at the end');
}

###########################################################################
# /v1/api-keys and /v1/projects walks with limit=1

{
    my @keys;
    for my $i (1 .. 3) {
        my $k = $t->req(POST => '/v1/api-keys', token => $A->{token},
                        json => { name => "pk-$i", role => 'user' });
        is($k->{status}, 201, "api key $i created") or diag($k->{body});
        push @keys, $k->{json}{id};
    }
    my ($l) = page('/v1/api-keys', limit => 100, order => 'asc');
    my @all = map { $_->{id} } @{$l->{data} // []};
    is(scalar @all, 4, 'org A has 4 keys (boot + 3)');
    is_deeply([@all[1 .. 3]], \@keys, 'keys listed asc in creation order');

    for my $order ('desc', 'asc') {
        my ($pages, $more, $last, $err) =
            walk('/v1/api-keys', limit => 1, order => $order);
        ok(!$err, "api-keys $order walk ok") or diag($err->{body});
        is_deeply([map { scalar @$_ } @$pages], [1, 1, 1, 1],
                  "api-keys $order: 4 pages of 1");
        is_deeply($more, [1, 1, 1, 0], "api-keys $order: has_more");
        is($last, undef, "api-keys $order: last next_cursor null");
        is_deeply([map { @$_ } @$pages],
                  [$order eq 'asc' ? @all : reverse @all],
                  "api-keys $order: all keys once in order");
    }

    my ($pl) = page('/v1/projects', limit => 100, order => 'asc');
    my @projs = map { $_->{id} } @{$pl->{data} // []};
    is_deeply(\@projs, [$P1, $P2], 'projects listed asc');
    for my $order ('desc', 'asc') {
        my ($pages, $more, $last, $err) =
            walk('/v1/projects', limit => 1, order => $order);
        ok(!$err, "projects $order walk ok") or diag($err->{body});
        is_deeply($more, [1, 0], "projects $order: has_more true,false");
        is($last, undef, "projects $order: last next_cursor null");
        is_deeply([map { @$_ } @$pages],
                  [$order eq 'asc' ? @projs : reverse @projs],
                  "projects $order: both once in order");
    }

    # cursors of these routes are bound to them too
    my ($kp) = page('/v1/api-keys', limit => 1);
    my ($pp) = page('/v1/projects', limit => 1);
    err_is(api(GET => '/v1/projects' . qs(limit => 1, cursor => $kp->{next_cursor})),
           400, 'INVALID_CURSOR', 'cursor', 'api-keys cursor on /v1/projects');
    err_is(api(GET => '/v1/agents' . qs(limit => 1, cursor => $pp->{next_cursor})),
           400, 'INVALID_CURSOR', 'cursor', 'projects cursor on /v1/agents');
    err_is(api(GET => '/v1/api-keys' . qs(limit => 1, cursor => $kp->{next_cursor}),
               token => $B->{token}),
           400, 'INVALID_CURSOR', 'cursor', "org A api-keys cursor used by org B");
    err_is(api(GET => '/v1/api-keys' . qs(limit => 1, order => 'asc',
                                   cursor => $kp->{next_cursor})),
           400, 'INVALID_CURSOR', 'cursor', 'api-keys desc cursor with asc');
}

# A second org created through the CLI, with its own key, cannot use A's cursors.
my $C = do {
    my $org = $t->cli('org', 'create', 'Pager C');
    my $tok = $t->cli('key', 'create', '--org', $org, '--role', 'admin');
    my ($l) = page('/v1/agents', limit => 2);
    err_is(api(GET => '/v1/agents' . qs(limit => 2, cursor => $l->{next_cursor}),
               token => $tok),
           400, 'INVALID_CURSOR', 'cursor', 'cursor by CLI-created third org');
    { org => $org, token => $tok };
};

###########################################################################
# Listing order is creation order even for agents created one after the
# other within the same millisecond by different workers: two keep-alive
# connections served by different workers, creates alternate between them
# (each create completes before the next starts), 80 creates in org C.

{
    my $r = $t->req(POST => '/v1/projects', token => $C->{token},
                    json => { name => 'burst' });
    is($r->{status}, 201, 'org C project');
    my $pc = $r->{json}{id};
    my (%by_pid, @spare);
    for (1 .. 50) {
        my $c = $t->conn;
        my $x = $c->req(GET => '/pid');
        if ($x->{status} == 200 && !$by_pid{$x->{body}}) {
            $by_pid{$x->{body}} = $c;
        } else {
            push @spare, $c;
        }
        last if keys %by_pid >= 2;
    }
    $_->close for @spare;
    my @conns = map { $by_pid{$_} } sort keys %by_pid;
    is(scalar @conns, 2, 'two connections on two different workers');
    my @order;
    for my $i (1 .. 80) {
        my $x = $conns[$i % @conns]->req(POST => '/v1/agents', token => $C->{token},
                           headers => { 'X-Project-Id' => $pc },
                           json => { name => "burst-$i", model => 'openai/gpt-4o' });
        last unless $x->{status} == 201;
        push @order, $x->{json}{id};
    }
    $_->close for @conns;
    is(scalar @order, 80, '80 agents created one after the other');
    my ($l) = page('/v1/agents', token => $C->{token}, limit => 100, order => 'asc');
    is_deeply([map { $_->{id} } @{$l->{data} // []}], \@order,
              'asc listing is creation order for same-millisecond creates');
    is_deeply([sort @order], \@order,
              'ids of back-to-back creates increase (monotonic ULIDs)');
}

$t->finish;
done_testing;
