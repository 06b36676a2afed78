#!/usr/bin/perl
# Webhook delivery: throughput to a local receiver that answers at once
# (t/lib/webhook-receiver.js, which also verifies both signatures), and
# the latency from a run's terminal event (its "timestamp") to the
# receiver, p50 and p99.  Short runs: the machine is shared.
#
#   perl bench/webhooks.pl [deliveries] [runs]

use strict;
use warnings;
use FindBin;
BEGIN { $FindBin::Bin = "$FindBin::Bin/../t" }
use lib "$FindBin::Bin/lib";
use Time::HiRes qw(time sleep);
use CreorTest;
use CreorExecutor;
use CreorReceiver;

my $N    = shift // 1000;
my $RUNS = shift // 100;

my $rx = CreorReceiver->new;
my $ex = CreorExecutor->new;
# first without creor_webhook_proxy: deliveries wait in the store
my $HTTP = 'creor_webhook_allow_private on; creor_executor /_exec;';
my $t = CreorTest->new(
    store_opts  => 'sync=off',
    http_config => $HTTP,
    server_config => 'location /_wh { internal; proxy_pass '
        . '$creor_webhook_scheme://$creor_webhook_addr$creor_webhook_uri; '
        . 'proxy_set_header Host $creor_webhook_host; proxy_http_version 1.1; } '
        . 'location /_exec { internal; proxy_pass ' . $ex->url . '/run; '
        . 'proxy_buffering off; proxy_http_version 1.1; }');
my $tok = $t->bootstrap->{token};

sub api { $t->req($_[0] => $_[1], token => $tok, json => $_[2])->{json} }

sub wait_count {
    my ($path, $n, $timeout) = @_;
    my $deadline = time + $timeout;
    my @got;
    while (time < $deadline) {
        @got = grep { $_->{path} eq $path } $rx->log;
        last if @got >= $n;
        sleep 0.2;
    }
    return @got;
}

# throughput: test events to 8 endpoints, queued while nginx has no
# creor_webhook_proxy; a reload that sets it lets the queue drain as fast
# as nginx sends it
my @wh = map { api(POST => '/v1/webhooks',
                   { url => $rx->url('/tp'), events => ['webhook.test'] })->{id} }
         1 .. 8;
my $t0 = time;
api(POST => "/v1/webhooks/$wh[$_ % 8]/test", {}) for 1 .. $N;
my $queued = time - $t0;
$t->reload(http_config => "$HTTP creor_webhook_proxy /_wh;");
my @tp = wait_count('/tp', $N, 120);
my ($first, $last) = (sort { $a <=> $b } map { $_->{at} } @tp)[0, -1];
printf "throughput: %d deliveries in %.2f s after the first: %.0f/s "
     . "(queued in %.2f s, %d verified)\n", scalar @tp,
       ($last - $first) / 1000, @tp / (($last - $first) / 1000 || 1), $queued,
       scalar grep { $_->{verified}{reserialized} } @tp;

# latency: runs one after another, each run.completed to the receiver
api(POST => '/v1/webhooks', { url => $rx->url('/lat'), events => ['run.completed'] });
my $proj = api(POST => '/v1/projects', { name => 'bench' })->{id};
my $agent = $t->req(POST => '/v1/agents', token => $tok,
                    headers => { 'X-Project-Id' => $proj },
                    json => { name => 'b', model => 'x/y' })->{json}{id};
for my $i (1 .. $RUNS) {
    api(POST => '/v1/runs', { appId => $agent, inputs => { script => 'ok', delay => 0 } });
    wait_count('/lat', $i, 20);
}
my @lat = sort { $a <=> $b } map {
    my ($s, $ms) = $_->{event}{timestamp} =~ /:(\d\d)\.(\d{3})Z$/;
    require Time::Local;
    my ($y, $mo, $d, $h, $mi) = $_->{event}{timestamp} =~ /^(\d+)-(\d+)-(\d+)T(\d+):(\d+)/;
    my $ev = Time::Local::timegm($s, $mi, $h, $d, $mo - 1, $y) * 1000 + $ms;
    $_->{at} - $ev
} wait_count('/lat', $RUNS, 5);
printf "latency run.completed -> receiver over %d runs: p50 %d ms, p99 %d ms\n",
       scalar @lat, $lat[int(@lat * 0.5)], $lat[int(@lat * 0.99)];

$t->finish;
$ex->stop;
$rx->stop;
