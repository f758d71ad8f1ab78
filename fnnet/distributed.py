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

How close to one device: each step's results are those of one device within float32 rounding (the
batch sums are added in another order: the gradients differ by up to 1e-7, by about 1e-8 where they
are near 0). Adam's first steps turn that into parameter differences of up to about 3e-6 where a
gradient is near 0 (lr 1e-3 times 1e-8 over eps / sqrt(1 - beta2) = 3.2e-6), and the biases in
front of Batch Norm, whose exact gradient is 0, follow rounding noise. A network with ReLU can go
further: about once in a million activations a pre-activation lies within that rounding of 0 and
passes its gradient on one device but not on the other, and the runs then part by up to the
learning rate. Measured with MultiLayerNet (5 x 100, Batch Norm, dropout 0.1, Adam) on the digits,
4 devices against 1 over 2 epochs: 3 seeds of 8 beyond 1e-5 (up to 1.6e-3; 4 of 8, up to 4.6e-3,
before the built-in networks became `serial` stacks), while the same runs with sigmoid stay within
6e-7; the per-step losses agree within 6e-4 and the test accuracies are equal.

Random numbers do not depend on the device count: a jitted program means the same on any sharding,
and every key (the step keys, dropout's keys, augmentation's) is derived from replicated keys.
`jax.config.jax_threefry_partitionable` (True by default since JAX 0.5) only decides whether the
compiler can split the random draws across devices instead of computing them whole on each;
fnnet leaves it as JAX sets it, since changing it would change every random number of a seed.

