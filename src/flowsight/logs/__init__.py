"""Logs as flowsight reads, keeps and judges them; no I/O.

- :mod:`~flowsight.logs.entries`: ``LogLevel``, ``LogEntry``, the level words;
- :mod:`~flowsight.logs.parse`: one line of any common format into an entry;
- :mod:`~flowsight.logs.records`: an entry as stored and as sent over HTTP;
- :mod:`~flowsight.logs.templates`: masking and the Drain-style template tree;
- :mod:`~flowsight.logs.analyzer`: templates and counts over a stream of entries;
- :mod:`~flowsight.logs.alert_rules` and :mod:`~flowsight.logs.absence`: the
  kinds of log alert rule (``LogAlertRule``; a line that should come and did not);
- :mod:`~flowsight.logs.ruleset`: the rules of a configuration, compiled together;
- :mod:`~flowsight.logs.match`: the multi-pattern matcher those rules run on
  (a literal prefilter, or hyperscan when it is installed).
"""
