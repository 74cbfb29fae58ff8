"""neoprobe from Python: GPT-Neo's hook points read by neoprobe's WGSL forward, as numpy arrays.

    import neoprobe
    model = neoprobe.Model.from_dir("fixtures/tiny-neo")
    logits, cache = model.run_with_cache(["dog", "run"], names=["blocks.8.mlp.hook_pre"])

The names follow TransformerLens where it has them (``run_with_cache``, ``to_tokens``,
``to_str_tokens``, ``cfg``, the hook names). docs/python.md in the repository describes every
call, the shapes and the conventions.

This file is the thin pure-Python layer over the native module ``neoprobe._native``: the native
side hands over plain data (float32 bytes, shapes, JSON text) and numpy arrays are made here with
``np.frombuffer``, which adopts the bytes without copying them again.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import (
    DEFAULT_HOOK,
    DEFAULT_LAYER,
    DEFAULT_MODEL,
    DEFAULT_PERMUTATIONS,
    DEFAULT_REVISION,
    DEFAULT_SEED,
    DEFAULT_TOP_K,
)

__version__ = _native.__version__

__all__ = [
    "Model",
    "ActivationCache",
    "Config",
    "ChallengeResult",
    "SweepResult",
    "NeoprobeWarning",
    "Intervention",
    "HookPoint",
    "ablate",
    "mean_ablate",
    "set_value",
    "scale",
    "steer",
    "patch",
    "verify",
    "DEFAULT_MODEL",
    "DEFAULT_REVISION",
    "DEFAULT_HOOK",
    "DEFAULT_LAYER",
]

#: Steps of a run ("model X at revision Y", the adapter and kernels) go here at INFO.
logger = logging.getLogger("neoprobe")

POOLINGS = ("mean", "first", "last", "max", "none")

Progress = Callable[[int, int], Any]


class NeoprobeWarning(UserWarning):
    """What the library says the caller should know about a result (a text cut to the model's
    positions, a setting replaced by the model's limit)."""


class _Notes:
    """Where the native side sends a call's notes: steps to the ``neoprobe`` logger at INFO,
    warnings through ``warnings.warn`` as :class:`NeoprobeWarning`, progress over tokens to the
    caller's ``progress(done, total)``. An exception raised here stops the call at the next batch
    and is raised by it."""

    def __init__(self, progress: Optional[Progress] = None, *, stacklevel: int = 3, quiet: bool = False):
        if progress is not None and not callable(progress):
            raise TypeError("progress must be a callable progress(done, total) or None")
        self._progress = progress
        # Frames from warn() up to the caller's line: warn, the Python frame calling the native
        # side (whose own frames are not Python's), and the callers above it.
        self._stacklevel = stacklevel
        # No warnings: a forward whose warnings another forward of the same call gives.
        self._quiet = quiet

    def step(self, text: str) -> None:
        logger.info(text)

    def warn(self, text: str) -> None:
        if not self._quiet:
            warnings.warn(text, NeoprobeWarning, stacklevel=self._stacklevel)

    def progress(self, what: str, done: int, total: int, unit: str) -> None:
        if self._progress is not None and unit == "tokens":
            self._progress(done, total)


def _array(buffer: bytearray, shape: Sequence[int]) -> np.ndarray:
    """A writable float32 array over ``buffer``'s bytes (no copy)."""
    return np.frombuffer(buffer, dtype=np.float32).reshape(tuple(shape))


class Config(dict):
    """The model's configuration: a dict whose keys are also attributes (``cfg.d_model``,
    ``cfg["d_model"]``), with TransformerLens' names (``n_layers``, ``d_model``, ``d_mlp``,
    ``n_heads``, ``d_head``, ``d_vocab``, ``n_ctx``, ``window_size``, ``attn_types``, ``eps``,
    ``act_fn``) and HF's config.json names (``num_layers``, ``hidden_size``,
    ``intermediate_size``, ``num_heads``, ``vocab_size``, ``max_position_embeddings``,
    ``window_size``, ``layer_norm_epsilon``, ``attention_layers``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __dir__(self) -> Iterable[str]:
        return list(super().__dir__()) + list(self.keys())


class ActivationCache(dict):
    """Hook name → numpy float32 array, in the forward's order, as TransformerLens'
    ``ActivationCache`` is indexed. ``lengths`` holds each sequence's number of tokens (int64
    ``[batch]``): unpooled arrays ``[batch, pos, d]`` are zero past a sequence's length, and so are
    the rows and columns of ``attn.hook_pattern`` ``[batch, heads, pos, pos]``. ``pooling`` says
    how each hook's tokens were pooled (``None`` for the pattern)."""

    def __init__(self, arrays: Dict[str, np.ndarray], lengths: np.ndarray, pooling: Dict[str, Optional[str]]):
        super().__init__(arrays)
        self.lengths = lengths
        self.pooling = pooling


