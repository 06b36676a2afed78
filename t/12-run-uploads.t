# Attachments of a run that is not created leave nothing on disk.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;

my $t = CreorTest->new(http_config => 'client_max_body_size 20m;');
my $b = $t->bootstrap;
my $files = $t->store . '/files';

sub form {
    my (%fields) = @_;
    my $bd = 'XyZzY' . int(rand 1e9);
    my $body = '';
    for my $f (@{ $fields{parts} }) {
        $body .= "--$bd\r\nContent-Disposition: form-data; name=\"$f->[0]\""
               . (defined $f->[2] ? "; filename=\"$f->[2]\"" : '')
               . "\r\n\r\n$f->[1]\r\n";
    }
    $body .= "--$bd--\r\n";
    return (body => $body,
            headers => { 'Content-Type' => "multipart/form-data; boundary=$bd" });
}

my @cases = (
    [ 'unknown app', [ [appId => 'agent_00000000000000000000000000'],
                       [files => 'abc', 'a.txt'], [files => 'def', 'b.txt'] ],
      404, 'NOT_FOUND' ],
    [ 'bad inputs after the files', [ [files => 'abc', 'a.txt'],
                                      [inputs => '{nope'] ],
      400, 'INVALID_JSON' ],
    [ 'eleventh file', [ map { [files => "f$_", "f$_.txt"] } 1 .. 11 ],
      413, 'TOO_MANY_FILES' ],
);

for my $c (@cases) {
    my ($name, $parts, $status, $code) = @$c;
    my $r = $t->req('POST', '/v1/runs', token => $b->{token},
                    form(parts => $parts));
    is($r->{status}, $status, "$name: $status");
    is($r->{json}{error}{code}, $code, "$name: $code");
}

opendir(my $dh, $files) or die "opendir $files: $!";
my @left = grep { !/^\.\.?$/ } readdir $dh;
is_deeply(\@left, [], 'no upload left in the files directory');

$t->finish;
done_testing;
