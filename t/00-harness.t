#!/usr/bin/perl
# Self-check of t/lib/CreorTest.pm against plain nginx (no module loaded).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;

my $t = CreorTest->new(
    no_module     => 1,
    server_config => 'location = /chunked { ssi on; default_type text/html; '
                   . 'return 200 "chunked body\n"; }',
);

unlike($t->conf_text, qr/load_module|creor_/, 'no module lines in conf');
like($t->conf_text, qr/listen 127\.0\.0\.1:${\ $t->port};/, 'listen port');
is(sprintf('%o', ((stat $t->store)[2] // 0) & 07777), '777',
   'store dir writable by the worker user');
like(CreorTest::_slurp('/proc/' . $t->pid . '/cmdline') // '',
     qr/^nginx: master process/, 'pid file names the nginx master');
is(scalar(my @w = $t->worker_pids), 2, 'two workers');

my $r = $t->req(GET => '/plain');
is($r->{status}, 200, 'GET /plain');
is($r->{body}, "ok\n", 'body');
is($r->{json}, undef, 'non-JSON body gives json undef');
like($r->{headers}{server}, qr/nginx/, 'lowercased header names');

my $c = $t->conn;
for my $i (1, 2) {
    my $r = $c->req(GET => '/plain');
    is($r->{status}, 200, "keepalive request $i");
    is($r->{body}, "ok\n", "keepalive body $i");
}
ok(!$c->closed, 'keepalive connection still open');
$c->close;

$r = $t->req(GET => '/chunked');
is($r->{status}, 200, 'GET /chunked');
like($r->{headers}{'transfer-encoding'} // '', qr/chunked/, 'chunked');
is($r->{body}, "chunked body\n", 'chunked body decoded');

my $s = $t->stream(GET => '/chunked');
is($s->status, 200, 'stream status');
is($s->read_until(qr/body\n/, 5), "chunked body\n", 'stream read_until');
ok($s->done, 'stream done');
$s->close;

$r = $t->req(GET => '/missing', headers => [Accept => 'a', Accept => 'b']);
is($r->{status}, 404, 'duplicate request headers accepted');

$r = $t->req(undef, undef, raw => "BOGUS\r\n\r\n");
is($r->{status}, 400, 'raw malformed request gets 400');

my @old = $t->worker_pids;
my @new = $t->reload;
is(scalar @new, 2, 'two workers after reload');
ok(!(grep { my $o = $_; grep { $_ == $o } @new } @old), 'workers replaced');
is($t->req(GET => '/plain')->{status}, 200, 'serving after reload');

my $master = $t->pid;
$t->finish;
ok(!kill(0, $master), 'master gone after finish');

done_testing;
