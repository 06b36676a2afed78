package CreorExecutor;

# A fake agent runner for the tests of ngx_creor_module: an HTTP server that
# takes the module's run requests and answers with a scripted NDJSON event
# stream, recording every request so tests can check what the module sent
# and when it gave up on a connection.
#
#     use lib 't/lib';
#     use CreorExecutor;
#
#     my $ex = CreorExecutor->new;               # forks, listens on a free port
#     ... configure nginx with $ex->url as the runner ...
#     my ($r) = $ex->wait_for(sub { $ex->requests_for($run_id) }, 5);
#     is($r->{body}{run}{inputs}{script}, 'hang');
#     ok($ex->wait_for(sub { defined(($ex->requests_for($run_id))[0]{closed_at}) }, 1));
#     $ex->stop;                                 # also at DESTROY and END
#
# The behaviour is chosen per request by run.inputs.script:
#
#     ok (default)   step.started, 3 x step.progress (content_delta "Hel",
#                    "lo ", "world"), step.done, run.completed
#     long           like ok with run.inputs.steps (20) progress lines,
#                    delay 0.2 s; run.inputs.pad adds that many bytes to
#                    each content_delta
#     input          without a signal: step.started, run.awaiting_input;
#                    with one: run.completed, result.text
#                    "signal:ACTION:" . JSON(signal.input) (or "")
#     fail500        500 with a small JSON body
#     failonce       500 on the first request for the run id, then ok
#     cut            two step.progress lines, then close without a
#                    leg-ending event (and without the last chunk)
#     hang           step.started, then nothing for run.inputs.hang (60) s,
#                    watching the socket so a close by the peer is recorded
#     executor_fail  step.started, run.failed {reason_code: TOOL_ERROR}
#     garbage        lines that are not JSON, a line without "type", then
#                    run.completed
#     longline       step.started, then a step.progress line of
#                    run.inputs.size (1200000) bytes, then nothing for
#                    run.inputs.hang (60) s, like hang
#     files          run.completed, result.text = JSON of the files array;
#                    each file url is fetched (relative ones under
#                    run.inputs.gateway) and reported in result.artifacts
#
# run.inputs.delay sets the pause between lines (0.05 s; 0.2 s for long),
# run.inputs.framing overrides the executor's framing for one request.
# An unknown script, a body that is not a JSON object or a malformed request
# gets 400.
#
# Environment: CREOR_KEEP keeps the recording directory.

use strict;
use warnings;

use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use Fcntl qw(:flock O_RDWR O_CREAT);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::IP;
use JSON::PP;
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);

use CreorTest ();

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref;

our $HEAD_TIMEOUT = 10;     # seconds to receive a whole request
our $IDLE_TIMEOUT = 30;     # keep-alive connection idle time
our $STOP_TIMEOUT = 5;

my %SCRIPTS = map { $_ => 1 }
    qw(ok long input fail500 failonce cut hang executor_fail garbage files
       longline);

# Running executors (weak), stopped at END even if the test died half way.
my %LIVE;

END {
    local ($?, $!, $@);
    $_->stop for grep { defined } values %LIVE;
}

###########################################################################
# Parent side

sub new {
    my ($class, %o) = @_;
    my $framing = $o{framing} // 'chunked';
    die "CreorExecutor: framing must be chunked or close\n"
        unless $framing =~ /^(?:chunked|close)$/;

    my $dir = $o{dir} // tempdir('creor-executor-XXXXXX', TMPDIR => 1,
                                 CLEANUP => !$ENV{CREOR_KEEP});
    for my $sub ('', '/requests', '/runs') {
        -d "$dir$sub" or mkdir "$dir$sub" or die "mkdir $dir$sub: $!";
    }
    Test::More::diag("executor recordings kept in $dir")
        if $ENV{CREOR_KEEP} && !$o{dir} && defined &Test::More::diag;

    my $listen = IO::Socket::IP->new(
        LocalHost => '127.0.0.1', LocalPort => $o{port} // 0,
        Proto     => 'tcp',       Listen    => 128, ReuseAddr => 1,
    ) or die "CreorExecutor: cannot listen on 127.0.0.1:"
             . ($o{port} // 0) . ": $@\n";

    my $self = bless {
        dir     => $dir,
        port    => $listen->sockport,
        framing => $framing,
        owner   => $$,
    }, $class;

    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $rc = eval { _serve($self, $listen); 0 } // do {
            print STDERR "CreorExecutor server: $@";
            1;
        };
        POSIX::_exit($rc);
    }
    setpgrp($pid, $pid);    # as the child does: no race with pids()
    close $listen;
    $self->{pid} = $pid;
    $LIVE{$pid} = $self;
    weaken $LIVE{$pid};
    return $self;
}

