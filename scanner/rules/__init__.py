"""SpamAssassin-compatible rule engine and the project's own default rule set.

Read ``.cf`` files (:mod:`~scanner.rules.cfparser`), translate Perl regexes
(:mod:`~scanner.rules.perlre`), compile (:mod:`~scanner.rules.compiler`), build a
message's views (:mod:`~scanner.rules.views`) and evaluate (:mod:`~scanner.rules.engine`).
The shipped rules live in ``scanner/rules/cf/``; amavis's BAD-HEADER checks are in
:mod:`~scanner.rules.badheader`. The ``rules`` check (:mod:`scanner.checks.rules`) wires
it into the pipeline.
"""
