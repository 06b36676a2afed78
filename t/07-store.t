#!/usr/bin/perl
# Store durability and configuration: kill -9 of a worker under write load,
# reload and restart on the same store, sync=off, creor_secret_file,
# directive validation with nginx -t, ownership of the store files.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi qw(slurp spew);
use File::Temp qw(tempdir);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);


my $AGENT = { name => 'load agent', model => 'openai/gpt-4o' };

# GET every id on keep-alive connections (reopened when closed);
# returns the ids that did not answer 200, with their status.
sub unreadable {
    my ($t, $token, @ids) = @_;
    my @bad;
    my $c;
    for my $id (@ids) {
        my $r;
        for my $try (1 .. 2) {
            $c = eval { $t->conn } if !$c || $c->closed;
            $r = $c ? $c->req(GET => "/v1/agents/$id", token => $token,
                              timeout => 5)
                    : { status => 0 };
            last if $r->{status};
            $c->close if $c;
            undef $c;
        }
        push @bad, "$id:$r->{status}" if $r->{status} != 200;
    }
    $c->close if $c;
    return @bad;
}

###########################################################################
# 1. kill -9 of a worker under write load (sync=on default)

my $t = CreorTest->new;
my $b = $t->bootstrap;
my $tok = $b->{token};

# 6. ownership of the store directory and LMDB files
{
    my $nobody = getpwnam('nobody');
    ok(defined $nobody, 'user nobody exists');
    for my $f ('', '/data.mdb', '/lock.mdb') {
        my @st = stat($t->store . $f);
        ok(@st, "store$f exists");
        is($st[4], $nobody, "store$f owned by nobody");
    }
}

my $pr = $t->req(POST => '/v1/projects', token => $tok,
                 json => { name => 'load project' });
is($pr->{status}, 201, 'project created');
my $proj = $pr->{json}{id} // 'none';

my $r = $t->req(POST => '/v1/agents', token => $tok,
                headers => { 'X-Project-Id' => $proj }, json => $AGENT);