class Intervention:
    """A change to a hook's value before anything downstream reads it (TransformerLens' meaning of
    a hook that returns a new value), run on the GPU inside the forward. Made by :func:`ablate`,
    :func:`mean_ablate`, :func:`set_value`, :func:`scale`, :func:`steer` and :func:`patch`;
    ``flag`` is the equivalent command-line flag of ``neoprobe extract``."""

    def __init__(self, kind: str, target: str, value: Optional[str] = None, arrays: Optional[Dict[str, Any]] = None):
        self.kind = kind
        self.target = target
        self.value = value
        self._arrays = arrays or {}

    @property
    def flag(self) -> str:
        text = self.target if self.value is None else f"{self.target}={self.value}"
        return f"--{self.kind} {text}"

    def __repr__(self) -> str:
        return f"<neoprobe.Intervention {self.flag}>"

    def _spec(self, folder: str) -> Tuple[str, str]:
        """(kind, text) for the native call, the arrays written into ``folder`` first."""
        value = self.value
        for placeholder, (name, write) in self._arrays.items():
            path = os.path.join(folder, name)
            write(path)
            value = value.replace(placeholder, path)
        return self.kind, (self.target if value is None else f"{self.target}={value}")


class HookPoint:
    """What a function of ``fwd_hooks`` is given as ``hook`` (TransformerLens' ``HookPoint``, as
    far as a function reads it): ``name``, the hook's name (``blocks.8.mlp.hook_post``);
    ``lengths``, each sequence's token count (int64 ``[batch]``; the activation is zero past it);
    ``layer()``, the block's index."""

    def __init__(self, name: str, lengths: np.ndarray):
        self.name = name
        self.lengths = lengths

    def layer(self) -> int:
        """The block of a ``blocks.{L}.…`` hook; a ``ValueError`` for the others."""
        parts = self.name.split(".")
        if parts[0] != "blocks":
            raise ValueError(f"{self.name} is not in a block")
        return int(parts[1])

    def __repr__(self) -> str:
        return f"<neoprobe.HookPoint {self.name}>"


def _progress_share(progress: Optional[Progress], run: int, runs: int) -> Optional[Progress]:
    """``progress`` for forward ``run`` of ``runs`` over the same tokens: counts go on from the
    forwards before it, out of all of them."""
    if progress is None:
        return None
    return lambda done, total: progress(run * total + done, runs * total)


def _target(hook: str, neurons: Any = None, positions: Any = None, heads: Any = None) -> str:
    """``HOOK[@POSITIONS][:COLUMNS]`` of the command line's grammar (docs/interventions.md)."""
    if not isinstance(hook, str) or not hook:
        raise ValueError("the hook must be a name such as blocks.8.mlp.hook_post")
    text = hook
    if positions is not None:
        positions = [positions] if isinstance(positions, (int, np.integer)) else list(positions)
        text += "@" + ",".join(str(int(p)) for p in positions)
    columns = []
    if neurons is not None:
        neurons = [neurons] if isinstance(neurons, (int, np.integer)) else list(neurons)
        columns += [str(int(n)) for n in neurons]
    if heads is not None:
        heads = [heads] if isinstance(heads, (int, np.integer)) else list(heads)
        columns += [f"head={int(h)}" for h in heads]
    if columns:
        text += ":" + ",".join(columns)
    return text


def _vector_file(values: Any) -> Tuple[str, Callable[[str], None]]:
    array = np.ascontiguousarray(values, dtype=np.float32)
    return "vector.npy", lambda path: np.save(path, array)


def ablate(hook: str, neurons: Any = None, *, positions: Any = None, heads: Any = None) -> Intervention:
    """Zero ``hook`` (its ``neurons``/columns, ``heads`` of attn.hook_q|k|v|z, ``positions`` inside
    each sequence, negative from its end; all when left out)."""
    return Intervention("ablate", _target(hook, neurons, positions, heads))


def mean_ablate(hook: str, means: Any, neurons: Any = None, *, positions: Any = None, heads: Any = None) -> Intervention:
    """Replace with per-column means: ``means`` is ``[width]`` or ``[n, width]`` (the mean of its
    rows, e.g. a pooled ``run_with_cache`` of reference inputs)."""
    return Intervention("mean-ablate", _target(hook, neurons, positions, heads), "{means}", {"{means}": _vector_file(means)})


