# An executor reply that breaks the line bound (1 MB) is a failed try,
# retried after the normal backoff, not after a whole creor_run_lease;
# and the backoff of a large creor_executor_retries stays between 0.5 s
# and 30 s (it used to overflow into a hot loop after 24 tries).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;
use CreorExecutor;

my $FAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';

my $ex = CreorExecutor->new;

sub gateway {
    my (%o) = @_;
    my $t = CreorTest->new(
        %o,
        http_config   => "creor_executor /_exec; $o{http}",
        server_config => $ex->location);
    my $b = $t->bootstrap;
    my %auth = (token => $b->{token});
    my (undef, $agent) = project_agent($t, $b->{token});
    return ($t, \%auth, $agent);
}

sub gaps {
    my @at = map { $_->{at} } @_;
    return map { $at[$_] - $at[$_ - 1] } 1 .. $#at;
}

# 1. a line over 1 MB, then silence: three tries, 0.5 s and 1 s apart,
#    each call closed by the gateway; with the 30 s lease it took 90 s
{
    my ($t, $auth, $agent) = gateway(http => 'creor_executor_retries 2; '
                                            . 'creor_run_lease 30s;');
    my $t0 = time;
    my $run = $t->req('POST', '/v1/runs', %$auth,
                      json => { appId => $agent,
                                inputs => { script => 'longline',
                                            size => 1200000, hang => 60 } })
                ->{json}{id};
    ok($run, 'run created');

    my $r;
    for (1 .. 200) {
        $r = $t->req('GET', "/v1/runs/$run", %$auth)->{json};
        last if $r->{status} eq 'failed';
        sleep 0.1;
    }
    my $took = time - $t0;
    is($r->{status}, 'failed', 'the run failed');
    is($r->{errorCode} // $r->{error}{code} // '', 'EXECUTOR_UNAVAILABLE',
       '... EXECUTOR_UNAVAILABLE')
        or diag explain $r;
    cmp_ok($took, '<', 15, sprintf 'within %.1f s, not 3 leases', $took);

    my @calls = $ex->requests_for($run);
    is(scalar @calls, 3, 'after three calls');
    my @g = gaps(@calls);
    cmp_ok($g[0], '>=', 0.45, 'the second 0.5 s after the first');
    cmp_ok($g[1], '>=', 0.95, 'the third 1 s after the second');
    ok($ex->wait_for(sub { !grep { !defined $_->{closed_at} }
                                $ex->requests_for($run) }, 10),
       'the gateway closed every call');
    my @held = grep { defined $_->{closed_at} && $_->{closed_at} - $_->{at} > 10 }
               $ex->requests_for($run);
    is(scalar @held, 0, 'none was held until the executor gave up');
    like($t->error_log_text, qr/executor line of \Q$run\E is over/,
         'the long line is logged');
    $t->finish;
}

# 2. creor_executor_retries 1000 and an executor that always fails.  The
#    gateway's wall clock runs 50 times faster (libfaketime; its timers
#    do not), so 40 tries take 25 s: from the 8th the gaps are the 30 s
#    cap, 0.6 s of real time, never the hot loop of an overflowed shift.
SKIP: {
    skip 'libfaketime is not installed', 5 unless -e $FAKETIME;
    # libfaketime's start-up hangs in nginx preloaded with libasan
    skip 'libfaketime does not run under ASan', 5 if $ENV{CREOR_ASAN};
    my $speed = 50;
    my ($t, $auth, $agent) = gateway(
        http => 'creor_executor_retries 1000; creor_run_timeout 1000h; '
              . 'creor_run_lease 1h;',
        env  => { LD_PRELOAD => $FAKETIME, FAKETIME => "+0 x$speed",
                  FAKETIME_DONT_FAKE_MONOTONIC => 1 });
    my $run = $t->req('POST', '/v1/runs', %$auth,
                      json => { appId => $agent,
                                inputs => { script => 'fail500' } })
                ->{json}{id};
    ok($run, 'run created');

    my $tries = 40;
    my @calls = $ex->wait_for(sub {
        my @r = $ex->requests_for($run);
        return @r >= $tries ? @r : ();
    }, 120);
    is(scalar @calls >= $tries, 1, "$tries tries");

    my @g = map { $_ * $speed } gaps(@calls[0 .. $tries - 1]);
    my @short = grep { $g[$_] < 25 } 7 .. $#g;
    my @long = grep { $g[$_] > 250 } 0 .. $#g;
    is_deeply(\@short, [], 'from the 8th try on, 30 s (of the gateway\'s '
                           . 'clock) between tries')
        or diag join ' ', map { sprintf '%.1f', $_ } @g;
    is_deeply(\@long, [], 'and never much more');
    is($t->req('GET', "/v1/runs/$run", %$auth)->{json}{status}, 'running',
       'the run is still being tried');
    $t->finish;
}

$ex->stop;
done_testing;
