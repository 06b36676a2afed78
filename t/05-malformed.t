#!/usr/bin/perl
# A corpus of hostile requests: every one must be answered with a 4xx in the
# JSON error envelope, never a 5xx, and no worker may crash.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use CreorTest;
use CreorApi;

my $JS = JSON::PP->new->canonical;

###########################################################################
# Setup

# Bigger header buffers so a 10000-byte Authorization reaches the module.
my $t = CreorTest->new(store_opts    => 'sync=off',
                       server_config => 'large_client_header_buffers 4 16k;');

my $b   = $t->bootstrap;
my $tok = $b->{token};

api_use($t, token => $tok);

my $r = api(POST => '/v1/projects', json => {name => 'p1'});
is($r->{status}, 201, 'setup: project') or BAIL_OUT("cannot create project: $r->{body}");
my $proj = $r->{json}{id};

$r = api(POST => '/v1/agents', json => {name => 'a1', model => 'p/m'},
         headers => ['X-Project-Id' => $proj]);
is($r->{status}, 201, 'setup: agent') or BAIL_OUT("cannot create agent: $r->{body}");
my $agent = $r->{json}{id};

# another organization with a project, an agent and a key
my $b2 = $t->bootstrap;
$r = api(POST => '/v1/projects', json => {name => 'p2'}, token => $b2->{token});
my $proj2 = $r->{json}{id};
$r = api(POST => '/v1/agents', json => {name => 'a2', model => 'p/m'},
         token => $b2->{token}, headers => ['X-Project-Id' => $proj2]);
my $agent2 = $r->{json}{id};
$r = api(POST => '/v1/api-keys', json => {name => 'k2'}, token => $b2->{token});
my $key2 = $r->{json}{id};
ok($proj2 && $agent2 && $key2, 'setup: other org resources');

my ($ulid, $secret) = $tok =~ /^ck_([0-9a-z]{26})_([0-9A-Za-z]+)$/
    or BAIL_OUT("unexpected token shape: $tok");
my $key_id = "key_$ulid";

my $ro_tok   = $t->cli(qw(key create --org), $b->{org}, qw(--role read_only));
my $user_tok = $t->cli(qw(key create --org), $b->{org}, qw(--role user));
my $rev_tok  = $t->cli(qw(key create --org), $b->{org}, qw(--role admin));
my ($rev_ulid) = $rev_tok =~ /^ck_([0-9a-z]{26})_/;
$t->cli(qw(key revoke), "key_$rev_ulid");

# the positive auth forms first (not part of the 4xx corpus)
for my $case (
    ['lowercase bearer'  => "bearer $tok"],
    ['BEARER uppercase'  => "BEARER $tok"],
    ['Basic token:'      => 'Basic ' . encode_base64("$tok:", '')],
    ['Bearer key_ form'  => "Bearer key_$ulid:$secret"],
) {
    my $r = $t->req(GET => '/v1/agents',
                    headers => [Authorization => $case->[1]]);
    is($r->{status}, 200, "auth form works: $case->[0]");
}

###########################################################################
# The corpus

my @rows;

sub row { push @rows, {@_} }

# POST /v1/agents with a raw body
sub pa {
    my ($name, $body, $status, $code, @x) = @_;
    row(name => "POST agents: $name", method => 'POST', path => '/v1/agents',
        body => $body, status => $status, code => $code, @x);
}

# POST /v1/agents with a valid body plus/overridden by %o
sub pav {
    my ($name, $o, $status, $code, $param) = @_;
    my %body = (name => 'x', model => 'p/m', %$o);
    pa($name, $JS->encode(\%body), $status, $code,
       (defined $param ? (param => $param) : ()));
}

sub patch {
    my ($name, $o, $status, $code, $param) = @_;
    row(name => "PATCH agent: $name", method => 'PATCH',
        path => "/v1/agents/$agent", body => $JS->encode($o),
        status => $status, code => $code,
        (defined $param ? (param => $param) : ()));
}

sub get {
    my ($name, $path, $status, $code, @x) = @_;
    row(name => "GET $name", method => 'GET', path => $path,
        status => $status, code => $code, @x);
}

my $T = JSON::PP::true;
my $F = JSON::PP::false;

