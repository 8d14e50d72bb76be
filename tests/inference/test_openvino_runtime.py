"""The exported .onnx run by OpenVINO (runtime="openvino", what `serve` prefers on the CPU where installed)
gives the checkpoint's detections within export's tolerance, as ONNX Runtime does; a bad file is one line."""

from __future__ import annotations

import pytest

from multibox.errors import UserError
from multibox.inference.loading import load_localizer
from multibox.inference.localizer import Localizer
from multibox.inference.onnx_localizer import OnnxLocalizer
from tests.inference.test_onnx_localizer import assert_same_detections, conv_checkpoint, fc_checkpoint, images

pytest.importorskip("openvino")


@pytest.fixture(scope="module", params=["fc", "conv"])
def exported(request, tmp_path_factory):
    make = fc_checkpoint if request.param == "fc" else conv_checkpoint
    return make(tmp_path_factory.mktemp(f"ov-{request.param}"))


@pytest.mark.parametrize("windows,tile", [("whole", None), ("tiles", 48)])
def test_openvino_gives_the_checkpoints_detections(exported, windows, tile):
    checkpoint, onnx = exported
    torch_loc = Localizer.from_checkpoint(checkpoint, windows=windows, tile=tile)
    ov_loc = load_localizer(onnx, "cpu", windows=windows, tile=tile, runtime="openvino")
    assert isinstance(ov_loc, OnnxLocalizer) and ov_loc.session.get_providers() == ["OpenVINO CPU"]
    assert ov_loc.num_boxes == torch_loc.num_boxes and ov_loc.metadata["image_size"] == torch_loc.image_size
    ims = images()
    want = torch_loc.predict_batch(ims, top_k=None)
    assert_same_detections(ov_loc.predict_batch(ims, top_k=None), want, max(max(im.size) for im in ims))


def test_a_bad_file_or_runtime_is_one_line(tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="OpenVINO can load"):
        load_localizer(tmp_path / "junk.onnx", "cpu", runtime="openvino")
    with pytest.raises(UserError, match="runtime 'tvm'"):
        load_localizer(tmp_path / "junk.onnx", "cpu", runtime="tvm")
