#!/usr/bin/perl
# Webhook deliveries are purged (creor_webhook_retention): finished ones
# (succeeded, dead) after the retention, every one of a deleted endpoint at
# once, by the housekeeping timer; deliveries still to be retried stay,
# and the queue depth of /v1/system/status follows.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(time sleep);
use CreorTest;
use CreorApi;
use CreorReceiver;

my $rx = CreorReceiver->new;

my $t = CreorTest->new(
    http_config => 'creor_webhook_proxy /_wh; creor_webhook_allow_private on; '
                 . 'creor_webhook_retry_schedule 1h; creor_webhook_timeout 2s; '
                 . 'creor_webhook_retention 2s; '
                 . 'creor_housekeeping_interval 300ms;',
    server_config => 'location /_wh { internal; proxy_pass '
                   . '$creor_webhook_scheme://$creor_webhook_addr'
                   . '$creor_webhook_uri; proxy_set_header Host '
                   . '$creor_webhook_host; proxy_http_version 1.1; }');
my $A = $t->bootstrap(name => 'Purge');
my $B = $t->bootstrap(name => 'Other');

api_use($t, token => $A->{token});

sub statuses {
    my ($wh, $token) = @_;
    my $r = api(GET => "/v1/webhooks/$wh/deliveries",
                token => $token // $A->{token});
    return join ' ', sort map { $_->{status} } @{ $r->{json}{data} // [] };
}

sub depth { api(GET => '/v1/system/status')->{json}{webhook_queue_depth} }

# [name, receiver path, organization, tests sent, status once attempted]
my @CASES = (
    ['ok',    '/ok',  $A, 2, 'succeeded succeeded'],
    ['gone',  '/410', $A, 1, 'dead'],
    ['fail',  '/500', $A, 1, 'failed'],
    ['del',   '/500', $A, 2, 'failed failed'],
    ['other', '/500', $B, 1, 'failed'],
);
my %wh;

for my $c (@CASES) {
    my ($name, $path, $org, $n) = @$c;
    my $r = $t->req(POST => '/v1/webhooks', token => $org->{token},
                    json => { url => $rx->url($path),
                              events => ['webhook.test'] });
    is($r->{status}, 201, "$name: created") or diag($r->{body});
    $wh{$name} = $r->{json}{id};
    for (1 .. $n) {
        is(api(POST => "/v1/webhooks/$wh{$name}/test", token => $org->{token})
           ->{status}, 202, "$name: test event");
    }
}

for my $c (@CASES) {
    my ($name, undef, $org, undef, $want) = @$c;
    ok(wait_until(sub { statuses($wh{$name}, $org->{token}) eq $want }, 15),
       "$name: $want") or diag(statuses($wh{$name}, $org->{token}));
}
my $finished = time;

is(depth(), 4, 'status: 4 deliveries to retry');
is(api(DELETE => "/v1/webhooks/$wh{del}")->{status}, 200, 'del: deleted');

# a deleted endpoint's deliveries go at the next turn, finished or not
ok(wait_until(sub { depth() == 2 }, 5), 'status: its 2 left the queue');
is(statuses($wh{del}), '', 'del: no delivery listed');
is(statuses($wh{ok}), 'succeeded succeeded',
   'ok: kept within the retention');

# finished ones after the retention (2s), the others stay
ok(wait_until(sub { statuses($wh{ok}) eq '' && statuses($wh{gone}) eq '' },
              10), 'finished deliveries purged after the retention');
cmp_ok(time - $finished, '>=', 1.5, 'not before the retention');
is(statuses($wh{fail}), 'failed', 'fail: the delivery to retry stays');
is(statuses($wh{other}, $B->{token}), 'failed',
   "other: another organization's delivery stays");
is(depth(), 2, 'status: the queue depth unchanged');
is(api(GET => "/v1/webhooks/$wh{ok}")->{status}, 200, 'ok: endpoint kept');

$t->finish;
done_testing;
