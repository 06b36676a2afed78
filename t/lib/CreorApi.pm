package CreorApi;

# The client side of the tests, written once: a default client (api), the
# error envelope assertion (err_is), tables of request cases walked by
# cases_ok, and the small helpers many test files used to define again.
#
#     use CreorTest;
#     use CreorApi;
#
#     my $t = CreorTest->new;
#     my $b = $t->bootstrap;
#     api_use($t, token => $b->{token});
#     err_is(api(GET => '/v1/agents/agt_x'), 404, 'NOT_FOUND', undef,
#            'unknown agent');
#     cases_ok([
#         # name,            method => path,       options, status, code
#         ['list agents',    GET => '/v1/agents',  {},      200],
#         ['no credentials', GET => '/v1/agents',  { token => undef },
#                                                  401, 'AUTH_MISSING_HEADER'],
#     ]);

use strict;
use warnings;

use Exporter 'import';
use Test::More ();
use Time::HiRes qw(time sleep);

use CreorTest;

our @EXPORT = qw(api api_use api_ok
                 err_is cases_ok fields_ok NO_PARAM %ERROR_TYPE
                 get_run wait_run events_of list_all project_agent
                 hdr ids_of types wait_until multipart_body
                 slurp spew free_port);

# SPEC 3.1: the error type of each status.
our %ERROR_TYPE = (
    400 => 'invalid_request',      401 => 'authentication_error',
    403 => 'permission_denied',    404 => 'not_found',
    405 => 'invalid_request',      408 => 'invalid_request',
    409 => 'conflict',             413 => 'invalid_request',
    414 => 'invalid_request',      415 => 'invalid_request',
    501 => 'invalid_request',      503 => 'service_unavailable',
    505 => 'invalid_request',
);

# err_is(..., NO_PARAM, ...) asserts that the envelope names no param.
use constant NO_PARAM => \'no param';

###########################################################################
# The default client

my %API;

# api_use($t, token => TOKEN, timeout => SECS, headers => {...},
#         keepalive => 1, check => sub { my ($r, $method, $path) = @_ })
# sets what api() sends by default: to instance $t, with this token and
# these headers (a request's own win), on one keep-alive connection that
# is opened again when the server closed it; check sees every response.
sub api_use {
    my ($t, %o) = @_;
    %API = (%o, inst => $t);
}

