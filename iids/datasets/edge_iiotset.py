"""Edge-IIoTset: IIoT and IoT network traffic, normal and under 14 kinds of attack.

Source: M. A. Ferrag, O. Friha, D. Hamouda, L. Maglaras and H. Janicke, "Edge-IIoTset: A
New Comprehensive Realistic Cyber Security Dataset of IoT and IIoT Applications for
Centralized and Federated Learning", IEEE Access 10, 2022. Each row is one captured
packet described by 61 protocol fields (Zeek/TShark), `Attack_label` (0 normal, 1
attack) and `Attack_type` (15 classes).

The customary drop list (kept as text, never features) removes identifiers, timestamps
and payloads: addresses, ports, `frame.time`, `icmp.transmit_timestamp`, URIs, TCP
options and payloads and the MQTT message. They identify the capture session rather than
the attack, so a model trained on them memorises the capture instead of learning
attacks. The list is the one in the preprocessing example published with the dataset,
used by most later work. The categorical list holds the fields whose values are names
(HTTP method and version, referer, MQTT protocol name and topic, and `dns.qry.name.len`,
which carries query names in the published files).

Raw captures write numbers as `0`, `0.0` or hex `0x…` (all parse in base 10 here), pad
`frame.time` with spaces, and spell one class `OS_Fingerprinting`; the curated files say
`Fingerprinting`, which is the class name used here.
"""

from __future__ import annotations

from collections.abc import Sequence

from iids.datasets.base import Column, DatasetAdapter, Kind, Task

# Every raw column, in the order the raw exports write them.
COLUMNS = (
    "frame.time",
    "ip.src_host",
    "ip.dst_host",
    "arp.dst.proto_ipv4",
    "arp.opcode",
    "arp.hw.size",
    "arp.src.proto_ipv4",
    "icmp.checksum",
    "icmp.seq_le",
    "icmp.transmit_timestamp",
    "icmp.unused",
    "http.file_data",
    "http.content_length",
    "http.request.uri.query",
    "http.request.method",
    "http.referer",
    "http.request.full_uri",
    "http.request.version",
    "http.response",
    "http.tls_port",
    "tcp.ack",
    "tcp.ack_raw",
    "tcp.checksum",
    "tcp.connection.fin",
    "tcp.connection.rst",
    "tcp.connection.syn",
    "tcp.connection.synack",
    "tcp.dstport",
    "tcp.flags",
    "tcp.flags.ack",
    "tcp.len",
    "tcp.options",
    "tcp.payload",
    "tcp.seq",
    "tcp.srcport",
    "udp.port",
    "udp.stream",
    "udp.time_delta",
    "dns.qry.name",
    "dns.qry.name.len",
    "dns.qry.qu",
    "dns.qry.type",
    "dns.retransmission",
    "dns.retransmit_request",
    "dns.retransmit_request_in",
    "mqtt.conack.flags",
    "mqtt.conflag.cleansess",
    "mqtt.conflags",
    "mqtt.hdrflags",
    "mqtt.len",
    "mqtt.msg_decoded_as",
    "mqtt.msg",
    "mqtt.msgtype",
    "mqtt.proto_len",
    "mqtt.protoname",
    "mqtt.topic",
    "mqtt.topic_len",
    "mqtt.ver",
    "mbtcp.len",
    "mbtcp.trans_id",
    "mbtcp.unit_id",
    "Attack_label",
    "Attack_type",
)

LABEL_COLUMNS = ("Attack_label", "Attack_type")

DROP = (
    "frame.time",
    "ip.src_host",
    "ip.dst_host",
    "arp.src.proto_ipv4",
    "arp.dst.proto_ipv4",
    "http.file_data",
    "http.request.full_uri",
    "icmp.transmit_timestamp",
    "http.request.uri.query",
    "tcp.options",
    "tcp.payload",
    "tcp.srcport",
    "tcp.dstport",
    "udp.port",
    "mqtt.msg",
)

CATEGORICAL = (
    "http.request.method",
    "http.referer",
    "http.request.version",
    "dns.qry.name.len",
    "mqtt.conack.flags",
    "mqtt.protoname",
    "mqtt.topic",
)

# The 15 classes of the `attack` task, Normal first, then by published row count.
ATTACK_CLASSES = (
    "Normal",
    "DDoS_UDP",
    "DDoS_ICMP",
    "SQL_injection",
    "Password",
    "Vulnerability_scanner",
    "DDoS_TCP",
    "DDoS_HTTP",
    "Uploading",
    "Backdoor",
    "Port_Scanning",
    "XSS",
    "Ransomware",
    "MITM",
    "Fingerprinting",
)