# --- invalid JSON -------------------------------------------------------
pa('truncated object',      '{"name":"a"',                   400, 'INVALID_JSON');
pa('truncated after colon', '{"name":',                      400, 'INVALID_JSON');
pa('lone brace',            '{',                             400, 'INVALID_JSON');
pa('truncated string',      '{"name":"abc',                  400, 'INVALID_JSON');
pa('trailing garbage',      '{"name":"a","model":"p/m"} x',  400, 'INVALID_JSON');
pa('two objects',           '{}{}',                          400, 'INVALID_JSON');
pa('single quotes',         "{'name':'a','model':'p/m'}",    400, 'INVALID_JSON');
pa('block comment',         '{"name":"a" /* c */}',          400, 'INVALID_JSON');
pa('line comment',          "// c\n{}",                      400, 'INVALID_JSON');
pa('NaN',                   '{"settings":{"temperature":NaN}}', 400, 'INVALID_JSON');
pa('Infinity',              '{"settings":{"temperature":Infinity}}', 400, 'INVALID_JSON');
pa('bare word',             'hello',                         400, 'INVALID_JSON');
pa('unquoted key',          '{name:"a"}',                    400, 'INVALID_JSON');
pa('trailing comma object', '{"name":"a",}',                 400, 'INVALID_JSON');
pa('trailing comma array',  '{"name":"a","x":[1,]}',         400, 'INVALID_JSON');
pa('missing colon',         '{"name" "a"}',                  400, 'INVALID_JSON');
pa('missing comma',         '{"name":"a" "model":"p/m"}',    400, 'INVALID_JSON');
pa('whitespace only',       "  \r\n\t ",                     400, 'INVALID_JSON');
pa('lone high surrogate',   '{"name":"\ud800","model":"p/m"}', 400, 'INVALID_JSON');
pa('lone low surrogate',    '{"name":"\udc00","model":"p/m"}', 400, 'INVALID_JSON');
pa('high surrogate + A',    '{"name":"\ud800\u0041","model":"p/m"}', 400, 'INVALID_JSON');
pa('surrogate in key',      '{"\ud800":1}',                  400, 'INVALID_JSON');
pa('\\xff in value',        qq({"name":"a\xffb","model":"p/m"}), 400, 'INVALID_JSON');
pa('\\xc0\\x80 in value',   qq({"name":"a\xc0\x80b","model":"p/m"}), 400, 'INVALID_JSON');
pa('\\xff in key',          qq({"na\xffme":"a","model":"p/m"}), 400, 'INVALID_JSON');
pa('\\xc0\\x80 in key',     qq({"\xc0\x80":"a","model":"p/m"}), 400, 'INVALID_JSON');
pa('overlong 3-byte /',     qq({"name":"\xe0\x80\xaf","model":"p/m"}), 400, 'INVALID_JSON');
pa('overlong 4-byte /',     qq({"name":"\xf0\x80\x80\xaf","model":"p/m"}), 400, 'INVALID_JSON');
pa('utf-8 surrogate bytes', qq({"name":"\xed\xa0\x80","model":"p/m"}), 400, 'INVALID_JSON');
pa('beyond U+10FFFF',       qq({"name":"\xf4\x90\x80\x80","model":"p/m"}), 400, 'INVALID_JSON');
pa('truncated sequence',    qq({"name":"a\xc3","model":"p/m"}), 400, 'INVALID_JSON');
pa('lone continuation',     qq({"name":"\x80","model":"p/m"}), 400, 'INVALID_JSON');
pa('\\xfe outside string',  qq({"name":"a","model":"p/m"}\xfe), 400, 'INVALID_JSON');
pa('NUL escape in value',   '{"name":"a\u0000b","model":"p/m"}', 400, 'INVALID_JSON');
pa('NUL escape in key',     '{"na\u0000me":"a","model":"p/m"}', 400, 'INVALID_JSON');
pa('raw control char',      qq({"name":"a\x01b","model":"p/m"}), 400, 'INVALID_JSON');
pa('raw newline in string', qq({"name":"a\nb","model":"p/m"}), 400, 'INVALID_JSON');
pa('raw NUL byte',          qq({"name":"a\x00b","model":"p/m"}), 400, 'INVALID_JSON');
pa('bad escape \\x',        '{"name":"\x41","model":"p/m"}', 400, 'INVALID_JSON');
pa('short \\u escape',      '{"name":"\u12","model":"p/m"}', 400, 'INVALID_JSON');
pa('1000 [ deep',           '[' x 1000,                      400, 'INVALID_JSON');
pa('1000 [ balanced',       '{"x":' . ('[' x 1000) . (']' x 1000) . '}', 400, 'INVALID_JSON');
pa('40-level objects',      ('{"a":' x 40) . '1' . ('}' x 40), 400, 'INVALID_JSON');
pa('2000-member object',
   '{' . join(',', map { qq("k$_":$_) } 1 .. 2000) . '}', 400, 'INVALID_JSON');
pa('duplicate keys',        '{"name":"a","name":"b","model":"p/m"}', 400, 'INVALID_JSON');
pa('duplicate nested keys',
   '{"name":"a","model":"p/m","settings":{"maxTokens":1,"maxTokens":2}}',
   400, 'INVALID_JSON');
