package CreorTest;

# Test harness for ngx_creor_module: starts a private nginx instance with the
# module loaded, talks HTTP to it, drives the `creor` admin CLI against the
# same store and checks the logs for alerts and sanitizer reports.
#
#     use lib 't/lib';
#     use Test::More;
#     use CreorTest;
#
#     my $t = CreorTest->new(store_opts => 'sync=off');
#     my $b = $t->bootstrap;
#     my $r = $t->req(GET => '/v1/orgs/' . $b->{org}, token => $b->{token});
#     is($r->{status}, 200);
#     $t->finish;
#     done_testing;
#
# Environment:
#     CREOR_BUILD  build directory, relative to the repo root (default build)
#     NGINX_BIN    nginx binary (default /usr/sbin/nginx)
#     CREOR_ASAN   preload libasan into nginx; sanitizer logs go to logs/asan.*
#     CREOR_KEEP   keep the instance directory after the test
#
# new(preload => [LIB, ...]) preloads libraries (after libasan) into nginx
# and the CLI, e.g. build/mdbfault.so (t/lib/mdbfault.c); env => {...} is
# nginx's environment, cli_env => {...} the CLI's.

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Test::More ();
use Time::HiRes qw(time sleep);

our $ROOT  = abs_path(File::Spec->catdir(dirname(__FILE__), '..', '..'));
our $BUILD = do {
    my $b = $ENV{CREOR_BUILD} // 'build';
    File::Spec->file_name_is_absolute($b) ? $b : "$ROOT/$b";
};
our $NGINX = $ENV{NGINX_BIN} // '/usr/sbin/nginx';

my $JSON = JSON::PP->new->canonical->allow_nonref;

# Lines in error.log or sanitizer logs that fail a test.
our $BAD_LOG_RE =
    qr/\[(?:alert|emerg|crit)\]|AddressSanitizer|runtime error|LeakSanitizer/;

my $START_TIMEOUT = 10;
my $STOP_TIMEOUT  = 10;

# Running instances, stopped at END even if the test died half way.
my %LIVE;

_become_subreaper();

# The daemonized nginx master is re-parented to PID 1, which in some
# containers never reaps it.  Becoming a child subreaper makes the master our
# child instead, so stop() can reap it and no zombies are left behind.
sub _become_subreaper {
    return if $^O ne 'linux';
    eval {
        local $SIG{__WARN__} = sub { };
        require 'syscall.ph';
        syscall(SYS_prctl(), 36, 1, 0, 0, 0);    # PR_SET_CHILD_SUBREAPER
    };
}

END {
    local ($?, $!, $@);
    $_->stop for grep { defined } values %LIVE;
}

###########################################################################
# Instance lifecycle