# api(METHOD => PATH, %options of CreorTest::req): the request with the
# defaults of api_use(); token => undef sends none, inst => $t2 another
# instance, conn => $c that connection.
sub api {
    my ($method, $path, %o) = @_;
    my $inst = delete $o{inst} // $API{inst}
        // die "api: no instance (call api_use first)\n";
    $o{token} = $API{token} unless exists $o{token};
    delete $o{token} unless defined $o{token};
    $o{timeout} //= $API{timeout} if defined $API{timeout};
    if ($API{headers}) {
        my $h = $o{headers} // {};
        my %h = ref $h eq 'ARRAY' ? @$h : %$h;
        $o{headers} = { %{$API{headers}}, %h };
    }
    my $conn = delete $o{conn};
    my $r;
    if ($conn) {
        $r = $conn->req($method, $path, %o);
    } elsif ($API{keepalive} && $inst == $API{inst}) {
        $API{conn} //= $inst->conn;
        $r = $API{conn}->req($method, $path, %o);
        delete $API{conn}
            if ($r->{headers}{connection} // '') =~ /close/i || !$r->{status};
    } else {
        $r = $inst->req($method, $path, %o);
    }
    $API{check}->($r, $method, $path) if $API{check};
    return $r;
}

# api() that dies unless the answer is 2xx; returns its JSON.
sub api_ok {
    my ($method, $path, %o) = @_;
    my $r = api($method, $path, %o);
    die "$method $path: $r->{status} $r->{body}\n" unless $r->{status} =~ /^2/;
    return $r->{json};
}

###########################################################################
# Assertions

# err_is($r, STATUS, CODE, PARAM, NAME, type => TYPE): the response is the
# JSON error envelope (SPEC 3.1) of STATUS ('4xx': any 4xx): an error object
# with a type, code, message and request_id; a JSON content type; the code
# CODE (unless undef); the type TYPE, or the one of STATUS when known; an
# X-Request-Id, equal to request_id; the param PARAM when defined (NO_PARAM:
# none).  Returns the error object.
sub err_is {
    my ($r, $status, $code, $param, $name, %o) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $e = ref $r->{json} eq 'HASH' ? $r->{json}{error} : undef;
    my $ok = $status eq '4xx'
        ? Test::More::ok($r->{status} >= 400 && $r->{status} < 500,
                         "$name: 4xx ($r->{status})")
        : Test::More::is($r->{status}, $status, "$name: status $status");
    $e = {} unless ref $e eq 'HASH';
    $ok = Test::More::ok($e->{type} && $e->{code} && $e->{message}
                         && $e->{request_id}, "$name: JSON error envelope")
          && $ok;
    Test::More::like($r->{headers}{'content-type'} // '',
                     qr{^application/json\b}, "$name: content-type json");
    $ok = Test::More::is($e->{code}, $code, "$name: code $code") && $ok
        if defined $code;
    my $type = $o{type} // $ERROR_TYPE{$status};
    Test::More::is($e->{type}, $type, "$name: type $type") if defined $type;
    Test::More::ok(defined $e->{message} && !ref $e->{message}
                   && length $e->{message}, "$name: message");
    Test::More::like($r->{headers}{'x-request-id'} // '', qr/^[0-9a-f]{32}$/,
                     "$name: X-Request-Id header");
    Test::More::is($e->{request_id} // '(none)',
                   $r->{headers}{'x-request-id'} // '(no header)',
                   "$name: request_id equals X-Request-Id");
    if (ref $param && $param == NO_PARAM) {
        Test::More::is($e->{param}, undef, "$name: no param");
    } elsif (defined $param) {
        Test::More::is($e->{param}, $param, "$name: param $param");
    }
    Test::More::diag('body: ' . substr($r->{body} // '', 0, 300)
                     . ($r->{error} ? " ($r->{error})" : ''))
        unless $ok;
    return $e;
}

# cases_ok(\@rows, %defaults) walks a table of requests, in the spirit of
# Test::Nginx blocks.  A row is
#     [NAME, METHOD => PATH, {options of api()}, STATUS, CODE, PARAM]
# %defaults go into every request under the row's own options.  A 2xx or
# 3xx STATUS is asserted alone (named NAME), any other with err_is.
# Returns the responses, in order.
sub cases_ok {
    my ($rows, %defaults) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my @rs;
    for my $c (@$rows) {
        my ($name, $method, $path, $o, $status, $code, $param) = @$c;
        my $r = api($method, $path, %defaults, %{$o // {}});
        if ($status =~ /^[23]\d\d$/) {
            Test::More::is($r->{status}, $status, $name)
                or Test::More::diag("body: $r->{body}");
        } else {
            err_is($r, $status, $code, $param, $name);
        }
        push @rs, $r;
    }
    return @rs;
}

# fields_ok($object, [FIELD, WANT, NAME], ...): each FIELD of $object is
# WANT, or matches it when WANT is a qr//.
sub fields_ok {
    my ($obj, @rows) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    for my $row (@rows) {
        my ($field, $want, $name) = @$row;
        my $got = ref $obj eq 'HASH' ? $obj->{$field} : undef;
        ref $want eq 'Regexp' ? Test::More::like($got // '', $want, $name)
                              : Test::More::is($got, $want, $name);
    }
}

###########################################################################
# Small helpers

sub hdr { $_[0]{headers}{lc $_[1]} }

# the ids of a list response's data
sub ids_of {
    my ($r) = @_;
    my $l = ref $r->{json} eq 'HASH' ? $r->{json}{data} : undef;
    return [map { $_->{id} } @{ref $l eq 'ARRAY' ? $l : []}];
}

# the types of a list of events
sub types {
    return [map { ref $_ eq 'HASH' ? $_->{type} // '?' : '?' } @{$_[0] // []}];
}

# Calls $sub every 50 ms until it returns something true (a list of more
# than one value, or one true value) or $timeout seconds passed; returns
# what it returned last (its first value in scalar context).
sub wait_until {
    my ($sub, $timeout) = @_;
    my $deadline = time + $timeout;
    my @r;
    until ((@r = $sub->()) > 1 || $r[0] || time > $deadline) { sleep 0.05 }
    return wantarray ? @r : $r[0];
}

# Every item of the list at PATH (which may carry a query), walked 100 a
# page by next_cursor; api() %options.  undef when a page is not a 200.
sub list_all {
    my ($path, %o) = @_;
    my $sep = $path =~ /\?/ ? '&' : '?';
    my (@all, $cursor);
    for (1 .. 1000) {
        my $r = api(GET => "$path${sep}limit=100"
                           . (defined $cursor ? "&cursor=$cursor" : ''), %o);
        return undef unless $r->{status} == 200 && ref $r->{json} eq 'HASH';
        push @all, @{$r->{json}{data} // []};
        last unless $r->{json}{has_more};
        $cursor = $r->{json}{next_cursor} // last;
    }
    return \@all;
}

# the events of run $id, oldest first (its first 100), or []
sub events_of {
    my ($id, %o) = @_;
    my $r = api(GET => "/v1/runs/$id/events?order=asc&limit=100", %o);
    return [] unless $r->{status} == 200 && ref $r->{json} eq 'HASH';
    return $r->{json}{data} // [];
}

my %TERMINAL = map { $_ => 1 } qw(completed failed cancelled);

# the run $id (GET /v1/runs/$id with api() %options), or {}
sub get_run {
    my ($id, %o) = @_;
    my $r = api(GET => "/v1/runs/$id", %o);
    return $r->{status} == 200 && ref $r->{json} eq 'HASH' ? $r->{json} : {};
}

# wait_run($id, $cond, $timeout, %options of api()): the run once
# $cond->($run) holds (default: a terminal status), or as it is after
# $timeout seconds (default 10).
sub wait_run {
    my ($id, $cond, $timeout, %o) = @_;
    $cond //= sub { $TERMINAL{$_[0]{status} // ''} };
    my $deadline = time + ($timeout // 10);
    while (1) {
        my $run = get_run($id, %o);
        return $run if $cond->($run) || time >= $deadline;
        sleep 0.05;
    }
}

# multipart/form-data: parts [name, value] or [name, value, filename, type];
# returns (body, content type).  Options: boundary => BD, eol => "\n" for
# bare LF line endings, file_type => TYPE for files given without one,
# escape => 1 to escape " and \ in file names.
sub multipart_body {
    my ($parts, %o) = @_;
    my $bd  = $o{boundary} // '----creor-test-' . int(rand 1e9);
    my $eol = $o{eol} // "\r\n";
    my $body = '';
    for my $p (@$parts) {
        my ($name, $value, $filename, $type) = @$p;
        $type //= $o{file_type} if defined $filename;
        $filename =~ s/(["\\])/\\$1/g if $o{escape} && defined $filename;
        $body .= "--$bd$eol"
               . qq{Content-Disposition: form-data; name="$name"}
               . (defined $filename ? qq{; filename="$filename"} : '')
               . (defined $type ? "${eol}Content-Type: $type" : '')
               . "$eol$eol$value$eol";
    }
    return ($body . "--$bd--$eol", "multipart/form-data; boundary=$bd");
}

# project_agent($t, $token, %o): a project and an agent in it, made with
# $token (the project with the CLI when org => ORG is given); project =>,
# name => and model => name them, check => NAME asserts the agent's 201,
# check_project => NAME the project's.
# Returns (project id, agent id), undef for one not made.
sub project_agent {
    my ($t, $token, %o) = @_;
    my $pname = $o{project} // 'p';
    my $proj;
    if (defined $o{org}) {
        $proj = $t->cli('project', 'create', '--org', $o{org}, $pname);
    } else {
        my $r = $t->req(POST => '/v1/projects', token => $token,
                        json => { name => $pname });
        Test::More::is($r->{status}, 201, $o{check_project})
            or Test::More::diag($r->{body})
            if defined $o{check_project};
        $proj = $r->{json}{id};
    }
    my $r = $t->req(POST => '/v1/agents', token => $token,
                    headers => { 'X-Project-Id' => $proj },
                    json => { name => $o{name} // 'a',
                              model => $o{model} // 'x/y' });
    Test::More::is($r->{status}, 201, $o{check})
        or Test::More::diag($r->{body})
        if defined $o{check};
    return ($proj, $r->{json}{id});
}

# a file's bytes, or undef
sub slurp { CreorTest::_slurp($_[0]) }

# write a file's bytes (dies on failure)
sub spew { CreorTest::_write_file(@_) }

# a TCP port on 127.0.0.1 free at the time of the call
sub free_port { CreorTest::_free_port() }

1;
