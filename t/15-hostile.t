#!/usr/bin/perl
# The tenancy matrix and hostile traffic, generated from the route table
# (src/pipeline/creor_router.c), so a new route is covered without anyone adding it
# here.  For every route: another organization's ids are 404, another
# project's ids for a project-bound key 404, another app for an app-bound
# key 403 APP_SCOPE_RESTRICTED, a read_only key on a write 403; malformed
# JSON, wrong types, huge values, bad encodings in body, path and query
# are a 4xx in the JSON envelope, never a 5xx or an [alert].
#
# A route whose path names a kind of id this file has no fixture for
# fails below: add the kind to %KIND.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi;

###########################################################################
# The route table, parsed from the C source

my $src = slurp("$CreorTest::ROOT/src/pipeline/creor_router.c");

my %arrays;    # static const char *name[] = { "a", "b", NULL };
while ($src =~ /static\s+const\s+char\s+\*(\w+)\[\]\s*=\s*\{(.*?)\};/sg) {
    $arrays{$1} = [$2 =~ /"([^"]*)"/g];
}

my ($table) = $src =~ /creor_route_t\s+creor_routes\[\]\s*=\s*\{(.*?)\n\};/s
    or BAIL_OUT('no creor_routes[] table in src/pipeline/creor_router.c');

my %METHOD = (CREOR_GET => 'GET', CREOR_POST => 'POST',
              CREOR_PATCH => 'PATCH', CREOR_DELETE => 'DELETE');
my @FIELDS = qw(method pattern name handler perm perm_name query flags
                action creates body_ids);