sub port    { $_[0]{port} }
sub url     { "http://127.0.0.1:$_[0]{port}" }
sub dir     { $_[0]{dir} }
sub pid     { $_[0]{pid} }
sub framing { $_[0]{framing} }

# The internal location nginx reaches this executor through (creor_executor
# /_exec), with $extra directives, e.g. 'proxy_read_timeout 60s;'.
sub location { location_for($_[0]->url, $_[1]) }

# the same for an executor at $url (one that is down, say)
sub location_for {
    my ($url, $extra) = @_;
    return "location /_exec { internal; proxy_pass $url/run; "
         . 'proxy_buffering off; proxy_http_version 1.1;'
         . (defined $extra ? " $extra" : '') . ' }';
}

# All recorded requests, oldest first: hashrefs with body (decoded JSON or
# undef), raw (the body bytes when not JSON), at, closed_at, done_at,
# run_id, script, attempt, status, method, path, version, headers (names
# lowercased), pid, id.
sub requests {
    my ($self) = @_;
    my @r;
    for my $file (glob "$self->{dir}/requests/*.json") {
        my $text = CreorTest::_slurp($file) // next;
        my $rec = eval { $JSON->decode($text) } or next;
        push @r, $rec;
    }
    return sort { $a->{at} <=> $b->{at} || $a->{id} cmp $b->{id} } @r;
}

sub requests_for {
    my ($self, $run_id) = @_;
    return grep { defined $_->{run_id} && $_->{run_id} eq $run_id }
           $self->requests;
}

# Poll $cond every 20 ms until it returns true (that value is returned) or
# $timeout (default 10) seconds passed (false is returned).  In list
# context, the list $cond returned.
sub wait_for {
    my ($self, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        if (wantarray) {
            my @v = $cond->();
            return @v if @v && $v[0];
        } else {
            my $v = $cond->();
            return $v if $v;
        }
        return wantarray ? () : 0 if time >= $deadline;
        sleep 0.02;
    }
}

# Pids of the server and its connection handlers still in /proc
# (not zombies).
sub pids {
    my ($self) = @_;
    return () unless $self->{pid};
    return _group_pids($self->{pid});
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $self->{owner} == $$;
    my $pid = delete $self->{pid};
    delete $LIVE{$pid};

    kill 'TERM', $pid;
    my $deadline = time + $STOP_TIMEOUT;
    my $reaped = 0;
    while (time < $deadline) {
        my $w = waitpid($pid, WNOHANG);
        if ($w == $pid || $w == -1) { $reaped = 1; last }
        sleep 0.01;
    }
    # The server kills and reaps its handlers before exiting; anything left
    # in its process group is killed here, and reaped if it was re-parented
    # to us (we may be a child subreaper, see CreorTest).
    my @left = _group_pids($pid);
    kill 'KILL', $pid, @left if !$reaped || @left;
    waitpid($pid, 0) unless $reaped;
    $deadline = time + $STOP_TIMEOUT;
    while (@left && time < $deadline) {
        waitpid($_, WNOHANG) for @left;
        @left = _group_pids($pid);
        sleep 0.01 if @left;
    }
    return 1;
}

sub DESTROY {
    my ($self) = @_;
    local ($?, $!, $@);
    $self->stop;
}

# Live (non-zombie) processes whose process group is $pgid.
sub _group_pids {
    my ($pgid) = @_;
    my @pids;
    opendir(my $dh, '/proc') or return ();
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = CreorTest::_slurp("/proc/$p/stat") // next;
        my ($state, $pgrp) = $stat =~ /\)\s+(\S)\s+\d+\s+(\d+)/ or next;
        push @pids, $p if $pgrp == $pgid && $state ne 'Z' && $state ne 'X';
    }
    closedir $dh;
    return sort { $a <=> $b } @pids;
}