sub new {
    my ($class, %o) = @_;

    my $self = bless {
        http_config   => $o{http_config}   // '',
        server_config => $o{server_config} // '',
        store_opts    => $o{store_opts}    // '',
        workers       => $o{workers}       // 2,
        no_module     => $o{no_module}     // 0,
        api_location  => $o{api_location}  // 'location /v1/ { creor_api; }',
        rate_limits   => $o{rate_limits}   // 0,
        main_config   => $o{main_config}   // '',
        worker_connections => $o{worker_connections} // 1024,
        preload       => $o{preload}       // [],
        cli_env       => $o{cli_env}       // {},
        env           => $o{env}           // {},
        owner         => $$,
    }, $class;

    my $dir = tempdir('creor-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{CREOR_KEEP});
    # Workers run as nobody: everything must be traversable, the store
    # writable, and logs/ writable for sanitizer reports from workers.
    chmod 0755, $dir or die "chmod $dir: $!";
    for ([conf => 0755], [logs => 0777], [store => 0777]) {
        my ($sub, $mode) = @$_;
        mkdir "$dir/$sub" or die "mkdir $dir/$sub: $!";
        chmod $mode, "$dir/$sub" or die "chmod $dir/$sub: $!";
    }
    Test::More::diag("creor test instance kept in $dir") if $ENV{CREOR_KEEP};

    $self->{dir}  = $dir;
    $self->{port} = _free_port();

    unless ($self->{no_module}) {
        my $so = $self->module_path;
        die "module not built: $so (run make)\n" unless -f $so;
    }

    $self->_write_conf;
    $self->_start;
    return $self;
}

sub dir        { $_[0]{dir} }
sub port       { $_[0]{port} }
sub pid        { $_[0]{pid} }
sub store      { "$_[0]{dir}/store" }
sub error_log  { "$_[0]{dir}/logs/error.log" }
sub conf_file  { "$_[0]{dir}/conf/nginx.conf" }
sub conf_text  { $_[0]{conf_text} }
sub module_path { "$BUILD/ngx_creor_module.so" }
sub cli_path   { "$BUILD/creor" }

sub _free_port {
    my $s = IO::Socket::IP->new(
        LocalHost => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen    => 1,           ReuseAddr => 1,
    ) or die "cannot bind a free port: $@\n";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# Optional temp path directives, skipping modules the binary lacks.
sub _temp_path_lines {
    my ($dir) = @_;
    my $v = `$NGINX -V 2>&1`;
    my @lines = ("client_body_temp_path $dir/tmp_body;");
    for my $m (qw(proxy fastcgi uwsgi scgi)) {
        next if $v =~ /--without-http_${m}_module\b/;
        push @lines, "${m}_temp_path $dir/tmp_$m;";
    }
    return @lines;
}

sub _write_conf {
    my ($self) = @_;
    my $dir = $self->{dir};
    my $mod = !$self->{no_module};

    my @main = (
        ($mod ? ('load_module ' . $self->module_path . ';') : ()),
        'user nobody nogroup;',
        "worker_processes $self->{workers};",
        'daemon on;',
        'master_process on;',
        "pid $dir/logs/nginx.pid;",
        "error_log $dir/logs/error.log info;",
        # a binary upgrade starts the new master with these only
        ($ENV{CREOR_ASAN} ? ('env LD_PRELOAD;', 'env ASAN_OPTIONS;') : ()),
        $self->{main_config},
        "events { worker_connections $self->{worker_connections}; }",
    );
    my @http = (
        "access_log $dir/logs/access.log;",
        _temp_path_lines($dir),
        ($mod ? ("creor_store $dir/store"
                 . ($self->{store_opts} ne '' ? " $self->{store_opts}" : '')
                 . ';') : ()),
        # the default limits (60r/m) would throttle the suite itself;
        # rate_limits => 1 keeps them, for the tests of limits
        ($mod && !$self->{rate_limits}
            ? ('creor_rate_limit off;', 'creor_rate_limit_anonymous off;')
            : ()),
        $self->{http_config},
    );
    my @server = (
        "listen 127.0.0.1:$self->{port};",
        'location = /plain { return 200 "ok\n"; }',
        ($mod ? $self->{api_location} : ()),
        $self->{server_config},
    );

    my $indent = sub {
        my $p = shift;
        map { s/^(?=.)/$p/mgr . "\n" } grep { $_ ne '' } @_;
    };
    my $text = join('', map { "$_\n" } @main)
        . "http {\n"
        . join('', $indent->('    ', @http))
        . "    server {\n"
        . join('', $indent->('        ', @server))
        . "    }\n"
        . "}\n";

    $self->{conf_text} = $text;
    _write_file($self->conf_file, $text);
}

# Environment for nginx and the CLI: new(env => {...}) for nginx,
# new(cli_env => {...}) for the CLI, new(preload => [...]) for both, with
# libasan first in LD_PRELOAD in ASAN mode (the ASan CLI links it, but a
# preloaded library would come before it), and sanitizer settings.
sub _child_env {
    my ($self, $for_nginx) = @_;
    my %env = %{$for_nginx ? $self->{env} : $self->{cli_env}};
    my @preload = (@{$self->{preload}},
                   grep { defined } delete $env{LD_PRELOAD});
    if ($ENV{CREOR_ASAN}) {
        $env{ASAN_OPTIONS} = 'detect_leaks=0:abort_on_error=0:log_path='
                             . "$self->{dir}/logs/asan";
        if ($for_nginx || @preload) {
            chomp(my $lib = `gcc -print-file-name=libasan.so`);
            die "libasan.so not found (gcc -print-file-name gave '$lib')\n"
                unless File::Spec->file_name_is_absolute($lib) && -e $lib;
            unshift @preload, $lib;
        }
    }
    $env{LD_PRELOAD} = join ':', @preload if @preload;
    return %env;
}

# the environment an nginx of this test runs with (sanitizer preload)
sub nginx_env { my ($self) = @_; return { $self->_child_env(1) } }

sub _start {
    my ($self) = @_;
    my ($rc, $out, $pid) = $self->start_again;
    die "nginx failed to start (exit $rc):\n$out" . $self->_log_tail
        if $rc != 0;
    die "nginx wrote no pid file\n" . $self->_log_tail
        unless _read_pid("$self->{dir}/logs/nginx.pid");
    return if $pid;
    $self->stop;
    die "nginx did not come up on port $self->{port}\n" . $self->_log_tail;
}

# Start nginx on this conf and store (again, after it stopped or was
# killed) without dying: returns (exit code of the nginx command, its
# output, the new master's pid once its workers listen, or undef).
sub start_again {
    my ($self) = @_;
    my $dir = $self->{dir};
    unlink "$dir/logs/nginx.pid";

    my ($rc, $out, $err) = _run([$NGINX, '-p', "$dir/", '-e', $self->error_log,
                                 '-c', $self->conf_file],
                                {$self->_child_env(1)});
    return ($rc, $out . $err, undef) if $rc != 0;

    my $deadline = time + $START_TIMEOUT;
    my $pid;
    until ($pid = _read_pid("$dir/logs/nginx.pid")) {
        return ($rc, $out . $err, undef) if time > $deadline;
        sleep 0.02;
    }
    $self->{pid} = $pid;
    $self->{running} = 1;
    $LIVE{$pid} = $self;
    weaken($LIVE{$pid});

    until ($self->_port_open && $self->_workers_ready) {
        return ($rc, $out . $err, undef)
            if time > $deadline || !_alive($pid);
        sleep 0.02;
    }
    return ($rc, $out . $err, $pid);
}

sub _port_open {
    my ($self) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $self->{port}, Timeout => 1);
    return $s ? (close($s), 1) : 0;
}

sub _workers_ready {
    my ($self) = @_;
    my $n = $self->{workers} =~ /^\d+$/ ? $self->{workers} : 1;
    return $self->worker_pids >= $n;
}

# Active worker processes (children of the master that are not shutting
# down after a reload), sorted.
sub worker_pids {
    my ($self) = @_;
    my $master = $self->{pid} or return;
    my @pids;
    opendir(my $dh, '/proc') or die "opendir /proc: $!";
    for my $pid (grep { /^\d+$/ } readdir $dh) {
        my $stat = _slurp("/proc/$pid/stat") // next;
        my ($state, $ppid) = $stat =~ /\)\s+(\S)\s+(\d+)/ or next;
        next if $ppid != $master || $state eq 'Z';
        my $cmd = _slurp("/proc/$pid/cmdline") // next;
        next unless $cmd =~ /worker process/ && $cmd !~ /shutting down/;
        push @pids, $pid;
    }
    closedir $dh;
    @pids = sort { $a <=> $b } @pids;
    return @pids;
}

