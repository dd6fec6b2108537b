"""Pickles that never run code: the one way tmor reads a pickle it did not write in this process.

- Data pickles (pyskl / mmaction2 annotations, ``--data x.pkl``): :func:`load_data_pickle` uses an
  unpickler that builds numpy arrays, dtypes and scalars, plain containers, numbers and strings,
  and refuses every other global (:class:`UnsafePickleError`, naming the file and the global).
- Model files read by libraries that unpickle them (ultralytics' ``.pt``): :func:`check_torch_file`
  reads the pickle of the torch zip without executing it (:mod:`pickletools`), follows its stack
  symbolically, and refuses any global or call outside a :class:`PicklePolicy` before the library
  sees the file.
"""

from __future__ import annotations

import codecs
import io
import pickle
import pickletools
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tmor import fsio


class UnsafePickleError(ValueError):
    """A pickle that references code a data or model file may not hold (nothing was run)."""


class BadPickleError(ValueError):
    """A file that is not a readable pickle (empty, truncated, another format)."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of numpy arrays use it, limited to latin-1."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise UnsafePickleError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a data pickle: the subtype argument of ``_reconstruct``,
    never called (``ndarray(shape)`` would allocate a size taken from the file)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError("numpy.ndarray(...) called with a size taken from the file")


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """numpy's ``_reconstruct`` as numpy pickles call it: an empty ndarray that ``__setstate__``
    then fills from data held in the file (whose length numpy checks against the shape)."""
    import numpy as np

    if subtype is not _NdarrayType or shape not in ((0,), [0], 0):
        raise UnsafePickleError(f"numpy _reconstruct of shape {shape!r}, where numpy's own "
                                "pickles build an empty ndarray")
    return np.core.multiarray._reconstruct(np.ndarray, (0,), dtype)


def _from_data(kind: type) -> Any:
    """``bytes`` / ``bytearray`` built from values in the file, never from a size (``bytes(10**12)``
    would allocate what the file asks)."""

    def build(*args: Any) -> Any:
        if any(isinstance(a, int) for a in args):
            raise UnsafePickleError(f"{kind.__name__}() of a size")
        return kind(*args)

    return build


def _data_globals() -> dict[tuple[str, str], Any]:
    import collections

    import numpy as np

    allowed: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core", "numpy._core"):  # numpy 1.x / 2.x names of the same functions
        allowed[(f"{mod}.multiarray", "_reconstruct")] = _reconstruct
        allowed[(f"{mod}.multiarray", "scalar")] = np.core.multiarray.scalar
        allowed[(f"{mod}.numeric", "_frombuffer")] = np.core.numeric._frombuffer
    allowed[("numpy", "ndarray")] = _NdarrayType
    allowed[("numpy", "dtype")] = np.dtype
    for name in dir(getattr(np, "dtypes", None)):  # numpy >= 1.25: dtype classes by name
        obj = getattr(np.dtypes, name)
        if isinstance(obj, type) and issubclass(obj, np.dtype):
            allowed[("numpy.dtypes", name)] = obj
    builtins: dict[str, Any] = {b.__name__: b for b in (int, float, complex, bool, str, tuple,
                                                         list, dict, set, frozenset)}
    builtins.update(bytes=_from_data(bytes), bytearray=_from_data(bytearray))
    for name, b in builtins.items():
        allowed[("builtins", name)] = allowed[("__builtin__", name)] = b
    allowed[("collections", "OrderedDict")] = collections.OrderedDict
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


_DATA_GLOBALS: dict[tuple[str, str], Any] | None = None


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, url: str) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self.url = url

    def find_class(self, module: str, name: str) -> Any:
        global _DATA_GLOBALS
        if _DATA_GLOBALS is None:
            _DATA_GLOBALS = _data_globals()
        found = _DATA_GLOBALS.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"{self.url}: refused to unpickle: it references {module}.{name}, which a data "
                "file may not hold (allowed: numpy arrays, dtypes and scalars, plain containers, "
                "numbers, strings); nothing was run")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.url}: refused to unpickle: persistent id {pid!r}")


def load_data_pickle(url: str, data: bytes | None = None) -> Any:
    """The object of a data pickle at ``url`` (or of ``data``), built without running code.

    Raises :class:`UnsafePickleError` for a global outside numpy arrays / dtypes / scalars, plain
    containers, numbers and strings, and :class:`BadPickleError` for an empty, truncated or
    malformed file; both name the file."""
    data = fsio.read_bytes(url) if data is None else data
    if not data:
        raise BadPickleError(f"{url}: empty file, not a pickle")
    try:
        return _DataUnpickler(data, url).load()
    except UnsafePickleError as e:
        if str(e).startswith(f"{url}: "):
            raise
        raise UnsafePickleError(f"{url}: refused to unpickle: {e}; nothing was run") from None
    except EOFError:
        raise BadPickleError(f"{url}: truncated pickle (the data ends early)") from None
    except Exception as e:  # noqa: BLE001 - any failure of the unpickler is a malformed file
        text = " ".join(str(e).split()) or type(e).__name__
        raise BadPickleError(f"{url}: not a readable pickle ({text})") from None


# ---- model files: a static scan ------------------------------------------------------------------


@dataclass
class PicklePolicy:
    """What a model file's pickle may reference, checked without running it.

    values: globals that may appear as plain values (e.g. torch storage types in persistent ids);
    calls: globals that may be called with any arguments (tensor rebuild functions, containers);
    is_class: names of classes that may be instantiated without arguments (``NEWOBJ``:
    ``cls.__new__(cls)``; ``REDUCE`` with ``()``: ``cls()``), then filled by ``BUILD``;
    getattr_names: attribute names ``builtins.getattr(obj, name)`` may read from an instance or
    an allowed class; what it returns may be stored, never called."""

    values: frozenset[str] = frozenset()
    calls: frozenset[str] = frozenset()
    is_class: Callable[[str], bool] = field(default=lambda name: False)
    getattr_names: frozenset[str] = frozenset()

    def known(self, name: str) -> bool:
        return (name in self.values or name in self.calls or self.is_class(name)
                or (name == "builtins.getattr" and bool(self.getattr_names)))


@dataclass(frozen=True)
class _Global:
    name: str


@dataclass(frozen=True)
class _Object:
    """An instance built by the pickle (the result of a call)."""


_MARK = object()
_OPAQUE = object()
_STRINGS = {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "BINUNICODE", "SHORT_BINUNICODE",
            "BINUNICODE8"}


def _global_name(module: str, name: str) -> str:
    module = "builtins" if module == "__builtin__" else module
    return f"{module}.{name}"


def scan_pickle(data: bytes, policy: PicklePolicy, where: str) -> set[str]:
    """Follow a pickle's stack without executing it; returns the globals it references.

    Raises :class:`UnsafePickleError` (naming ``where`` and the global) for a global the policy
    does not know, a call of anything but an allowed function or class, a ``getattr`` of a name
    outside ``policy.getattr_names``, or opcodes that build objects in other ways (``INST``,
    ``OBJ``, ``EXT*``)."""
    stack: list[Any] = []
    memo: dict[int, Any] = {}
    seen: set[str] = set()

    def refuse(what: str) -> UnsafePickleError:
        return UnsafePickleError(f"{where}: refused to load: {what}; nothing was run")

    def pop_mark() -> list[Any]:
        items = []
        while stack:
            v = stack.pop()
            if v is _MARK:
                return items[::-1]
            items.append(v)
        raise refuse("malformed pickle (no MARK)")

    def pop() -> Any:
        if not stack:
            raise refuse("malformed pickle (stack underflow)")
        return stack.pop()

    def call(func: Any, args: Any, op: str) -> None:
        if not isinstance(func, _Global):
            raise refuse(f"{op} of a value that is not a named global")
        name = func.name
        if name in policy.calls:
            return
        if name == "builtins.getattr":
            owner = args[0] if isinstance(args, tuple) and len(args) == 2 else None
            owner_ok = isinstance(owner, _Object) or (isinstance(owner, _Global)
                                                      and policy.is_class(owner.name))
            if not owner_ok or args[1] not in policy.getattr_names:
                attr = args[1] if isinstance(args, tuple) and len(args) == 2 else "?"
                raise refuse(f"it calls builtins.getattr(..., {attr!r}), which a model file may "
                             "not do")
            return
        if policy.is_class(name) and args == ():
            return
        raise refuse(f"it calls {name}{'' if args == () else '(...)'}, which a model file may "
                     "not do")

    try:
        ops = list(pickletools.genops(data))
    except Exception as e:  # noqa: BLE001 - truncated or not a pickle
        raise BadPickleError(f"{where}: not a readable pickle ({e})") from None
    for op, arg, _ in ops:
        name = op.name
        if name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
            else:
                attr, module = pop(), pop()
                if not (isinstance(module, str) and isinstance(attr, str)):
                    raise refuse("a global named by computed values")
            g = _global_name(module, attr)
            if not policy.known(g):
                raise refuse(f"it references {g}, which this model format does not use")
            seen.add(g)
            stack.append(_Global(g))
        elif name in ("INST", "OBJ", "EXT1", "EXT2", "EXT4", "NEWOBJ_EX"):
            raise refuse(f"opcode {name}, which this model format does not use")
        elif name in _STRINGS:
            stack.append(arg if isinstance(arg, str) else _OPAQUE)
        elif name == "MARK":
            stack.append(_MARK)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = stack[-1] if stack else _OPAQUE
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else _OPAQUE
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(arg, _OPAQUE))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [pop() for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif name == "TUPLE":
            stack.append(tuple(pop_mark()))
        elif name in ("REDUCE", "NEWOBJ"):
            args = pop()
            func = pop()
            call(func, args, name)
            stack.append(_Object())
        elif name == "BUILD":
            pop()
            if not stack or isinstance(stack[-1], _Global):
                raise refuse("BUILD on a class")
        elif name in ("BINPERSID", "PERSID"):
            if name == "BINPERSID":
                pop()
            stack.append(_OPAQUE)
        else:  # everything else only moves opaque values: follow pickletools' stack effect
            before = op.stack_before
            if pickletools.markobject in before:
                pop_mark()
                before = before[: before.index(pickletools.markobject)]
            for _ in before:
                pop()
            stack.extend(_OPAQUE for _ in op.stack_after)
    return seen


def torch_zip_pickle(url: str) -> tuple[str, bytes]:
    """The ``data.pkl`` of a ``torch.save`` zip archive at ``url``: (its name, its bytes)."""
    try:
        with fsio.open_url(url, "rb") as f, zipfile.ZipFile(f) as z:
            names = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(names) != 1:
                raise BadPickleError(f"{url}: not a torch.save archive (no single data.pkl)")
            info = z.getinfo(names[0])
            if info.file_size > 1 << 30:
                raise BadPickleError(f"{url}: data.pkl of {info.file_size} bytes, over 1 GiB")
            return names[0], z.read(names[0])
    except zipfile.BadZipFile as e:
        raise BadPickleError(f"{url}: not a torch.save zip archive ({e}); legacy and TorchScript "
                             "files are not supported") from None


def check_torch_file(url: str, policy: PicklePolicy) -> set[str]:
    """Scan the pickle of the torch checkpoint at ``url`` against ``policy`` (nothing runs);
    returns its globals, raises :class:`UnsafePickleError` / :class:`BadPickleError`."""
    _, data = torch_zip_pickle(url)
    return scan_pickle(data, policy, url)