def set_value(hook: str, value: float, neurons: Any = None, *, positions: Any = None, heads: Any = None) -> Intervention:
    """Set to the constant ``value``."""
    return Intervention("set", _target(hook, neurons, positions, heads), repr(float(value)))


def scale(hook: str, factor: float, neurons: Any = None, *, positions: Any = None, heads: Any = None) -> Intervention:
    """Multiply by ``factor``."""
    return Intervention("scale", _target(hook, neurons, positions, heads), repr(float(factor)))


def steer(hook: str, vector: Any, scale: float = 1.0, neurons: Any = None, *, positions: Any = None) -> Intervention:
    """Add ``scale × vector`` (``[width]``) at every chosen position."""
    return Intervention("steer", _target(hook, neurons, positions), "{vector}*" + repr(float(scale)), {"{vector}": _vector_file(vector)})


def patch(hook: str, values: Any, lengths: Any = None, neurons: Any = None, *, positions: Any = None, heads: Any = None) -> Intervention:
    """Take ``hook``'s values from another run of inputs that tokenize to the same lengths:
    ``values`` is that run's unpooled array of the hook (``[batch, pos, d]`` with its
    ``lengths``, e.g. ``cache[hook]`` and ``cache.lengths`` of ``run_with_cache(..., pool="none")``)
    or ``[tokens, d]`` rows of every sequence end to end."""
    array = np.asarray(values, dtype=np.float32)
    if array.ndim == 3:
        if lengths is None:
            raise ValueError("patch values [batch, pos, d] need their lengths (cache.lengths)")
        lengths = [int(n) for n in lengths]
        array = np.concatenate([array[i, :n] for i, n in enumerate(lengths)])
    array = np.ascontiguousarray(array)

    def write(path: str) -> None:
        from_lengths = json.dumps([[0] * n for n in lengths]) if lengths is not None else None
        _write_safetensors(path, hook, array, {"token_ids": from_lengths} if from_lengths else {})

    return Intervention("patch", _target(hook, neurons, positions, heads), "{values}", {"{values}": ("values.safetensors", write)})


def _write_safetensors(path: str, name: str, array: np.ndarray, metadata: Dict[str, str]) -> None:
    """One float32 tensor in the safetensors format (8-byte header length, JSON header, data)."""
    header = {name: {"dtype": "F32", "shape": list(array.shape), "data_offsets": [0, array.nbytes]}}
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        f.write(array.astype("<f4").tobytes())


class ChallengeResult:
    """What :meth:`Model.challenge` produced.

    ``activations``: float32 ``[categories, words, d_mlp]`` (``[2, 100, 3072]`` for the challenge
    on GPT-Neo 125M: 0 = verbs, 1 = nouns), as ``activations.npy`` holds it; ``neurons``: the
    columns of ``neurons.csv`` in its order, each a numpy array (``neuron`` int64, the rest
    float64); ``summary``: the ``challenge --json`` dict; ``files``: every file written;
    ``out_dir``: the folder holding them."""

    def __init__(self, activations: np.ndarray, neurons: Dict[str, np.ndarray], summary: dict, files: List[str], out_dir: str):
        self.activations = activations
        self.neurons = neurons
        self.summary = summary
        self.files = files
        self.out_dir = out_dir

    def __repr__(self) -> str:
        return f"ChallengeResult(activations{list(self.activations.shape)}, out_dir={self.out_dir!r})"


class SweepResult:
    """What :meth:`Model.sweep_vocab` produced: ``arrays`` (the tensors of
    ``vocab_topk.safetensors``: ``top_ids``, ``top_values``, ``bottom_ids``, ``bottom_values``
    ``[neurons, top_k]``, ``mean``, ``std`` ``[neurons]``), ``metadata`` (its string metadata),
    ``summary`` (the text the command prints), ``files`` and ``out_dir``."""

    def __init__(self, arrays: Dict[str, np.ndarray], metadata: Dict[str, str], summary: str, files: List[str], out_dir: str):
        self.arrays = arrays
        self.metadata = metadata
        self.summary = summary
        self.files = files
        self.out_dir = out_dir

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __repr__(self) -> str:
        return f"SweepResult({sorted(self.arrays)}, out_dir={self.out_dir!r})"


