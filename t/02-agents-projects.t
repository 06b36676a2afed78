#!/usr/bin/perl
# Projects (create/list/get, validation) and agents (create with project
# context, validation, defaults, get, patch, delete, list filters, page mode,
# HEAD).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::IP;
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;

my $ULID   = qr/[0-9a-hjkmnp-tv-z]{26}/;
my $AGENT  = qr/^agent_$ULID$/;
my $TS     = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z$/;
my $TRUE   = JSON::PP::true;
my $FALSE  = JSON::PP::false;
my $UNKNOWN_ULID = '01m00000000000000000000000';

my $t = CreorTest->new(store_opts => 'sync=off');
api_use($t);

###########################################################################
# Helpers

# Raw HTTP exchange on a fresh connection; returns everything the server
# sent until it closed the connection.
sub raw_exchange {
    my ($text) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $t->port,
                                Timeout => 5) or die "connect: $@";
    binmode $s;
    print $s $text;
    my $buf = '';
    my $deadline = time + 5;
    while (time < $deadline) {
        my $n = sysread($s, $buf, 65536, length $buf);
        last unless $n;
    }
    close $s;
    return $buf;
}

my $b = $t->bootstrap(name => 'Agents Org');
my $A = $b->{token};
my $org = $b->{org};

###########################################################################
# Projects

my $r = $t->req(POST => '/v1/projects', token => $A,
                json => {name => 'Alpha', description => 'first project'});
is($r->{status}, 201, 'POST /v1/projects 201') or diag $r->{body};
my $p1 = $r->{json};
fields_ok($p1, [id             => qr/^proj_$ULID$/, 'project id format'],
               [object         => 'project',        'object project'],
               [name           => 'Alpha',          'project name'],
               [description    => 'first project',  'project description'],
               [organizationId => $org,             'project organizationId'],
               [createdAt      => $TS,  'project createdAt RFC 3339 UTC']);

$r = $t->req(POST => '/v1/projects', token => $A, json => {name => 'B' x 127});
is($r->{status}, 201, 'project name of 127 bytes accepted') or diag $r->{body};
my $p2 = $r->{json};
is($p2->{description}, undef, 'project description defaults to null');

$r = $t->req(GET => "/v1/projects/$p1->{id}", token => $A);
is($r->{status}, 200, 'GET /v1/projects/:id');
is_deeply($r->{json}, $p1, 'GET project returns the created object');

