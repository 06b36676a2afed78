#!/bin/sh
# Every benchmark of the repository, one after the other, and one table of
# their figures: what was measured, the figure, and what it is compared to
# (each ratio comes from one run of one nginx).  With --readme, the table
# also replaces the generated part of README.md's "Performance" section.
#
#   bench/all.sh [--readme]          (make bench)
#
# ROUNDS, SECS and CONNS pass to the wrk benchmarks (5, 5, 32), IDEM_ROUNDS
# to the idempotent one (3), SSE_LINES and SSE_IDLE to bench/sse.pl (200,
# 2000).  The machine should be otherwise idle: figures are medians.

set -e

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

rounds=${ROUNDS:-5}
secs=${SECS:-5}
conns=${CONNS:-32}
out=$(mktemp -d /tmp/creor-bench-all.XXXXXX)
trap 'rm -rf "$out"' EXIT

run() {
    name=$1
    shift
    echo "== $name: $*" >&2
    "$@" >"$out/$name" 2>"$out/$name.err" || {
        cat "$out/$name.err" >&2
        echo "bench/all.sh: $name failed" >&2
        exit 1
    }
    cat "$out/$name" >&2
}

run get bench/run.sh "$rounds" "$secs" "$conns"
run idempotent bench/idempotent.sh "${IDEM_ROUNDS:-3}" 4 16
run sse perl bench/sse.pl 40 "${SSE_LINES:-200}" "${SSE_IDLE:-2000}"
run sse-builtin env SSE_BUILTIN=1 perl bench/sse.pl 40 "${SSE_LINES:-200}" 0
for extra in bench/chat.sh; do
    [ -x "$extra" ] && run "$(basename "$extra" .sh)" "$extra"
done

# one row a figure: "what | figure | compared to"
perl -e '
    my ($dir) = @ARGV;
    sub slurp { open(my $f, "<", "$dir/$_[0]") or return ""; local $/; <$f> }
    my @rows;

    my $get = slurp("get");
    my ($plain) = $get =~ /plain nginx return 200:\s+median\s+(\d+)/;
    for (["off", "authenticated `GET /v1/agents/:id`, limits off"],
         ["on", "the same, a rate limit counted on every request"]) {
        my ($rps, $ratio) =
            $get =~ /limits $_->[0]:\s+median\s+(\d+) req\/s .* ratio ([\d.]+)/;
        push @rows, [$_->[1], sprintf("%.2f (%.1fk req/s)", $ratio, $rps / 1000),
                     sprintf("`return 200` of the same bytes, same nginx "
                             . "(%.1fk req/s)", $plain / 1000)] if $ratio;
    }

    my $idem = slurp("idempotent");
    my ($on) = $idem =~ /sync=on\s+idempotent creates: median (\d+)/;
    my ($off) = $idem =~ /sync=off idempotent creates: median (\d+)/;
    push @rows, ["idempotent `POST /v1/agents`, `sync=on`",
                 sprintf("%d creates/s (%.2f of sync=off)", $on, $on / $off),
                 "the same with `sync=off`"] if $on && $off;
    push @rows, ["idempotent `POST /v1/agents`, `sync=off`",
                 "$off creates/s", "-"] if $off;

    my $sse = slurp("sse");
    if (my ($p50, $p99) = $sse =~ /p50 ([\d.]+) ms, p99 ([\d.]+) ms/) {
        push @rows, ["event fan-out, executor line to SSE subscriber "
                     . "(40 subscribers, both workers)",
                     "p50 $p50 ms, p99 $p99 ms", "-"];
    }
    if (my ($p50, $p99) = slurp("sse-builtin") =~ /p50 ([\d.]+) ms, p99 ([\d.]+) ms/) {
        push @rows, ["run tokens, provider delta to SSE subscriber "
                     . "(built-in executor, 40 subscribers, both workers)",
                     "p50 $p50 ms, p99 $p99 ms", "-"];
    }
    if (my ($n, $kb) = $sse =~ /capacity: (\d+) idle subscribers held.* ([\d.]+) KB a subscriber/) {
        push @rows, ["idle SSE subscribers", "$kb KB of worker memory each",
                     "measured with $n subscribers"];
    }

    for my $line (split /\n/, slurp("chat")) {
        push @rows, [split / \| /, $1] if $line =~ /^ROW (.*)$/;
    }

    print "| what | figure | compared to |\n| --- | --- | --- |\n";
    print "| ", join(" | ", @$_), " |\n" for @rows;
' "$out" > "$out/table"

cat "$out/table"

if [ "$1" = "--readme" ]; then
    TABLE="$out/table" perl -0pi -e '
        my $t = do { local $/; open(my $f, "<", $ENV{TABLE}) or die; <$f> };
        s/(<!-- bench:begin -->\n).*?(<!-- bench:end -->)/$1$t$2/s
            or die "README.md has no bench markers\n";
    ' README.md
    echo "README.md: Performance table updated" >&2
fi