_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path: Union[str, os.PathLike]) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """The tensors and the metadata of a ``.safetensors`` file (8-byte little-endian header size,
    a JSON header, the data), read with numpy alone."""
    data = Path(path).read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    metadata = header.pop("__metadata__", {}) or {}
    body = memoryview(data)[8 + size :]
    arrays = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]]).newbyteorder("<")
        arrays[name] = np.frombuffer(body[start:end], dtype=dtype).reshape(info["shape"]).copy()
    return arrays, metadata


def _read_neurons_csv(path: Union[str, os.PathLike]) -> Dict[str, np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    columns = {}
    for i, name in enumerate(header):
        values = [row[i] for row in body]
        columns[name] = np.array([int(v) for v in values], dtype=np.int64) if name == "neuron" else np.array(
            [float(v) for v in values], dtype=np.float64
        )
    return columns


def _out_dir(out_dir: Optional[Union[str, os.PathLike]], command: str) -> str:
    """The folder a command writes: the one given, or a fresh temporary folder kept for the
    caller (its path is on the result)."""
    if out_dir is None:
        return tempfile.mkdtemp(prefix=f"neoprobe-{command}-")
    return os.fspath(out_dir)


def _is_int_sequence(value: Any) -> bool:
    return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)


def _token_sequences(inputs: Any) -> List[List[int]]:
    """Token ids as a list of sequences: a 1-D array or list of ints is one sequence; a 2-D
    array or a list of 1-D arrays or lists, one sequence each."""
    if isinstance(inputs, np.ndarray):
        if not np.issubdtype(inputs.dtype, np.integer):
            raise ValueError(f"token ids must be integers, not {inputs.dtype}")
        if inputs.ndim == 1:
            inputs = [inputs]
        elif inputs.ndim != 2:
            raise ValueError(f"token ids must be 1-D (one sequence) or 2-D (one row each), not {inputs.ndim}-D")
    elif _is_int_sequence(inputs):
        inputs = [inputs]
    sequences = []
    for i, sequence in enumerate(inputs):
        array = np.asarray(sequence)
        if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
            raise ValueError(f"sequence {i} of the token ids is not a flat sequence of integers")
        if array.size and array.min() < 0:
            raise ValueError(f"sequence {i} of the token ids holds a negative id ({array.min()})")
        sequences.append([int(v) for v in array])
    return sequences


