#!/usr/bin/perl
# The command line run as root in a store directory that nginx's master
# gave to the workers' user: the LMDB files it makes belong to that user
# too, so a worker that opens the store after it (conf/run.sh starts nginx,
# then makes a key at once) is not refused.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;

plan skip_all => 'needs root' if $> != 0;

my $t = CreorTest->new;
my $store = $t->store;
my $uid = (stat $store)[4];
isnt($uid, 0, 'the master gave the store directory to the workers\' user');
$t->stop;

unlink "$store/data.mdb", "$store/lock.mdb";
my $org = $t->cli('org', 'create', 'Owner');
like($org, qr/^org_/, 'the command line made a new store');
for my $f ('data.mdb', 'lock.mdb') {
    is((stat "$store/$f")[4], $uid, "$f belongs to the directory's owner");
}

my $token = $t->cli('key', 'create', '--org', $org, '--role', 'admin');
$t->start;
is($t->req(GET => '/v1/agents', token => $token)->{status}, 200,
   'the workers open it and serve the key');
$t->finish;
done_testing;
