"""import-config on bad input: a message naming the file and line and what to do, and
nothing registered half-way (issue 17)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sushitui.export import configs_in
from sushitui.export.configs_in import ConfigImportError, import_config
from sushitui.store import Dataset


@pytest.fixture
def folders(tmp_path):
    for d in ("good", "ctrl"):
        (tmp_path / d).mkdir()
    return tmp_path


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


KOHYA_TWO = """[general]
caption_extension = ".txt"

[[datasets]]
resolution = 512

  [[datasets.subsets]]
  image_dir = "good"
  num_repeats = 2

  [[datasets.subsets]]
  image_dir = '{second}'
  num_repeats = 3
"""


def test_a_windows_path_is_refused_with_its_line_and_the_path_map_option_and_nothing_is_registered(db, folders):
    cfg = write(folders / "ds.toml", KOHYA_TWO.format(second=r"D:\Training\img\5_dog"))
    with pytest.raises(ConfigImportError) as e:
        import_config(cfg)
    (problem,) = e.value.problems
    assert problem.startswith(f"{cfg}:12: datasets[0].subsets[1]: ")
    assert "Windows path" in problem and "--path-map 'D:" in problem
    assert Dataset.select().count() == 0  # the good folder of the same config is not registered either


def test_the_path_map_rewrites_a_windows_prefix_case_insensitively(db, folders):
    (folders / "dogs" / "5_dog").mkdir(parents=True)
    cfg = write(folders / "ds.toml", KOHYA_TWO.format(second=r"D:\Training\img\5_dog"))
    result = import_config(cfg, [(r"d:\training\IMG", str(folders / "dogs"))])
    roots = sorted(Dataset.get_by_id(r["id"]).root_path for r in result.registered)
    assert roots == [str(folders / "dogs/5_dog"), str(folders / "good")]


def test_a_missing_folder_names_file_line_and_the_working_directory_rule(db, folders):
    cfg = write(folders / "ds.toml", KOHYA_TWO.format(second="./img/5_dog"))
    with pytest.raises(ConfigImportError) as e:
        import_config(cfg)
    (problem,) = e.value.problems
    assert problem.startswith(f"{cfg}:12:") and "no such folder" in problem
    assert "--workdir" in problem and "--path-map" in problem
    # the trainer's rule (the folder it runs in), given: resolved
    (folders / "run" / "img" / "5_dog").mkdir(parents=True)
    (folders / "run" / "good").mkdir()
    assert len(import_config(cfg, workdir=str(folders / "run")).registered) == 2


def test_every_problem_is_listed_not_only_the_first(db, folders):
    cfg = write(
        folders / "dp.toml", "[[directory]]\npath = 'nope1'\n\n[[directory]]\npath = 'good'\ncontrol_path = 'nope2'\n"
    )
    with pytest.raises(ConfigImportError) as e:
        import_config(cfg)
    assert [p.split(": ")[0] for p in e.value.problems] == [f"{cfg}:2", f"{cfg}:6"]
    assert "control folder" in e.value.problems[1]


def test_bom_and_crlf_are_read(db, folders):
    cfg = write(folders / "ds.toml", "\ufeff" + KOHYA_TWO.format(second="ctrl").replace("\n", "\r\n"))
    result = import_config(cfg)
    assert [e.line for e in result.plan.entries] == [8, 12]
    assert len(result.registered) == 2


def test_a_config_that_is_not_utf8_names_the_line(db, folders):
    cfg = write(folders / "ds.toml", KOHYA_TWO.format(second="画像"), encoding="cp932")
    with pytest.raises(ConfigImportError, match=rf"{cfg}:12: not UTF-8"):
        import_config(cfg)


def test_broken_toml_and_json_name_the_line(db, folders):
    cfg = write(folders / "ds.toml", "[[datasets]]\n  [[datasets.subsets]]\n  image_dir = good\n")
    with pytest.raises(ConfigImportError, match=rf"{cfg}:3: not valid TOML"):
        import_config(cfg)
    cfg = write(folders / "concepts.json", '[\n  {"path": "good",}\n]\n')
    with pytest.raises(ConfigImportError, match=rf"{cfg}:2: not valid JSON"):
        import_config(cfg)


AI_TOOLKIT = """job: extension
config:
  name: test
  process:
    - type: sd_trainer
      trigger_word: sks
      datasets:
        - &base
          folder_path: "{folder}"
          caption_ext: txt
          num_repeats: 5
        - <<: *base
          folder_path: "{other}"
          is_reg: true
