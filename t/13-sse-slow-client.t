# A subscriber that does not read while thousands of events are stored
# gets every one of them, in order, once it reads; nothing is dropped
# and the worker does not buffer the backlog in memory.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;
use CreorExecutor;

my $ex = CreorExecutor->new;
my $t = CreorTest->new(
    http_config   => 'creor_executor /_exec;',
    server_config => $ex->location);

my $b = $t->bootstrap;
my %auth = (token => $b->{token});
my (undef, $agent) = project_agent($t, $b->{token});

my $steps = 20000;
my $run = $t->req('POST', '/v1/runs', %auth,
                  json => { appId => $agent,
                            inputs => { script => 'long', steps => $steps,
                                        delay => 0 } })->{json}{id};
ok($run, 'run created');

# a small receive buffer, and no reading until the run is over
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port)
    or die "connect: $!";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 32768);
print $s "GET /v1/runs/$run/events/stream HTTP/1.1\r\nHost: t\r\n"
       . "Authorization: Bearer $b->{token}\r\n\r\n";

my $status = wait_run($run, sub { ($_[0]{status} // '') eq 'completed' }, 30,
                      inst => $t, %auth)->{status} // '';
is($status, 'completed', 'the run completed while its subscriber slept');

my ($buf, $t0) = ('', time);
while (time - $t0 < 60) {
    my $n = sysread($s, my $chunk, 4096);
    last unless $n;
    $buf .= $chunk;
    last if $buf =~ /"type":"run\.completed".*\n\n/s;
}

my @ids = $buf =~ /^id: (\d+)$/mg;
my $expect = $steps + 5;      # queued, started, step.started, done, completed
is(scalar @ids, $expect, "all $expect events arrived");
is_deeply(\@ids, [1 .. $expect], 'in order, none twice');

$t->finish;
$ex->stop;
done_testing;
