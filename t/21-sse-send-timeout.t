# An event stream whose subscriber stops reading is closed after
# send_timeout (SPEC 3.2), like any nginx response; a subscriber that
# reads slowly keeps its stream (t/13-sse-slow-client.t).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;
use CreorExecutor;

my $SEND_TIMEOUT = 2;

my $ex = CreorExecutor->new;
my $t = CreorTest->new(
    http_config   => 'creor_executor /_exec;',
    api_location  => "location /v1/ { creor_api; send_timeout ${SEND_TIMEOUT}s; }",
    server_config => $ex->location);

my $b = $t->bootstrap;
my %auth = (token => $b->{token});
my (undef, $agent) = project_agent($t, $b->{token});

# whether a worker holds the server side of the client's connection:
# /proc/net/tcp gives the socket's inode, /proc/PID/fd the workers'
sub worker_holds {
    my ($client_port) = @_;
    my $inode;
    open my $fh, '<', '/proc/net/tcp' or die "/proc/net/tcp: $!";
    while (<$fh>) {
        my @f = split;
        next unless @f > 9 && $f[1] =~ /:([0-9A-F]{4})$/
                    && hex($1) == $t->port
                    && $f[2] =~ /:([0-9A-F]{4})$/ && hex($1) == $client_port;
        $inode = $f[9];
    }
    return 0 unless $inode;
    for my $w ($t->worker_pids) {
        for my $fd (glob "/proc/$w/fd/*") {
            my $l = readlink($fd) // next;
            return 1 if $l eq "socket:[$inode]";
        }
    }
    return 0;
}
# 4000 events of 2 KB: far more than the socket buffers of both sides
my $run = $t->req('POST', '/v1/runs', %auth,
                  json => { appId => $agent,
                            inputs => { script => 'long', steps => 4000,
                                        pad => 2048, delay => 0 } })
            ->{json}{id};
ok($run, 'run created');

my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port)
    or die "connect: $!";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4096);
my $t0 = time;
print $s "GET /v1/runs/$run/events/stream HTTP/1.1\r\nHost: t\r\n"
       . "Authorization: Bearer $b->{token}\r\n\r\n";

sleep 0.5;
ok(worker_holds($s->sockport), 'a worker holds the stream');

# the worker says when it gave up on the client
my $closed_at;
while (time - $t0 < $SEND_TIMEOUT + 20) {
    if ($t->error_log_text =~ /client timed out.*events\/stream/) {
        $closed_at = time;
        last;
    }
    sleep 0.1;
}
ok($closed_at, 'the stream of a client that stopped reading was closed');
cmp_ok(($closed_at // 0) - $t0, '>=', $SEND_TIMEOUT - 0.2,
       'not before send_timeout');

ok(!worker_holds($s->sockport), 'and no worker holds it any more');

# what the client had not read yet lacks the end of the run
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 4 * 1024 * 1024);
my $buf = '';
my $sel = IO::Select->new($s);
while ($sel->can_read(1)) {
    my $n = sysread($s, my $chunk, 65536);
    last unless $n;
    $buf .= $chunk;
}
like($buf, qr/^id: 1$/m, 'the client had the first events');
unlike($buf, qr/run\.completed/, 'not the end');

my $status = wait_run($run, sub { ($_[0]{status} // '') eq 'completed' }, 30,
                      inst => $t, %auth)->{status} // '';
is($status, 'completed', 'the run itself went on to completion');

$t->finish;
$ex->stop;
done_testing;