class Model:
    """A GPT-Neo model on a GPU (or on the CPU through software Vulkan), loaded once, with every
    block and ``ln_final`` so that any hook point or the logits can be read. Make one with
    :meth:`from_pretrained` or :meth:`from_dir`."""

    def __init__(self, native: "_native.NativeModel"):
        self._native = native
        self.cfg = Config(json.loads(native.config_json))

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = DEFAULT_MODEL,
        revision: Optional[str] = None,
        *,
        kernel_variant: Optional[str] = None,
        batch_tokens: Optional[int] = None,
    ) -> "Model":
        """A hub model, fetched into the Hugging Face cache as the command line does (``HF_HOME``,
        ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``). ``revision`` defaults to the pinned
        commit for :data:`DEFAULT_MODEL` and ``main`` for any other model."""
        native = _native.NativeModel.open("hub", model_id, revision, kernel_variant, batch_tokens, _Notes())
        return cls(native)

    @classmethod
    def from_dir(
        cls,
        path: Union[str, os.PathLike],
        *,
        kernel_variant: Optional[str] = None,
        batch_tokens: Optional[int] = None,
    ) -> "Model":
        """A local model folder holding ``config.json``, ``model.safetensors`` and
        ``tokenizer.json`` (as transformers' ``save_pretrained`` writes them); no network."""
        native = _native.NativeModel.open("dir", os.fspath(path), None, kernel_variant, batch_tokens, _Notes())
        return cls(native)

    @property
    def adapter(self) -> str:
        """The GPU adapter's name, e.g. ``llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)``."""
        return self._native.adapter

    @property
    def kernel_variant(self) -> str:
        """The kernels the model runs on: ``simple``, ``cpu`` or ``tiled``."""
        return self._native.kernel_variant

    @property
    def model_dir(self) -> str:
        """The folder the model was read from (a hub model's snapshot in the HF cache)."""
        return self._native.model_dir

    @property
    def name(self) -> str:
        """The hub id, or the folder."""
        return self._native.label

    @property
    def commit(self) -> Optional[str]:
        """The hub commit the files came from (``None`` for a local folder)."""
        return self._native.commit

    @property
    def hook_names(self) -> List[str]:
        """Every hook point of the model, in the forward's order (``logits`` last)."""
        return list(self._native.hook_names)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, adapter={self.adapter!r}, kernel_variant={self.kernel_variant!r})"

    # Tokens.

    def to_tokens(self, input: Union[str, Sequence[str]], prefix_space: bool = False):
        """Token ids, int64, exactly as the text is written: no BOS is prepended (TransformerLens'
        ``prepend_bos=False``; neoprobe runs GPT-Neo's words alone, without one). A str gives
        ``[1, seq]``; a list of str gives a list of 1-D arrays, one per string (not padded)."""
        if isinstance(input, str):
            return np.array([self._native.encode(input, prefix_space)], dtype=np.int64)
        return [np.array(self._native.encode(text, prefix_space), dtype=np.int64) for text in input]

    def to_str_tokens(self, input: Union[str, Sequence[int], np.ndarray], prefix_space: bool = False) -> List[str]:
        """The text of each token: of a str as :meth:`to_tokens` cuts it, or of token ids."""
        if isinstance(input, str):
            ids = self._native.encode(input, prefix_space)
        else:
            ids = [int(v) for v in np.asarray(input).reshape(-1)]
        return self._native.token_texts(ids)

    # Activations.

    def _names(self, names: Any) -> List[str]:
        if names is None:
            return [n for n in self.hook_names if n != "logits"]
        if isinstance(names, str):
            return [names]
        if callable(names):
            return [n for n in self.hook_names if names(n)]
        return list(names)

    def run_with_cache(
        self,
        inputs: Any,
        names: Any = None,
        pool: Optional[str] = None,
        prefix_space: bool = False,
        return_type: Optional[str] = "logits",
        progress: Optional[Progress] = None,
        interventions: Sequence[Intervention] = (),
    ) -> Tuple[Optional[np.ndarray], ActivationCache]:
        """Runs ``inputs`` and returns ``(logits, cache)``: the values are bit-identical to
        ``neoprobe extract``'s for the same input and hooks.

        ``inputs``: a str (one sequence, the whole text), a list of str (each alone, as
        ``extract --words``), or token ids (a list of ints or a 1-D array: one sequence; a list of
        lists or arrays, or a 2-D array: one sequence each).

        ``names``: hook names or patterns (``blocks.*.mlp.hook_pre``, ``blocks.8.*``,
        ``transformer.h.8.mlp.c_fc``), one name, or a callable ``name -> bool`` over
        :attr:`hook_names`; ``None``: every hook but the logits (large for long texts: the
        attention patterns grow with the square of the length).

        ``pool``: ``mean``, ``first``, ``last``, ``max`` or ``none``; ``None``: ``mean`` for a
        list of words (the logits: ``last``), ``none`` for a text or token ids. Pooled arrays are
        ``[batch, d]``, unpooled ``[batch, pos, d]`` (zero past each sequence's length, which is
        ``cache.lengths``); ``attn.hook_pattern`` is ``[batch, heads, pos, pos]``.

        ``return_type``: ``"logits"`` runs the whole model and returns the logits shaped as a hook
        (pooled by the same rule); ``None`` returns ``None`` for them and stops the forward at the
        deepest named hook, the fast path.

        ``progress``: called as ``progress(done, total)`` in tokens after each GPU batch.
        Ctrl-C stops the run between batches with ``KeyboardInterrupt``.

        ``interventions``: :class:`Intervention` values applied on the way (see
        :meth:`run_with_hooks`); the cache then holds the changed values."""
        return self._run(inputs, names, pool, prefix_space, return_type, interventions, _Notes(progress, stacklevel=4))

    @staticmethod
    def _check(pool: Optional[str], return_type: Optional[str], interventions: Sequence[Intervention]) -> None:
        if return_type not in ("logits", None):
            raise ValueError(f'return_type "{return_type}" is not one of "logits", None')
        if pool is not None and pool not in POOLINGS:
            raise ValueError(f'pool "{pool}" is not one of {", ".join(POOLINGS)}')
        for i, intervention in enumerate(interventions):
            if isinstance(intervention, Intervention):
                continue
            if isinstance(intervention, tuple) and len(intervention) == 2 and callable(intervention[1]):
                raise TypeError(f"interventions[{i}] is a (name, function) pair; pass those as fwd_hooks=[...]")
            raise TypeError(f"interventions[{i}] is a {type(intervention).__name__}; make it with neoprobe.ablate, steer, patch, …")

    def _run(
        self,
        inputs: Any,
        names: Any,
        pool: Optional[str],
        prefix_space: bool,
        return_type: Optional[str],
        interventions: Sequence[Intervention],
        notes: _Notes,
    ) -> Tuple[Optional[np.ndarray], ActivationCache]:
        """One forward: what :meth:`run_with_cache` returns, the notes going to ``notes``."""
        interventions = list(interventions)
        self._check(pool, return_type, interventions)
        kind, data = self._input(inputs)
        with tempfile.TemporaryDirectory(prefix="neoprobe-interventions-") as folder:
            specs = []
            for i, intervention in enumerate(interventions):
                own = os.path.join(folder, str(i))
                os.mkdir(own)
                specs.append(intervention._spec(own))
            hooks, logits, lengths = self._native.run(
                kind, data, self._names(names), pool, bool(prefix_space), return_type == "logits", specs, notes
            )
        arrays = {name: _array(buffer, shape) for name, shape, _, buffer in hooks}
        pooling = {name: how for name, _, how, _ in hooks}
        cache = ActivationCache(arrays, np.array(lengths, dtype=np.int64), pooling)
        return (_array(logits[3], logits[1]) if logits is not None else None), cache

    def run_with_hooks(
        self,
        inputs: Any,
        interventions: Sequence[Intervention] = (),
        names: Any = (),
        pool: Optional[str] = None,
        prefix_space: bool = False,
        return_type: Optional[str] = "logits",
        progress: Optional[Progress] = None,
        *,
        fwd_hooks: Sequence[Tuple[Any, Callable[..., Any]]] = (),
    ) -> Any:
        """Runs ``inputs`` with ``interventions`` (:func:`ablate`, :func:`mean_ablate`,
        :func:`set_value`, :func:`scale`, :func:`steer`, :func:`patch`), all applied on the GPU in
        one forward, each where its hook is produced and before anything downstream reads it.
        Returns the logits as :meth:`run_with_cache` shapes them, and with ``names`` given,
        ``(logits, cache)``. The values equal ``neoprobe extract``'s with the same flags.

        ``fwd_hooks``: TransformerLens' ``(name, function)`` pairs, the slow path. ``name`` is a
        hook name, a pattern (``blocks.*.mlp.hook_post``) or a callable ``name -> bool`` over
        :attr:`hook_names`; each hook it names must be one an intervention can change.
        ``function(activation, hook=hook)`` is given the hook's value unpooled (float32
        ``[batch, pos, d]``, zero past each sequence's length) and a :class:`HookPoint`, and
        returns the new value (same shape, float32), or ``None`` after changing the array in
        place. The hooks run in the forward's order, each seeing the changes made before it (the
        ``interventions`` included, which apply first at a shared hook). Each hooked point costs a
        forward up to it, its value sent to the host and back; the result then is that of one
        forward with every returned value patched in. ``progress`` counts the tokens of all of
        these forwards."""
        names = list(names) if not callable(names) and not isinstance(names, str) else names
        interventions = list(interventions)
        if not fwd_hooks:
            logits, cache = self._run(inputs, names, pool, prefix_space, return_type, interventions, _Notes(progress, stacklevel=4))
        else:
            logits, cache = self._run_with_fwd_hooks(inputs, fwd_hooks, interventions, names, pool, prefix_space, return_type, progress)
        return (logits, cache) if names else logits

    def _fwd_hook_points(self, fwd_hooks: Sequence[Tuple[Any, Callable[..., Any]]]) -> List[Tuple[str, List[Callable[..., Any]]]]:
        """Each hook ``fwd_hooks`` names, in the forward's order, with its functions in the order
        given; a hook no intervention can change is the error an intervention on it gets."""
        if isinstance(fwd_hooks, tuple) and len(fwd_hooks) == 2 and callable(fwd_hooks[1]) and not isinstance(fwd_hooks[0], tuple):
            raise TypeError("fwd_hooks is a list of (name, function) pairs: fwd_hooks=[(name, function)]")
        functions: Dict[str, List[Callable[..., Any]]] = {}
        for i, entry in enumerate(fwd_hooks):
            if not isinstance(entry, (tuple, list)) or len(entry) != 2:
                raise TypeError(f"fwd_hooks[{i}] is a {type(entry).__name__}; each is a (name, function) pair")
            name, function = entry
            if not callable(function):
                raise TypeError(f"fwd_hooks[{i}]: {function!r} is not callable; each is (name, function(activation, hook))")
            if isinstance(name, str):
                patterns, label = [name], f'"{name}"'
            elif callable(name):
                patterns, label = [n for n in self.hook_names if name(n)], "(a filter)"
                if not patterns:
                    raise ValueError(f"fwd_hooks[{i}]: the filter matches no hook of this model")
            else:
                raise TypeError(f"fwd_hooks[{i}]: the name is a {type(name).__name__}; pass a hook name, a pattern or a callable name -> bool")
            for pattern in patterns:
                try:
                    hooks = self._native.expand_hooks(pattern, True)
                except ValueError as error:
                    raise ValueError(f"fwd_hooks[{i}] {label}: {error}") from None
                for hook in hooks:
                    functions.setdefault(hook, []).append(function)
        order = {name: i for i, name in enumerate(self.hook_names)}
        return sorted(functions.items(), key=lambda item: order[item[0]])

    def _run_with_fwd_hooks(
        self,
        inputs: Any,
        fwd_hooks: Sequence[Tuple[Any, Callable[..., Any]]],
        interventions: List[Intervention],
        names: Any,
        pool: Optional[str],
        prefix_space: bool,
        return_type: Optional[str],
        progress: Optional[Progress],
    ) -> Tuple[Optional[np.ndarray], ActivationCache]:
        """For each hooked point in the forward's order: a forward up to it with the values
        returned so far patched in, its value through the functions, and a patch of the result;
        then the whole run with every patch. A patch copies the values as they are (but for a
        -0.0, which the kernel's 0 + v stores as 0.0), so a function that returns its input
        changes no bit of the result."""
        _Notes(progress)
        self._check(pool, return_type, interventions)
        if names and not callable(names):
            for pattern in [names] if isinstance(names, str) else names:
                self._native.expand_hooks(pattern, False)
        points = self._fwd_hook_points(fwd_hooks)
        runs = len(points) + 1
        patches: List[Intervention] = []
        for run, (name, functions) in enumerate(points):
            notes = _Notes(_progress_share(progress, run, runs), quiet=True)
            _, cache = self._run(inputs, [name], "none", prefix_space, None, interventions + patches, notes)
            value, lengths = cache[name], cache.lengths
            hook = HookPoint(name, lengths.copy())
            for function in functions:
                result = function(value, hook=hook)
                if result is None:
                    continue
                if not isinstance(result, np.ndarray) or result.dtype != np.float32 or result.shape != value.shape:
                    what = f"a {result.dtype} array of shape {result.shape}" if isinstance(result, np.ndarray) else f"a value of type {type(result).__name__}"
                    raise ValueError(
                        f"the fwd_hooks function {getattr(function, '__name__', repr(function))} on {name} returned {what}; "
                        f"it must return a float32 array of shape {value.shape} ([batch, pos, d], as it was given) "
                        "or None after changing that array in place"
                    )
                value = result
            patches.append(patch(name, value, lengths))
        notes = _Notes(_progress_share(progress, runs - 1, runs), stacklevel=5)
        return self._run(inputs, names, pool, prefix_space, return_type, interventions + patches, notes)

    def __call__(self, inputs: Any, pool: Optional[str] = None, prefix_space: bool = False, progress: Optional[Progress] = None) -> np.ndarray:
        """The logits of ``inputs``, shaped and pooled as :meth:`run_with_cache` returns them."""
        logits, _ = self._run(inputs, [], pool, prefix_space, "logits", (), _Notes(progress, stacklevel=4))
        return logits

    @staticmethod
    def _input(inputs: Any) -> Tuple[str, Any]:
        if isinstance(inputs, str):
            return "text", inputs
        if isinstance(inputs, np.ndarray):
            return "tokens", _token_sequences(inputs)
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 0:
                raise ValueError("inputs is empty; pass a text, a list of words or token ids")
            if all(isinstance(v, str) for v in inputs):
                return "words", list(inputs)
            if any(isinstance(v, str) for v in inputs):
                raise ValueError("inputs mixes str and token ids; pass words or token ids")
            return "tokens", _token_sequences(inputs)
        raise TypeError(f"inputs must be a str, a list of str or token ids, not {type(inputs).__name__}")

    # The commands.

    def challenge(
        self,
        out_dir: Optional[Union[str, os.PathLike]] = None,
        *,
        layer: int = DEFAULT_LAYER,
        pool: str = "mean",
        prefix_space: bool = False,
        categories: Optional[Dict[str, Union[str, os.PathLike]]] = None,
        permutations: int = DEFAULT_PERMUTATIONS,
        seed: int = DEFAULT_SEED,
        sweeps: Sequence[Union[str, os.PathLike]] = (),
        causal: bool = True,
        causal_neurons: int = 10,
        causal_sets: Optional[int] = None,
        causal_ablation: str = "zero",
        force: bool = False,
        progress: Optional[Progress] = None,
    ) -> ChallengeResult:
        """``neoprobe challenge`` on this model (same folder or hub commit, same kernels and batch
        size) into ``out_dir`` (default: a fresh temporary folder, kept). ``categories``: name →
        word-list file, in order (default: the built-in verbs and nouns). ``causal=False`` is
        ``--no-causal``; ``causal_sets=None``: the adapter's default (``--causal-sets``)."""
        out = _out_dir(out_dir, "challenge")
        listed = None if categories is None else [(name, os.fspath(path)) for name, path in categories.items()]
        causal_args = (causal_neurons, causal_sets, causal_ablation) if causal else None
        summary, files, shape, activations = self._native.challenge(
            out, force, listed, layer, pool, prefix_space, permutations, seed,
            [os.fspath(s) for s in sweeps], causal_args, _Notes(progress),
        )
        files = [os.fspath(f) for f in files]
        return _challenge_result(json.loads(summary), files, out, activations=_array(activations, shape))

    def explain(
        self,
        word: str,
        neuron: int,
        layer: int = DEFAULT_LAYER,
        *,
        prefix_space: bool = False,
        out_dir: Optional[Union[str, os.PathLike]] = None,
        force: bool = False,
    ) -> dict:
        """``neoprobe explain``: the ``--json`` dict of one neuron's value for one word. Its files
        go into ``out_dir`` (default: a fresh temporary folder), named by ``result["out_dir"]``."""
        out = _out_dir(out_dir, "explain")
        explanation, files = self._native.explain(word, neuron, layer, prefix_space, out, force, _Notes())
        result = json.loads(explanation)
        result["out_dir"] = out
        result["files"] = [os.fspath(f) for f in files]
        return result

    def trace(
        self,
        words: Optional[Union[str, os.PathLike]] = None,
        text: Optional[Union[str, os.PathLike]] = None,
        hook: str = DEFAULT_HOOK,
        *,
        out_dir: Optional[Union[str, os.PathLike]] = None,
        force: bool = False,
    ) -> dict:
        """``neoprobe trace``: the ``--json`` dict of every dispatch of the forward up to ``hook``,
        on a word-list file, a text file, or (neither) the challenge's words."""
        out = _out_dir(out_dir, "trace")
        report, files = self._native.trace(
            None if words is None else os.fspath(words),
            None if text is None else os.fspath(text),
            hook, out, force, _Notes(),
        )
        result = json.loads(report)
        result["out_dir"] = out
        result["files"] = [os.fspath(f) for f in files]
        return result

    def sweep_vocab(
        self,
        out_dir: Optional[Union[str, os.PathLike]] = None,
        top_k: int = DEFAULT_TOP_K,
        hook: str = DEFAULT_HOOK,
        *,
        prefix_space: bool = False,
        force: bool = False,
        progress: Optional[Progress] = None,
    ) -> SweepResult:
        """``neoprobe sweep vocab``: every token alone through ``hook``; per neuron the top and
        bottom ``top_k`` tokens, the mean and SD, read back from ``vocab_topk.safetensors``."""
        out = _out_dir(out_dir, "sweep-vocab")
        summary, files = self._native.sweep_vocab(hook, prefix_space, top_k, out, force, _Notes(progress))
        files = [os.fspath(f) for f in files]
        topk = next(f for f in files if f.endswith("vocab_topk.safetensors"))
        arrays, metadata = read_safetensors(topk)
        return SweepResult(arrays, metadata, summary, files, out)


def _challenge_result(summary: dict, files: List[str], out_dir: str, activations: Optional[np.ndarray] = None, neurons: Optional[Dict[str, np.ndarray]] = None) -> ChallengeResult:
    """The challenge's result: the activations as the run handed them over, the neuron table as
    neurons.csv prints it (the values a reader of the file gets)."""
    if activations is None:
        activations = np.load(next(f for f in files if f.endswith("activations.npy")))
    if neurons is None:
        neurons = _read_neurons_csv(next(f for f in files if f.endswith("neurons.csv")))
    return ChallengeResult(activations, neurons, summary, files, out_dir)


def verify(model: Model, kernel_variants: Optional[Sequence[str]] = None, *, _inject_fault: Optional[str] = None) -> dict:
    """``neoprobe verify`` on this model (every kernel variant the adapter runs, or
    ``kernel_variants``): the ``--json`` dict. A failing check does not raise: the dict's
    ``pass`` is False and the check says by how much. (``_inject_fault``, for tests: compile a
    deliberate error into the kernels, ``linear``, ``attention`` or ``layernorm``.)"""
    report = model._native.verify(list(kernel_variants or []), _inject_fault, _Notes())
    return json.loads(report)
