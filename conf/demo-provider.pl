#!/usr/bin/env perl
# A demo model provider for conf/nginx.conf (docs/providers.md): an
# OpenAI-compatible POST /v1/chat/completions that echoes the last user
# message, word by word when a stream is asked for.  Given tools and no
# tool output yet, it asks for a call of the first tool with the message
# as {"input": ...}; after the output it answers with it.  No model, no
# network: the README tour runs offline on it.
#
#   conf/demo-provider.pl [port]        (default 8091, on 127.0.0.1)

use strict;
use warnings;
use FindBin;
use JSON::PP;
use Time::HiRes qw(sleep);

require "$FindBin::Bin/demo-http.pl";

my $port = $ARGV[0] // 8091;
my $JSON = JSON::PP->new->canonical;

demo_serve('provider', $port, sub {
    my ($c, $req, $body) = @_;

    my @msgs = @{ ref $req->{messages} eq 'ARRAY' ? $req->{messages} : [] };
    my ($user) = grep { ref $_ && ($_->{role} // '') eq 'user' }
                 reverse @msgs;
    my $last = $msgs[-1] // {};
    my $said = ref $user ? $user->{content} // '' : '';
    $said = $JSON->encode($said) if ref $said;

    my ($tool, $text) = (undef, "You said: $said");
    if (ref $last && ($last->{role} // '') eq 'tool') {
        $text = "The tool answered: " . ($last->{content} // '');
    } elsif (ref $req->{tools} eq 'ARRAY' && @{ $req->{tools} }) {
        $tool = $req->{tools}[0]{function}{name} // 'tool';
    }

    my $model = $req->{model} // 'echo';
    my $usage = { prompt_tokens => length($body) >> 2,
                  completion_tokens => length($text) >> 2 };
    $usage->{total_tokens} = $usage->{prompt_tokens}
                           + $usage->{completion_tokens};
    my $call = { index => 0, id => 'call_' . int(rand(1e9)),
                 type => 'function',
                 function => { name => $tool,
                     arguments => $JSON->encode({ input => $said }) } }
        if $tool;

    unless ($req->{stream}) {
        my $msg = { role => 'assistant', content => $tool ? undef : $text };
        $msg->{tool_calls} = [$call] if $tool;
        my $out = $JSON->encode({
            id => 'chatcmpl-demo', object => 'chat.completion',
            created => time, model => $model, usage => $usage,
            choices => [{ index => 0, message => $msg,
                          finish_reason => $tool ? 'tool_calls' : 'stop' }] });
        syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   . 'Content-Length: ' . length($out)
                   . "\r\nConnection: close\r\n\r\n$out";
        return;
    }

    syswrite $c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
               . "Cache-Control: no-cache\r\nConnection: close\r\n\r\n";

    my $chunk = sub {
        my ($delta, $finish, $extra) = @_;
        syswrite $c, 'data: ' . $JSON->encode({
            id => 'chatcmpl-demo', object => 'chat.completion.chunk',
            created => time, model => $model,
            choices => $delta ? [{ index => 0, delta => $delta,
                                   finish_reason => $finish }] : [],
            %{ $extra // {} } }) . "\n\n" or exit 0;
    };

    $chunk->({ role => 'assistant', content => '' });
    if ($tool) {
        $chunk->({ tool_calls => [$call] });
        $chunk->({}, 'tool_calls');
    } else {
        for my $w (split /(?<=\s)/, $text) {
            sleep 0.08;
            $chunk->({ content => $w });
        }
        $chunk->({}, 'stop');
    }
    $chunk->(undef, undef, { usage => $usage })
        if $req->{stream_options} && $req->{stream_options}{include_usage};
    syswrite $c, "data: [DONE]\n\n";
});