###########################################################################
# Server process

sub _serve {
    my ($self, $listen) = @_;
    setpgrp(0, 0);
    my $owner = $self->{owner};
    my $stopping = 0;
    my %kids;
    local $SIG{TERM} = sub { $stopping = 1 };
    local $SIG{INT}  = sub { $stopping = 1 };
    local $SIG{PIPE} = 'IGNORE';
    local $SIG{CHLD} = 'DEFAULT';

    my $sel = IO::Select->new($listen);
    my $seq = 0;
    while (!$stopping) {
        while ((my $k = waitpid(-1, WNOHANG)) > 0) { delete $kids{$k} }
        last if getppid() != $owner;    # the test went away
        next unless $sel->can_read(0.2);
        my $c = $listen->accept or next;
        $seq++;
        my $pid = fork;
        if (!defined $pid) {
            close $c;
            sleep 0.05;
            next;
        }
        if ($pid == 0) {
            $SIG{TERM} = $SIG{INT} = 'DEFAULT';
            close $listen;
            eval { _handle_conn($self, $c, $seq) };
            print STDERR "CreorExecutor handler: $@" if $@;
            POSIX::_exit(0);
        }
        $kids{$pid} = 1;
        close $c;
    }

    close $listen;
    kill 'TERM', keys %kids;
    my $deadline = time + 2;
    while (%kids && time < $deadline) {
        while ((my $k = waitpid(-1, WNOHANG)) > 0) { delete $kids{$k} }
        sleep 0.01 if %kids;
    }
    if (%kids) {
        kill 'KILL', keys %kids;
        while ((my $k = waitpid(-1, 0)) > 0) { delete $kids{$k} }
    }
}

###########################################################################
# Connection handler (a child of the server)

sub _handle_conn {
    my ($self, $sock, $seq) = @_;
    binmode $sock;
    setsockopt($sock, IPPROTO_TCP, TCP_NODELAY, 1);
    my $c = bless { sock => $sock, inbuf => '', ex => $self,
                    seq => $seq, n => 0 }, 'CreorExecutor::Conn';

    while (1) {
        my $req = $c->read_request or return;
        my $keep = $c->respond($req);
        return unless $keep;
    }
}

package CreorExecutor::Conn;

use strict;
use warnings;
use Errno qw(EINTR EAGAIN EWOULDBLOCK);
use Fcntl qw(:flock O_RDWR O_CREAT);
use IO::Select;
use Time::HiRes qw(time sleep);

my $J = JSON::PP->new->utf8->canonical->allow_nonref;

# Read more input; 1 on data, 0 on EOF/error (peer closed), undef on
# timeout.
sub _fill {
    my ($c, $deadline) = @_;
    while (1) {
        my $left = $deadline - time;
        return undef if $left <= 0;
        my $n = IO::Select->new($c->{sock})->can_read($left);
        next unless $n;
        my $r = sysread($c->{sock}, $c->{inbuf}, 65536, length $c->{inbuf});
        if (!defined $r) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return 0;
        }
        return $r ? 1 : 0;
    }
}

