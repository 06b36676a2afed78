#!/usr/bin/perl
# Tenancy: another organization's ids are 404 on every route, project-bound
# keys see only their project, per-app keys only their app, malformed ids
# are 404 JSON.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi;

my $t = CreorTest->new(store_opts => 'sync=off');
api_use($t);

###########################################################################
# Helpers

sub new_org {
    my ($name) = @_;
    my $org = $t->cli('org', 'create', $name);
    my $tok = $t->cli('key', 'create', '--org', $org, '--role', 'admin',
                      '--name', "$name admin");
    like($org, qr/^org_/, "$name created via CLI");
    like($tok, qr/^ck_/, "$name admin key via CLI");
    return { org => $org, token => $tok };
}

sub mk_project {
    my ($o, $name) = @_;
    my $r = $t->req(POST => '/v1/projects', token => $o->{token},
                    json => { name => $name });
    is($r->{status}, 201, "project $name created") or diag($r->{body});
    return $r->{json}{id};
}

sub mk_agent {
    my ($token, $proj, $name) = @_;
    my $r = $t->req(POST => '/v1/agents', token => $token,
                    (defined $proj ? (headers => { 'X-Project-Id' => $proj }) : ()),
                    json => { name => $name, model => 'openai/gpt-4o',
                              settings => { temperature => 0.5 } });
    is($r->{status}, 201, "agent $name created") or diag($r->{body});
    return $r->{json};
}

###########################################################################
# Two orgs; A owns a project, agents and a key

my $A = new_org('Tenant A');
my $B = new_org('Tenant B');

my $PA  = mk_project($A, 'a-main');
my $PA2 = mk_project($A, 'a-second');
my $PB  = mk_project($B, 'b-main');

my $a1 = mk_agent($A->{token}, $PA, 'a-agent-1');
my $a2 = mk_agent($A->{token}, $PA, 'a-agent-2');
my $a3 = mk_agent($A->{token}, $PA2, 'a-agent-3');
my $b1 = mk_agent($B->{token}, $PB, 'b-agent-1');

my $r = $t->req(POST => '/v1/api-keys', token => $A->{token},
                json => { name => 'a-key', role => 'user' });
is($r->{status}, 201, 'A creates an api key') or diag($r->{body});
my $akey = $r->{json};
my $akey_token = $akey->{token};

# Snapshots of A's objects, as A sees them
my %before;
for my $p ("/v1/agents/$a1->{id}", "/v1/agents/$a2->{id}", "/v1/agents/$a3->{id}",
           "/v1/api-keys/$akey->{id}", "/v1/projects/$PA", "/v1/projects/$PA2") {
    my $g = $t->req(GET => $p, token => $A->{token});
    is($g->{status}, 200, "A: GET $p");
    $before{$p} = $g->{json};
}

###########################################################################
# B cannot reach A's ids on any route

