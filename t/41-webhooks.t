#!/usr/bin/perl
# Webhooks (SPEC 11): the endpoints API; events written with the change
# they report (runs' terminal states and awaiting_input, agents' status)
# and a run's own webhookUrl; bodies byte-identical to
# JSON.stringify(JSON.parse(body)); both signatures, verified by the
# standardwebhooks package and by seed 000's code in a Node receiver
# (t/lib/webhook-receiver.js); retries on a short schedule, Retry-After,
# 410, redirects not followed, timeouts, dead letters and redelivery; a
# hanging endpoint delays no other; deliveries survive kill -9 of the
# workers and a restart; SSRF refused at registration and, through a DNS
# server of this test that changes its answer, at delivery on the address
# actually connected to.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(_exit);
use Time::HiRes qw(time sleep);
use CreorTest;
use CreorApi;
use CreorExecutor;
use CreorReceiver;

my $rx = CreorReceiver->new;
my $ex = CreorExecutor->new;
my $logs = tempdir(CLEANUP => 1);
chmod 0777, $logs;

# the documented location (SPEC 11.4), as it is, logging where it went
my $WH_LOCATION = 'location /_wh { internal; '
    . 'proxy_pass $creor_webhook_scheme://$creor_webhook_addr$creor_webhook_uri; '
    . 'proxy_set_header Host $creor_webhook_host; proxy_http_version 1.1; '
    . 'proxy_ssl_server_name on; proxy_ssl_name $creor_webhook_host; '
    . "log_subrequest on; access_log $logs/wh.log wh; }";
