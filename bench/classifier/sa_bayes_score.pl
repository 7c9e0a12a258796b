#!/usr/bin/perl
# Bayes-only scoring with SpamAssassin, for bench/classifier/run.py.
#
# usage: sa_bayes_score.pl RULES_DIR PREFS_FILE DBPATH LIST_FILE
# Prints "<bayes probability>\t<file>" for every file named in LIST_FILE, with the full
# precision of SpamAssassin's Bayes score (the _BAYES_ tag rounds to 4 decimals), or
# "nan" when SpamAssassin produced no Bayes score for the message.
use strict;
use warnings;
use Mail::SpamAssassin;

my ($rules, $prefs, $dbpath, $list) = @ARGV;
die "usage: $0 RULES_DIR PREFS_FILE DBPATH LIST_FILE\n" unless defined $list;

my $sa = Mail::SpamAssassin->new({
    rules_filename      => $rules,
    site_rules_filename => $rules,
    userprefs_filename  => $prefs,
    local_tests_only    => 1,
    dont_copy_prefs     => 1,
    post_config_text    => "bayes_path $dbpath/bayes\n",
});
$sa->init(1);

open(my $names, '<', $list) or die "$list: $!\n";
$| = 1;
while (my $file = <$names>) {
    chomp $file;
    next unless length $file;
    open(my $fh, '<:raw', $file) or die "$file: $!\n";
    local $/;
    my $text = <$fh>;
    close $fh;
    my $msg = $sa->parse($text);
    my $status = $sa->check($msg);
    my $score = $status->{bayes_score};
    printf "%s\t%s\n", (defined $score ? sprintf('%.17g', $score) : 'nan'), $file;
    $status->finish();
    $msg->finish();
}
