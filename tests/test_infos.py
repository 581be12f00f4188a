"""Info files: the tool on the real slice, round trip, devkit-consistent paths, the radar sweep
chain, released-style records and path forms."""
import json
import pickle
import re

import numpy as np
import pytest

from datasets import infos as infos_mod
from datasets.infos import (RADAR_SWEEPS, SCHEMA_VERSION, InfoFileError, entry_poses, load_infos,
                            make_record, save_infos)
from datasets.io import DataFileError, resolve_data_path
from tools import create_infos as create_infos_tool


@pytest.fixture(scope="module")
def nusc(real_root):
    from nuscenes.nuscenes import NuScenes
    return NuScenes("v1.0-trainval", str(real_root), verbose=False)


@pytest.fixture(scope="module")
def written(real_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("infos")
    create_infos_tool.main(["--data-root", str(real_root), "--version", "v1.0-trainval", "--out-dir", str(out)])
    return out


def test_tool_writes_official_splits(written):
    assert load_infos(written / "nuscenes_radar_5sweeps_infos_train.pkl") == []
    val = load_infos(written / "nuscenes_radar_5sweeps_infos_val.pkl")
    assert len(val) == 40
    assert {r["scene_name"] for r in val} == {"scene-0523"}
    assert all(r["schema_version"] == SCHEMA_VERSION for r in val)


def test_records_match_devkit(written, nusc, real_root):
    """Every path and pose is the devkit's, every path resolves to a file on disk."""
    val = load_infos(written / "nuscenes_radar_5sweeps_infos_val.pkl")
    assert [r["sample_token"] for r in val] == [s["token"] for s in nusc.sample]
    for record in val[::7]:
        sample = nusc.get("sample", record["sample_token"])
        channels = set(record["cam_infos"]) | set(record["lidar_infos"]) | set(record["radar_infos"])
        assert channels == set(sample["data"])
        for channel, entry in {**record["cam_infos"], **record["lidar_infos"]}.items():
            sd = nusc.get("sample_data", sample["data"][channel])
            assert entry["filename"] == sd["filename"] and entry["timestamp"] == sd["timestamp"]
            assert entry["calibrated_sensor"] == nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            assert entry["ego_pose"] == nusc.get("ego_pose", sd["ego_pose_token"])
            assert resolve_data_path(real_root, entry["filename"]).is_file()
        (sweep,) = record["radar_infos"]["RADAR_FRONT"]        # prev chain cut in the slice
        sd = nusc.get("sample_data", sample["data"]["RADAR_FRONT"])
        assert sweep["data_path"] == sd["filename"] and sweep["sample_data_token"] == sd["token"]
        assert sweep["ego2global_translation"] == nusc.get("ego_pose", sd["ego_pose_token"])["translation"]
        assert record["radar_sweeps_short"]["RADAR_FRONT"]["found"] == 1
        assert resolve_data_path(real_root, sweep["data_path"]).is_file()


def test_round_trip(written, tmp_path):
    val = load_infos(written / "nuscenes_radar_5sweeps_infos_val.pkl")
    save_infos(val, tmp_path / "copy.pkl")
    assert load_infos(tmp_path / "copy.pkl") == val
    assert not list(tmp_path.glob("*.tmp"))


def test_splits_file(real_root, tmp_path):
    """Scenes as the file says; a split whose scenes the tables lack entirely is an error (a typo
    would otherwise give an empty info file and exit 0), written nothing."""
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps({"train": ["scene-0523"], "val": []}))
    create_infos_tool.main(["--data-root", str(real_root), "--out-dir", str(tmp_path), "--splits-file", str(splits)])
    assert len(load_infos(tmp_path / "nuscenes_radar_5sweeps_infos_train.pkl")) == 40
    assert load_infos(tmp_path / "nuscenes_radar_5sweeps_infos_val.pkl") == []
    splits.write_text(json.dumps({"train": ["scene-0523"], "test": ["scene-9999", "scene-0524"]}))
    with pytest.raises(SystemExit, match=r"split test: none of its 2 scenes \(scene-9999, scene-0524\) "
                                         r"is in the v1.0-trainval tables"):
        create_infos_tool.main(["--data-root", str(real_root), "--out-dir", str(tmp_path / "again"),
                                "--splits-file", str(splits)])
    assert not (tmp_path / "again").exists()


