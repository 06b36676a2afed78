#!/usr/bin/perl
# Backups as docs/operations.md has them: `mdb_copy -c` of the store while
# nginx runs and writes; the copy, served by another nginx, holds every
# agent acknowledged before the copy began, answers the same keys, and
# accepts writes.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use CreorTest;

my $MDB_COPY = '/usr/bin/mdb_copy';
ok(-x $MDB_COPY, 'mdb_copy (lmdb-utils) is installed') or BAIL_OUT('no mdb_copy');

my $t = CreorTest->new;
my $b = $t->bootstrap;
my $tok = $b->{token};

my $proj = $t->req(POST => '/v1/projects', token => $tok,
                   json => { name => 'backup' })->{json}{id};
my %P = (token => $tok, headers => { 'X-Project-Id' => $proj });

sub create_agents {
    my ($n, $tag) = @_;
    my @ids;
    for my $i (1 .. $n) {
        my $r = $t->req(POST => '/v1/agents', %P,
                        json => { name => "$tag-$i", model => 'x/y' });
        push @ids, $r->{json}{id} if $r->{status} == 201;
    }
    return @ids;
}

my @before = create_agents(200, 'before');
is(scalar @before, 200, '200 agents acknowledged before the copy');

# writes go on during the copy, from another process
my $writer = fork // die "fork: $!";
if ($writer == 0) {
    create_agents(300, 'during');
    POSIX::_exit(0);
}

my $dir = tempdir(CLEANUP => 1);
my $copy = "$dir/store";
mkdir $copy or die "mkdir $copy: $!";
my $out = qx{$MDB_COPY -c ${\ $t->store} $copy 2>&1};
is($? >> 8, 0, 'mdb_copy -c while nginx runs and writes') or diag($out);

waitpid($writer, 0);
is($? >> 8, 0, 'the writer finished');

# the copy, served by a second nginx
my $t2 = CreorTest->new;
$t2->stop;
system('rm', '-rf', $t2->store) == 0 or die 'rm';
system('cp', '-a', $copy, $t2->store) == 0 or die 'cp';
system('chmod', '-R', 'a+rwX', $t2->store) == 0 or die 'chmod';
$t2->start;

my @missing = grep {
    $t2->req(GET => "/v1/agents/$_", token => $tok)->{status} != 200
} @before;
is(scalar @missing, 0, 'the copy holds every agent acknowledged before it')
    or diag("missing: @missing[0 .. ($#missing < 4 ? $#missing : 4)]");

my $r = $t2->req(POST => '/v1/agents', %P,
                 json => { name => 'after restore', model => 'x/y' });
is($r->{status}, 201, 'the restored store takes writes with the same key');

$t2->finish('restored instance');
$t->finish;
done_testing;
