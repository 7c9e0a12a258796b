require ["vnd.dovecot.pipe", "copy", "imapsieve"];

# The user put this message into Junk: scanner learns it as spam.
pipe :copy "scanner-learn" ["--spam"];