def linked_slice(real_root, dest):
    """dest: the real slice's tables and key-frame files as symbolic links, one per file."""
    (dest / "v1.0-trainval").mkdir(parents=True)
    for table in (real_root / "v1.0-trainval").iterdir():
        (dest / "v1.0-trainval" / table.name).symlink_to(table)
    (dest / "maps").symlink_to(real_root / "maps")
    for path in (real_root / "samples").rglob("*"):
        if path.is_file():
            (dest / path.relative_to(real_root)).parent.mkdir(parents=True, exist_ok=True)
            (dest / path.relative_to(real_root)).symlink_to(path)
    return dest


def test_missing_key_frame_file_is_left_out_with_a_warning(real_root, real_records, tmp_path, caplog):
    root = linked_slice(real_root, tmp_path / "root")
    missing = [real_records[i]["cam_infos"]["CAM_FRONT"]["filename"] for i in (3, 7)]
    for path in missing:
        (root / path).unlink()
    with caplog.at_level("WARNING"):
        create_infos_tool.main(["--data-root", str(root), "--out-dir", str(tmp_path / "out")])
    val = load_infos(tmp_path / "out" / "nuscenes_radar_5sweeps_infos_val.pkl")
    assert [r["sample_token"] for r in val] == [r["sample_token"] for i, r in enumerate(real_records) if i not in (3, 7)]
    assert f"split val: 2 samples left out, their key-frame files are not on disk (first: {missing[0]})" in caplog.text


def test_truncated_table_and_unreadable_info_file_are_named(real_root, tmp_path):
    root = linked_slice(real_root, tmp_path / "root")
    table = root / "v1.0-trainval" / "sample_data.json"
    raw = table.read_bytes()
    table.unlink()
    table.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(SystemExit, match=f"nuScenes table {re.escape(str(table))} is truncated or not JSON"):
        create_infos_tool.main(["--data-root", str(root), "--out-dir", str(tmp_path / "out")])
    (tmp_path / "text.pkl").write_text("not a pickle\n")
    with pytest.raises(InfoFileError, match=f"info file {re.escape(str(tmp_path / 'text.pkl'))} is not a "
                                            "readable pickle .*UnpicklingError.*create_infos.py"):
        load_infos(tmp_path / "text.pkl")


class ChainTables:
    """Duck-typed `NuScenes` with one sample whose RADAR_FRONT has `n_prev` earlier sweeps."""

    def __init__(self, root, n_prev, on_disk):
        self.dataroot = str(root)
        self.tables = {"scene": {"sc": {"token": "sc", "name": "scene-x"}},
                       "calibrated_sensor": {"cs": {"token": "cs", "translation": [1, 2, 3],
                                                    "rotation": [1, 0, 0, 0]}},
                       "ego_pose": {}, "sample_data": {}}
        tokens = [f"r{i}" for i in range(n_prev + 1)]          # r0 = key frame, r1 its prev, ...
        for i, tok in enumerate(tokens):
            filename = f"{'samples' if i == 0 else 'sweeps'}/RADAR_FRONT/{tok}.pcd"
            if i in on_disk:
                (root / filename).parent.mkdir(parents=True, exist_ok=True)
                (root / filename).write_bytes(b"")
            self.tables["ego_pose"][tok] = {"token": tok, "translation": [i, 0, 0], "rotation": [1, 0, 0, 0]}
            self.tables["sample_data"][tok] = {
                "token": tok, "sample_token": "s", "channel": "RADAR_FRONT", "sensor_modality": "radar",
                "filename": filename, "timestamp": 100 - i, "is_key_frame": i == 0,
                "calibrated_sensor_token": "cs", "ego_pose_token": tok,
                "prev": tokens[i + 1] if i + 1 < len(tokens) else ""}
        self.sample = {"token": "s", "scene_token": "sc", "timestamp": 100, "data": {"RADAR_FRONT": "r0"}}

    def get(self, table, token):
        return self.tables[table][token]


