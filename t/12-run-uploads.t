# Attachments of a run that is not created leave nothing on disk; a
# download is an attachment, with a safe file name, never sniffed.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use Test::More;
use CreorTest;
use CreorApi;

my $t = CreorTest->new(http_config => 'client_max_body_size 20m;');
my $b = $t->bootstrap;
my $files = $t->store . '/files';

sub form {
    my ($body, $ct) = multipart_body($_[0], boundary => 'XyZzY' . int(rand 1e9),
                                     escape => 1);
    return (body => $body, headers => { 'Content-Type' => $ct });
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
                    form($parts));
    is($r->{status}, $status, "$name: $status");
    is($r->{json}{error}{code}, $code, "$name: $code");
}

opendir(my $dh, $files) or die "opendir $files: $!";
my @left = grep { !/^\.\.?$/ } readdir $dh;
is_deeply(\@left, [], 'no upload left in the files directory');

# Downloads: [name, type, expected Content-Disposition]
{
    my (undef, $app) = project_agent($t, $b->{token}, org => $b->{org},
                                     project => 'Up', name => 'up',
                                     model => 'p/m', check => 'downloads: agent');
    $app //= 'none';

    my @files = (
        ['page.html', 'text/html',
         q{attachment; filename="page.html"; filename*=UTF-8''page.html}],
        ['a "quoted"; name.txt', 'text/plain',
         q{attachment; filename="a _quoted__ name.txt"; }
         . q{filename*=UTF-8''a%20%22quoted%22%3B%20name.txt}],
        ["r\xc3\xa9sum\xc3\xa9.pdf", 'application/pdf',
         q{attachment; filename="r__sum__.pdf"; }
         . q{filename*=UTF-8''r%C3%A9sum%C3%A9.pdf}],
        ['../../etc/pass\\wd', 'image/svg+xml',
         q{attachment; filename=".._.._etc_pass_wd"; }
         . q{filename*=UTF-8''..%2F..%2Fetc%2Fpass%5Cwd}],
    );
    my @parts = map { [files => "<b>file $_</b>", @{$files[$_]}[0, 1]] }
                0 .. $#files;
    my $r = $t->req(POST => "/v1/runs", token => $b->{token},
                 form([[appId => $app], @parts]));
    is($r->{status}, 202, 'downloads: run with files') or diag($r->{body});
    my $run = $r->{json}{id} // 'none';
    $r = $t->req(GET => "/v1/runs/$run", token => $b->{token});
    my @stored = @{$r->{json}{files} // []};
    is(scalar @stored, scalar @files, 'downloads: files on the run');

    for my $i (0 .. $#files) {
        my ($name, $type, $disp) = @{$files[$i]};
        my $d = $t->req(GET => "/v1/runs/$run/files/"
                               . ($stored[$i]{id} // 'none'),
                        token => $b->{token});
        is($d->{status}, 200, "download $i: 200");
        is($d->{body}, "<b>file $i</b>", "download $i: bytes");
        is($d->{headers}{'x-content-type-options'}, 'nosniff',
           "download $i ($type): nosniff");
        is($d->{headers}{'content-disposition'}, $disp,
           "download $i: attachment with a safe name");
    }
}

$t->finish;
done_testing;
