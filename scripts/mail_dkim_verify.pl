#!/usr/bin/perl
# Reference verifier for scripts/auth_differential.py: Mail::DKIM (Debian's
# libmail-dkim-perl, the library amavisd-new uses) verifies the DKIM signatures and the
# ARC chain of each message file, with keys from a file instead of the DNS.
#
# Usage: perl scripts/mail_dkim_verify.pl KEYS FILE...
#   KEYS: one key record a line, "NAME<TAB>TXT" (NAME like s1._domainkey.example.test);
#         any other name is NXDOMAIN.
# Output, one line per FILE: FILE<TAB>ARC result<TAB>ARC detail<TAB>DKIM results
# (space-separated, in header order; "-" when unsigned). The bytes of FILE are fed
# unchanged: no line-end conversion.
#
#        perl scripts/mail_dkim_verify.pl --sign KEYFILE DOMAIN SELECTOR CANON FILE
# prints the DKIM-Signature field (rsa-sha256, c=CANON, From/To/Subject/Date signed)
# Mail::DKIM makes for the bytes of FILE.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::ARC::Verifier;
use Net::DNS;

use Mail::DKIM::Signer;

if (@ARGV && $ARGV[0] eq '--sign') {
    my (undef, $key, $domain, $selector, $canon, $path) = @ARGV;
    die "usage: $0 --sign KEYFILE DOMAIN SELECTOR CANON FILE\n" unless defined $path;
    my $signer = Mail::DKIM::Signer->new(
        Algorithm => 'rsa-sha256', Method => $canon, Domain => $domain,
        Selector => $selector, KeyFile => $key, Headers => 'from:to:subject:date');
    $signer->PRINT(slurp($path));
    $signer->CLOSE;
    print $signer->signature->as_string, "\n";
    exit 0;
}

my ($keyfile, @files) = @ARGV;
die "usage: $0 KEYS FILE...\n" unless defined $keyfile && @files;

my %keys;
open my $kf, '<', $keyfile or die "cannot read $keyfile: $!\n";
while (my $line = <$kf>) {
    chomp $line;
    my ($name, $txt) = split /\t/, $line, 2;
    $keys{lc $name} = $txt if defined $txt;
}
close $kf;

{
    no warnings 'redefine';
    *Mail::DKIM::DNS::query = sub {
        my ($name, $type) = @_;
        my $txt = $keys{lc $name};
        if (defined $txt && uc $type eq 'TXT') {
            $@ = 'NOERROR';
            my @chunks = unpack '(A255)*', $txt;
            return (Net::DNS::RR->new(name => $name, type => 'TXT', txtdata => \@chunks));
        }
        $@ = 'NXDOMAIN';
        return;
    };
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<:raw', $path or die "cannot read $path: $!\n";
    local $/;
    my $data = <$fh>;
    close $fh;
    return $data;
}

for my $path (@files) {
    my $data = slurp($path);
    my $arc = Mail::DKIM::ARC::Verifier->new();
    $arc->PRINT($data);
    $arc->CLOSE;
    my $detail = $arc->result_detail // '';
    $detail =~ s/[\t\r\n]+/ /g;
    my $dkim = Mail::DKIM::Verifier->new();
    $dkim->PRINT($data);
    $dkim->CLOSE;
    my @results = map { $_->result } $dkim->signatures;
    printf "%s\t%s\t%s\t%s\n", $path, $arc->result, $detail, (@results ? "@results" : '-');
}
