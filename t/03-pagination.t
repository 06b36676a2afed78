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

# /pid tells which worker serves a connection (for the same-millisecond
# creation order check at the end).
my $t = CreorTest->new(store_opts    => 'sync=off',
                       server_config => 'location = /pid { return 200 "$pid"; }');
my $A = $t->bootstrap(name => 'Pager A');
my $B = $t->bootstrap(name => 'Pager B');

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

sub get {
    my ($path, %o) = @_;
    return $t->req(GET => $path, token => $o{token} // $A->{token},
                   ($o{headers} ? (headers => $o{headers}) : ()));
}

# Asserts a 400 error with the given code and param.
sub err_is {
    my ($r, $status, $code, $param, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $e = ($r->{json} && ref $r->{json} eq 'HASH') ? $r->{json}{error} : undef;
    is($r->{status}, $status, "$name: status $status")
        or diag($r->{body});
    is($e && $e->{code}, $code, "$name: code $code");
    is($e && $e->{param}, $param, "$name: param " . ($param // 'undef'))
        if @_ >= 4 && defined $param;
}

# Fetch one page; returns the decoded list (or undef) and the response.
sub page {
    my ($route, %q) = @_;
    my $token = delete $q{token} // $A->{token};
    my $r = get($route . qs(%q), token => $token);
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

for my $bad ('0', '101', '-1', 'abc', '') {
    err_is(get("/v1/agents?limit=$bad"), 400, 'VALIDATION_ERROR', 'limit',
           "limit='$bad'");
}
err_is(get('/v1/agents?order=sideways'), 400, 'VALIDATION_ERROR', 'order',
       'order=sideways');
err_is(get('/v1/projects?limit=0'), 400, 'VALIDATION_ERROR', 'limit',
       'projects limit=0');
err_is(get('/v1/api-keys?limit=101'), 400, 'VALIDATION_ERROR', 'limit',
       'api-keys limit=101');
err_is(get('/v1/api-keys?order=up'), 400, 'VALIDATION_ERROR', 'order',
       'api-keys order=up');

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

err_is(get('/v1/agents' . qs(limit => 10, cursor => $cur, order => 'asc')),
       400, 'INVALID_CURSOR', 'cursor', 'desc cursor with order=asc');
err_is(get('/v1/agents' . qs(limit => 10, cursor => $cur, status => 'idle')),
       400, 'INVALID_CURSOR', 'cursor', 'cursor with added status filter');
err_is(get('/v1/agents' . qs(limit => 10, cursor => $cur, projectId => $P1)),
       400, 'INVALID_CURSOR', 'cursor', 'cursor with added projectId filter');
err_is(get('/v1/agents' . qs(limit => 10, cursor => $cur_proj)),
       400, 'INVALID_CURSOR', 'cursor', 'projectId cursor without the filter');
err_is(get('/v1/agents' . qs(limit => 10, cursor => $cur_proj, projectId => $P2)),
       400, 'INVALID_CURSOR', 'cursor', 'projectId cursor with another project');
err_is(get('/v1/projects' . qs(limit => 10, cursor => $cur)),
       400, 'INVALID_CURSOR', 'cursor', 'agents cursor on /v1/projects');
err_is(get('/v1/api-keys' . qs(limit => 10, cursor => $cur)),
       400, 'INVALID_CURSOR', 'cursor', 'agents cursor on /v1/api-keys');
err_is(get('/v1/agents' . qs(limit => 10, cursor => $cur), token => $B->{token}),
       400, 'INVALID_CURSOR', 'cursor', "another org's cursor");

# The proper projectId-filtered continuation still works.
{
    my ($l, $r) = page('/v1/agents', limit => 10, projectId => $P1,
                       cursor => $cur_proj);
    is($r->{status}, 200, 'projectId cursor with its filter: 200');
}

# Tampered: change one character in several places.
{
    my @pos = grep { $_ >= 4 } (4, int(length($cur) / 2), length($cur) - 1);
    for my $p (@pos) {
        my $bad = $cur;
        my $c = substr($bad, $p, 1);
        substr($bad, $p, 1) = $c eq 'A' ? 'B' : 'A';
        err_is(get('/v1/agents' . qs(limit => 10, cursor => $bad)),
               400, 'INVALID_CURSOR', 'cursor', "cursor tampered at $p");
    }
    err_is(get('/v1/agents' . qs(limit => 10, cursor => $cur . 'A')),
           400, 'INVALID_CURSOR', 'cursor', 'cursor with extra char');
    err_is(get('/v1/agents' . qs(limit => 10, cursor => substr($cur, 0, -1))),
           400, 'INVALID_CURSOR', 'cursor', 'truncated cursor');
}
for my $made ('cur_', 'cur_' . ('A' x 40), 'garbage', 'cur_01ARZ3NDEKTSV4RRFFQ69G5FAV',
              $created[3]) {
    err_is(get('/v1/agents' . qs(limit => 10, cursor => $made)),
           400, 'INVALID_CURSOR', 'cursor', "made-up cursor '$made'");
}
err_is(get('/v1/agents?limit=10&cursor='), 400, 'INVALID_CURSOR', 'cursor',
       'empty cursor');

# An asc cursor is also bound to asc.
{
    my ($l) = page('/v1/agents', limit => 10, order => 'asc');
    my $ac = $l->{next_cursor};
    err_is(get('/v1/agents' . qs(limit => 10, cursor => $ac)),
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
# Concurrent changes during a desc walk

{
    my @all = reverse @created;     # desc order as listed
    my ($l, $r) = page('/v1/agents', limit => 5);
    my @seen = map { $_->{id} } @{$l->{data}};
    is_deeply(\@seen, [@all[0 .. 4]], 'desc concurrent: first page');
    my $c = $l->{next_cursor};

    # delete one not yet seen, and the anchor (last seen) item
    my $gone = $all[12];
    my $anchor = $all[4];
    for my $id ($gone, $anchor) {
        my $d = $t->req(DELETE => "/v1/agents/$id", token => $A->{token});
        is($d->{status}, 200, "desc concurrent: delete $id");
    }
    my @new = map { create_agent($P1, "late-desc-$_") } 1 .. 3;

    while (defined $c) {
        ($l, $r) = page('/v1/agents', limit => 5, cursor => $c);
        is($r->{status}, 200, 'desc concurrent: next page 200') or last;
        push @seen, map { $_->{id} } @{$l->{data}};
        $c = $l->{next_cursor};
        last unless $l->{has_more};
    }
    my %seen; $seen{$_}++ for @seen;
    is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'desc concurrent: no repeats');
    my @survivors = grep { $_ ne $gone && $_ ne $anchor } @all;
    is_deeply([grep { $_ ne $anchor } @seen], \@survivors,
              'desc concurrent: every surviving item once, in order');
    ok(!$seen{$gone}, 'desc concurrent: deleted unseen item not returned');
    ok(!(grep { $seen{$_} } @new), 'desc concurrent: newer items not in desc walk');
    @created = sort((grep { $_ ne $gone && $_ ne $anchor } @created), @new);
}

###########################################################################
# Concurrent changes during an asc walk

{
    my @all = @created;
    is(scalar @all, 26, 'asc concurrent: 26 agents now');
    my ($l, $r) = page('/v1/agents', limit => 5, order => 'asc');
    my @seen = map { $_->{id} } @{$l->{data}};
    is_deeply(\@seen, [@all[0 .. 4]], 'asc concurrent: first page');
    my $c = $l->{next_cursor};

    my $gone = $all[15];
    my $anchor = $all[4];
    for my $id ($gone, $anchor) {
        my $d = $t->req(DELETE => "/v1/agents/$id", token => $A->{token});
        is($d->{status}, 200, "asc concurrent: delete $id");
    }
    my @new = sort map { create_agent($P1, "late-asc-$_") } 1 .. 3;

    # same cursor twice gives the same page, even after changes
    my ($x1) = page('/v1/agents', limit => 5, order => 'asc', cursor => $c);
    my ($x2) = page('/v1/agents', limit => 5, order => 'asc', cursor => $c);
    is_deeply([map { $_->{id} } @{$x1->{data} // []}],
              [map { $_->{id} } @{$x2->{data} // []}],
              'asc concurrent: same cursor twice, same page');

    my $pages = 1;
    while (defined $c) {
        ($l, $r) = page('/v1/agents', limit => 5, order => 'asc', cursor => $c);
        is($r->{status}, 200, 'asc concurrent: next page 200') or last;
        push @seen, map { $_->{id} } @{$l->{data}};
        $pages++;
        $c = $l->{next_cursor};
        last unless $l->{has_more};
        last if $pages > 50;
    }
    my %seen; $seen{$_}++ for @seen;
    is(scalar(grep { $seen{$_} > 1 } keys %seen), 0, 'asc concurrent: no repeats');
    my @want = ((grep { $_ ne $gone } @all), @new);
    is_deeply(\@seen, \@want,
              'asc concurrent: survivors once in order, new items at the end');
    ok(!$seen{$gone}, 'asc concurrent: deleted unseen item not returned');
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
    err_is(get('/v1/projects' . qs(limit => 1, cursor => $kp->{next_cursor})),
           400, 'INVALID_CURSOR', 'cursor', 'api-keys cursor on /v1/projects');
    err_is(get('/v1/agents' . qs(limit => 1, cursor => $pp->{next_cursor})),
           400, 'INVALID_CURSOR', 'cursor', 'projects cursor on /v1/agents');
    err_is(get('/v1/api-keys' . qs(limit => 1, cursor => $kp->{next_cursor}),
               token => $B->{token}),
           400, 'INVALID_CURSOR', 'cursor', "org A api-keys cursor used by org B");
    err_is(get('/v1/api-keys' . qs(limit => 1, order => 'asc',
                                   cursor => $kp->{next_cursor})),
           400, 'INVALID_CURSOR', 'cursor', 'api-keys desc cursor with asc');
}

# A second org created through the CLI, with its own key, cannot use A's cursors.
my $C = do {
    my $org = $t->cli('org', 'create', 'Pager C');
    my $tok = $t->cli('key', 'create', '--org', $org, '--role', 'admin');
    my ($l) = page('/v1/agents', limit => 2);
    err_is(get('/v1/agents' . qs(limit => 2, cursor => $l->{next_cursor}),
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
