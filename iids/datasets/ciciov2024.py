"""CICIoV2024: CAN-bus frames of a 2019 Ford car, benign and under attack.

Source: E. C. P. Neto et al., "CICIoV2024: Advancing realistic IoV security research",
Canadian Institute for Cybersecurity, University of New Brunswick, 2024. Each row is one CAN
frame: the arbitration `ID` and the eight payload bytes `DATA_0..DATA_7`. The dataset is
published in decimal, hexadecimal and binary encodings of the same values; all three decode
here to the same typed rows.

`label`, `category` and `specific_class` are three views of one target and never features.
"""

from __future__ import annotations

from iids.datasets.base import Column, DatasetAdapter, Kind, Task

ENCODINGS = {"decimal": 10, "hex": 16, "binary": 2}

_SPECIFIC = ("BENIGN", "DoS", "GAS", "RPM", "SPEED", "STEERING_WHEEL")


def ciciov2024(encoding: str = "decimal") -> DatasetAdapter:
    """The CICIoV2024 adapter for one encoding (`decimal`, `hex` or `binary`).

    Raises:
        ValueError: an unknown encoding.
    """
    if encoding not in ENCODINGS:
        raise ValueError(
            f"CICIoV2024 encoding must be one of {sorted(ENCODINGS)}, got {encoding!r}"
        )
    base = ENCODINGS[encoding]
    payload = [Column(f"DATA_{i}", Kind.NUMERIC, base, integer=True) for i in range(8)]
    columns = (
        Column("ID", Kind.NUMERIC, base, integer=True),
        *payload,
        Column("label", Kind.LABEL),
        Column("category", Kind.LABEL),
        Column("specific_class", Kind.LABEL),
    )
    tasks = {
        "binary": Task("binary", "label", ("BENIGN", "ATTACK")),
        "category": Task("category", "category", ("BENIGN", "DoS", "SPOOFING")),
        "specific": Task("specific", "specific_class", _SPECIFIC),
    }
    return DatasetAdapter(
        name="ciciov2024",
        columns=columns,
        tasks=tasks,
        default_task="specific",
        negative_class={name: "BENIGN" for name in tasks},
    )