pa('leading zero',          '{"settings":{"maxTokens":012}}', 400, 'INVALID_JSON');
pa('plus sign',             '{"settings":{"maxTokens":+1}}',  400, 'INVALID_JSON');
pa('leading dot',           '{"settings":{"temperature":.5}}', 400, 'INVALID_JSON');
pa('trailing dot',          '{"settings":{"temperature":1.}}', 400, 'INVALID_JSON');
pa('hex number',            '{"settings":{"maxTokens":0x10}}', 400, 'INVALID_JSON');
pa('bare minus',            '{"settings":{"maxTokens":-}}',   400, 'INVALID_JSON');
pa('True capitalised',      '{"settings":{"toolsEnabled":True}}', 400, 'INVALID_JSON');

# --- valid JSON that is not an object -------------------------------------
pa('empty array',  '[]',    400, 'VALIDATION_ERROR');
pa('number',       '42',    400, 'VALIDATION_ERROR');
pa('string',       '"x"',   400, 'VALIDATION_ERROR');
pa('null',         'null',  400, 'VALIDATION_ERROR');
pa('true',         'true',  400, 'VALIDATION_ERROR');
pa('false',        'false', 400, 'VALIDATION_ERROR');
pa('array of obj', '[{"name":"a","model":"p/m"}]', 400, 'VALIDATION_ERROR');

# --- numbers --------------------------------------------------------------
pa('temperature 1e999', '{"name":"a","model":"p/m","settings":{"temperature":1e999}}',
   400, 'VALIDATION_ERROR', param => 'settings.temperature');
pa('maxTokens 1e999', '{"name":"a","model":"p/m","settings":{"maxTokens":1e999}}',
   400, 'VALIDATION_ERROR', param => 'settings.maxTokens');
pa('maxTokens -0', '{"name":"a","model":"p/m","settings":{"maxTokens":-0}}',
   400, 'VALIDATION_ERROR', param => 'settings.maxTokens');
pa('contextWindowSize -0', '{"name":"a","model":"p/m","settings":{"contextWindowSize":-0}}',
   400, 'VALIDATION_ERROR', param => 'settings.contextWindowSize');
pa('maxTokens 1e400 huge int', '{"name":"a","model":"p/m","settings":{"maxTokens":'
   . ('9' x 400) . '}}', 400, 'VALIDATION_ERROR', param => 'settings.maxTokens');
pa('temperature -1e999', '{"name":"a","model":"p/m","settings":{"temperature":-1e999}}',
   400, 'VALIDATION_ERROR', param => 'settings.temperature');

# --- wrong types, every agent field -----------------------------------------
pav('name number',          {name => 1},           400, 'VALIDATION_ERROR', 'name');
pav('name true',            {name => $T},          400, 'VALIDATION_ERROR', 'name');
pav('name array',           {name => ['a']},       400, 'VALIDATION_ERROR', 'name');
pav('name object',          {name => {}},          400, 'VALIDATION_ERROR', 'name');
pav('name null',            {name => undef},       400, 'VALIDATION_ERROR', 'name');
pav('name empty',           {name => ''},          400, 'VALIDATION_ERROR', 'name');
pav('name 300 bytes',       {name => 'n' x 300},   400, 'VALIDATION_ERROR', 'name');
pav('model number',         {model => 7},          400, 'VALIDATION_ERROR', 'model');
pav('model array',          {model => ['p/m']},    400, 'VALIDATION_ERROR', 'model');
pav('model null',           {model => undef},      400, 'VALIDATION_ERROR', 'model');
pav('model without slash',  {model => 'gpt'},      400, 'VALIDATION_ERROR', 'model');
pav('model /x',             {model => '/x'},       400, 'VALIDATION_ERROR', 'model');
pav('model x/',             {model => 'x/'},       400, 'VALIDATION_ERROR', 'model');
pav('description number',   {description => 1},    400, 'VALIDATION_ERROR', 'description');
pav('description false',    {description => $F},   400, 'VALIDATION_ERROR', 'description');
pav('description object',   {description => {a => 1}}, 400, 'VALIDATION_ERROR', 'description');
pav('systemPrompt number',  {systemPrompt => 3.5}, 400, 'VALIDATION_ERROR', 'systemPrompt');
pav('systemPrompt array',   {systemPrompt => []},  400, 'VALIDATION_ERROR', 'systemPrompt');
pav('systemPrompt 70000 bytes', {systemPrompt => 'p' x 70000}, 400, 'VALIDATION_ERROR', 'systemPrompt');
pav('repository number',    {repository => 1},     400, 'VALIDATION_ERROR', 'repository');
pav('repository true',      {repository => $T},    400, 'VALIDATION_ERROR', 'repository');
pav('settings string',      {settings => 'x'},     400, 'VALIDATION_ERROR', 'settings');
pav('settings number',      {settings => 1},       400, 'VALIDATION_ERROR', 'settings');
pav('settings array',       {settings => []},      400, 'VALIDATION_ERROR', 'settings');
pav('settings true',        {settings => $T},      400, 'VALIDATION_ERROR', 'settings');
pav('settings null',        {settings => undef},   400, 'VALIDATION_ERROR', 'settings');
pav('unknown field',        {foo => 1},            400, 'UNKNOWN_PARAMETER', 'foo');
pav('unknown field id',     {id => 'agent_x'},     400, 'UNKNOWN_PARAMETER', 'id');