# HUP the master and wait until a new set of workers replaced the old one.
# Options given here replace those passed to new() and the conf is rewritten
# first, e.g. $t->reload(store_opts => 'map_size=2m').
sub reload {
    my ($self, %o) = @_;
    die "nginx is not running\n" unless $self->{running};
    if (%o) {
        $self->{$_} = $o{$_} for keys %o;
        $self->_write_conf;
    }
    my %old = map { $_ => 1 } $self->worker_pids;
    kill 'HUP', $self->{pid} or die "kill HUP $self->{pid}: $!";

    my $deadline = time + $START_TIMEOUT;
    while (time < $deadline) {
        my @new = $self->worker_pids;
        return @new if @new && !(grep { $old{$_} } @new)
                       && $self->_workers_ready;
        sleep 0.02;
    }
    die "reload: workers were not replaced within ${START_TIMEOUT}s\n"
        . $self->_log_tail;
}

# Start nginx again on the same conf and store, after stop().
sub start {
    my ($self) = @_;
    die "nginx is running\n" if $self->{running};
    $self->_start;
    return $self->{pid};
}

# A binary upgrade as an operator does it: USR2 makes the master start a
# new master (the same binary here) with new workers beside the old ones,
# then QUIT ends the old master and its workers gracefully.  Returns the
# new master's workers once the old processes are gone.
sub upgrade {
    my ($self) = @_;
    die "nginx is not running\n" unless $self->{running};
    my $dir = $self->{dir};
    my $old = $self->{pid};
    my @old_procs = ($old, $self->worker_pids);

    kill 'USR2', $old or die "kill USR2 $old: $!";

    my ($new, @workers);
    my $deadline = time + $START_TIMEOUT;
    while (time < $deadline) {
        $new = _read_pid("$dir/logs/nginx.pid");
        if ($new && $new != $old && -f "$dir/logs/nginx.pid.oldbin") {
            local $self->{pid} = $new;
            last if $self->_workers_ready;
        }
        sleep 0.02;
    }
    die "upgrade: no new master with workers within ${START_TIMEOUT}s\n"
        . $self->_log_tail
        unless $new && $new != $old;

    $self->{pid} = $new;
    delete $LIVE{$old};
    $LIVE{$new} = $self;
    weaken($LIVE{$new});

    kill 'QUIT', $old or die "kill QUIT $old: $!";
    $deadline = time + $STOP_TIMEOUT;
    sleep 0.02 while time < $deadline && grep { _alive($_) } @old_procs;
    die "upgrade: the old master and workers did not exit within "
        . "${STOP_TIMEOUT}s\n" . $self->_log_tail
        if grep { _alive($_) } @old_procs;

    return $self->worker_pids;
}

