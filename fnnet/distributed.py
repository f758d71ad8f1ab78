"""Data parallelism over a one-axis device mesh named 'data', on one process or many.

    mesh = make_mesh(4)                            # None keeps the single-device path unchanged
    check_batch(batch_size, mesh)
    run = shard_chunk(chunk, mesh)                 # chunk(params, state, opt_state, x, t, idx, keys)
    params, state, opt_state, x, t = put_replicated((params, state, opt_state, x, t), mesh)
    idx, keys = put_sharded(idx, mesh, axis=1), put_replicated(keys, mesh)
    (params, state, opt_state), losses = run(params, state, opt_state, x, t, idx, keys)

Layout: the whole training set x, t, the parameters, the model state and the optimizer state are
replicated on every device; the index batches idx (L, batch) are sharded along their batch axis, so
the gather x[idx] inside each step of the scan yields a batch-sharded (batch, ...) array without any
communication. The hand-written loss_and_grad is a mean over the batch, so under jit the compiler
turns its batch reductions (the loss, dW = x.T @ dy, Batch Norm's statistics) into all-reduces:
the gradients, the loss and Batch Norm's statistics are those of the global batch, as on one device.

Random numbers do not depend on the device count: a jitted program means the same on any sharding,
and every key (the step keys, dropout's fold_in keys, augmentation's) is derived from replicated keys.
`jax.config.jax_threefry_partitionable` (True by default since JAX 0.5) only decides whether the
compiler can split the random draws across devices instead of computing them whole on each;
fnnet leaves it as JAX sets it, since changing it would change every random number of a seed.

Several processes: call `initialize` first in every process (it runs `jax.distributed.initialize`);
`jax.devices()` then lists the devices of all processes and `make_mesh` spans them. Every process
holds the same host arrays (same data files, same seed), and the `put_*` helpers make global arrays
from them, each process transferring only the shards its own devices hold. `put_local` is the other
way in: a process gives only its own rows of a batch (`process_slice` says which).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "make_mesh",
    "device_count",
    "replicated",
    "batch_sharding",
    "check_batch",
    "shard_chunk",
    "shard_eval",
    "eval_batches",
    "put_replicated",
    "put_sharded",
    "put_local",
    "process_slice",
    "initialize",
    "is_main_process",
]

DATA_AXIS = "data"
ENV_COORDINATOR = "FNNET_COORDINATOR"
ENV_NUM_PROCESSES = "FNNET_NUM_PROCESSES"
ENV_PROCESS_ID = "FNNET_PROCESS_ID"


# ----------------------------------------------------------------------------- the mesh


def make_mesh(devices, *, fn: str = "make_mesh") -> Mesh | None:
    """A one-axis Mesh named 'data' from None (-> None: one device, no mesh), an int N (the first N
    of jax.devices()), 'all', a list of devices, or a Mesh whose one axis is named 'data'. Errors
    begin with `fn`, the caller's name (`fit` and `evaluate` pass their own)."""
    if devices is None:
        return None
    if isinstance(devices, Mesh):
        if tuple(devices.axis_names) != (DATA_AXIS,):
            raise ValueError(
                f"{fn}: devices must be a Mesh with one axis named {DATA_AXIS!r}, "
                f"got axes {tuple(devices.axis_names)} of shape {dict(devices.shape)}"
            )
        return devices
    available = jax.devices()
    if isinstance(devices, str):
        if devices != "all":
            raise ValueError(
                f"{fn}: devices must be an int, 'all', a list of devices or a Mesh, got {devices!r}"
            )
        chosen = available
    elif isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n = int(devices)
        if n < 1:
            raise ValueError(f"{fn}: devices must be >= 1, got {n}")
        if n > len(available):
            raise ValueError(
                f"{fn}: devices={n} but only {len(available)} device(s) are available "
                f"({available[0].platform}: {len(available)})"
            )
        chosen = available[:n]
    elif isinstance(devices, Sequence) and not isinstance(devices, (bytes, bytearray)):
        chosen = list(devices)
        if not chosen:
            raise ValueError(f"{fn}: devices is an empty list")
        bad = [d for d in chosen if not isinstance(d, jax.Device)]
        if bad:
            raise TypeError(f"{fn}: devices must hold jax.Device objects, got {bad[0]!r}")
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"{fn}: devices lists a device twice: {chosen}")
    else:
        raise TypeError(
            f"{fn}: devices must be None, an int, 'all', a list of devices or a Mesh, "
            f"got {type(devices).__name__}"
        )
    if jax.process_count() > 1:
        per = {i: sum(d.process_index == i for d in chosen) for i in range(jax.process_count())}
        if len(set(per.values())) != 1:
            raise ValueError(
                f"{fn}: a mesh over {jax.process_count()} processes needs the same number of devices "
                f"from each, got {per} (process: devices); use devices='all'"
            )
    return Mesh(np.array(chosen, dtype=object), (DATA_AXIS,))