my %S = (
    temperature           => ['1', $T, 3, -0.1, [1]],
    maxTokens             => ['10', 1.5, 0, -1, $T],
    toolsEnabled          => ['true', 1, [], {}],
    allowedToolCategories => ['a', [1], [undef], [''], [{}], ['x' x 257],
                              [map { "c$_" } 1 .. 101]],
    knowledgeBaseIds      => [{}, [$T], 5],
    customToolIds         => [1, [[]], 'id'],
    contextWindowSize     => ['20', 0, 2.5, [20]],
);
for my $f (sort keys %S) {
    my $i = 0;
    for my $v (@{$S{$f}}) {
        my $desc = ref $v eq 'ARRAY' && @$v > 100 ? '101-element array'
                 : JSON::PP->new->canonical->allow_nonref->encode($v);
        $desc = substr($desc, 0, 20) . '...' if length $desc > 23;
        pav("settings.$f = $desc", {settings => {$f => $v}},
            400, 'VALIDATION_ERROR', "settings.$f");
    }
}
pav('settings.foo', {settings => {foo => 1}}, 400, 'UNKNOWN_PARAMETER', 'settings.foo');

# missing fields
pa('empty object',   '{}',                  400, 'MISSING_FIELD', param => 'name');
pa('empty body',     '',                    400, 'MISSING_FIELD', param => 'name');
pa('model only',     '{"model":"p/m"}',     400, 'MISSING_FIELD', param => 'name');
pa('name only',      '{"name":"a"}',        400, 'MISSING_FIELD', param => 'model');

# PATCH
patch('name null',       {name => undef},        400, 'VALIDATION_ERROR', 'name');
patch('model number',    {model => 1},           400, 'VALIDATION_ERROR', 'model');
patch('settings string', {settings => 's'},      400, 'VALIDATION_ERROR', 'settings');
patch('status field',    {status => 'running'},  400, 'UNKNOWN_PARAMETER', 'status');
row(name => 'PATCH agent: invalid json', method => 'PATCH',
    path => "/v1/agents/$agent", body => '{"name":', status => 400,
    code => 'INVALID_JSON');
row(name => 'PATCH agent: array body', method => 'PATCH',
    path => "/v1/agents/$agent", body => '[1]', status => 400,
    code => 'VALIDATION_ERROR');

# other bodies
row(name => 'POST projects: name number', method => 'POST', path => '/v1/projects',
    body => '{"name":1}', status => 400, code => 'VALIDATION_ERROR', param => 'name');
row(name => 'POST projects: missing name', method => 'POST', path => '/v1/projects',
    body => '{}', status => 400, code => 'MISSING_FIELD', param => 'name');
row(name => 'POST projects: 200-byte name', method => 'POST', path => '/v1/projects',
    body => $JS->encode({name => 'p' x 200}), status => 400,
    code => 'VALIDATION_ERROR', param => 'name');
row(name => 'POST api-keys: bad role', method => 'POST', path => '/v1/api-keys',
    body => '{"name":"k","role":"god"}', status => 400,
    code => 'VALIDATION_ERROR', param => 'role');
row(name => 'POST api-keys: bad rateLimit', method => 'POST', path => '/v1/api-keys',
    body => '{"name":"k","rateLimit":"fast"}', status => 400,
    code => 'VALIDATION_ERROR', param => 'rateLimit');
row(name => 'POST api-keys: rateLimit number', method => 'POST', path => '/v1/api-keys',
    body => '{"name":"k","rateLimit":120}', status => 400,
    code => 'VALIDATION_ERROR', param => 'rateLimit');
row(name => 'POST api-keys: other org project', method => 'POST',
    path => '/v1/api-keys', body => qq({"name":"k","projectId":"$proj2"}),
    status => 404, code => 'NOT_FOUND', param => 'projectId');
row(name => 'POST api-keys: other org appId', method => 'POST',
    path => '/v1/api-keys', body => qq({"name":"k","appId":"$agent2"}),
    status => 404, code => 'NOT_FOUND', param => 'appId');
row(name => 'rotate: gracePeriod -1', method => 'POST',
    path => "/v1/api-keys/$key_id/rotate", body => '{"gracePeriod":-1}',
    status => 400, code => 'VALIDATION_ERROR', param => 'gracePeriod');
row(name => 'rotate: gracePeriod string', method => 'POST',
    path => "/v1/api-keys/$key_id/rotate", body => '{"gracePeriod":"10"}',
    status => 400, code => 'VALIDATION_ERROR', param => 'gracePeriod');
row(name => 'rotate: gracePeriod too big', method => 'POST',
    path => "/v1/api-keys/$key_id/rotate", body => '{"gracePeriod":604801}',
    status => 400, code => 'VALIDATION_ERROR', param => 'gracePeriod');

