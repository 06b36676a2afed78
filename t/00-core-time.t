#!/usr/bin/perl
# creor_time_rfc3339() (src/lib/creor_core.c), the one formatter of every
# timestamp the API and the command line print: always valid RFC 3339 of
# 24 bytes, and the length it returns is the length it wrote, whatever
# the time (a damaged record, a clock before 1970).  No HTTP request can
# choose a stored time, so a small program linked with the real source
# calls it with a table of times.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use CreorTest;

my $ROOT = $CreorTest::ROOT;
my $dir  = tempdir('creor-time-XXXXXX', TMPDIR => 1, CLEANUP => 1);

# [milliseconds, expected text]
my @cases = (
    ['0',                     '1970-01-01T00:00:00.000Z'],
    ['1',                     '1970-01-01T00:00:00.001Z'],
    ['1768464000000',         '2026-01-15T08:00:00.000Z'],
    ['1768464000123',         '2026-01-15T08:00:00.123Z'],
    ['253402300799999',       '9999-12-31T23:59:59.999Z'],
    ['253402300800000',       '9999-12-31T23:59:59.999Z'],
    ['9223372036854775807',   '9999-12-31T23:59:59.999Z'],
    ['-1',                    '1970-01-01T00:00:00.000Z'],
    ['-500',                  '1970-01-01T00:00:00.000Z'],
    ['-86400000',             '1970-01-01T00:00:00.000Z'],
    ['-9223372036854775807',  '1970-01-01T00:00:00.000Z'],
);

open(my $fh, '>', "$dir/t.c") or die "$dir/t.c: $!";
print $fh <<'EOF';
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "creor_core.h"

int
main(int argc, char **argv)
{
    int     i;
    size_t  n;
    char    out[CREOR_TIME_LEN];

    for (i = 1; i < argc; i++) {
        memset(out, 'X', sizeof(out));
        n = creor_time_rfc3339(out, strtoll(argv[i], NULL, 10));
        printf("%zu %zu %s\n", n, strnlen(out, sizeof(out)), out);
    }

    return 0;
}
EOF
close $fh;

my $cc = `cc -O1 -I$ROOT/src/lib -o $dir/t $dir/t.c $ROOT/src/lib/creor_core.c -lcrypto 2>&1`;
is($?, 0, 'the driver builds with src/lib/creor_core.c') or diag($cc);

my @out = split /\n/, `$dir/t @{[map { $_->[0] } @cases]}`;
is(scalar @out, scalar @cases, 'one line per time');

for my $i (0 .. $#cases) {
    my ($ms, $want) = @{$cases[$i]};
    my ($n, $len, $text) = split / /, $out[$i] // '', 3;
    is($text, $want, "$ms: $want");
    is($n, $len, "$ms: the returned length is the length written");
}

done_testing;
