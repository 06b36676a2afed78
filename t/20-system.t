#!/usr/bin/perl
# Operations (SPEC 12, 2, 3.2): /v1/system/health without credentials and
# its 503, /v1/system/status for admins with counts by status, the
# creor_metrics exposition (host-wide counts, checked by promtool), the
# $creor_* log variables, OPTIONS and the CORS headers of creor_cors.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempfile);
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;
use CreorExecutor;

my $ORIGIN = 'http://app.example';
my $TS     = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$/;

my $ex = CreorExecutor->new;
my $t = CreorTest->new(
    store_opts    => 'sync=off',
    http_config   => join(' ',
        'creor_executor /_exec; creor_executor_retries 0;',
        'creor_sse_keepalive 1s;',
        'add_header X-Worker-Pid $pid always;',
        'log_format creor "$creor_route|$creor_org|$creor_key_id|'
        . '$creor_project|$creor_idempotent|$status";',
        'access_log logs/creor.log creor;'),
    api_location  => "location /v1/ { creor_api; client_max_body_size 1k; "
                   . "creor_cors $ORIGIN https://b.example:8443; }",
    server_config => join(' ',
        'location = /metrics { creor_metrics; }',
        $ex->location),
);

my $b   = $t->bootstrap;
my $TOK = $b->{token};

api_use($t, token => $TOK);

sub code_of { my $r = shift; ref $r->{json} eq 'HASH' && ref $r->{json}{error}
                  ? $r->{json}{error}{code} : undef }

