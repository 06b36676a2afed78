#!/usr/bin/perl
# Webhooks (SPEC 11.4): an endpoint that has failed every attempt for 5
# days is disabled (active false, its reason shown) and gets no later
# event; one that succeeded in between stays enabled, however long ago its
# first failure was.  nginx's wall clock is moved forward by libfaketime,
# from a file read at every call; its timers are monotonic and not moved.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use CreorTest;
use CreorApi;
use CreorExecutor;
use CreorReceiver;

my $FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
plan skip_all => 'libfaketime is not installed' unless -e $FAKETIME;
# libfaketime's start-up hangs in nginx preloaded with libasan
plan skip_all => 'libfaketime does not run under ASan' if $ENV{CREOR_ASAN};

# workers run as nobody, and read the file
my $dir = tempdir(CLEANUP => 1);
chmod 0755, $dir;
my $clock = "$dir/faketime";

# nginx's clock: real time plus this offset ("+3d")
sub clock {
    my ($offset) = @_;
    open(my $f, '>', "$clock.new") or die "$clock: $!";
    print $f "$offset\n";
    close $f;
    chmod 0644, "$clock.new";
    rename "$clock.new", $clock or die "$clock: $!";
}

clock('+0');

my $rx = CreorReceiver->new;
my $ex = CreorExecutor->new;

# retries far apart: only a moved clock brings the next one
my $t = CreorTest->new(
    # nginx gives its workers only the environment it is told to
    main_config => 'env FAKETIME_TIMESTAMP_FILE; env FAKETIME_NO_CACHE; '
                 . 'env FAKETIME_DONT_FAKE_MONOTONIC;',
    http_config => 'creor_webhook_proxy /_wh; creor_webhook_allow_private on; '
                 . 'creor_webhook_retry_schedule 1s 1h 1h 1h 1h 1h; '
                 . 'creor_webhook_timeout 2s; creor_executor /_exec;',
    server_config => 'location /_wh { internal; proxy_pass '
                   . '$creor_webhook_scheme://$creor_webhook_addr$creor_webhook_uri; '
                   . 'proxy_set_header Host $creor_webhook_host; '
                   . 'proxy_http_version 1.1; } ' . $ex->location,
    env => { LD_PRELOAD => $FAKETIME, FAKETIME_TIMESTAMP_FILE => $clock,
             FAKETIME_NO_CACHE => 1, FAKETIME_DONT_FAKE_MONOTONIC => 1 });
my $A = $t->bootstrap(name => 'Clock');

api_use($t, token => $A->{token});

sub endpoint {
    my ($path) = @_;
    my $r = api(POST => '/v1/webhooks',
                json => { url => $rx->url($path), events => ['*'] });
    is($r->{status}, 201, "endpoint $path created") or diag($r->{body});
    return $r->{json}{id};
}

sub webhook { api(GET => "/v1/webhooks/$_[0]")->{json} }

# a test event to the endpoint: the delivery's id
sub test_event {
    my ($wh) = @_;
    my $r = api(POST => "/v1/webhooks/$wh/test", json => {});
    is($r->{status}, 202, 'a test event') or diag($r->{body});
    return $r->{json}{id};
}

# the delivery once it has n attempts and the status, or ()
sub delivery_at {
    my ($wh, $id, $n, $status) = @_;
    return wait_until(sub {
        grep { $_->{id} eq $id && $_->{attemptCount} >= $n
               && $_->{status} eq $status }
        @{ api(GET => "/v1/webhooks/$wh/deliveries")->{json}{data} // [] } },
        20);
}

sub received { my ($p) = @_; grep { $_->{path} eq $p } $rx->log }

# /500 always fails; /fail-1 fails the first try of each event only
my $down = endpoint('/500');
my $flaky = endpoint('/fail-1');

###########################################################################
# day 0: both fail; /fail-1 succeeds on its retry

my $d = test_event($down);
ok(delivery_at($down, $d, 2, 'failed'), 'day 0: two tries failed, '
   . 'the next in an hour');
my $w = webhook($down);
ok($w->{active}, 'day 0: enabled');
ok($w->{failingSince}, 'day 0: failing since the first try');
my $since = $w->{failingSince};

ok(delivery_at($flaky, test_event($flaky), 2, 'succeeded'),
   'day 0: /fail-1 succeeds on its retry');
is(webhook($flaky)->{failingSince}, undef, 'day 0: a success ends failing');

###########################################################################
# day 3: another failed try, still enabled

clock('+3d');
ok(delivery_at($down, $d, 3, 'failed'), 'day 3: the retry came due, failed');
$w = webhook($down);
ok($w->{active}, 'day 3: failing for 3 days, still enabled');
is($w->{failingSince}, $since, 'day 3: failing since day 0');
is($w->{disabledReason}, undef, 'day 3: no reason');

ok(delivery_at($flaky, test_event($flaky), 2, 'succeeded'),
   'day 3: /fail-1 fails once, then succeeds');

###########################################################################
# day 6: the next failure disables it

clock('+6d');
ok(delivery_at($down, $d, 4, 'dead'), 'day 6: the retry failed, dead');
$w = webhook($down);
ok(!$w->{active}, 'day 6: failing for 5 days: disabled');
like($w->{disabledReason} // '', qr/^endpoint\.disabled: failing for 5 days/,
     'day 6: the reason is shown');

ok(delivery_at($flaky, test_event($flaky), 2, 'succeeded'),
   'day 6: /fail-1 fails once, then succeeds');
$w = webhook($flaky);
ok($w->{active}, 'day 6: /fail-1, failing now and then since day 0 but '
   . 'recovered in between, stays enabled');
is($w->{disabledReason}, undef, 'day 6: /fail-1 has no reason');

###########################################################################
# later events: none for the disabled endpoint

my $tries = () = received('/500');

my (undef, $agent) = project_agent($t, $A->{token});
my $run = api(POST => '/v1/runs', json => { appId => $agent,
              inputs => { script => 'ok' } })->{json}{id};
ok($run, 'a run');

my @got = wait_until(sub {
    grep { ($_->{event}{data}{id} // '') eq $run
           && $_->{event}{type} eq 'run.completed' } received('/fail-1') }, 20);
ok(@got, 'run.completed reached the enabled endpoint');
is(scalar(grep { $_->{type} eq 'run.completed' }
          @{ api(GET => "/v1/webhooks/$down/deliveries")->{json}{data} }),
   0, 'the disabled endpoint got no delivery of it');

# a test event to it is dead at once, never sent
my $late = test_event($down);
my ($dl) = delivery_at($down, $late, 0, 'dead');
ok($dl, 'a test event to the disabled endpoint: dead');
is($dl && $dl->{attemptCount}, 0, 'and never tried');
is(scalar(() = received('/500')), $tries, 'nothing more reached /500');

$t->finish('no [alert] or [crit]');
$ex->stop;
$rx->stop;
done_testing;