# --- content types --------------------------------------------------------
my $good = '{"name":"a","model":"p/m"}';
for my $ct ('text/plain', 'application/jsonx', 'multipart/form-data; boundary=x',
            'application/x-www-form-urlencoded', 'json', 'text/json',
            'application/json-patch+json', 'application/', '')
{
    pa("content-type '$ct'", $good, 415, 'UNSUPPORTED_MEDIA_TYPE', ctype => $ct);
}
pa('no content-type with body', $good, 415, 'UNSUPPORTED_MEDIA_TYPE',
   ctype => undef);
row(name => 'PATCH text/plain', method => 'PATCH', path => "/v1/agents/$agent",
    body => '{"name":"b"}', ctype => 'text/plain', status => 415,
    code => 'UNSUPPORTED_MEDIA_TYPE');

# --- query strings --------------------------------------------------------
get(@$_) for
    ['limit=%zz',           '/v1/agents?limit=%zz', 400, 'VALIDATION_ERROR', param => 'limit'],
    ['%zz=1',               '/v1/agents?%zz=1',     400, 'UNKNOWN_PARAMETER'],
    ['limit=%ff',           '/v1/agents?limit=%ff', 400, 'VALIDATION_ERROR'],
    ['cursor=%ff%fe',       '/v1/agents?cursor=%ff%fe', 400, 'VALIDATION_ERROR'],
    ['%ff=1 (name)',        '/v1/agents?%ff=1',     400, 'VALIDATION_ERROR'],
    ['cursor=%00',          '/v1/agents?cursor=%00', 400, 'VALIDATION_ERROR'],
    ['limit=1%00',          '/v1/agents?limit=1%00', 400, 'VALIDATION_ERROR'],
    ['overlong %c0%af',     '/v1/agents?cursor=%c0%af', 400, 'VALIDATION_ERROR'],
    ['duplicate limit',     '/v1/agents?limit=1&limit=2', 400, 'VALIDATION_ERROR', param => 'limit'],
    ['duplicate order',     '/v1/agents?order=asc&order=asc', 400, 'VALIDATION_ERROR', param => 'order'],
    ['unknown param',       '/v1/agents?foo=1',     400, 'UNKNOWN_PARAMETER', param => 'foo'],
    ['unknown valueless',   '/v1/agents?verbose',   400, 'UNKNOWN_PARAMETER', param => 'verbose'],
    ['40 params',           '/v1/agents?' . join('&', map { "p$_=1" } 1 .. 40),
     400, 'VALIDATION_ERROR'],
    ['limit=1e3',           '/v1/agents?limit=1e3', 400, 'VALIDATION_ERROR', param => 'limit'],
    ['limit=0',             '/v1/agents?limit=0',   400, 'VALIDATION_ERROR', param => 'limit'],
    ['limit=101',           '/v1/agents?limit=101', 400, 'VALIDATION_ERROR', param => 'limit'],
    ['limit=-1',            '/v1/agents?limit=-1',  400, 'VALIDATION_ERROR', param => 'limit'],
    ['limit empty',         '/v1/agents?limit=',    400, 'VALIDATION_ERROR', param => 'limit'],
    ['limit huge',          '/v1/agents?limit=99999999999999999999', 400, 'VALIDATION_ERROR', param => 'limit'],
    ['page=0',              '/v1/agents?page=0',    400, 'VALIDATION_ERROR', param => 'page'],
    ['page=-1',             '/v1/agents?page=-1',   400, 'VALIDATION_ERROR', param => 'page'],
    ['page=abc',            '/v1/agents?page=abc',  400, 'VALIDATION_ERROR', param => 'page'],
    ['page and cursor',     '/v1/agents?page=1&cursor=cur_x', 400, 'VALIDATION_ERROR'],
    ['order=up',            '/v1/agents?order=up',  400, 'VALIDATION_ERROR', param => 'order'],
    ['status=bogus',        '/v1/agents?status=bogus', 400, 'VALIDATION_ERROR', param => 'status'],
    ['cursor garbage',      '/v1/agents?cursor=garbage', 400, 'INVALID_CURSOR', param => 'cursor'],
    ['cursor cur_ forged',  '/v1/agents?cursor=cur_' . ('A' x 40), 400, 'INVALID_CURSOR', param => 'cursor'],
    ['projects ?page=1',    '/v1/projects?page=1', 400, 'UNKNOWN_PARAMETER', param => 'page'],
    ['agent ?limit=1',      "/v1/agents/$agent?limit=1", 400, 'UNKNOWN_PARAMETER', param => 'limit'],
    ['api-keys limit=abc',  '/v1/api-keys?limit=abc', 400, 'VALIDATION_ERROR', param => 'limit'];