# SIGKILL the master and its workers at once (a crash, a power cut); true
# once they are all gone.
sub kill_all {
    my ($self) = @_;
    my @procs = ($self->{pid}, $self->worker_pids);
    kill 'KILL', @procs;
    my $deadline = time + $STOP_TIMEOUT;
    sleep 0.05 while time < $deadline && grep { _alive($_) } @procs;
    $self->{running} = 0;
    return !grep { _alive($_) } @procs;
}

# Graceful stop (QUIT), then KILL whatever is left after the timeout.
sub stop {
    my ($self) = @_;
    return unless $self->{running} && $self->{owner} == $$;
    my $pid = $self->{pid};
    my @procs = ($pid, $self->worker_pids);
    kill 'QUIT', $pid;

    my $deadline = time + $STOP_TIMEOUT;
    sleep 0.02 while time < $deadline && grep { _alive($_) } @procs;
    if (my @left = grep { _alive($_) } @procs) {
        Test::More::diag("nginx did not stop in ${STOP_TIMEOUT}s, killing @left");
        kill 'KILL', @left;
        $deadline = time + 5;
        sleep 0.02 while time < $deadline && grep { _alive($_) } @left;
    }
    delete $LIVE{$pid};
    $self->{running} = 0;
}

# Stop nginx and check the logs; call at the end of every test.
sub finish {
    my ($self, $name) = @_;
    $self->stop;
    return $self->no_alerts_ok($name);
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop;
}

###########################################################################
# Logs