my @routes;
while ($table =~ /\{\s*([^{}]*?)\s*\}/sg) {
    my @f = map { s/^\s+|\s+$//gr =~ s/^"(.*)"$/$1/sr } split /,/, $1;
    next if $f[0] eq '0';
    my %rt;
    @rt{@FIELDS} = @f;
    $rt{http}  = $METHOD{$rt{method}};
    $rt{kinds} = [$rt{pattern} =~ /:(\w+)/g];
    $rt{query_names} = $rt{query} eq 'NULL' ? [] : $arrays{$rt{query}} // [];
    $rt{body} = [map { [split /:/] }
                 @{$rt{body_ids} eq 'NULL' ? [] : $arrays{$rt{body_ids}} // []}];
    $rt{write} = ($rt{action} // '') ne 'CREOR_DO_READ';
    push @routes, \%rt;
}
cmp_ok(scalar @routes, '>=', 20, 'route table parsed: ' . scalar(@routes) . ' routes');

# every route declares its scope (nginx refuses to start otherwise, too)
for my $rt (@routes) {
    ok($rt->{http}, "$rt->{name}: a known method ($rt->{method})");
    like($rt->{action} // '', qr/^CREOR_DO_(?:READ|CREATE|UPDATE|DELETE)$/,
         "$rt->{name}: declares its action");
    like($rt->{creates} // '', qr/^(?:0|CREOR_ID_\w+)$/,
         "$rt->{name}: declares what it creates");
}

###########################################################################
# Fixtures: org A (the owner) with two projects, agents, a run, a key;
# org B; keys bound to A's second project and to A's second agent.

my $t = CreorTest->new(store_opts => 'sync=off');
my $A = $t->bootstrap(name => 'Owner');
my $B = $t->bootstrap(name => 'Foreign');

api_use($t, token => $A->{token});

sub made {
    my ($r, $what) = @_;
    ok($r->{status} >= 200 && $r->{status} < 300, "setup: $what")
        or BAIL_OUT("setup failed: $what: $r->{status} $r->{body}");
    return $r->{json};
}

my $PA  = made(api(POST => '/v1/projects', json => { name => 'pa' }), 'project')->{id};
my $PA2 = made(api(POST => '/v1/projects', json => { name => 'pa2' }), 'project 2')->{id};
my %ag = map {
    $_ => made(api(POST => '/v1/agents', headers => { 'X-Project-Id' => $PA },
                   json => { name => $_, model => 'a/b' }), "agent $_")->{id}
} qw(ag ag2);
my $RN = made(api(POST => '/v1/runs', json => { appId => $ag{ag} }), 'run')->{id};
my $KY = made(api(POST => '/v1/api-keys',
                  json => { name => 'ky', role => 'user', projectId => $PA }),
              'key')->{id};

my $WH = made(api(POST => '/v1/webhooks',
                  json => { url => 'https://example.com/hook' }), 'webhook')->{id};
my $WHD = made(api(POST => "/v1/webhooks/$WH/test"), 'webhook delivery')->{id};

my %TOKEN = (
    owner   => $A->{token},
    foreign => $B->{token},
    project => made(api(POST => '/v1/api-keys', json => { name => 'bound',
                        role => 'admin', projectId => $PA2 }), 'project-bound key')->{token},
    app     => made(api(POST => '/v1/api-keys', json => { name => 'app',
                        role => 'admin', appId => $ag{ag2} }), 'app-bound key')->{token},
    ro      => made(api(POST => '/v1/api-keys', json => { name => 'ro',
                        role => 'read_only' }), 'read_only key')->{token},
);

# Each kind of id: A's fixture, and what a key bound to another app of
# A's first project gets for it (the first id that is not "visible"
# decides a route's answer).
my $ULID = '01' . ('a' x 24);
my %KIND = (
    project => { id => $PA,           app => 'visible' },
    key     => { id => $KY,           app => [404, 'NOT_FOUND'] },
    agent   => { id => $ag{ag},       app => [403, 'APP_SCOPE_RESTRICTED'] },
    run     => { id => $RN,           app => [403, 'APP_SCOPE_RESTRICTED'] },
    file    => { id => "file_$ULID",  app => 'visible' },
    webhook => { id => $WH,           app => [404, 'NOT_FOUND'] },
    delivery => { id => $WHD,         app => 'visible' },
);

# What a create of each kind is for a bound key: [status, code, param]
my %CREATE = (
    project => { project => [403, 'PERMISSION_DENIED'],
                 app     => [403, 'PERMISSION_DENIED'] },
    webhook => { project => [403, 'PERMISSION_DENIED'],
                 app     => [403, 'PERMISSION_DENIED'] },
    agent   => { app     => [403, 'APP_SCOPE_RESTRICTED'],
                 project => [403, 'PERMISSION_DENIED', 'projectId',
                             { 'X-Project-Id' => $PA }],
                 foreign => [404, 'NOT_FOUND', 'projectId',
                             { 'X-Project-Id' => $PA }] },
);

# Body ids: a reference to an existing resource, or (for a route that
# creates a key) the new key's binding.  [who, kind, value, status, code]
my @REFERENCE = (
    [foreign => 404, 'NOT_FOUND'],
    [project => 404, 'NOT_FOUND'],
    [app     => 403, 'APP_SCOPE_RESTRICTED', 'agent'],
);
my @BINDING = (
    [foreign => project => $PA,     404, 'NOT_FOUND'],
    [foreign => agent   => $ag{ag}, 404, 'NOT_FOUND'],
    [project => project => $PA,     403, 'PERMISSION_DENIED'],
    [project => project => undef,   403, 'PERMISSION_DENIED'],
    [project => agent   => $ag{ag}, 404, 'NOT_FOUND'],
    [app     => agent   => $ag{ag}, 403, 'APP_SCOPE_RESTRICTED'],
    [app     => agent   => undef,   403, 'PERMISSION_DENIED'],
);

sub path_of {
    my ($rt, %swap) = @_;
    (my $p = $rt->{pattern}) =~ s{:(\w+)}{
        exists $swap{$1} ? $swap{$1}
        : $KIND{$1} ? $KIND{$1}{id}
        : die "no fixture for the id kind '$1' of route $rt->{name}: add it to %KIND\n"
    }ge;
    return $p;
}

sub send_route {
    my ($rt, $who, %o) = @_;
    my $body = $rt->{http} =~ /^(?:POST|PATCH)$/ ? ($o{json} // {}) : undef;
    return api($rt->{http} => $o{path} // path_of($rt), token => $TOKEN{$who},
               (defined $body ? (json => $body) : ()),
               headers => $o{headers} // {});
}

###########################################################################
# Tenancy matrix

for my $rt (@routes) {
    my @kinds = @{$rt->{kinds}};
    my $n = "$rt->{http} $rt->{pattern}";

    if (@kinds) {
        err_is(send_route($rt, 'foreign'), 404, 'NOT_FOUND', undef,
                    "another org's ids: $n");
        err_is(send_route($rt, 'project'), 404, 'NOT_FOUND', undef,
                    "another project's ids, project-bound key: $n");

        my ($first) = grep { ref $KIND{$_}{app} } @kinds;
        if ($first) {
            err_is(send_route($rt, 'app'), @{$KIND{$first}{app}}, undef,
                        "another app's $first, app-bound key: $n");
        }

        # the owner passes the check (a file is A's run's, but not there)
        if (!$rt->{write}) {
            my $r = send_route($rt, 'owner');
            is($r->{status}, (grep { $_ eq 'file' } @kinds) ? 404 : 200,
               "owner: $n") or diag($r->{body});
        }
    }

    if ($rt->{write}) {
        err_is(send_route($rt, 'ro'), 403, 'PERMISSION_DENIED', undef,
                    "read_only key: $n");
    }

    (my $creates = $rt->{creates}) =~ s/^CREOR_ID_//;
    for my $who (sort keys %{$CREATE{lc $creates} // {}}) {
        my ($st, $code, $param, $h) = @{$CREATE{lc $creates}{$who}};
        err_is(send_route($rt, $who, headers => $h), $st, $code, $param,
                    "$who key creates a " . lc($creates) . ": $n");
    }

    next if @kinds;    # body ids of routes whose path names none

    for my $b (@{$rt->{body}}) {
        my ($field, $kind) = @$b;
        if ($rt->{creates} eq 'CREOR_ID_KEY') {
            for my $c (grep { $_->[1] eq $kind } @BINDING) {
                my ($who, undef, $value, $st, $code) = @$c;
                err_is(send_route($rt, $who,
                                       json => { name => 'x', $field => $value }),
                            $st, $code, $field,
                            "$who key, $field " . ($value // 'null') . ": $n");
            }
            next;
        }
        for my $c (@REFERENCE) {
            my ($who, $st, $code, $only) = @$c;
            next if $only && $only ne $kind;
            err_is(send_route($rt, $who,
                                   json => { $field => $KIND{$kind}{id} }),
                        $st, $code, $field, "$who key, A's $kind as $field: $n");
        }
    }
}

# nothing the matrix sent changed A's objects
is(api(GET => "/v1/agents/$ag{ag}")->{status}, 200, 'the agent is still there');
is(api(GET => "/v1/api-keys/$KY")->{json}{revokedAt}, undef, 'the key is not revoked');

###########################################################################
# Hostile requests on every route, sent by the owner with good ids.
# [name, applies to, request changes, status (or 'any' 4xx), code]

my $huge = 'x' x (512 * 1024);
my @HOSTILE = (
    ['id %ff%fe',          'ids',  { id => '%ff%fe' },           404, 'NOT_FOUND'],
    ['id raw \xff',        'ids',  { id => "agent_\xff\xfe" },   404, 'NOT_FOUND'],
    ['id 4000 bytes',      'ids',  { id => 'a' x 4000 },         404, 'NOT_FOUND'],
    ['id prefix only',     'ids',  { id => 'run_' },             404, 'NOT_FOUND'],
    ['id of another kind', 'ids',  { id => 'other' },            404, 'NOT_FOUND'],
    ['query bad UTF-8 value', 'all', { query => 'limit=%ff%fe' }, 400, undef],
    ['query bad UTF-8 name',  'all', { query => '%c3%28=1' },     400, undef],
    ['query unknown',      'all',  { query => 'zzz=1' },         400, 'UNKNOWN_PARAMETER'],
    ['query given twice',  'all',  { query => 'zzz=1&zzz=2' },   400, undef],
    ['query 40 params',    'all',  { query => join '&', map { "q$_=1" } 1 .. 40 },
                                                                  400, undef],
    ['malformed JSON',     'body', { body => '{"a":' },          400, 'INVALID_JSON'],
    ['JSON array',         'body', { body => '[1,2]' },          400, 'VALIDATION_ERROR'],
    ['JSON string',        'body', { body => '"x"' },            400, 'VALIDATION_ERROR'],
    ['JSON number',        'body', { body => '5' },              400, 'VALIDATION_ERROR'],
    ['JSON null',          'body', { body => 'null' },           400, 'VALIDATION_ERROR'],
    ['trailing garbage',   'body', { body => '{} x' },           400, 'INVALID_JSON'],
    ['invalid UTF-8',      'body', { body => qq({"name":"\xff\xfe"}) },
                                                                  400, 'INVALID_JSON'],
    ['overlong UTF-8',     'body', { body => qq({"name":"\xc0\xaf"}) },
                                                                  400, 'INVALID_JSON'],
    ['lone surrogate',     'body', { body => '{"name":"\ud800"}' }, 'any', undef],
    ['deep nesting',       'body', { body => '[' x 20000 },      400, undef],
    ['huge string',        'body', { body => qq({"zzz":"$huge"}) }, 'any', undef],
    ['huge number',        'body', { body => '{"zzz":1e999999}' }, 'any', undef],
    ['name of wrong type', 'body', { body => '{"name":{"a":[1]}}' }, 'any', undef],
    ['object for every id field', 'body', { body => 'IDS' },     'any', undef],
    ['Idempotency-Key with a control', 'body', { idem => "a\x01b" },
                                                                  400, 'INVALID_IDEMPOTENCY_KEY'],
    ['Idempotency-Key of 300 bytes', 'body', { idem => 'k' x 300 },
                                                                  400, 'INVALID_IDEMPOTENCY_KEY'],
    ['text/plain',         'body', { body => '{}', ct => 'text/plain' },
                                                                  415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['body over the limit', 'body', { body => '{"a":"' . ('y' x (1100 * 1024)) . '"}' },
                                                                  413, 'BODY_TOO_LARGE'],
);

my %OTHER_KIND = (project => $ag{ag}, agent => $RN, run => $KY, key => $PA,
                  file => $ag{ag}, webhook => $RN, delivery => $ag{ag});

for my $rt (@routes) {
    my $n = "$rt->{http} $rt->{pattern}";
    my $has_body = $rt->{http} =~ /^(?:POST|PATCH)$/;
    for my $c (@HOSTILE) {
        my ($name, $when, $x, $st, $code) = @$c;
        next if $when eq 'ids' && !@{$rt->{kinds}};
        next if $when eq 'body' && !$has_body;

        my $path;
        if ($when eq 'ids') {
            # the last id of the path: every check before it passes
            my $kind = $rt->{kinds}[-1];
            $path = path_of($rt, $kind => $x->{id} eq 'other'
                                         ? $OTHER_KIND{$kind} : $x->{id});
        } else {
            $path = path_of($rt);
        }
        $path .= "?$x->{query}" if defined $x->{query};

        my $body = $has_body ? '{}' : undef;
        if (defined $x->{body}) {
            $body = $x->{body} eq 'IDS'
                  ? '{' . join(',', map { qq("$_->[0]":{}) } @{$rt->{body}},
                                    ['projectId'], ['appId']) . '}'
                  : $x->{body};
        }
        my $r = $t->req($rt->{http} => $path, token => $A->{token},
                        (defined $body
                         ? (body => $body, headers => {
                                'Content-Type' => $x->{ct} // 'application/json',
                                (defined $x->{idem}
                                 ? ('Idempotency-Key' => $x->{idem}) : ()) })
                         : ()));
        err_is($r, $st eq 'any' ? '4xx' : $st, $code, undef, "$name: $n");
    }

    # each id the body names, of a wrong type
    for my $b (@{$rt->{body}}) {
        my $field = $b->[0];
        for my $bad (5, 1.5, [], {}, JSON::PP::true, '', 'x' x 3000) {
            my $shown = ref $bad ? JSON::PP->new->allow_nonref->encode($bad)
                      : length $bad > 20 ? length($bad) . ' bytes' : "'$bad'";
            err_is(api($rt->{http} => path_of($rt),
                            json => { name => 'n', $field => $bad }),
                        [], undef, undef, "$field $shown: $n");
        }
    }
}

is(api(GET => "/v1/agents/$ag{ag}")->{status}, 200, 'the agent survived the hostile requests');
is(api(GET => "/v1/runs/$RN")->{status}, 200, 'the run survived the hostile requests');

$t->finish('no [alert], [crit] or sanitizer report');
done_testing;
