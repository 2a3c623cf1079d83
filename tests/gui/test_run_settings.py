"""The Run menu's Device and Precision reach the run; Free models empties the cache."""
from __future__ import annotations

from PySide6 import QtCore

from tests.gui.test_run import _few_steps, _run


def test_precision_choice_reaches_the_run_and_is_remembered(qtbot, txt2img, settings):
    window = txt2img
    _few_steps(window, steps=2, batch=1)
    window.actions_by_name["device_cpu"].trigger()
    window.actions_by_name["dtype_bf16"].trigger()
    assert settings.value("run/dtype") == "bf16" and settings.value("run/device") == "cpu"
    outcome = _run(qtbot, window)
    assert outcome.status == "finished", outcome.message
    assert window.device_label.text() == "cpu bf16"
    unet_dtypes = set()
    for outputs, _size in window.runner.executor.cache._entries.values():  # the loaded models
        model = outputs.get("model")
        if model is not None and hasattr(model.denoiser, "network"):
            unet_dtypes |= {p.dtype for p in model.denoiser.network.unet.parameters()}
    assert {str(d) for d in unet_dtypes} == {"torch.bfloat16"}
    assert window.actions_by_name["dtype_bf16"].isChecked()
    assert not window.actions_by_name["dtype_fp32"].isChecked()


def test_choices_come_back_from_the_settings(qtbot, registry, settings, tmp_path):
    from app.gui.main_window import MainWindow

    settings.setValue("run/dtype", "fp16")
    settings.setValue("run/device", "no-such-device")
    window = MainWindow(registry, settings=settings, autosave_path=tmp_path / "recovery.json")
    try:
        assert window.runner.dtype == "fp16" and window.actions_by_name["dtype_fp16"].isChecked()
        assert window.runner.device == "auto"  # an unknown stored value falls back
    finally:
        window.close()
        window.deleteLater()


def test_free_models_empties_the_cache_and_the_next_run_loads_again(qtbot, txt2img):
    window = txt2img
    _few_steps(window, steps=2, batch=1)
    assert _run(qtbot, window).status == "finished"
    assert len(window.runner.executor.cache) > 0
    assert window.run_settings.free_models()
    assert len(window.runner.executor.cache) == 0
    assert "freed the cached models" in window.log.toPlainText()
    outcome = _run(qtbot, window)
    assert outcome.status == "finished" and "checkpoint" in outcome.executed
    qtbot.wait(10)
    QtCore.QCoreApplication.processEvents()


def test_an_added_models_folder_is_remembered_and_searched(window, settings, tmp_path):
    from app.gui.models_folders import apply_stored_dirs, stored_dirs
    from core.checkpoints import library

    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "x.safetensors").write_bytes(b"")
    try:
        assert window.run_settings.folders.add(str(folder))
        assert stored_dirs(settings) == [str(folder)]
        assert library.resolve("x.safetensors") == folder / "x.safetensors"
        library.set_models_dirs(None)
        apply_stored_dirs(settings)  # the next start
        assert folder in library.models_dirs()
        window.run_settings.folders.forget()
        assert stored_dirs(settings) == [] and folder not in library.models_dirs()
    finally:
        library.set_models_dirs(None)