def test_radar_sweeps_follow_prev_chain(tmp_path):
    tables = ChainTables(tmp_path, n_prev=7, on_disk=set(range(8)))
    record = make_record(tables, tables.sample)
    sweeps = record["radar_infos"]["RADAR_FRONT"]
    assert [s["sample_data_token"] for s in sweeps] == ["r0", "r1", "r2", "r3", "r4"] and RADAR_SWEEPS == 5
    assert [s["timestamp"] for s in sweeps] == [100, 99, 98, 97, 96]
    assert sweeps[1]["data_path"] == "sweeps/RADAR_FRONT/r1.pcd"
    assert sweeps[2]["ego2global_translation"] == [2, 0, 0] and sweeps[2]["sensor2ego_translation"] == [1, 2, 3]
    assert record["radar_sweeps_short"] == {}


def test_radar_sweeps_stop_at_missing_file(tmp_path):
    tables = ChainTables(tmp_path, n_prev=7, on_disk={0, 1})
    record = make_record(tables, tables.sample)
    assert len(record["radar_infos"]["RADAR_FRONT"]) == 2
    short = record["radar_sweeps_short"]["RADAR_FRONT"]
    assert short["found"] == 2 and short["wanted"] == 5 and "sweeps/RADAR_FRONT/r2.pcd" in short["reason"]


def test_released_path_forms(tmp_path):
    released = resolve_data_path(tmp_path, "./data/nuScenes/samples/CAM_FRONT/a.jpg")
    assert released == tmp_path / "samples/CAM_FRONT/a.jpg"
    absolute = resolve_data_path(tmp_path, "/abs/nuscenes/sweeps/RADAR_FRONT/b.pcd")
    assert absolute == tmp_path / "sweeps/RADAR_FRONT/b.pcd"
    assert resolve_data_path(tmp_path, "samples/LIDAR_TOP/c.pcd.bin") == tmp_path / "samples/LIDAR_TOP/c.pcd.bin"
    with pytest.raises(DataFileError, match="create_infos"):
        resolve_data_path(tmp_path, "elsewhere/x.jpg")


def test_entry_pose_forms_agree():
    nested = {"calibrated_sensor": {"translation": [1, 2, 3], "rotation": [0.9, 0.1, 0.2, 0.3]},
              "ego_pose": {"translation": [4, 5, 6], "rotation": [0.5, 0.5, 0.5, 0.5]}}
    flat = {"sensor2ego_translation": [1, 2, 3], "sensor2ego_rotation": [0.9, 0.1, 0.2, 0.3],
            "ego2global_translation": [4, 5, 6], "ego2global_rotation": [0.5, 0.5, 0.5, 0.5]}
    for a, b in zip(entry_poses(nested), entry_poses(flat)):
        np.testing.assert_array_equal(a, b)
    sensor2ego, _ = entry_poses(nested)
    np.testing.assert_allclose(sensor2ego[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(sensor2ego[:3, :3] @ sensor2ego[:3, :3].T, np.eye(3), atol=1e-12)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="tools/create_infos.py"):
        load_infos(tmp_path / "absent.pkl")
    (tmp_path / "future.pkl").write_bytes(pickle.dumps([{"schema_version": SCHEMA_VERSION + 1}]))
    with pytest.raises(ValueError, match="schema version"):
        load_infos(tmp_path / "future.pkl")
    (tmp_path / "dict.pkl").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a list"):
        load_infos(tmp_path / "dict.pkl")


def test_split_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown nuScenes version"):
        infos_mod.split_scenes("v2.0")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"train": "scene-1"}))
    with pytest.raises(ValueError, match="lists of scene names"):
        infos_mod.split_scenes("v1.0-trainval", bad)
