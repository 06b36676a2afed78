# The demo servers' common part (conf/demo-provider.pl, demo-runner.pl):
# listen on 127.0.0.1, a process a connection, read one request and hand
# its connection and decoded JSON body (and the raw body) to a handler.

use strict;
use warnings;
use IO::Socket::INET;
use JSON::PP;

sub demo_serve {
    my ($name, $port, $handle) = @_;

    my $srv = IO::Socket::INET->new(Listen => 128, LocalAddr => '127.0.0.1',
                                    LocalPort => $port, ReuseAddr => 1)
        or die "demo $name: cannot listen on 127.0.0.1:$port: $!\n";

    $SIG{CHLD} = 'IGNORE';

    while (my $c = $srv->accept) {
        next if fork;
        close $srv;

        my $head = '';
        while ($head !~ /\r\n\r\n/) {
            sysread($c, $head, 8192, length $head) or exit 0;
        }

        my ($len) = $head =~ /^content-length:\s*(\d+)/mi;
        my $body = substr($head, index($head, "\r\n\r\n") + 4);
        while (length $body < ($len // 0)) {
            sysread($c, $body, 65536, length $body) or exit 0;
        }

        $handle->($c, eval { decode_json($body) } || {}, $body);
        exit 0;
    }
}

1;
