#!/usr/bin/perl
# Usage metering (SPEC 9.3, 10): runs add their tokens when they end
# (completed, failed, cancelled, cancelled with their deleted agent), records
# of other days come from `creor usage add`; GET /v1/usage is compared with
# the same records aggregated here, for every group_by and several ranges,
# project-bound, per-app and X-Project-Id views, another organization, and
# hostile query values.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use POSIX qw(strftime);
use Time::HiRes qw(sleep time);
use CreorTest;
use CreorApi;
use CreorExecutor;


my $ex = CreorExecutor->new;
my $t  = CreorTest->new(
    http_config   => 'creor_executor /_exec;',
    server_config => $ex->location('proxy_read_timeout 30s;'),
);
api_use($t);

###########################################################################
# Helpers

sub key_id { my ($tok) = @_; $tok =~ /^ck_([0-9a-z]{26})_/ ? "key_$1" : '' }

sub day_of { my ($ms) = @_; strftime('%Y-%m-%d', gmtime($ms)) }

###########################################################################
# Tenancy: two projects, keys of several kinds, three agents

my $b     = $t->bootstrap;
my $ADMIN = $b->{token};
my $ORG   = $b->{org};

my %P = map {
    my $r = api(POST => '/v1/projects', token => $ADMIN, json => { name => $_ });
    ($_ => $r->{json}{id});
} qw(one two);

my %AG;
for ([alpha => one => 'demo/alpha'], [beta => two => 'demo/beta'],
     [gamma => one => 'demo/alpha'], [doomed => two => 'demo/beta'])
{
    my ($name, $proj, $model) = @$_;
    my $r = api(POST => '/v1/agents', token => $ADMIN,
                headers => { 'X-Project-Id' => $P{$proj} },
                json => { name => $name, model => $model });
    is($r->{status}, 201, "agent $name") or diag($r->{body});
    $AG{$name} = { id => $r->{json}{id}, project => $P{$proj},
                   model => $model };
}

my $USER  = $t->cli(qw(key create --org), $ORG, qw(--role user));
my $BOUND = $t->cli(qw(key create --org), $ORG, '--project', $P{one},
                    qw(--role user));
my $RO    = $t->cli(qw(key create --org), $ORG, qw(--role read_only));
my $APP   = $t->cli(qw(key create --org), $ORG, '--app', $AG{beta}{id},
                    qw(--role user));

my $b2     = $t->bootstrap;
my $OTHER  = $b2->{token};

###########################################################################
# Runs: what each adds, as the table the answers are checked against

my @RUNS = (
    # token,  agent,   inputs,                                    chatModelId
    [$USER,  'alpha', { script => 'long', steps => 2, delay => 0.01 }],
    [$USER,  'beta',  { script => 'long', steps => 5, delay => 0.01 }],
    [$BOUND, 'gamma', { script => 'long', steps => 1, delay => 0.01 },
     'demo/gamma'],
    [$ADMIN, 'alpha', { script => 'ok', delay => 0.01 }],
    [$APP,   'beta',  { script => 'long', steps => 4, delay => 0.01 }],
    [$USER,  'beta',  { script => 'executor_fail', delay => 0.01 }],
);

my @REC;    # { date, project, key, agent, model, requests, runs, in, out }

for my $run (@RUNS) {
    my ($tok, $agent, $inputs, $chat) = @$run;
    my $r = api(POST => '/v1/runs', token => $tok,
                json => { agentId => $AG{$agent}{id}, inputs => $inputs,
                          $chat ? (chatModelId => $chat) : () });
    is($r->{status}, 202, "run of $agent") or diag($r->{body});
    $run->[4] = $r->{json}{id};
}

# a cancelled run, and one cancelled by its agent's deletion
my $r = api(POST => '/v1/runs', token => $USER,
            json => { agentId => $AG{beta}{id},
                      inputs => { script => 'hang', hang => 20 } });
my $HANG = $r->{json}{id};
$r = api(POST => '/v1/runs', token => $ADMIN,
         json => { agentId => $AG{doomed}{id},
                    inputs => { script => 'input' } });
my $WAIT = $r->{json}{id};

