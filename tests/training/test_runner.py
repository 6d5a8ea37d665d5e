"""Following an engine process: events, the log tail, stopping its whole process group, failure messages.

These drive real child processes (small Python scripts standing in for a training run's output).
"""
from __future__ import annotations

import sys
import time

from training.runner import EngineProcess, engine_command

from tests.helpers import group_alive

EMITTER = """
import json, sys, time
print(json.dumps({"event": "started", "total_steps": 20}), flush=True)
print("a warning on stderr", file=sys.stderr, flush=True)
print("not an event", flush=True)
for step in range(1, 21):
    time.sleep(%(delay)s)
    print(json.dumps({"event": "progress", "step": step, "total": 20}), flush=True)
print(json.dumps({"event": "done", "result": {"final_loss": 0.25}}), flush=True)
"""


def follow(script: str, stop_after: float | None = None):
    events = []
    engine = EngineProcess([sys.executable, "-c", script])
    engine.start()
    started = time.monotonic()
    outcome = engine.follow(events.append, lambda: stop_after is not None and time.monotonic() - started > stop_after,
                            tick_s=0.1)
    return engine, outcome, events


def test_events_are_followed_to_the_end_and_other_output_goes_to_the_tail():
    _, outcome, events = follow(EMITTER % {"delay": 0})
    assert outcome.succeeded and outcome.done == {"final_loss": 0.25}
    assert [e["step"] for e in events if e["event"] == "progress"] == list(range(1, 21))
    assert sorted(outcome.tail) == ["a warning on stderr", "not an event"]
    assert outcome.peak_rss_mb and outcome.peak_rss_mb > 1


def test_stopping_kills_the_engine_and_the_processes_it_started():
    script = (
        "import subprocess, sys, time, json\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "print(json.dumps({'event': 'started', 'child': child.pid}), flush=True)\n"
        "time.sleep(300)\n"
    )
    engine, outcome, events = follow(script, stop_after=0.5)
    assert outcome.stopped and not outcome.succeeded
    assert not group_alive(engine.proc.pid)


def test_a_crash_is_reported_with_its_exit_code_and_last_lines():
    _, outcome, _ = follow("import sys; print('Traceback: CUDA out of memory', file=sys.stderr); sys.exit(3)")
    message = outcome.failure_message()
    assert message.startswith("The engine exited with code 3.") and "CUDA out of memory" in message


def test_an_error_event_gives_the_engine_message():
    script = 'import json; print(json.dumps({"event": "error", "message": "dataset: line 3 is not JSON", "traceback": "T"}))'
    _, outcome, _ = follow(script)
    assert not outcome.succeeded
    assert "dataset: line 3 is not JSON" in outcome.failure_message()


def launch_args(cmd):
    """What accelerate itself makes of a launch command (its parser and its validation, config file merged in)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
    return args


def test_a_run_on_several_gpus_goes_through_accelerate_launch_with_its_own_config(tmp_path):
    config = tmp_path / "engine-config.json"
    assert engine_command(config) == [sys.executable, "-m", "training.engine", str(config)]

    cmd = engine_command(config, gpus=4)
    assert cmd[1:5] == ["-m", "accelerate.commands.launch", "--config_file", str(tmp_path / "accelerate.json")]
    assert cmd[-3:] == ["-m", "training.engine", str(config)]
    args = launch_args(cmd)
    assert args.multi_gpu and not args.use_fsdp and args.num_processes == 4 and args.num_machines == 1
    assert args.mixed_precision == "no"  # the engine's dtype policy sets autocast, not accelerate
    port = args.main_process_port
    assert port and launch_args(engine_command(config, gpus=4)).main_process_port != port  # runs may share a node

    args = launch_args(engine_command(config, gpus=8, distributed="fsdp"))
    assert args.use_fsdp and not args.multi_gpu and args.num_processes == 8
    assert args.fsdp_version == 2 and args.fsdp_state_dict_type == "FULL_STATE_DICT"
    assert args.fsdp_auto_wrap_policy == "TRANSFORMER_BASED_WRAP"
