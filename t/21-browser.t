#!/usr/bin/perl
# A real browser (SPEC 3.2): Debian's chromium, headless, driven by
# playwright-core (t/browser/follow.mjs), loads a page from another origin
# (a second server of the same nginx, another port) that creates a run
# with fetch and follows its events with @microsoft/fetch-event-source,
# served from the page's own origin; the run completes on the scripted
# executor.  Needs `npm ci` in t/ (t/run.sh does it) and chromium
# (conf/deps.sh installs it).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use File::Copy qw(copy);
use JSON::PP;
use CreorTest;
use CreorExecutor;

my $TDIR   = $FindBin::Bin;
my $FES    = "$TDIR/node_modules/\@microsoft/fetch-event-source/lib/esm";
my $DRIVER = "$TDIR/browser/follow.mjs";
my $CHROME = $ENV{CHROMIUM_BIN} // '/usr/bin/chromium';

# t/run.sh installs all of it; a bare `prove` without it says what to run
for ([$FES, 'cd t && npm ci'],
     ["$TDIR/node_modules/playwright-core", 'cd t && npm ci'],
     [$CHROME, 'conf/deps.sh']) {
    my ($path, $fix) = @$_;
    next if -e $path;
    plan skip_all => "$path is missing: run $fix" unless $ENV{CI};
    BAIL_OUT("$path is missing: $fix did not install it");
}

my $ex    = CreorExecutor->new;
my $pport = CreorTest::_free_port();
my $PAGE  = "http://127.0.0.1:$pport";

my $t = CreorTest->new(
    store_opts    => 'sync=off',
    http_config   => join("\n",
        'creor_executor /_exec;',
        # the page's origin: the page and the client library, nothing else
        "server {",
        "    listen 127.0.0.1:$pport;",
        "    root html;",
        "    types { text/html html; application/javascript js; }",
        "    location = / { try_files /page.html =404; }",
        "    location /fes/ { default_type application/javascript;",
        "                     try_files \$uri \$uri.js =404; }",
        "}"),
    api_location  => "location /v1/ { creor_api; creor_cors $PAGE; }",
    server_config => $ex->location,
);

my $html = $t->dir . '/html';
mkdir $html or die "mkdir $html: $!";
mkdir "$html/fes" or die "mkdir $html/fes: $!";
copy("$TDIR/browser/page.html", "$html/page.html") or die "copy: $!";
for my $f (glob "$FES/*.js") {
    my ($name) = $f =~ m{([^/]+)$};
    copy($f, "$html/fes/$name") or die "copy $f: $!";
}
chmod 0755, $html, "$html/fes";
chmod 0644, glob("$html/*.html"), glob("$html/fes/*");

my $b = $t->bootstrap;
my $r = $t->req(POST => '/v1/projects', token => $b->{token},
                json => { name => 'web' });
my $proj = $r->{json}{id};
$r = $t->req(POST => '/v1/agents', token => $b->{token},
             headers => { 'X-Project-Id' => $proj },
             json => { name => 'web agent', model => 'openai/gpt-4o' });
is($r->{status}, 201, 'agent for the page') or diag($r->{body});
my $agent = $r->{json}{id};

my $api = 'http://127.0.0.1:' . $t->port;
my $out = `timeout 120 node $DRIVER $PAGE/ $api $b->{token} $agent 2>&1`;
my $rc = $? >> 8;
my ($line) = grep { /^\{/ } reverse split /\n/, $out;
my $seen = eval { JSON::PP->new->decode($line // '') } // {};

is($rc, 0, 'the browser ran the page') or diag($out);
is($seen->{error}, undef, 'no error in the page') or diag($out);

is($seen->{status}, 202, 'page: fetch POST /v1/runs is 202');
like($seen->{run}{id} // '', qr/^run_/, 'page: reads the run id');
like($seen->{requestId} // '', qr/^[0-9a-f]{32}$/,
     'page: reads X-Request-Id (exposed)');

is($seen->{streamStatus}, 200, 'page: the event stream opens');
like($seen->{streamType} // '', qr{^text/event-stream},
     'page: text/event-stream');
like($seen->{streamRequestId} // '', qr/^[0-9a-f]{32}$/,
     'page: the stream\'s X-Request-Id');

my @types = map { $_->{type} } @{$seen->{events} // []};
is($types[0], 'run.queued', 'page: first event run.queued')
    or diag(explain \@types);
is($types[-1], 'run.completed', 'page: last event run.completed');
is_deeply([map { $_->{id} } @{$seen->{events} // []}],
          [map { "$_" } 1 .. scalar @types], 'page: ids are the sequence');
is($seen->{final}{status}, 'completed', 'page: the run is completed');

is($seen->{errorStatus}, 401, 'page: an error envelope is readable');
is($seen->{errorCode}, 'AUTH_KEY_INVALID', 'page: its code');
like($seen->{errorRequestId} // '', qr/^[0-9a-f]{32}$/,
     'page: the error\'s X-Request-Id');

# the preflights reached the API and were answered there
my $log = CreorTest::_slurp($t->dir . '/logs/access.log') // '';
like($log, qr/"OPTIONS \/v1\/runs HTTP\/1\.1" 204/, 'a preflight of POST');
like($log, qr/"OPTIONS \/v1\/runs\/run_\w+\/events\/stream HTTP\/1\.1" 204/,
     'a preflight of the stream');

$t->finish;
$ex->stop;
done_testing;