is($r->{status}, 201, 'agent created before load');
my @pre_ids = ($r->{json}{id} // ());

my @workers0 = $t->worker_pids;
is(scalar @workers0, 2, 'two workers before kill');

my $NCLIENTS  = 4;
my $DURATION  = 4.0;
my $KILL_AT   = 1.5;
my $start     = time;
my $end       = $start + $DURATION;
my %files;
my @kids;

for my $n (1 .. $NCLIENTS) {
    my $file = $t->dir . "/client$n.txt";
    $files{$n} = $file;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open(my $out, '>', $file) or POSIX::_exit(2);
        $out->autoflush(1);
        my $i = 0;
        while (time < $end && $i < 100000) {
            $i++;
            my $res = eval {
                $t->req(POST => '/v1/agents', token => $tok,
                        headers => { 'X-Project-Id' => $proj },
                        json => { %$AGENT, name => "c$n-$i" }, timeout => 5);
            } // { status => 0, error => "connect: $@" };
            my $now = sprintf '%.3f', time;
            if ($res->{status} == 201 && $res->{json} && $res->{json}{id}) {
                print $out "ID $res->{json}{id} $now\n";
            } elsif ($res->{status} == 0) {
                print $out "ERR 0 $now\n";
            } else {
                my $body = $res->{body} // '';
                $body =~ s/\s+/ /g;
                print $out "ERR $res->{status} $now $body\n";
            }
        }
        close $out;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}

sleep 0.05 while time < $start + $KILL_AT;
my $victim = $workers0[0];
ok(kill('KILL', $victim), "kill -9 worker $victim");
my $kill_time = time;

# the master starts a replacement worker
my ($replaced_at, @workers1);
while (time < $kill_time + 10) {
    @workers1 = $t->worker_pids;
    if (@workers1 == 2 && !grep { $_ == $victim } @workers1) {
        $replaced_at = time;
        last;
    }
    sleep 0.02;
}
ok($replaced_at, 'replacement worker started')
    or diag("workers now: @workers1");
ok($replaced_at && $replaced_at - $kill_time < 5,
   'replacement within 5 s of the kill')
    or diag(sprintf 'took %.2f s', ($replaced_at // time) - $kill_time);
my %old = map { $_ => 1 } @workers0;
is(scalar(grep { !$old{$_} } @workers1), 1, 'exactly one new worker pid');

# the new worker serves at once
{
    my @st;
    for (1 .. 20) {
        my $r = eval { $t->req(GET => '/v1/agents?limit=1', token => $tok,
                               timeout => 5) } // { status => 0 };
        push @st, $r->{status};
    }
    my $t_done = time - $kill_time;
    is(scalar(grep { $_ == 200 } @st), 20,
       '20 consecutive requests after the replacement all 200')
        or diag("statuses: @st");
    cmp_ok($t_done, '<', 8, 'serving again promptly after the kill');
}

for my $pid (@kids) {
    my $deadline = time + 15;
    my $done = 0;
    while (time < $deadline) {
        if (waitpid($pid, WNOHANG) == $pid) { $done = 1; last }
        sleep 0.05;
    }
    unless ($done) { kill 'KILL', $pid; waitpid($pid, 0) }
    ok($done && $? == 0, "client $pid finished cleanly");
}

my (@ids, @errs, $after_kill);
$after_kill = 0;
for my $n (sort keys %files) {
    for my $line (split /\n/, slurp($files{$n}) // '') {
        if ($line =~ /^ID (\S+) (\S+)$/) {
            push @ids, $1;
            $after_kill++ if $2 > $kill_time + 0.5;
        } elsif ($line =~ /^ERR (\d+) (\S+)\s*(.*)$/) {
            push @errs, [$1, $2, $3];
        }
    }
}
my %uniq = map { $_ => 1 } @ids;
note(sprintf '%d acknowledged writes (%d after the kill), %d connection '
             . 'errors, %d error responses', scalar @ids, $after_kill,
     scalar(grep { $_->[0] == 0 } @errs), scalar(grep { $_->[0] } @errs));
cmp_ok(scalar @ids, '>', 50, 'clients got many acknowledged writes')
    or diag(scalar(@ids) . ' ids');
is(scalar keys %uniq, scalar @ids, 'acknowledged ids are unique');
cmp_ok($after_kill, '>', 10, 'writes acknowledged after the kill');
my @conn_errs  = grep { $_->[0] == 0 } @errs;
my @other_errs = grep { $_->[0] != 0 } @errs;
cmp_ok(scalar @conn_errs, '<=', 2 * $NCLIENTS,
       'connection errors only for the few in-flight requests');
is(scalar @other_errs, 0, 'no error responses under load (only 201 or eof)')
    or diag(join "\n", map { "$_->[0] at $_->[1]: $_->[2]" }
                       @other_errs[0 .. ($#other_errs < 9 ? $#other_errs : 9)]);

push @ids, @pre_ids;
my @bad = unreadable($t, $tok, @ids);
is(scalar @bad, 0, 'every acknowledged agent readable after kill -9')
    or diag('unreadable: ' . join(' ', @bad[0 .. ($#bad < 9 ? $#bad : 9)]));

like($t->error_log_text, qr/worker process $victim exited on signal 9/,
     'error.log records the worker exit on signal 9');

###########################################################################
# 2. reload and restart durability

my @after_reload = $t->reload;
is(scalar @after_reload, 2, 'two workers after reload');
@bad = unreadable($t, $tok, @ids);
is(scalar @bad, 0, 'every agent readable after reload')
    or diag('unreadable: ' . join(' ', @bad[0 .. ($#bad < 9 ? $#bad : 9)]));

$r = $t->req(POST => '/v1/agents', token => $tok,
             headers => { 'X-Project-Id' => $proj }, json => $AGENT);
is($r->{status}, 201, 'write after reload');
push @ids, $r->{json}{id} if $r->{status} == 201;

$t->stop;

{
    my ($rc, $out, $err) = $t->cli_status('stats');
    is($rc, 0, 'creor stats on the stopped store') or diag($err);
    my ($entries) = $out =~ /^entries\t(\d+)$/m;
    cmp_ok($entries // 0, '>', scalar @ids, 'stats counts the stored records');
}

{
    my ($rc, $out, $pid) = $t->start_again;
    is($rc, 0, 'nginx restarted on the same conf and store') or diag($out);
    ok($pid, 'restarted master pid');

    @bad = unreadable($t, $tok, @ids);
    is(scalar @bad, 0, 'every agent readable after a restart')
        or diag('unreadable: ' . join(' ', @bad[0 .. ($#bad < 9 ? $#bad : 9)]));

    if ($pid) {
        my @procs = ($pid, $t->worker_pids);
        kill 'QUIT', $pid;
        my $deadline = time + 10;
        sleep 0.02 while time < $deadline
                         && grep { CreorTest::_alive($_) } @procs;
        my @left = grep { CreorTest::_alive($_) } @procs;
        ok(!@left, 'restarted nginx stopped on QUIT');
        if (@left) { kill 'KILL', @left; sleep 0.2; CreorTest::_alive($_) for @left }
    }
}

{
    my @lines = $t->check_log(ignore => qr/exited on signal 9/);
    ok(!@lines, 'no alerts besides the expected signal 9 exit')
        or diag(join "\n", @lines);
}

###########################################################################
# 3. sync=off

{
    my $t3 = CreorTest->new(store_opts => 'sync=off');
    my $b3 = $t3->bootstrap;
    my $p = $t3->req(POST => '/v1/projects', token => $b3->{token},
                     json => { name => 'p' });
    is($p->{status}, 201, 'sync=off: project created');
    my $a = $t3->req(POST => '/v1/agents', token => $b3->{token},
                     headers => { 'X-Project-Id' => $p->{json}{id} // 'x' },
                     json => $AGENT);
    is($a->{status}, 201, 'sync=off: agent created');
    my $id = $a->{json}{id} // 'none';
    my $g = $t3->req(GET => "/v1/agents/$id", token => $b3->{token});
    is($g->{status}, 200, 'sync=off: agent read back');
    is($g->{json}{name}, $AGENT->{name}, 'sync=off: same agent');
    $t3->reload;
    is($t3->req(GET => "/v1/agents/$id", token => $b3->{token})->{status},
       200, 'sync=off: agent readable after reload');
    $t3->finish('sync=off: no alerts');
}

###########################################################################
# 4. creor_secret_file

my $sdir = tempdir('creor-secret-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $sdir;
my $secret = "$sdir/secret";
spew($secret, join '', map { chr(65 + $_ % 26) } 1 .. 40);
my $wrong = "$sdir/wrong";
spew($wrong, join '', map { chr(97 + $_ % 26) } 1 .. 40);
my $short = "$sdir/short";
spew($short, '0123456789');

{
    my $t4 = CreorTest->new(http_config => "creor_secret_file $secret;");
    my ($rc, $org, $err) = $t4->cli_status('--secret-file', $secret,
                                           'org', 'create', 'Secret Org');
    is($rc, 0, 'CLI with --secret-file creates an org') or diag($err);
    chomp $org;
    ($rc, my $key, $err) = $t4->cli_status('--secret-file', $secret, 'key',
                                           'create', '--org', $org,
                                           '--name', 's');
    is($rc, 0, 'CLI with --secret-file creates a key') or diag($err);
    chomp $key;
    like($key, qr/^ck_\S+$/, 'token printed');

    my $g = $t4->req(GET => '/v1/projects', token => $key);
    is($g->{status}, 200, 'key made with the secret file authenticates');
    my $p = $t4->req(POST => '/v1/projects', token => $key,
                     json => { name => 'sp' });
    is($p->{status}, 201, 'and can write');

    my $bad = $key;
    $bad =~ s/(.)$/$1 eq 'a' ? 'b' : 'a'/e;
    is($t4->req(GET => '/v1/projects', token => $bad)->{status}, 401,
       'altered secret rejected');

    ($rc, my $out, $err) = $t4->cli_status('org', 'create', 'No Secret');
    isnt($rc, 0, 'CLI without --secret-file fails on that store');
    like($err, qr/secret/i, 'with a message about the secret on stderr');
    is($out, '', 'and nothing on stdout');

    ($rc, $out, $err) = $t4->cli_status('--secret-file', $wrong,
                                        'org', 'create', 'Wrong');
    isnt($rc, 0, 'CLI with a wrong secret file fails');
    like($err, qr/secret/i, 'wrong secret: message on stderr');

    ($rc, $out, $err) = $t4->cli_status('--secret-file', $short, 'stats');
    isnt($rc, 0, 'CLI with a 10-byte secret file fails');

    $t4->finish('secret file: no alerts');
}

###########################################################################
# 5. nginx -t on bad directive values (and the 10-byte secret file)

my $cdir = $t->conf_dir;

{
    my ($rc, $out) = $t->conf_test("creor_store $cdir/store;", 'creor_api;');
    is($rc, 0, 'nginx -t: valid conf passes') or diag($out);

    ($rc, $out) = $t->conf_test("creor_store $cdir/store map_size=4m sync=off;",
                            'creor_api;');
    is($rc, 0, 'nginx -t: map_size=4m sync=off passes') or diag($out);

    ($rc, $out) = $t->conf_test("creor_store $cdir/store; "
                            . "creor_secret_file $secret;", 'creor_api;');
    is($rc, 0, 'nginx -t: 40-byte secret file passes') or diag($out);

    ($rc, $out) = $t->conf_test("creor_store $cdir/store; "
                            . "creor_secret_file $short;", 'creor_api;');
    isnt($rc, 0, 'nginx -t: 10-byte secret file fails');
    like($out, qr/creor_secret_file/, '10-byte secret: message names it')
        or diag($out);

    for my $case (['map_size=abc', qr/map_size/],
                  ['map_size=1k',  qr/map_size/],
                  ['sync=maybe',   qr/sync=maybe/],
                  ['frobnicate=1', qr/frobnicate/]) {
        my ($arg, $re) = @$case;
        ($rc, $out) = $t->conf_test("creor_store $cdir/store $arg;", 'creor_api;');
        isnt($rc, 0, "nginx -t: creor_store $arg fails");
        like($out, qr/creor_store/, "creor_store $arg: message names the "
                                    . 'directive') or diag($out);
        like($out, $re, "creor_store $arg: message names the value");
    }

    ($rc, $out) = $t->conf_test("creor_store $cdir/store;", 'creor_api on;');
    isnt($rc, 0, 'nginx -t: creor_api with an argument fails');
    like($out, qr/creor_api/, 'creor_api with an argument: message names it')
        or diag($out);
}

###########################################################################

done_testing;