for my $try (1 .. 200) {
    my $s = api(GET => "/v1/runs/$HANG", token => $USER)->{json}{status} // '';
    my $w = api(GET => "/v1/runs/$WAIT", token => $ADMIN)->{json}{status} // '';
    last if $s eq 'running' && $w eq 'awaiting_input';
    sleep 0.05;
}
is(api(POST => "/v1/runs/$HANG/cancel", token => $USER)->{status}, 200, 'cancel');
is(api(DELETE => "/v1/agents/$AG{doomed}{id}", token => $ADMIN)->{status}, 200,
   'agent deleted with its waiting run');

push @RUNS, [$USER, 'beta', {}, undef, $HANG], [$ADMIN, 'doomed', {}, undef,
                                                $WAIT];

my %STATUS;
for my $run (@RUNS) {
    my ($tok, $agent, $inputs, $chat, $id) = @$run;
    my $o = wait_run($id, undef, 20, token => $ADMIN);
    $STATUS{$o->{status} // 'none'}++;
    my ($ms) = ($o->{completedAt} // '') =~ /^(\d{4}-\d\d-\d\d)T/;
    push @REC, { date => $ms // 'none', project => $AG{$agent}{project},
                 key => key_id($tok), agent => $AG{$agent}{id},
                 model => $chat // $AG{$agent}{model}, requests => 0,
                 runs => 1, in => $o->{usage}{inputTokens} // -1,
                 out => $o->{usage}{outputTokens} // -1 };
}
is_deeply(\%STATUS, { completed => 5, failed => 1, cancelled => 2 },
          'runs ended: 5 completed, 1 failed, 2 cancelled');

# completed runs carry the executor's usage; the others count as runs only
is_deeply([map { [$_->{in}, $_->{out}] } @REC],
          [[12, 2], [12, 5], [12, 1], [12, 3], [12, 4], [0, 0], [0, 0],
           [0, 0]],
          'usage of each run');

###########################################################################
# Records of other days, through the command line

my $TODAY = day_of(time);
my $D3    = day_of(time - 3 * 86400);
my $D40   = day_of(time - 40 * 86400);
my $D400  = day_of(time - 400 * 86400);

my @CLI = (
    { date => $D3, project => $P{two}, key => key_id($USER),
      agent => $AG{beta}{id}, model => 'demo/beta', requests => 7, runs => 0,
      in => 100, out => 50 },
    { date => $D3, project => $P{one}, key => key_id($BOUND), agent => '',
      model => 'openai/gpt-4o:mini', requests => 3, runs => 0, in => 30,
      out => 9 },
    { date => $D40, project => '', key => key_id($ADMIN), agent => '',
      model => 'demo/alpha', requests => 1, runs => 0, in => 1000,
      out => 1 },
    { date => $D400, project => $P{one}, key => key_id($ADMIN), agent => '',
      model => 'demo/alpha', requests => 2, runs => 0, in => 5, out => 5 },
);

for my $c (@CLI) {
    my @o = ('--org', $ORG, '--date', $c->{date}, '--model', $c->{model},
             '--requests', $c->{requests}, '--input', $c->{in},
             '--output', $c->{out});
    push @o, '--project', $c->{project} if $c->{project};
    push @o, '--key', $c->{key} if $c->{key};
    push @o, '--agent', $c->{agent} if $c->{agent};
    like($t->cli('usage', 'add', @o), qr/^u:\Q$ORG\E:/,
         "usage add $c->{date}");
    push @REC, $c;
}

# another organization's usage, on a day the first one has usage too
$t->cli(qw(usage add --org), $b2->{org}, '--date', $D3, qw(--model x/y
        --requests 5 --input 500 --output 500));

# the command line refuses what it cannot store
for my $bad (['--date', '2026-02-30'], ['--date', '2026-1-01'],
             ['--input', '-5'], ['--runs', '1x'], ['--agent', 'agent_x'],
             ['--key', 'proj_01m8s47rrvf3bk8kpmzxf2j5pq'])
{
    my ($rc) = $t->cli_status('usage', 'add', '--org', $ORG, @$bad);
    isnt($rc, 0, "creor usage add @$bad: refused");
}
my ($rc) = $t->cli_status(qw(usage add --org org_01m8s47rrvf3bk8kpmzxf2j5pq));
isnt($rc, 0, 'creor usage add: unknown organization refused');

###########################################################################
# The answers, against the table

my %FIELD = (day => 'date', model => 'model', key => 'key_id',
             agent => 'agent_id');
my %DIM   = (day => 'date', model => 'model', key => 'key', agent => 'agent');

sub counts {
    my ($x) = @_;
    return { requests => $x->{requests}, runs => $x->{runs},
             input_tokens => $x->{in}, output_tokens => $x->{out},
             total_tokens => $x->{in} + $x->{out} };
}

sub expect {
    my (%o) = @_;
    my %g;
    for my $rec (@REC) {
        next if $rec->{date} lt $o{start} || $rec->{date} gt $o{end};
        next if $o{project} && $rec->{project} ne $o{project};
        next if $o{agent} && $rec->{agent} ne $o{agent};
        my $name = $rec->{$DIM{$o{by}}};
        my $acc = $g{$name} //= { requests => 0, runs => 0, in => 0,
                                  out => 0 };
        $acc->{$_} += $rec->{$_} for qw(requests runs in out);
    }
    my $tot = { requests => 0, runs => 0, in => 0, out => 0 };
    my @data;
    for my $name (sort keys %g) {
        $tot->{$_} += $g{$name}{$_} for qw(requests runs in out);
        push @data, { $FIELD{$o{by}} => $name eq '' ? undef : $name,
                      %{counts($g{$name})} };
    }
    return { object => 'usage', group_by => $o{by}, start => $o{start},
             end => $o{end}, data => \@data, totals => counts($tot) };
}

sub sum_ok {
    my ($j, $name) = @_;
    my %s = map { $_ => 0 } qw(requests runs input_tokens output_tokens
                               total_tokens);
    for my $row (@{$j->{data} // []}) { $s{$_} += $row->{$_} for keys %s }
    is_deeply(\%s, $j->{totals}, "$name: totals are the sum of the groups");
}

my $ALL_START = day_of(time - 365 * 86400);
my $D30       = day_of(time - 29 * 86400);
my $DMID      = day_of(time - 20 * 86400);

my @CASES = (
    # name, token, query, expectation, headers
    ['default: last 30 days by day', $ADMIN, '',
     { by => 'day', start => $D30, end => $TODAY }],
    ['read_only key', $RO, '',
     { by => 'day', start => $D30, end => $TODAY }],
    (map {
        ["a year by $_", $USER, "?group_by=$_&start=$ALL_START&end=$TODAY",
         { by => $_, start => $ALL_START, end => $TODAY }]
     } qw(day model key agent)),
    ['one past day', $ADMIN, "?start=$D3&end=$D3&group_by=model",
     { by => 'model', start => $D3, end => $D3 }],
    ['times select their days', $ADMIN,
     "?start=${D3}T10:00:00Z&end=${TODAY}T00:00:00.5%2B00:00&group_by=agent",
     { by => 'agent', start => $D3, end => $TODAY }],
    ['only start: until now', $ADMIN, "?start=$D40",
     { by => 'day', start => $D40, end => $TODAY }],
    ['only end: 30 days before it', $ADMIN, "?end=$D3",
     { by => 'day', start => day_of(time - 32 * 86400), end => $D3 }],
    ['a range with nothing', $ADMIN, "?start=$DMID&end=$DMID",
     { by => 'day', start => $DMID, end => $DMID }],
    ['project-bound key: its project', $BOUND,
     "?start=$ALL_START&group_by=model",
     { by => 'model', start => $ALL_START, end => $TODAY,
       project => $P{one} }],
    ['X-Project-Id narrows an organization key', $ADMIN,
     "?start=$ALL_START&group_by=agent",
     { by => 'agent', start => $ALL_START, end => $TODAY,
       project => $P{two} }, { 'X-Project-Id' => $P{two} }],
    ['per-app key: its app', $APP, "?start=$ALL_START&group_by=key",
     { by => 'key', start => $ALL_START, end => $TODAY,
       agent => $AG{beta}{id} }],
);

for my $c (@CASES) {
    my ($name, $tok, $q, $exp, $hdr) = @$c;
    my $res = api(GET => "/v1/usage$q", token => $tok, $hdr ? (headers => $hdr) : ());
    is($res->{status}, 200, "$name: 200") or diag($res->{body});
    is_deeply($res->{json}, expect(%$exp), "$name: groups and totals")
        or diag(explain($res->{json}), explain(expect(%$exp)));
    sum_ok($res->{json}, $name);
}

# the year-wide answer by key has every key that was used, once
$r = api(GET => "/v1/usage?group_by=key&start=$ALL_START", token => $ADMIN);
is_deeply([sort map { $_->{key_id} } @{$r->{json}{data}}],
          [sort map { key_id($_) } $ADMIN, $USER, $BOUND, $APP],
          'by key: the four keys that were used');
is($r->{json}{totals}{runs}, 8, 'every run counted once');

# another organization sees its own usage only, and this one never sees it
$r = api(GET => "/v1/usage?group_by=model&start=$ALL_START", token => $OTHER);
is_deeply($r->{json}{data},
          [{ model => 'x/y', requests => 5, runs => 0, input_tokens => 500,
             output_tokens => 500, total_tokens => 1000 }],
          'another organization: its usage only');
$r = api(GET => "/v1/usage?group_by=model&start=$ALL_START", token => $ADMIN);
ok(!grep({ ($_->{model} // '') eq 'x/y' } @{$r->{json}{data}}),
   'the other organization\'s usage is not ours');

# a project of another organization is not a filter, it is not found
$r = api(GET => '/v1/usage', token => $OTHER,
         headers => { 'X-Project-Id' => $P{one} });
err_is($r, 404, 'NOT_FOUND', 'projectId', 'X-Project-Id of another org');
$r = api(GET => '/v1/usage', token => $BOUND,
         headers => { 'X-Project-Id' => $P{two} });
err_is($r, 403, 'PERMISSION_DENIED', 'projectId',
       'bound key with another project');

# counts survive a restart: they are in the store, not in a worker
$t->reload;
$r = api(GET => "/v1/usage?group_by=key&start=$ALL_START", token => $ADMIN);
is($r->{json}{totals}{runs}, 8, 'after a reload: still every run once');

###########################################################################
# Hostile and malformed queries: 400 envelopes naming the parameter

my @BAD = (
    ['start=yesterday',                     'start'],
    ['start=2026-02-30',                    'start'],
    ['start=2026-13-01',                    'start'],
    ['start=2026-00-10',                    'start'],
    ['start=2026-1-01',                     'start'],
    ['start=20260101',                      'start'],
    ['start=',                              'start'],
    ['end=2026-01-01T25:00:00Z',            'end'],
    ['end=2026-01-01T10:60:00Z',            'end'],
    ['end=2026-01-01T10:00:00',             'end'],
    ['end=2026-01-01T10:00:00%2B24:00',     'end'],
    ['end=2026-01-01T10:00:00.Z',           'end'],
    ['end=2026-01-01T10:00:00Zjunk',        'end'],
    ['end=2026-01-01%00',                   'end',  'VALIDATION_ERROR', 'nul'],
    ['end=' . ('9' x 5000),                 'end'],
    ['end=%E2%80%AE2026-01-01',             'end'],
    ['group_by=week',                       'group_by'],
    ['group_by=',                           'group_by'],
    ['group_by=DAY',                        'group_by'],
    ["start=$TODAY&end=$D3",                'start'],
    ["start=${TODAY}T10:00:00Z&end=${TODAY}T09:59:59Z", 'start'],
    ["start=$D400&end=$TODAY",              'end'],
    ['start=0001-01-01',                    'end'],
    ['start=2026-01-01&start=2026-01-02',   'start'],
    ['limit=10',                            'limit', 'UNKNOWN_PARAMETER'],
);

for my $c (@BAD) {
    my ($q, $param, $code, $nul) = @$c;
    my $res = api(GET => "/v1/usage?$q", token => $ADMIN);
    if ($nul) {
        # a NUL byte is refused before the parameter is looked at
        is($res->{status}, 400, "?$q: 400");
        is($res->{json}{error}{code}, 'VALIDATION_ERROR', "?$q: code");
        next;
    }
    err_is($res, 400, $code // 'VALIDATION_ERROR', $param // NO_PARAM,
           '?' . substr($q, 0, 60));
}

err_is(api(GET => '/v1/usage', token => undef), 401, 'AUTH_MISSING_HEADER', NO_PARAM,
       'no credentials');
$r = api(POST => '/v1/usage', token => $ADMIN, json => {});
is($r->{status}, 405, 'POST /v1/usage: 405');
like($r->{headers}{allow} // '', qr/GET/, '405 names GET');

$t->no_alerts_ok;
$t->finish;
$ex->stop;
done_testing;