# --- bad ids --------------------------------------------------------------
get(@$_) for
    ['agent id unicode %-encoded', '/v1/agents/agent_%C3%A9%C3%A9', 404, 'NOT_FOUND'],
    ['agent id raw utf-8',  "/v1/agents/agent_\xc3\xa9", 404, 'NOT_FOUND'],
    ['agent id 5000 chars', '/v1/agents/agent_' . ('a' x 5000), 404, 'NOT_FOUND'],
    ['agent id with %2F',   '/v1/agents/agent_a%2Fb', 404, 'NOT_FOUND'],
    ['agent id ...',        '/v1/agents/...', 404, 'NOT_FOUND'],
    ['agent id with dots',  '/v1/agents/agent_..x', 404, 'NOT_FOUND'],
    ['agent id uppercase',  '/v1/agents/' . uc $agent, 404, 'NOT_FOUND'],
    ['agent id unknown ulid', '/v1/agents/agent_' . ('0' x 26), 404, 'NOT_FOUND'],
    ['agent id project id', "/v1/agents/$proj", 404, 'NOT_FOUND'],
    ['agent id + suffix',   "/v1/agents/${agent}x", 404, 'NOT_FOUND'],
    ['project id bogus',    '/v1/projects/proj_bogus', 404, 'NOT_FOUND'],
    ['api-key id bogus',    '/v1/api-keys/key_' . ('z' x 26), 404, 'NOT_FOUND'],
    ['trailing slash',      "/v1/agents/$agent/", 404, 'NOT_FOUND'];

# --- other org's ids ------------------------------------------------------
get(@$_) for
    ['other org agent',     "/v1/agents/$agent2",   404, 'NOT_FOUND'],
    ['other org project',   "/v1/projects/$proj2",  404, 'NOT_FOUND'],
    ['other org api key',   "/v1/api-keys/$key2",   404, 'NOT_FOUND'];
row(name => 'PATCH other org agent', method => 'PATCH', path => "/v1/agents/$agent2",
    body => '{"name":"z"}', status => 404, code => 'NOT_FOUND');
row(name => 'DELETE other org agent', method => 'DELETE', path => "/v1/agents/$agent2",
    status => 404, code => 'NOT_FOUND');
row(name => 'DELETE other org key', method => 'DELETE', path => "/v1/api-keys/$key2",
    status => 404, code => 'NOT_FOUND');
row(name => 'rotate other org key', method => 'POST', path => "/v1/api-keys/$key2/rotate",
    body => '{}', status => 404, code => 'NOT_FOUND');
pa('X-Project-Id of other org', $good, 404, 'NOT_FOUND', param => 'projectId',
   proj => $proj2);
pa('X-Project-Id bogus', $good, 404, 'NOT_FOUND', param => 'projectId',
   proj => 'proj_bogus');
pa('no project context', $good, 400, 'MISSING_FIELD', param => 'projectId',
   proj => undef);

# --- Authorization --------------------------------------------------------
my $wrong = substr($secret, 0, -1) . (substr($secret, -1) eq 'a' ? 'b' : 'a');
my $ulid0 = '0' x 26;
my @auth = (
    ['empty'                   => '',                     'AUTH_KEY_INVALID'],
    ['Bearer'                  => 'Bearer',               'AUTH_KEY_INVALID'],
    ['Bearer + space'          => 'Bearer ',              'AUTH_KEY_INVALID'],
    ['Bearer + 10000 chars'    => 'Bearer ' . ('A' x 10000), 'AUTH_KEY_INVALID'],
    ['Basic !!!'               => 'Basic !!!',            'AUTH_KEY_INVALID'],
    ['Basic of x'              => 'Basic ' . encode_base64('x', ''), 'AUTH_KEY_INVALID'],
    ['Basic of x:'             => 'Basic ' . encode_base64('x:', ''), 'AUTH_KEY_INVALID'],
    ['Basic token:password'    => 'Basic ' . encode_base64("$tok:pw", ''), 'AUTH_KEY_INVALID'],
    ['Basic token no colon'    => 'Basic ' . encode_base64($tok, ''), 'AUTH_KEY_INVALID'],
    ['Basic :token'            => 'Basic ' . encode_base64(":$tok", ''), 'AUTH_KEY_INVALID'],
    ['Basic 400 chars'         => 'Basic ' . ('QUFB' x 100), 'AUTH_KEY_INVALID'],
    ['Token scheme'            => "Token $tok",           'AUTH_KEY_INVALID'],
    ['token without scheme'    => $tok,                   'AUTH_KEY_INVALID'],
    ['wrong secret'            => "Bearer ck_${ulid}_$wrong", 'AUTH_KEY_INVALID'],
    ['unknown ulid'            => "Bearer ck_${ulid0}_$secret", 'AUTH_KEY_INVALID'],
    ['key_ with _ separator'   => "Bearer key_${ulid}_$secret", 'AUTH_KEY_INVALID'],
    ['ck_ with : separator'    => "Bearer ck_${ulid}:$secret", 'AUTH_KEY_INVALID'],
    ['key_ wrong secret'       => "Bearer key_${ulid}:$wrong", 'AUTH_KEY_INVALID'],
    ['token + x'               => "Bearer ${tok}x",       'AUTH_KEY_INVALID'],
    ['token - last char'       => 'Bearer ' . substr($tok, 0, -1), 'AUTH_KEY_INVALID'],
    ['token uppercased'        => 'Bearer ' . uc $tok,    'AUTH_KEY_INVALID'],
    ['secret with ! chars'     => "Bearer ck_${ulid}_" . ('!' x length $secret), 'AUTH_KEY_INVALID'],
    ['revoked key'             => "Bearer $rev_tok",      'AUTH_KEY_REVOKED'],
);
for my $a (@auth) {
    get("auth $a->[0]", '/v1/agents', 401, $a->[2], auth => $a->[1]);
}
get('auth missing', '/v1/agents', 401, 'AUTH_MISSING_HEADER', auth => undef);
pa('read_only key creates', $good, 403, 'PERMISSION_DENIED',
   auth => "Bearer $ro_tok");
