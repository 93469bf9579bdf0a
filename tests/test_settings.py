"""Tracing settings file: round trip, defaults, corrupt files (pure, no Qt)."""

import json
import os

import pytest

from napari_knossos import settings as st
from napari_knossos.settings import CommentSlot, TracingSettings, load_settings, save_settings, settings_path


def test_the_tests_config_folder_is_the_one_settings_use():
    assert st.CONFIG_ENV == "NAPARI_KNOSSOS_CONFIG_DIR"  # tests/conftest.py sets it for every test


def test_settings_path_follows_the_environment(config_dir):
    assert settings_path() == config_dir / "tracing-settings.json"


def test_missing_file_gives_defaults_without_warning(recwarn):
    got = load_settings()
    assert got == TracingSettings() and not recwarn.list
    assert len(got.comment_slots) == 10 and got.locking_word == "seed" and got.skeleton_depth == 2
    assert got.show_comments is False and got.default_radius == 1.5  # KNOSSOS: comments hidden, radius 1.5


def test_round_trip_is_atomic_and_exact(config_dir):
    s = TracingSettings()
    s.comment_slots[0] = CommentSlot("soma", (0.0, 1.0, 0.0, 1.0), 5.0)
    s.comment_slots[9] = CommentSlot("Ende", None, 2.5)
    s.skeleton_depth, s.color_property, s.color_auto_range, s.color_max = 7, "depth", False, 12.5
    s.show_comments, s.default_radius = True, 4.0
    path = save_settings(s)
    assert path == config_dir / "tracing-settings.json"
    assert os.listdir(config_dir) == ["tracing-settings.json"]  # no temporary file left behind
    assert json.loads(path.read_text())["comment_slots"][0] == {"text": "soma", "color": [0, 1, 0, 1], "radius": 5.0}
    assert load_settings() == s
    s.comment_slots[0] = CommentSlot("axon")
    save_settings(s)  # replaces the file
    assert load_settings().comment_slots[0] == CommentSlot("axon")


def test_old_or_partial_file_keeps_defaults_for_missing_keys(config_dir):
    config_dir.mkdir()
    settings_path().write_text(json.dumps({"locking_radius": 50, "comment_slots": [{"text": "x"}], "future": 1}))
    got = load_settings()
    assert got.locking_radius == 50.0 and got.comment_slots[0] == CommentSlot("x") and got.linking is True


@pytest.mark.parametrize("content", [
    b"{not json",
    b"\xff\xfe garbage",
    b"[1, 2]",
    json.dumps({"skeleton_depth": "two"}).encode(),
    json.dumps({"default_radius": 0}).encode(),
    json.dumps({"show_comments": "yes"}).encode(),
    json.dumps({"comment_slots": [{"text": "a", "color": [2, 0, 0]}]}).encode(),
    json.dumps({"comment_slots": [{"text": "a", "radius": -1}]}).encode(),
    json.dumps({"comment_slots": [{}] * 11}).encode(),
])
def test_corrupt_file_warns_once_naming_it_and_gives_defaults(config_dir, content):
    config_dir.mkdir()
    settings_path().write_bytes(content)
    with pytest.warns(UserWarning) as caught:
        got = load_settings()
    assert len(caught) == 1 and str(settings_path()) in str(caught[0].message)
    assert got == TracingSettings()