$r = $t->req(GET => '/v1/projects', token => $A);
is($r->{status}, 200, 'GET /v1/projects');
is($r->{json}{object}, 'list', 'project list object');
is_deeply([map { $_->{id} } @{$r->{json}{data} // []}], [$p2->{id}, $p1->{id}],
          'project list newest first');
is($r->{json}{has_more}, $FALSE, 'project list has_more false');
is($r->{json}{next_cursor}, undef, 'project list next_cursor null');

$r = $t->req(GET => '/v1/projects?limit=1', token => $A);
is(scalar @{$r->{json}{data} // []}, 1, 'project list limit=1');
is($r->{json}{has_more}, $TRUE, 'project list limit=1 has_more');
like($r->{json}{next_cursor} // '', qr/^cur_/, 'project list next_cursor');
$r = $t->req(GET => "/v1/projects?limit=1&cursor=$r->{json}{next_cursor}", token => $A);
is_deeply([map { $_->{id} } @{$r->{json}{data} // []}], [$p1->{id}], 'project list page 2');
is($r->{json}{has_more}, $FALSE, 'project list page 2 has_more false');

$r = $t->req(GET => '/v1/projects?order=asc', token => $A);
is_deeply([map { $_->{id} } @{$r->{json}{data} // []}], [$p1->{id}, $p2->{id}],
          'project list order=asc');

err_is($t->req(GET => "/v1/projects/proj_$UNKNOWN_ULID", token => $A),
       404, 'NOT_FOUND', undef, 'GET unknown project');
err_is($t->req(GET => '/v1/projects?limit=0', token => $A),
       400, 'VALIDATION_ERROR', 'limit', 'project list limit=0');
err_is($t->req(GET => '/v1/projects?foo=1', token => $A),
       400, 'UNKNOWN_PARAMETER', 'foo', 'project list unknown query param');

my @bad_projects = (
    [{},                                  'MISSING_FIELD',     'name',        'name missing'],
    [{name => ''},                        'VALIDATION_ERROR',  'name',        'name empty'],
    [{name => 'x' x 128},                 'VALIDATION_ERROR',  'name',        'name 128 bytes'],
    [{name => 7},                         'VALIDATION_ERROR',  'name',        'name number'],
    [{name => undef},                     'VALIDATION_ERROR',  'name',        'name null'],
    [{name => 'ok', description => 7},    'VALIDATION_ERROR',  'description', 'description number'],
    [{name => 'ok', description => {}},   'VALIDATION_ERROR',  'description', 'description object'],
    [{name => 'ok', color => 'red'},      'UNKNOWN_PARAMETER', 'color',       'unknown field'],
);
for my $c (@bad_projects) {
    my ($body, $code, $param, $name) = @$c;
    err_is($t->req(POST => '/v1/projects', token => $A, json => $body),
           400, $code, $param, "create project: $name");
}
err_is($t->req(POST => '/v1/projects', token => $A, body => '[1]',
               headers => {'Content-Type' => 'application/json'}),
       400, 'VALIDATION_ERROR', undef, 'create project: body not an object');

$r = $t->req(GET => '/v1/projects', token => $A);
is(scalar @{$r->{json}{data} // []}, 2, 'failed creations created no projects');

# Another org cannot see these projects.
my $b2 = $t->bootstrap(name => 'Other Org');
err_is($t->req(GET => "/v1/projects/$p1->{id}", token => $b2->{token}),
       404, 'NOT_FOUND', undef, "another org's project is 404");
$r = $t->req(GET => '/v1/projects', token => $b2->{token});
is_deeply($r->{json}{data}, [], 'other org lists no projects');
$r = $t->req(POST => '/v1/projects', token => $b2->{token}, json => {name => 'Theirs'});
my $foreign_proj = $r->{json}{id};

###########################################################################
# Agent creation: project context

my %P1 = (headers => {'X-Project-Id' => $p1->{id}});

$r = $t->req(POST => '/v1/agents', token => $A, %P1,
             json => {name => 'Agent One', model => 'openai/gpt-4o'});
is($r->{status}, 201, 'create agent with X-Project-Id') or diag $r->{body};
my $a1 = $r->{json};
like($a1->{id}, $AGENT, 'agent id format');
is($a1->{object}, 'agent', 'object agent');
is($a1->{name}, 'Agent One', 'name');
is($a1->{model}, 'openai/gpt-4o', 'model');
is($a1->{status}, 'idle', 'default status idle');
is($a1->{description}, undef, 'default description null');
is($a1->{systemPrompt}, undef, 'default systemPrompt null');
is($a1->{repository}, undef, 'default repository null');
is(ref $a1->{settings}, 'HASH', 'settings is an object');
is($a1->{settings}{contextWindowSize}, 20, 'default settings.contextWindowSize 20');
is($a1->{organizationId}, $org, 'organizationId');
is($a1->{projectId}, $p1->{id}, 'projectId from X-Project-Id');
like($a1->{createdAt} // '', $TS, 'createdAt RFC 3339 UTC');
like($a1->{updatedAt} // '', $TS, 'updatedAt RFC 3339 UTC');
is($a1->{updatedAt}, $a1->{createdAt}, 'updatedAt equals createdAt on create');

# project-bound key
$r = $t->req(POST => '/v1/api-keys', token => $A,
             json => {name => 'p2 bound', role => 'user', projectId => $p2->{id}});
is($r->{status}, 201, 'project-bound key created');
my $BOUND = $r->{json}{token};

$r = $t->req(POST => '/v1/agents', token => $BOUND,
             json => {name => 'Bound agent', model => 'anthropic/claude-3'});
is($r->{status}, 201, 'create agent with project-bound key') or diag $r->{body};
my $a_bound = $r->{json};
is($a_bound->{projectId}, $p2->{id}, 'agent in the key project');

$r = $t->req(POST => '/v1/agents', token => $BOUND,
             headers => {'X-Project-Id' => $p2->{id}},
             json => {name => 'Bound agent 2', model => 'anthropic/claude-3'});
is($r->{status}, 201, 'bound key + matching X-Project-Id') or diag $r->{body};
my $a_bound2 = $r->{json};
{
    my %AB = (json => {name => 'x', model => 'a/b'});
    cases_ok([
        ['bound key + other X-Project-Id', POST => '/v1/agents',
            {token => $BOUND, %P1, %AB},               403, 'PERMISSION_DENIED'],
        ['create agent without project context', POST => '/v1/agents',
            {token => $A, %AB},                        400, 'MISSING_FIELD', 'projectId'],
        ['unknown X-Project-Id', POST => '/v1/agents',
            {token => $A, %AB, headers => {'X-Project-Id' => "proj_$UNKNOWN_ULID"}},
                                                       404, 'NOT_FOUND', 'projectId'],
        ["another org's project in X-Project-Id", POST => '/v1/agents',
            {token => $A, %AB, headers => {'X-Project-Id' => $foreign_proj}},
                                                       404, 'NOT_FOUND', 'projectId'],
        ['garbage X-Project-Id', POST => '/v1/agents',
            {token => $A, %AB, headers => {'X-Project-Id' => 'garbage'}},
                                                       404, 'NOT_FOUND', 'projectId'],
    ]);
}

###########################################################################
# Agent creation: validation

my @bad_agents = (
    [{model => 'a/b'},                      'MISSING_FIELD',     'name',  'name missing'],
    [{name => 'x'},                         'MISSING_FIELD',     'model', 'model missing'],
    [{name => 5, model => 'a/b'},           'VALIDATION_ERROR',  'name',  'name number'],
    [{name => undef, model => 'a/b'},       'VALIDATION_ERROR',  'name',  'name null'],
    [{name => '', model => 'a/b'},          'VALIDATION_ERROR',  'name',  'name empty'],
    [{name => 'n' x 257, model => 'a/b'},   'VALIDATION_ERROR',  'name',  'name 257 bytes'],
    [{name => 'x', model => 5},             'VALIDATION_ERROR',  'model', 'model number'],
    [{name => 'x', model => 'gpt-4o'},      'VALIDATION_ERROR',  'model', 'model without slash'],
    [{name => 'x', model => 'openai/'},     'VALIDATION_ERROR',  'model', 'model empty name'],
    [{name => 'x', model => '/gpt'},        'VALIDATION_ERROR',  'model', 'model empty provider'],
    [{name => 'x', model => 'a/b', description => 5},    'VALIDATION_ERROR', 'description',  'description number'],
    [{name => 'x', model => 'a/b', systemPrompt => []},  'VALIDATION_ERROR', 'systemPrompt', 'systemPrompt array'],
    [{name => 'x', model => 'a/b', repository => $TRUE}, 'VALIDATION_ERROR', 'repository',   'repository bool'],
    [{name => 'x', model => 'a/b', settings => 'hot'},   'VALIDATION_ERROR', 'settings',     'settings string'],
    [{name => 'x', model => 'a/b', settings => [1]},     'VALIDATION_ERROR', 'settings',     'settings array'],
    [{name => 'x', model => 'a/b', settings => {temperature => 3}},
        'VALIDATION_ERROR', 'settings.temperature', 'settings.temperature 3'],
    [{name => 'x', model => 'a/b', settings => {temperature => -0.1}},
        'VALIDATION_ERROR', 'settings.temperature', 'settings.temperature negative'],
    [{name => 'x', model => 'a/b', settings => {temperature => '1'}},
        'VALIDATION_ERROR', 'settings.temperature', 'settings.temperature string'],
    [{name => 'x', model => 'a/b', settings => {maxTokens => 0}},
        'VALIDATION_ERROR', 'settings.maxTokens', 'settings.maxTokens 0'],
    [{name => 'x', model => 'a/b', settings => {maxTokens => 1.5}},
        'VALIDATION_ERROR', 'settings.maxTokens', 'settings.maxTokens fraction'],
    [{name => 'x', model => 'a/b', settings => {toolsEnabled => 1}},
        'VALIDATION_ERROR', 'settings.toolsEnabled', 'settings.toolsEnabled number'],
    [{name => 'x', model => 'a/b', settings => {allowedToolCategories => 'web'}},
        'VALIDATION_ERROR', 'settings.allowedToolCategories', 'allowedToolCategories string'],
    [{name => 'x', model => 'a/b', settings => {allowedToolCategories => [5]}},
        'VALIDATION_ERROR', 'settings.allowedToolCategories', 'allowedToolCategories [5]'],
    [{name => 'x', model => 'a/b', settings => {knowledgeBaseIds => ['']}},
        'VALIDATION_ERROR', 'settings.knowledgeBaseIds', 'knowledgeBaseIds empty string'],
    [{name => 'x', model => 'a/b', settings => {knowledgeBaseIds => [('k') x 101]}},
        'VALIDATION_ERROR', 'settings.knowledgeBaseIds', 'knowledgeBaseIds 101 items'],
    [{name => 'x', model => 'a/b', settings => {customToolIds => ['t' x 257]}},
        'VALIDATION_ERROR', 'settings.customToolIds', 'customToolIds 257-byte item'],
    [{name => 'x', model => 'a/b', settings => {contextWindowSize => 0}},
        'VALIDATION_ERROR', 'settings.contextWindowSize', 'contextWindowSize 0'],
    [{name => 'x', model => 'a/b', settings => {contextWindowSize => 'big'}},
        'VALIDATION_ERROR', 'settings.contextWindowSize', 'contextWindowSize string'],
    [{name => 'x', model => 'a/b', settings => {unknownThing => 1}},
        'UNKNOWN_PARAMETER', 'settings.unknownThing', 'settings.unknownThing'],
    [{name => 'x', model => 'a/b', colour => 'blue'},
        'UNKNOWN_PARAMETER', 'colour', 'top-level unknown field'],
);
for my $c (@bad_agents) {
    my ($body, $code, $param, $name) = @$c;
    err_is($t->req(POST => '/v1/agents', token => $A, %P1, json => $body),
           400, $code, $param, "create agent: $name");
}
err_is($t->req(POST => '/v1/agents', token => $A, %P1, body => '{"name":"x","model":"a/b"}',
               headers => {'X-Project-Id' => $p1->{id}, 'Content-Type' => 'text/plain'}),
       415, 'UNSUPPORTED_MEDIA_TYPE', undef, 'create agent: text/plain');
err_is($t->req(POST => '/v1/agents', token => $A, body => '{"name":"x",}',
               headers => {'X-Project-Id' => $p1->{id},
                           'Content-Type' => 'application/json'}),
       400, 'INVALID_JSON', undef, 'create agent: invalid JSON');

$r = $t->req(GET => "/v1/agents?projectId=$p1->{id}", token => $A);
is_deeply([map { $_->{id} } @{$r->{json}{data} // []}], [$a1->{id}],
          'failed creations created no agents');

# Every field set
my %full = (
    name => 'Full', model => 'anthropic/claude-3-opus', description => 'desc',
    systemPrompt => 'You are helpful.', repository => 'github.com/x/y',
    settings => {temperature => 0.7, maxTokens => 1000, toolsEnabled => $TRUE,
                 allowedToolCategories => ['web', 'code'], knowledgeBaseIds => ['kb1'],
                 customToolIds => [], contextWindowSize => 50},
);
$r = $t->req(POST => '/v1/agents', token => $A, %P1, json => \%full);
is($r->{status}, 201, 'create agent with every field') or diag $r->{body};
my $afull = $r->{json};
is($afull->{$_}, $full{$_}, "full agent $_") for qw(name model description systemPrompt repository);
is_deeply($afull->{settings}, $full{settings}, 'full agent settings');

$r = $t->req(POST => '/v1/agents', token => $A, %P1,
             json => {name => 'Nulls', model => 'a/b', description => undef,
                      systemPrompt => undef, repository => undef,
                      settings => {temperature => 0, customToolIds => [('c') x 100]}});
is($r->{status}, 201, 'nulls, temperature 0 and 100 ids accepted') or diag $r->{body};
is($r->{json}{settings}{temperature}, 0, 'temperature 0 kept');
is($r->{json}{settings}{contextWindowSize}, 20, 'contextWindowSize default with other settings');
my $anulls = $r->{json};

###########################################################################
# GET returns the same object

$r = $t->req(GET => "/v1/agents/$a1->{id}", token => $A);
is($r->{status}, 200, 'GET /v1/agents/:id');
is_deeply($r->{json}, $a1, 'GET returns the created object');
$r = $t->req(GET => "/v1/agents/$afull->{id}", token => $A);
is_deeply($r->{json}, $afull, 'GET returns the full object');
err_is($t->req(GET => "/v1/agents/agent_$UNKNOWN_ULID", token => $A),
       404, 'NOT_FOUND', undef, 'GET unknown agent');
err_is($t->req(GET => "/v1/agents/$a1->{id}", token => $b2->{token}),
       404, 'NOT_FOUND', undef, "GET another org's agent");

# HEAD
{
    $r = $t->req(HEAD => "/v1/agents/$a1->{id}", token => $A);
    is($r->{status}, 200, 'HEAD /v1/agents/:id 200');
    my $raw = raw_exchange("HEAD /v1/agents/$a1->{id} HTTP/1.1\r\nHost: localhost\r\n"
                           . "Authorization: Bearer $A\r\nConnection: close\r\n\r\n");
    like($raw, qr{^HTTP/1\.1 200}, 'raw HEAD status 200');
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    is($body // '', '', 'HEAD sends no body');
    like($head // '', qr/^X-Request-Id: [0-9a-f]{32}\r?$/mi, 'HEAD has X-Request-Id');
    $r = $t->req(HEAD => "/v1/agents/agent_$UNKNOWN_ULID", token => $A);
    is($r->{status}, 404, 'HEAD unknown agent 404');
}

###########################################################################
# PATCH

{
    sleep 0.01;
    $r = $t->req(PATCH => "/v1/agents/$afull->{id}", token => $A, json => {name => 'Renamed'});
    is($r->{status}, 200, 'PATCH name only') or diag $r->{body};
    my $p = $r->{json};
    is($p->{name}, 'Renamed', 'name updated');
    is($p->{$_}, $afull->{$_}, "PATCH name keeps $_")
        for qw(id model description systemPrompt repository status projectId organizationId createdAt);
    is_deeply($p->{settings}, $afull->{settings}, 'PATCH name keeps settings');
    isnt($p->{updatedAt}, $afull->{updatedAt}, 'updatedAt changed');
    like($p->{updatedAt} // '', $TS, 'updatedAt RFC 3339');
    cmp_ok($p->{updatedAt} // '', 'gt', $afull->{updatedAt}, 'updatedAt moved forward');
    is($p->{createdAt}, $afull->{createdAt}, 'createdAt unchanged');

    my $prev = $p;
    sleep 0.01;
    $r = $t->req(PATCH => "/v1/agents/$afull->{id}", token => $A,
                 json => {settings => {temperature => 1.5, customToolIds => ['t1']}});
    is($r->{status}, 200, 'PATCH settings merge') or diag $r->{body};
    $p = $r->{json};
    is_deeply($p->{settings},
              {%{$afull->{settings}}, temperature => 1.5, customToolIds => ['t1']},
              'settings merged field by field');
    isnt($p->{updatedAt}, $prev->{updatedAt}, 'updatedAt changed again');

    # add a field to an agent with default settings
    $r = $t->req(PATCH => "/v1/agents/$a1->{id}", token => $A,
                 json => {settings => {maxTokens => 256}});
    is_deeply($r->{json}{settings}, {contextWindowSize => 20, maxTokens => 256},
              'PATCH adds new settings field and keeps old ones');

    $r = $t->req(PATCH => "/v1/agents/$afull->{id}", token => $A,
                 json => {settings => {maxTokens => undef}});
    is($r->{status}, 200, 'PATCH settings field null');
    ok(!exists $r->{json}{settings}{maxTokens}, 'null removes settings.maxTokens');
    is($r->{json}{settings}{temperature}, 1.5, 'other settings kept');

    $r = $t->req(PATCH => "/v1/agents/$afull->{id}", token => $A,
                 json => {description => undef});
    is($r->{status}, 200, 'PATCH description null');
    is($r->{json}{description}, undef, 'description cleared');
    ok(exists $r->{json}{description}, 'description key still present');
    is($r->{json}{systemPrompt}, $full{systemPrompt}, 'systemPrompt kept');

    $r = $t->req(PATCH => "/v1/agents/$afull->{id}", token => $A,
                 json => {systemPrompt => undef, repository => undef, model => 'google/gemini'});
    is($r->{json}{systemPrompt}, undef, 'systemPrompt cleared');
    is($r->{json}{repository}, undef, 'repository cleared');
    is($r->{json}{model}, 'google/gemini', 'model updated');

    $r = $t->req(PATCH => "/v1/agents/$afull->{id}", token => $A, json => {});
    is($r->{status}, 200, 'PATCH empty object');
    my $after = $r->{json};
    $r = $t->req(GET => "/v1/agents/$afull->{id}", token => $A);
    is_deeply($r->{json}, $after, 'GET reflects PATCHes');
    is($r->{json}{name}, 'Renamed', 'GET name after PATCH');
    is($r->{json}{createdAt}, $afull->{createdAt}, 'GET createdAt unchanged');

    err_is($t->req(PATCH => "/v1/agents/$afull->{id}", token => $A, json => {name => undef}),
           400, 'VALIDATION_ERROR', 'name', 'PATCH name null');
    err_is($t->req(PATCH => "/v1/agents/$afull->{id}", token => $A, json => {model => 'nope'}),
           400, 'VALIDATION_ERROR', 'model', 'PATCH model without slash');
    err_is($t->req(PATCH => "/v1/agents/$afull->{id}", token => $A,
                   json => {settings => {temperature => 3}}),
           400, 'VALIDATION_ERROR', 'settings.temperature', 'PATCH temperature 3');
    err_is($t->req(PATCH => "/v1/agents/$afull->{id}", token => $A,
                   json => {settings => {unknownThing => 1}}),
           400, 'UNKNOWN_PARAMETER', 'settings.unknownThing', 'PATCH settings.unknownThing');
    err_is($t->req(PATCH => "/v1/agents/$afull->{id}", token => $A, json => {bogus => 1}),
           400, 'UNKNOWN_PARAMETER', 'bogus', 'PATCH unknown field');
    $r = $t->req(GET => "/v1/agents/$afull->{id}", token => $A);
    is_deeply($r->{json}, $after, 'failed PATCHes changed nothing');
    err_is($t->req(PATCH => "/v1/agents/agent_$UNKNOWN_ULID", token => $A, json => {name => 'x'}),
           404, 'NOT_FOUND', undef, 'PATCH unknown agent');
}

###########################################################################
# DELETE

{
    $r = $t->req(DELETE => "/v1/agents/$anulls->{id}", token => $A);
    is($r->{status}, 200, 'DELETE agent');
    is_deeply($r->{json}, {id => $anulls->{id}, object => 'agent', deleted => $TRUE},
              'DELETE body {id, object, deleted:true}');
    err_is($t->req(GET => "/v1/agents/$anulls->{id}", token => $A),
           404, 'NOT_FOUND', undef, 'GET deleted agent');
    err_is($t->req(DELETE => "/v1/agents/$anulls->{id}", token => $A),
           404, 'NOT_FOUND', undef, 'second DELETE');
    err_is($t->req(PATCH => "/v1/agents/$anulls->{id}", token => $A, json => {name => 'z'}),
           404, 'NOT_FOUND', undef, 'PATCH deleted agent');
    $r = $t->req(GET => '/v1/agents?limit=100', token => $A);
    ok(!(grep { $_->{id} eq $anulls->{id} } @{$r->{json}{data} // []}),
       'deleted agent not listed');
}

###########################################################################
# List filters

# Agents now, in creation order: a1 (p1), a_bound, a_bound2 (p2), afull (p1)
{
    $r = $t->req(GET => '/v1/agents', token => $A);
    is($r->{status}, 200, 'GET /v1/agents');
    is_deeply([map { $_->{id} } @{$r->{json}{data} // []}],
              [$afull->{id}, $a_bound2->{id}, $a_bound->{id}, $a1->{id}],
              'list all agents newest first');

    $r = $t->req(GET => "/v1/agents?projectId=$p1->{id}", token => $A);
    is_deeply([map { $_->{id} } @{$r->{json}{data} // []}], [$afull->{id}, $a1->{id}],
              'filter projectId=p1');
    $r = $t->req(GET => "/v1/agents?projectId=$p2->{id}&order=asc", token => $A);
    is_deeply([map { $_->{id} } @{$r->{json}{data} // []}],
              [$a_bound->{id}, $a_bound2->{id}], 'filter projectId=p2 order=asc');

    $r = $t->req(GET => '/v1/agents', token => $BOUND);
    is_deeply([map { $_->{id} } @{$r->{json}{data} // []}],
              [$a_bound2->{id}, $a_bound->{id}], 'project-bound key lists only its project');
    err_is($t->req(GET => "/v1/agents/$a1->{id}", token => $BOUND),
           404, 'NOT_FOUND', undef, 'project-bound key: other project agent 404');

    $r = $t->req(GET => '/v1/agents?status=idle', token => $A);
    is(scalar @{$r->{json}{data} // []}, 4, 'status=idle lists all');
    $r = $t->req(GET => '/v1/agents?status=running', token => $A);
    is($r->{status}, 200, 'status=running 200');
    is_deeply($r->{json}{data}, [], 'status=running empty');
    is($r->{json}{has_more}, $FALSE, 'status=running has_more false');
    $r = $t->req(GET => "/v1/agents?status=idle&projectId=$p2->{id}", token => $A);
    is(scalar @{$r->{json}{data} // []}, 2, 'status and projectId combined');

    err_is($t->req(GET => '/v1/agents?status=bogus', token => $A),
           400, 'VALIDATION_ERROR', 'status', 'status=bogus');
    err_is($t->req(GET => '/v1/agents?limit=101', token => $A),
           400, 'VALIDATION_ERROR', 'limit', 'limit=101');
    err_is($t->req(GET => '/v1/agents?order=up', token => $A),
           400, 'VALIDATION_ERROR', 'order', 'order=up');
    err_is($t->req(GET => '/v1/agents?page=0', token => $A),
           400, 'VALIDATION_ERROR', 'page', 'page=0');
    err_is($t->req(GET => '/v1/agents?sort=name', token => $A),
           400, 'UNKNOWN_PARAMETER', 'sort', 'unknown query parameter');
    $r = $t->req(GET => "/v1/agents?projectId=proj_$UNKNOWN_ULID", token => $A);
    ok(($r->{status} == 200 && !@{$r->{json}{data} // [1]})
       || ($r->{status} == 404 && ($r->{json}{error}{code} // '') eq 'NOT_FOUND'),
       'unknown projectId filter: empty list or 404') or diag $r->{body};
}

###########################################################################
# Page mode

{
    my $pr = $t->req(POST => '/v1/projects', token => $A, json => {name => 'Paging'});
    my $pp = $pr->{json}{id};
    my @ids;
    for my $i (1 .. 5) {
        my $r = $t->req(POST => '/v1/agents', token => $A,
                        headers => {'X-Project-Id' => $pp},
                        json => {name => "page agent $i", model => 'openai/gpt-4o-mini'});
        is($r->{status}, 201, "page agent $i created");
        push @ids, $r->{json}{id};
    }
    my @desc = reverse @ids;
    my @expect = (
        [1, [@desc[0, 1]], {total => 5, page => 1, limit => 2, totalPages => 3,
                            hasNext => $TRUE,  hasPrev => $FALSE}],
        [2, [@desc[2, 3]], {total => 5, page => 2, limit => 2, totalPages => 3,
                            hasNext => $TRUE,  hasPrev => $TRUE}],
        [3, [$desc[4]],    {total => 5, page => 3, limit => 2, totalPages => 3,
                            hasNext => $FALSE, hasPrev => $TRUE}],
    );
    for my $e (@expect) {
        my ($page, $want_ids, $meta) = @$e;
        my $r = $t->req(GET => "/v1/agents?projectId=$pp&limit=2&page=$page", token => $A);
        is($r->{status}, 200, "page $page status");
        is_deeply([map { $_->{id} } @{$r->{json}{data} // []}], $want_ids,
                  "page $page items");
        is_deeply($r->{json}{meta}, $meta, "page $page meta");
        is($r->{json}{object}, 'list', "page $page object list");
    }
    $r = $t->req(GET => "/v1/agents?projectId=$pp&limit=2&page=4", token => $A);
    is($r->{status}, 200, 'page beyond the end 200');
    is_deeply($r->{json}{data}, [], 'page beyond the end is empty');
    is($r->{json}{meta}{total}, 5, 'page beyond the end total');
    is($r->{json}{meta}{hasNext}, $FALSE, 'page beyond the end hasNext false');

    $r = $t->req(GET => "/v1/agents?projectId=$pp&limit=2&page=1&order=asc", token => $A);
    is_deeply([map { $_->{id} } @{$r->{json}{data} // []}], [@ids[0, 1]],
              'page mode order=asc');

    $r = $t->req(GET => "/v1/agents?projectId=$pp&limit=2", token => $A);
    ok(!exists $r->{json}{meta}, 'cursor mode has no meta');
    my $cur = $r->{json}{next_cursor} // '';
    err_is($t->req(GET => "/v1/agents?projectId=$pp&limit=2&page=2&cursor=$cur", token => $A),
           400, 'VALIDATION_ERROR', undef, 'page + cursor');
}

$t->finish;
done_testing;