row(name => 'user key creates api key', method => 'POST', path => '/v1/api-keys',
    body => '{"name":"k"}', status => 403, code => 'PERMISSION_DENIED',
    auth => "Bearer $user_tok");

# --- body size, framing ---------------------------------------------------
pa('2 MB body', '{"name":"' . ('x' x (2 * 1024 * 1024)) . '"}', 413, 'BODY_TOO_LARGE');

my $hdrs = "Host: localhost\r\nAuthorization: Bearer $tok\r\n"
         . "X-Project-Id: $proj\r\nConnection: close\r\n";
sub chunk { my $d = shift; sprintf("%x\r\n%s\r\n", length $d, $d) }
row(name => 'chunked invalid JSON', method => 'POST', status => 400,
    code => 'INVALID_JSON',
    raw => "POST /v1/agents HTTP/1.1\r\n$hdrs"
         . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
         . chunk('{"na') . chunk('me":') . "0\r\n\r\n");
row(name => 'chunked invalid UTF-8', method => 'POST', status => 400,
    code => 'INVALID_JSON',
    raw => "POST /v1/agents HTTP/1.1\r\n$hdrs"
         . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
         . chunk(qq({"name":"\xc3)) . chunk(qq(\x28","model":"p/m"})) . "0\r\n\r\n");
row(name => 'chunked without content-type', method => 'POST', status => 415,
    code => 'UNSUPPORTED_MEDIA_TYPE',
    raw => "POST /v1/agents HTTP/1.1\r\n$hdrs"
         . "Transfer-Encoding: chunked\r\n\r\n" . chunk($good) . "0\r\n\r\n");
row(name => 'chunked 2 MB', method => 'POST', status => 413,
    code => 'BODY_TOO_LARGE',
    raw => "POST /v1/agents HTTP/1.1\r\n$hdrs"
         . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
         . join('', map { chunk('x' x 65536) } 1 .. 32) . "0\r\n\r\n");
row(name => 'Content-Length 10 of garbage', method => 'POST', status => 400,
    code => 'INVALID_JSON',
    raw => "POST /v1/agents HTTP/1.1\r\n$hdrs"
         . "Content-Type: application/json\r\nContent-Length: 10\r\n\r\n"
         . "\x00\xff<garb>\x01!");
row(name => 'Content-Length 10, longer body', method => 'POST', status => 400,
    code => 'INVALID_JSON',
    raw => "POST /v1/agents HTTP/1.1\r\n$hdrs"
         . "Content-Type: application/json\r\nContent-Length: 10\r\n\r\n"
         . '{"name":"a","model":"p/m"}');

###########################################################################
# Run it

my @workers = $t->worker_pids;
is(scalar @workers, 2, 'two workers before the corpus');

my (@fivexx, %seen);
for my $row (@rows) {
    die "duplicate row name $row->{name}" if $seen{$row->{name}}++;
    my $r;
    if (defined $row->{raw}) {
        $r = $t->req($row->{method}, undef, raw => $row->{raw}, timeout => 10);
    } else {
        my @h;
        my $auth = exists $row->{auth} ? $row->{auth} : "Bearer $tok";
        push @h, Authorization => $auth if defined $auth;
        if ($row->{method} eq 'POST' && $row->{path} eq '/v1/agents') {
            my $p = exists $row->{proj} ? $row->{proj} : $proj;
            push @h, 'X-Project-Id' => $p if defined $p;
        }
        if (defined $row->{body}) {
            my $ct = exists $row->{ctype} ? $row->{ctype} : 'application/json';
            push @h, 'Content-Type' => $ct if defined $ct;
        }
        $r = $t->req($row->{method}, $row->{path}, headers => \@h,
                     body => $row->{body}, timeout => 10);
    }
    push @fivexx, "$row->{name}: $r->{status}" if $r->{status} >= 500;
    ok($r->{status} >= 400 && $r->{status} < 500, "$row->{name}: 4xx")
        or diag("got $r->{status}" . ($r->{error} ? " ($r->{error})" : ''));
    err_is($r, $row->{status}, $row->{code}, $row->{param}, $row->{name});
}

