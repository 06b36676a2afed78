#!/usr/bin/perl
# Secrets never reach a log (SPEC 4.2) in a stock configuration: the
# "combined" access log (whose $remote_user is the Basic user name, the
# whole token in "curl -u TOKEN:") and an error log at "info" (where
# nginx quotes both values of a duplicate header).  Every accepted form
# of a key, good and bad, on the API and elsewhere, then the secret part
# of every token is searched for in both logs.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use MIME::Base64 qw(encode_base64);
use CreorTest;

my $t = CreorTest->new(
    store_opts  => 'sync=off',
    http_config => 'log_format combined_too \'$remote_addr - $remote_user '
                   . '[$time_local] "$request" $status\';',
    server_config => 'access_log logs/combined.log combined;'
                     . ' access_log logs/combined_too.log combined_too;',
);
my $boot = $t->bootstrap(name => 'Log Org');
my $tok  = $boot->{token};
my ($ulid, $secret) = $tok =~ /^ck_([0-9a-z]{26})_([0-9A-Za-z]+)$/
    or BAIL_OUT("unexpected token form: $tok");

# a token of a key that does not exist, and one with a wrong secret
my $fake   = 'ck_' . ('0' x 26) . '_' . ('S' x length $secret);
my $wrong  = "ck_${ulid}_" . ('W' x length $secret);
my @secrets = ($secret, 'S' x length $secret, 'W' x length $secret);

sub basic { 'Basic ' . encode_base64("$_[0]:", '') }

# [name, path, Authorization header(s), expected status]
my @cases = (
    ['Basic token',                '/v1/agents', [basic($tok)],             200],
    ['Bearer token',               '/v1/agents', ["Bearer $tok"],           200],
    ['Bearer key_<ulid>:<secret>', '/v1/agents', ["Bearer key_$ulid:$secret"], 200],
    ['Basic unknown key',          '/v1/agents', [basic($fake)],            401],
    ['Basic wrong secret',         '/v1/agents', [basic($wrong)],           401],
    ['Basic token, no API',        '/plain',     [basic($tok)],             200],
    ['Basic key_<ulid> + password', '/v1/agents',
        ['Basic ' . encode_base64("key_$ulid:$secret", '')],                401],
    ['Basic token sans underscore', '/v1/agents',
        [basic("ck_$ulid$secret")],                                        401],
    ['duplicate Authorization',    '/v1/agents', [basic($tok), "Bearer $tok"], 400],
    ['duplicate, bad then good',   '/v1/agents', ["Bearer $wrong", basic($tok)], 400],
    ['duplicate, no API',          '/plain',     ["Bearer $tok", "Bearer $tok"], 400],
);

for my $c (@cases) {
    my ($name, $path, $auth, $want) = @$c;
    my $r = $t->req(GET => $path,
                    headers => [map { (Authorization => $_) } @$auth]);
    is($r->{status}, $want, "$name: $want");
}

# the logs are complete once nginx stopped
$t->stop;

my %logs = map { my $f = $t->dir . "/logs/$_";
                 ($_ => CreorTest::_slurp($f) // '') }
           qw(access.log combined.log combined_too.log error.log);

ok($logs{'error.log'} =~ /client sent duplicate header line: "Authorization"/,
   'error.log: the duplicate is logged, by name');
is(scalar(() = $logs{'combined.log'} =~ /\n/g), scalar @cases,
   'combined.log: one line per request');
like($logs{'combined.log'}, qr{^127\.0\.0\.1 - - \[[^\]]*\] "GET /v1/agents },
     'combined.log: $remote_user of a Basic token is "-"');

for my $log (sort keys %logs) {
    for my $i (0 .. $#secrets) {
        unlike($logs{$log}, qr/\Q$secrets[$i]\E/,
               "$log: secret $i never appears");
    }
    unlike($logs{$log}, qr/\Q${\ encode_base64("$tok:", '')}\E/,
           "$log: the Basic credential never appears");
}

$t->no_alerts_ok;
done_testing;