# Row counts of the curated DNN-EdgeIIoT-dataset.csv (2,219,201 rows), per class.
PUBLISHED_COUNTS = {
    "Normal": 1_615_643,
    "DDoS_UDP": 121_568,
    "DDoS_ICMP": 116_436,
    "SQL_injection": 51_203,
    "Password": 50_153,
    "Vulnerability_scanner": 50_110,
    "DDoS_TCP": 50_062,
    "DDoS_HTTP": 49_911,
    "Uploading": 37_634,
    "Backdoor": 24_862,
    "Port_Scanning": 22_564,
    "XSS": 15_915,
    "Ransomware": 10_925,
    "MITM": 1_214,
    "Fingerprinting": 1_001,
}

GROUPS = {
    "Normal": ("Normal",),
    "DDoS": ("DDoS_UDP", "DDoS_ICMP", "DDoS_TCP", "DDoS_HTTP"),
    "Injection": ("SQL_injection", "XSS", "Uploading"),
    "Scanning": ("Port_Scanning", "Vulnerability_scanner", "Fingerprinting"),
    "Malware": ("Backdoor", "Password", "Ransomware"),
    "MITM": ("MITM",),
}

LABEL_ALIASES = {"OS_Fingerprinting": "Fingerprinting"}

# Numeric columns that hold fractions; every other numeric column holds whole numbers.
_FRACTIONAL = ("udp.time_delta",)

# `Attack_label` is written 0/1 in some exports and 0.0/1.0 in others.
_BINARY_MAPPING = {"0": "Normal", "0.0": "Normal", "1": "Attack", "1.0": "Attack"}


def edge_iiotset(
    *,
    drop: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
) -> DatasetAdapter:
    """The Edge-IIoTset adapter.

    Args:
        drop: columns kept as text and never used as features; the customary drop
            list (`DROP`) when None.
        categorical: columns one-hot encoded as features; `CATEGORICAL` when None.

    Returns:
        The adapter, with tasks `binary` (Attack_label: Normal / Attack), `group`
        (Attack_type in 6 groups) and `attack` (Attack_type, 15 classes, the default).

    Raises:
        ValueError: a drop or categorical column is not an Edge-IIoTset column, is a
            label column, or is in both lists.
    """
    drop = tuple(DROP if drop is None else drop)
    categorical = tuple(CATEGORICAL if categorical is None else categorical)
    for option, names in (("drop", drop), ("categorical", categorical)):
        unknown = [n for n in names if n not in COLUMNS]
        if unknown:
            raise ValueError(
                f"Edge-IIoTset {option} list names unknown column(s) {unknown}; "
                f"columns are {list(COLUMNS)}"
            )
        labels = [n for n in names if n in LABEL_COLUMNS]
        if labels:
            raise ValueError(
                f"Edge-IIoTset {option} list names label column(s) {labels}; labels "
                "are never features and cannot be dropped"
            )
    both = sorted(set(drop) & set(categorical))
    if both:
        raise ValueError(
            f"Edge-IIoTset columns {both} are in both the drop and the categorical list"
        )

    columns = tuple(
        Column(name, kind, 10, integer=kind is Kind.NUMERIC and name not in _FRACTIONAL)
        for name, kind in ((n, _kind(n, drop, categorical)) for n in COLUMNS)
    )
    group_of = {cls: group for group, members in GROUPS.items() for cls in members}
    tasks = {
        "binary": Task("binary", "Attack_label", ("Normal", "Attack"), _BINARY_MAPPING),
        "group": Task(
            "group",
            "Attack_type",
            tuple(GROUPS),
            {**group_of, "OS_Fingerprinting": "Scanning"},
        ),
        "attack": Task("attack", "Attack_type", ATTACK_CLASSES, dict(LABEL_ALIASES)),
    }
    return DatasetAdapter(
        name="edge-iiotset",
        columns=columns,
        tasks=tasks,
        default_task="attack",
        negative_class={name: "Normal" for name in tasks},
        label_aliases=dict(LABEL_ALIASES),
    )


def _kind(name: str, drop: tuple[str, ...], categorical: tuple[str, ...]) -> Kind:
    """The kind of one column under the chosen drop and categorical lists."""
    if name in LABEL_COLUMNS:
        return Kind.LABEL
    if name in drop:
        return Kind.TEXT
    if name in categorical:
        return Kind.CATEGORICAL
    return Kind.NUMERIC
