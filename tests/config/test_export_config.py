"""``[export.otlp]`` in flowsight.toml: read with its defaults; an endpoint
that is no URL, an unknown field and a receiver named like an exporter are
refused, naming the line and the field."""

from __future__ import annotations

import pytest

from flowsight.config import ConfigFileError, parse_config
from flowsight.config.otlp import OtlpExport


def test_export_otlp_is_read_with_its_defaults() -> None:
    assert parse_config("").otlp_export is None
    cfg = parse_config('[export.otlp]\nendpoint = "http://collector:4318"\n')
    assert cfg.otlp_export == OtlpExport("http://collector:4318", {}, 10.0, True, 5.0)
    cfg = parse_config(
        '[export.otlp]\nendpoint = "https://c:4318/"\nheaders = { Authorization = "Bearer x" }\n'
        'timeout = "3s"\nlogs = false\ndelay = "0s"\n'
    )
    assert cfg.otlp_export == OtlpExport("https://c:4318/", {"Authorization": "Bearer x"}, 3.0, False, 0.0)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ('[export.otlp]\nendpoint = "collector:4318"\n', ":2: export.otlp.endpoint: expected an http:// or https://"),
        ("[export.otlp]\ntimeout = 3\n", "export.otlp.endpoint: missing; this field is required"),
        ('[export.otlp]\nendpoint = "http://c"\nbatch = 5\n', "export.otlp.batch"),
        ('[export.jaeger]\nendpoint = "http://c"\n', "export.jaeger"),
        (
            '[[alerting.receivers]]\nname = "export.me"\nkind = "log"\n',
            "a receiver's name may not begin with 'export.'",
        ),
        (
            '[[alerting.receivers]]\nname = "Export.Ops"\nkind = "log"\n',
            "a receiver's name may not begin with 'export.'",
        ),
    ],
)
def test_a_wrong_export_is_refused_naming_where(text: str, said: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config(text)
    assert said in str(info.value)
