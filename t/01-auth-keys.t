#!/usr/bin/perl
# Authentication forms, API key management (create/get/list/revoke/rotate),
# roles, lastUsedAt, the admin CLI, and X-Request-Id on every response.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MIME::Base64 qw(encode_base64);
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;

my $ULID  = qr/[0-9a-hjkmnp-tv-z]{26}/;
my $TOKEN = qr/^ck_[0-9a-z]{26}_[0-9A-Za-z]{43}$/;
my $TS    = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z$/;

# X-Worker-Pid tells which worker answered a request.
my $t = CreorTest->new(store_opts  => 'sync=off',
                       http_config => 'add_header X-Worker-Pid $pid always;');

my @workers = $t->worker_pids;
is(scalar @workers, 2, 'two workers running');

###########################################################################
# Helpers

my @rid_problems;    # responses without X-Request-Id or with a mismatch
my $nreq = 0;

api_use($t, check => sub {
    my ($r, $method, $path) = @_;
    $nreq++;
    my $rid = $r->{headers}{'x-request-id'};
    if (!defined $rid || $rid !~ /^[0-9a-f]{32}$/) {
        push @rid_problems, "$method $path: X-Request-Id missing/bad ("
                            . ($rid // 'undef') . ")";
    } elsif ($r->{status} >= 400) {
        my $got = ref $r->{json} eq 'HASH' && ref $r->{json}{error} eq 'HASH'
                ? $r->{json}{error}{request_id} : undef;
        push @rid_problems, "$method $path: error request_id "
                            . ($got // 'undef') . " != header $rid"
            unless defined $got && $got eq $rid;
    }
});

sub basic { 'Basic ' . encode_base64($_[0], '') }

sub with_auth { (headers => {Authorization => $_[0]}) }

sub ulid_of { my ($tok) = @_; $tok =~ /^ck_($ULID)_/ ? $1 : undef }
sub secret_of { my ($tok) = @_; $tok =~ /^ck_${ULID}_(.+)$/ ? $1 : undef }

# Send requests on fresh connections until both workers have answered (at
# least $min requests, at most $max).  Returns (\@responses, \%pids).
sub spread {
    my ($min, $max, $method, $path, %o) = @_;
    my (@rs, %pids);
    for my $i (1 .. $max) {
        my $r = api($method, $path, %o);
        push @rs, $r;
        $pids{$r->{headers}{'x-worker-pid'} // '?'}++;
        last if $i >= $min && keys %pids >= 2;
    }
    return (\@rs, \%pids);
}

###########################################################################
# Bootstrap and the three credential forms

my $b = $t->bootstrap(name => 'Auth Org');
my $A = $b->{token};
like($b->{org}, qr/^org_$ULID$/, 'CLI org id');
like($A, $TOKEN, 'CLI token format');
my $admin_key_id = 'key_' . ulid_of($A);

my $r = api(GET => '/v1/api-keys', token => $A);
is($r->{status}, 200, 'Bearer ck_ token accepted');

$r = api(GET => '/v1/api-keys', with_auth(basic("$A:")));
is($r->{status}, 200, 'Basic token: (empty password) accepted');

$r = api(GET => '/v1/api-keys', with_auth("Bearer $admin_key_id:" . secret_of($A)));
is($r->{status}, 200, 'Bearer key_id:secret accepted');

# Case-insensitive scheme name (RFC 7235) is not asserted; only canonical forms.

###########################################################################
# Authentication failures

err_is(api(GET => '/v1/api-keys'), 401, 'AUTH_MISSING_HEADER', undef,
       'no Authorization header');
err_is(api(GET => '/v1/agents'), 401, 'AUTH_MISSING_HEADER', undef,
       'no Authorization header on /v1/agents');

my $other_secret = secret_of($A);
substr($other_secret, 0, 1) = substr($other_secret, 0, 1) eq 'A' ? 'B' : 'A';
my $unknown_ulid = '01m00000000000000000000000';

my @invalid = (
    ['garbage bearer'          => 'Bearer garbage'],
    ['garbage ck_ token'       => 'Bearer ck_notatoken'],
    ['empty bearer'            => 'Bearer '],
    ['wrong secret (ck_)'      => 'Bearer ck_' . ulid_of($A) . "_$other_secret"],
    ['wrong secret (key_id:)'  => "Bearer $admin_key_id:$other_secret"],
    ['unknown key id (ck_)'    => "Bearer ck_${unknown_ulid}_" . secret_of($A)],
    ['unknown key id (key_:)'  => "Bearer key_$unknown_ulid:" . secret_of($A)],
    ['Basic with password'     => basic("$A:secret")],
    ['Basic garbage base64'    => 'Basic !!!notbase64'],
    ['Basic without colon'     => basic($A)],
    ['wrong scheme Token'      => "Token $A"],
    ['wrong scheme Digest'     => "Digest $A"],
    ['bare token, no scheme'   => $A],
);
for my $c (@invalid) {
    my ($name, $hdr) = @$c;
    err_is(api(GET => '/v1/api-keys', with_auth($hdr)), 401,
           'AUTH_KEY_INVALID', undef, $name);
}

###########################################################################
# X-Request-Id

{
    my $r1 = api(GET => '/v1/nope', token => $A);
    err_is($r1, 404, 'NOT_FOUND', undef, 'unknown route');
    my $r2 = api(PUT => '/v1/agents', token => $A);
    err_is($r2, 405, 'METHOD_NOT_ALLOWED', undef, 'wrong method');
    like($r2->{headers}{allow} // '', qr/GET/, '405 has Allow header');
    my $r3 = api(GET => '/v1/agents');
    my $r4 = api(GET => '/v1/projects', token => $A);
    my @ids = map { $_->{headers}{'x-request-id'} // '' } $r1, $r2, $r3, $r4;
    like($_, qr/^[0-9a-f]{32}$/, "X-Request-Id present ($_)") for @ids;
    my %u = map { $_ => 1 } @ids;
    is(scalar keys %u, 4, 'X-Request-Id differs per request');
    is($r3->{json}{error}{request_id}, $r3->{headers}{'x-request-id'},
       '401 body request_id equals X-Request-Id');
    is($r1->{json}{error}{request_id}, $r1->{headers}{'x-request-id'},
       '404 body request_id equals X-Request-Id');
}

###########################################################################
# Projects and an agent used for key scoping

$r = api(POST => '/v1/projects', token => $A, json => {name => 'Keys project'});
is($r->{status}, 201, 'project created') or diag $r->{body};
my $proj = $r->{json}{id};

$r = api(POST => '/v1/agents', token => $A,
         headers => {'X-Project-Id' => $proj},
         json => {name => 'app agent', model => 'openai/gpt-4o'});
is($r->{status}, 201, 'agent created for appId') or diag $r->{body};
my $agent = $r->{json}{id};

###########################################################################
# POST /v1/api-keys: validation

my @bad_create = (
    [{},                                    400, 'MISSING_FIELD',     'name',      'name missing'],
    [{name => undef},                       400, 'VALIDATION_ERROR',  'name',      'name null'],
    [{name => 5},                           400, 'VALIDATION_ERROR',  'name',      'name number'],
    [{name => ''},                          400, 'VALIDATION_ERROR',  'name',      'name empty'],
    [{name => 'x' x 128},                   400, 'VALIDATION_ERROR',  'name',      'name 128 bytes'],
    [{name => 'k', role => 'root'},         400, 'VALIDATION_ERROR',  'role',      'role unknown'],
    [{name => 'k', role => 1},              400, 'VALIDATION_ERROR',  'role',      'role number'],
    [{name => 'k', projectId => 5},         400, 'VALIDATION_ERROR',  'projectId', 'projectId number'],
    [{name => 'k', projectId => "proj_$unknown_ulid"},
                                            404, 'NOT_FOUND',         'projectId', 'projectId unknown'],
    [{name => 'k', appId => []},            400, 'VALIDATION_ERROR',  'appId',     'appId array'],
    [{name => 'k', appId => "agent_$unknown_ulid"},
                                            404, 'NOT_FOUND',         'appId',     'appId unknown'],
    [{name => 'k', rateLimit => 'fast'},    400, 'VALIDATION_ERROR',  'rateLimit', 'rateLimit garbage'],
    [{name => 'k', rateLimit => 120},       400, 'VALIDATION_ERROR',  'rateLimit', 'rateLimit number'],
    [{name => 'k', rateLimit => '0r/s'},    400, 'VALIDATION_ERROR',  'rateLimit', 'rateLimit zero'],
    [{name => 'k', extra => 1},             400, 'UNKNOWN_PARAMETER', 'extra',     'unknown field'],
);
for my $c (@bad_create) {
    my ($body, $st, $code, $param, $name) = @$c;
    err_is(api(POST => '/v1/api-keys', token => $A, json => $body),
           $st, $code, $param, "create key: $name");
}
err_is(api(POST => '/v1/api-keys', token => $A, body => '{"name":"k"}',
           headers => {'Content-Type' => 'text/plain'}),
       415, 'UNSUPPORTED_MEDIA_TYPE', undef, 'create key: text/plain body');
err_is(api(POST => '/v1/api-keys', token => $A, body => '{"name":',
           headers => {'Content-Type' => 'application/json'}),
       400, 'INVALID_JSON', undef, 'create key: invalid JSON');

$r = api(GET => '/v1/api-keys', token => $A);
is(scalar @{$r->{json}{data} // []}, 1, 'failed creations created no keys');

###########################################################################
# POST /v1/api-keys: success

$r = api(POST => '/v1/api-keys', token => $A, json => {name => 'defaults'});
is($r->{status}, 201, 'create key with name only') or diag $r->{body};
my $kd = $r->{json};
fields_ok($kd, [role       => 'user', 'default role user'],
               [projectId  => undef,  'default projectId null'],
               [appId      => undef,  'default appId null'],
               [rateLimit  => undef,  'default rateLimit null'],
               [lastUsedAt => undef,  'new key lastUsedAt null'],
               [revokedAt  => undef,  'new key revokedAt null']);

$r = api(POST => '/v1/api-keys', token => $A,
         json => {name => 'full key', role => 'read_only', projectId => $proj,
                  appId => $agent, rateLimit => '120r/m'});
is($r->{status}, 201, 'create key with every field') or diag $r->{body};
my $kf = $r->{json};
fields_ok($kf, [id             => qr/^key_$ULID$/, 'key id format'],
               [object         => 'api_key',       'object api_key'],
               [name           => 'full key',      'name'],
               [role           => 'read_only',     'role'],
               [projectId      => $proj,           'projectId'],
               [appId          => $agent,          'appId'],
               [rateLimit      => '120r/m',        'rateLimit'],
               [organizationId => $b->{org},       'organizationId'],
               [createdAt      => $TS,             'createdAt RFC 3339 UTC'],
               [token          => $TOKEN,          'token format']);
is('key_' . (ulid_of($kf->{token} // '') // ''), $kf->{id},
   'token carries the key id');

$r = api(POST => '/v1/api-keys', token => $A,
         json => {name => 'burst', role => 'admin', rateLimit => '10r/s burst=20'});
is($r->{status}, 201, 'create admin key with burst rate') or diag $r->{body};
is($r->{json}{rateLimit}, '10r/s burst=20', 'burst rateLimit echoed');
is($r->{json}{role}, 'admin', 'admin role');

# A user key to exercise tokens and revocation.
$r = api(POST => '/v1/api-keys', token => $A, json => {name => 'worker', role => 'user'});
is($r->{status}, 201, 'create user key');
my $ku = $r->{json};
my $U  = $ku->{token};
$r = api(GET => '/v1/agents', token => $U, headers => {'X-Project-Id' => $proj});
is($r->{status}, 200, 'new token works (Bearer)');
$r = api(GET => '/v1/agents', with_auth(basic("$U:")));
is($r->{status}, 200, 'new token works (Basic)');
$r = api(GET => '/v1/agents', with_auth("Bearer $ku->{id}:" . secret_of($U)));
is($r->{status}, 200, 'new token works (key_id:secret)');

# GET one / list never include the token or secret
$r = api(GET => "/v1/api-keys/$ku->{id}", token => $A);
is($r->{status}, 200, 'GET /v1/api-keys/:id');
ok(!exists $r->{json}{token}, 'GET one has no token field');
unlike($r->{body}, qr/\Q${\ secret_of($U)}\E/, 'GET one does not leak secret');
is($r->{json}{id}, $ku->{id}, 'GET one id');
is($r->{json}{name}, 'worker', 'GET one name');
is($r->{json}{role}, 'user', 'GET one role');
is($r->{json}{createdAt}, $ku->{createdAt}, 'GET one createdAt same');

$r = api(GET => "/v1/api-keys/$kf->{id}", token => $A);
is_deeply({map { $_ => $r->{json}{$_} } qw(id name role projectId appId rateLimit organizationId)},
          {map { $_ => $kf->{$_} } qw(id name role projectId appId rateLimit organizationId)},
          'GET one returns the created fields');

$r = api(GET => '/v1/api-keys', token => $A);
is($r->{status}, 200, 'GET /v1/api-keys');
is($r->{json}{object}, 'list', 'list object');
my @ids = map { $_->{id} } @{$r->{json}{data} // []};
is(scalar @ids, 5, 'list has all 5 keys');
ok((grep { $_ eq $ku->{id} } @ids), 'list contains new key');
ok(!(grep { exists $_->{token} } @{$r->{json}{data} // []}), 'list has no token fields');
unlike($r->{body}, qr/ck_$ULID\_[0-9A-Za-z]{43}/, 'list body has no token');
unlike($r->{body}, qr/\Q${\ secret_of($U)}\E/, 'list does not leak secret');
is($r->{json}{has_more}, JSON::PP::false, 'list has_more false');

err_is(api(GET => "/v1/api-keys/key_$unknown_ulid", token => $A),
       404, 'NOT_FOUND', undef, 'GET unknown key');

###########################################################################
# lastUsedAt

{
    $r = api(GET => "/v1/api-keys/$kd->{id}", token => $A);
    is($r->{json}{lastUsedAt}, undef, 'unused key: lastUsedAt null');
    is(api(GET => '/v1/agents', token => $kd->{token},
           headers => {'X-Project-Id' => $proj})->{status}, 200, 'use key');
    my $seen;
    for (1 .. 20) {
        $r = api(GET => "/v1/api-keys/$kd->{id}", token => $A);
        last if defined($seen = $r->{json}{lastUsedAt});
        sleep 0.1;
    }
    like($seen // '', $TS, 'lastUsedAt set after use');
    cmp_ok($seen // '', 'ge', $kd->{createdAt}, 'lastUsedAt >= createdAt');
}

###########################################################################
# Roles

{
    my $RO = $kf->{token};    # read_only, bound to $proj (appId = $agent)
    $r = api(POST => '/v1/api-keys', token => $A,
             json => {name => 'ro plain', role => 'read_only'});
    is($r->{status}, 201, 'create unscoped read_only key');
    my $RO2 = $r->{json}{token};

    my @DENIED = (403, 'PERMISSION_DENIED');
    my %P = (headers => {'X-Project-Id' => $proj});
    my %AB = (json => {name => 'x', model => 'a/b'});
    cases_ok([
        ['read_only GET /v1/agents',    GET => '/v1/agents',         {}, 200],
        ['read_only GET /v1/projects',  GET => '/v1/projects',       {}, 200],
        ['read_only GET agent',         GET => "/v1/agents/$agent",  {}, 200],
        ['read_only app key GET its agent', GET => "/v1/agents/$agent",
                                        {token => $RO},                  200],
        ['read_only POST /v1/agents',   POST => '/v1/agents', {%P, %AB}, @DENIED],
        ['read_only PATCH agent',       PATCH => "/v1/agents/$agent",
                                        {json => {name => 'y'}},     @DENIED],
        ['read_only DELETE agent',      DELETE => "/v1/agents/$agent", {},
                                                                     @DENIED],
        ['read_only GET /v1/api-keys',  GET => '/v1/api-keys', {},   @DENIED],
        ['read_only POST /v1/api-keys', POST => '/v1/api-keys',
                                        {json => {name => 'x'}},     @DENIED],
        ['read_only POST /v1/projects', POST => '/v1/projects',
                                        {json => {name => 'x'}},     @DENIED],
    ], token => $RO2);
    cases_ok([
        ['user creates agent',          POST => '/v1/agents',
            {%P, json => {name => 'by user', model => 'anthropic/claude'}}, 201],
        ['user lists agents',           GET => '/v1/agents',   {},   200],
        ['user POST /v1/api-keys',      POST => '/v1/api-keys',
                                        {json => {name => 'x'}},     @DENIED],
        ['user GET /v1/api-keys',       GET => '/v1/api-keys', {},   @DENIED],
        ['user DELETE /v1/api-keys/:id',
                                        DELETE => "/v1/api-keys/$admin_key_id",
                                        {},                          @DENIED],
        ['user rotate',                 POST => "/v1/api-keys/$admin_key_id/rotate",
                                        {json => {}},                @DENIED],
        ['user POST /v1/projects',      POST => '/v1/projects',
                                        {json => {name => 'x'}},     @DENIED],
        ['user GET /v1/projects',       GET => '/v1/projects', {},   200],
    ], token => $U);
}

###########################################################################
# DELETE revokes on every worker at once

{
    # Warm both workers with the token first (any per-worker cache).
    my ($rs, $pids) = spread(20, 200, GET => '/v1/agents', token => $U);
    is(scalar(grep { $_->{status} == 200 } @$rs), scalar @$rs,
       'user token works on every request before revocation');
    is(scalar keys %$pids, 2, 'both workers answered before revocation')
        or diag explain $pids;

    $r = api(DELETE => "/v1/api-keys/$ku->{id}", token => $A);
    is($r->{status}, 200, 'DELETE key 200') or diag $r->{body};
    is($r->{json}{id}, $ku->{id}, 'DELETE returns the key');
    like($r->{json}{revokedAt} // '', $TS, 'revokedAt set');
    my $revoked_at = $r->{json}{revokedAt};

    ($rs, $pids) = spread(20, 200, GET => '/v1/agents', token => $U);
    my @bad = grep { !($_->{status} == 401
                       && ($_->{json}{error}{code} // '') eq 'AUTH_KEY_REVOKED') } @$rs;
    is(scalar @bad, 0, 'revoked token: 401 AUTH_KEY_REVOKED on every request')
        or diag join "\n", map { "$_->{status} $_->{body}" } @bad[0 .. ($#bad < 4 ? $#bad : 4)];
    is(scalar keys %$pids, 2, 'both workers answered after revocation')
        or diag explain $pids;
    err_is(api(GET => '/v1/agents', with_auth(basic("$U:"))), 401,
           'AUTH_KEY_REVOKED', undef, 'revoked token via Basic');
    err_is(api(GET => '/v1/agents', with_auth("Bearer $ku->{id}:" . secret_of($U))), 401,
           'AUTH_KEY_REVOKED', undef, 'revoked token via key_id:secret');

    $r = api(DELETE => "/v1/api-keys/$ku->{id}", token => $A);
    is($r->{status}, 200, 'second DELETE is 200');
    is($r->{json}{revokedAt}, $revoked_at, 'second DELETE keeps revokedAt');

    $r = api(GET => "/v1/api-keys/$ku->{id}", token => $A);
    is($r->{json}{revokedAt}, $revoked_at, 'GET shows revokedAt');

    err_is(api(POST => "/v1/api-keys/$ku->{id}/rotate", token => $A, json => {}),
           409, 'KEY_REVOKED', undef, 'rotate a revoked key');
    err_is(api(DELETE => "/v1/api-keys/key_$unknown_ulid", token => $A),
           404, 'NOT_FOUND', undef, 'DELETE unknown key');
}

###########################################################################
# Rotate

{
    $r = api(POST => '/v1/api-keys', token => $A, json => {name => 'rot0', role => 'user'});
    my $k = $r->{json};
    my $old = $k->{token};
    is(api(GET => '/v1/agents', token => $old)->{status}, 200, 'rot0 works before rotate');

    for my $c ([-1, 'negative'], [604801, 'too large'], ['5', 'string'],
               [1.5, 'fraction'], [undef, 'null']) {
        err_is(api(POST => "/v1/api-keys/$k->{id}/rotate", token => $A,
                   json => {gracePeriod => $c->[0]}),
               400, 'VALIDATION_ERROR', 'gracePeriod', "rotate gracePeriod $c->[1]");
    }
    err_is(api(POST => "/v1/api-keys/$k->{id}/rotate", token => $A, json => {foo => 1}),
           400, 'UNKNOWN_PARAMETER', 'foo', 'rotate unknown field');
    err_is(api(POST => "/v1/api-keys/key_$unknown_ulid/rotate", token => $A, json => {}),
           404, 'NOT_FOUND', undef, 'rotate unknown key');
    is(api(GET => '/v1/agents', token => $old)->{status}, 200,
       'failed rotations leave the token working');

    $r = api(POST => "/v1/api-keys/$k->{id}/rotate", token => $A, json => {gracePeriod => 0});
    is($r->{status}, 200, 'rotate gracePeriod 0') or diag $r->{body};
    my $new = $r->{json}{token} // '';
    is($r->{json}{id}, $k->{id}, 'rotate keeps the key id');
    is($r->{json}{role}, 'user', 'rotate keeps role');
    like($new, $TOKEN, 'rotate returns a new token');
    isnt($new, $old, 'new token differs');
    is(ulid_of($new), ulid_of($old), 'new token has the same key ulid');

    my ($rs, $pids) = spread(20, 200, GET => '/v1/agents', token => $old);
    my @bad = grep { !($_->{status} == 401
                       && ($_->{json}{error}{code} // '') =~ /^AUTH_KEY_(INVALID|REVOKED)$/) } @$rs;
    is(scalar @bad, 0, 'old token 401 at once after rotate with gracePeriod 0')
        or diag join "\n", map { "$_->{status} $_->{body}" } @bad[0 .. ($#bad < 4 ? $#bad : 4)];
    is(scalar keys %$pids, 2, 'both workers checked old token');
    ($rs, $pids) = spread(20, 200, GET => '/v1/agents', token => $new);
    is(scalar(grep { $_->{status} == 200 } @$rs), scalar @$rs,
       'new token works on every worker');

    $r = api(GET => "/v1/api-keys/$k->{id}", token => $A);
    ok(!exists $r->{json}{token}, 'GET after rotate has no token');
    is($r->{json}{revokedAt}, undef, 'rotated key is not revoked');

    # gracePeriod 5: room for a busy host to make its requests inside it
    $r = api(POST => '/v1/api-keys', token => $A, json => {name => 'rot2', role => 'user'});
    $k = $r->{json};
    $old = $k->{token};
    is(api(GET => '/v1/agents', token => $old)->{status}, 200, 'rot2 works before rotate');
    my $t0 = time;
    $r = api(POST => "/v1/api-keys/$k->{id}/rotate", token => $A, json => {gracePeriod => 5});
    is($r->{status}, 200, 'rotate gracePeriod 5') or diag $r->{body};
    $new = $r->{json}{token} // '';
    ($rs, $pids) = spread(10, 100, GET => '/v1/agents', token => $old);
    my $elapsed = time - $t0;
    SKIP: {
        skip 'machine too slow for the 5 s grace window', 2 if $elapsed > 4.5;
        is(scalar(grep { $_->{status} == 200 } @$rs), scalar @$rs,
           'old token still works during grace period (all workers)');
        is(scalar keys %$pids, 2, 'both workers answered during grace');
    }
    is(api(GET => '/v1/agents', token => $new)->{status}, 200, 'new token works during grace');
    sleep(6.2 - (time - $t0)) if time - $t0 < 6.2;
    ($rs, $pids) = spread(20, 200, GET => '/v1/agents', token => $old);
    @bad = grep { $_->{status} != 401 } @$rs;
    is(scalar @bad, 0, 'old token 401 after grace period expired (all workers)')
        or diag join "\n", map { "$_->{status} $_->{body}" } @bad[0 .. ($#bad < 4 ? $#bad : 4)];
    is(api(GET => '/v1/agents', token => $new)->{status}, 200, 'new token works after grace');
}

###########################################################################
# The CLI while nginx runs

{
    my $org = $t->cli('org', 'create', 'CLI Org');
    like($org, qr/^org_$ULID$/, 'org create prints the org id alone');
    my $p = $t->cli('project', 'create', '--org', $org, 'CLI project');
    like($p, qr/^proj_$ULID$/, 'project create prints the project id alone');

    my $admin = $t->cli('key', 'create', '--org', $org, '--name', 'cli admin');
    like($admin, $TOKEN, 'key create prints the token alone');
    my $admin_id = 'key_' . ulid_of($admin);
    $r = api(GET => "/v1/api-keys/$admin_id", token => $admin);
    is($r->{status}, 200, 'CLI admin token works against running nginx');
    is($r->{json}{role}, 'admin', 'CLI key default role admin');
    is($r->{json}{name}, 'cli admin', 'CLI --name');
    is($r->{json}{organizationId}, $org, 'CLI key org');

    $r = api(GET => "/v1/projects/$p", token => $admin);
    is($r->{status}, 200, 'CLI project visible over HTTP');
    is($r->{json}{name}, 'CLI project', 'CLI project name');

    my $user = $t->cli('key', 'create', '--org', $org, '--role', 'user',
                       '--project', $p, '--name', 'cli user');
    like($user, $TOKEN, 'key create --role --project --name prints the token');
    my $user_id = 'key_' . ulid_of($user);
    $r = api(GET => "/v1/api-keys/$user_id", token => $admin);
    is($r->{json}{role}, 'user', 'CLI --role user');
    is($r->{json}{projectId}, $p, 'CLI --project');
    is($r->{json}{name}, 'cli user', 'CLI --name user key');

    $r = api(POST => '/v1/agents', token => $user,
             json => {name => 'cli agent', model => 'openai/gpt-4o'});
    is($r->{status}, 201, 'CLI project-bound user key creates agent without X-Project-Id')
        or diag $r->{body};
    is($r->{json}{projectId}, $p, 'agent lands in the key project');

    my $ro = $t->cli('key', 'create', '--org', $org, '--role', 'read_only');
    like($ro, $TOKEN, 'CLI read_only key');
    err_is(api(POST => '/v1/projects', token => $ro, json => {name => 'n'}),
           403, 'PERMISSION_DENIED', undef, 'CLI read_only key cannot POST');

    my $list = $t->cli('key', 'list', '--org', $org);
    my @lines = split /\n/, $list;
    is(scalar @lines, 3, 'key list: one line per key');
    my %row = map { my @f = split /\t/; ($f[0] => \@f) } @lines;
    is_deeply([@{$row{$user_id} // []}[0, 1, 2, 3, 5]],
              [$user_id, 'user', $p, 'active', 'cli user'], 'key list row for user key');
    like($row{$user_id}[4] // '', $TS, 'key list created column');
    is($row{$admin_id}[1], 'admin', 'key list row for admin key');

    my ($revoke_rc, undef, $err) = $t->cli_status('key', 'revoke', $user_id);
    is($revoke_rc, 0, 'key revoke exits 0') or diag($err);
    my ($rs, $pids) = spread(20, 200, GET => '/v1/agents', token => $user);
    my @bad = grep { !($_->{status} == 401
                       && ($_->{json}{error}{code} // '') eq 'AUTH_KEY_REVOKED') } @$rs;
    is(scalar @bad, 0, 'CLI-revoked token: 401 AUTH_KEY_REVOKED from running nginx')
        or diag join "\n", map { "$_->{status} $_->{body}" } @bad[0 .. ($#bad < 4 ? $#bad : 4)];
    is(scalar keys %$pids, 2, 'both workers saw the CLI revocation');
    $r = api(GET => "/v1/api-keys/$user_id", token => $admin);
    like($r->{json}{revokedAt} // '', $TS, 'CLI revocation visible over HTTP');

    ($row{$user_id}) = grep { /^\Q$user_id\E\t/ } split /\n/, $t->cli('key', 'list', '--org', $org);
    is((split /\t/, $row{$user_id} // '')[3], 'revoked', 'key list shows revoked');

    my $stats = $t->cli('stats');
    like($stats, qr/\S/, 'stats prints something');
    like($stats, qr/^entries\t\d+$/m, 'stats has entries');

    # keys created over HTTP show up in the CLI list
    my @http_keys = grep { /^key_/ } split /\n/, $t->cli('key', 'list', '--org', $b->{org});
    ok((grep { /^\Q$kf->{id}\E\tread_only\t\Q$proj\E\tactive\t/ } @http_keys),
       'key list shows HTTP-created key');
    ok((grep { /^\Q$ku->{id}\E\tuser\t-\trevoked\t/ } @http_keys),
       'key list shows HTTP-revoked key');

    my ($rc, $o, $e) = $t->cli_status('key', 'create', '--org', "org_$unknown_ulid");
    isnt($rc, 0, 'key create for unknown org fails');
    is($o, '', 'no token printed for unknown org');
    ($rc, $o, $e) = $t->cli_status('project', 'create', '--org', "org_$unknown_ulid", 'x');
    isnt($rc, 0, 'project create for unknown org fails');
    ($rc, $o, $e) = $t->cli_status('key', 'create', '--org', $org, '--role', 'root');
    isnt($rc, 0, 'key create with bad role fails');
    ($rc, $o, $e) = $t->cli_status('key', 'revoke', "key_$unknown_ulid");
    isnt($rc, 0, 'key revoke unknown key fails');

    # tenancy: the other org cannot see this org's keys
    err_is(api(GET => "/v1/api-keys/$user_id", token => $A),
           404, 'NOT_FOUND', undef, "another org's key is 404");
}

###########################################################################

is_deeply(\@rid_problems, [],
          "X-Request-Id on all $nreq responses; error request_id matches")
    or diag join "\n", @rid_problems;

$t->finish;
done_testing;