my @cross = (
    [GET    => "/v1/agents/$a1->{id}"],
    [PATCH  => "/v1/agents/$a1->{id}", { name => 'hijacked' }],
    [PATCH  => "/v1/agents/$a2->{id}", {}],
    [DELETE => "/v1/agents/$a1->{id}"],
    [GET    => "/v1/agents/$a3->{id}"],
    [GET    => "/v1/api-keys/$akey->{id}"],
    [DELETE => "/v1/api-keys/$akey->{id}"],
    [POST   => "/v1/api-keys/$akey->{id}/rotate", { gracePeriod => 0 }],
    [POST   => "/v1/api-keys/$akey->{id}/rotate", {}],
    [GET    => "/v1/projects/$PA"],
    [GET    => "/v1/projects/$PA2"],
);
for my $c (@cross) {
    my ($m, $p, $body) = @$c;
    my $x = $t->req($m => $p, token => $B->{token},
                    (defined $body ? (json => $body) : ()));
    err_is($x, 404, 'NOT_FOUND', undef, "B: $m $p");
    like($x->{headers}{'content-type'} // '', qr{^application/json}, "B: $m $p is JSON");
    my $s = $x->{json} && ref $x->{json} eq 'HASH' ? $x->{json}{error} : {};
    is($s->{type}, 'not_found', "B: $m $p type not_found") if $s;
}

# Also with the key_<ulid>:<secret> and Basic forms of B's token
{
    my ($ulid, $secret) = $B->{token} =~ /^ck_([0-9A-Za-z]+)_(.+)$/;
    my $x = $t->req(GET => "/v1/agents/$a1->{id}",
                    headers => { Authorization => "Bearer key_$ulid:$secret" });
    err_is($x, 404, 'NOT_FOUND', undef, 'B (key_ form): GET A agent');
}

# B's lists never contain A's objects
{
    my %a_ids = map { $_ => 1 } ($a1->{id}, $a2->{id}, $a3->{id}, $akey->{id},
                                 $PA, $PA2);
    for my $p ('/v1/agents?limit=100', '/v1/agents?limit=100&order=asc',
               '/v1/api-keys?limit=100', '/v1/projects?limit=100',
               '/v1/agents?limit=100&page=1', '/v1/agents?status=idle&limit=100') {
        my $x = $t->req(GET => $p, token => $B->{token});
        is($x->{status}, 200, "B: GET $p");
        my @leak = grep { $a_ids{$_} } @{ids_of($x)};
        is(scalar @leak, 0, "B: $p contains none of A's objects");
    }
    my $x = $t->req(GET => '/v1/agents?limit=100', token => $B->{token});
    is_deeply(ids_of($x), [$b1->{id}], 'B sees exactly its own agent');
    $x = $t->req(GET => '/v1/projects?limit=100', token => $B->{token});
    is_deeply(ids_of($x), [$PB], 'B sees exactly its own project');
    $x = $t->req(GET => '/v1/agents?limit=100&page=1', token => $B->{token});
    is($x->{json} && $x->{json}{meta} && $x->{json}{meta}{total}, 1,
       'B page mode total counts only its own agents');

    # filtering B's agents by A's project reveals nothing
    $x = $t->req(GET => "/v1/agents?projectId=$PA", token => $B->{token});
    ok($x->{status} == 404 || ($x->{status} == 200 && !@{ids_of($x)}),
       "B: GET /v1/agents?projectId=<A's project> is 404 or empty")
        or diag("$x->{status} $x->{body}");
    ok($x->{status} < 500, 'B: projectId filter of A is not 5xx');
}

# B cannot use A's project or agent as context / scope
{
    my $x = $t->req(POST => '/v1/agents', token => $B->{token},
                    headers => { 'X-Project-Id' => $PA },
                    json => { name => 'intruder', model => 'openai/gpt-4o' });
    err_is($x, 404, 'NOT_FOUND', 'projectId', "B: X-Project-Id of A's project");

    $x = $t->req(POST => '/v1/api-keys', token => $B->{token},
                 json => { name => 'intruder', role => 'user', projectId => $PA });
    err_is($x, 404, 'NOT_FOUND', 'projectId', "B: api key with A's projectId");

    $x = $t->req(POST => '/v1/api-keys', token => $B->{token},
                 json => { name => 'intruder', role => 'user', appId => $a1->{id} });
    err_is($x, 404, 'NOT_FOUND', 'appId', "B: api key with A's agent as appId");

    # nothing was created in B
    $x = $t->req(GET => '/v1/api-keys?limit=100', token => $B->{token});
    is(scalar @{ids_of($x)}, 1, 'B still has exactly one key');
    $x = $t->req(GET => '/v1/agents?limit=100', token => $B->{token});
    is(scalar @{ids_of($x)}, 1, 'B still has exactly one agent');
}

# A's objects are unchanged
for my $p (sort keys %before) {
    my $g = $t->req(GET => $p, token => $A->{token});
    is($g->{status}, 200, "A: GET $p after B's attempts");
    is_deeply($g->{json}, $before{$p}, "A: $p unchanged");
}
{
    my $g = $t->req(GET => "/v1/agents/$a1->{id}", token => $akey_token);
    is($g->{status}, 200, "A's created key still works (not rotated/revoked by B)");
    my $x = $t->req(GET => '/v1/agents?limit=100&order=asc', token => $A->{token});
    is_deeply([sort @{ids_of($x)}], [sort $a1->{id}, $a2->{id}, $a3->{id}],
              'A still has its 3 agents');
}

###########################################################################
# Project-bound key

{
    my $bound = $t->cli('key', 'create', '--org', $A->{org}, '--project', $PA,
                        '--role', 'user', '--name', 'bound');
    like($bound, qr/^ck_/, 'project-bound key created');

    my $x = $t->req(GET => '/v1/agents?limit=100&order=asc', token => $bound);
    is($x->{status}, 200, 'bound: list agents');
    is_deeply([sort @{ids_of($x)}], [sort $a1->{id}, $a2->{id}],
              'bound: sees only agents of P1');

    $x = $t->req(GET => "/v1/agents?limit=100&projectId=$PA2", token => $bound);
    ok($x->{status} >= 400 || !@{ids_of($x)},
       'bound: projectId filter of P2 shows nothing') or diag($x->{body});
    ok($x->{status} < 500, 'bound: projectId filter of P2 not 5xx');

    $x = $t->req(GET => "/v1/agents/$a1->{id}", token => $bound);
    is($x->{status}, 200, 'bound: GET P1 agent');
    cases_ok([
        ['bound: GET P2 agent',    GET    => "/v1/agents/$a3->{id}", {}, 404, 'NOT_FOUND'],
        ['bound: PATCH P2 agent',  PATCH  => "/v1/agents/$a3->{id}",
            { json => { name => 'x' } },                              404, 'NOT_FOUND'],
        ['bound: DELETE P2 agent', DELETE => "/v1/agents/$a3->{id}", {}, 404, 'NOT_FOUND'],
        ['bound: GET other project', GET  => "/v1/projects/$PA2",    {}, 404, 'NOT_FOUND'],
    ], token => $bound);
    $x = $t->req(GET => "/v1/projects/$PA", token => $bound);
    is($x->{status}, 200, 'bound: GET own project');
    $x = $t->req(GET => '/v1/projects?limit=100', token => $bound);
    is_deeply(ids_of($x), [$PA], 'bound: project list has only its project');

    $x = $t->req(POST => '/v1/agents', token => $bound,
                 json => { name => 'bound-made', model => 'openai/gpt-4o' });
    is($x->{status}, 201, 'bound: create agent without header') or diag($x->{body});
    is($x->{json}{projectId}, $PA, 'bound: agent goes to its project');
    my $made = $x->{json}{id};

    $x = $t->req(POST => '/v1/agents', token => $bound,
                 headers => { 'X-Project-Id' => $PA },
                 json => { name => 'bound-made-2', model => 'openai/gpt-4o' });
    is($x->{status}, 201, 'bound: X-Project-Id of its own project is fine');
    is($x->{json}{projectId}, $PA, 'bound: same project');

    err_is($t->req(POST => '/v1/agents', token => $bound,
                   headers => { 'X-Project-Id' => $PA2 },
                   json => { name => 'elsewhere', model => 'openai/gpt-4o' }),
           403, 'PERMISSION_DENIED', undef, 'bound: X-Project-Id of P2');

    $x = $t->req(GET => "/v1/agents/$a3->{id}", token => $A->{token});
    is_deeply($x->{json}, $before{"/v1/agents/$a3->{id}"},
              'P2 agent untouched by bound key');
    $x = $t->req(GET => '/v1/agents?limit=100', token => $A->{token},
                 headers => {});
    ok((grep { $_ eq $made } @{ids_of($x)}), 'admin sees the bound key\'s agent');
}

###########################################################################
# Per-app key

{
    my $x = $t->req(POST => '/v1/api-keys', token => $A->{token},
                    json => { name => 'app-key', role => 'user', appId => $a1->{id} });
    is($x->{status}, 201, 'per-app key created') or diag($x->{body});
    is($x->{json}{appId}, $a1->{id}, 'per-app key has appId');
    my $app = $x->{json}{token};

    $x = $t->req(GET => "/v1/agents/$a1->{id}", token => $app);
    is($x->{status}, 200, 'per-app: GET its agent');
    is($x->{json}{id}, $a1->{id}, 'per-app: right agent');
    (my $unknown = $a1->{id}) =~ s/.$/ substr($a1->{id}, -1) eq 'z' ? 'y' : 'z' /e;
    my @APP = (403, 'APP_SCOPE_RESTRICTED');
    cases_ok([
        ['per-app: GET another agent',    GET    => "/v1/agents/$a2->{id}", {}, @APP],
        ['per-app: PATCH another agent',  PATCH  => "/v1/agents/$a2->{id}",
            { json => { name => 'x' } },                                    @APP],
        ['per-app: DELETE another agent', DELETE => "/v1/agents/$a2->{id}", {}, @APP],
        ["per-app: other org's agent is 404", GET => "/v1/agents/$b1->{id}",
            {},                                                404, 'NOT_FOUND'],
        ['per-app: well-formed unknown agent id is 404', GET => "/v1/agents/$unknown",
            {},                                                404, 'NOT_FOUND'],
        ["user key (no app): other org's agent is 404", GET => "/v1/agents/$b1->{id}",
            { token => $akey_token },                          404, 'NOT_FOUND'],
    ], token => $app);

    $x = $t->req(GET => '/v1/agents?limit=100', token => $app);
    is($x->{status}, 200, 'per-app: list');
    is_deeply(ids_of($x), [$a1->{id}], 'per-app: list shows only its agent');
    $x = $t->req(GET => '/v1/agents?limit=100&page=1', token => $app);
    is_deeply(ids_of($x), [$a1->{id}], 'per-app: page mode shows only its agent');

    $x = $t->req(GET => "/v1/agents/$a2->{id}", token => $A->{token});
    is_deeply($x->{json}, $before{"/v1/agents/$a2->{id}"},
              'agent2 untouched by per-app key');
}

###########################################################################
# Malformed ids: 404 JSON, never 5xx

for my $p ('/v1/agents/agent_x', '/v1/agents/%2e%2e%2e',
           '/v1/api-keys/key_%ff', '/v1/api-keys/key_', '/v1/projects/proj_%01',
           '/v1/agents/' . ('a' x 300), "/v1/agents/$a1->{id}x",
           '/v1/agents/' . lc($a1->{id}) . '%20', '/v1/api-keys/%ff%fe',
           "/v1/api-keys/$a1->{id}", "/v1/agents/$akey->{id}",
           "/v1/projects/$a1->{id}") {
    for my $m ('GET', 'DELETE') {
        next if $m eq 'DELETE' && $p =~ m{^/v1/projects/};
        my $x = $t->req($m => $p, token => $A->{token});
        err_is($x, 404, 'NOT_FOUND', undef, "malformed: $m $p");
        like($x->{headers}{'content-type'} // '', qr{^application/json},
             "malformed: $m $p is JSON");
    }
}
# /v1/agents/../.. (also %2F and %2e forms) is resolved by nginx to / before
# the module sees it (outside location /v1/), so only "4xx, not 5xx" holds.
for my $p ('/v1/agents/../..', '/v1/agents/..%2F..', '/v1/agents/%2e%2e/%2e%2e') {
    my $x = $t->req(GET => $p, token => $A->{token});
    ok($x->{status} >= 400 && $x->{status} < 500, "GET $p is 4xx (got $x->{status})");
}
{
    my $x;
    $x = $t->req(GET => '/v1/agents/x/../../agents/agent_x', token => $A->{token});
    err_is($x, 404, 'NOT_FOUND', undef,
           'dot segments resolving into /v1/agents/agent_x');
}

$t->finish;
done_testing;
