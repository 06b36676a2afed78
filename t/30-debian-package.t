#!/usr/bin/perl
# The Debian package: `make deb` builds libnginx-mod-http-creor with
# dh-sequence-nginx; installed into the stock nginx it enables the module,
# the example site passes `nginx -t` and serves the API, the CLI is
# /usr/bin/creor, and purging it leaves the stock nginx as it was.
#
# Changes the machine's /etc/nginx and dpkg database, so it runs as root
# only, and not in the AddressSanitizer pass (the package's module is the
# plain build).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi qw(free_port);

plan skip_all => 'needs root (installs a package)' if $> != 0;
plan skip_all => 'the package holds the plain build' if $ENV{CREOR_ASAN};
plan skip_all => 'dpkg-buildpackage is missing'
    unless -x '/usr/bin/dpkg-buildpackage';

my $PKG     = 'libnginx-mod-http-creor';
my $NGINX   = $CreorTest::NGINX;
my $ROOT    = $CreorTest::ROOT;
my $SO      = '/usr/lib/nginx/modules/ngx_creor_module.so';
my $SNIPPET = '/etc/nginx/modules-enabled/50-mod-http-creor.conf';
my $EXAMPLE = "/usr/share/doc/$PKG/examples/creor-site.conf";
my $SITE    = '/etc/nginx/sites-available/creor-test';
my $ENABLED = '/etc/nginx/sites-enabled/creor-test';

sub run_ok {
    my ($name, @cmd) = @_;
    my $out = qx{@cmd 2>&1};
    is($? >> 8, 0, $name) or diag($out);
    return $out;
}

sub http_get {
    my ($port, $path, $token) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $port,
                                Timeout => 10) or return {};
    my $auth = $token ? "Authorization: Bearer $token\r\n" : '';
    print $s "GET $path HTTP/1.1\r\nHost: localhost\r\n$auth"
           . "Connection: close\r\n\r\n";
    local $/;
    my $raw = <$s> // '';
    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.1 (\d+)};
    return { status => $status // 0, body => $body // '' };
}

# leave no state of an earlier run behind
unlink $ENABLED, $SITE;
system("dpkg --purge $PKG >/dev/null 2>&1");

# build

run_ok('make deb', "make -s -C $ROOT deb >/dev/null");
my ($deb) = glob("$ROOT/build/deb/${PKG}_*_*.deb");
ok($deb && -f $deb, 'the package file') or BAIL_OUT('no package');

my $fields = qx{dpkg-deb -f $deb Package Depends};
like($fields, qr/^Package: \Q$PKG\E$/m, 'package name');
like($fields, qr/nginx-abi-/, 'depends on the nginx ABI it was built for');
like($fields, qr/liblmdb/, 'depends on LMDB (shlibs)');

# install

run_ok('dpkg -i', "dpkg -i $deb");
ok(-f $SO, 'module in /usr/lib/nginx/modules');
ok(-l $SNIPPET, 'module enabled on install');
like(readlink($SNIPPET) // '', qr{modules-available/mod-http-creor\.conf$},
     'enabled through modules-available');
like(CreorTest::_slurp($SNIPPET) // '',
     qr{^load_module modules/ngx_creor_module\.so;$}m, 'snippet loads it');
ok(-x '/usr/bin/creor', '/usr/bin/creor');
ok(-f $EXAMPLE, 'example site');
run_ok('stock nginx -t with the module loaded', "$NGINX -t -q");

# enable the example as a user would, with a store and port of the test's

my $dir   = tempdir(CLEANUP => 1);
my $store = "$dir/store";
my $port  = free_port();
chmod 0755, $dir;

my $site = CreorTest::_slurp($EXAMPLE);
$site =~ s{creor_store /var/lib/creor}{creor_store $store}
    or fail('example names its store');
$site =~ s{listen 127\.0\.0\.1:8080;}{listen 127.0.0.1:$port;}
    or fail('example names its port');
CreorTest::_write_file($SITE, $site);
symlink($SITE, $ENABLED) or die "symlink: $!";

run_ok('stock nginx -t with the example enabled', "$NGINX -t -q");

# serve it: the stock binary, the enabled modules and site, private pid/logs

mkdir "$dir/logs";
CreorTest::_write_file("$dir/nginx.conf", <<"CONF");
include /etc/nginx/modules-enabled/*.conf;
user www-data;
worker_processes 2;
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 256; }
http {
    include /etc/nginx/mime.types;
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    include $ENABLED;
}
CONF

run_ok('nginx starts', "$NGINX -c $dir/nginx.conf");

my $up = 0;
for (1 .. 100) {
    last if $up = http_get($port, '/v1/agents')->{status};
    sleep 0.1;
}

my $r = http_get($port, '/v1/agents');
is($r->{status}, 401, 'no key: 401');
like($r->{body}, qr/"code":"AUTH_MISSING_HEADER"/, 'in the JSON envelope');

my ($org) = run_ok('creor org create',
                   "/usr/bin/creor --store $store org create Packaged")
    =~ /(org_\w+)/;
ok($org, 'organization id');
my $token = run_ok('creor key create',
                   "/usr/bin/creor --store $store key create --org $org "
                   . '--role admin');
chomp $token;
like($token, qr/^ck_/, 'token');

$r = http_get($port, '/v1/agents', $token);
is($r->{status}, 200, 'GET /v1/agents with the key');
my $list = eval { decode_json($r->{body}) } // {};
is($list->{object}, 'list', 'a list');

my $pid = CreorTest::_slurp("$dir/logs/nginx.pid") // '';
chomp $pid;
kill 'QUIT', $pid if $pid;
# the harness makes this process the subreaper: the master is our child
my $deadline = time + 10;
while ($pid && time < $deadline) {
    last if waitpid($pid, WNOHANG) == $pid || !kill(0, $pid);
    sleep 0.1;
}
ok($pid && !kill(0, $pid), 'nginx quits within 10 s');
unlike(CreorTest::_slurp("$dir/logs/error.log") // '',
       qr/\[(?:alert|emerg|crit)\]/, 'no alerts in the error log');

# remove

unlink $ENABLED, $SITE;
run_ok('dpkg --purge', "dpkg --purge $PKG");
ok(!-e $SO, 'module removed');
ok(!-e $SNIPPET && !-l $SNIPPET, 'snippet link removed');
ok(!-e "$SNIPPET.removed", 'no leftover link');
ok(!-e '/usr/bin/creor', 'CLI removed');
run_ok('stock nginx -t after removal', "$NGINX -t -q");

done_testing;