"""


def test_yaml_anchors_and_merge_keys_are_followed(db, folders):
    cfg = write(folders / "train.yaml", AI_TOOLKIT.format(folder=folders / "good", other=folders / "ctrl"))
    result = import_config(cfg)
    good, other = (Dataset.get_by_id(r["id"]) for r in result.registered)
    assert (good.trainer["repeats"], good.trainer["trigger"], good.trainer["is_reg"]) == (5, "sks", False)
    assert (other.trainer["repeats"], other.trainer["is_reg"], other.trainer["line"]) == (5, True, 13)


def test_an_undefined_yaml_alias_names_the_line(db, folders):
    cfg = write(
        folders / "train.yaml", AI_TOOLKIT.format(folder="good", other="ctrl").replace("<<: *base", "<<: *missing")
    )
    with pytest.raises(ConfigImportError, match=rf"{cfg}:12: not valid YAML: .*alias.*anchor &name"):
        import_config(cfg)


def test_a_yaml_alias_bomb_is_refused(db, folders):
    lines = ["a0: &a0 [x, x]"] + [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 200)]
    cfg = write(folders / "bomb.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ConfigImportError, match="YAML aliases"):
        import_config(cfg)


def test_a_failure_while_registering_removes_what_this_import_registered(db, folders, monkeypatch):
    from sushitui.dataset import registry

    cfg = write(folders / "ds.toml", KOHYA_TWO.format(second="ctrl"))
    real = registry.add_dataset
    calls = []

    def failing(settings, **kw):
        calls.append(settings.name)
        if len(calls) == 2:
            raise registry.DatasetError("the disk went away")
        return real(settings, **kw)

    monkeypatch.setattr(registry, "add_dataset", failing)
    with pytest.raises(ConfigImportError, match="nothing was registered: the disk went away"):
        import_config(cfg)
    assert len(calls) == 2 and Dataset.select().count() == 0


def test_the_cli_prints_each_problem_on_its_own_line_and_exits_1(db_path, db, folders, capsys):
    from sushitui.cli import main

    cfg = write(folders / "ds.toml", KOHYA_TWO.format(second=r"D:\x"))
    assert main(["dataset", "import-config", str(cfg), "--db", str(db_path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("sushitui: error: ") and "nothing was registered" in err[0]
    assert err[1].strip().startswith(f"{cfg}:12:")


def test_a_path_map_without_equals_is_a_usage_error():
    with pytest.raises(ConfigImportError, match="FROM=TO"):
        configs_in.parse_path_map([r"C:\data"])


def test_a_missing_image_folder_does_not_hide_the_missing_control_folders(db, tmp_path):
    cfg = tmp_path.parent / "ai-toolkit.yaml"
    cfg.write_text(
        (Path(__file__).parent / "data/trainer_configs/ai-toolkit_train_lora_qwen_image_edit_2509_32gb.yaml").read_text(
            encoding="utf-8"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigImportError) as e:
        import_config(cfg, [("/path/to", str(tmp_path))])
    lines = [p.split(": ")[0].rsplit(":", 1)[1] for p in e.value.problems]
    # folder_path, then each of the three control_path entries on its own line
    assert lines == ["27", "30", "31", "32"]
    assert all("config.process[0].datasets[0]" in p for p in e.value.problems)
