import pytest

from mxpose.config import ConfigError, apply_overrides, default_config, load_config, save_config


def test_defaults_and_yaml_merge(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("train:\n  lr: 0.001\n  lr_steps: [10, 20]\nmodel:\n  kwargs: {num_stages: 2}\n")
    cfg = load_config(str(p))
    assert cfg.name == "exp"
    assert cfg.train.lr == 0.001 and cfg.train.lr_steps == [10, 20]
    assert cfg.model.kwargs.num_stages == 2
    assert cfg.train.momentum == default_config().train.momentum


def test_unknown_key_is_rejected_with_file_name(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'train.lrr'"):
        load_config(str(p))


def test_type_errors_and_missing_file(tmp_path):
    p = tmp_path / "t.yaml"
    p.write_text("train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match="must be a number"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(str(tmp_path / "nope.yaml"))
    p.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(p))


def test_overrides_and_save_roundtrip(tmp_path):
    cfg = default_config()
    apply_overrides(cfg, ["train.batch_size=4", "data.skeleton=openpose_coco18",
                          "test.scales=[0.5, 1.0]"])
    assert cfg.train.batch_size == 4 and cfg.data.skeleton == "openpose_coco18"
    assert cfg.test.scales == [0.5, 1.0]
    with pytest.raises(ConfigError):
        apply_overrides(cfg, ["train.nothing=1"])
    out = tmp_path / "c.yaml"
    save_config(cfg, str(out))
    again = load_config(str(out))
    assert again.train.batch_size == 4 and again.test.scales == [0.5, 1.0]
