#!/usr/bin/perl
# HTTP-level errors of the API: 404/405/413/415, the envelope's type per
# status (SPEC 3.1), X-Request-Id everywhere, HEAD, keep-alive after errors,
# and 503 STORE_FULL when the LMDB map is full.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi;

sub rid_ok {
    my ($r, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    like($r->{headers}{'x-request-id'} // '', qr/^[0-9a-f]{32}$/,
         "X-Request-Id: $name");
}

my $t = CreorTest->new(store_opts => 'sync=off');
my $b = $t->bootstrap;
my $tok = $b->{token};

my $r = $t->req(POST => '/v1/projects', token => $tok, json => {name => 'p'});
is($r->{status}, 201, 'setup: project');
rid_ok($r, '201 project');
my $proj = $r->{json}{id};

$r = $t->req(POST => '/v1/agents', token => $tok, json => {name => 'a', model => 'p/m'},
             headers => ['X-Project-Id' => $proj]);
is($r->{status}, 201, 'setup: agent');
my $agent = $r->{json}{id};

###########################################################################
# 404: unknown routes, before authentication

for my $case (
    [GET    => '/v1/nope'],
    [GET    => '/v1/'],
    [POST   => '/v1/nope'],
    [GET    => '/v1/agents/x/y'],
    [GET    => '/v1/agents/'],
    [DELETE => '/v1/projects/x/y'],
    [GET    => '/v1/AGENTS'],
    [PUT    => '/v1/unknown/route'],
) {
    my ($m, $p) = @$case;
    err_is($t->req($m, $p, token => $tok), 404, 'NOT_FOUND', undef,
           "$m $p (token)");
    err_is($t->req($m, $p), 404, 'NOT_FOUND', undef,
           "$m $p (no token): 404 before auth");
}
err_is($t->req(GET => '/v1/nope', headers => [Authorization => 'Bearer junk']),
         404, 'NOT_FOUND', undef, 'unknown route with a bad token: 404, not 401');

###########################################################################
# 405 with Allow

sub allow_set {
    my ($r) = @_;
    return { map { $_ => 1 } split /\s*,\s*/, $r->{headers}{allow} // '' };
}

$r = $t->req(PUT => '/v1/agents', token => $tok, json => {});
err_is($r, 405, 'METHOD_NOT_ALLOWED', undef, 'PUT /v1/agents');
my $allow = allow_set($r);
ok($allow->{GET} && $allow->{POST}, 'PUT /v1/agents: Allow has GET and POST')
    or diag('Allow: ' . ($r->{headers}{allow} // 'none'));
ok(!$allow->{PUT} && !$allow->{DELETE} && !$allow->{PATCH},
   'PUT /v1/agents: Allow lists no PUT, PATCH or DELETE');

$r = $t->req(PUT => '/v1/agents', json => {});
err_is($r, 405, 'METHOD_NOT_ALLOWED', undef,
       'PUT /v1/agents without a token: 405 before auth');
ok(allow_set($r)->{GET}, 'Allow without a token');

$r = $t->req(DELETE => '/v1/agents', token => $tok);
err_is($r, 405, 'METHOD_NOT_ALLOWED', undef, 'DELETE /v1/agents');

$r = $t->req(POST => "/v1/agents/$agent", token => $tok, json => {});
err_is($r, 405, 'METHOD_NOT_ALLOWED', undef, 'POST /v1/agents/:id');
$allow = allow_set($r);
ok($allow->{GET} && $allow->{PATCH} && $allow->{DELETE} && !$allow->{POST},
   'POST /v1/agents/:id: Allow is GET, PATCH, DELETE')
    or diag('Allow: ' . ($r->{headers}{allow} // 'none'));

$r = $t->req(PATCH => '/v1/projects', token => $tok, json => {});
err_is($r, 405, 'METHOD_NOT_ALLOWED', undef, 'PATCH /v1/projects');
$allow = allow_set($r);
ok($allow->{GET} && $allow->{POST} && !$allow->{PATCH}, 'PATCH /v1/projects: Allow GET, POST');

$r = $t->req(GET => "/v1/api-keys/key_x/rotate", token => $tok);
err_is($r, 405, 'METHOD_NOT_ALLOWED', undef, 'GET /v1/api-keys/:id/rotate');
is($r->{headers}{allow}, 'POST', 'rotate: Allow is POST');

###########################################################################
# 415, 400, 401, 403, 409: types per status

err_is($t->req(POST => '/v1/agents', token => $tok, body => '{"name":"a","model":"p/m"}',
                 headers => ['Content-Type' => 'text/plain', 'X-Project-Id' => $proj]),
         415, 'UNSUPPORTED_MEDIA_TYPE', undef, '415 text/plain');
err_is($t->req(POST => '/v1/agents', token => $tok, body => '{"name":',
                 headers => ['Content-Type' => 'application/json', 'X-Project-Id' => $proj]),
         400, 'INVALID_JSON', undef, '400 invalid JSON');
err_is($t->req(GET => '/v1/agents'), 401, 'AUTH_MISSING_HEADER', undef,
       '401 no token');
err_is($t->req(GET => '/v1/agents', token => 'ck_nope'), 401, 'AUTH_KEY_INVALID', undef, '401 bad token');

my $ro = $t->cli(qw(key create --org), $b->{org}, qw(--role read_only));
err_is($t->req(POST => '/v1/agents', token => $ro, json => {name => 'a', model => 'p/m'},
                 headers => ['X-Project-Id' => $proj]),
         403, 'PERMISSION_DENIED', undef, '403 read_only key');

err_is($t->req(GET => '/v1/agents/agent_' . ('0' x 26), token => $tok),
         404, 'NOT_FOUND', undef, '404 unknown agent');

$r = $t->req(POST => '/v1/api-keys', token => $tok, json => {name => 'victim'});
is($r->{status}, 201, 'key to revoke');
my $victim = $r->{json}{id};
is($t->req(DELETE => "/v1/api-keys/$victim", token => $tok)->{status}, 200, 'revoke');
err_is($t->req(POST => "/v1/api-keys/$victim/rotate", token => $tok, json => {}),
         409, 'KEY_REVOKED', undef, '409 rotate a revoked key');

###########################################################################
# 413

my $big = '{"name":"' . ('x' x (2 * 1024 * 1024)) . '"}';
$r = $t->req(POST => '/v1/agents', token => $tok, body => $big,
             headers => ['Content-Type' => 'application/json', 'X-Project-Id' => $proj]);
err_is($r, 413, 'BODY_TOO_LARGE', undef, '413 Content-Length 2 MB');

my $chunked = "POST /v1/agents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer $tok\r\n"
    . "X-Project-Id: $proj\r\nContent-Type: application/json\r\n"
    . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    . join('', map { sprintf("%x\r\n%s\r\n", 65536, 'x' x 65536) } 1 .. 32) . "0\r\n\r\n";
err_is($t->req(POST => undef, raw => $chunked), 413, 'BODY_TOO_LARGE', undef,
       '413 chunked 2 MB');

# after a 413 on a keep-alive connection it may close; a new one works
{
    my $c = $t->conn;
    my $r = $c->req(POST => '/v1/agents', token => $tok, body => $big,
                    headers => ['Content-Type' => 'application/json',
                                'X-Project-Id' => $proj]);
    is($r->{status}, 413, 'keep-alive: 413');
    rid_ok($r, '413 on keep-alive');
    $c->close;
    $r = $t->req(GET => '/v1/agents', token => $tok);
    is($r->{status}, 200, 'after a 413 a fresh connection works');
    is(ref $r->{json}{data}, 'ARRAY', 'list after the 413');
}

###########################################################################
# HEAD on GET routes

$r = $t->req(HEAD => '/v1/agents', token => $tok);
is($r->{status}, 200, 'HEAD /v1/agents');
is($r->{body}, '', 'HEAD: no body');
like($r->{headers}{'content-type'} // '', qr{^application/json}, 'HEAD: content type');
rid_ok($r, 'HEAD');
$r = $t->req(HEAD => "/v1/agents/$agent", token => $tok);
is($r->{status}, 200, 'HEAD /v1/agents/:id');
$r = $t->req(HEAD => "/v1/projects/$proj", token => $tok);
is($r->{status}, 200, 'HEAD /v1/projects/:id');
$r = $t->req(HEAD => '/v1/nope', token => $tok);
is($r->{status}, 404, 'HEAD unknown route: 404');
rid_ok($r, 'HEAD 404');
$r = $t->req(HEAD => '/v1/agents');
is($r->{status}, 401, 'HEAD without a token: 401');

# HEAD on a keep-alive connection leaves it usable (no stray body)
{
    my $c = $t->conn;
    is($c->req(HEAD => '/v1/agents', token => $tok)->{status}, 200, 'keep-alive HEAD');
    is($c->req(HEAD => '/v1/nope', token => $tok)->{status}, 404, 'keep-alive HEAD 404');
    my $r = $c->req(GET => '/v1/agents', token => $tok);
    is($r->{status}, 200, 'keep-alive GET after HEADs');
    is(ref $r->{json}{data}, 'ARRAY', 'keep-alive GET body after HEADs');
    $c->close;
}

###########################################################################
# keep-alive: an error, then a good request on one connection

{
    my $c = $t->conn;
    my @steps = (
        [[GET => '/v1/nope', token => $tok], 404],
        [[GET => '/v1/agents', token => $tok], 200],
        [[PUT => '/v1/agents', token => $tok, json => {}], 405],
        [[GET => "/v1/agents/$agent", token => $tok], 200],
        [[POST => '/v1/agents', token => $tok, body => '{"name":"a"',
          headers => ['Content-Type' => 'application/json', 'X-Project-Id' => $proj]], 400],
        [[POST => '/v1/agents', token => $tok, json => {name => 'ka', model => 'p/m'},
          headers => ['X-Project-Id' => $proj]], 201],
        [[GET => '/v1/agents'], 401],
        [[POST => '/v1/agents', token => $tok, body => '{}',
          headers => ['Content-Type' => 'text/plain', 'X-Project-Id' => $proj]], 415],
        [[GET => '/v1/agents?limit=1', token => $tok], 200],
        [[GET => '/v1/agents?bogus=1', token => $tok], 400],
        [[DELETE => '/v1/agents/agent_' . ('0' x 26), token => $tok], 404],
        [[GET => '/v1/projects', token => $tok], 200],
    );
    my %rids;
    for my $i (0 .. $#steps) {
        my ($args, $status) = @{$steps[$i]};
        my $r = $c->req(@$args);
        is($r->{status}, $status, "keep-alive step $i: $args->[0] $args->[1] -> $status")
            or diag('body: ' . substr($r->{body} // '', 0, 200));
        ok(ref $r->{json} eq 'HASH', "keep-alive step $i: JSON body");
        my $rid = $r->{headers}{'x-request-id'} // '';
        if ($status >= 400) {
            is($r->{json}{error}{request_id}, $rid, "keep-alive step $i: request_id");
        }
        $rids{$rid}++;
    }
    is(scalar keys %rids, scalar @steps, 'keep-alive: a distinct X-Request-Id per request');
    ok(!$c->closed, 'keep-alive connection still open after errors');
    $c->close;
}

# pipelined: an error and a good request sent at once
{
    my $c = $t->conn;
    $c->send(CreorTest::build_request(GET => '/v1/nope', 1, token => $tok)
             . CreorTest::build_request(GET => '/v1/agents', 1, token => $tok));
    my $r1 = $c->read_response(method => 'GET');
    my $r2 = $c->read_response(method => 'GET');
    is($r1->{status}, 404, 'pipelined: 404 first');
    is($r2->{status}, 200, 'pipelined: 200 second');
    is(ref $r2->{json}{data}, 'ARRAY', 'pipelined: list body');
    $c->close;
}

my @workers = $t->worker_pids;
is(scalar @workers, 2, 'two workers alive');

###########################################################################
# 503 STORE_FULL

{
    my $s = CreorTest->new(store_opts => 'map_size=256k sync=off');
    my $sb = $s->bootstrap;
    my $r = $s->req(POST => '/v1/projects', token => $sb->{token}, json => {name => 'p'});
    is($r->{status}, 201, 'store full: project');
    my $sp = $r->{json}{id};

    my $prompt = 'P' x 60000;
    my (@created, $full, @other);
    for my $i (1 .. 200) {
        my $r = $s->req(POST => '/v1/agents', token => $sb->{token},
                        json => {name => "big$i", model => 'p/m', systemPrompt => $prompt},
                        headers => ['X-Project-Id' => $sp]);
        if ($r->{status} == 201) {
            push @created, $r->{json}{id};
            next;
        }
        if ($r->{status} == 503) {
            $full = $r;
        } else {
            push @other, $r;
        }
        last;
    }
    ok(!@other, 'store full: only 201s before the first 503')
        or diag("got $other[0]{status}: " . substr($other[0]{body}, 0, 300));
    ok($full, 'store full: a 503 within 200 requests (' . scalar(@created) . ' created)');
    if ($full) {
        err_is($full, 503, 'STORE_FULL', undef, 'store full: 503 STORE_FULL');
        like($full->{headers}{'retry-after'} // '', qr/^\d+$/, 'store full: Retry-After');
    }
    cmp_ok(scalar @created, '>=', 1, 'store full: some agents fit first');

    for my $id (@created) {
        my $r = $s->req(GET => "/v1/agents/$id", token => $sb->{token});
        is($r->{status}, 200, "store full: $id still readable");
        is(length($r->{json}{systemPrompt} // ''), 60000, "store full: $id prompt intact");
    }
    $r = $s->req(GET => '/v1/agents?limit=100', token => $sb->{token});
    is($r->{status}, 200, 'store full: list works');
    is(scalar @{$r->{json}{data} // []}, scalar @created, 'store full: list has the created agents');

    # a second write still fails cleanly, and small reads keep working
    $r = $s->req(POST => '/v1/agents', token => $sb->{token},
                 json => {name => 'again', model => 'p/m', systemPrompt => $prompt},
                 headers => ['X-Project-Id' => $sp]);
    err_is($r, 503, 'STORE_FULL', undef, 'store full: a second large write');
    is($s->req(GET => "/v1/projects/$sp", token => $sb->{token})->{status}, 200,
       'store full: project readable');
    $s->finish('store full: no [alert]/[crit] in error.log');
}

###########################################################################
# nginx's own 405/501/505 (TRACE, an unknown transfer coding, HTTP/2.0 on
# a plain listener), with the error_page line of the shipped conf/

{
    my ($line) = grep { /^\s*error_page\b.*\/v1\/_error;/ }
                 split /\n/, CreorTest::_slurp("$CreorTest::ROOT/conf/nginx.conf");
    ok(defined $line, 'conf/nginx.conf: an error_page to /v1/_error');
    my $e = CreorTest->new(store_opts => 'sync=off',
                           server_config => $line // '');
    for my $case (
        ['TRACE', 405, 'METHOD_NOT_ALLOWED',
         "TRACE /v1/agents HTTP/1.1\r\nHost: x\r\n\r\n"],
        ['unknown transfer coding', 501, 'NOT_IMPLEMENTED',
         "POST /v1/agents HTTP/1.1\r\nHost: x\r\n"
         . "Transfer-Encoding: gzip, chunked\r\n\r\n"],
        ['HTTP/2.0 request line', 505, 'HTTP_VERSION_NOT_SUPPORTED',
         "GET /v1/agents HTTP/2.0\r\nHost: x\r\n\r\n"],
        ['HTTP/3.1 request line', 505, 'HTTP_VERSION_NOT_SUPPORTED',
         "GET /v1/agents HTTP/3.1\r\nHost: x\r\n\r\n"],
    ) {
        my ($name, $status, $code, $raw) = @$case;
        my $r = $e->req(GET => undef, raw => $raw, timeout => 10);
        err_is($r, $status, $code, undef, "nginx's own $status: $name");
    }
    $e->finish("nginx's own errors: no alerts");
}

is_deeply([$t->worker_pids], \@workers, 'workers unchanged: no crash');
$t->finish;
done_testing;