sub error_log_text { _slurp($_[0]->error_log) // '' }

sub _log_tail {
    my ($self) = @_;
    my @lines = split /\n/, $self->error_log_text;
    splice @lines, 0, @lines - 30 if @lines > 30;
    return @lines ? join("\n", '--- error.log (tail) ---', @lines, '') : '';
}

# Offending lines from error.log and sanitizer logs, each prefixed with the
# file name.  ignore => qr/.../ (or an array of them) skips expected lines.
sub check_log {
    my ($self, %o) = @_;
    my @ignore = ref $o{ignore} eq 'ARRAY' ? @{$o{ignore}}
               : defined $o{ignore}       ? ($o{ignore}) : ();
    my @bad;
    for my $file ($self->error_log, sort glob("$self->{dir}/logs/asan*")) {
        my $text = _slurp($file) // next;
        (my $name = $file) =~ s{.*/}{};
        for my $line (split /\n/, $text) {
            next unless $line =~ $BAD_LOG_RE;
            next if grep { $line =~ $_ } @ignore;
            push @bad, "$name: $line";
        }
    }
    return @bad;
}

sub no_alerts_ok {
    my ($self, $name, %o) = @_;
    my @bad = $self->check_log(%o);
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = Test::More::ok(!@bad, $name // 'no alerts or sanitizer reports in logs');
    Test::More::diag(join "\n", @bad) if @bad;
    return $ok;
}

###########################################################################
# Admin CLI

sub cli_status {
    my ($self, @args) = @_;
    my $bin = $self->cli_path;
    die "CLI not built: $bin (run make)\n" unless -x $bin;
    return _run([$bin, '--store', $self->store, @args], {$self->_child_env(0)});
}

# cli_status() that gives up after $secs: exit code -1 (the CLI killed) if
# it had not finished by then.
sub cli_timed {
    my ($self, $secs, @args) = @_;
    my $bin = $self->cli_path;
    die "CLI not built: $bin (run make)\n" unless -x $bin;
    return _run([$bin, '--store', $self->store, @args], {$self->_child_env(0)},
                $secs);
}

# Stdout without the trailing newline; dies with stderr on failure.
sub cli {
    my ($self, @args) = @_;
    my ($rc, $out, $err) = $self->cli_status(@args);
    die "creor @args: exit $rc\n$err" if $rc != 0;
    chomp $out;
    return $out;
}

# A fresh org and an admin key for it: { org => ID, token => TOKEN }.
sub bootstrap {
    my ($self, %o) = @_;
    my $org   = $self->cli('org', 'create', $o{name} // 'Org ' . rand());
    my $token = $self->cli('key', 'create', '--org', $org,
                           '--role', $o{role} // 'admin',
                           '--name', $o{key_name} // 'boot');
    return { org => $org, token => $token };
}

###########################################################################
# HTTP

# One request on a fresh connection (Connection: close).
sub req {
    my ($self, $method, $path, %o) = @_;
    my $c = CreorTest::Conn->new($self, keepalive => 0, timeout => $o{timeout});
    my $r = $c->req($method, $path, %o);
    $c->close;
    return $r;
}

# A keep-alive connection with the same req() method.
sub conn {
    my ($self, %o) = @_;
    return CreorTest::Conn->new($self, keepalive => 1, %o);
}

# A request whose body is read incrementally (SSE, long polls).
# Runs the requests [method, path, %opts] at once: one fresh connection
# each, all opened (and accepted by either worker) first, then every
# request written in one tight loop, then the answers read.  Responses
# are in order, each with t0 (when it was sent).
sub concurrent {
    my ($self, $reqs) = @_;
    my @conns = map { CreorTest::Conn->new($self, keepalive => 0,
                                           timeout => 20) } @$reqs;
    my @texts = map { my ($m, $p, %o) = @$_;
                      build_request($m, $p, 0, %o) } @$reqs;
    sleep 0.2;    # let the workers accept the connections
    my @t0;
    for my $i (0 .. $#conns) {
        $t0[$i] = time;
        $conns[$i]->send($texts[$i]);
    }
    my @rs;
    for my $i (0 .. $#conns) {
        my $r = $conns[$i]->read_response(method => $reqs->[$i][0]);
        $r->{t0} = $t0[$i];
        $r->{t1} = time;
        $conns[$i]->close;
        push @rs, $r;
    }
    return @rs;
}

# A directory for configurations that nginx -t checks (conf_test)
sub conf_dir {
    my ($self) = @_;
    unless ($self->{conf_dir}) {
        my $d = tempdir('creor-conf-XXXXXX', TMPDIR => 1,
                        CLEANUP => !$ENV{CREOR_KEEP});
        chmod 0755, $d;
        mkdir "$d/logs";
        $self->{conf_dir} = $d;
    }
    return $self->{conf_dir};
}

# nginx -t of a configuration with the module: $http inside http{},
# $loc inside "location /v1/"; returns (exit code, output)
sub conf_test {
    my ($self, $http, $loc) = @_;
    my $d = $self->conf_dir;
    my $so = $self->module_path;
    _write_file("$d/nginx.conf", <<"EOF");
load_module $so;
error_log $d/logs/err.log;
pid $d/logs/nginx.pid;
events { worker_connections 64; }
http {
    client_body_temp_path $d/tmp_body;
    proxy_temp_path $d/tmp_proxy;
    fastcgi_temp_path $d/tmp_fastcgi;
    uwsgi_temp_path $d/tmp_uwsgi;
    scgi_temp_path $d/tmp_scgi;
    access_log off;
    $http
    server {
        listen 127.0.0.1:1;
        location /v1/ { $loc }
    }
}
EOF
    my ($rc, $out, $err) = _run([$NGINX, '-t', '-p', "$d/", '-c',
                                 "$d/nginx.conf", '-e', "$d/logs/err.log"],
                                $self->nginx_env);
    return ($rc, $out . $err);
}

sub stream {
    my ($self, $method, $path, %o) = @_;
    return CreorTest::Stream->new($self, $method, $path, %o);
}

# The request text for req(); see CreorTest::Conn::req for the options.
sub build_request {
    my ($method, $path, $keepalive, %o) = @_;
    my @h = ref $o{headers} eq 'HASH'  ? map { $_ => $o{headers}{$_} }
                                             sort keys %{$o{headers}}
          : ref $o{headers} eq 'ARRAY' ? @{$o{headers}} : ();
    my %have;
    for (my $i = 0; $i < @h; $i += 2) { $have{lc $h[$i]} = 1 }

    my $body = $o{body};
    if (exists $o{json}) {
        $body = $JSON->encode($o{json});
        push @h, 'Content-Type' => 'application/json'
            unless $have{'content-type'};
    }
    push @h, Authorization => "Bearer $o{token}" if defined $o{token};
    push @h, 'Content-Length' => length($body)
        if defined $body && !$have{'content-length'}
           && !$have{'transfer-encoding'};

    unshift @h, Host => 'localhost' unless $have{host};
    push @h, Connection => ($keepalive ? 'keep-alive' : 'close')
        unless $have{connection};

    my $text = "$method $path HTTP/1.1\r\n";
    for (my $i = 0; $i < @h; $i += 2) { $text .= "$h[$i]: $h[$i + 1]\r\n" }
    return $text . "\r\n" . ($body // '');
}

sub decode_json_or_undef {
    my ($text) = @_;
    return undef unless defined $text && $text =~ /\S/;
    my $v = eval { JSON::PP->new->utf8->allow_nonref->decode($text) };
    return $v;
}

###########################################################################
# Process and file helpers

# Run a command, return (exit code, stdout, stderr).
sub _run {
    my ($cmd, $env, $timeout) = @_;
    my ($out, $err) = (File::Temp->new, File::Temp->new);
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $ENV{$_} = $env->{$_} for keys %$env;
        open STDIN,  '<', '/dev/null';
        open STDOUT, '>', $out->filename or POSIX::_exit(126);
        open STDERR, '>', $err->filename or POSIX::_exit(126);
        { no warnings 'exec'; exec { $cmd->[0] } @$cmd }
        print STDERR "exec $cmd->[0]: $!\n";
        POSIX::_exit(127);
    }
    if (defined $timeout) {
        my $deadline = time + $timeout;
        sleep 0.01 while waitpid($pid, WNOHANG) == 0 && time < $deadline;
        if (kill(0, $pid) && waitpid($pid, WNOHANG) == 0) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            return (-1, _slurp($out->filename) // '',
                    _slurp($err->filename) // '');
        }
    } else {
        waitpid($pid, 0);
    }
    my $rc = $? & 127 ? 128 + ($? & 127) : $? >> 8;
    return ($rc, _slurp($out->filename) // '', _slurp($err->filename) // '');
}

# True while the process exists and is not a zombie; reaps our own children.
sub _alive {
    my ($pid) = @_;
    return 0 if waitpid($pid, WNOHANG) == $pid;
    my $stat = _slurp("/proc/$pid/stat");
    return kill(0, $pid) ? 1 : 0 unless defined $stat;
    return $stat =~ /\)\s+Z/ ? 0 : 1;
}

sub _read_pid {
    my $text = _slurp($_[0]) // return;
    return $text =~ /^(\d+)\s*$/ ? $1 : undef;
}

sub _slurp {
    my ($file) = @_;
    open(my $fh, '<:raw', $file) or return undef;
    local $/;
    my $text = <$fh>;
    return $text // '';
}

sub _write_file {
    my ($file, $text) = @_;
    open(my $fh, '>:raw', $file) or die "write $file: $!";
    print $fh $text;
    close $fh or die "write $file: $!";
}

###########################################################################

package CreorTest::Conn;

# An HTTP connection to the instance.  Responses are framed by
# Content-Length, chunked encoding, or connection close.

use strict;
use warnings;
use Errno qw(EINTR EAGAIN);
use IO::Select;
use IO::Socket::IP;
use Time::HiRes qw(time);

sub new {
    my ($class, $t, %o) = @_;
    my $timeout = $o{timeout} // 10;
    my $sock = IO::Socket::IP->new(PeerHost => '127.0.0.1', PeerPort => $t->port,
                                   Proto => 'tcp', Timeout => $timeout)
        or die "connect to 127.0.0.1:" . $t->port . ": $@\n";
    binmode $sock;
    return bless { sock => $sock, buf => '', eof => 0, timeout => $timeout,
                   keepalive => $o{keepalive} // 1 }, $class;
}

# Options: headers => {..} or [name => value, ...], body => BYTES,
# json => DATA, token => TOKEN, raw => REQUEST, timeout => SECONDS.
# Returns { status, headers, header_lines, body, json, raw }, with status 0
# and error => 'eof' | 'timeout' when no complete response arrived.
sub req {
    my ($self, $method, $path, %o) = @_;
    my $text = defined $o{raw}
        ? $o{raw}
        : CreorTest::build_request($method, $path, $self->{keepalive}, %o);
    $self->send($text);
    return $self->read_response(method => $method, timeout => $o{timeout});
}

sub send {
    my ($self, $bytes) = @_;
    local $SIG{PIPE} = 'IGNORE';
    my $off = 0;
    while ($off < length $bytes) {
        my $n = syswrite($self->{sock}, $bytes, length($bytes) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN;
            last;    # peer closed early; read whatever it answered
        }
        $off += $n;
    }
    return $off;
}

# Read more bytes into the buffer; false on EOF or when the deadline passed.
sub _fill {
    my ($self, $deadline) = @_;
    return 0 if $self->{eof};
    my $left = $deadline - time;
    return 0 if $left <= 0;
    return 0 unless IO::Select->new($self->{sock})->can_read($left);
    my $n = sysread($self->{sock}, $self->{buf}, 65536, length $self->{buf});
    return 1 if !defined $n && ($! == EINTR || $! == EAGAIN);
    $self->{eof} = 1 unless $n;
    return $n ? 1 : 0;
}

sub _fail {
    my ($self, $deadline, %r) = @_;
    return { status => 0, headers => {}, header_lines => [], body => '',
             json => undef, raw => '',
             error => time >= $deadline ? 'timeout' : 'eof', %r };
}

# Parse a status line and headers from the front of the buffer.
sub _read_head {
    my ($self, $deadline) = @_;
    while (1) {
        while ($self->{buf} !~ /\r?\n\r?\n/) {
            return undef unless $self->_fill($deadline);
        }
        $self->{buf} =~ s/^(.*?\r?\n)\r?\n//s;
        my $head = $1;
        my ($status_line, @lines) = split /\r?\n/, $head;
        my ($status) = $status_line =~ m{^HTTP/\d\.\d\s+(\d{3})};
        my (%h, @pairs);
        for (@lines) {
            my ($k, $v) = /^([^:]+):\s*(.*?)\s*$/ or next;
            push @pairs, [$k, $v];
            $h{lc $k} = exists $h{lc $k} ? "$h{lc $k}, $v" : $v;
        }
        my $r = { status => $status // 0, headers => \%h,
                  header_lines => \@pairs, raw => "$head\r\n" };
        return $r unless $r->{status} >= 100 && $r->{status} < 200
                         && $r->{status} != 101;
    }
}

# Consume complete chunks from the front of $$buf; returns
# (decoded bytes, raw bytes consumed, done).
sub dechunk {
    my ($buf) = @_;
    my ($out, $raw) = ('', '');
    while ($$buf =~ /^([0-9a-fA-F]+)[^\r\n]*\r\n/) {
        my ($size, $hlen) = (hex $1, length $&);
        if ($size == 0) {
            # last chunk, optional trailers, empty line
            $$buf =~ /^[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n/ or last;
            $raw .= $&;
            substr($$buf, 0, length $&, '');
            return ($out, $raw, 1);
        }
        last if length($$buf) < $hlen + $size + 2;
        $out .= substr($$buf, $hlen, $size);
        $raw .= substr($$buf, 0, $hlen + $size + 2, '');
    }
    return ($out, $raw, 0);
}

sub read_response {
    my ($self, %o) = @_;
    my $deadline = time + ($o{timeout} // $self->{timeout});
    my $method = uc($o{method} // 'GET');

    my $r = $self->_read_head($deadline)
        or return $self->_fail($deadline, raw => $self->{buf});
    my $h = $r->{headers};
    my $body = '';

    if ($method eq 'HEAD' || $r->{status} == 204 || $r->{status} == 304) {
        # no body
    } elsif (($h->{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            my ($data, $raw, $done) = dechunk(\$self->{buf});
            $body .= $data;
            $r->{raw} .= $raw;
            last if $done;
            return $self->_fail($deadline, %$r, status => 0, body => $body)
                unless $self->_fill($deadline);
        }
    } elsif (defined $h->{'content-length'}) {
        my $len = $h->{'content-length'} =~ /^(\d+)/ ? $1 : 0;
        while (length $self->{buf} < $len) {
            return $self->_fail($deadline, %$r, status => 0,
                                body => $self->{buf})
                unless $self->_fill($deadline);
        }
        $body = substr($self->{buf}, 0, $len, '');
        $r->{raw} .= $body;
    } else {
        1 while $self->_fill($deadline);
        $body = $self->{buf};
        $self->{buf} = '';
        $r->{raw} .= $body;
    }

    $r->{body} = $body;
    $r->{json} = CreorTest::decode_json_or_undef($body);
    return $r;
}

# True once the server closed the connection (checks without blocking).
sub closed {
    my ($self) = @_;
    $self->_fill(time + 0.001) while !$self->{eof}
        && IO::Select->new($self->{sock})->can_read(0);
    return $self->{eof};
}

sub close {
    my ($self) = @_;
    CORE::close($self->{sock}) if $self->{sock};
    delete $self->{sock};
    $self->{eof} = 1;
}

###########################################################################

package CreorTest::Stream;

# A request whose response body is consumed piecemeal:
#
#     my $s = $t->stream(GET => '/v1/events', token => $tok);
#     is($s->status, 200);
#     like($s->read_until(qr/\n\n/, 5), qr/^event: ready/m);

use strict;
use warnings;
use Time::HiRes qw(time);

sub new {
    my ($class, $t, $method, $path, %o) = @_;
    my $c = CreorTest::Conn->new($t, keepalive => 0, timeout => $o{timeout});
    $c->send(defined $o{raw} ? $o{raw}
             : CreorTest::build_request($method, $path, 0, %o));
    return bless { conn => $c, pending => '', timeout => $o{timeout} // 10,
                   done => 0 }, $class;
}

# Wait for the response head; false on timeout.
sub _head {
    my ($self, $timeout) = @_;
    return $self->{head} if $self->{head};
    my $c = $self->{conn};
    my $r = $c->_read_head(time + ($timeout // $self->{timeout})) or return;
    $self->{chunked} = ($r->{headers}{'transfer-encoding'} // '') =~ /chunked/i;
    $self->{left} = $r->{headers}{'content-length'};
    return $self->{head} = $r;
}

sub status  { my $h = $_[0]->_head($_[1]); $h ? $h->{status}  : 0 }
sub headers { my $h = $_[0]->_head($_[1]); $h ? $h->{headers} : {} }

# Move decoded body bytes from the connection buffer to the pending text.
sub _drain {
    my ($self) = @_;
    my $c = $self->{conn};
    if ($self->{chunked}) {
        my ($data, undef, $done) = CreorTest::Conn::dechunk(\$c->{buf});
        $self->{pending} .= $data;
        $self->{done} ||= $done;
    } else {
        my $n = length $c->{buf};
        $n = $self->{left} if defined $self->{left} && $self->{left} < $n;
        $self->{pending} .= substr($c->{buf}, 0, $n, '');
        $self->{left} -= $n if defined $self->{left};
        $self->{done} ||= defined $self->{left} && $self->{left} == 0;
    }
}

# Body text received since the previous successful call, once it matches
# $re; undef on timeout or end of response (the text stays pending).
sub read_until {
    my ($self, $re, $timeout) = @_;
    my $deadline = time + ($timeout // $self->{timeout});
    $self->_head($deadline - time) or return undef;
    while (1) {
        $self->_drain;
        if ($self->{pending} =~ $re) {
            my $text = $self->{pending};
            $self->{pending} = '';
            return $text;
        }
        return undef if $self->{done} || !$self->{conn}->_fill($deadline);
    }
}

# Whatever body text is pending, without waiting.
sub pending { $_[0]->_drain; $_[0]{pending} }

# True once the whole response body has been received.
sub done { my $s = shift; $s->{done} || $s->{conn}->closed }

sub close { $_[0]{conn}->close }

1;