def device_count(mesh: Mesh | None) -> int:
    """The number of devices the batch is split over (1 without a mesh)."""
    return 1 if mesh is None else mesh.shape[DATA_AXIS]


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, ndim: int, axis: int = 0) -> NamedSharding:
    """An ndim-dimensional array split along `axis` over the 'data' devices, whole along the others."""
    if not 0 <= axis < ndim:
        raise ValueError(f"batch_sharding: axis must be in [0, {ndim}) for ndim {ndim}, got {axis}")
    return NamedSharding(mesh, P(*([None] * axis), DATA_AXIS))


def check_batch(batch_size: int, mesh: Mesh | None, name: str = "batch_size", *,
                fn: str = "check_batch") -> None:
    """Raise ValueError when the devices of the mesh do not divide the batch size; the message
    begins with `fn` (the caller's name) and calls the size `name`."""
    d = device_count(mesh)
    if batch_size % d:
        lo, hi = batch_size // d * d, -(-batch_size // d) * d
        near = f"{lo} or {hi}" if lo else f"{hi}"
        raise ValueError(
            f"{fn}: {name} {batch_size} is not divisible by the {d} devices it is split over; "
            f"use a multiple of {d} (e.g. {near})"
        )


# ----------------------------------------------------------------------------- compiled functions


def shard_chunk(chunk: Callable, mesh: Mesh | None, donate_argnums=(0, 1, 2)):
    """jit of the (not yet jitted) epoch chunk chunk(params, state, opt_state, x, t, idx, keys) ->
    ((params, state, opt_state), losses, ...): without a mesh exactly jax.jit(chunk, donate_argnums);
    with one, idx (L, batch) is split along its batch axis and everything else (inputs and outputs)
    is replicated."""
    if mesh is None:
        return jax.jit(chunk, donate_argnums=donate_argnums)
    rep, idx = replicated(mesh), batch_sharding(mesh, 2, 1)
    return jax.jit(
        chunk,
        in_shardings=(rep, rep, rep, rep, rep, idx, rep),
        out_shardings=rep,
        donate_argnums=donate_argnums,
    )


def shard_eval(count: Callable, mesh: Mesh | None):
    """jit of count(params, state, xb, tb) -> number correct over padded batches xb (B, b, ...), tb (B, b):
    without a mesh plain jax.jit; with one, xb and tb are split along b, params and state replicated."""
    if mesh is None:
        return jax.jit(count)
    rep, b = replicated(mesh), batch_sharding(mesh, 2, 1)
    return jax.jit(count, in_shardings=(rep, rep, b, b), out_shardings=rep)


