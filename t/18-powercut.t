#!/usr/bin/perl
# Durability at the block level (SPEC 2, creor_store sync=on with group
# commit): build/powercut.so keeps the image a disk would hold if the
# power failed now (writes reach it only once synced).  Idempotent creates
# run from many connections over both workers; the power is cut while
# they run, nginx is killed, the image replaces the store's data file and
# every create answered before the cut must be in the store.  The same
# run with sync=off shows the test can fail: answers given before their
# data is on disk are lost.  Last, a group whose commit fails (a full
# map): its requests get the store's envelope and none of their writes.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Copy qw(copy);
use File::Temp qw(tempdir);
use POSIX ();
use Time::HiRes qw(time sleep);
use CreorTest;

my $LIB = "$CreorTest::BUILD/powercut.so";
die "$LIB not built (run make)\n" unless -f $LIB;

my $LOAD   = 1.0;     # seconds of creates before the cut
my $BATCH  = 16;      # concurrent creates at a time
my $DELAY  = 20;      # ms a sync of the store takes at least

# one run: the ids answered 201 before the cut, and those of them the
# store has after it
sub run_cut {
    my ($sync) = @_;
    my $t = CreorTest->new(store_opts => "sync=$sync");
    my $b = $t->bootstrap(name => "Cut $sync");
    my $proj = $t->cli('project', 'create', '--org', $b->{org}, 'p');
    $t->stop;

    my $fdir = tempdir('creor-cut-XXXXXX', TMPDIR => 1,
                       CLEANUP => !$ENV{CREOR_KEEP});
    chmod 0777, $fdir or die "chmod $fdir: $!";
    my $data  = $t->store . '/data.mdb';
    my $image = "$fdir/image";
    copy($data, $image) or die "copy $data: $!";
    open(my $fh, '>', "$fdir/log") or die "$fdir/log: $!";
    close $fh;
    chmod 0666, $image, "$fdir/log";

    $t->{preload} = [$LIB];
    $t->{env} = { POWERCUT_FILE => $data, POWERCUT_IMAGE => $image,
                  POWERCUT_CTL => "$fdir/cut", POWERCUT_LOG => "$fdir/log",
                  POWERCUT_DELAY => $DELAY };
    $t->start;

    # the cut comes from another process, in the middle of a batch
    my $start = time;
    my $cutter = fork // die "fork: $!";
    if ($cutter == 0) {
        sleep $LOAD;
        # the time before the cut: answers read earlier came before it
        open(my $c, '>', "$fdir/cut.tmp") or POSIX::_exit(1);
        print $c sprintf('%.6f', time);
        close $c;
        rename "$fdir/cut.tmp", "$fdir/cut" or POSIX::_exit(1);
        POSIX::_exit(0);
    }

    my (@acked, $cut);
    my $n = 0;
    while (1) {
        my @rs = $t->concurrent([map {
            [POST => '/v1/agents', token => $b->{token},
             headers => { 'X-Project-Id' => $proj,
                          'Idempotency-Key' => 'cut-' . $n++ },
             json => { name => "a$n", model => 'openai/gpt-4o-mini' }]
        } 1 .. $BATCH]);
        for my $r (@rs) {
            next unless $r->{status} == 201 && ref $r->{json} eq 'HASH';
            push @acked, [$r->{json}{id}, $r->{t1}];
        }
        last if -e "$fdir/cut";
    }
    waitpid($cutter, 0);
    open(my $c, '<', "$fdir/cut") or die "$fdir/cut: $!";
    $cut = <$c>;
    close $c;
    ok($t->kill_all, "sync=$sync: nginx killed after the cut");

    # the disk as the power cut left it
    copy($image, $data) or die "copy $image: $!";
    unlink $t->store . '/lock.mdb';
    $t->{preload} = [];
    $t->{env} = {};
    $t->start;

    my @before = map { $_->[0] } grep { $_->[1] < $cut } @acked;
    my @kept = grep {
        $t->req(GET => "/v1/agents/$_", token => $b->{token})->{status} == 200
    } @before;
    note(sprintf('sync=%s: %d creates answered, %d before the cut, '
                 . '%d of those in the store', $sync, scalar @acked,
                 scalar @before, scalar @kept));
    $t->finish("sync=$sync: no alerts");
    return (\@before, \@kept);
}

{
    my ($before, $kept) = run_cut('on');
    cmp_ok(scalar @$before, '>=', $BATCH,
           'sync=on: creates were answered before the cut');
    is(scalar @$kept, scalar @$before,
       'sync=on: every create answered before the cut is in the store');
}

{
    my ($before, $kept) = run_cut('off');
    cmp_ok(scalar @$before, '>=', $BATCH,
           'sync=off: creates were answered before the cut');
    cmp_ok(scalar @$kept, '<', scalar @$before,
           'sync=off: answers given before their data was on disk are lost '
           . '(the image is a power cut)');
}

# the group's own commit can fail (a full map is found when the group
# writes its free list): its parked requests get the store's envelope,
# none of their writes exists, and the server goes on
{
    my $t = CreorTest->new(store_opts => 'map_size=256k sync=on');
    my $b = $t->bootstrap(name => 'Full');
    my ($full, $made);
    for my $i (1 .. 400) {
        my $r = $t->req(POST => '/v1/projects', token => $b->{token},
                        json => { name => "p$i", description => 'd' x 250 });
        if ($r->{status} != 201) { $full = $r; last }
        $made++;
    }
    is($full && $full->{status}, 503, 'full map, sync=on: 503');
    is($full && ref $full->{json} eq 'HASH' && $full->{json}{error}{code},
       'STORE_FULL', 'full map, sync=on: STORE_FULL');
    # every project, page by page: those answered 201 and no other
    my ($r, %seen);
    my $path = '/v1/projects?limit=100';
    while ($path) {
        $r = $t->req(GET => $path, token => $b->{token});
        last unless $r->{status} == 200;
        $seen{$_->{name}}++ for @{$r->{json}{data}};
        $path = $r->{json}{has_more}
              ? "/v1/projects?limit=100&cursor=$r->{json}{next_cursor}" : undef;
    }
    is($r->{status}, 200, 'full map, sync=on: reads go on')
        or diag($r->{body});
    is_deeply([sort keys %seen], [sort map { "p$_" } 1 .. $made],
              'full map, sync=on: the projects answered 201, and only they');
    $t->finish('full map, sync=on: no alerts');
}

done_testing;
