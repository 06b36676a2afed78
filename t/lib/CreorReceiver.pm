package CreorReceiver;

# The webhook receiver of the tests (t/lib/webhook-receiver.js, Node):
#
#     my $rx = CreorReceiver->new;
#     $rx->secrets('/ok' => [$secret]);
#     my @got = $rx->wait_for(sub { grep { ... } $rx->log }, 10);
#     $rx->stop;                                  # also at DESTROY

use strict;
use warnings;

use FindBin;
use IO::Socket::IP;
use JSON::PP;
use Time::HiRes qw(time sleep);

my $JSON = JSON::PP->new->utf8->canonical;

sub new {
    my ($class) = @_;
    my $js = "$FindBin::Bin/lib/webhook-receiver.js";
    local $ENV{NODE_PATH} = "$FindBin::Bin/node_modules";
    my $pid = open(my $out, '-|', 'node', $js) // die "node: $!";
    my $port = <$out>;
    die "the webhook receiver did not start\n" unless $port && $port =~ /^\d+/;
    chomp $port;
    return bless { pid => $pid, out => $out, port => $port, owner => $$ },
                 $class;
}

sub port { $_[0]{port} }
sub url  { "http://127.0.0.1:$_[0]{port}" . ($_[1] // '') }

sub _http {
    my ($self, $method, $path, $body) = @_;
    my $s = IO::Socket::IP->new(PeerHost => '127.0.0.1',
                                PeerPort => $self->{port}, Timeout => 5)
        or die "receiver: $!";
    $body //= '';
    print $s "$method $path HTTP/1.0\r\nContent-Length: " . length($body)
           . "\r\n\r\n$body";
    local $/;
    my $res = <$s>;
    my (undef, $b) = split /\r\n\r\n/, $res // '', 2;
    return $b;
}

sub secrets {
    my ($self, %s) = @_;
    $self->_http(POST => '/_secrets', $JSON->encode(\%s));
}

sub log {
    my ($self) = @_;
    return @{ $JSON->decode($self->_http(GET => '/_log') || '[]') };
}

# Polls until the sub returns a true list, or the timeout; returns the list.
sub wait_for {
    my ($self, $sub, $timeout) = @_;
    my $deadline = time + $timeout;
    while (1) {
        my @r = $sub->();
        return @r if @r || time > $deadline;
        sleep 0.05;
    }
}

sub stop {
    my ($self) = @_;
    return unless $self->{pid} && $self->{owner} == $$;
    kill 'TERM', $self->{pid};
    waitpid $self->{pid}, 0;
    delete $self->{pid};
}

sub DESTROY { local ($?, $!, $@); $_[0]->stop }

1;
