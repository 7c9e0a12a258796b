require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];

# The user moved this message out of Junk: scanner learns it as ham, except when it
# went to the trash (deleting spam is not a verdict).
if environment :matches "imap.mailbox" "*" {
  set "mailbox" "${1}";
}
if string "${mailbox}" "Trash" {
  stop;
}
pipe :copy "scanner-learn" ["--ham"];
