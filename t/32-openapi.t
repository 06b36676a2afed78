#!/usr/bin/perl
# docs/openapi.yaml against the linter, the route table and the live server:
# it lints clean with @redocly/cli; every route of src/pipeline/creor_router.c is
# documented and every documented operation is a route; every operation,
# sent its documented example, answers with a documented status, the
# documented content type and headers, and a body valid under its schema;
# without credentials and with an unknown id it answers a documented error.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use JSON::PP;
use CreorTest;
use CreorApi qw(api_use api_ok wait_run);
use CreorExecutor;
use B ();

my $ROOT    = $CreorTest::ROOT;
my $REDOCLY = "$ROOT/t/node_modules/.bin/redocly";
my $SPEC    = "$ROOT/docs/openapi.yaml";

ok(-x $REDOCLY, '@redocly/cli is installed (t/run.sh: npm ci in t/)')
    or BAIL_OUT('no redocly');

###########################################################################
# 1. lint

my $lint = qx{$REDOCLY lint $SPEC 2>&1};
is($? >> 8, 0, 'redocly lint: no error') or diag($lint);
unlike($lint, qr/You have \d+ warnings?/, 'redocly lint: no warning')
    or diag($lint);

my $tmp = tempdir(CLEANUP => 1);
my $out = qx{$REDOCLY bundle $SPEC --dereferenced --ext json -o $tmp/openapi.json 2>&1};
is($? >> 8, 0, 'redocly bundle') or diag($out);
my $api = decode_json(CreorTest::_slurp("$tmp/openapi.json") // '{}');

###########################################################################
# 2. the route table and the document, both ways

my %METHOD = (CREOR_GET => 'get', CREOR_POST => 'post',
              CREOR_PATCH => 'patch', CREOR_DELETE => 'delete');

my $router = CreorTest::_slurp("$ROOT/src/pipeline/creor_router.c") // '';
my %routes;
while ($router =~ /\{\s*(CREOR_[A-Z]+),\s*"(\/v1[^"]*)"/g) {
    my ($m, $path) = ($METHOD{$1}, $2);
    next unless $m;
    $path =~ s/:(\w+)/{$1}/g;
    $routes{"$m $path"} = 1;
}
cmp_ok(scalar keys %routes, '>=', 20, 'routes read from the route table');

my %documented;
for my $path (keys %{$api->{paths}}) {
    for my $m (grep { /^(?:get|post|patch|delete|put)$/ }
               keys %{$api->{paths}{$path}}) {
        $documented{"$m $path"} = $api->{paths}{$path}{$m};
    }
}

# the table names its path ids by kind (":agent"), the document as the
# seeds do ("{appId}"): paths are compared by shape
sub shape { (my $s = $_[0]) =~ s/\{\w+\}/{}/g; return $s }
my %route_shape = map { shape($_) => 1 } keys %routes;
my %doc_shape   = map { shape($_) => 1 } keys %documented;

is_deeply([sort grep { !$doc_shape{$_} } keys %route_shape], [],
          'every route in the table is documented');
is_deeply([sort grep { !$route_shape{$_} } keys %doc_shape], [],
          'every documented operation is a route');

###########################################################################
# 3. the live server

