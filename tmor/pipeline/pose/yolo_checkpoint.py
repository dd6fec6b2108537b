"""What an ultralytics YOLO ``.pt`` may hold, checked before ultralytics unpickles it.

ultralytics loads ``.pt`` files with a full unpickler, so a file could run any code. tmor scans
the checkpoint's pickle first (:func:`tmor.safe_pickle.check_torch_file`, nothing executed) and
admits only what official YOLO checkpoints use: tensors and storages, ``OrderedDict`` / ``set`` /
``torch.Size``, numpy values, ultralytics' argument namespace, paths, ``getattr(module,
"forward"|"forward_fuse")`` (stored, never called), and ``nn.Module`` classes of
``torch.nn.modules.*``, ``ultralytics.nn.modules.*`` and ``ultralytics.nn.tasks``, built without
arguments. Anything else is refused with one line naming the file and the global.
"""

from __future__ import annotations

import functools
import importlib

from tmor.safe_pickle import PicklePolicy, check_torch_file

_STORAGES = ("Float", "Half", "BFloat16", "Double", "Long", "Int", "Short", "Char", "Byte", "Bool")
_MODULE_PREFIXES = ("torch.nn.modules.", "ultralytics.nn.modules.", "ultralytics.nn.tasks.")


@functools.cache
def _is_module_class(name: str) -> bool:
    """An ``nn.Module`` subclass under the allowed packages (imported only from them)."""
    module, _, attr = name.rpartition(".")
    if not name.startswith(_MODULE_PREFIXES) or not attr.isidentifier():
        return False
    try:
        import torch

        obj = getattr(importlib.import_module(module), attr, None)
    except ImportError:
        return False
    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


YOLO_POLICY = PicklePolicy(
    values=frozenset(f"torch.{s}Storage" for s in _STORAGES),
    calls=frozenset({
        "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter", "torch.Size",
        "collections.OrderedDict", "builtins.set", "builtins.frozenset", "numpy.dtype",
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "_codecs.encode",
        "pathlib.PosixPath", "pathlib.WindowsPath",
    }),
    is_class=lambda name: name in {"numpy.ndarray", "ultralytics.utils.IterableSimpleNamespace",
                                   "ultralytics.yolo.utils.IterableSimpleNamespace"}
    or _is_module_class(name),
    getattr_names=frozenset({"forward", "forward_fuse"}),
)


def check_yolo_checkpoint(path: str) -> None:
    """Refuse (``UnsafePickleError``, nothing run) a ``.pt`` that needs more than a YOLO model."""
    check_torch_file(path, YOLO_POLICY)