my $LOG_FORMAT = q{log_format wh '$creor_webhook_addr $creor_webhook_host }
               . q{$creor_webhook_uri $upstream_addr $status';};

my $t = CreorTest->new(
    http_config => 'creor_webhook_proxy /_wh; creor_webhook_allow_private on; '
                 . 'creor_webhook_retry_schedule 1s 2s; '
                 . 'creor_webhook_timeout 2s; creor_executor /_exec; '
                 . $LOG_FORMAT,
    server_config => "$WH_LOCATION " . $ex->location);
my $A = $t->bootstrap(name => 'Hooks');
my $B = $t->bootstrap(name => 'Other');

api_use($t, token => $A->{token});

# an endpoint on the receiver; its secrets are handed to the receiver
sub endpoint {
    my ($path, @events) = @_;
    my $r = api(POST => '/v1/webhooks',
                json => { url => $rx->url($path),
                          events => @events ? \@events : ['*'],
                          description => "to $path" });
    is($r->{status}, 201, "endpoint $path created") or diag($r->{body});
    $rx->secrets($path => [$r->{json}{secret}]);
    return $r->{json};
}

sub deliveries {
    my ($wh, $q) = @_;
    return @{ api(GET => "/v1/webhooks/$wh/deliveries" . ($q // ''))
              ->{json}{data} // [] };
}

sub received {
    my ($path, $sub) = @_;
    return grep { $_->{path} eq $path && (!$sub || $sub->($_)) } $rx->log;
}

sub all_verified {
    my (@got) = @_;
    return @got && !grep { !$_->{verified}{standard} || !$_->{verified}{seed}
                           || !$_->{verified}{reserialized} } @got;
}

###########################################################################
# 1. The API

my $ok = endpoint('/ok', 'webhook.test');
like($ok->{id}, qr/^wh_[0-9a-z]{26}$/, 'create: a wh_ id');
like($ok->{secret}, qr/^whsec_[A-Za-z0-9+\/]{43}=$/,
     'create: whsec_ and base64 of 32 bytes');
is_deeply($ok->{events}, ['webhook.test'], 'create: events');
ok($ok->{active}, 'create: active by default');

my $got = api(GET => "/v1/webhooks/$ok->{id}")->{json};
is($got->{url}, $rx->url('/ok'), 'get: url');
ok(!exists $got->{secret}, 'get: the secret is shown once');
ok((grep { $_->{id} eq $ok->{id} } @{api(GET => '/v1/webhooks')->{json}{data}}),
   'list: the endpoint');
is(scalar @{api(GET => '/v1/webhooks', token => $B->{token})->{json}{data}},
   0, 'list: another organization sees none');
err_is(api(GET => "/v1/webhooks/$ok->{id}", token => $B->{token}),
       404, 'NOT_FOUND', undef, "another organization's endpoint");

my $p = api(PATCH => "/v1/webhooks/$ok->{id}",
            json => { description => 'patched', active => JSON::PP::false });
is($p->{json}{description}, 'patched', 'patch: description');
ok(!$p->{json}{active}, 'patch: inactive');
ok(api(PATCH => "/v1/webhooks/$ok->{id}", json => { active => JSON::PP::true })
   ->{json}{active}, 'patch: active again');

my $ro = $t->req(POST => '/v1/api-keys', token => $A->{token},
                 json => { name => 'ro', role => 'read_only' })->{json}{token};
my $user = $t->req(POST => '/v1/api-keys', token => $A->{token},
                   json => { name => 'u', role => 'user' })->{json}{token};

# [name, method => path, {json => body, token}, status, code, param]
my $EX = 'https://example.com/';
my $WH = "/v1/webhooks/$ok->{id}";
my @INVALID = (400, 'VALIDATION_ERROR');
cases_ok([
    ['no url',           POST => '/v1/webhooks', { json => {} },
                         400, 'MISSING_FIELD', 'url'],
    ['ftp url',          POST => '/v1/webhooks',
                         { json => { url => 'ftp://example.com/' } },
                         @INVALID, 'url'],
    ['userinfo',         POST => '/v1/webhooks',
                         { json => { url => 'https://u:p@example.com/' } },
                         @INVALID, 'url'],
    ['no host',          POST => '/v1/webhooks',
                         { json => { url => 'https:///x' } }, @INVALID, 'url'],
    ['port 0',           POST => '/v1/webhooks',
                         { json => { url => 'https://example.com:0/' } },
                         @INVALID, 'url'],
    ['url a number',     POST => '/v1/webhooks', { json => { url => 5 } },
                         @INVALID, 'url'],
    ['unknown event',    POST => '/v1/webhooks',
                         { json => { url => $EX, events => ['nope'] } },
                         @INVALID, 'events'],
    ['events a string',  POST => '/v1/webhooks',
                         { json => { url => $EX, events => 'run.failed' } },
                         @INVALID, 'events'],
    ['active a string',  POST => '/v1/webhooks',
                         { json => { url => $EX, active => 'yes' } },
                         @INVALID, 'active'],
    ['unknown field',    POST => '/v1/webhooks',
                         { json => { url => $EX, secret => 'x' } },
                         400, 'UNKNOWN_PARAMETER', 'secret'],
    ['long description', POST => '/v1/webhooks',
                         { json => { url => $EX, description => 'd' x 300 } },
                         @INVALID, 'description'],
    ['patch bad url',    PATCH => $WH, { json => { url => 'x' } },
                         @INVALID, 'url'],
    ['test with a body field', POST => "$WH/test", { json => { a => 1 } },
                         400, 'UNKNOWN_PARAMETER', 'a'],
    ['bad status filter', GET => "$WH/deliveries?status=x", {},
                         @INVALID, 'status'],
    ['unknown delivery', POST => "$WH/deliveries/whd_01"
                                 . ('z' x 24) . '/redeliver', { json => {} },
                         404, 'NOT_FOUND'],
    ['read_only key',    GET => '/v1/webhooks', { token => $ro },
                         403, 'PERMISSION_DENIED'],
    ['user key',         POST => '/v1/webhooks',
                         { json => { url => $EX }, token => $user },
                         403, 'PERMISSION_DENIED'],
]);

# at most 16 endpoints per organization
my $C = $t->bootstrap(name => 'Many');
my @made = map {
    $t->req(POST => '/v1/webhooks', token => $C->{token},
            json => { url => "https://example.com/$_" })->{status}
} 1 .. 17;
is_deeply([@made[0 .. 15]], [(201) x 16], '16 endpoints');
is($made[16], 400, 'the 17th is refused');

# the run-webhook secret: read, rotated
my $rs = api(GET => '/v1/webhooks/run-secret')->{json};
like($rs->{secret}, qr/^whsec_/, 'run secret');
is(api(GET => '/v1/webhooks/run-secret')->{json}{secret}, $rs->{secret},
   'run secret: the same on each read');
my $rs2 = api(POST => '/v1/webhooks/run-secret/rotate', json => {})->{json};
isnt($rs2->{secret}, $rs->{secret}, 'run secret: rotated');
ok($rs2->{previousSecretExpiresAt}, 'run secret: the old one still signs');

###########################################################################
# 2. A test event: delivered, verified both ways, listed with its attempt

my $d = api(POST => "/v1/webhooks/$ok->{id}/test", json => {});
is($d->{status}, 202, 'test event accepted');
is($d->{json}{status}, 'pending', 'test event: pending');
my @in = wait_until(sub { received('/ok', sub {
    $_[0]{event}{event_id} eq $d->{json}{eventId} }) }, 10);
is(scalar @in, 1, 'test event received once');
ok(all_verified(@in), 'test event: standardwebhooks, seed 000 and '
                      . 'JSON.stringify(JSON.parse(body)) agree')
    or diag(explain \@in);
is($in[0]{headers}{'webhook-id'}, $d->{json}{eventId}, 'webhook-id is the event id');
like($in[0]{headers}{'creor-signature'}, qr/^[0-9a-f]{64}$/, 'Creor-Signature: lowercase hex');
is($in[0]{headers}{host}, '127.0.0.1:' . $rx->port, 'Host: the URL host');
is($in[0]{event}{type}, 'webhook.test', 'type webhook.test');
is_deeply([sort keys %{$in[0]{event}}], [qw(data event_id timestamp type)],
          'body: event_id, type, timestamp, data');

my ($listed) = wait_until(sub { grep { $_->{status} eq 'succeeded' }
                                deliveries($ok->{id}) }, 5);
ok($listed, 'delivery listed as succeeded');
is($listed && $listed->{attempts}[0]{statusCode}, 200, 'attempt: status 200');
ok($listed && defined $listed->{attempts}[0]{durationMs}, 'attempt: duration');
is(scalar(deliveries($ok->{id}, '?status=dead')), 0, 'filter: no dead delivery');

# rotation: both signatures for 24h
my $old = $ok->{secret};
my $rot = api(POST => "/v1/webhooks/$ok->{id}/rotate-secret", json => {})->{json};
isnt($rot->{secret}, $old, 'rotate: a new secret');
ok($rot->{previousSecretExpiresAt}, 'rotate: the old one expires later');
for my $case (['the old secret only', [$old], 0], ['the new secret only', [$rot->{secret}], 1]) {
    my ($name, $secrets, $seed) = @$case;
    $rx->secrets('/ok' => $secrets);
    my $e = api(POST => "/v1/webhooks/$ok->{id}/test", json => {})->{json}{eventId};
    my ($g) = wait_until(sub { received('/ok', sub { $_[0]{event}{event_id} eq $e }) }, 10);
    ok($g && $g->{verified}{standard}, "rotation, receiver with $name: standardwebhooks verifies");
    is(scalar(() = ($g->{headers}{'webhook-signature'} // '') =~ /v1,/g), 2,
       "rotation: two signatures in webhook-signature");
    is($g && $g->{verified}{seed} ? 1 : 0, $seed,
       "rotation, $name: Creor-Signature is the new secret's");
}

###########################################################################
# 3. Events of runs and agents, and a run's own webhookUrl

my $all = endpoint('/ok-all', qw(run.completed run.failed run.cancelled
                                 run.awaiting_input agent.started
                                 agent.completed agent.failed));
my $proj = api(POST => '/v1/projects', json => { name => 'p' })->{json}{id};
my $agent = api(POST => '/v1/agents', headers => { 'X-Project-Id' => $proj },
                json => { name => 'a', model => 'x/y' })->{json}{id};

# values JSON.stringify writes otherwise than they were sent
my $odd = '{"appId":"' . $agent . '","webhookUrl":"' . $rx->url('/own')
        . '","inputs":{"script":"ok","n":[1.0,1e2,0.1,-0,1E-7,123456789012345678901234,'
        . '5e-324,1.5e300],"s":"a/b\u001f\u007f\u00e9\u2028 \ud83d\ude00"}}';
$rx->secrets('/own' => [$rs2->{secret}]);
my $run = $t->req(POST => '/v1/runs', token => $A->{token}, body => $odd,
                  headers => { 'Content-Type' => 'application/json' })->{json}{id};
ok($run, 'a run with odd numbers and strings') or diag($odd);

my %want = ('run.completed' => 1, 'agent.started' => 1, 'agent.completed' => 1);
my @ev = wait_until(sub {
    my @g = received('/ok-all', sub { ($_[0]{event}{data}{id} // '') eq $run
                                      || ($_[0]{event}{data}{runId} // '') eq $run });
    (grep { $want{$_->{event}{type}} } @g) >= 3 ? @g : () }, 15);
is_deeply([sort map { $_->{event}{type} } @ev],
          [sort keys %want], 'run and agent events, once each');
ok(all_verified(@ev), 'run events: verified, bodies re-serialize byte for byte')
    or diag(explain [map { $_->{body} } @ev]);
my ($rc) = grep { $_->{event}{type} eq 'run.completed' } @ev;
is($rc && $rc->{event}{data}{status}, 'completed', 'run.completed: data is the run');
is($rc && $rc->{event}{data}{inputs}{s}, "a/b\x{1f}\x{7f}\x{e9}\x{2028} \x{1f600}",
   'run.completed: strings intact');

my @own = wait_until(sub { received('/own') }, 10);
is(scalar @own, 1, "the run's webhookUrl got one event");
is($own[0]{event}{type}, 'run.completed', "the run's webhookUrl: run.completed");
ok(all_verified(@own), "the run's webhookUrl: signed with the run-webhook secret")
    or diag(explain \@own);

# failed, awaiting input, cancelled: [script, event, then]
for my $c (['executor_fail', 'run.failed'], ['input', 'run.awaiting_input'],
           ['hang', 'run.cancelled', 'cancel']) {
    my ($script, $type, $then) = @$c;
    my $id = api(POST => '/v1/runs', json => { appId => $agent,
                 inputs => { script => $script, hang => 30 } })->{json}{id};
    if ($then) {
        wait_until(sub { api(GET => "/v1/runs/$id")->{json}{status} eq 'running' }, 10);
        api(POST => "/v1/runs/$id/cancel", json => {});
    }
    my @g = wait_until(sub { received('/ok-all', sub {
        $_[0]{event}{type} eq $type && $_[0]{event}{data}{id} eq $id }) }, 15);
    is(scalar @g, 1, "$script: $type delivered once");
    ok(all_verified(@g), "$script: verified");
}
ok((received('/ok-all', sub { $_[0]{event}{type} eq 'agent.failed' })),
   'agent.failed delivered');

###########################################################################
# 4. Failures: [path, what is checked]

my %ep = map { $_ => endpoint($_, 'webhook.test') }
         qw(/fail-1 /500 /410 /429-3 /redirect /hang /ok-fast);
my $t0 = time;
my %evt = map { $_ => api(POST => "/v1/webhooks/$ep{$_}{id}/test", json => {})
                      ->{json} } keys %ep;

# a hanging endpoint delays no other
my @fast = wait_until(sub { received('/ok-fast') }, 5);
ok(@fast && $fast[0]{at} / 1000 - $t0 < 1.5,
   'an endpoint that hangs delays no other');

# nor does a backlog of one: 100 deliveries to a hanging endpoint, then one
# to another endpoint
my $slow = endpoint('/hang', 'webhook.test');
api(POST => "/v1/webhooks/$slow->{id}/test", json => {}) for 1 .. 100;
cmp_ok(api(GET => '/v1/system/status')->{json}{webhook_queue_depth}, '>=', 90,
       'system status: the backlog is in webhook_queue_depth');
my $late = endpoint('/ok-late', 'webhook.test');
my $t1 = time;
api(POST => "/v1/webhooks/$late->{id}/test", json => {});
my @late = wait_until(sub { received('/ok-late') }, 5);
ok(@late && $late[0]{at} / 1000 - $t1 < 1.5,
   'a backlog to a hanging endpoint delays no other endpoint')
    or diag(@late ? $late[0]{at} / 1000 - $t1 : 'never');
api(DELETE => "/v1/webhooks/$slow->{id}");

my ($f1) = wait_until(sub { my @g = received('/fail-1'); @g >= 2 ? \@g : () }, 10);
is(scalar(@{$f1 // []}), 2, '500 then 200: two tries');
is(scalar(grep { $_->{event}{event_id} eq $evt{'/fail-1'}{eventId} } @{$f1 // []}), 2,
   'the same event_id on every try');
my ($s1) = wait_until(sub { grep { $_->{status} eq 'succeeded' }
                            deliveries($ep{'/fail-1'}{id}) }, 5);
is_deeply([map { $_->{statusCode} } @{$s1->{attempts} // []}], [500, 200],
          'attempts listed: 500, 200');

my ($dead) = wait_until(sub { grep { $_->{status} eq 'dead' }
                              deliveries($ep{'/500'}{id}) }, 15);
ok($dead, '500 every time: dead after the schedule');
is(scalar @{$dead->{attempts} // []}, 3, 'dead: 1 try + 2 retries');
my @t500 = map { $_->{at} } received('/500');
ok(@t500 == 3 && $t500[1] - $t500[0] >= 800 && $t500[2] - $t500[1] >= 1700,
   'retries follow the schedule (1s, 2s, +-10%)') or diag("@t500");
is(scalar(deliveries($ep{'/500'}{id}, '?status=dead')), 1, 'filter: dead');

my $re = api(POST => "/v1/webhooks/$ep{'/500'}{id}/deliveries/$dead->{id}/redeliver",
             json => {});
is($re->{status}, 202, 'redeliver');
my @again = wait_until(sub { my @g = received('/500'); @g >= 4 ? @g : () }, 10);
is($again[3]{event}{event_id}, $dead->{eventId}, 'redelivered with the same event_id');
err_is(api(POST => "/v1/webhooks/$ep{'/500'}{id}/deliveries/$dead->{id}/redeliver",
           json => {}), 409, 'DELIVERY_PENDING', undef, 'redeliver while pending');

my ($gone) = wait_until(sub {
    my $w = api(GET => "/v1/webhooks/$ep{'/410'}{id}")->{json};
    $w->{active} ? () : $w }, 10);
ok($gone, '410 disables the endpoint');
like($gone->{disabledReason} // '', qr/410/, '410: the reason is shown');
is(scalar(received('/410')), 1, '410: not retried');

my @t429 = wait_until(sub { my @g = received('/429-3'); @g >= 2 ? @g : () }, 10);
ok(@t429 >= 2 && $t429[1]{at} - $t429[0]{at} >= 2700,
   'Retry-After: 3 pushes the retry past the 1s schedule')
    or diag(join ' ', map { $_->{at} } @t429);

my @redir = wait_until(sub { my @g = received('/redirect'); @g >= 2 ? @g : () }, 10);
ok(@redir >= 2, 'a 302 is a failure, retried');
is(scalar(received('/ok', sub { $_[0]{event}{event_id} eq $evt{'/redirect'}{eventId} })),
   0, 'the redirect is not followed');

my ($hung) = wait_until(sub { grep { @{$_->{attempts}} && $_->{attempts}[0]{error} }
                              deliveries($ep{'/hang'}{id}) }, 10);
is($hung && $hung->{attempts}[0]{error}, 'timeout', 'creor_webhook_timeout ends a hang');

###########################################################################
# 5. kill -9 of the workers, and a restart, with deliveries pending

api(PATCH => "/v1/webhooks/$ep{'/hang'}{id}", json => { url => $rx->url('/hang') });
my @held = map { api(POST => "/v1/webhooks/$ep{'/hang'}{id}/test", json => {})
                 ->{json}{eventId} } 1 .. 6;
wait_until(sub { my @g = grep { my $e = $_->{event}{event_id}; grep { $_ eq $e } @held }
                         received('/hang'); @g >= 4 ? @g : () }, 10);
kill 'KILL', $t->worker_pids;
sleep 0.3;
$rx->secrets('/after' => [$ep{'/hang'}{secret}]);
is(api(PATCH => "/v1/webhooks/$ep{'/hang'}{id}", json => { url => $rx->url('/after') })
   ->{status}, 200, 'kill -9: the new workers answer');

my @more = map { api(POST => "/v1/webhooks/$ep{'/hang'}{id}/test", json => {})
                 ->{json}{eventId} } 1 .. 3;
$t->stop;
$t->no_alerts_ok('kill -9: no [alert] but the killed workers\'',
                 ignore => qr/exited on signal 9/);
truncate $t->error_log, 0;
$t->start;
my @want = (@held, @more);
my @after = wait_until(sub {
    my %seen = map { $_->{event}{event_id} => 1 } received('/after');
    (grep { !$seen{$_} } @want) ? () : 1 }, 30);
ok(@after, 'kill -9 and a restart: every event arrives')
    or diag(explain [map { $_->{event}{event_id} } received('/after')]);
ok(all_verified(received('/after')), 'kill -9 and a restart: signatures valid');

###########################################################################
# 6. SSRF: refused at registration, and at delivery on the address used

my $dns = dns_server();
my $s = CreorTest->new(
    http_config => "creor_webhook_proxy /_wh; creor_webhook_retry_schedule 1s 2s; "
                 . "creor_webhook_timeout 2s; resolver 127.0.0.1:$dns->{port} "
                 . "ipv6=off; resolver_timeout 2s; $LOG_FORMAT",
    server_config => $WH_LOCATION =~ s/wh\.log/wh2.log/r);
my $S = $s->bootstrap;

for my $url (qw(http://127.0.0.1/ http://10.1.2.3/ http://172.16.0.1/
                http://192.168.1.1/ http://169.254.169.254/latest/meta-data
                http://100.64.0.1/ http://0.0.0.0/ http://[::1]/ http://[fd00::1]/
                http://[fe80::1]/ http://[::ffff:127.0.0.1]/ http://224.0.0.1/
                http://localhost/ http://a.localhost/
                http://metadata.google.internal/)) {
    err_is($s->req(POST => '/v1/webhooks', token => $S->{token}, json => { url => $url }),
           400, 'PRIVATE_WEBHOOK_URL', 'url', "registration: $url");
}

# a run's own webhookUrl: refused at the run's creation as at a
# registration (names resolved: private.test and mixed.test below), and no
# run is made; [webhookUrl, code]
my (undef, $sagent) = project_agent($s, $S->{token},
                                   check => 'SSRF instance: an agent');
for my $c (['http://127.0.0.1:8080/hook',             'PRIVATE_WEBHOOK_URL'],
           ['http://10.1.2.3/',                       'PRIVATE_WEBHOOK_URL'],
           ['http://169.254.169.254/latest/meta-data', 'PRIVATE_WEBHOOK_URL'],
           ['http://[::1]/',                          'PRIVATE_WEBHOOK_URL'],
           ['http://[::ffff:127.0.0.1]/',             'PRIVATE_WEBHOOK_URL'],
           ['https://localhost/',                     'PRIVATE_WEBHOOK_URL'],
           ['http://metadata.google.internal/',       'PRIVATE_WEBHOOK_URL'],
           ['http://private.test/hook',               'PRIVATE_WEBHOOK_URL'],
           ['https://mixed.test:8443/hook',           'PRIVATE_WEBHOOK_URL'],
           ['http://user:pw@example.com/',            'VALIDATION_ERROR'],
           ['http:///no-host',                        'VALIDATION_ERROR'],
           ['http://example.com:99999/',              'VALIDATION_ERROR'],
           ['ftp://example.com/',                     'VALIDATION_ERROR']) {
    my ($url, $code) = @$c;
    err_is($s->req(POST => '/v1/runs', token => $S->{token},
                   json => { appId => $sagent, webhookUrl => $url }),
           400, $code, 'webhookUrl', "run webhookUrl: $url");
}
is(scalar @{ $s->req(GET => '/v1/runs', token => $S->{token})->{json}{data} // [1] },
   0, 'run webhookUrl: no run was made');

# names: refused at registration when they resolve to a private address
for my $name (qw(private.test mixed.test)) {
    err_is($s->req(POST => '/v1/webhooks', token => $S->{token},
                   json => { url => "http://$name/" }),
           400, 'PRIVATE_WEBHOOK_URL', 'url', "registration: $name resolves privately");
}

# and at delivery: rebind.test is public on its first two answers, then
# 127.0.0.1 (the receiver); late.test does not resolve at registration,
# then is 127.0.0.1
for my $name (qw(rebind.test late.test)) {
    my $url = "http://$name:" . $rx->port . "/ssrf-$name";
    my $w = $s->req(POST => '/v1/webhooks', token => $S->{token},
                    json => { url => $url, events => ['webhook.test'] });
    is($w->{status}, 201, "$name: accepted at registration") or diag($w->{body});
    $s->req(POST => "/v1/webhooks/$w->{json}{id}/test", token => $S->{token}, json => {});
    my ($dl) = wait_until(sub {
        grep { $_->{status} eq 'dead' }
        @{$s->req(GET => "/v1/webhooks/$w->{json}{id}/deliveries",
                  token => $S->{token})->{json}{data}} }, 20);
    ok($dl, "$name: dead after its tries");
    is(scalar(received("/ssrf-$name")), 0, "$name: nothing reached 127.0.0.1");
    my @errors = map { $_->{error} // '' } @{$dl->{attempts} // []};
    ok((grep { $_ eq 'PRIVATE_WEBHOOK_URL' } @errors),
       "$name: a try saw 127.0.0.1 and was refused") or diag("@errors");

    # [address, Host] of every try that left
    my @to = $s->error_log_text =~ /webhook delivery \S+ to (\S+), Host (\S+)/g;
    my @sent;
    push @sent, [splice @to, 0, 2] while @to;
    @sent = grep { $_->[1] =~ /^\Q$name\E:/ } @sent;
    if ($name eq 'rebind.test') {
        ok(@sent && !(grep { $_->[0] ne '192.0.2.1:' . $rx->port
                             || $_->[1] ne 'rebind.test:' . $rx->port } @sent),
           'rebind.test: the tries that left went to the checked public '
           . 'address, with the name as Host') or diag(explain \@sent);
        err_is($s->req(PATCH => "/v1/webhooks/$w->{json}{id}", token => $S->{token},
                       json => { url => 'http://private.test/' }),
               400, 'PRIVATE_WEBHOOK_URL', 'url', 'patch: a name that resolves privately');
    } else {
        is(scalar @sent, 0, 'late.test: no try left');
    }
}

is($s->req(GET => '/v1/system/status', token => $S->{token})->{json}{webhook_queue_depth},
   0, 'system status: no queue once every delivery is dead');
$s->finish('SSRF instance: no [alert] or [crit]');
kill 'TERM', $dns->{pid};
waitpid $dns->{pid}, 0;

# an address allowed when registered is refused at delivery once
# creor_webhook_allow_private is off
$t->reload(http_config => $t->{http_config} =~ s/creor_webhook_allow_private on; //r);
my $before = () = received('/ok');
my $private = api(POST => "/v1/webhooks/$ok->{id}/test", json => {})->{json}{id};
my ($refused) = wait_until(sub {
    grep { $_->{id} eq $private } deliveries($ok->{id}, '?status=dead') }, 20);
ok($refused, 'allow_private off: the delivery to 127.0.0.1 is dead');
is_deeply([map { $_->{error} } @{ $refused->{attempts} // [] }],
          [('PRIVATE_WEBHOOK_URL') x 3], 'allow_private off: each try refused');
is(scalar(() = received('/ok')), $before, 'allow_private off: nothing sent');

$t->finish('no [alert], [crit] or sanitizer report');
$ex->stop;
$rx->stop;
done_testing;

###########################################################################
# A DNS server for A queries, TTL 0: rebind.test is 192.0.2.1 twice, then
# 127.0.0.1; late.test is not found once, then 127.0.0.1; private.test
# 127.0.0.1; mixed.test 192.0.2.1 and 10.0.0.1.

sub dns_server {
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                     Proto => 'udp') or die "udp: $!";
    my $port = $sock->sockport;
    my $pid = fork // die "fork: $!";
    return { pid => $pid, port => $port } if $pid;

    my %asked;
    while (1) {
        my $from = $sock->recv(my $q, 512) // next;
        my ($id, $flags, $qd) = unpack 'n n n', $q;
        my ($pos, @labels) = (12);
        while ((my $l = ord substr($q, $pos, 1)) > 0) {
            push @labels, substr($q, $pos + 1, $l);
            $pos += $l + 1;
        }
        my $name = lc join '.', @labels;
        my $question = substr($q, 12, $pos + 5 - 12);
        my $qtype = unpack 'n', substr($q, $pos + 1, 2);
        my @a = $qtype != 1 ? ()
              : $name eq 'rebind.test' ? ($asked{$name}++ >= 2 ? '127.0.0.1' : '192.0.2.1')
              : $name eq 'late.test' ? ($asked{$name}++ ? '127.0.0.1' : ())
              : $name eq 'private.test' ? ('127.0.0.1')
              : $name eq 'mixed.test' ? ('192.0.2.1', '10.0.0.1')
              : ();
        my $rcode = @a ? 0 : 3;
        my $ans = join '', map { pack('n n n N n', 0xc00c, 1, 1, 0, 4)
                                 . pack('C4', split /\./) } @a;
        $sock->send(pack('n n n n n n', $id, 0x8180 | $rcode, 1, scalar @a, 0, 0)
                    . $question . $ans, 0, $from);
    }
    _exit(0);
}
