#!/usr/bin/perl
# A key never mints or manages a key wider than itself (SPEC 4.2), and an
# idempotent replay never crosses credentials (SPEC 6): issue 7, defects 3
# and 4.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi;

my $t = CreorTest->new(store_opts => 'sync=off');
my $b = $t->bootstrap(name => 'Binding Org');
my $ADMIN = $b->{token};

api_use($t, token => $ADMIN);

###########################################################################
# Setup: two projects, agents, and keys of every binding

my %P = map { $_ => api(POST => '/v1/projects', json => { name => $_ })
                        ->{json}{id} } qw(P1 P2);
my %AG;
for ([AG1 => 'P1'], [AG2 => 'P1'], [AG3 => 'P2']) {
    my ($n, $p) = @$_;
    $AG{$n} = api(POST => '/v1/agents', headers => { 'X-Project-Id' => $P{$p} },
                  json => { name => $n, model => 'a/b' })->{json}{id};
}
ok($P{P1} && $P{P2} && $AG{AG1} && $AG{AG2} && $AG{AG3}, 'setup: projects, agents');

# name => binding; every key is made by the org admin
my %K;
for ([APP_ADMIN  => { role => 'admin', appId => $AG{AG1} }],
     [PROJ_ADMIN => { role => 'admin', projectId => $P{P1} }],
     [ORG_USER   => { role => 'user' }],
     [P1_USER    => { role => 'user', projectId => $P{P1} }],
     [P2_USER    => { role => 'user', projectId => $P{P2} }],
     [AG1_USER   => { role => 'user', appId => $AG{AG1} }],
     [AG2_USER   => { role => 'user', appId => $AG{AG2} }]) {
    my ($n, $body) = @$_;
    my $r = api(POST => '/v1/api-keys', json => { name => $n, %$body });
    is($r->{status}, 201, "setup: key $n") or diag($r->{body});
    $K{$n} = $r->{json};
}

###########################################################################
# Defect 3: a replay is for the credential that made the response

{
    my $key  = 'cross-credential-' . int(rand(1e9));
    my $body = { name => 'minted', role => 'admin' };
    my $r1 = api(POST => '/v1/api-keys', json => $body,
                 headers => { 'Idempotency-Key' => $key });
    is($r1->{status}, 201, 'org admin mints an admin key') or diag($r1->{body});
    is($r1->{json}{projectId}, undef, '... unbound');

    my $r2 = api(POST => '/v1/api-keys', json => $body,
                 token => $K{PROJ_ADMIN}{token},
                 headers => { 'Idempotency-Key' => $key });
    is($r2->{status}, 201, 'project admin, same key and body: its own 201')
        or diag($r2->{body});
    ok(!defined $r2->{headers}{'idempotent-replayed'},
       '... not a replay of the org admin\'s answer');
    isnt($r2->{json}{token} // '', $r1->{json}{token},
         '... not the org admin\'s token');
    is($r2->{json}{projectId}, $P{P1}, '... a key of its own project');

    my $r3 = api(POST => '/v1/api-keys', json => $body,
                 headers => { 'Idempotency-Key' => $key });
    is($r3->{headers}{'idempotent-replayed'}, 'true',
       'the org admin still replays its own answer');
    is($r3->{body}, $r1->{body}, '... byte for byte');
}

###########################################################################
# Defect 4: minting.  [who, body, status, code, param, name]