my $ex = CreorExecutor->new;
my $t = CreorTest->new(
    rate_limits   => 1,
    http_config   => 'creor_rate_limit 6000r/m burst=1000; '
                   . 'creor_rate_limit_anonymous 6000r/m; '
                   . 'creor_executor /_exec; '
                   . 'creor_provider demo /_demo; creor_webhook_proxy /_wh; '
                   . 'creor_webhook_allow_private on;',
    server_config => $ex->location . ' location /_wh { internal; proxy_pass '
                   . '$creor_webhook_scheme://$creor_webhook_addr$creor_webhook_uri; '
                   . 'proxy_set_header Host $creor_webhook_host; } '
                   . q|location = /_demo { internal; |
                   . q|default_type application/json; |
                   . q|return 200 '{"object":"chat.completion","choices":[],|
                   . q|"usage":{"prompt_tokens":1,"completion_tokens":1}}'; }|);
my $tok = $t->bootstrap->{token};

api_use($t, token => $tok);

my $project = api_ok(POST => '/v1/projects', json => { name => 'openapi' })->{id};
my %P = (headers => { 'X-Project-Id' => $project });
my $agent   = api_ok(POST => '/v1/agents', %P,
                  json => { name => 'a', model => 'x/y' })->{id};
my $agent_d = api_ok(POST => '/v1/agents', %P,
                  json => { name => 'gone', model => 'x/y' })->{id};
my $key     = api_ok(POST => '/v1/api-keys', json => { name => 'k' })->{id};
my $key_d   = api_ok(POST => '/v1/api-keys', json => { name => 'gone' })->{id};

sub run_of {
    my (%inputs) = @_;
    return api_ok(POST => '/v1/runs',
               json => { appId => $agent, inputs => {%inputs} })->{id};
}

my $run      = run_of(script => 'ok');
my $run_hang = run_of(script => 'hang', hang => 60);
my $run_in   = run_of(script => 'input');

my $boundary = 'openapi-boundary';
my $mp = $t->req(POST => "/v1/apps/$agent/runs", token => $tok,
    headers => { 'Content-Type' => "multipart/form-data; boundary=$boundary" },
    body => "--$boundary\r\nContent-Disposition: form-data; name=\"inputs\""
          . "\r\n\r\n{\"script\":\"ok\"}\r\n--$boundary\r\n"
          . "Content-Disposition: form-data; name=\"files\"; "
          . "filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
          . "--$boundary--\r\n");
my $run_f = $mp->{json}{id} // 'none';

# the run once its status matches $re (within 10 s), or undef
sub reached {
    my ($id, $re) = @_;
    my $run = wait_run($id, sub { ($_[0]{status} // '') =~ $re });
    return ($run->{status} // '') =~ $re ? $run : undef;
}

ok(reached($run, qr/^completed$/), 'fixture: a completed run');
ok(reached($run_in, qr/^awaiting_input$/), 'fixture: a run awaiting input');
ok(reached($run_hang, qr/^running$/), 'fixture: a running run');
my $file = (reached($run_f, qr/^completed$/) // {})->{files}[0]{id} // 'none';
like($file, qr/^file_/, 'fixture: a run with a file');

# an endpoint on this nginx, a delivery that succeeded (redeliverable)
my $wh   = api_ok(POST => '/v1/webhooks',
               json => { url => 'http://127.0.0.1:' . $t->port . '/plain' })->{id};
my $wh_d = api_ok(POST => '/v1/webhooks',
               json => { url => 'https://example.com/gone' })->{id};
my $whd  = api_ok(POST => "/v1/webhooks/$wh/test", json => {})->{id};
my $delivered;
for (1 .. 200) {
    $delivered = grep { $_->{status} eq 'succeeded' }
                 @{api_ok(GET => "/v1/webhooks/$wh/deliveries")->{data}};
    last if $delivered;
    select(undef, undef, undef, 0.05);
}
ok($delivered, 'fixture: a delivered webhook');

# the ids each operation's path names; the default, then per operation
my %ID = (
    '{id}'     => { projects => $project, 'api-keys' => $key,
                    agents => $agent, runs => $run, webhooks => $wh },
    '{deliveryId}' => $whd,
    '{appId}'  => $agent,
    '{runId}'  => $run,
    '{fileId}' => $file,
);
my %ID_OF = (
    revokeApiKey => { 'api-keys' => $key_d },
    deleteAgent  => { agents => $agent_d },
    cancelRun    => { runs => $run_hang },
    signalRun    => { runs => $run_in },
    getRunFile   => { runs => $run_f },
    deleteWebhook => { webhooks => $wh_d },
);

sub fill_path {
    my ($path, $op, $unknown) = @_;
    my ($coll) = $path =~ m{^/v1/([^/]+)/};
    $path =~ s{(\{\w+\})}{
        my $p = $1;
        my $v = ref $ID{$p} ? ($ID_OF{$op}{$coll} // $ID{$p}{$coll})
                            : $ID{$p};
        $unknown ? ($v =~ s/_.*/_01zzzzzzzzzzzzzzzzzzzzzzzz/r) : $v;
    }ge;
    return $path;
}

# ids in an example are replaced by this test's, by their prefix
sub fill_example {
    my ($v) = @_;
    return [map { fill_example($_) } @$v] if ref $v eq 'ARRAY';
    return { map { $_ => fill_example($v->{$_}) } keys %$v }
        if ref $v eq 'HASH';
    return $v unless defined $v && !ref $v;
    return $agent   if $v =~ /^agent_/;
    return $project if $v =~ /^proj_/;
    return $v;
}

###########################################################################
# A JSON Schema check of the subset the document uses.

sub type_ok {
    my ($v, $type) = @_;
    return !defined $v                              if $type eq 'null';
    return ref $v eq 'HASH'                         if $type eq 'object';
    return ref $v eq 'ARRAY'                        if $type eq 'array';
    return JSON::PP::is_bool($v)                    if $type eq 'boolean';
    return 0 if !defined $v || ref $v;
    my $num = B::svref_2object(\$v)->FLAGS & (B::SVp_IOK() | B::SVp_NOK());
    return $num && $v == int($v)                    if $type eq 'integer';
    return $num                                     if $type eq 'number';
    return !$num                                    if $type eq 'string';
    return 0;
}

sub schema_errors {
    my ($v, $s, $at) = @_;
    my @e;
    return () unless ref $s eq 'HASH';
    push @e, schema_errors($v, $_, $at) for @{$s->{allOf} // []};
    if (defined(my $type = $s->{type})) {
        my @types = ref $type ? @$type : ($type);
        return ("$at: not " . join('|', @types))
            unless grep { type_ok($v, $_) } @types;
    }
    if (exists $s->{const}) {
        my $c = $s->{const};
        my $same = JSON::PP::is_bool($c)
                   ? JSON::PP::is_bool($v) && !$v == !$c
                   : defined $v && !ref $v && "$v" eq "$c";
        push @e, "$at: not $c" unless $same;
    }
    if ($s->{enum} && defined $v && !ref $v) {
        push @e, "$at: $v not in enum" unless grep { $_ eq $v } @{$s->{enum}};
    }
    if (defined $s->{pattern} && defined $v && !ref $v) {
        push @e, "$at: '$v' !~ $s->{pattern}" unless $v =~ /$s->{pattern}/;
    }
    if (ref $v eq 'HASH') {
        exists $v->{$_} or push @e, "$at.$_: missing"
            for @{$s->{required} // []};
        for my $k (keys %{$s->{properties} // {}}) {
            push @e, schema_errors($v->{$k}, $s->{properties}{$k}, "$at.$k")
                if exists $v->{$k};
        }
    }
    if (ref $v eq 'ARRAY' && $s->{items}) {
        push @e, schema_errors($v->[$_], $s->{items}, "$at\[$_\]")
            for 0 .. $#$v;
    }
    return @e;
}

###########################################################################
# each documented operation: GETs first, deletions last

my %ORDER = (get => 0, post => 1, patch => 1, delete => 2);
my @ops = sort { $ORDER{$a->[0]} <=> $ORDER{$b->[0]} || $a->[1] cmp $b->[1] }
          map { [split(/ /, $_, 2)] } keys %documented;

my %CONDITIONAL = map { lc $_ => 1 }
    qw(Idempotent-Replayed Retry-After Content-Disposition);

for my $op (@ops) {
    my ($m, $path) = @$op;
    my $doc  = $documented{"$m $path"};
    my $name = $doc->{operationId} // "$m $path";
    my $url  = fill_path($path, $name);
    my %req  = (token => $tok);

    if (grep { ($_->{name} // '') eq 'X-Project-Id' }
        @{$doc->{parameters} // []}) {
        $req{headers} = { 'X-Project-Id' => $project };
    }
    my $body = $doc->{requestBody}{content}{'application/json'};
    $req{json} = fill_example($body->{example} // {}) if $body;
    $req{json} //= {} if $m eq 'post' || $m eq 'patch';

    my $r = $t->req(uc $m => $url, %req);
    my $res = $doc->{responses}{$r->{status}};
    ok($res, "$name: status $r->{status} is documented") or diag($r->{body});
    like($r->{status}, qr/^2/, "$name: the documented example succeeds")
        or diag($r->{body});
    next unless $res;

    my ($ctype) = sort keys %{$res->{content} // {}};    # json first
    my $got = $r->{headers}{'content-type'} // '';
    if ($ctype && $ctype ne 'application/octet-stream') {
        like($got, qr/^\Q$ctype\E/, "$name: Content-Type $ctype");
    }
    for my $h (sort keys %{$res->{headers} // {}}) {
        next if $CONDITIONAL{lc $h};
        ok(defined $r->{headers}{lc $h}, "$name: header $h");
    }

    if (($ctype // '') eq 'application/json') {
        my @e = schema_errors($r->{json}, $res->{content}{$ctype}{schema},
                              'body');
        is_deeply(\@e, [], "$name: body matches the schema")
            or diag($r->{body});
    }

    # the documented errors: no credentials, an id that does not exist

    my $anon = $t->req(uc $m => $url, ($req{json} ? (json => $req{json})
                                                  : ()));
    ok($doc->{responses}{$anon->{status}},
       "$name: without a key, $anon->{status} is documented");

    if ($path =~ /\{/) {
        my $nf = $t->req(uc $m => fill_path($path, $name, 1), %req);
        is($nf->{status}, 404, "$name: an unknown id is 404");
        ok($doc->{responses}{404}, "$name: 404 is documented");
    }
}

$t->req(POST => "/v1/runs/$run_hang/cancel", token => $tok);
$t->finish;
$ex->stop;
done_testing;
