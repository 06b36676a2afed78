# Bounded memory and time per request (SPEC 3.2): a JSON body with more
# values than creor_json_max_values is 413 while parsing; a 10 MB JSON
# array and a 100 MB upload cost the worker a bounded peak of memory; no
# body or upload is read or written in one call of more than 256 KB
# (the worker's file system calls are traced with strace).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;

my $CHUNK = 256 * 1024;

my $t = CreorTest->new(
    workers      => 1,
    http_config  => 'client_max_body_size 110m;',
    api_location => 'location /v1/ { creor_api; } '
                  . 'location /v1/small/ { creor_api; '
                  . 'creor_json_max_values 1000; rewrite ^/v1/small(/.*)$ '
                  . '/v1$1 break; }');
my $b = $t->bootstrap;
my %auth = (token => $b->{token});
my ($proj, $agent) = project_agent($t, $b->{token});
my %in = (%auth, headers => { 'X-Project-Id' => $proj });
ok($agent, 'an agent to run');

my ($w) = $t->worker_pids;

sub status_kb {
    my ($pid, $field) = @_;
    open my $fh, '<', "/proc/$pid/status" or return -1;
    while (<$fh>) { return $1 if /^$field:\s+(\d+)/ }
    return -1;
}

sub json_req {
    my ($path, $body, %o) = @_;
    return $t->req('POST', $path, %auth, timeout => 120,
                   headers => { 'Content-Type' => 'application/json',
                                'X-Project-Id' => $proj },
                   body => $body);
}

# values = the object, the array and its elements; the limit is 1000
my $zeros = sub { '[' . join(',', ('0') x $_[0]) . ']' };
for my $c (
    [ 'at the limit',   '/v1/small/agents', '{"name":' . $zeros->(998) . '}',
      400, 'MISSING_FIELD' ],
    [ 'one value over', '/v1/small/agents', '{"name":' . $zeros->(999) . '}',
      413, 'BODY_TOO_LARGE' ],
    [ 'nested objects over', '/v1/small/agents',
      '{"name":"a","model":"x/y","x":[' . join(',', ('{}') x 999) . ']}',
      413, 'BODY_TOO_LARGE' ],
    [ 'the default elsewhere', '/v1/agents', '{"name":' . $zeros->(999) . '}',
      400, 'MISSING_FIELD' ],
) {
    my ($name, $path, $body, $status, $code) = @$c;
    my $r = json_req($path, $body);
    is($r->{status}, $status, "$name: $status");
    is($r->{json}{error}{code}, $code, "$name: $code");
}

# a multipart run's "inputs" is held to the same limit
{
    my ($body, $ct) = multipart_body([[appId => $agent],
                                      [inputs => '{"a":' . $zeros->(999) . '}']]);
    my $r = $t->req('POST', '/v1/small/runs', %auth, body => $body,
                    headers => { 'Content-Type' => $ct });
    is($r->{status}, 413, 'multipart inputs over the limit: 413');
    is($r->{json}{error}{param}, 'inputs', '... about inputs');
}

# bad values of the directive fail nginx -t, naming it
for my $v ('0', '-1', 'many') {
    my ($rc, $out) = $t->conf_test('', "creor_api; creor_json_max_values $v;");
    isnt($rc, 0, "creor_json_max_values $v: nginx -t fails");
    like($out, qr/creor_json_max_values/, '... naming the directive');
}

# The worker's calls on files while big bodies go through it.  strace
# writes one line a call, "pread64(12, ..., 262144, 0) = 262144".
my $trace = $t->dir . '/logs/strace.txt';
my $tracer;
SKIP: {
    skip 'strace is not installed', 1 unless -x '/usr/bin/strace';
    $tracer = fork // die "fork: $!";
    if (!$tracer) {
        exec '/usr/bin/strace', '-q', '-p', $w, '-o', $trace, '-e',
             'trace=read,write,pread64,pwrite64,readv,writev,preadv,pwritev';
        exit 127;
    }
    my $t0 = time;
    sleep 0.1 until (-s $trace || time - $t0 > 5);
    # one request makes the tracer's first line: it is attached
    $t->req('GET', '/v1/agents', %in) until -s $trace || time - $t0 > 10;
    ok(-s $trace, 'strace is attached to the worker');
}

my $hwm0 = status_kb($w, 'VmHWM');

# 10 MB of "[0,0,...]": 5M values, refused at the 100001st
my $r = json_req('/v1/agents', $zeros->(5 * 1024 * 1024));
is($r->{status}, 413, '10 MB JSON array: 413');
is($r->{json}{error}{code}, 'BODY_TOO_LARGE', '... BODY_TOO_LARGE');
my $hwm = status_kb($w, 'VmHWM');
cmp_ok($hwm - $hwm0, '<', 128 * 1024,
       'the worker peaked at less than 128 MB more (was 530 MB)');
diag(sprintf 'peak worker memory: %d kB before, %d kB after a 10 MB array',
             $hwm0, $hwm);

# 10 files of 10 MB
my ($mp, $ct) = multipart_body([[appId => $agent],
                                map { [files => chr(64 + $_) x (10 * 1024 * 1024),
                                       "f$_.bin"] } 1 .. 10]);
$r = $t->req('POST', '/v1/runs', %auth, body => $mp, timeout => 120,
             headers => { 'Content-Type' => $ct, 'X-Project-Id' => $proj });
is($r->{status}, 202, '100 MB upload: 202');
my $run = $r->{json}{id};
my $files = $t->req('GET', "/v1/runs/$run", %auth)->{json}{files} // [];
is(scalar @$files, 10, 'ten files on the run');
is_deeply([map { $_->{size} } @$files], [(10 * 1024 * 1024) x 10],
          'each of 10 MB');
my $dir = $t->store . "/files/$run";
is_deeply([sort map { -s "$dir/$_->{id}" } @$files],
          [(10 * 1024 * 1024) x 10], 'written whole to disk');
my $hwm2 = status_kb($w, 'VmHWM');
cmp_ok($hwm2 - $hwm0, '<', 256 * 1024,
       'a 100 MB upload cost the worker less than 256 MB');
diag(sprintf 'peak worker memory after the upload: %d kB', $hwm2);

SKIP: {
    skip 'strace is not installed', 2 unless $tracer;
    $t->req('GET', '/v1/agents', %in);
    sleep 0.5;
    kill 'INT', $tracer;
    waitpid $tracer, 0;
    open my $fh, '<', $trace or die "$trace: $!";
    my ($calls, $big, $max) = (0, 0, 0);
    while (<$fh>) {
        next unless /^(?:p?read|p?write)v?(?:64)?\(.*\)\s+=\s+(\d+)/;
        $calls++;
        $max = $1 if $1 > $max;
        $big++ if $1 > $CHUNK;
    }
    cmp_ok($calls, '>', 400, "the bodies went through $calls traced calls");
    is($big, 0, "none of more than 256 KB (largest: $max bytes)");
}

$t->finish;
done_testing;