my @mint = (
    [APP_ADMIN => {},                               201, undef, undef,
     'app key: no binding given inherits its app'],
    [APP_ADMIN => { appId => $AG{AG1} },             201, undef, undef,
     'app key: its own app'],
    [APP_ADMIN => { appId => undef },                403, 'PERMISSION_DENIED',
     'appId', 'app key: appId null (unbound) is wider'],
    [APP_ADMIN => { appId => $AG{AG2} },             403, 'APP_SCOPE_RESTRICTED',
     'appId', 'app key: another app'],
    [APP_ADMIN => { projectId => $P{P1} },           201, undef, undef,
     'app key: the project of its app (narrower)'],
    [APP_ADMIN => { projectId => $P{P2} },           404, 'NOT_FOUND',
     'appId', 'app key: a project its app is not in'],
    [PROJ_ADMIN => {},                              201, undef, undef,
     'project key: no binding given inherits its project'],
    [PROJ_ADMIN => { projectId => $P{P1} },         201, undef, undef,
     'project key: its own project'],
    [PROJ_ADMIN => { appId => $AG{AG2} },           201, undef, undef,
     'project key: an app of its project (narrower)'],
    [PROJ_ADMIN => { projectId => undef },          403, 'PERMISSION_DENIED',
     'projectId', 'project key: projectId null (unbound) is wider'],
    [PROJ_ADMIN => { projectId => $P{P2} },         403, 'PERMISSION_DENIED',
     'projectId', 'project key: another project'],
    [PROJ_ADMIN => { appId => $AG{AG3} },           404, 'NOT_FOUND',
     'appId', 'project key: an app of another project is not found'],
    [ORG_USER  => {},                               403, 'PERMISSION_DENIED',
     undef, 'user key: cannot mint'],
);
for my $c (@mint) {
    my ($who, $body, $status, $code, $param, $name) = @$c;
    my $r = api(POST => '/v1/api-keys', token => $K{$who}{token},
                json => { name => "mint-$who", role => 'user', %$body });
    if ($status == 201) {
        is($r->{status}, 201, "$name: 201") or diag($r->{body});
        my $k = $r->{json} // {};
        is($k->{projectId}, $body->{projectId} // $K{$who}{projectId}
                            // ($body->{appId} ? $P{P1} : undef),
           "$name: projectId") if $who eq 'PROJ_ADMIN';
        is($k->{appId}, $body->{appId} // $K{$who}{appId}, "$name: appId");
        next;
    }
    err_is($r, $status, $code, $param, $name);
}

###########################################################################
# Defect 4: managing.  A bound key reads, rotates and revokes only keys
# within its binding; the others are not found.

my %within = (
    APP_ADMIN  => [qw(APP_ADMIN AG1_USER)],
    PROJ_ADMIN => [qw(PROJ_ADMIN P1_USER)],
);
for my $who (sort keys %within) {
    my %in = map { $_ => 1 } @{$within{$who}};
    for my $target (sort keys %K) {
        next if $in{$target};
        my $id = $K{$target}{id};
        for my $op ([GET => "/v1/api-keys/$id"],
                    [POST => "/v1/api-keys/$id/rotate", {}],
                    [DELETE => "/v1/api-keys/$id"]) {
            my ($m, $p, $json) = @$op;
            err_is(api($m => $p, token => $K{$who}{token},
                       (defined $json ? (json => $json) : ())),
                   404, 'NOT_FOUND', undef, "$who: $m key $target");
        }
    }
    my $r = api(GET => "/v1/api-keys/$K{$within{$who}[1]}{id}",
                token => $K{$who}{token});
    is($r->{status}, 200, "$who: GET a key within its binding");

    $r = api(GET => '/v1/api-keys?limit=100', token => $K{$who}{token});
    is($r->{status}, 200, "$who: list");
    my %seen = map { $_ => 1 } @{ids_of($r)};
    my @outside = grep { $seen{$K{$_}{id}} && !$in{$_} } sort keys %K;
    is_deeply(\@outside, [], "$who: list has no key outside its binding");
    ok($seen{$K{$within{$who}[1]}{id}}, "$who: list has the key within");
}

# none of the keys outside was revoked or rotated
for my $n (qw(ORG_USER P2_USER AG2_USER)) {
    my $r = api(GET => '/v1/projects', token => $K{$n}{token});
    is($r->{status}, 200, "$n still works with its first token");
}

# an app key cannot reach another agent through a key it minted
{
    my $r = api(POST => '/v1/api-keys', token => $K{APP_ADMIN}{token},
                json => { name => 'escape', role => 'user', appId => undef });
    my $tok = $r->{json} && $r->{json}{token};
    ok(!$tok, 'app key: no unbound key minted');
    if ($tok) {
        $r = api(GET => "/v1/agents/$AG{AG2}", token => $tok);
        isnt($r->{status}, 200, 'the minted key cannot read another agent');
    }
}

$t->finish;
done_testing;
