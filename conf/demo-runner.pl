#!/usr/bin/env perl
# A demo agent runner for conf/nginx.conf (docs/executor.md): it "answers"
# a prompt by echoing it word by word, asks for approval first when the
# prompt ends with "?", and never calls a model.  Point creor_executor's
# location at your real runner instead.
#
#   conf/demo-runner.pl [port]        (default 8090, on 127.0.0.1)

use strict;
use warnings;
use FindBin;
use JSON::PP;
use Time::HiRes qw(sleep);

require "$FindBin::Bin/demo-http.pl";

my $port = $ARGV[0] // 8090;

demo_serve('runner', $port, sub {
    my ($c, $req) = @_;
    my $prompt = $req->{run}{inputs}{prompt} // encode_json($req->{run}{inputs} // {});

    syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
               . "X-Accel-Buffering: no\r\nConnection: close\r\n\r\n";

    my $emit = sub {
        syswrite $c, encode_json({ type => $_[0], value => $_[1] }) . "\n";
    };

    if (!$req->{signal} && $prompt =~ /\?\s*$/) {
        $emit->('run.awaiting_input', { prompt => "Answer \"$prompt\"?" });
        return;
    }

    if ($req->{signal} && $req->{signal}{action} eq 'reject') {
        $emit->('run.failed', { reason_code => 'REJECTED' });
        return;
    }

    $emit->('step.started', { step_id => 'echo', name => 'echo' });
    for my $w (split /(\s+)/, $prompt) {
        sleep 0.05;
        $emit->('step.progress', { kind => 'content_delta',
                                   content_delta => $w });
    }
    $emit->('step.done', { step_id => 'echo', outcome => 'succeeded' });
    $emit->('run.completed', {
        result => { text => $prompt, artifacts => [] },
        usage  => { inputTokens => length($prompt),
                    outputTokens => length($prompt) } });
});