is_deeply(\@fivexx, [], 'no 5xx in the corpus');
$r = $t->req(GET => '/v1/agents', token => $tok);
is($r->{status}, 200, 'GET /v1/agents still works after the corpus');
ok(ref $r->{json} eq 'HASH' && ref $r->{json}{data} eq 'ARRAY',
   'list body after the corpus is valid JSON (UTF-8)')
    or diag('body: ' . substr($r->{body}, 0, 300));
is_deeply([$t->worker_pids], \@workers, 'worker pids unchanged: no crash');

###########################################################################
# Header-level attacks: nginx rejects these before the module runs.

sub header_attacks {
    my ($tt, $tk) = @_;
    my $auth = "Authorization: Bearer $tk\r\n";
    return (
        ['20 KB header line' => "GET /v1/agents HTTP/1.1\r\nHost: localhost\r\n$auth"
            . 'X-Big: ' . ('a' x 20480) . "\r\nConnection: close\r\n\r\n"],
        ['200 headers of 200 bytes' => "GET /v1/agents HTTP/1.1\r\nHost: localhost\r\n$auth"
            . join('', map { "X-H$_: " . ('b' x 200) . "\r\n" } 1 .. 200)
            . "Connection: close\r\n\r\n"],
        ['20 KB URI' => 'GET /v1/agents/' . ('u' x 20480)
            . " HTTP/1.1\r\nHost: localhost\r\n${auth}Connection: close\r\n\r\n"],
        ['garbage request line' => "BOGUS\r\n\r\n"],
        ['invalid Content-Length' => "POST /v1/agents HTTP/1.1\r\nHost: localhost\r\n$auth"
            . "Content-Type: application/json\r\nContent-Length: abc\r\n"
            . "Connection: close\r\n\r\n{}"],
        ['Content-Length and chunked' => "POST /v1/agents HTTP/1.1\r\nHost: localhost\r\n"
            . "${auth}Content-Type: application/json\r\nContent-Length: 2\r\n"
            . "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n"],
        ['HTTP/1.1 without Host' => "GET /v1/agents HTTP/1.1\r\n${auth}Connection: close\r\n\r\n"],
        ['bad chunk size' => "POST /v1/agents HTTP/1.1\r\nHost: localhost\r\n$auth"
            . "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            . "Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"],
    );
}

# default config (fresh instance without extra buffers): 4xx only
{
    my $d  = CreorTest->new(store_opts => 'sync=off');
    my $db = $d->bootstrap;
    my @w  = $d->worker_pids;
    for my $a (header_attacks($d, $db->{token})) {
        my $r = $d->req(GET => undef, raw => $a->[1], timeout => 10);
        ok($r->{status} >= 400 && $r->{status} < 500,
           "default config: $a->[0] -> 4xx") or diag("got $r->{status}");
    }
    # a bad chunk is found by the module's body read, inside the API
    # location: still the JSON envelope (SPEC 3: never nginx's HTML pages)
    my ($bad) = grep { $_->[0] eq 'bad chunk size' } header_attacks($d, $db->{token});
    err_is($d->req(POST => undef, raw => $bad->[1], timeout => 10),
           400, undef, undef, 'default config: bad chunk size in API location');
    is($d->req(GET => '/v1/agents', token => $db->{token})->{status}, 200,
       'default config: still serving');
    is_deeply([$d->worker_pids], \@w, 'default config: workers unchanged');
    $d->finish('default config: no alerts');
}

# with error_page to the API location: the JSON envelope
{
    my $e = CreorTest->new(store_opts    => 'sync=off',
                           server_config => 'error_page 400 414 494 /v1/_error;');
    my $eb = $e->bootstrap;
    my @w  = $e->worker_pids;
    for my $a (header_attacks($e, $eb->{token})) {
        my $r = $e->req(GET => undef, raw => $a->[1], timeout => 10);
        my $name = "error_page config: $a->[0]";
        ok($r->{status} >= 400 && $r->{status} < 500, "$name: 4xx")
            or diag("got $r->{status}");
        err_is($r, $r->{status}, undef, undef, $name,
               type => $ERROR_TYPE{$r->{status}} // 'invalid_request');
        like($r->{json}{error}{code} // '', qr/^[A-Z_]+$/, "$name: code")
            if ref $r->{json} eq 'HASH';
    }
    is($e->req(GET => '/v1/agents', token => $eb->{token})->{status}, 200,
       'error_page config: still serving');
    is_deeply([$e->worker_pids], \@w, 'error_page config: workers unchanged');
    $e->finish('error_page config: no alerts');
}

$t->finish;
done_testing;
