import numpy as np
import pyarrow as pa
import pytest
import torch

from iids.bundle import load_bundle, new_version, save_bundle
from iids.datasets import DatasetAdapter, get_adapter
from iids.model import HybridConfig, HybridIDS
from iids.preprocess import FeatureError
from iids.train import encode_labels
from tests.builders import can_rows, fitted_preprocessor


def test_label_codes_follow_task_class_order():
    task = get_adapter("ciciov2024").task("specific")
    rows = pa.table({"specific_class": ["GAS", "BENIGN", " DoS ", "STEERING_WHEEL"]})
    codes = encode_labels(rows, task)
    assert codes.tolist() == [2, 0, 1, 5]
    assert [task.classes[c] for c in codes] == [
        "GAS",
        "BENIGN",
        "DoS",
        "STEERING_WHEEL",
    ]


def test_unknown_label_is_refused_with_row_and_value():
    task = get_adapter("ciciov2024").task("category")
    rows = pa.table({"category": ["BENIGN", "DoS", "FUZZY"]})
    with pytest.raises(ValueError, match=r"row 2: label 'FUZZY' is not a class"):
        encode_labels(rows, task)


def test_adapter_round_trips_through_json():
    adapter = get_adapter("ciciov2024", encoding="hex")
    again = DatasetAdapter.from_dict(adapter.to_dict())
    assert again == adapter


def test_bundle_round_trip_keeps_label_map_and_predictions(tmp_path):
    rows = can_rows(300)
    pre = fitted_preprocessor(rows)
    torch.manual_seed(0)
    model = HybridIDS(pre.num_features, 6, HybridConfig()).eval()
    adapter = get_adapter("ciciov2024")
    task = adapter.task("specific")
    version = new_version()
    uri = save_bundle(
        str(tmp_path),
        version,
        state_dict=model.state_dict(),
        model_config=HybridConfig(),
        num_features=pre.num_features,
        preprocessor=pre,
        adapter=adapter,
        task=task,
        config={"seed": 0},
    )
    bundle = load_bundle(uri)
    assert bundle.version == version
    assert bundle.classes == list(task.classes)
    X = pre.transform(rows)
    with torch.inference_mode():
        before = model(torch.from_numpy(X))
        after = bundle.model(torch.from_numpy(bundle.preprocessor.transform(rows)))
    torch.testing.assert_close(before, after)
    assert not list(tmp_path.glob("*.staging-*"))


def test_loading_a_non_bundle_says_what_is_missing(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"not a model bundle: missing \['model"
    ):
        load_bundle(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"models/v1: no such model bundle"):
        load_bundle(str(tmp_path / "models" / "v1"))


def test_scaling_and_text_input_give_the_same_features():
    rows = can_rows(50)
    pre = fitted_preprocessor(rows)
    X = pre.transform(rows)
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-5)
    as_text = pa.table(
        {c: rows[c].cast(pa.int64()).cast(pa.string()) for c in pre.numeric}
    )
    np.testing.assert_array_equal(pre.transform(as_text), X)


def test_missing_column_and_non_finite_value_are_named():
    rows = can_rows(10)
    pre = fitted_preprocessor(rows)
    with pytest.raises(FeatureError, match=r"missing feature column\(s\) \['DATA_7'\]"):
        pre.transform(rows.drop_columns(["DATA_7"]))
    bad = rows.set_column(3, "DATA_2", pa.array([1.0] * 9 + [float("nan")]))
    with pytest.raises(
        FeatureError, match=r"column 'DATA_2', row 9: expected a finite"
    ):
        pre.transform(bad)


def test_checked_transform_reports_each_faulty_row_and_keeps_the_others():
    rows = can_rows(12)
    pre = fitted_preprocessor(rows)
    text = pa.array(
        [str(int(v)) for v in rows["DATA_4"].to_pylist()[:8]]
        + ["0x1f", " 7 ", "seven", "-inf"]
    )
    ids = rows["ID"].to_pylist()
    ids[2], ids[11] = None, float("nan")
    mixed = rows.set_column(5, "DATA_4", text)
    mixed = mixed.set_column(0, "ID", pa.array(ids, pa.float64()))

    features, faults = pre.transform_checked(mixed)

    # Row 11 has two faults; the first column in feature order is the one reported.
    assert faults.rows.tolist() == [2, 10, 11]
    assert faults.columns == ["ID", "DATA_4", "ID"]
    assert faults.reasons == ["missing_value", "unparseable_number", "nonfinite_number"]
    assert faults.values == [None, "seven", "nan"]
    assert (
        faults.details[1] == "column DATA_4: expected a base-10 number, found 'seven'"
    )
    # The other rows get exactly the features the raising transform gives them.
    keep = faults.keep(12)
    assert keep.sum() == 9 == len(features)
    np.testing.assert_array_equal(features, pre.transform(mixed.filter(pa.array(keep))))
    with pytest.raises(FeatureError, match=r"missing feature column\(s\) \['DATA_7'\]"):
        pre.transform_checked(rows.drop_columns(["DATA_7"]))


def test_snap_rounds_whole_number_columns_in_raw_units():
    rows = can_rows(40)
    pre = fitted_preprocessor(rows)
    X = pre.transform(rows)
    mixed = (0.3 * X[:10] + 0.7 * X[10:20]).astype(np.float32)
    pre.snap(mixed)
    raw = mixed * np.asarray(pre.stds) + np.asarray(pre.means)
    np.testing.assert_allclose(raw, np.rint(raw), atol=1e-3)


def test_training_refuses_data_ingested_as_another_dataset(tmp_path):
    from iids.storage import Storage
    from iids.train import _check_ingested_as

    (tmp_path / "_manifest.json").write_text('{"dataset": "edge-iiotset"}')
    with pytest.raises(
        ValueError, match=r"ingested as dataset 'edge-iiotset'.*--dataset"
    ):
        _check_ingested_as(str(tmp_path), "ciciov2024", Storage())
    _check_ingested_as(str(tmp_path), "edge-iiotset", Storage())
