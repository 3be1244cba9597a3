"""Options as flowsight's configuration declares and reads them: the field
types and their converters (:mod:`~flowsight.options.fields`: ``Opt`` and
the checks every option goes through) and where each field of a TOML
document is written (:mod:`~flowsight.options.locate`). Below both the
configuration (:mod:`flowsight.config`, which reads documents) and the
extension points that declare their options next to their classes
(receivers in :mod:`flowsight.alerting.notifiers`, detectors in
:mod:`flowsight.detectors`), so neither imports the other to declare one."""
