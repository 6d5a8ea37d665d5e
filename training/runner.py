"""Running the engine as a child process and following it: the part of a training task that is not Django.

The engine (``python -m training.engine CONFIG.json``) runs in its own process group, so stopping it stops
everything it started (``accelerate launch`` workers, data loader processes). It prints one JSON event per
line on stdout; anything else it prints (warnings, tracebacks) goes to the log tail. The parent never imports
torch: a CUDA context in a Celery worker would be inherited by every forked child.
"""
from __future__ import annotations

import collections
import ctypes
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TAIL_LINES = 200
STOP_GRACE_S = 10.0
PR_SET_PDEATHSIG = 1


def engine_command(config_path: str | os.PathLike, *, gpus: int = 1, distributed: str = "ddp") -> list[str]:
    """The command line for one engine run: plain Python, or ``accelerate launch`` with ``gpus`` processes.

    Several processes get an accelerate config written beside the engine's config (``accelerate.json``): DDP, one
    process per GPU, or FSDP (``distributed: fsdp``) for a model that does not fit one GPU. On a machine with no
    GPU the same DDP config runs ``gpus`` CPU processes over gloo, which is how the tests exercise this path.
    """
    if gpus <= 1:
        return [sys.executable, "-m", "training.engine", str(config_path)]
    launch = Path(config_path).with_name("accelerate.json")
    launch.write_text(json.dumps(launch_config(gpus, distributed, main_process_port=free_port()), indent=2))
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(launch),
        "-m", "training.engine", str(config_path),
    ]  # fmt: skip


def launch_config(processes: int, distributed: str = "ddp", *, main_process_port: int = 29500) -> dict:
    """accelerate's own config (what ``accelerate config`` would write) for one node.

    Precision is left to the engine (its dtype policy sets autocast through TRL), so accelerate adds none. FSDP
    shards whole decoder layers (the model's ``_no_split_modules``), version 2, and saves a full state dict, so a
    checkpoint is the same files as on one GPU. Several nodes: see the README ("Several nodes").
    """
    config = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": {"ddp": "MULTI_GPU", "fsdp": "FSDP"}[distributed],
        "num_processes": processes,
        "num_machines": 1,
        "machine_rank": 0,
        "main_process_port": main_process_port,
        "rdzv_backend": "static",
        "same_network": True,
        "gpu_ids": "all",
        "mixed_precision": "no",
        "downcast_bf16": "no",
        "use_cpu": False,
    }
    if distributed == "fsdp":
        config["fsdp_config"] = {
            "fsdp_version": 2,
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_reshard_after_forward": True,
            "fsdp_offload_params": False,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_activation_checkpointing": False,
        }
    return config


def free_port() -> int:
    """A TCP port free right now, for the processes' rendezvous (several runs may share a node)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the worker process dies, so no engine trains unwatched."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the reaper still marks the run failed


@dataclass
class Outcome:
    returncode: int | None
    stopped: bool  # we stopped it (cancel); the return code then says nothing
    tail: list[str]
    done: dict | None = None  # the "done" event's result
    error: dict | None = None  # the last "error" event
    events: int = 0
    peak_rss_mb: float | None = None  # the engine process's own peak resident memory
    cpu_s: float | None = None  # its CPU time, user + system

    @property
    def succeeded(self) -> bool:
        return not self.stopped and self.returncode == 0 and self.done is not None

    def failure_message(self) -> str:
        """What went wrong, for a person: the engine's own error, or how the process ended, and its last lines."""
        if self.error is not None:
            head = f"The engine failed: {self.error.get('message') or 'no message'}"
        elif self.returncode is not None and self.returncode < 0:
            try:
                name = signal.Signals(-self.returncode).name
            except ValueError:
                name = f"signal {-self.returncode}"
            head = f"The engine was killed by {name}."
            if self.returncode == -signal.SIGKILL:
                head += " (Out of memory, or killed by hand.)"
        elif self.returncode == 0:
            head = "The engine exited without reporting a result."
        else:
            head = f"The engine exited with code {self.returncode}."
        tail = "\n".join(self.tail[-30:])
        return f"{head}\n\nLast output:\n{tail}" if tail else head


@dataclass
class EngineProcess:
    """One engine child process, followed line by line from two reader threads."""

    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | os.PathLike = PROJECT_ROOT
    proc: subprocess.Popen | None = None
    tail: collections.deque = field(default_factory=lambda: collections.deque(maxlen=TAIL_LINES))
    log_path: Path | None = None  # every line the engine prints, events included, is also written here

    def start(self) -> int:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            start_new_session=True,  # its own process group: killpg stops it and all it started
            preexec_fn=_die_with_parent,
        )
        self._log = open(self.log_path, "a", encoding="utf-8", buffering=1) if self.log_path else None
        self._lines: queue.Queue = queue.Queue()
        self._open = 2
        for stream, name in ((self.proc.stdout, "out"), (self.proc.stderr, "err")):
            threading.Thread(target=self._read, args=(stream, name), daemon=True).start()
        return self.proc.pid

    def _read(self, stream, name: str) -> None:
        for line in stream:
            self._lines.put((name, line.rstrip("\n")))
        self._lines.put((name, None))

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the whole group, then SIGKILL to whatever is left after ``grace_s``."""
        if self.proc is None or self.proc.poll() is not None:
            self._kill_group(signal.SIGKILL)  # stray children of an engine that already exited
            return
        self._kill_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        self._kill_group(signal.SIGKILL)

    def _kill_group(self, sig) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def follow(
        self,
        on_event: Callable[[dict], None],
        on_tick: Callable[[], bool],
        tick_s: float = 2.0,
    ) -> Outcome:
        """Call ``on_event`` for each JSON event and ``on_tick`` every ``tick_s`` seconds until the process ends.

        When ``on_tick`` returns True the process group is stopped (a cancel).
        """
        outcome = Outcome(returncode=None, stopped=False, tail=[])
        next_tick = time.monotonic() + tick_s
        while self._open:
            try:
                name, line = self._lines.get(timeout=max(0.05, next_tick - time.monotonic()))
            except queue.Empty:
                name, line = None, None
            if name is not None:
                if line is None:
                    self._open -= 1
                else:
                    if self._log is not None:
                        self._log.write(line + "\n")
                    event = _parse_event(line) if name == "out" else None
                    if event is None:
                        self.tail.append(line)
                    else:
                        outcome.events += 1
                        if event["event"] == "done":
                            outcome.done = event.get("result") or {}
                        elif event["event"] == "error":
                            outcome.error = event
                            self.tail.append(f"error: {event.get('message', '')}")
                            self.tail.extend((event.get("traceback") or "").splitlines()[-20:])
                        on_event(event)
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + tick_s
                if not outcome.stopped and on_tick():
                    outcome.stopped = True
                    self.stop()
        if self._log is not None:
            self._log.close()
        outcome.returncode, outcome.peak_rss_mb, outcome.cpu_s = self._wait()
        self._kill_group(signal.SIGKILL)  # anything the engine left behind in its group
        outcome.tail = list(self.tail)
        return outcome


    def _wait(self) -> tuple[int, float | None, float | None]:
        """Reap the engine with wait4, which also tells its peak resident memory (Linux: KiB) and CPU time."""
        try:
            _, status, usage = os.wait4(self.proc.pid, 0)
        except ChildProcessError:  # already reaped
            return self.proc.wait(), None, None
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.proc.returncode, round(usage.ru_maxrss / 1024, 1), round(usage.ru_utime + usage.ru_stime, 2)


def _parse_event(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None