Several processes: call `initialize` first in every process (it runs `jax.distributed.initialize`
after a handshake of its own that fails with one line, DistributedInitError, when the processes have
not all joined within a deadline, INIT_TIMEOUT_S = 60 s by default, and that keeps the processes
connected, so that when one dies the others stop in one line, exit status 75); `jax.devices()` then
lists the devices of all processes and `make_mesh` spans them. Every process holds the same host
arrays (same data files, same seed), and the `put_*` helpers make global arrays from them, each
process transferring only the shards its own devices hold. `put_local` is the other way in: a
process gives only its own rows of a batch (`process_slice` says which).
"""

from __future__ import annotations

import atexit
import errno
import os
import select
import selectors
import socket
import sys
import threading
import time
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
    "DistributedInitError",
    "is_main_process",
]

DATA_AXIS = "data"
ENV_COORDINATOR = "FNNET_COORDINATOR"
ENV_NUM_PROCESSES = "FNNET_NUM_PROCESSES"
ENV_PROCESS_ID = "FNNET_PROCESS_ID"
ENV_INIT_TIMEOUT = "FNNET_INIT_TIMEOUT"
INIT_TIMEOUT_S = 60  # seconds that initialize waits for all processes to join, by default


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


class DistributedInitError(RuntimeError):
    """The processes of a multi-process run did not all meet at the coordinator in time, or the
    coordinator could not be reached or started; the message is one line that names the coordinator,
    this process and, where known, the processes that are missing."""


def _parse_coordinator(fn, coordinator) -> tuple[str, int]:
    """(host, port) of 'host:port' (an IPv6 host in brackets: '[::1]:1234'), port in 1..65535."""
    if not isinstance(coordinator, str):
        raise ValueError(f"{fn}: coordinator must be 'host:port', got {coordinator!r}")
    host, sep, port = coordinator.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(
            f"{fn}: coordinator must be 'host:port' with an IPv6 host in brackets ('[::1]:1234'), "
            f"got {coordinator!r}"
        )
    if not sep or not host.strip() or not port:
        raise ValueError(f"{fn}: coordinator must be 'host:port', got {coordinator!r}")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"{fn}: the port of coordinator {coordinator!r} must be an integer from 1 to 65535, got {port!r}"
        )
    return host, int(port)


def _init_timeout(fn, timeout, from_env: bool) -> int:
    """The argument `timeout`, else FNNET_INIT_TIMEOUT (read only when from_env), else INIT_TIMEOUT_S."""
    if timeout is None:
        raw = os.environ.get(ENV_INIT_TIMEOUT, "") if from_env else ""
        if not raw.strip():
            return INIT_TIMEOUT_S
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{fn}: {ENV_INIT_TIMEOUT} must be a whole number of seconds >= 1, got {raw!r}")
        return value
    if isinstance(timeout, bool) or not isinstance(timeout, (int, np.integer)):
        raise TypeError(f"{fn}: timeout must be a whole number of seconds >= 1, got {timeout!r}")
    if timeout < 1:
        raise ValueError(f"{fn}: timeout must be a whole number of seconds >= 1, got {int(timeout)}")
    return int(timeout)


def _processes(ids) -> str:
    """'process 1' or 'processes 1-3, 5'."""
    ids = sorted(ids)
    runs, start = [], None
    for k, i in enumerate(ids):
        if start is None:
            start = i
        if k + 1 == len(ids) or ids[k + 1] != i + 1:
            runs.append(f"{start}" if start == i else f"{start}-{i}")
            start = None
    return ("process " if len(ids) == 1 else "processes ") + ", ".join(runs)


# The handshake before jax.distributed.initialize, on the coordinator's address, one line per message:
# each process i > 0 connects and sends HELLO i N; process 0 answers every change of the set of joined
# processes with "joined 0,1,..." to all of them and "go" once all N have joined, or "error TEXT" to a
# process it refuses. The connections then stay open for the rest of the run: they are the link
# (`_Link`) through which every process learns at once that another one died.
_HELLO = "fnnet-initialize-2"
_POLL_S = 0.25  # the longest single wait inside the handshake and the link, so that deadlines are kept
_BEAT_S = 1.0  # every process says "beat" on the link this often; silence for the timeout means it is gone
_MAX_LINE = 256  # the longest line of the handshake
ENV_JAX_BIND = "JAX_COORDINATOR_BIND_ADDRESS"  # where process 0 listens instead of the coordinator's address
JAX_INIT_GRACE_S = 10  # JAX's own initialization timeout is this much longer than fnnet's, which comes first
JAX_HEARTBEAT_S = 100  # JAX's default: a process silent this long is dead (fnnet's link says it sooner)
EXIT_PEER_LOST = 75  # the exit status of a process stopped because another one of the run is gone


def _send(conn, line: str) -> bool:
    try:
        conn.sendall(line.encode() + b"\n")
        return True
    except OSError:
        return False


def _warn(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _address_text(address) -> str:
    """'host:port' of a socket address ('[host]:port' for IPv6)."""
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_address(fn, host, port):
    """(host, port) where process 0 listens: the coordinator's own address, or JAX_COORDINATOR_BIND_ADDRESS
    when it is set (JAX's service reads the same variable)."""
    raw = os.environ.get(ENV_JAX_BIND, "").strip()
    if not raw:
        return host, port
    try:
        return _parse_coordinator(fn, raw)
    except ValueError:
        raise ValueError(f"{fn}: {ENV_JAX_BIND} must be 'host:port' (an IPv6 host in brackets) with a port "
                         f"from 1 to 65535, got {raw!r}") from None


def _listen(fn, coordinator, host, port, n):
    """A socket listening on (host, port) only, the address the other processes are told to reach,
    not on every interface of the machine (where anyone who can reach any of them could talk to it)."""
    last = None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as e:
        infos, last = [], e
    for family, _, _, _, address in infos:
        try:
            dual = family == socket.AF_INET6 and host == "::" and socket.has_dualstack_ipv6()
            return socket.create_server(address, family=family, backlog=n, dualstack_ipv6=dual)
        except OSError as e:
            last = e
    hint = "choose a free port"
    if getattr(last, "errno", None) == errno.EADDRNOTAVAIL or isinstance(last, socket.gaierror):
        hint = f"the coordinator's host must be an address of process 0's machine (or set {ENV_JAX_BIND})"
    code = getattr(last, "errno", None)
    reason = os.strerror(code) if code and code > 0 else getattr(last, "strerror", None) or last
    raise DistributedInitError(
        f"{fn}: process 0 cannot listen on port {port} for the coordinator {coordinator}: {reason}; {hint}"
    ) from None


def _host_handshake(fn, coordinator, bind, n, timeout, deadline) -> dict:
    """Process 0: accept the other processes on `bind` until all have joined or the deadline; returns
    their connections {process id: socket}, left open. A connection that does not speak the handshake,
    or says something that cannot be (a process id out of range or taken, another num_processes), is
    refused with one line on stderr and the others are still waited for: it stops only that process."""
    server = _listen(fn, coordinator, *bind, n)
    sel = selectors.DefaultSelector()
    sel.register(server, selectors.EVENT_READ)
    unknown: dict = {}  # connection -> (its address, bytes received before its HELLO line)
    joined: dict = {}  # process id -> connection
    gone: set = set()  # processes that joined, then closed the connection (gave up or died)

    def drop(conn):
        sel.unregister(conn)
        unknown.pop(conn, None)
        for i, c in list(joined.items()):
            if c is conn:
                del joined[i]
                gone.add(i)
        conn.close()

    def refuse(conn, why):
        address = unknown[conn][0]
        _send(conn, f"error {why}")
        drop(conn)
        _warn(f"{fn}: process 0 refused a connection from {address}: {why}")

    def broadcast(line):
        for conn in list(joined.values()):
            if not _send(conn, line):
                drop(conn)

    done = False
    try:
        while len(joined) < n - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = set(range(1, n)) - set(joined)
                went = f"; {_processes(gone & missing)} had joined, then left" if gone & missing else ""
                raise DistributedInitError(
                    f"{fn}: the processes did not all join the coordinator {coordinator} within {timeout} s "
                    f"(this is process 0 of {n}; missing: {_processes(missing)}{went})"
                )
            changed = False
            for key, _ in sel.select(min(left, _POLL_S)):
                if key.fileobj is server:
                    try:
                        conn, address = server.accept()
                    except OSError:
                        continue
                    conn.settimeout(_POLL_S)
                    unknown[conn] = (_address_text(address), b"")
                    sel.register(conn, selectors.EVENT_READ)
                    continue
                conn = key.fileobj
                try:
                    data = conn.recv(_MAX_LINE)
                except OSError:
                    data = b""
                if conn not in unknown:  # a joined process says nothing more: it closed or died
                    if not data:
                        drop(conn)
                        changed = True
                    continue
                address, buf = unknown[conn]
                buf += data
                if b"\n" not in buf:
                    if not data:
                        drop(conn)
                    elif len(buf) > _MAX_LINE:
                        refuse(conn, f"not an fnnet process (no line within {_MAX_LINE} bytes)")
                    else:
                        unknown[conn] = (address, buf)
                    continue
                line = buf.split(b"\n", 1)[0].decode(errors="replace")
                words = line.split()
                numbers = all(w.isascii() and w.isdigit() for w in words[1:])
                if len(words) != 3 or words[0] != _HELLO or not numbers:
                    refuse(conn, f"not an fnnet process of this version (it said {line[:60]!r})")
                    continue
                i, m = int(words[1]), int(words[2])
                if m != n:
                    refuse(conn, f"process {i} was started with num_processes={m} but process 0 with {n}, "
                                 f"at the coordinator {coordinator}")
                elif not 1 <= i < n:
                    refuse(conn, f"a process says it is process {i} at the coordinator {coordinator}, but "
                                 f"the ids of the others run from 1 to {n - 1}")
                elif i in joined:
                    refuse(conn, f"two processes say they are process {i} at the coordinator {coordinator}; "
                                 "the first one is kept")
                else:
                    del unknown[conn]
                    joined[i] = conn
                    changed = True
            if changed:
                broadcast("joined " + ",".join(str(i) for i in sorted({0, *joined})))
        broadcast("go")
        missing = set(range(1, n)) - set(joined)
        if missing:  # gone at the very moment all had joined; the others are told, as by the link
            broadcast(f"lost {min(missing)}")
            raise DistributedInitError(f"{fn}: {_processes(missing)} left the coordinator {coordinator} just "
                                       f"as all had joined (this is process 0 of {n})")
        done = True
        return joined
    finally:
        for conn in list(unknown):
            conn.close()
        if not done:
            for conn in joined.values():
                conn.close()
        sel.close()
        server.close()


def _join_handshake(fn, host, port, coordinator, process_id, n, timeout, deadline):
    """Process i > 0: connect to process 0 (retrying until the deadline), say who this is, and wait
    for process 0 to say that all have joined; returns the connection, left open, and the bytes
    that came after the "go" line."""
    me = f"this is process {process_id} of {n}"
    last = None
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            reason = f"; last error: {last.strerror or last}" if last is not None else ""
            raise DistributedInitError(
                f"{fn}: could not reach the coordinator {coordinator} within {timeout} s ({me}{reason}); "
                "is process 0 running and the address right?"
            )
        try:
            conn = socket.create_connection((host, port), timeout=min(left, 2.0))
            break
        except OSError as e:
            last = e
            time.sleep(max(0.0, min(_POLL_S, deadline - time.monotonic())))
    try:
        joined, buf = None, b""
        if not _send(conn, f"{_HELLO} {process_id} {n}"):
            buf = None
        while buf is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            conn.settimeout(min(left, _POLL_S))
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            while buf is not None and b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text == "go":
                    return conn, buf
                if text.startswith("error "):
                    raise DistributedInitError(f"{fn}: {text[6:]} ({me})")
                ids = text[7:].split(",") if text.startswith("joined ") else []
                if not ids or not all(s.isdigit() for s in ids):
                    buf = None  # not an fnnet process 0
                    break
                joined = {int(s) for s in ids}
            if buf is not None and len(buf) > _MAX_LINE:
                buf = None
        if joined is None:
            raise DistributedInitError(
                f"{fn}: the coordinator {coordinator} did not answer as fnnet process 0 within {timeout} s "
                f"({me}); is the address right, and does every process call fnnet.distributed.initialize?"
            )
        missing = _processes(set(range(n)) - joined)
        if deadline - time.monotonic() > 0:
            raise DistributedInitError(
                f"{fn}: the coordinator {coordinator} closed the connection before all processes joined "
                f"({me}; missing: {missing})"
            )
        raise DistributedInitError(
            f"{fn}: the processes did not all join the coordinator {coordinator} within {timeout} s "
            f"({me}; missing: {missing})"
        )
    except BaseException:
        conn.close()
        raise


class _Link:
    """The handshake's connections, kept open for the rest of the run, so that every process knows
    at once when another one is gone: process 0 holds one to each other process, each other process
    one to process 0, and a watcher thread reads them.

    A connection that closes before the run is over (its process died, was killed, or gave up), or
    that stays silent for `timeout` seconds although every process says "beat" each second (a frozen
    process, a machine cut off), stops this process with one line on stderr and exit status
    EXIT_PEER_LOST; process 0 first tells the others which process it was ("lost I"). Without this,
    JAX notices a dead process only by its missed heartbeats, 100 s later, and then aborts every
    process with a C++ stack trace (exit 134), the same as when one dies before it has registered
    with JAX's service. The watcher also keeps the deadline of jax.distributed.initialize
    (`jax_deadline`), which JAX would only keep by aborting. At exit (`leave`, run by atexit before
    JAX's own shutdown) every process waits, at most `timeout` seconds, until all have reached
    theirs ("bye" to process 0, which answers "done"), so that JAX's shutdown barrier, which
    follows, finds them all."""

    def __init__(self, coordinator, me, n, conns: dict, timeout, pending: bytes = b""):
        self.coordinator, self.me, self.n, self.timeout = coordinator, me, n, timeout
        self.conns = conns  # process id -> socket
        self.pending = {i: b"" for i in conns}
        if me:
            self.pending[0] = pending
        self.byes: set = set()  # (process 0) the processes that reached their exit
        self.changed = threading.Condition()
        self.finished = threading.Event()  # every process reached its exit: closed connections are expected
        self.jax_deadline = None  # while jax.distributed.initialize runs: when it must have returned
        self.stopping = threading.Lock()
        self.sending = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._watch, name="fnnet-distributed-link", daemon=True).start()
        atexit.register(self.leave)

    def stop(self, what: str, gone: int | None = None) -> None:
        """Print one line and end this process at once (no unwinding: JAX's shutdown would wait for
        the process that is gone, then abort). Process 0 first outlives the others (`_outlive`)."""
        with self.stopping:  # one line, even if the watcher and the main thread both get here
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            _warn(f"fnnet.distributed: {what} (this is process {self.me} of {self.n} at the coordinator "
                  f"{self.coordinator}; exit status {EXIT_PEER_LOST})")
            if self.me == 0:
                self._outlive(gone)
            os._exit(EXIT_PEER_LOST)

    def _outlive(self, gone: int | None, within: float = 5.0) -> None:
        """Process 0 hosts JAX's coordination service: were it to end first, the JAX client of a
        process still running would see the service gone and print a C++ error trace before its own
        line. So process 0 closes its side of each connection (the others stop when they read that)
        and waits, at most `within` seconds, until their connections close too."""
        waiting = {i: c for i, c in self.conns.items() if i != gone}
        for conn in waiting.values():
            try:
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        end = time.monotonic() + within
        while waiting and time.monotonic() < end:
            try:
                ready, _, _ = select.select(list(waiting.values()), [], [], _POLL_S)
            except (OSError, ValueError):
                return
            for conn in ready:
                try:
                    data = conn.recv(4096)
                except (BlockingIOError, TimeoutError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    waiting = {i: c for i, c in waiting.items() if c is not conn}

    def lost(self, i: int, why: str = "stopped before the run was over (it died, was killed or gave up)"):
        """Process `i` is gone: tell the others (from process 0) and stop."""
        if self.me == 0:
            self.broadcast(f"lost {i}")
        who = "process 0 (the coordinator)" if i == 0 else f"process {i}"
        self.stop(f"{who} {why}, so this process stops too", gone=i)

    def broadcast(self, line: str) -> None:
        with self.sending:
            for conn in self.conns.values():
                _send(conn, line)

    def release(self) -> None:
        """The run ends here without the link (initialize failed): the others see the connections
        close and stop at once."""
        self.finished.set()
        for conn in self.conns.values():
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _watch(self) -> None:
        sel = selectors.DefaultSelector()
        for i, conn in self.conns.items():
            sel.register(conn, selectors.EVENT_READ, i)
        open_ids = set(self.conns)
        heard = dict.fromkeys(self.conns, time.monotonic())
        beat = 0.0
        while open_ids and not self.finished.is_set():
            now = time.monotonic()
            if self.jax_deadline is not None and now > self.jax_deadline:
                self.stop(f"jax.distributed.initialize did not return within {self.timeout} s, although "
                          "every process had joined")
            for i, line in self._pending_lines():
                self._message(i, line)
            if now - beat >= _BEAT_S:
                self.broadcast("beat")
                beat = now
            for key, _ in sel.select(_POLL_S):
                i = key.data
                try:
                    data = key.fileobj.recv(4096)
                except (BlockingIOError, TimeoutError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fileobj)
                    open_ids.discard(i)
                    if not self.finished.is_set():
                        self.lost(i)
                    continue
                self.pending[i] += data
                heard[i] = time.monotonic()
            for i in open_ids:  # after the reads, so that a connection that closed says so first
                if time.monotonic() - heard[i] > self.timeout:
                    self.lost(i, f"has sent nothing for {self.timeout} s (it is frozen, or its machine "
                                 "cannot be reached)")
        sel.close()

    def _pending_lines(self):
        for i, buf in self.pending.items():
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield i, line.decode(errors="replace")
            self.pending[i] = buf[-_MAX_LINE:]

    def _message(self, i: int, line: str) -> None:
        if self.me == 0 and line == "bye":
            with self.changed:
                self.byes.add(i)
                self.changed.notify_all()
        elif self.me and line == "done":
            self.finished.set()
        elif self.me and line.startswith("lost ") and line[5:].isdigit():
            self.stop(f"process {int(line[5:])} is gone (it died, was killed, gave up or froze), process 0 "
                      "says, so this process stops too")

    def leave(self) -> None:
        """At exit: wait until every process has reached its own exit, at most `timeout` seconds."""
        if self.finished.is_set():
            return
        end = time.monotonic() + self.timeout
        if self.me:
            with self.sending:
                _send(self.conns[0], "bye")
            if not self.finished.wait(self.timeout):
                self.stop(f"process 0 did not reach the end of the run within {self.timeout} s of this "
                          "process")
            return
        with self.changed:
            while set(self.conns) - self.byes and end - time.monotonic() > 0:
                self.changed.wait(min(end - time.monotonic(), _POLL_S))
            missing = set(self.conns) - self.byes
        if missing:
            self.stop(f"{_processes(missing)} did not reach the end of the run within {self.timeout} s of "
                      "process 0")
        self.finished.set()
        self.broadcast("done")


def _jax_started() -> bool:
    """Whether jax.distributed.initialize would refuse at once (called before, or after a JAX call)."""
    try:
        from jax._src import xla_bridge

        backends = xla_bridge.backends_are_initialized()
    except (ImportError, AttributeError):
        backends = False
    return backends or getattr(jax.distributed, "is_initialized", lambda: False)()


_JAX_ERRORS = tuple(
    e for e in (getattr(jax.errors, "JaxRuntimeError", None), getattr(jax.errors, "XlaRuntimeError", None))
    if isinstance(e, type)
)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout: int | None = None) -> bool:
    """Join a multi-process run through jax.distributed.initialize, before any other JAX call.

    Arguments left None are read from FNNET_COORDINATOR (host:port of process 0, the port 1-65535, an
    IPv6 host in brackets), FNNET_NUM_PROCESSES and FNNET_PROCESS_ID. Returns False, doing nothing, when
    none of the three is given (a single process); raises ValueError when only some are. On the CPU the
    cross-process collectives use gloo (set when jax_cpu_collectives_implementation is unset).

    Every wait has a deadline: `timeout` seconds (an int >= 1; None: FNNET_INIT_TIMEOUT, read only in
    a multi-process run, else INIT_TIMEOUT_S = 60). When the processes have not all joined by then,
    each raises DistributedInitError, one line naming the coordinator, this process and the processes
    still missing (process 0 knows them; the others learn them from process 0, or say that process 0
    could not be reached).

    Why not only jax.distributed.initialize(initialization_timeout=timeout): JAX 0.10 does not raise
    when it times out, it aborts the process (exit 134, a C++ stack trace), in process 0 and in the
    others alike, and it notices a process that died only after 100 s of missed heartbeats, then
    aborts the others the same way. So the processes first meet in a small handshake of their own,
    which keeps the deadline and fails with a Python exception: process 0 listens on the
    coordinator's own address (or on JAX_COORDINATOR_BIND_ADDRESS), not on every interface; the others
    connect and say who they are; a connection that says anything else is refused with one line on
    stderr, and the wait goes on; process 0 tells them who has joined and lets them go once all have.
    Process 0 then closes its listening socket and every process calls jax.distributed.initialize,
    whose own timeouts are set longer than fnnet's, while the handshake's connections stay open for
    the rest of the run (`_Link`): when a process dies, or stays silent for `timeout` seconds, or
    jax.distributed.initialize has not returned after `timeout` seconds, every process prints one line
    on stderr and exits with status EXIT_PEER_LOST = 75 instead of JAX's abort; and at exit each
    process waits for the others, at most `timeout` seconds, before JAX's own shutdown. Every
    process must therefore join through this function, not through jax.distributed.initialize alone.
    An error that JAX raises (e.g. its server cannot start) becomes a one-line DistributedInitError."""
    fn = "initialize"
    if timeout is not None:
        _init_timeout(fn, timeout, from_env=False)
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
    host, port = _parse_coordinator(fn, coordinator)
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
    timeout = _init_timeout(fn, timeout, from_env=True)
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") is None:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    bind = _bind_address(fn, host, port) if process_id == 0 else None
    link = None
    if not _jax_started():  # else jax.distributed.initialize raises its own RuntimeError at once
        deadline = time.monotonic() + timeout
        pending = b""
        if process_id == 0:
            conns = _host_handshake(fn, coordinator, bind, num_processes, timeout, deadline)
        else:
            conn, pending = _join_handshake(fn, host, port, coordinator, process_id, num_processes, timeout,
                                            deadline)
            conns = {0: conn}
        if num_processes > 1:
            link = _Link(coordinator, process_id, num_processes, conns, timeout, pending)
            link.jax_deadline = time.monotonic() + timeout
            link.start()
    # JAX's own timeouts come after fnnet's, which stop the processes in one line instead of an abort.
    later = min(timeout + JAX_INIT_GRACE_S, 2**31 - 1)
    where = {} if bind is None else {"coordinator_bind_address": _address_text(bind)}
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id, initialization_timeout=later,
                                   heartbeat_timeout_seconds=max(JAX_HEARTBEAT_S, later), **where)
    except BaseException as e:
        if link is not None:
            link.release()
        if not isinstance(e, _JAX_ERRORS):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise DistributedInitError(
            f"{fn}: jax.distributed.initialize failed with the coordinator {coordinator} "
            f"(this is process {process_id} of {num_processes}): {first}"
        ) from e
    if link is not None:
        link.jax_deadline = None
    return True


def is_main_process() -> bool:
    """True in process 0 (and in a single-process run): the one that writes files and prints."""
    return jax.process_index() == 0

