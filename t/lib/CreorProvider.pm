package CreorProvider;

# Runs t/lib/provider.mjs, a fake OpenAI-compatible model provider (see
# its header for the behaviours a model name chooses), and reads what it
# recorded.
#
#     my $pv = CreorProvider->new;
#     ... location /provider/ { proxy_pass $pv->url; ... } ...
#     my @reqs = $pv->requests;          # [{body, headers, closed_at...}]
#     $pv->wait_for(sub { ... }, 5);
#     $pv->stop;                         # also at DESTROY

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use IPC::Open2 qw(open2);
use JSON::PP;
use Time::HiRes qw(time sleep);

my $SCRIPT = abs_path(dirname(__FILE__)) . '/provider.mjs';

sub new {
    my ($class) = @_;
    my ($out, $in);
    my $pid = open2($out, $in, 'node', $SCRIPT)
        or die "CreorProvider: cannot run node: $!\n";
    my $line = <$out> // '';
    die "CreorProvider: provider did not start\n"
        unless $line =~ /^port (\d+)/;
    return bless { pid => $pid, port => $1, in => $in, out => $out,
                   owner => $$ }, $class;
}

sub port { $_[0]{port} }
sub url  { "http://127.0.0.1:$_[0]{port}" }

# The upstream "provider" of this provider (http{} level), and an internal
# location $path that streams to it (for creor_provider NAME $path), with
# $extra directives (e.g. the read timeout).
sub upstream {
    return "upstream provider { server 127.0.0.1:$_[0]{port}; keepalive 8; }";
}

sub location {
    my ($self, $path, $extra) = @_;
    return join("\n",
        "location = $path {",
        '    internal;',
        '    proxy_pass http://provider/v1/chat/completions;',
        '    proxy_http_version 1.1;',
        '    proxy_set_header Connection "";',
        '    proxy_buffering off;',
        (defined $extra ? "    $extra" : ()),
        '}');
}

sub requests {
    my ($self) = @_;
    my $r = HTTP::Tiny->new(timeout => 5)->get($self->url . '/_requests');
    die "CreorProvider: $r->{status} $r->{content}\n" unless $r->{success};
    return @{ JSON::PP->new->utf8->decode($r->{content}) };
}

# The last request whose body has this test_id.
sub request_for {
    my ($self, $id) = @_;
    my @r = grep { ref $_->{body} eq 'HASH'
                   && ($_->{body}{test_id} // '') eq $id } $self->requests;
    return wantarray ? @r : $r[-1];
}

sub wait_for {
    my ($self, $cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $v = $cond->();
        return $v if $v;
        return 0 if time >= $deadline;
        sleep 0.05;
    }
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $self->{owner} == $$;
    my $pid = delete $self->{pid};
    close $self->{in};
    kill 'TERM', $pid;
    waitpid($pid, 0);
}

sub DESTROY {
    local ($?, $!, $@);
    $_[0]->stop;
}

1;
