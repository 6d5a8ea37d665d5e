"""A chat endpoint answers a prompts file, on a worker: the endpoint side of a generation or critique-and-revise
round and of a distillation (a model source runs the engine's ``generate`` instead).

The job reads the same prompts file the engine would ({prompt_id, prompt, followups?}) and writes the same
``generations.jsonl`` ({prompt_id, messages, response, turns?, params}), so what follows reads either one. A prompt
with ``followups`` goes on as a conversation: each follow-up is asked after the previous reply. A request that
fails leaves its prompt out; the job fails if three fail before any succeeds.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction

from . import services
from .endpoints import EndpointError, chat_complete, client, endpoint_get
from .models import ProjectJob
from .project_jobs import job_progress, job_queue

MAX_FAILURES_BEFORE_ANY = 3


def generate_job_create(*, project, endpoint: str, prompts_path: str, output_path: str, params: dict,
                        created_by=None) -> ProjectJob:
    """Queue a chat endpoint's answers to a prompts file (paths relative to PS_DATA_DIR) on the default queue."""
    endpoint_get(endpoint)  # refused here, naming the field, when there is no such endpoint
    job = ProjectJob.objects.create(
        project=project, kind=ProjectJob.Kind.GENERATE, created_by=created_by,
        params={"endpoint": endpoint, "prompts": prompts_path, "output": output_path,
                **{k: params[k] for k in ("temperature", "top_p", "max_new_tokens") if k in params}},
    )
    job_queue(job)
    return job


def job_output(job: ProjectJob) -> Path:
    return services.data_path(job.params["output"])


def chat_generate_execute(*, job: ProjectJob) -> dict:
    """The worker side: ask the endpoint, write generations.jsonl; returns the job's result."""
    params = job.params
    endpoint = endpoint_get(params["endpoint"])
    rows = [json.loads(line) for line in open(services.data_path(params["prompts"]), encoding="utf-8") if line.strip()]
    sampling = {"temperature": params.get("temperature"), "top_p": params.get("top_p"),
                "max_tokens": params.get("max_new_tokens")}
    recorded = {"model": f"endpoint:{endpoint.name}", "endpoint_model": endpoint.model,
                **{k: params[k] for k in ("temperature", "top_p", "max_new_tokens") if k in params}}
    output = job_output(job)
    output.parent.mkdir(parents=True, exist_ok=True)
    written = failures = 0
    last_error = ""
    with client(endpoint) as http, open(output, "w", encoding="utf-8") as f:
        for n, row in enumerate(rows, 1):
            messages = row["prompt"] if isinstance(row["prompt"], list) else [{"role": "user", "content": row["prompt"]}]
            conversation, turns = list(messages), []
            try:
                for followup in [None, *(row.get("followups") or [])]:
                    if followup is not None:
                        conversation.append({"role": "user", "content": followup})
                    reply = chat_complete(endpoint, conversation, http=http, **sampling)
                    turns.append(reply)
                    conversation.append({"role": "assistant", "content": reply})
            except EndpointError as exc:
                failures += 1
                last_error = f"prompt {row['prompt_id']}: {exc}"[:500]
                if failures >= MAX_FAILURES_BEFORE_ANY and not written:
                    raise RuntimeError(f"The endpoint {endpoint.name} failed {failures} times; last: {last_error}")
                continue
            record = {"prompt_id": row["prompt_id"], "messages": messages, "response": turns[-1],
                      "params": {**recorded, "sample": 0}}
            if row.get("followups"):
                record["turns"] = turns
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += 1
            if n % 5 == 0 or n == len(rows):
                job_progress(job, n, len(rows))
    return {"path": str(output), "prompts": len(rows), "responses": written, "failed_requests": failures,
            "last_error": last_error}
