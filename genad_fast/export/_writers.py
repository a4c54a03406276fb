"""Writing an exported program: an ONNX file (onnx + onnxscript) or a ``torch.export`` file (torch alone)."""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator

import torch

from genad_fast._extras import install_hint

__all__ = ["INSTALL_HINT", "TORCH_METADATA", "require_onnx", "write_onnx", "write_torch"]

INSTALL_HINT = install_hint("export")
#: The name of the JSON metadata inside a torch-format file (``torch.export.load(path, extra_files=...)``).
TORCH_METADATA = "genad_fast.json"


def require_onnx() -> None:
    """ImportError naming the missing packages and the extra unless onnx and onnxscript import."""
    missing = []
    for module in ("onnx", "onnxscript"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"format='onnx' needs the {' and '.join(missing)} package{'s' if len(missing) > 1 else ''} "
                          f"(torch.onnx's exporter writes the graph with them): {INSTALL_HINT}")


@contextlib.contextmanager
def _quiet_onnx_registry() -> Iterator[None]:
    """torch.onnx logs a warning per torchvision op it cannot register when torchvision is absent: noise here."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def write_onnx(program: torch.export.ExportedProgram, example: torch.Tensor, path: str,
               meta: dict[str, str]) -> None:
    """``program`` as one self-contained ONNX file (weights inside), dynamic batch size, checked by
    ``onnx.checker``; ``meta`` goes to the model's metadata_props."""
    require_onnx()
    import onnx

    with _quiet_onnx_registry():
        onnx_program = torch.onnx.export(program, (example,), dynamo=True, input_names=["x"],
                                         output_names=["score"], verbose=False)
    onnx_program.model.metadata_props.update(meta)
    onnx_program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path), full_check=True)


def write_torch(program: torch.export.ExportedProgram, path: str, meta: dict[str, str]) -> None:
    """``program`` saved by ``torch.export.save``, ``meta`` as the JSON extra file :data:`TORCH_METADATA`."""
    torch.export.save(program, str(path), extra_files={TORCH_METADATA: json.dumps(meta, indent=1)})
