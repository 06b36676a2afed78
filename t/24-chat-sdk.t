#!/usr/bin/perl
# The official `openai` npm package against POST /v1/chat/completions
# (t/lib/chat-sdk.mjs): non-stream, streams with and without
# include_usage, an unknown model, provider errors, errors inside a
# stream, and a 429 from the gateway's own limits with Retry-After.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use JSON::PP;
use CreorTest;
use CreorProvider;

ok(-d "$FindBin::Bin/node_modules/openai",
   'the openai package is installed (t/run.sh runs npm ci in t/)')
    or BAIL_OUT('npm ci in t/ first');

my $pv = CreorProvider->new;

my $t = CreorTest->new(
    store_opts  => 'sync=off',
    rate_limits => 1,
    http_config => $pv->upstream,
    api_location => 'location /v1/ { creor_api; '
                    . 'creor_provider test /provider/test; }',
    server_config => $pv->location('/provider/test'),
);

my $boot = $t->bootstrap;
my $r = $t->req(POST => '/v1/api-keys', token => $boot->{token},
                json => { name => 'slow', role => 'user',
                          rateLimit => '2r/m' });
is($r->{status}, 201, 'a key limited to 2 requests') or diag($r->{body});

local $ENV{CREOR_URL} = 'http://127.0.0.1:' . $t->port . '/v1';
local $ENV{CREOR_TOKEN} = $boot->{token};
local $ENV{CREOR_SLOW_TOKEN} = $r->{json}{token} // 'none';

my $out = `node $FindBin::Bin/lib/chat-sdk.mjs`;
is($?, 0, 'the SDK script ran');
my $res = eval { JSON::PP->new->utf8->decode($out) } // {};
diag($out) unless %$res;

my $usage = { prompt_tokens => 11, completion_tokens => 3,
              total_tokens => 14 };

# case, field, expected
my @checks = (
    [nonstream => content => 'Hello world'],
    [nonstream => model => 'ok'],
    [nonstream => usage => $usage],
    [stream => content => 'Hello world'],
    [stream => chunks => 5],
    [stream => usage => undef],
    [stream_usage => content => 'Hello world'],
    [stream_usage => chunks => 6],
    [stream_usage => usage => $usage],
    [unknown_model => status => 422],
    [unknown_model => code => 'UNSUPPORTED_MODEL'],
    [unknown_model => type => 'unprocessable_entity'],
    [unknown_model => param => 'model'],
    [unknown_model => name => 'UnprocessableEntityError'],
    [provider_500 => status => 502],
    [provider_500 => code => 'PROVIDER_ERROR'],
    [provider_500 => type => 'provider_error'],
    [provider_500 => name => 'InternalServerError'],
    [provider_400 => status => 400],
    [provider_400 => code => 'PROVIDER_ERROR'],
    [provider_400 => name => 'BadRequestError'],
    [stream_error_event => error => JSON::PP::true],
    [stream_error_event => message => 'The model is overloaded.'],
    [stream_cut => error => JSON::PP::true],
    [stream_cut => message => "The provider's stream ended early."],
);

for my $c (@checks) {
    my ($case, $field, $want) = @$c;
    is_deeply($res->{$case}{$field}, $want,
              "$case: $field " . (ref $want ? JSON::PP->new->canonical
                                              ->encode($want)
                                            : $want // 'null'));
}

like($res->{provider_400}{message} // '', qr/temperature/,
     "provider_400: the provider's message");

my $rl = $res->{rate_limited} // [];
is_deeply([map { $_->{ok} ? 'ok' : $_->{status} } @$rl], ['ok', 'ok', 429],
          'rate_limited: the third request of the 2r/m key is 429');
is($rl->[2]{name}, 'RateLimitError', 'rate_limited: a RateLimitError');
is($rl->[2]{code}, 'RATE_LIMIT_EXCEEDED', 'rate_limited: RATE_LIMIT_EXCEEDED');
like($rl->[2]{retry_after} // '', qr/^[1-9]\d*$/,
     'rate_limited: the SDK sees Retry-After');

$t->finish;
$pv->stop;
done_testing;