# the exposition as { 'name{labels}' => value }, and its text
sub scrape {
    my ($inst) = @_;
    my $r = ($inst // $t)->req(GET => '/metrics');
    my %m;
    for (split /\n/, $r->{body} // '') {
        next if /^#/;
        my ($k, $v) = /^(\S+)\s+(\S+)$/ or next;
        $m{$k} = $v;
    }
    return (\%m, $r);
}

sub promtool_ok {
    my ($text, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my ($fh, $file) = tempfile(UNLINK => 1);
    print $fh $text;
    close $fh;
    my $out = `promtool check metrics < $file 2>&1`;
    is($? >> 8, 0, "promtool check metrics: $name") or diag($out);
}

###########################################################################
# Health: no credentials, a check per part

my $r = api(GET => '/v1/system/health', token => undef);
is($r->{status}, 200, 'health: 200 without credentials') or diag($r->{body});
my $h = $r->{json} // {};
is($h->{status}, 'ok', 'health: status ok');
is($h->{checks}{$_}{status}, 'ok', "health: $_ ok")
    for qw(store store_map counters);
is($h->{checks}{store}{writable}, JSON::PP::true, 'health: store writable');
ok($h->{checks}{store_map}{map_bytes} > 0
   && $h->{checks}{store_map}{used_bytes} > 0, 'health: map usage in bytes');
is($h->{checks}{$_}{status}, 'unknown', "health: $_ unknown before any call")
    for qw(executor provider);
like($h->{time} // '', $TS, 'health: time');
ok($r->{headers}{'x-request-id'}, 'health: X-Request-Id');

for my $case (
    # [method, path, token, status, code, name]
    [GET  => '/v1/system/health', 'creor_bogus', 200, undef,
     'a bad key is not looked at'],
    [HEAD => '/v1/system/health', undef, 200, undef, 'HEAD'],
    [POST => '/v1/system/health', undef, 405, 'METHOD_NOT_ALLOWED', 'POST'],
    [GET  => '/v1/system/health?x=1', undef, 400, 'UNKNOWN_PARAMETER',
     'unknown query parameter'],
    [GET  => '/v1/system/status', undef, 401, 'AUTH_MISSING_HEADER',
     'status without a key'],
) {
    my ($m, $p, $tok, $st, $code, $name) = @$case;
    $r = api($m => $p, token => $tok);
    is($r->{status}, $st, "health/status: $name: $st");
    is(code_of($r), $code, "health/status: $name: $code") if $code;
}

###########################################################################
# Status: admins only; counts by status follow agents and runs

my $user = $t->cli('key', 'create', '--org', $b->{org}, '--role', 'user',
                   '--name', 'u');
$r = api(GET => '/v1/system/status', token => $user);
is($r->{status}, 403, 'status: 403 for a user key');

my $proj = api(POST => '/v1/projects', json => { name => 'p' })->{json}{id};
my @agents = map {
    api(POST => '/v1/agents', headers => { 'X-Project-Id' => $proj },
        json => { name => "a$_", model => 'openai/gpt-4o' })->{json}{id}
} 1 .. 3;
is(scalar(grep { defined } @agents), 3, 'three agents');

sub status { api(GET => '/v1/system/status')->{json} // {} }

my $s = status();
is($s->{object}, 'system.status', 'status: object');
like($s->{version} // '', qr/^\d+\.\d+\.\d+$/, 'status: version');
is($s->{workers}, 2, 'status: workers');
ok(defined $s->{uptime_seconds} && $s->{uptime_seconds} >= 0,
   'status: uptime_seconds');
like($s->{started_at} // '', $TS, 'status: started_at');
ok($s->{store}{used_bytes} > 0 && $s->{store}{map_bytes} > 0
   && defined $s->{store}{used_percent}, 'status: store size and map usage');
is($s->{webhook_queue_depth}, 0, 'status: webhook queue depth');
is_deeply($s->{agents}, { idle => 3, queued => 0, running => 0,
                          completed => 0, failed => 0, total => 3 },
          'status: three idle agents');
is($s->{runs}{total}, 0, 'status: no runs');

# one run that completes, one that fails at the executor, one that stays
# running: the counts move with each change of state

sub run_of {
    my ($agent, $script, %o) = @_;
    my $r = api(POST => '/v1/runs', headers => $o{headers} // {},
                json => { appId => $agent, inputs => { script => $script,
                                                       %{$o{inputs} // {}} } });
    return $r;
}

sub run_status { (api(GET => "/v1/runs/$_[0]")->{json} // {})->{status} // '' }

my $ok = run_of($agents[0], 'ok')->{json}{id};
ok(wait_until(sub { run_status($ok) eq 'completed' }, 10), 'ok run completed');

my $bad = run_of($agents[1], 'fail500')->{json}{id};
ok(wait_until(sub { run_status($bad) eq 'failed' }, 10),
   'a run the executor refuses fails');

my $long = run_of($agents[2], 'hang', inputs => { hang => 30 })->{json}{id};
ok(wait_until(sub { run_status($long) eq 'running' }, 10), 'hang run running');

$s = status();
is_deeply($s->{runs}, { queued => 0, running => 1, awaiting_input => 0,
                        completed => 1, failed => 1, cancelled => 0,
                        total => 3 }, 'status: runs by status')
    or diag explain $s->{runs};
is_deeply($s->{agents}, { idle => 0, queued => 0, running => 1,
                          completed => 1, failed => 1, total => 3 },
          'status: agents take their latest run\'s status')
    or diag explain $s->{agents};

# health saw the executor fail last: degraded, still 200
sleep 1.1;
$r = api(GET => '/v1/system/health', token => undef);
is($r->{status}, 200, 'health: 200 with a failing executor');
is($r->{json}{checks}{executor}{status}, 'fail', 'health: executor fail');
like($r->{json}{checks}{executor}{last_failure_at} // '', $TS,
     'health: executor last_failure_at');
like($r->{json}{checks}{executor}{last_success_at} // '', $TS,
     'health: executor last_success_at');
is($r->{json}{status}, 'degraded', 'health: degraded');

# an SSE subscriber of the running run, seen by every worker's scrape
my $sse = $t->stream(GET => "/v1/runs/$long/events/stream", token => $TOK,
                     headers => { Origin => $ORIGIN });
is($sse->status, 200, 'stream: 200');
is($sse->headers->{'access-control-allow-origin'}, $ORIGIN,
   'stream: Access-Control-Allow-Origin');
like($sse->headers->{'access-control-expose-headers'} // '',
     qr/\bX-Request-Id\b/, 'stream: exposed headers');
ok(wait_until(sub { ((scrape())[0]{creor_sse_subscribers} // '') eq '1' }, 5),
   'metrics: one SSE subscriber');
is(status()->{sse_subscribers}, 1, 'status: one SSE subscriber');

$r = api(POST => "/v1/runs/$long/cancel");
is($r->{status}, 200, 'cancel the running run') or diag($r->{body});
ok(wait_until(sub { $sse->done }, 10), 'stream ends with the run');
$sse->close;
ok(wait_until(sub { ((scrape())[0]{creor_sse_subscribers} // '') eq '0' }, 10),
   'metrics: no SSE subscriber after the stream ends');

$r = api(DELETE => "/v1/agents/$agents[0]");
is($r->{status}, 200, 'delete an agent');
$s = status();
is($s->{agents}{total}, 2, 'status: two agents after a delete');
is($s->{agents}{completed}, 0, 'status: the deleted agent\'s status left');
is($s->{runs}{cancelled}, 1, 'status: the cancelled run');
is($s->{runs}{running}, 0, 'status: nothing running');

###########################################################################
# Metrics: host-wide counts, names, promtool

my $before = (scrape())[0]{'creor_http_requests_total{route="projects.list",status="200"}'} // 0;
my %pids;
for (1 .. 20) {
    $r = api(GET => '/v1/projects');
    $pids{$r->{headers}{'x-worker-pid'} // ''}++;
}
diag('projects.list served by workers ' . join(', ', sort keys %pids))
    if keys %pids < 2;

# a request is counted at its log phase, just after its answer went out;
# then every scrape, whichever worker answers it, has all workers' requests
my $PL = 'creor_http_requests_total{route="projects.list",status="200"}';
wait_until(sub { ((scrape())[0]{$PL} // 0) == $before + 20 }, 5);
my %seen;
for (1 .. 6) {
    my ($mm, $rr) = scrape();
    $seen{$mm->{$PL} // 0}++;
}
is_deeply([keys %seen], [$before + 20],
          'metrics: projects.list counted once each, on every scrape');

api(GET => '/v1/nowhere');
api(GET => '/v1/projects', token => 'creor_bad');
my $key = 'k-' . time;
my $idem = run_of($agents[1], 'ok',
                  headers => { 'Idempotency-Key' => $key })->{json}{id};
run_of($agents[1], 'ok', headers => { 'Idempotency-Key' => $key });
ok(wait_until(sub { run_status($idem) eq 'completed' }, 10),
   'idempotent run completed');
$r = api(POST => '/v1/runs', headers => { 'Idempotency-Key' => $key },
         json => { appId => $agents[1], inputs => { other => 1 } });
is($r->{status}, 409, 'idempotency conflict') or diag($r->{body});
api(POST => '/v1/projects', body => 'x' x 2000,
    headers => { 'Content-Type' => 'application/json' });

# legs are counted when their call ends, a moment after their run's
# last event: scrape until the counts are in (or the time is up)
my ($mx, $mr);
sub metrics_in {
    my ($want) = @_;
    ($mx, $mr) = scrape();
    return !grep { my ($k, $v) = @$_; !ref $v && ($mx->{$k} // '') ne $v }
                 @$want;
}

my @expect = (
    # [series, expected value or regex, name]
    ['creor_http_requests_total{route="none",status="404"}', 1,
     'unknown route'],
    ['creor_http_requests_total{route="projects.list",status="401"}', 1,
     'bad key'],
    # refused before the API's handler: no route yet
    ['creor_http_requests_total{route="none",status="413"}', 1,
     'body over client_max_body_size'],
    ['creor_http_requests_total{route="system.status",status="403"}', 1,
     'status as a user'],
    ['creor_idempotent_total{outcome="miss"}', 1, 'idempotent miss'],
    ['creor_idempotent_total{outcome="hit"}', 1, 'idempotent hit'],
    ['creor_idempotent_total{outcome="conflict"}', 1, 'idempotent conflict'],
    ['creor_executor_legs_total{outcome="failed"}', 1, 'failed leg'],
    ['creor_executor_legs_total{outcome="aborted"}', 1, 'aborted leg'],
    ['creor_runs{status="failed"}', 1, 'runs failed'],
    ['creor_runs{status="cancelled"}', 1, 'runs cancelled'],
    ['creor_ratelimited_total', 0, 'nothing rate limited'],
    ['creor_webhook_deliveries_total{outcome="success"}', 0, 'no webhooks'],
    ['creor_store_bytes', qr/^[1-9]\d*$/, 'store bytes'],
    ['creor_store_map_bytes', 1073741824, 'map bytes: the 1g default'],
    ['creor_http_request_duration_seconds_count{route="projects.list"}',
     qr/^[1-9]\d*$/, 'duration histogram count'],
    ['creor_http_request_duration_seconds_bucket{route="projects.list",'
     . 'le="+Inf"}', qr/^[1-9]\d*$/, 'duration histogram +Inf'],
    ['creor_provider_duration_seconds_count', 0, 'no provider calls'],
);
wait_until(sub { metrics_in(\@expect)
               && ($mx->{'creor_executor_legs_total{outcome="ok"}'} // 0) >= 2
             }, 10);
is($mr->{status}, 200, 'metrics: 200');
is($mr->{headers}{'content-type'}, 'text/plain; version=0.0.4; charset=utf-8',
   'metrics: text format 0.0.4');
promtool_ok($mr->{body}, 'main instance');

for my $e (@expect) {
    my ($k, $v, $name) = @$e;
    if (ref $v) {
        like($mx->{$k} // 'absent', $v, "metrics: $name");
    } else {
        is($mx->{$k}, $v, "metrics: $name");
    }
}
ok(($mx->{'creor_executor_legs_total{outcome="ok"}'} // 0) >= 2,
   'metrics: ok legs');
ok(($mx->{'creor_runs{status="completed"}'} // 0) >= 2,
   'metrics: completed runs');
is($mx->{'creor_http_request_duration_seconds_count{route="projects.list"}'},
   $mx->{'creor_http_request_duration_seconds_bucket{route="projects.list",'
         . 'le="+Inf"}'}, 'metrics: histogram count is its +Inf bucket');

# every name of SPEC 12 is there (chat tokens once a chat call is made)
my $text = $mr->{body};
for my $name (qw(creor_http_requests_total creor_http_request_duration_seconds
                 creor_ratelimited_total creor_idempotent_total creor_runs
                 creor_executor_legs_total creor_chat_tokens_total
                 creor_provider_duration_seconds
                 creor_webhook_deliveries_total creor_sse_subscribers
                 creor_store_bytes creor_store_map_bytes)) {
    like($text, qr/^# TYPE \Q$name\E (?:counter|gauge|histogram)$/m,
         "metrics: $name declared");
}

$r = $t->req(POST => '/metrics', body => '');
is($r->{status}, 405, 'metrics: POST is 405');

###########################################################################
# $creor_* in log_format

my $log = wait_until(sub {
    my $l = CreorTest::_slurp($t->dir . '/logs/creor.log') // '';
    $l =~ /\|conflict\|/ ? $l : undef }, 5) // '';
like($log, qr/^runs\.create\|\Q$b->{org}\E\|key_[0-9a-z]{26}\|-\|hit\|202$/m,
     'log: route, org, key id and idempotent hit');
like($log, qr/^runs\.create\|\Q$b->{org}\E\|key_[0-9a-z]{26}\|-\|conflict\|409$/m,
     'log: idempotent conflict');
like($log, qr/^agents\.create\|\Q$b->{org}\E\|key_[0-9a-z]{26}\|\Q$proj\E\|-\|201$/m,
     'log: project from X-Project-Id');
like($log, qr/^system\.health\|-\|-\|-\|-\|200$/m,
     'log: health, no credentials');

###########################################################################
# OPTIONS and CORS

for my $case (
    # [path, origin, preflight, status, allow/methods, cors, name]
    ['/v1/agents', $ORIGIN, 1, 204, 'GET, HEAD, POST, OPTIONS', 1,
     'preflight from an allowed origin'],
    ['/v1/agents/agent_x', 'https://b.example:8443', 1, 204,
     'GET, HEAD, PATCH, DELETE, OPTIONS', 1, 'second origin, item route'],
    ['/v1/runs/run_x/events/stream', $ORIGIN, 1, 204, 'GET, HEAD, OPTIONS', 1,
     'preflight of the event stream'],
    ['/v1/agents', 'http://evil.example', 1, 204, 'GET, HEAD, POST, OPTIONS',
     0, 'preflight from another origin'],
    ['/v1/agents', 'HTTP://APP.EXAMPLE', 1, 204, 'GET, HEAD, POST, OPTIONS',
     1, 'origins compare without case'],
    ['/v1/agents', undef, 0, 204, 'GET, HEAD, POST, OPTIONS', 0,
     'plain OPTIONS'],
    ['/v1/agents', $ORIGIN, 0, 204, 'GET, HEAD, POST, OPTIONS', 1,
     'OPTIONS with Origin, no preflight'],
    ['/v1/system/health', $ORIGIN, 1, 204, 'GET, HEAD, OPTIONS', 1,
     'preflight of health'],
) {
    my ($path, $origin, $pre, $st, $methods, $cors, $name) = @$case;
    my %hd;
    $hd{Origin} = $origin if defined $origin;
    $hd{'Access-Control-Request-Method'} = 'POST' if $pre;
    $hd{'Access-Control-Request-Headers'} = 'authorization,content-type'
        if $pre;
    $r = $t->req(OPTIONS => $path, headers => \%hd);
    my $x = $r->{headers};
    is($r->{status}, $st, "OPTIONS $name: $st");
    is($r->{body}, '', "OPTIONS $name: no body");
    if ($cors) {
        is($x->{'access-control-allow-origin'}, $origin,
           "OPTIONS $name: Allow-Origin");
        is($x->{vary}, 'Origin', "OPTIONS $name: Vary");
    } else {
        ok(!exists $x->{'access-control-allow-origin'},
           "OPTIONS $name: no Allow-Origin");
    }
    if ($cors && $pre) {
        is($x->{'access-control-allow-methods'}, $methods,
           "OPTIONS $name: Allow-Methods");
        my %ah = map { lc($_) => 1 }
                 split /\s*,\s*/, $x->{'access-control-allow-headers'} // '';
        ok(!grep({ !$ah{lc $_} } qw(Authorization Content-Type
                                    Idempotency-Key Last-Event-ID
                                    X-Project-Id)),
           "OPTIONS $name: Allow-Headers");
        like($x->{'access-control-max-age'} // '', qr/^\d+$/,
             "OPTIONS $name: Max-Age");
        ok(!exists $x->{allow}, "OPTIONS $name: no Allow");
    } else {
        is($x->{allow}, $methods, "OPTIONS $name: Allow");
        ok(!exists $x->{'access-control-allow-methods'},
           "OPTIONS $name: no Allow-Methods");
    }
}

$r = $t->req(OPTIONS => '/v1/nowhere', headers => { Origin => $ORIGIN });
is($r->{status}, 404, 'OPTIONS of an unknown path: 404');
is(code_of($r), 'NOT_FOUND', 'OPTIONS of an unknown path: envelope');

# responses expose the headers a browser reads, errors included
my $EXPOSE = qr/^\QX-Request-Id, Retry-After, Idempotent-Replayed, \E
                 \QX-RateLimit-Limit, X-RateLimit-Remaining, \E
                 \QX-RateLimit-Reset, RateLimit, RateLimit-Policy\E$/x;
for my $case (
    # [method, path, token, body, status, name]
    [GET  => '/v1/projects', $TOK, undef, 200, 'a list'],
    [GET  => '/v1/projects', undef, undef, 401, 'a 401 envelope'],
    [GET  => '/v1/nowhere', $TOK, undef, 404, 'a 404 envelope'],
    [POST => '/v1/projects', $TOK, 'y' x 3000, 413,
     'nginx\'s own 413, replaced'],
    [GET  => '/v1/system/health', undef, undef, 200, 'health'],
) {
    my ($m, $p, $tok, $body, $st, $name) = @$case;
    $r = api($m => $p, token => $tok, headers => { Origin => $ORIGIN,
             ($body ? ('Content-Type' => 'application/json') : ()) },
             (defined $body ? (body => $body) : ()));
    is($r->{status}, $st, "CORS $name: $st");
    is($r->{headers}{'access-control-allow-origin'}, $ORIGIN,
       "CORS $name: Allow-Origin");
    like($r->{headers}{'access-control-expose-headers'} // '', $EXPOSE,
         "CORS $name: Expose-Headers");
    is($r->{headers}{vary}, 'Origin', "CORS $name: Vary");
}

$r = api(GET => '/v1/projects', headers => { Origin => 'http://evil.example' });
ok(!exists $r->{headers}{'access-control-allow-origin'},
   'CORS: no Allow-Origin for another origin');

###########################################################################
# A small store: full map -> health 503; rate limited requests counted;
# no creor_cors: OPTIONS answers Allow only

my $small = CreorTest->new(
    store_opts    => 'map_size=256k sync=off',
    rate_limits   => 1,
    http_config   => 'creor_rate_limit off; creor_rate_limit_anonymous 3r/m;',
    server_config => 'location = /metrics { creor_metrics; }',
);
my $sb = $small->bootstrap;

$r = $small->req(OPTIONS => '/v1/runs', headers => {
    Origin => $ORIGIN, 'Access-Control-Request-Method' => 'POST' });
is($r->{status}, 204, 'no creor_cors: preflight 204');
is($r->{headers}{allow}, 'GET, HEAD, POST, OPTIONS', 'no creor_cors: Allow');
ok(!grep(/^access-control-|^vary$/, keys %{$r->{headers}}),
   'no creor_cors: no CORS headers');

my @st = map { $small->req(GET => '/v1/projects', token => 'creor_bad')->{status} }
         1 .. 5;
ok((grep { $_ == 429 } @st) >= 1, 'anonymous limit: 429s') or diag "@st";
my ($sm, $smr);
wait_until(sub { ($sm, $smr) = scrape($small);
               ($sm->{creor_ratelimited_total} // -1)
               == grep { $_ == 429 } @st }, 5);
is($sm->{creor_ratelimited_total}, scalar(grep { $_ == 429 } @st),
   'metrics: creor_ratelimited_total');

my $full;
for my $i (1 .. 400) {
    $r = $small->req(POST => '/v1/projects', token => $sb->{token},
                     json => { name => "p$i", description => 'd' x 250 });
    if ($r->{status} != 201) { $full = $r; last }
}
is($full && $full->{status}, 503, 'the small store fills up');
is($full && code_of($full), 'STORE_FULL', 'STORE_FULL');
sleep 1.1;
$r = $small->req(GET => '/v1/system/health');
is($r->{status}, 503, 'health: 503 with a full store') or diag($r->{body});
is($r->{json}{status}, 'fail', 'health: status fail');
ok($r->{json}{checks}{store}{status} eq 'fail'
   || $r->{json}{checks}{store_map}{status} eq 'fail',
   'health: the store check says why');
promtool_ok($smr->{body}, 'small instance');

$small->finish;

###########################################################################
# The sample Prometheus configuration and alert rules of docs/operations.md

for my $cmd ('check config prometheus.yml', 'check rules creor-alerts.yml',
             'test rules creor-alerts.test.yml') {
    my $out = `cd $CreorTest::ROOT/conf/prometheus && promtool $cmd 2>&1`;
    is($? >> 8, 0, "promtool $cmd") or diag($out);
}

###########################################################################
# Configuration

for my $case (
    # [http, location, ok, message, name]
    ['creor_cors off;', '', 1, undef, 'creor_cors off'],
    ['creor_cors *;', '', 1, undef, 'creor_cors *'],
    ['', 'creor_api; creor_cors https://a.example:8443 http://b;', 1, undef,
     'two origins in a location'],
    ['creor_cors ftp://a.example;', '', 0, qr/creor_cors/, 'another scheme'],
    ['creor_cors http://a.example/;', '', 0, qr/creor_cors/, 'a path'],
    ['creor_cors http://a; creor_cors http://b;', '', 0, qr/creor_cors/,
     'duplicate'],
    ['creor_metrics;', '', 0, qr/creor_metrics/, 'creor_metrics in http'],
) {
    my ($http, $loc, $ok, $re, $name) = @$case;
    my ($rc, $out) = $t->conf_test('creor_store ' . $t->conf_dir
                                   . "/store; $http", $loc);
    if ($ok) {
        is($rc, 0, "nginx -t: $name") or diag($out);
    } else {
        isnt($rc, 0, "nginx -t fails: $name");
        like($out, $re, "nginx -t: $name names the directive");
    }
}

$t->finish;
$ex->stop;
done_testing;