def eval_batches(x, labels, batch_size: int, mesh: Mesh | None):
    """(xb (B, b, ...), tb (B, b), n): x and labels padded (label -1, which no prediction matches) to B
    batches of b = min(batch_size, n) rounded up to a multiple of the device count, placed for
    `shard_eval`. The padding changes no count."""
    x, labels = np.asarray(x), np.asarray(labels)
    n, d = x.shape[0], device_count(mesh)
    if int(batch_size) < 1 or n == 0 or labels.shape != (n,):
        raise ValueError(
            f"eval_batches: need batch_size >= 1 and labels (N,) for x (N, ...) with N >= 1, "
            f"got batch_size {batch_size}, x {x.shape}, labels {labels.shape}"
        )
    b = -(-min(int(batch_size), n) // d) * d
    nb = -(-n // b)
    pad = nb * b - n
    if pad:
        x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
        labels = np.concatenate([labels, np.full(pad, -1, labels.dtype)])
    xb, tb = x.reshape((nb, b) + x.shape[1:]), labels.reshape(nb, b)
    if mesh is None:
        return jnp.asarray(xb), jnp.asarray(tb), n
    return put_sharded(xb, mesh, 1), put_sharded(tb, mesh, 1), n


# ----------------------------------------------------------------------------- placing arrays


def _put(value, sharding: NamedSharding):
    if jax.process_count() == 1:
        return jax.device_put(value, sharding, may_alias=False)
    if isinstance(value, jax.Array) and not value.is_fully_addressable:
        return jax.jit(jnp.copy, out_shardings=sharding)(value)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def put_replicated(tree, mesh: Mesh | None):
    """Every leaf of `tree` (the same value in every process) as a fresh array on every device of the
    mesh; without a mesh, on the default device as today."""
    if mesh is None:
        return jax.tree_util.tree_map(jnp.array, tree)
    rep = replicated(mesh)
    return jax.tree_util.tree_map(lambda a: _put(a, rep), tree)


def put_sharded(array, mesh: Mesh | None, axis: int = 0):
    """A global array split along `axis` from `array`, the whole of it, the same in every process;
    each process transfers only the shards its own devices hold."""
    if mesh is None:
        return jnp.array(array)
    shape = np.shape(array)
    check_batch(shape[axis], mesh, name=f"axis {axis} of shape {shape}: length", fn="put_sharded")
    return _put(array, batch_sharding(mesh, np.ndim(array), axis))


def process_slice(mesh: Mesh | None, size: int, axis: int = 0, ndim: int | None = None) -> slice:
    """The rows [lo, hi) of a batch axis of `size` split over the mesh that this process's devices hold
    (all of them with one process). They are contiguous: the devices of a process come together in a
    mesh made by make_mesh from jax.devices()."""
    if mesh is None:
        return slice(0, size)
    ndim = axis + 1 if ndim is None else ndim
    shape = tuple(size if i == axis else 1 for i in range(ndim))
    spans = sorted(
        {(ix[axis].start or 0, size if ix[axis].stop is None else ix[axis].stop)
         for ix in batch_sharding(mesh, ndim, axis).addressable_devices_indices_map(shape).values()}
    )
    lo, hi = spans[0][0], spans[-1][1]
    if sum(b - a for a, b in spans) != hi - lo:
        raise ValueError(
            f"process_slice: the devices of process {jax.process_index()} hold rows {spans} of {size}, "
            "not one contiguous range; order the mesh's devices by process"
        )
    return slice(lo, hi)


def put_local(local, mesh: Mesh | None, axis: int = 0, size: int | None = None):
    """A global array split along `axis` from this process's own rows `local` (those of
    process_slice(mesh, size, axis)); `size` is the global length of that axis (default: local's
    length times the number of processes). Other axes are whole in every process."""
    local = np.asarray(local)
    if mesh is None:
        return jnp.array(local)
    shape = list(local.shape)
    shape[axis] = local.shape[axis] * jax.process_count() if size is None else int(size)
    check_batch(shape[axis], mesh, name=f"axis {axis} of global shape {tuple(shape)}: length",
                fn="put_local")
    mine = process_slice(mesh, shape[axis], axis, local.ndim)
    if mine.stop - mine.start != local.shape[axis]:
        raise ValueError(
            f"put_local: process {jax.process_index()} holds rows {mine.start}:{mine.stop} of axis {axis} "
            f"({mine.stop - mine.start} rows) but local has {local.shape[axis]} (shape {local.shape})"
        )
    return jax.make_array_from_process_local_data(batch_sharding(mesh, local.ndim, axis), local, tuple(shape))


# ----------------------------------------------------------------------------- several processes


def _env_int(fn, var, value):
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{fn}: {var} must be an integer, got {value!r}") from None


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Join a multi-process run through jax.distributed.initialize, before any other JAX call.

    Arguments left None are read from FNNET_COORDINATOR (host:port of process 0),
    FNNET_NUM_PROCESSES and FNNET_PROCESS_ID. Returns False, doing nothing, when none of the three is
    given (a single process); raises ValueError when only some are. On the CPU the cross-process
    collectives use gloo (set when jax_cpu_collectives_implementation is unset)."""
    fn = "initialize"
    if coordinator is None:
        coordinator = os.environ.get(ENV_COORDINATOR) or None
    if num_processes is None and os.environ.get(ENV_NUM_PROCESSES):
        num_processes = _env_int(fn, ENV_NUM_PROCESSES, os.environ[ENV_NUM_PROCESSES])
    if process_id is None and os.environ.get(ENV_PROCESS_ID):
        process_id = _env_int(fn, ENV_PROCESS_ID, os.environ[ENV_PROCESS_ID])
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    if all(v is None for v in given.values()):
        return False
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise ValueError(
            f"{fn}: a multi-process run needs coordinator, num_processes and process_id (or "
            f"{ENV_COORDINATOR}, {ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); missing {', '.join(missing)}"
        )
    if not isinstance(coordinator, str) or not coordinator.rpartition(":")[2].isdigit():
        raise ValueError(f"{fn}: coordinator must be 'host:port', got {coordinator!r}")
    for name in ("num_processes", "process_id"):
        v = given[name]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{fn}: {name} must be an integer, got {v!r}")
    num_processes, process_id = int(num_processes), int(process_id)
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"{fn}: need num_processes >= 1 and 0 <= process_id < num_processes, "
            f"got num_processes={num_processes}, process_id={process_id}"
        )
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)
    return True


def is_main_process() -> bool:
    """True in process 0 (and in a single-process run): the one that writes files and prints."""
    return jax.process_index() == 0