sub read_request {
    my ($c) = @_;
    my $deadline = time + $IDLE_TIMEOUT;
    # idle wait for the first byte, then a bounded time for the request
    while ($c->{inbuf} !~ /\S/) {
        $c->{inbuf} = '';
        return undef unless $c->_fill($deadline);
    }
    $c->{inbuf} =~ s/^\s+//;
    $deadline = time + $HEAD_TIMEOUT;
    while ($c->{inbuf} !~ /\r?\n\r?\n/) {
        return $c->bad('request head too long') if length $c->{inbuf} > 65536;
        return undef unless $c->_fill($deadline);
    }
    $c->{inbuf} =~ s/^(.*?)\r?\n\r?\n//s;
    my ($line, @lines) = split /\r?\n/, $1;
    my ($method, $target, $version) =
        $line =~ m{^([A-Z]+)\s+(\S+)\s+HTTP/(\d\.\d)\s*$}
        or return $c->bad('malformed request line');
    my %h;
    for (@lines) {
        my ($k, $v) = /^([^:\s]+):\s*(.*?)\s*$/
            or return $c->bad('malformed header');
        $k = lc $k;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }
    my $req = { method => $method, path => $target, version => $version,
                headers => \%h, body => '' };

    if (($h{expect} // '') =~ /100-continue/i) {
        $c->write("HTTP/1.1 100 Continue\r\n\r\n") or return undef;
    }
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        while (1) {
            while ($c->{inbuf} !~ /^([0-9a-fA-F]+)[^\r\n]*\r\n/) {
                return $c->bad('bad chunk') if length $c->{inbuf} > 1024
                                              && $c->{inbuf} !~ /\r\n/;
                return undef unless $c->_fill($deadline);
            }
            my ($size, $hlen) = (hex $1, length $&);
            if ($size == 0) {
                while ($c->{inbuf} !~ /^[^\r\n]*\r\n(?:[^\r\n]+\r\n)*\r\n/) {
                    return undef unless $c->_fill($deadline);
                }
                substr($c->{inbuf}, 0, length $&, '');
                last;
            }
            while (length $c->{inbuf} < $hlen + $size + 2) {
                return undef unless $c->_fill($deadline);
            }
            $req->{body} .= substr($c->{inbuf}, $hlen, $size);
            substr($c->{inbuf}, 0, $hlen + $size + 2, '');
        }
    } elsif (defined $h{'content-length'}) {
        $h{'content-length'} =~ /^(\d+)$/
            or return $c->bad('bad content-length');
        my $len = $1;
        while (length $c->{inbuf} < $len) {
            return undef unless $c->_fill($deadline);
        }
        $req->{body} = substr($c->{inbuf}, 0, $len, '');
    }

    $req->{keepalive} = $version eq '1.1'
        && ($h{connection} // '') !~ /\bclose\b/i;
    return $req;
}

# 400 for a request that cannot be parsed; ends the connection.
sub bad {
    my ($c, $why) = @_;
    $c->simple(400, { error => { code => 'bad_request', message => $why } },
               0);
    return undef;
}

sub simple {
    my ($c, $status, $data, $keep) = @_;
    my $body = $J->encode($data);
    my %reason = (200 => 'OK', 400 => 'Bad Request',
                  500 => 'Internal Server Error');
    $c->write("HTTP/1.1 $status " . ($reason{$status} // 'Status') . "\r\n"
        . "Content-Type: application/json\r\n"
        . "Content-Length: " . length($body) . "\r\n"
        . "Connection: " . ($keep ? 'keep-alive' : 'close') . "\r\n"
        . ($c->{rec} ? "X-Executor-Request: $c->{rec}{id}\r\n" : '')
        . "\r\n" . $body);
}

# Write everything; false when the peer is gone.
sub write {
    my ($c, $bytes) = @_;
    my $off = 0;
    while ($off < length $bytes) {
        my $n = syswrite($c->{sock}, $bytes, length($bytes) - $off, $off);
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            return 0;
        }
        $off += $n;
    }
    return 1;
}

###########################################################################
# Recording

sub save {
    my ($c) = @_;
    my $rec = $c->{rec};
    my $dir = "$c->{ex}{dir}/requests";
    my $tmp = "$dir/.$rec->{id}.tmp";
    open(my $fh, '>:raw', $tmp) or die "write $tmp: $!";
    print $fh $J->encode($rec);
    close $fh or die "write $tmp: $!";
    rename $tmp, "$dir/$rec->{id}.json" or die "rename $tmp: $!";
}

# Number of requests seen so far for a run id, this one included.
sub count_attempt {
    my ($c, $run_id) = @_;
    (my $key = $run_id // '-') =~ s/[^A-Za-z0-9_.-]/_/g;
    my $file = "$c->{ex}{dir}/runs/$key.count";
    sysopen(my $fh, $file, O_RDWR | O_CREAT) or die "open $file: $!";
    flock($fh, LOCK_EX) or die "flock $file: $!";
    my $n = <$fh> // 0;
    $n = ($n =~ /(\d+)/ ? $1 : 0) + 1;
    seek $fh, 0, 0;
    truncate $fh, 0;
    print $fh "$n\n";
    close $fh or die "write $file: $!";
    return $n;
}

# The peer closed the connection: record when, and end this handler.
sub peer_closed {
    my ($c) = @_;
    if (my $rec = $c->{rec}) {
        $rec->{closed_at} = time;
        $c->save;
    }
    close $c->{sock};
    POSIX::_exit(0);
}

###########################################################################
# Responses

sub respond {
    my ($c, $req) = @_;
    my $at = time;
    my $body = eval { $J->decode($req->{body}) };
    my $run = ref $body eq 'HASH' && ref $body->{run} eq 'HASH'
            ? $body->{run} : {};
    my $inputs = ref $run->{inputs} eq 'HASH' ? $run->{inputs} : {};
    my $script = $inputs->{script};
    $script = 'ok' unless defined $script && !ref $script && $script ne '';
    my $run_id = defined $run->{id} && !ref $run->{id} ? "$run->{id}" : undef;

    $c->{n}++;
    my $rec = $c->{rec} = {
        id        => sprintf('%.6f-%d-%d', $at, $$, $c->{n}),
        at        => $at,
        closed_at => undef,
        done_at   => undef,
        method    => $req->{method},
        path      => $req->{path},
        version   => $req->{version},
        headers   => $req->{headers},
        body      => ref $body eq 'HASH' ? $body : undef,
        raw       => ref $body eq 'HASH' ? undef : $req->{body},
        run_id    => $run_id,
        script    => $script,
        attempt   => undef,
        status    => undef,
        pid       => $$,
    };
    $rec->{attempt} = $c->count_attempt($run_id) if ref $body eq 'HASH';

    my $fail = ref $body ne 'HASH' ? 'body is not a JSON object'
             : !$SCRIPTS{$script} ? "unknown script $script"
             : undef;
    if ($fail) {
        $rec->{status} = 400;
        $c->save;
        $c->simple(400, { error => { code => 'bad_request',
                                     message => $fail } }, 0);
        return $c->finish(0);
    }
    if ($script eq 'fail500'
        || ($script eq 'failonce' && $rec->{attempt} == 1)) {
        $rec->{status} = 500;
        $c->save;
        $c->simple(500, { error => { code => 'executor_error',
                                     message => "scripted failure" } },
                   $req->{keepalive});
        return $c->finish($req->{keepalive});
    }

    my $framing = $inputs->{framing} // $c->{ex}{framing};
    $framing = $c->{ex}{framing} unless $framing =~ /^(?:chunked|close)$/;
    $c->{chunked} = $framing eq 'chunked';
    my $keep = $c->{chunked} && $req->{keepalive};
    $rec->{status} = 200;
    $c->save;

    $c->write("HTTP/1.1 200 OK\r\n"
        . "Content-Type: application/x-ndjson\r\n"
        . "X-Accel-Buffering: no\r\n"
        . "Cache-Control: no-cache\r\n"
        . ($c->{chunked} ? "Transfer-Encoding: chunked\r\n" : '')
        . "Connection: " . ($keep ? 'keep-alive' : 'close') . "\r\n"
        . "X-Executor-Request: $rec->{id}\r\n"
        . "\r\n") or $c->peer_closed;

    my $default_delay = $script eq 'long' ? 0.2 : 0.05;
    my $delay = $inputs->{delay};
    $delay = $default_delay
        unless defined $delay && !ref $delay && $delay =~ /^\d*\.?\d+$/;
    $c->{delay} = $delay;

    my $method = "script_$script";
    $method = 'script_ok' if $script eq 'failonce';
    my $complete = $c->$method($body, $inputs);

    return $c->finish(0) unless $complete;
    $c->write("0\r\n\r\n") or $c->peer_closed if $c->{chunked};
    return $c->finish($keep);
}

# Mark the response done; close unless the connection is kept.
sub finish {
    my ($c, $keep) = @_;
    if (my $rec = $c->{rec}) {
        $rec->{done_at} = time;
        $c->save;
    }
    delete $c->{rec};
    unless ($keep) {
        shutdown($c->{sock}, 1);
        close $c->{sock};
    }
    return $keep;
}

# One line of the body, flushed as its own chunk.
sub raw_line {
    my ($c, $text) = @_;
    my $line = "$text\n";
    my $out = $c->{chunked}
        ? sprintf("%x\r\n", length $line) . $line . "\r\n" : $line;
    $c->write($out) or $c->peer_closed;
}

sub event {
    my ($c, $type, $value) = @_;
    $c->raw_line($J->encode({ type => $type, value => $value }));
}

# Wait, watching the socket: a close by the peer ends the handler.
sub pause {
    my ($c, $secs) = @_;
    my $deadline = time + $secs;
    while (1) {
        my $left = $deadline - time;
        last if $left <= 0;
        next unless IO::Select->new($c->{sock})->can_read($left);
        my $n = sysread($c->{sock}, $c->{inbuf}, 65536, length $c->{inbuf});
        if (!defined $n) {
            next if $! == EINTR || $! == EAGAIN || $! == EWOULDBLOCK;
            $c->peer_closed;
        }
        $c->peer_closed if $n == 0;
        # bytes of a pipelined request: keep them
    }
}

sub started {
    my ($c, $name) = @_;
    $c->event('step.started', { step_id => 'step_1', name => $name });
}

sub done {
    my ($c) = @_;
    $c->event('step.done', { step_id => 'step_1', outcome => 'succeeded' });
}

# run.completed with $text, $artifacts and $out output tokens
sub completed {
    my ($c, $text, $out, $artifacts) = @_;
    $c->event('run.completed',
              { result => { text => $text, artifacts => $artifacts // [] },
                usage  => { inputTokens => 12, outputTokens => $out + 0 } });
}

# an input that must match $re (a count by default), else $default
sub input_num {
    my ($v, $default, $re) = @_;
    return defined $v && !ref $v && $v =~ ($re // qr/^\d+$/) ? $v : $default;
}

sub delta {
    my ($c, $text) = @_;
    $c->event('step.progress',
              { step_id => 'step_1', kind => 'content_delta',
                content_delta => $text });
}

sub script_ok {
    my ($c) = @_;
    $c->started('respond');
    for my $d ('Hel', 'lo ', 'world') {
        $c->pause($c->{delay});
        $c->delta($d);
    }
    $c->pause($c->{delay});
    $c->done;
    $c->completed('Hello world', 3);
    return 1;
}

sub script_long {
    my ($c, $body, $inputs) = @_;
    my $steps = input_num($inputs->{steps}, 20);
    my $pad = input_num($inputs->{pad}, 0);
    $c->started('respond');
    my $text = '';
    for my $i (1 .. $steps) {
        $c->pause($c->{delay});
        $c->delta("$i " . ('.' x $pad));
        $text .= "$i ";
    }
    $c->pause($c->{delay});
    $c->done;
    $c->completed($text, $steps);
    return 1;
}

sub script_input {
    my ($c, $body) = @_;
    my $signal = $body->{signal};
    if (!defined $signal) {
        $c->started('approve');
        $c->pause($c->{delay});
        $c->event('run.awaiting_input', { prompt => 'Approve?' });
        return 1;
    }
    my ($action, $input) = ref $signal eq 'HASH'
        ? ($signal->{action}, $signal->{input}) : ();
    my $text = 'signal:' . ($action // '') . ':'
        . (defined $input ? JSON::PP->new->canonical->allow_nonref
                                ->encode($input) : '');
    $c->completed($text, 3);
    return 1;
}

sub script_cut {
    my ($c) = @_;
    $c->delta('Hel');
    $c->pause($c->{delay});
    $c->delta('lo ');
    $c->pause($c->{delay});
    return 0;
}

sub script_hang {
    my ($c, $body, $inputs) = @_;
    $c->started('respond');
    $c->pause(input_num($inputs->{hang}, 60, qr/^\d*\.?\d+$/));
    return 0;
}

sub script_longline {
    my ($c, $body, $inputs) = @_;
    $c->started('respond');
    $c->delta('x' x input_num($inputs->{size}, 1200000));
    $c->pause(input_num($inputs->{hang}, 60, qr/^\d*\.?\d+$/));
    return 0;
}

sub script_executor_fail {
    my ($c) = @_;
    $c->started('tool');
    $c->pause($c->{delay});
    $c->event('run.failed', { reason_code => 'TOOL_ERROR',
                              message => 'scripted tool failure' });
    return 1;
}

sub script_garbage {
    my ($c) = @_;
    $c->raw_line('this is not json');
    $c->pause($c->{delay});
    $c->raw_line('{"type": "step.progress", "value": {');
    $c->pause($c->{delay});
    $c->raw_line('{"value":{"kind":"content_delta","content_delta":"x"}}');
    $c->pause($c->{delay});
    $c->completed('survived', 1);
    return 1;
}

sub script_files {
    my ($c, $body, $inputs) = @_;
    my $files = ref $body->{files} eq 'ARRAY' ? $body->{files} : [];
    my $gateway = $inputs->{gateway} // '';
    $gateway =~ s{/+$}{};
    my @artifacts;
    for my $f (@$files) {
        my $url = ref $f eq 'HASH' ? $f->{url} : undef;
        my %a = (id => (ref $f eq 'HASH' ? $f->{id} : undef), url => $url);
        if (defined $url && !ref $url) {
            $url = $gateway . $url if $url =~ m{^/};
            my $r = CreorExecutor::http_get($url, $inputs->{fetch_headers});
            if ($r->{error}) {
                $a{error} = $r->{error};
            } else {
                $a{status} = $r->{status};
                $a{length} = length $r->{body};
                $a{head_hex} = unpack('H*', substr($r->{body}, 0, 16));
            }
        } else {
            $a{error} = 'no url';
        }
        push @artifacts, \%a;
    }
    $c->completed(JSON::PP->new->canonical->allow_nonref->encode($files), 1,
                  \@artifacts);
    return 1;
}

###########################################################################

package CreorExecutor;

# A plain GET (HTTP/1.1, Connection: close); returns { status, headers,
# body } or { error }.
sub http_get {
    my ($url, $headers, $timeout) = @_;
    $timeout //= 10;
    my ($host, $port, $path) = $url =~ m{^http://([^/:]+)(?::(\d+))?(/.*)?$}
        or return { error => "unsupported url $url" };
    $port //= 80;
    $path //= '/';
    my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port,
                                Proto => 'tcp', Timeout => $timeout)
        or return { error => "connect $host:$port: $@" };
    binmode $s;
    my $req = "GET $path HTTP/1.1\r\nHost: $host:$port\r\nConnection: close\r\n";
    if (ref $headers eq 'HASH') {
        $req .= "$_: $headers->{$_}\r\n" for sort keys %$headers;
    }
    $req .= "\r\n";
    local $SIG{PIPE} = 'IGNORE';
    syswrite($s, $req) or return { error => "write: $!" };
    my $buf = '';
    my $deadline = time + $timeout;
    while (1) {
        my $left = $deadline - time;
        return { error => 'timeout' } if $left <= 0;
        next unless IO::Select->new($s)->can_read($left);
        my $n = sysread($s, $buf, 65536, length $buf);
        next if !defined $n && $! == EINTR;
        last unless $n;
    }
    close $s;
    $buf =~ s/^(.*?)\r?\n\r?\n//s or return { error => 'no response head' };
    my ($line, @lines) = split /\r?\n/, $1;
    my ($status) = $line =~ m{^HTTP/\d\.\d\s+(\d{3})}
        or return { error => 'bad status line' };
    my %h;
    for (@lines) { /^([^:]+):\s*(.*?)\s*$/ and $h{lc $1} = $2 }
    my $body = $buf;
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        $body = '';
        while ($buf =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $size = hex $1;
            last if $size == 0;
            $body .= substr($buf, 0, $size, '');
            $buf =~ s/^\r\n//;
        }
    } elsif (defined $h{'content-length'} && $h{'content-length'} =~ /^(\d+)/) {
        $body = substr($buf, 0, $1);
    }
    return { status => $status + 0, headers => \%h, body => $body };
}

1;
