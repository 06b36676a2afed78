#!/usr/bin/perl
# Idempotency of multipart requests (SPEC 6): the fingerprint covers the
# parts (names, file names, types, contents), not the raw bytes, so a
# retry with a new boundary or other line endings is the same request,
# and a retry whose parts differ in any of those is 409.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi;

my $t = CreorTest->new(store_opts => 'sync=off');
my $b = $t->bootstrap;
my (undef, $APP) = project_agent($t, $b->{token}, org => $b->{org},
                                 project => 'Idem', name => 'mp',
                                 model => 'p/m', check => 'setup: agent');
$APP //= 'none';

my @BASE = ([appId => $APP], [metadata => '{"n":1}'],
            [files => 'first file', 'a.txt', 'text/plain'],
            [files => "\x00\x01binary", 'b.bin', 'application/octet-stream']);

sub post {
    my ($key, $bd, $eol, @parts) = @_;
    my ($body, $ct) = multipart_body(\@parts, boundary => $bd, eol => $eol);
    return $t->req(POST => '/v1/runs', token => $b->{token}, body => $body,
                   headers => ['Content-Type' => $ct, 'Idempotency-Key' => $key]);
}

my $first = post('mp-1', 'boundaryONE', "\r\n", @BASE);
is($first->{status}, 202, 'first: 202') or diag($first->{body});
ok(!defined $first->{headers}{'idempotent-replayed'}, 'first: not a replay');

# the same parts, written differently: replayed
for my $case (['another boundary', 'boundaryTWO-' . 'x' x 40, "\r\n"],
              ['bare LF line endings', 'boundaryTHREE', "\n"]) {
    my ($name, $bd, $eol) = @$case;
    my $r = post('mp-1', $bd, $eol, @BASE);
    is($r->{status}, 202, "$name: 202");
    is($r->{headers}{'idempotent-replayed'}, 'true',
       "$name: Idempotent-Replayed");
    is($r->{json}{id}, $first->{json}{id}, "$name: the same run");
}

# any part different: 409
my @other = (
    ['a file\'s contents', 2, [files => 'first filE', 'a.txt', 'text/plain']],
    ['a file\'s name',     2, [files => 'first file', 'c.txt', 'text/plain']],
    ['a file\'s type',     2, [files => 'first file', 'a.txt', 'text/html']],
    ['a field\'s value',   1, [metadata => '{"n":2}']],
    ['a field\'s name',    1, [metadatA => '{"n":1}']],
    ['a field made a file', 1, [metadata => '{"n":1}', 'm.json']],
);
for my $case (@other) {
    my ($name, $i, $part) = @$case;
    my @parts = @BASE;
    $parts[$i] = $part;
    my $r = post('mp-1', 'boundaryFOUR', "\r\n", @parts);
    is($r->{status}, 409, "$name differs: 409");
    is(ref $r->{json} eq 'HASH' ? $r->{json}{error}{code} : undef,
       'IDEMPOTENCY_KEY_REUSED', "$name differs: IDEMPOTENCY_KEY_REUSED");
}

{
    my $r = post('mp-1', 'boundaryFIVE', "\r\n", @BASE[0 .. 2]);
    is($r->{status}, 409, 'a part fewer: 409');
}

$t->finish;
done_testing;
